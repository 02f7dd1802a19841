//! Scaled dot-product attention, `softmax(Q·Kᵀ/√d + mask)·V`, by the kernel the planner chose
//! ([`AttentionKernel`], ComfyUI `comfy/ldm/modules/attention.py`): one full softmax (`Plain`, the
//! reference), query slices sized from free memory (`Split`), memory-efficient chunks with
//! log-sum-exp merging (`SubQuadratic`), the backend's fused kernel (`Fused`: candle's SDPA on
//! Metal, `kiln_kernels::attention` on the CPU), or flash attention (`Flash`). Every kernel
//! computes the same function; they differ only in peak memory.
//!
//! Free memory comes from a [`MemoryBudget`] so tests can force the chunked paths, and every run
//! can report how it chunked ([`AttentionTrace`]).

use candle_core::{DType, Device, DeviceLocation, Tensor, D};
pub use kiln_runtime::AttentionKernel;

use crate::error::{ModelError, Result};

/// Where a chunking kernel learns how many bytes it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemoryBudget {
    /// Ask the device when attention runs (ComfyUI `get_free_memory`): available system RAM on the
    /// CPU and on unified-memory Metal, `cuMemGetInfo` on CUDA.
    #[default]
    Device,
    /// A fixed number of free bytes (tests, or a caller that accounts memory itself).
    Bytes(u64),
}

impl MemoryBudget {
    /// Free bytes on `device` now.
    pub fn free_bytes(self, device: &Device) -> u64 {
        match self {
            MemoryBudget::Bytes(bytes) => bytes,
            MemoryBudget::Device => match device.location() {
                DeviceLocation::Cuda { gpu_id } => kiln_runtime::probe_cuda(gpu_id)
                    .map(|profile| profile.free_memory)
                    .unwrap_or_else(|_| available_system_memory()),
                DeviceLocation::Cpu | DeviceLocation::Metal { .. } => available_system_memory(),
            },
        }
    }
}

/// Available RAM as psutil reports it (ComfyUI's CPU/MPS free memory); `u64::MAX` when the OS
/// will not say, so attention runs unchunked rather than failing.
///
/// Attention runs hundreds of times per step, so one `System` is kept and its memory figures
/// re-read at most every 250 ms (building a `System` reads `/proc/cpuinfo`).
fn available_system_memory() -> u64 {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    static CACHE: Mutex<Option<(sysinfo::System, Instant)>> = Mutex::new(None);
    const MAX_AGE: Duration = Duration::from_millis(250);

    let Ok(mut cache) = CACHE.lock() else {
        return u64::MAX;
    };
    if let Some((system, read_at)) = cache.as_mut() {
        if read_at.elapsed() > MAX_AGE {
            system.refresh_memory();
            *read_at = Instant::now();
        }
        return system.available_memory();
    }
    match sysinfo::System::new() {
        Ok(mut system) => {
            system.refresh_memory();
            let available = system.available_memory();
            *cache = Some((system, Instant::now()));
            available
        }
        Err(_) => u64::MAX,
    }
}

/// Which memory heuristic `Split` uses: ComfyUI sizes cross-attention slices and VAE attention
/// slices slightly differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SplitRule {
    /// `attention_split`: 3 × the score matrix (4-byte elements when upcast), at most 64 slices.
    #[default]
    CrossAttention,
    /// The VAE's `slice_attention`: 3 × (2-byte dtypes) or 2.5 × (others), at most 128 slices.
    Vae,
}

/// How one attention call was run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionTrace {
    /// The kernel that actually ran (a requested `Fused`/`Flash` may fall back).
    pub kernel: AttentionKernel,
    /// Query slices (1 = unsliced).
    pub query_chunks: usize,
    /// Key/value chunks per query slice (1 = no log-sum-exp merging).
    pub kv_chunks: usize,
}

