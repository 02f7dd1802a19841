//! `BrownianTreeNoise`: torchsde's `BrownianTree` (a `BrownianInterval` with a dyadic
//! "halfway" tree, tolerance 1e-6 and a 24-word entropy pool) as ComfyUI's
//! `BrownianTreeNoiseSampler` queries it for the SDE samplers, reproduced bit for bit on the CPU.
//!
//! The Brownian motion `W` over `[t0, t1]` is drawn once for the whole interval. Asking for the
//! increment over `[ta, tb]` bisects the interval (at midpoints rounded to 6 decimals, as
//! Python's `round(x, 6)` does) until the query's ends are node boundaries; each child's
//! increment is a Brownian bridge sample from its parent's, using `torch.randn` with a seed that
//! numpy's `SeedSequence(entropy, spawn_key=(node key, depth))` derives for the parent. Because
//! every node's noise depends only on its position, the result does not depend on cache state.

use std::collections::{HashMap, VecDeque};

use candle_core::Tensor;

use crate::error::{Result, SamplingError, TensorContext};
use crate::noise::NoiseSource;
use crate::seed_sequence::SeedSequence;
use crate::tensor_ops::{add, div_scalar, scale, sub};
use crate::torch_rng::{NormalKernel, TorchGenerator};

/// torchsde's `BrownianTree` default entropy pool size.
const POOL_SIZE: usize = 24;
/// Decimal digits kept by the tree's rounding (`tol = 1e-6`).
const ROUND_DIGITS: usize = 6;
/// torchsde's default LRU cache size for increments.
const CACHE_SIZE: usize = 45;
/// Bisection depth beyond which a query is rejected instead of recursing forever.
const MAX_DEPTH: u32 = 120;

/// Python's `round(x, 6)`: the nearest double to `x` rounded half-to-even at the sixth decimal
/// of its exact binary value.
fn round6(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.ROUND_DIGITS$}").parse().unwrap_or(x)
}

#[derive(Clone, Debug)]
struct Node {
    start: f64,
    end: f64,
    parent: Option<usize>,
    is_left: bool,
    midway: Option<f64>,
    /// `_spawn_key` and `_depth`, known once the node has been split.
    spawn_key: u128,
    depth: u32,
    /// `_W_seed` of a split node.
    w_seed: u32,
    children: Option<(usize, usize)>,
}

/// One torchsde `BrownianInterval` in `halfway_tree` mode without Lévy area.
#[derive(Debug)]
struct BrownianInterval {
    nodes: Vec<Node>,
    entropy: u128,
    shape: Vec<usize>,
    kernel: NormalKernel,
    root_w: Tensor,
    cache: HashMap<usize, Tensor>,
    cache_order: VecDeque<usize>,
    last_interval: usize,
}

impl BrownianInterval {
    fn new(t0: f64, t1: f64, like: &Tensor, entropy: u128, kernel: NormalKernel) -> Result<Self> {
        let shape = like.dims().to_vec();
        let seeds = SeedSequence::new(entropy, &[], POOL_SIZE).generate_state(3);
        let noise = randn(seeds[0], &shape, kernel, like)?;
        let root_w = scale(&noise, (t1 - t0).sqrt() as f32)?;
        let root = Node {
            start: round6(t0),
            end: round6(t1),
            parent: None,
            is_left: false,
            midway: None,
            spawn_key: 0,
            depth: 0,
            w_seed: 0,
            children: None,
        };
        Ok(Self {
            nodes: vec![root],
            entropy,
            shape,
            kernel,
            root_w,
            cache: HashMap::new(),
            cache_order: VecDeque::new(),
            last_interval: 0,
        })
    }

    /// `_split_exact`: gives `node` two children meeting at `round(midway)`.
    fn split_exact(&mut self, node: usize, midway: f64) -> Result<()> {
        let (spawn_key, depth) = match self.nodes[node].parent {
            None => (Some(0), 0),
            Some(parent) => {
                let parent = &self.nodes[parent];
                let is_right = u128::from(!self.nodes[node].is_left);
                let key = parent
                    .spawn_key
                    .checked_mul(2)
                    .and_then(|k| k.checked_add(is_right));
                (key, parent.depth + 1)
            }
        };
        if depth > MAX_DEPTH {
            return Err(SamplingError::InvalidParameter {
                what: "BrownianTree",
                field: "query",
                reason: format!("bisection deeper than {MAX_DEPTH} levels"),
            });
        }
        let spawn_key = spawn_key.ok_or_else(|| SamplingError::InvalidParameter {
            what: "BrownianTree",
            field: "query",
            reason: "tree too deep for its spawn keys".to_owned(),
        })?;
        let words = SeedSequence::new(self.entropy, &[spawn_key, u128::from(depth)], POOL_SIZE)
            .generate_state(4);
        let (start, end) = (self.nodes[node].start, self.nodes[node].end);
        let left = self.nodes.len();
        let right = left + 1;
        for (child_start, child_end, is_left) in [(start, midway, true), (midway, end, false)] {
            self.nodes.push(Node {
                start: round6(child_start),
                end: round6(child_end),
                parent: Some(node),
                is_left,
                midway: None,
                spawn_key: 0,
                depth: 0,
                w_seed: 0,
                children: None,
            });
        }
        let target = &mut self.nodes[node];
        target.midway = Some(round6(midway));
        target.spawn_key = spawn_key;
        target.depth = depth;
        target.w_seed = words[0];
        target.children = Some((left, right));
        Ok(())
    }

