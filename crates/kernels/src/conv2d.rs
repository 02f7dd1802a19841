//! 2-D convolution, NCHW × OIHW, as an implicit GEMM: output pixels are processed in row bands
//! whose im2col columns fit a fixed scratch size, each band multiplied by the weight matrix with
//! the multithreaded gemm. 1×1 convolutions skip im2col and multiply the input in place. Inputs in
//! bf16/f16 are widened while the columns are gathered, so the product accumulates in f32; bf16
//! inputs on CPUs with AVX512-BF16 multiply in bf16 instead (same products, f32 sums). The weight
//! may be held in another dtype than the input (16-bit weights of an f32 model are widened per
//! call, exactly, so the model never keeps an f32 copy), and [`Products::Bf16`] multiplies f32
//! inputs in bf16 too. 3×3, stride-1, padding-1 layers on large enough images go through
//! [`crate::winograd`] instead: F(4,3) (F(2,3) on layers with too few 4×4 tiles), a quarter
//! of the multiplies, with f32 products whatever the computation.

use std::ops::Range;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::element::{
    check_cpu_input, contiguous, for_widened_rows, with_values, Element, WeightValues,
};
use crate::error::{KernelError, Result};
use crate::gemm_bf16::{matmul_bf16, PackedLhs, Products, RhsRows};
use crate::matmul::{matmul, MatMut, MatRef, Threads};
use crate::packed_weight::{from_cache_or_pack, PackedWeight, PackedWeightCache};
use crate::scratch::{with_scratch, Scratch};
use crate::threads::install;
use crate::winograd;

/// im2col scratch per band, in f32 elements (16 MiB): large enough that gemm runs on wide
/// panels, small enough that the VAE's 512² layers never hold a full 1.2 GB column matrix.
const BAND_ELEMENTS: usize = 1 << 22;

/// Geometry of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    in_channels: usize,
    height: usize,
    width: usize,
    out_channels: usize,
    kernel_h: usize,
    kernel_w: usize,
    padding: usize,
    stride: usize,
    out_h: usize,
    out_w: usize,
}

impl Geometry {
    fn patch(&self) -> usize {
        self.in_channels * self.kernel_h * self.kernel_w
    }
    /// Output rows per im2col band (at most [`BAND_ELEMENTS`] columns' worth, at least one).
    fn band_rows(&self) -> usize {
        (BAND_ELEMENTS / (self.patch() * self.out_w).max(1)).clamp(1, self.out_h)
    }
    fn is_pointwise(&self) -> bool {
        self.kernel_h == 1 && self.kernel_w == 1 && self.padding == 0 && self.stride == 1
    }
}

struct Conv2dOp<'w> {
    geometry: Geometry,
    bias: Option<Vec<f32>>,
    products: Products,
    weight: WeightValues<'w>,
    /// Where the weight's packed bf16 form is kept between calls, if anywhere.
    cache: Option<&'w dyn PackedWeightCache>,
    /// Whether 3×3 layers may take the Winograd path (off only to time or test im2col alone).
    winograd: bool,
}

/// `conv2d(x, weight) + bias` for `x` `[B, C, H, W]` and `weight` `[O, C, kh, kw]` on the CPU,
/// square `padding` and `stride`, no dilation or groups. The result has `x`'s dtype; products
/// accumulate in f32. `weight` may be f32, bf16 or f16 whatever `x` is.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
) -> Result<Tensor> {
    conv2d_with(x, weight, bias, padding, stride, Products::AsInput)
}

const OP: &str = "conv2d";

/// [`conv2d`] with the products multiplied as `products` says.
pub fn conv2d_with(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
    products: Products,
) -> Result<Tensor> {
    convolve_tensor(x, weight, bias, [padding, stride], products, true)
}

/// [`conv2d_with`] for a weight of `weight_dims` `[O, C, kh, kw]` read in place from `weight`
/// (a file's memory map, say) instead of a tensor. Where the products are in bf16 on the im2col
/// path, the weight's packed form comes from `cache` when there is one (packed on the first
/// call, kept for the next).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_values(
    x: &Tensor,
    weight: WeightValues<'_>,
    weight_dims: [usize; 4],
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
    products: Products,
    cache: Option<&dyn PackedWeightCache>,
) -> Result<Tensor> {
    convolve(
        x,
        Weight {
            values: weight,
            dims: weight_dims,
            cache,
        },
        bias,
        [padding, stride],
        products,
        true,
    )
}