/// An attention configuration: kernel, softmax precision and memory source. Cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attention {
    kernel: AttentionKernel,
    upcast: bool,
    budget: MemoryBudget,
    split_rule: SplitRule,
    /// How the CPU kernel multiplies `q·kᵀ` and `p·v` (bf16 under the plan's bf16 products).
    products: kiln_kernels::Products,
}

impl Attention {
    /// `kernel` without upcasting, free memory read from the device.
    pub fn new(kernel: AttentionKernel) -> Self {
        Attention {
            kernel,
            upcast: false,
            budget: MemoryBudget::Device,
            split_rule: SplitRule::CrossAttention,
            products: kiln_kernels::Products::AsInput,
        }
    }

    /// The kernel, upcast choice and (for the VAE) split rule a component's plan decided.
    pub fn from_plan(plan: &kiln_runtime::ComponentPlan) -> Self {
        let split_rule = if plan.component == kiln_detect::ComponentKind::Vae {
            SplitRule::Vae
        } else {
            SplitRule::CrossAttention
        };
        let products = if plan.bf16_products {
            kiln_kernels::Products::Bf16
        } else {
            kiln_kernels::Products::AsInput
        };
        Attention {
            products,
            ..Attention::new(plan.attention)
                .with_upcast(plan.upcast_attention)
                .with_split_rule(split_rule)
        }
    }

    /// Computes scores and softmax in f32 when the inputs are half precision (ComfyUI
    /// `attn_precision = float32`).
    pub fn with_upcast(self, upcast: bool) -> Self {
        Attention { upcast, ..self }
    }

    /// Where chunking kernels read free memory.
    pub fn with_budget(self, budget: MemoryBudget) -> Self {
        Attention { budget, ..self }
    }

    /// The memory heuristic of `Split`.
    pub fn with_split_rule(self, split_rule: SplitRule) -> Self {
        Attention { split_rule, ..self }
    }

    /// The requested kernel.
    pub fn kernel(&self) -> AttentionKernel {
        self.kernel
    }

    /// Whether half-precision softmax is upcast.
    pub fn upcast(&self) -> bool {
        self.upcast
    }

