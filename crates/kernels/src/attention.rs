//! Fused memory-efficient attention for `[B, H, T, D]`: each task takes a block of queries of one
//! head and streams key/value blocks through it with an online softmax (running maximum and
//! sum, output rescaled as the maximum grows), so no `T×T` score matrix ever exists; the two
//! products per block run on the single-threaded gemm while tasks spread over the kernel pool.
//! bf16/f16 inputs are widened once; scores, softmax and the output accumulate in f32.
//!
//! With [`Products::Bf16`] on a CPU with AVX512-BF16 both products multiply in bf16 instead, as
//! PyTorch's bf16 CPU attention does: q, k and v are rounded to bf16 and packed once per call
//! (k and v per head in the panel layout of the tile kernels), scores `(q·kᵀ)·scale` are f32 sums
//! of bf16 products, the softmax (running maximum, running sum of the unrounded f32
//! probabilities) stays in f32, each block's probabilities `exp(s − running max)` are rounded
//! to bf16 for `p·v`, whose products accumulate into the f32 output, divided by the f32 sum at
//! the end.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::element::{contiguous, supports_dtype, widen, Element};
use crate::error::{KernelError, Result};
use crate::gemm_bf16::{bf16_bits, pair, row_tile, PairRows, Products, Tile};
use crate::matmul::{matmul, MatMut, MatRef, Threads};
use crate::norm::{not_contiguous, unsupported};
use crate::scratch::{with_scratch, PackedBuffer, Scratch};
use crate::simd::{dispatch, exp, lane_max, lane_sum};
use crate::threads::install;

/// Queries per task: 64 rows × a 512-key block of scores is 128 KiB, inside one core's L2.
const QUERY_BLOCK: usize = 64;
/// Keys per streamed block (even, so blocks start on a whole bf16 key pair, and a multiple of
/// [`SCORE_KEYS`], so they start on a whole packed key panel).
const KEY_BLOCK: usize = 512;

/// Queries per task of the bf16-products path: a multiple of every tile height below, so only
/// a head's last block has a ragged tile.
const BF16_QUERY_BLOCK: usize = 96;
/// Query rows of one score tile.
const SCORE_ROWS: usize = 12;
/// 16-lane vectors of keys in one score tile.
const SCORE_VECTORS: usize = 2;
/// Keys of one score tile (and of one packed key panel).
const SCORE_KEYS: usize = 16 * SCORE_VECTORS;

/// The tile shape of the bf16 `p·v` product: `rows` probability rows by `vectors` 16-lane
/// vectors of value columns, 20 to 24 accumulator registers each. A value width is covered by
/// whole panels of one shape, the one wasting fewest lanes (ties to the wider).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueTile {
    Rows12Vectors2,
    Rows8Vectors3,
    Rows6Vectors4,
    Rows4Vectors5,
}

impl ValueTile {
    fn for_width(value_dim: usize) -> Self {
        let vectors = value_dim.div_ceil(16);
        [
            (Self::Rows4Vectors5, 5),
            (Self::Rows6Vectors4, 4),
            (Self::Rows8Vectors3, 3),
            (Self::Rows12Vectors2, 2),
        ]
        .into_iter()
        .min_by_key(|&(_, per_panel)| vectors.div_ceil(per_panel) * per_panel)
        .map_or(Self::Rows12Vectors2, |(tile, _)| tile)
    }