/// A convolution's weight: its values, `[O, C, kh, kw]` sizes and packed-form cache.
struct Weight<'w> {
    values: WeightValues<'w>,
    dims: [usize; 4],
    cache: Option<&'w dyn PackedWeightCache>,
}

/// [`conv2d_with`] on the im2col path only, never Winograd: the baseline the Winograd layers
/// are timed and tested against.
#[doc(hidden)]
pub fn conv2d_im2col(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
    products: Products,
) -> Result<Tensor> {
    convolve_tensor(x, weight, bias, [padding, stride], products, false)
}

/// [`convolve`] with the weight given as a tensor (checked for the CPU and `[O, C, kh, kw]`).
fn convolve_tensor(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    geometry: [usize; 2],
    products: Products,
    winograd: bool,
) -> Result<Tensor> {
    check_cpu_input(weight, OP, "weight")?;
    let dims = weight.dims4().map_err(|_| KernelError::Shape {
        op: OP,
        input: "weight",
        actual: weight.dims().to_vec(),
        expected: "[O, C, kh, kw]".to_string(),
    })?;
    with_values(weight, OP, "weight", |values| {
        convolve(
            x,
            Weight {
                values,
                dims: [dims.0, dims.1, dims.2, dims.3],
                cache: None,
            },
            bias,
            geometry,
            products,
            winograd,
        )
    })?
}

fn convolve(
    x: &Tensor,
    Weight {
        values: weight,
        dims: weight_dims,
        cache,
    }: Weight<'_>,
    bias: Option<&Tensor>,
    [padding, stride]: [usize; 2],
    products: Products,
    winograd: bool,
) -> Result<Tensor> {
    check_cpu_input(x, OP, "x")?;
    let (batch, in_channels, height, width) = x.dims4().map_err(|_| KernelError::Shape {
        op: OP,
        input: "x",
        actual: x.dims().to_vec(),
        expected: "[B, C, H, W]".to_string(),
    })?;
    let weight_shape_error = || KernelError::Shape {
        op: OP,
        input: "weight",
        actual: weight_dims.to_vec(),
        expected: format!("[O, {in_channels}, kh, kw] with a kernel that fits the padded input"),
    };
    let [out_channels, weight_in, kernel_h, kernel_w] = weight_dims;
    let elements = weight_dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if weight_in != in_channels
        || elements != Some(weight.len())
        || stride == 0
        || kernel_h == 0
        || kernel_w == 0
        || height + 2 * padding < kernel_h
        || width + 2 * padding < kernel_w
    {
        return Err(weight_shape_error());
    }
    let out_h = (height + 2 * padding - kernel_h) / stride + 1;
    let out_w = (width + 2 * padding - kernel_w) / stride + 1;
    let bias = match bias {
        Some(b) => {
            if b.dims() != [out_channels] {
                return Err(KernelError::Shape {
                    op: OP,
                    input: "bias",
                    actual: b.dims().to_vec(),
                    expected: format!("[{out_channels}]"),
                });
            }
            Some(b.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?)
        }
        None => None,
    };
    let op = Conv2dOp {
        geometry: Geometry {
            batch,
            in_channels,
            height,
            width,
            out_channels,
            kernel_h,
            kernel_w,
            padding,
            stride,
            out_h,
            out_w,
        },
        bias,
        products,
        weight,
        cache,
        winograd,
    };
    Ok(x.contiguous()?.apply_op1_no_bwd(&op)?)
}

/// The same convolution through candle's own ops (the reference the fast path is tested against).
pub fn conv2d_slow(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    padding: usize,
    stride: usize,
) -> Result<Tensor> {
    let y = x.conv2d(weight, padding, stride, 1, 1)?;
    Ok(match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?,
        None => y,
    })
}