    /// `_split` in halfway-tree mode: bisect until `midway` is a node boundary.
    fn split(&mut self, node: usize, midway: f64) -> Result<()> {
        let mut node = node;
        loop {
            let (start, end) = (self.nodes[node].start, self.nodes[node].end);
            self.split_exact(node, 0.5 * (end + start))?;
            let (Some(mid), Some((left, right))) =
                (self.nodes[node].midway, self.nodes[node].children)
            else {
                return Ok(());
            };
            if midway > mid {
                node = right;
            } else if midway < mid {
                node = left;
            } else {
                return Ok(());
            }
        }
    }

    /// `_loc`: the nodes that exactly tile `[ta, tb]`, creating them as needed, in order.
    fn locate(&mut self, ta: f64, tb: f64) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        let mut pending = vec![(self.last_interval, round6(ta), round6(tb))];
        while let Some((mut node, ta, tb)) = pending.pop() {
            loop {
                let current = &self.nodes[node];
                if ta < current.start || tb > current.end {
                    match current.parent {
                        Some(parent) => {
                            node = parent;
                            continue;
                        }
                        None => {
                            return Err(SamplingError::InvalidParameter {
                                what: "BrownianTree",
                                field: "query",
                                reason: format!("[{ta}, {tb}] is outside the tree"),
                            })
                        }
                    }
                }
                if ta == current.start && tb == current.end {
                    out.push(node);
                    break;
                }
                if current.midway.is_none() {
                    if ta == current.start {
                        self.split(node, tb)?;
                        node = self.children(node).0;
                    } else {
                        self.split(node, ta)?;
                        node = self.children(node).1;
                    }
                    continue;
                }
                let midway = current.midway.unwrap_or(current.start);
                let (left, right) = self.children(node);
                if tb <= midway {
                    node = left;
                } else if ta >= midway {
                    node = right;
                } else {
                    // Left part first (it is appended to `out` first), right part after.
                    pending.push((right, midway, tb));
                    pending.push((left, ta, midway));
                    break;
                }
            }
        }
        Ok(out)
    }

    fn children(&self, node: usize) -> (usize, usize) {
        self.nodes[node].children.unwrap_or((node, node))
    }

    /// `_increment_and_space_time_levy_area` without H: the increment of `W` over `node`.
    fn increment(&mut self, node: usize) -> Result<Tensor> {
        let Some(parent) = self.nodes[node].parent else {
            return Ok(self.root_w.clone());
        };
        if let Some(cached) = self.cache.get(&node) {
            return Ok(cached.clone());
        }
        // Walk up to the nearest ancestor whose increment is known, then back down.
        let mut chain = vec![node];
        let mut current = parent;
        let mut known = loop {
            if self.nodes[current].parent.is_none() {
                break self.root_w.clone();
            }
            if let Some(cached) = self.cache.get(&current) {
                break cached.clone();
            }
            chain.push(current);
            current = self.nodes[current].parent.unwrap_or(0);
        };
        while let Some(child) = chain.pop() {
            let parent = self.nodes[child].parent.unwrap_or(0);
            known = self.child_increment(parent, child, &known)?;
            self.remember(child, known.clone());
        }
        Ok(known)
    }

    fn child_increment(&self, parent: usize, child: usize, parent_w: &Tensor) -> Result<Tensor> {
        let p = &self.nodes[parent];
        let midway = p.midway.unwrap_or(p.start);
        let h_reciprocal = 1.0 / (p.end - p.start);
        let left_diff = midway - p.start;
        let right_diff = p.end - midway;
        let mean = scale(&scale(parent_w, left_diff as f32)?, h_reciprocal as f32)?;
        let variance = left_diff * right_diff * h_reciprocal;
        let noise = randn(p.w_seed, &self.shape, self.kernel, parent_w)?;
        let left_w = add(&mean, &scale(&noise, variance.sqrt() as f32)?)?;
        if self.nodes[child].is_left {
            Ok(left_w)
        } else {
            sub(parent_w, &left_w)
        }
    }

    fn remember(&mut self, node: usize, value: Tensor) {
        if self.cache.insert(node, value).is_some() {
            self.cache_order.retain(|&n| n != node);
        } else if self.cache.len() > CACHE_SIZE {
            if let Some(oldest) = self.cache_order.pop_front() {
                self.cache.remove(&oldest);
            }
        }
        self.cache_order.push_back(node);
    }

    /// `BrownianInterval.__call__(ta, tb)`: `W(tb) − W(ta)`.
    fn query(&mut self, ta: f64, tb: f64) -> Result<Tensor> {
        let (start, end) = (self.nodes[0].start, self.nodes[0].end);
        let ta = ta.clamp(start, end);
        let tb = tb.clamp(start, end);
        if ta > tb {
            return Err(SamplingError::InvalidParameter {
                what: "BrownianTree",
                field: "query",
                reason: format!("ta = {ta} > tb = {tb}"),
            });
        }
        if ta == tb {
            return self.root_w.zeros_like().context("BrownianTree");
        }
        let intervals = self.locate(ta, tb)?;
        if let Some(&last) = intervals.last() {
            self.last_interval = last;
        }
        let mut total: Option<Tensor> = None;
        for node in intervals {
            let w = self.increment(node)?;
            total = Some(match total {
                None => w,
                Some(sum) => add(&sum, &w)?,
            });
        }
        match total {
            Some(w) => Ok(w),
            None => self.root_w.zeros_like().context("BrownianTree"),
        }
    }
}