    /// Value columns of one panel.
    fn width(self) -> usize {
        16 * match self {
            Self::Rows12Vectors2 => 2,
            Self::Rows8Vectors3 => 3,
            Self::Rows6Vectors4 => 4,
            Self::Rows4Vectors5 => 5,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Sizes {
    batch_heads: usize,
    q_tokens: usize,
    k_tokens: usize,
    head_dim: usize,
    value_dim: usize,
}

struct AttentionOp {
    sizes: Sizes,
    scale: f32,
    products: Products,
}

/// `softmax(q·kᵀ·scale)·v` for `q` `[B, H, Tq, D]`, `k` `[B, H, Tk, D]`, `v` `[B, H, Tk, Dv]` on
/// the CPU, without materialising the score matrix. The result `[B, H, Tq, Dv]` has `q`'s dtype.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
    attention_with(q, k, v, scale, Products::AsInput)
}

/// [`attention`] with its two products multiplied as `products` says: [`Products::Bf16`] rounds
/// q, k, v and the softmax probabilities to bf16 for the products and sums them in f32 (the
/// softmax itself and the output stay f32; see the module notes for the exact model) where the
/// CPU has AVX512-BF16, and is exactly [`attention`] elsewhere.
pub fn attention_with(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
    products: Products,
) -> Result<Tensor> {
    const OP: &str = "attention";
    for (input, t) in [("q", q), ("k", k), ("v", v)] {
        if !t.device().is_cpu() {
            return Err(KernelError::NotOnCpu { op: OP, input });
        }
        if !supports_dtype(t.dtype()) || t.dtype() != q.dtype() {
            return Err(KernelError::UnsupportedDType {
                op: OP,
                dtype: t.dtype().as_str(),
            });
        }
    }
    let shape_error = |input: &'static str, t: &Tensor| KernelError::Shape {
        op: OP,
        input,
        actual: t.dims().to_vec(),
        expected: format!("[B, H, T, D] matching q {:?}", q.dims()),
    };
    let (b, h, q_tokens, head_dim) = q.dims4().map_err(|_| shape_error("q", q))?;
    let (kb, kh, k_tokens, kd) = k.dims4().map_err(|_| shape_error("k", k))?;
    let (vb, vh, vt, value_dim) = v.dims4().map_err(|_| shape_error("v", v))?;
    if (kb, kh, kd) != (b, h, head_dim) || k_tokens == 0 || head_dim == 0 {
        return Err(shape_error("k", k));
    }
    if (vb, vh, vt) != (b, h, k_tokens) {
        return Err(shape_error("v", v));
    }
    let op = AttentionOp {
        sizes: Sizes {
            batch_heads: b * h,
            q_tokens,
            k_tokens,
            head_dim,
            value_dim,
        },
        scale,
        products,
    };
    Ok(q.contiguous()?
        .apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &op)?)
}

/// The same attention with a full softmax through candle's ops: the reference.
pub fn attention_slow(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
    let dtype = q.dtype();
    let f32 = candle_core::DType::F32;
    let (q, k, v) = (q.to_dtype(f32)?, k.to_dtype(f32)?, v.to_dtype(f32)?);
    let scores = (q.contiguous()?.matmul(&k.t()?.contiguous()?)? * scale as f64)?;
    let probs = candle_core::Tensor::exp(&scores.broadcast_sub(&scores.max_keepdim(3)?)?)?;
    let probs = probs.broadcast_div(&probs.sum_keepdim(3)?)?;
    Ok(probs.matmul(&v.contiguous()?)?.to_dtype(dtype)?)
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "kiln-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_layout: &Layout,
        k: &CpuStorage,
        k_layout: &Layout,
        v: &CpuStorage,
        v_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match (q, k, v) {
            (CpuStorage::F32(q), CpuStorage::F32(k), CpuStorage::F32(v)) => {
                self.run(q, q_layout, k, k_layout, v, v_layout)?
            }
            (CpuStorage::BF16(q), CpuStorage::BF16(k), CpuStorage::BF16(v)) => {
                self.run(q, q_layout, k, k_layout, v, v_layout)?
            }
            (CpuStorage::F16(q), CpuStorage::F16(k), CpuStorage::F16(v)) => {
                self.run(q, q_layout, k, k_layout, v, v_layout)?
            }
            _ => return Err(unsupported("kiln-attention", q.dtype())),
        };
        let mut dims = q_layout.shape().dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = self.sizes.value_dim;
        }
        Ok((out, Shape::from(dims)))
    }
}