impl CustomOp1 for Conv2dOp<'_> {
    fn name(&self) -> &'static str {
        "kiln-conv2d"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = self.geometry;
        // Every input × weight dtype pair: 16-bit weights of an f32 model are widened per call.
        macro_rules! dispatch {
            ($($x:ident),*) => {
                match x {
                    $(CpuStorage::$x(x) => match self.weight {
                        WeightValues::F32(w) => self.run(x, x_layout, w)?,
                        WeightValues::BF16(w) => self.run(x, x_layout, w)?,
                        WeightValues::F16(w) => self.run(x, x_layout, w)?,
                    },)*
                    _ => return Err(unsupported(x.dtype())),
                }
            };
        }
        let out = dispatch!(F32, BF16, F16);
        Ok((
            out,
            Shape::from((g.batch, g.out_channels, g.out_h, g.out_w)),
        ))
    }
}

fn unsupported(dtype: candle_core::DType) -> candle_core::Error {
    candle_core::Error::Msg(format!("kiln-conv2d: unsupported dtype {dtype:?}"))
}

impl Conv2dOp<'_> {
    fn run<T: Element, W: Element>(
        &self,
        x: &[T],
        x_layout: &Layout,
        w: &[W],
    ) -> candle_core::Result<CpuStorage> {
        let g = self.geometry;
        let not_contiguous =
            || candle_core::Error::Msg("kiln-conv2d: inputs must be contiguous".into());
        let x = contiguous(x, x_layout).ok_or_else(not_contiguous)?;
        let plane_in = g.in_channels * g.height * g.width;
        if x.len() != g.batch * plane_in || w.len() != g.out_channels * g.patch() {
            return Err(candle_core::Error::Msg(
                "kiln-conv2d: input sizes disagree".into(),
            ));
        }
        // bf16 inputs multiply in bf16 where the CPU can (the same products as widening them,
        // summed in f32 in another order), and f32 inputs when asked to; the weight is packed
        // once per call. Packing and widening run on the calling thread (spreading their work
        // over the pool), so only its buffers grow to a weight's size, not every worker's.
        let bf16_products = crate::gemm_bf16::available()
            && (T::as_bf16(x).is_some() || self.products == Products::Bf16);
        let approximate = T::as_f32(x).is_none() || self.products == Products::Bf16;
        if let Some((variant, layer)) = self.winograd(approximate) {
            let mut out = vec![0f32; g.batch * g.out_channels * g.out_h * g.out_w];
            let bias = self.bias.as_deref();
            if !winograd::convolve(variant, layer, x, w, bias, &mut out) {
                return Err(candle_core::Error::Msg(
                    "kiln-conv2d: bad winograd views".into(),
                ));
            }
            return Ok(T::storage_from_f32(out));
        }
        let size_error = || candle_core::Error::Msg("kiln-conv2d: weight size disagrees".into());
        // The weight rounded to bf16 and packed: kept by the caller's cache between calls.
        let lhs_dims = [g.out_channels, g.patch()];
        let packed_weight = if bf16_products {
            let packed = from_cache_or_pack(
                self.cache,
                |kept| PackedWeight::convolution(w, g.out_channels, g.patch(), kept),
                |packed| packed.convolution_lhs(lhs_dims).is_some(),
            );
            Some(packed.ok_or_else(size_error)?)
        } else {
            None
        };
        let packed_lhs = packed_weight
            .as_deref()
            .and_then(|packed| packed.convolution_lhs(lhs_dims));
        let plane_out = g.out_h * g.out_w;
        let mut out = vec![0f32; g.batch * g.out_channels * plane_out];
        if let Some(bias) = &self.bias {
            install(|| {
                out.par_chunks_mut(plane_out)
                    .enumerate()
                    .for_each(|(row, plane)| plane.fill(bias[row % g.out_channels]));
            });
        }
        let multiplied = match packed_lhs {
            Some(packed) => install(|| {
                self.multiply(x, &[], Some(packed), 0..g.out_channels, &mut [], &mut out)
            }),
            // f32 products: the weight read in place or widened a block of output channels at
            // a time; the im2col band buffer too lives on the calling thread.
            None => with_scratch(
                Scratch::Columns,
                g.patch() * g.band_rows() * g.out_w,
                |columns| {
                    for_widened_rows(w, g.patch(), |channels, weight| {
                        install(|| self.multiply(x, weight, None, channels, columns, &mut out))
                    })
                },
            ),
        };
        if !multiplied {
            return Err(candle_core::Error::Msg(
                "kiln-conv2d: bad gemm views or buffers".into(),
            ));
        }
        Ok(T::storage_from_f32(out))
    }

    /// The Winograd variant for a 3×3, stride-1, padding-1 layer that suits one.
    fn winograd(&self, approximate: bool) -> Option<(winograd::Variant, winograd::Layer)> {
        let g = self.geometry;
        if !self.winograd || (g.kernel_h, g.kernel_w, g.stride, g.padding) != (3, 3, 1, 1) {
            return None;
        }
        let layer = winograd::Layer {
            batch: g.batch,
            in_channels: g.in_channels,
            out_channels: g.out_channels,
            height: g.height,
            width: g.width,
        };
        layer.variant(approximate).map(|variant| (variant, layer))
    }

    /// Adds to `out` (all images, bias already in it) the output channels `channels` of the
    /// convolution of `x` by the f32 `weight` rows of those channels, or by `packed` (bf16
    /// products, all channels); f32 products gather each band's im2col into `columns`. False
    /// when a view or buffer does not fit.
    fn multiply<T: Element>(
        &self,
        x: &[T],
        weight: &[f32],
        packed_weight: Option<&PackedLhs>,
        channels: Range<usize>,
        columns: &mut [f32],
        out: &mut [f32],
    ) -> bool {
        let g = self.geometry;
        let plane_in = g.in_channels * g.height * g.width;
        let plane_out = g.out_h * g.out_w;
        let accumulate = self.bias.is_some();
        let weight_view = MatRef {
            data: weight,
            rows: channels.len(),
            cols: g.patch(),
            row_stride: g.patch(),
            col_stride: 1,
        };
        for (image, out_image) in x
            .chunks_exact(plane_in)
            .zip(out.chunks_exact_mut(plane_out * g.out_channels))
        {
            let Some(out_channels) = out_image.get_mut(channels.start * plane_out..) else {
                return false;
            };
            if g.is_pointwise() && packed_weight.is_none() {
                if let Some(image) = T::as_f32(image) {
                    let input = MatRef {
                        data: image,
                        rows: g.in_channels,
                        cols: plane_out,
                        row_stride: plane_out,
                        col_stride: 1,
                    };
                    let dst = MatMut {
                        data: out_channels,
                        rows: channels.len(),
                        cols: plane_out,
                        row_stride: plane_out,
                        col_stride: 1,
                    };
                    if !matmul(dst, weight_view, input, 1.0, accumulate, Threads::Pool) {
                        return false;
                    }
                    continue;
                }
            }
            let band_rows = g.band_rows();
            let mut first_row = 0;
            while first_row < g.out_h {
                let rows = band_rows.min(g.out_h - first_row);
                let band = rows * g.out_w;
                let Some(data) = out_channels.get_mut(first_row * g.out_w..) else {
                    return false;
                };
                let dst = MatMut {
                    data,
                    rows: channels.len(),
                    cols: band,
                    row_stride: plane_out,
                    col_stride: 1,
                };
                let multiplied = match packed_weight {
                    Some(packed) => {
                        let source = Bf16Columns {
                            image,
                            geometry: &g,
                            first_row,
                            rows,
                        };
                        matmul_bf16(dst, packed, &source, accumulate)
                    }
                    None => {
                        let Some(columns) = columns.get_mut(..g.patch() * band) else {
                            return false;
                        };
                        gather_columns(image, &g, first_row, rows, columns);
                        let input = MatRef {
                            data: columns,
                            rows: g.patch(),
                            cols: band,
                            row_stride: band,
                            col_stride: 1,
                        };
                        matmul(dst, weight_view, input, 1.0, accumulate, Threads::Pool)
                    }
                };
                if !multiplied {
                    return false;
                }
                first_row += rows;
            }
        }
        true
    }
}