    /// Attention over `[B, T, heads·D]` inputs (`v` may have another per-head width), returning
    /// `[B, Tq, heads·Dv]`. `mask` is additive and broadcasts to `[B, heads, Tq, Tk]` (rank 2:
    /// `[Tq, Tk]`, rank 3: `[B, Tq, Tk]`, rank 4 as is).
    pub fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        heads: usize,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        Ok(self.forward_traced(q, k, v, heads, mask)?.0)
    }

    /// [`forward`](Self::forward), also saying how it ran.
    pub fn forward_traced(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        heads: usize,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, AttentionTrace)> {
        let (batch, q_tokens, width) = dims3(q, "q")?;
        let (k_batch, k_tokens, k_width) = dims3(k, "k")?;
        let (v_batch, v_tokens, v_width) = dims3(v, "v")?;
        if heads == 0 || width % heads != 0 || v_width % heads != 0 {
            return Err(input_error(
                "heads",
                format!("{heads} heads do not divide widths {width} (q) and {v_width} (v)"),
            ));
        }
        if k_batch != batch || v_batch != batch || k_width != width || v_tokens != k_tokens {
            return Err(input_error(
                "k/v",
                format!(
                    "shapes {:?} and {:?} do not match q {:?}",
                    k.dims(),
                    v.dims(),
                    q.dims()
                ),
            ));
        }
        let split = |t: &Tensor, tokens: usize, w: usize| -> Result<Tensor> {
            if heads == 1 {
                return Ok(t.unsqueeze(1)?);
            }
            Ok(t.reshape((batch, tokens, heads, w / heads))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (out, trace) = self.forward_heads_traced(
            &split(q, q_tokens, width)?,
            &split(k, k_tokens, width)?,
            &split(v, k_tokens, v_width)?,
            mask,
        )?;
        let out = if heads == 1 {
            out.squeeze(1)?
        } else {
            out.transpose(1, 2)?.reshape((batch, q_tokens, v_width))?
        };
        Ok((out, trace))
    }

    /// Attention over pre-split `[B, H, T, D]` inputs, returning `[B, H, Tq, Dv]`.
    pub fn forward_heads(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        Ok(self.forward_heads_traced(q, k, v, mask)?.0)
    }

    /// [`forward_heads`](Self::forward_heads), also saying how it ran.
    pub fn forward_heads_traced(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
    ) -> Result<(Tensor, AttentionTrace)> {
        let shape = HeadShape::check(q, k, v)?;
        let mask = mask.map(|m| normalise_mask(m, &shape)).transpose()?;
        let mask = mask.as_ref();
        // cuBLAS takes a matrix only with unit stride along one side and a leading dimension
        // spanning the other; a query chunk of a transposed view (the VAE's channel-major
        // tokens) has neither, and candle's CUDA matmul refuses it. Off the CPU the inputs are
        // made row-major once, before any chunking (the CPU kernels take any strides).
        let (q, k, v) = if q.device().is_cpu() {
            (q.clone(), k.clone(), v.clone())
        } else {
            (q.contiguous()?, k.contiguous()?, v.contiguous()?)
        };
        let (q, k, v) = (&q, &k, &v);
        match self.kernel {
            AttentionKernel::Plain => Ok((
                plain(q, k, v, mask, self.upcast)?,
                AttentionTrace {
                    kernel: AttentionKernel::Plain,
                    query_chunks: 1,
                    kv_chunks: 1,
                },
            )),
            AttentionKernel::Split => self.split(q, k, v, mask, &shape),
            AttentionKernel::SubQuadratic => self.sub_quadratic(q, k, v, mask, &shape),
            // Flash attention needs the `candle-flash-attn` kernels, which Kiln does not build;
            // the fused path computes the same function.
            AttentionKernel::Fused | AttentionKernel::Flash => self.fused(q, k, v, mask, &shape),
        }
    }

    /// Bytes per attention score as the memory rules count them: 4 when upcasting a
    /// half-precision input, else the input's own element size.
    fn score_element_bytes(&self, dtype: DType) -> usize {
        if self.upcast && dtype != DType::F32 {
            4
        } else {
            dtype.size_in_bytes()
        }
    }

    fn split(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        shape: &HeadShape,
    ) -> Result<(Tensor, AttentionTrace)> {
        let element = self.score_element_bytes(q.dtype());
        let (modifier, max_steps) = match self.split_rule {
            SplitRule::CrossAttention => (3.0, 64),
            SplitRule::Vae if q.dtype().size_in_bytes() == 2 => (3.0, 128),
            SplitRule::Vae => (2.5, 128),
        };
        let scores = (shape.batch * shape.heads * shape.q_tokens * shape.k_tokens) as f64;
        let required = scores * element as f64 * modifier;
        let free = self.budget.free_bytes(q.device()).max(1) as f64;
        let steps = if required > free {
            2usize.saturating_pow((required / free).log2().ceil() as u32)
        } else {
            1
        };
        if steps > max_steps {
            return Err(ModelError::OutOfMemory(format!(
                "split attention needs {:.1} MiB but {:.1} MiB are free ({steps} slices, at most \
                 {max_steps}); use a lower resolution",
                required / 1048576.0,
                free / 1048576.0
            )));
        }
        // ComfyUI only slices when the steps divide the query length; ragged slices compute the
        // same result, so Kiln slices regardless.
        let slice = shape.q_tokens.div_ceil(steps).max(1);
        let (q, k) = (for_scores(q, self.upcast)?, for_scores(k, self.upcast)?);
        let (out, query_chunks) = by_query_chunks(&q, mask, slice, |q_part, mask_part| {
            plain_scored(q_part, &k, v, mask_part)
        })?;
        Ok((
            out,
            AttentionTrace {
                kernel: AttentionKernel::Split,
                query_chunks,
                kv_chunks: 1,
            },
        ))
    }

    fn sub_quadratic(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        shape: &HeadShape,
    ) -> Result<(Tensor, AttentionTrace)> {
        let bytes = self.score_element_bytes(q.dtype());
        let free = self.budget.free_bytes(q.device()) as f64;
        let batch_heads = (shape.batch * shape.heads) as f64;
        let fitting = [4096usize, 2048, 1024, 512, 256]
            .into_iter()
            .find(|&chunk| {
                free / (batch_heads * bytes as f64 * chunk as f64 * 4.0) >= shape.k_tokens as f64
            });
        let (query_chunk, kv_chunk) = match fitting {
            Some(chunk) => (chunk, shape.k_tokens),
            None => (
                512,
                ((shape.k_tokens as f64).sqrt() as usize).clamp(1, shape.k_tokens),
            ),
        };
        let (q, k) = (for_scores(q, self.upcast)?, for_scores(k, self.upcast)?);
        let mut kv_chunks = 1;
        let (out, query_chunks) = by_query_chunks(&q, mask, query_chunk, |q_part, mask_part| {
            if kv_chunk >= shape.k_tokens {
                plain_scored(q_part, &k, v, mask_part)
            } else {
                let (out, chunks) = kv_chunked(q_part, &k, v, mask_part, kv_chunk)?;
                kv_chunks = chunks;
                Ok(out)
            }
        })?;
        Ok((
            out,
            AttentionTrace {
                kernel: AttentionKernel::SubQuadratic,
                query_chunks,
                kv_chunks,
            },
        ))
    }

    fn fused(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        shape: &HeadShape,
    ) -> Result<(Tensor, AttentionTrace)> {
        if metal_sdpa_supports(q, shape, mask.is_some()) {
            let mask = mask
                .map(|m| {
                    m.broadcast_as((shape.batch, shape.heads, shape.q_tokens, shape.k_tokens))
                        .and_then(|m| m.to_dtype(q.dtype()))
                        .and_then(|m| m.contiguous())
                })
                .transpose()?;
            let scale = (shape.head_dim as f64).powf(-0.5) as f32;
            let out = candle_nn::ops::sdpa(q, k, v, mask.as_ref(), false, scale, 1.0)?;
            return Ok((
                out,
                AttentionTrace {
                    kernel: AttentionKernel::Fused,
                    query_chunks: 1,
                    kv_chunks: 1,
                },
            ));
        }
        // kiln-kernels' tiled online-softmax kernel scores in f32 with no score matrix larger than
        // one 64×512 tile per thread. Half-precision scores without upcast (ComfyUI's f16 softmax)
        // are a different function, left to the candle kernels.
        let f32_scores_wanted = self.upcast || q.dtype() == DType::F32;
        if mask.is_none() && f32_scores_wanted && crate::layers::use_cpu_kernel(q) {
            let scale = (shape.head_dim as f32).powf(-0.5);
            let out = kiln_kernels::attention_with(q, k, v, scale, self.products)
                .map_err(crate::layers::from_kernel)?;
            return Ok((
                out,
                AttentionTrace {
                    kernel: AttentionKernel::Fused,
                    query_chunks: 1,
                    kv_chunks: 1,
                },
            ));
        }
        // No fused kernel here (candle has SDPA on Metal only; Kiln's CPU kernel takes no mask):
        // ComfyUI's own fallback
        // when SDPA is unavailable is sub-quadratic attention.
        self.sub_quadratic(q, k, v, mask, shape)
    }
}

/// Whether candle's Metal SDPA handles this call (its head widths, no ragged masks).
fn metal_sdpa_supports(q: &Tensor, shape: &HeadShape, masked: bool) -> bool {
    let head_ok = matches!(shape.head_dim, 32 | 64 | 72 | 80 | 96 | 128 | 256)
        || (shape.head_dim == 512 && q.dtype() != DType::F32);
    q.device().is_metal()
        && head_ok
        && shape.head_dim == shape.value_dim
        && shape.q_tokens > 1
        && (!masked || shape.q_tokens <= shape.k_tokens)
        && matches!(q.dtype(), DType::F32 | DType::F16 | DType::BF16)
}

/// `[B, T, heads·D]` attention with `kernel` (see [`Attention::forward`]).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    mask: Option<&Tensor>,
    kernel: AttentionKernel,
    upcast: bool,
) -> Result<Tensor> {
    Attention::new(kernel)
        .with_upcast(upcast)
        .forward(q, k, v, heads, mask)
}