impl AttentionOp {
    fn run<T: Element>(
        &self,
        q: &[T],
        q_layout: &Layout,
        k: &[T],
        k_layout: &Layout,
        v: &[T],
        v_layout: &Layout,
    ) -> candle_core::Result<CpuStorage> {
        let s = self.sizes;
        let q = contiguous(q, q_layout).ok_or_else(not_contiguous)?;
        let k = contiguous(k, k_layout).ok_or_else(not_contiguous)?;
        let v = contiguous(v, v_layout).ok_or_else(not_contiguous)?;
        if q.len() != s.batch_heads * s.q_tokens * s.head_dim
            || k.len() != s.batch_heads * s.k_tokens * s.head_dim
            || v.len() != s.batch_heads * s.k_tokens * s.value_dim
        {
            return Err(candle_core::Error::Msg(
                "kiln-attention: input sizes disagree".into(),
            ));
        }
        if self.products == Products::Bf16 && crate::gemm_bf16::available() {
            let out = install(|| self.run_bf16(q, k, v))?;
            return Ok(T::storage_from_f32(out));
        }
        let out = install(|| -> candle_core::Result<Vec<f32>> {
            let (q, k, v) = (widen(q), widen(k), widen(v));
            let mut out = vec![0f32; s.batch_heads * s.q_tokens * s.value_dim];
            if out.is_empty() {
                return Ok(out);
            }
            let failed = std::sync::atomic::AtomicBool::new(false);
            out.par_chunks_mut(s.q_tokens * s.value_dim)
                .enumerate()
                .for_each(|(head, head_out)| {
                    let q =
                        &q[head * s.q_tokens * s.head_dim..(head + 1) * s.q_tokens * s.head_dim];
                    let k =
                        &k[head * s.k_tokens * s.head_dim..(head + 1) * s.k_tokens * s.head_dim];
                    let v =
                        &v[head * s.k_tokens * s.value_dim..(head + 1) * s.k_tokens * s.value_dim];
                    head_out
                        .par_chunks_mut(QUERY_BLOCK * s.value_dim)
                        .enumerate()
                        .for_each(|(block, block_out)| {
                            let first = block * QUERY_BLOCK;
                            let rows = block_out.len() / s.value_dim.max(1);
                            let q_block = &q[first * s.head_dim..(first + rows) * s.head_dim];
                            if !self.query_block(q_block, rows, k, v, block_out) {
                                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                        });
                });
            if failed.into_inner() {
                return Err(candle_core::Error::Msg(
                    "kiln-attention: bad gemm views".into(),
                ));
            }
            Ok(out)
        })?;
        Ok(T::storage_from_f32(out))
    }

    /// One block of `rows` queries against every key, written to `out` `[rows, Dv]`.
    fn query_block(&self, q: &[f32], rows: usize, k: &[f32], v: &[f32], out: &mut [f32]) -> bool {
        let key_block = KEY_BLOCK.min(self.sizes.k_tokens);
        // gemm overwrites the scores (it never reads them), so a reused buffer is as good as
        // the zeroed one it replaces.
        with_scratch(Scratch::Scores, rows * key_block, |scores| {
            self.query_block_in(q, rows, k, v, out, scores)
        })
    }

    /// [`Self::query_block`] with `scores` room for `rows × min(KEY_BLOCK, Tk)` values.
    fn query_block_in(
        &self,
        q: &[f32],
        rows: usize,
        k: &[f32],
        v: &[f32],
        out: &mut [f32],
        scores: &mut [f32],
    ) -> bool {
        let s = self.sizes;
        let key_block = KEY_BLOCK.min(s.k_tokens);
        let mut running_max = [f32::NEG_INFINITY; QUERY_BLOCK];
        let mut running_sum = [0f32; QUERY_BLOCK];
        out.fill(0.0);
        let mut first_key = 0;
        while first_key < s.k_tokens {
            let keys = key_block.min(s.k_tokens - first_key);
            let scores = &mut scores[..rows * keys];
            let k_block = &k[first_key * s.head_dim..(first_key + keys) * s.head_dim];
            let v_block = &v[first_key * s.value_dim..(first_key + keys) * s.value_dim];
            let ok = matmul(
                MatMut {
                    data: scores,
                    rows,
                    cols: keys,
                    row_stride: keys,
                    col_stride: 1,
                },
                MatRef {
                    data: q,
                    rows,
                    cols: s.head_dim,
                    row_stride: s.head_dim,
                    col_stride: 1,
                },
                // kᵀ: element (d, j) is k[j, d].
                MatRef {
                    data: k_block,
                    rows: s.head_dim,
                    cols: keys,
                    row_stride: 1,
                    col_stride: s.head_dim,
                },
                self.scale,
                false,
                Threads::One,
            );
            if !ok {
                return false;
            }
            for (row, row_scores) in scores.chunks_exact_mut(keys).enumerate() {
                let (block_max, block_sum, correction) = dispatch(
                    #[inline(always)]
                    || {
                        let block_max = lane_max(row_scores);
                        let new_max = running_max[row].max(block_max);
                        for value in row_scores.iter_mut() {
                            *value = exp(*value - new_max);
                        }
                        (
                            new_max,
                            lane_sum(row_scores),
                            exp(running_max[row] - new_max),
                        )
                    },
                );
                let new_max = block_max;
                running_sum[row] = running_sum[row] * correction + block_sum;
                running_max[row] = new_max;
                if correction != 1.0 {
                    for o in &mut out[row * s.value_dim..(row + 1) * s.value_dim] {
                        *o *= correction;
                    }
                }
            }
            let ok = matmul(
                MatMut {
                    data: out,
                    rows,
                    cols: s.value_dim,
                    row_stride: s.value_dim,
                    col_stride: 1,
                },
                MatRef {
                    data: scores,
                    rows,
                    cols: keys,
                    row_stride: keys,
                    col_stride: 1,
                },
                MatRef {
                    data: v_block,
                    rows: keys,
                    cols: s.value_dim,
                    row_stride: s.value_dim,
                    col_stride: 1,
                },
                1.0,
                true,
                Threads::One,
            );
            if !ok {
                return false;
            }
            first_key += keys;
        }
        for (row, o) in out.chunks_exact_mut(s.value_dim.max(1)).enumerate() {
            let inverse = 1.0 / running_sum[row];
            for value in o {
                *value *= inverse;
            }
        }
        true
    }
}

/// Where the bf16 path's packed inputs live in one buffer, per head: q as row-major pairs
/// `[Tq, D/2]` (plus [`SCORE_ROWS`] spare rows at the very end, which a score tile may read past
/// the last query), kᵀ as panels of [`SCORE_KEYS`] keys (panel `j`, d pair `p`, key `n` at
/// `(j · D/2 + p) · SCORE_KEYS + n`), v as panels of `width` columns (panel `j`, key pair `p`,
/// column `n` at `(j · Tk/2 + p) · width + n`); odd tails and padding are zero.
#[derive(Debug, Clone, Copy)]
struct PackedLayout {
    d_pairs: usize,
    key_pairs: usize,
    value_tile: ValueTile,
    value_panels: usize,
    q_head: usize,
    k_head: usize,
    v_head: usize,
    batch_heads: usize,
}

impl PackedLayout {
    fn new(s: Sizes) -> Self {
        let d_pairs = s.head_dim.div_ceil(2);
        let key_pairs = s.k_tokens.div_ceil(2);
        let key_panels = s.k_tokens.div_ceil(SCORE_KEYS);
        let value_tile = ValueTile::for_width(s.value_dim);
        let value_panels = s.value_dim.div_ceil(value_tile.width());
        Self {
            d_pairs,
            key_pairs,
            value_tile,
            value_panels,
            q_head: s.q_tokens * d_pairs,
            k_head: key_panels * d_pairs * SCORE_KEYS,
            v_head: value_panels * key_pairs * value_tile.width(),
            batch_heads: s.batch_heads,
        }
    }