/// im2col of output rows `first_row..first_row + rows` of one image into `columns`
/// (`[C·kh·kw, rows·out_w]`, row-major), widened to f32, zero where the kernel overhangs.
fn gather_columns<T: Element>(
    image: &[T],
    g: &Geometry,
    first_row: usize,
    rows: usize,
    columns: &mut [f32],
) {
    let band = rows * g.out_w;
    let plane = g.height * g.width;
    columns
        .par_chunks_mut(band)
        .enumerate()
        .for_each(|(patch_row, dst)| {
            let channel = patch_row / (g.kernel_h * g.kernel_w);
            let ky = (patch_row / g.kernel_w) % g.kernel_h;
            let kx = patch_row % g.kernel_w;
            let src = &image[channel * plane..(channel + 1) * plane];
            // Output columns whose input column `ox·stride + kx − padding` lies inside the image.
            let first_ox = g.padding.saturating_sub(kx).div_ceil(g.stride);
            let last_ox = if g.width + g.padding > kx {
                ((g.width + g.padding - kx - 1) / g.stride + 1).min(g.out_w)
            } else {
                0
            };
            for (r, dst_row) in dst.chunks_exact_mut(g.out_w).enumerate() {
                let iy = (first_row + r) * g.stride + ky;
                if iy < g.padding || iy - g.padding >= g.height || first_ox >= last_ox {
                    dst_row.fill(0.0);
                    continue;
                }
                let src_row = &src[(iy - g.padding) * g.width..(iy - g.padding + 1) * g.width];
                dst_row[..first_ox].fill(0.0);
                dst_row[last_ox..].fill(0.0);
                let start = first_ox * g.stride + kx - g.padding;
                if g.stride == 1 {
                    let span = last_ox - first_ox;
                    for (d, s) in dst_row[first_ox..last_ox]
                        .iter_mut()
                        .zip(&src_row[start..start + span])
                    {
                        *d = s.to_f32();
                    }
                } else {
                    for (d, s) in dst_row[first_ox..last_ox]
                        .iter_mut()
                        .zip(src_row[start..].iter().step_by(g.stride))
                    {
                        *d = s.to_f32();
                    }
                }
            }
        });
}