/// `[B, H, T, D]` attention with `kernel` (see [`Attention::forward_heads`]).
pub fn attention_heads(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    kernel: AttentionKernel,
    upcast: bool,
) -> Result<Tensor> {
    Attention::new(kernel)
        .with_upcast(upcast)
        .forward_heads(q, k, v, mask)
}

/// Sizes of a `[B, H, T, D]` attention call.
struct HeadShape {
    batch: usize,
    heads: usize,
    q_tokens: usize,
    k_tokens: usize,
    head_dim: usize,
    value_dim: usize,
}

impl HeadShape {
    fn check(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<HeadShape> {
        let (batch, heads, q_tokens, head_dim) = dims4(q, "q")?;
        let (kb, kh, k_tokens, kd) = dims4(k, "k")?;
        let (vb, vh, v_tokens, value_dim) = dims4(v, "v")?;
        if (kb, kh, kd) != (batch, heads, head_dim)
            || (vb, vh, v_tokens) != (batch, heads, k_tokens)
        {
            return Err(input_error(
                "k/v",
                format!(
                    "shapes {:?} and {:?} do not match q {:?}",
                    k.dims(),
                    v.dims(),
                    q.dims()
                ),
            ));
        }
        if q_tokens == 0 || k_tokens == 0 || head_dim == 0 {
            return Err(input_error(
                "q/k",
                format!(
                    "need tokens and width, got q {:?} and k {:?}",
                    q.dims(),
                    k.dims()
                ),
            ));
        }
        if q.dtype() != k.dtype() || q.dtype() != v.dtype() {
            return Err(input_error(
                "q/k/v",
                format!(
                    "dtypes differ: {}, {}, {}",
                    q.dtype().as_str(),
                    k.dtype().as_str(),
                    v.dtype().as_str()
                ),
            ));
        }
        Ok(HeadShape {
            batch,
            heads,
            q_tokens,
            k_tokens,
            head_dim,
            value_dim,
        })
    }
}

fn input_error(input: &'static str, problem: String) -> ModelError {
    ModelError::Input {
        model: "attention",
        input,
        problem,
    }
}

fn dims3(t: &Tensor, input: &'static str) -> Result<(usize, usize, usize)> {
    t.dims3()
        .map_err(|_| input_error(input, format!("must be [B, T, C], got {:?}", t.dims())))
}

fn dims4(t: &Tensor, input: &'static str) -> Result<(usize, usize, usize, usize)> {
    t.dims4()
        .map_err(|_| input_error(input, format!("must be [B, H, T, D], got {:?}", t.dims())))
}

/// The mask as rank 4, each dimension either 1 or the call's size, in a dtype scores can add.
fn normalise_mask(mask: &Tensor, shape: &HeadShape) -> Result<Tensor> {
    let mask = match mask.rank() {
        2 => mask.unsqueeze(0)?.unsqueeze(0)?,
        3 => mask.unsqueeze(1)?,
        4 => mask.clone(),
        _ => {
            return Err(input_error(
                "mask",
                format!("must have rank 2, 3 or 4, got {:?}", mask.dims()),
            ))
        }
    };
    let wanted = [shape.batch, shape.heads, shape.q_tokens, shape.k_tokens];
    let fits = mask
        .dims()
        .iter()
        .zip(wanted)
        .enumerate()
        .all(|(i, (&got, want))| got == want || (got == 1 && i < 3));
    if !fits {
        return Err(input_error(
            "mask",
            format!("shape {:?} does not broadcast to {wanted:?}", mask.dims()),
        ));
    }
    Ok(mask)
}

/// Runs `attend` on consecutive slices of at most `chunk` queries (dimension 2 of `[B, H, T, D]`
/// queries, with the matching rows of the mask) and joins the results; also answers how many
/// slices there were. Split and sub-quadratic attention share this loop.
fn by_query_chunks(
    q: &Tensor,
    mask: Option<&Tensor>,
    chunk: usize,
    mut attend: impl FnMut(&Tensor, Option<&Tensor>) -> Result<Tensor>,
) -> Result<(Tensor, usize)> {
    let q_tokens = q.dim(2)?;
    let mut outputs = Vec::with_capacity(q_tokens.div_ceil(chunk.max(1)));
    let mut start = 0;
    while start < q_tokens {
        let len = chunk.max(1).min(q_tokens - start);
        let q_part = q.narrow(2, start, len)?;
        let mask_part = mask.map(|m| narrow_queries(m, start, len)).transpose()?;
        outputs.push(attend(&q_part, mask_part.as_ref())?);
        start += len;
    }
    let chunks = outputs.len();
    // `cat` of one tensor is that tensor, not a copy.
    Ok((Tensor::cat(&outputs, 2)?, chunks))
}

/// The mask rows of queries `start..start + len` (a mask shared by all queries stays whole).
fn narrow_queries(mask: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    if mask.dim(2)? == 1 {
        Ok(mask.clone())
    } else {
        Ok(mask.narrow(2, start, len)?)
    }
}

/// `t` in the dtype scores are computed in: f32 when upcasting half precision.
fn for_scores(t: &Tensor, upcast: bool) -> Result<Tensor> {
    if upcast && t.dtype() != DType::F32 {
        Ok(t.to_dtype(DType::F32)?)
    } else {
        Ok(t.clone())
    }
}

/// `Q·Kᵀ·scale (+ mask)` in the score dtype.
fn scores(q: &Tensor, k: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let scale = (q.dim(D::Minus1)? as f64).powf(-0.5);
    let s = (q.matmul(&k.t()?)? * scale)?;
    match mask {
        Some(m) => Ok(s.broadcast_add(&m.to_dtype(s.dtype())?)?),
        None => Ok(s),
    }
}

/// The reference: one softmax over the whole score matrix (ComfyUI `attention_basic`).
fn plain(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    upcast: bool,
) -> Result<Tensor> {
    plain_scored(&for_scores(q, upcast)?, &for_scores(k, upcast)?, v, mask)
}

/// [`plain`] with `q` and `k` already in the score dtype.
fn plain_scored(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let probs = candle_nn::ops::softmax_last_dim(&scores(q, k, mask)?)?;
    Ok(probs.to_dtype(v.dtype())?.matmul(v)?)
}

/// Attention of one query slice over key/value chunks of `kv_chunk` tokens, merged by their
/// running maxima (Rabe & Staats): each chunk contributes `exp(s − m)·V` and `Σ exp(s − m)`,
/// rescaled to the global maximum. `q` and `k` are in the score dtype; accumulates in f32.
/// Returns the output and the chunk count.
fn kv_chunked(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    kv_chunk: usize,
) -> Result<(Tensor, usize)> {
    let k_tokens = k.dim(2)?;
    let mut running: Option<(Tensor, Tensor, Tensor)> = None;
    let mut chunks = 0;
    let mut start = 0;
    while start < k_tokens {
        let len = kv_chunk.min(k_tokens - start);
        let k_part = k.narrow(2, start, len)?;
        let v_part = v.narrow(2, start, len)?;
        let mask_part = mask.map(|m| m.narrow(3, start, len)).transpose()?;
        let s = scores(q, &k_part, mask_part.as_ref())?;
        let chunk_max = s.max_keepdim(D::Minus1)?;
        let exp = s.broadcast_sub(&chunk_max)?.exp()?;
        let chunk_sum = exp.sum_keepdim(D::Minus1)?.to_dtype(DType::F32)?;
        let chunk_values = exp
            .to_dtype(v.dtype())?
            .matmul(&v_part)?
            .to_dtype(DType::F32)?;
        let chunk_max = chunk_max.to_dtype(DType::F32)?;
        running = Some(match running {
            None => (chunk_values, chunk_sum, chunk_max),
            Some((values, sum, max)) => {
                let new_max = max.maximum(&chunk_max)?;
                let old_scale = (max - &new_max)?.exp()?;
                let new_scale = (chunk_max - &new_max)?.exp()?;
                (
                    (values.broadcast_mul(&old_scale)?
                        + chunk_values.broadcast_mul(&new_scale)?)?,
                    ((sum * &old_scale)? + (chunk_sum * &new_scale)?)?,
                    new_max,
                )
            }
        });
        chunks += 1;
        start += len;
    }
    let Some((values, sum, _)) = running else {
        return Err(input_error("k", "has no tokens".to_string()));
    };
    Ok((values.broadcast_div(&sum)?.to_dtype(v.dtype())?, chunks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::random;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn plain_matches_a_hand_computed_softmax() {
        // One query attending to two keys: weights softmax([0, 1]·scale) over values 10 and 20.
        let q = Tensor::new(&[[[[0.0f32, 1.0]]]], &Device::Cpu).unwrap();
        let k = Tensor::new(&[[[[1.0f32, 0.0], [0.0, 1.0]]]], &Device::Cpu).unwrap();
        let v = Tensor::new(&[[[[10.0f32], [20.0]]]], &Device::Cpu).unwrap();
        let out = attention_heads(&q, &k, &v, None, AttentionKernel::Plain, false).unwrap();
        let s = 2f32.powf(-0.5);
        let w = 1.0 / (1.0 + (-s).exp());
        let want = 10.0 * (1.0 - w) + 20.0 * w;
        let got = out.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn sub_quadratic_merges_kv_chunks_when_memory_is_short() {
        let q = random(&[1, 2, 37, 8], 1);
        let k = random(&[1, 2, 50, 8], 2);
        let v = random(&[1, 2, 50, 8], 3);
        let reference = plain(&q, &k, &v, None, false).unwrap();
        let (out, trace) = Attention::new(AttentionKernel::SubQuadratic)
            .with_budget(MemoryBudget::Bytes(1024))
            .forward_heads_traced(&q, &k, &v, None)
            .unwrap();
        assert_eq!(trace.kv_chunks, 8, "ceil(50 / floor(sqrt(50)))");
        assert!(max_diff(&out, &reference) < 1e-5);
    }

    #[test]
    fn split_refuses_more_than_64_slices() {
        let q = random(&[1, 1, 64, 4], 1);
        let err = Attention::new(AttentionKernel::Split)
            .with_budget(MemoryBudget::Bytes(1))
            .forward_heads(&q, &q, &q, None)
            .unwrap_err();
        assert!(matches!(err, ModelError::OutOfMemory(_)), "{err}");
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        let q = random(&[1, 4, 6], 1);
        let err = attention(&q, &q, &q, 4, None, AttentionKernel::Plain, false).unwrap_err();
        assert!(
            matches!(err, ModelError::Input { input: "heads", .. }),
            "{err}"
        );
        let mask = random(&[3, 3], 2);
        let err = attention(&q, &q, &q, 2, Some(&mask), AttentionKernel::Plain, false).unwrap_err();
        assert!(
            matches!(err, ModelError::Input { input: "mask", .. }),
            "{err}"
        );
    }
}
