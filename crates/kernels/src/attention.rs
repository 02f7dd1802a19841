//! Fused memory-efficient attention for `[B, H, T, D]`: each task takes a block of queries of one
//! head and streams key/value blocks through it with an online softmax (running maximum and
//! sum, output rescaled as the maximum grows), so no `T×T` score matrix ever exists; the two
//! products per block run on the single-threaded gemm while tasks spread over the kernel pool.
//! bf16/f16 inputs are widened once; scores, softmax and the output accumulate in f32.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::element::{contiguous, supports_dtype, widen, Element};
use crate::error::{KernelError, Result};
use crate::matmul::{matmul, MatMut, MatRef, Threads};
use crate::norm::{not_contiguous, unsupported};
use crate::simd::{dispatch, exp, lane_max, lane_sum};
use crate::threads::install;

/// Queries per task: 64 rows × a 512-key block of scores is 128 KiB, inside one core's L2.
const QUERY_BLOCK: usize = 64;
/// Keys per streamed block.
const KEY_BLOCK: usize = 512;

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
}

/// `softmax(q·kᵀ·scale)·v` for `q` `[B, H, Tq, D]`, `k` `[B, H, Tk, D]`, `v` `[B, H, Tk, Dv]` on
/// the CPU, without materialising the score matrix. The result `[B, H, Tq, Dv]` has `q`'s dtype.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
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
        let s = self.sizes;
        let key_block = KEY_BLOCK.min(s.k_tokens);
        let mut scores = vec![0f32; rows * key_block];
        let mut running_max = vec![f32::NEG_INFINITY; rows];
        let mut running_sum = vec![0f32; rows];
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