/// The im2col columns of output rows `first_row..first_row + rows` of one image, read straight
/// into the bf16 product's packing (rounded to bf16 unless they are bf16 already; rows of the
/// matrix are `(channel, ky, kx)` taps, columns the band's output pixels).
struct Bf16Columns<'a, T> {
    image: &'a [T],
    geometry: &'a Geometry,
    first_row: usize,
    rows: usize,
}

impl<T: Element> RhsRows for Bf16Columns<'_, T> {
    fn rows(&self) -> usize {
        self.geometry.patch()
    }

    fn cols(&self) -> usize {
        self.rows * self.geometry.out_w
    }

    fn fill(&self, k: usize, first_col: usize, dst: &mut [u16]) {
        let g = self.geometry;
        let plane = g.height * g.width;
        let channel = k / (g.kernel_h * g.kernel_w);
        let ky = (k / g.kernel_w) % g.kernel_h;
        let kx = k % g.kernel_w;
        let src = &self.image[channel * plane..(channel + 1) * plane];
        // Output columns whose input column `ox·stride + kx − padding` lies inside the image.
        let first_ox = g.padding.saturating_sub(kx).div_ceil(g.stride);
        let last_ox = if g.width + g.padding > kx {
            ((g.width + g.padding - kx - 1) / g.stride + 1).min(g.out_w)
        } else {
            0
        };
        let mut column = first_col;
        let mut filled = 0;
        while filled < dst.len() {
            let (row, ox) = (column / g.out_w, column % g.out_w);
            let span = (g.out_w - ox).min(dst.len() - filled);
            let out = &mut dst[filled..filled + span];
            let iy = (self.first_row + row) * g.stride + ky;
            let inside = (first_ox.max(ox), last_ox.min(ox + span));
            if iy < g.padding || iy - g.padding >= g.height || inside.0 >= inside.1 {
                out.fill(0);
            } else {
                let (lo, hi) = inside;
                let src_row = &src[(iy - g.padding) * g.width..(iy - g.padding + 1) * g.width];
                out[..lo - ox].fill(0);
                out[hi - ox..].fill(0);
                let start = lo * g.stride + kx - g.padding;
                let out = &mut out[lo - ox..hi - ox];
                if g.stride == 1 {
                    for (d, s) in out.iter_mut().zip(&src_row[start..start + (hi - lo)]) {
                        *d = s.to_bf16_bits();
                    }
                } else {
                    for (d, s) in out
                        .iter_mut()
                        .zip(src_row[start..].iter().step_by(g.stride))
                    {
                        *d = s.to_bf16_bits();
                    }
                }
            }
            column += span;
            filled += span;
        }
    }
}