    fn q_len(&self) -> usize {
        self.batch_heads * self.q_head + SCORE_ROWS * self.d_pairs
    }

    fn total(&self) -> usize {
        self.q_len() + self.batch_heads * (self.k_head + self.v_head)
    }
}

/// `value`'s bf16 bits in the low half of a lane.
#[inline(always)]
fn bits<T: Element>(value: T) -> u32 {
    u32::from(value.to_bf16_bits())
}

impl AttentionOp {
    /// The bf16-products attention of contiguous inputs whose sizes `run` checked.
    fn run_bf16<T: Element>(&self, q: &[T], k: &[T], v: &[T]) -> candle_core::Result<Vec<f32>> {
        let s = self.sizes;
        let mut out = vec![0f32; s.batch_heads * s.q_tokens * s.value_dim];
        if out.is_empty() {
            return Ok(out);
        }
        let layout = PackedLayout::new(s);
        let mut packed = PackedBuffer::take(layout.total());
        let (q_packed, rest) = packed.as_mut_slice().split_at_mut(layout.q_len());
        let (k_packed, v_packed) = rest.split_at_mut(layout.batch_heads * layout.k_head);
        self.pack_inputs(&layout, q, k, v, q_packed, k_packed, v_packed);
        let (q_packed, k_packed, v_packed) = (&*q_packed, &*k_packed, &*v_packed);
        out.par_chunks_mut(s.q_tokens * s.value_dim)
            .enumerate()
            .for_each(|(head, head_out)| {
                // Runs on past this head's queries: a ragged last tile reads (and discards) the
                // next head's first rows or the spare rows.
                let q = &q_packed[head * layout.q_head..];
                let k = &k_packed[head * layout.k_head..(head + 1) * layout.k_head];
                let v = &v_packed[head * layout.v_head..(head + 1) * layout.v_head];
                head_out
                    .par_chunks_mut(BF16_QUERY_BLOCK * s.value_dim)
                    .enumerate()
                    .for_each(|(block, block_out)| {
                        let q_block = PairRows {
                            pairs: &q[block * BF16_QUERY_BLOCK * layout.d_pairs..],
                            row_stride: layout.d_pairs,
                        };
                        let block = Bf16Block {
                            op: self,
                            layout: &layout,
                            q: q_block,
                            k,
                            v,
                        };
                        match layout.value_tile {
                            ValueTile::Rows12Vectors2 => block.run::<12, 2>(block_out),
                            ValueTile::Rows8Vectors3 => block.run::<8, 3>(block_out),
                            ValueTile::Rows6Vectors4 => block.run::<6, 4>(block_out),
                            ValueTile::Rows4Vectors5 => block.run::<4, 5>(block_out),
                        }
                    });
            });
        Ok(out)
    }