fn randn(seed: u32, shape: &[usize], kernel: NormalKernel, like: &Tensor) -> Result<Tensor> {
    let values = TorchGenerator::manual_seed(u64::from(seed))
        .with_kernel(kernel)
        .randn(shape);
    Tensor::from_vec(values, shape, &candle_core::Device::Cpu)
        .and_then(|t| t.to_dtype(like.dtype()))
        .context("BrownianTree randn")
}

/// ComfyUI's `BrownianTreeNoiseSampler` with `cpu=True`: the Brownian increment between two
/// sigmas divided by `√|Δσ|`.
#[derive(Debug)]
pub struct BrownianTreeNoise {
    interval: BrownianInterval,
    device: candle_core::Device,
}

impl BrownianTreeNoise {
    /// A tree over `[sigma_min, sigma_max]` for latents shaped like `x`, seeded with `seed`.
    pub fn new(
        x: &Tensor,
        sigma_min: f32,
        sigma_max: f32,
        seed: u64,
        kernel: NormalKernel,
    ) -> Result<Self> {
        let (t0, t1) = if sigma_min < sigma_max {
            (sigma_min, sigma_max)
        } else {
            (sigma_max, sigma_min)
        };
        let cpu_like = x
            .to_device(&candle_core::Device::Cpu)
            .context("BrownianTree")?;
        Ok(Self {
            interval: BrownianInterval::new(
                f64::from(t0),
                f64::from(t1),
                &cpu_like,
                u128::from(seed),
                kernel,
            )?,
            device: x.device().clone(),
        })
    }
}

impl NoiseSource for BrownianTreeNoise {
    fn noise(&mut self, sigma: f32, sigma_next: f32) -> Result<Tensor> {
        let (low, high, negate) = if sigma < sigma_next {
            (sigma, sigma_next, false)
        } else {
            (sigma_next, sigma, true)
        };
        let mut w = self.interval.query(f64::from(low), f64::from(high))?;
        if negate {
            w = w.neg().context("BrownianTree")?;
        }
        let scaled = div_scalar(&w, (sigma_next - sigma).abs().sqrt())?;
        scaled.to_device(&self.device).context("BrownianTree")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round6_matches_python_round() {
        // Python: round(x, 6)
        let cases = [
            (0.007_812_5, 0.007_812),
            (0.023_437_5, 0.023_438),
            (2.5e-7, 0.0),
            (0.123_456_5, 0.123_456),
            (1.000_000_5, 1.000_001),
            (14.614_640_235_900_879, 14.614_64),
        ];
        for (x, want) in cases {
            assert_eq!(round6(x), want, "round({x}, 6)");
        }
    }

    #[test]
    fn increments_add_up_over_adjacent_intervals() {
        let x = Tensor::zeros(
            (1, 2, 2, 2),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let mut tree = BrownianInterval::new(0.1, 2.0, &x, 5, NormalKernel::Avx2).unwrap();
        let whole = tree.query(0.5, 1.5).unwrap();
        let a = tree.query(0.5, 1.0).unwrap();
        let b = tree.query(1.0, 1.5).unwrap();
        let diff = (whole - (a + b).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
    }

    #[test]
    fn queries_are_independent_of_order() {
        let x = Tensor::zeros((1, 4), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let mut first = BrownianInterval::new(0.03, 14.6, &x, 9, NormalKernel::Avx2).unwrap();
        let mut second = BrownianInterval::new(0.03, 14.6, &x, 9, NormalKernel::Avx2).unwrap();
        let _ = second.query(3.0, 7.0).unwrap();
        let a: Vec<f32> = first
            .query(1.0, 2.0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = second
            .query(1.0, 2.0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(a, b);
    }
}