    /// Rounds q, k, v to bf16 into their packed layouts, head by head on the pool.
    #[allow(clippy::too_many_arguments)]
    fn pack_inputs<T: Element>(
        &self,
        layout: &PackedLayout,
        q: &[T],
        k: &[T],
        v: &[T],
        q_packed: &mut [u32],
        k_packed: &mut [u32],
        v_packed: &mut [u32],
    ) {
        let s = self.sizes;
        let (d, d_pairs) = (s.head_dim, layout.d_pairs);
        let pair_at = |row: &[T], p: usize| -> u32 {
            let high = row.get(2 * p + 1).map_or(0, |&x| bits(x) << 16);
            bits(row[2 * p]) | high
        };
        let (q_rows, q_spare) = q_packed.split_at_mut(layout.batch_heads * layout.q_head);
        q_spare.fill(0);
        q_rows
            .par_chunks_mut(d_pairs * 64)
            .zip(q.par_chunks(d * 64))
            .for_each(|(dst, src)| {
                for (dst, row) in dst.chunks_exact_mut(d_pairs).zip(src.chunks_exact(d)) {
                    for (p, lane) in dst.iter_mut().enumerate() {
                        *lane = pair_at(row, p);
                    }
                }
            });
        k_packed
            .par_chunks_mut(layout.k_head)
            .zip(k.par_chunks(s.k_tokens * d))
            .for_each(|(dst, keys)| {
                for (panel, dst) in dst.chunks_exact_mut(d_pairs * SCORE_KEYS).enumerate() {
                    for n in 0..SCORE_KEYS {
                        let key = panel * SCORE_KEYS + n;
                        let row = keys.get(key * d..(key + 1) * d);
                        for p in 0..d_pairs {
                            dst[p * SCORE_KEYS + n] = row.map_or(0, |row| pair_at(row, p));
                        }
                    }
                }
            });
        let width = layout.value_tile.width();
        let dv = s.value_dim;
        v_packed
            .par_chunks_mut(layout.v_head)
            .zip(v.par_chunks(s.k_tokens * dv))
            .for_each(|(dst, values)| {
                for (panel, dst) in dst.chunks_exact_mut(layout.key_pairs * width).enumerate() {
                    let first_col = panel * width;
                    let cols = width.min(dv - first_col);
                    for (p, lanes) in dst.chunks_exact_mut(width).enumerate() {
                        let row = |key: usize| {
                            (key < s.k_tokens).then(|| &values[key * dv + first_col..][..cols])
                        };
                        let (low, high) = (row(2 * p), row(2 * p + 1));
                        for (n, lane) in lanes.iter_mut().enumerate() {
                            *lane = if n < cols {
                                low.map_or(0, |l| bits(l[n])) | high.map_or(0, |h| bits(h[n]) << 16)
                            } else {
                                0
                            };
                        }
                    }
                }
            });
    }
}

/// One task of the bf16 path: a block of queries of one head against all its keys.
struct Bf16Block<'a> {
    op: &'a AttentionOp,
    layout: &'a PackedLayout,
    /// The block's queries (and whatever follows them: a ragged tile reads past the end).
    q: PairRows<'a>,
    /// The head's packed kᵀ.
    k: &'a [u32],
    /// The head's packed v.
    v: &'a [u32],
}

impl Bf16Block<'_> {
    /// Writes the block's `[rows, Dv]` output; `ROWS × VECTORS` is the layout's value tile.
    fn run<const ROWS: usize, const VECTORS: usize>(&self, out: &mut [f32]) {
        let s = self.op.sizes;
        let rows = out.len() / s.value_dim.max(1);
        let key_block = KEY_BLOCK.min(s.k_tokens);
        let block_pairs = key_block.div_ceil(2);
        with_scratch(Scratch::Scores, rows * key_block, |scores| {
            // The p·v tile reads all `ROWS` rows of its probabilities (the ragged rest is
            // computed and discarded).
            let mut probabilities = PackedBuffer::take(rows.next_multiple_of(ROWS) * block_pairs);
            self.run_in::<ROWS, VECTORS>(out, rows, scores, probabilities.as_mut_slice());
        });
    }

    fn run_in<const ROWS: usize, const VECTORS: usize>(
        &self,
        out: &mut [f32],
        rows: usize,
        scores: &mut [f32],
        probabilities: &mut [u32],
    ) {
        let s = self.op.sizes;
        let layout = self.layout;
        let d_pairs = layout.d_pairs;
        let width = layout.value_tile.width();
        let mut running_max = [f32::NEG_INFINITY; BF16_QUERY_BLOCK];
        let mut running_sum = [0f32; BF16_QUERY_BLOCK];
        out.fill(0.0);
        let mut first_key = 0;
        while first_key < s.k_tokens {
            let keys = KEY_BLOCK.min(s.k_tokens - first_key);
            let pairs = keys.div_ceil(2);
            let scores = &mut scores[..rows * keys];
            for tile_row in (0..rows).step_by(SCORE_ROWS) {
                let a = PairRows {
                    pairs: &self.q.pairs[tile_row * d_pairs..],
                    row_stride: d_pairs,
                };
                for tile_key in (0..keys).step_by(SCORE_KEYS) {
                    let panel = (first_key + tile_key) / SCORE_KEYS;
                    let b =
                        &self.k[panel * d_pairs * SCORE_KEYS..(panel + 1) * d_pairs * SCORE_KEYS];
                    let tile = Tile {
                        rows: SCORE_ROWS.min(rows - tile_row),
                        cols: SCORE_KEYS.min(keys - tile_key),
                        row_stride: keys,
                        accumulate: false,
                    };
                    row_tile::<SCORE_ROWS, SCORE_VECTORS>(
                        d_pairs,
                        a,
                        b,
                        &mut scores[tile_row * keys + tile_key..],
                        tile,
                    );
                }
            }
            let scale = self.op.scale;
            dispatch(
                #[inline(always)]
                || {
                    for (row, row_scores) in scores.chunks_exact_mut(keys).enumerate() {
                        for value in row_scores.iter_mut() {
                            *value *= scale;
                        }
                        let new_max = running_max[row].max(lane_max(row_scores));
                        for value in row_scores.iter_mut() {
                            *value = exp(*value - new_max);
                        }
                        let correction = exp(running_max[row] - new_max);
                        running_sum[row] = running_sum[row] * correction + lane_sum(row_scores);
                        running_max[row] = new_max;
                        let row_pairs = &mut probabilities[row * pairs..(row + 1) * pairs];
                        for (lane, two) in row_pairs.iter_mut().zip(row_scores.chunks_exact(2)) {
                            *lane = pair(two[0], two[1]);
                        }
                        if keys % 2 == 1 {
                            row_pairs[pairs - 1] = bf16_bits(row_scores[keys - 1]);
                        }
                        if correction != 1.0 {
                            for o in &mut out[row * s.value_dim..(row + 1) * s.value_dim] {
                                *o *= correction;
                            }
                        }
                    }
                },
            );
            let first_pair = first_key / 2;
            for tile_row in (0..rows).step_by(ROWS) {
                let a = PairRows {
                    pairs: &probabilities[tile_row * pairs..],
                    row_stride: pairs,
                };
                for panel in 0..layout.value_panels {
                    let start = (panel * layout.key_pairs + first_pair) * width;
                    let b = &self.v[start..start + pairs * width];
                    let tile = Tile {
                        rows: ROWS.min(rows - tile_row),
                        cols: width.min(s.value_dim - panel * width),
                        row_stride: s.value_dim,
                        accumulate: true,
                    };
                    row_tile::<ROWS, VECTORS>(
                        pairs,
                        a,
                        b,
                        &mut out[tile_row * s.value_dim + panel * width..],
                        tile,
                    );
                }
            }
            first_key += keys;
        }
        for (row, o) in out.chunks_exact_mut(s.value_dim.max(1)).enumerate() {
            let inverse = 1.0 / running_sum[row];
            for value in o {
                *value *= inverse;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_tiles_cover_the_widths_with_the_fewest_lanes() {
        assert_eq!(ValueTile::for_width(40), ValueTile::Rows8Vectors3);
        assert_eq!(ValueTile::for_width(80), ValueTile::Rows4Vectors5);
        assert_eq!(ValueTile::for_width(160), ValueTile::Rows4Vectors5);
        assert_eq!(ValueTile::for_width(64), ValueTile::Rows6Vectors4);
        assert_eq!(ValueTile::for_width(24), ValueTile::Rows12Vectors2);
    }
}
