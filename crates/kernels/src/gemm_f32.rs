//! An f32 matrix product over operands packed by the caller, for products whose left operand is
//! packed once and used many times: the Winograd layers' transformed weights, which the `gemm`
//! crate would re-pack on every one of a layer's hundreds of small products. A `12 × 32` AVX-512
//! micro-kernel (24 accumulators, fused multiply-adds) where the CPU has AVX-512F, a portable
//! one elsewhere (correct, not fast: callers ask [`available`] and keep other paths otherwise).

use crate::gemm_bf16::Tile;

/// Rows of the result one micro-kernel call computes.
pub(crate) const MR: usize = 12;
/// Columns of the result one micro-kernel call computes (two 16-lane vectors).
pub(crate) const NR: usize = 32;
/// k per cache block: the `KC × NR` right panel (32 KiB) stays in L1/L2 while the left panels
/// stream past it.
const KC: usize = 128;

/// Whether this CPU runs the fast micro-kernel (detected at run time).
pub(crate) fn available() -> bool {
    fast::detected()
}

/// `MR`-row panels needed for `rows` rows.
pub(crate) fn panels(rows: usize) -> usize {
    rows.div_ceil(MR)
}

/// Packs the row-major `k × cols` matrix `src` (rows `row_stride` apart) into `NR`-column
/// panels: `dst[(j · k + kk) · NR + n]` = `src[kk · row_stride + j · NR + n]`, zero past `cols`.
/// `dst` must hold `panels · k · NR` values (`panels = cols.div_ceil(NR)`); returns false if not.
pub(crate) fn pack_rhs(
    src: &[f32],
    k: usize,
    cols: usize,
    row_stride: usize,
    dst: &mut [f32],
) -> bool {
    let col_panels = cols.div_ceil(NR);
    let fits = k == 0 || cols == 0 || (k - 1) * row_stride + cols <= src.len();
    if dst.len() != col_panels * k * NR || !fits {
        return false;
    }
    for (j, panel) in dst.chunks_exact_mut(k * NR).enumerate() {
        let first = j * NR;
        let width = NR.min(cols - first);
        for (kk, lanes) in panel.chunks_exact_mut(NR).enumerate() {
            let start = kk * row_stride + first;
            lanes[..width].copy_from_slice(&src[start..start + width]);
            lanes[width..].fill(0.0);
        }
    }
    true
}

/// A left operand in `MR`-row panels: row `r` of panel `i`, column `kk`, at
/// `values[i · panel_stride + kk · MR + r]`.
#[derive(Clone, Copy)]
pub(crate) struct PackedRows<'a> {
    pub(crate) values: &'a [f32],
    pub(crate) panel_stride: usize,
}

/// `c = a · b` for `a` (`rows × k`, packed as [`PackedRows`]) and `b` (`k × cols`, packed by
/// [`pack_rhs`]), `c` row-major with rows `c_stride` apart. One thread: callers run one product
/// per task. Returns false (computing nothing) when a slice is too short for the sizes.
pub(crate) fn multiply(
    a: PackedRows<'_>,
    b: &[f32],
    [rows, k, cols]: [usize; 3],
    c: &mut [f32],
    c_stride: usize,
) -> bool {
    let (row_panels, col_panels) = (panels(rows), cols.div_ceil(NR));
    let a_fits = row_panels == 0
        || (row_panels - 1)
            .checked_mul(a.panel_stride)
            .is_some_and(|start| start + k * MR <= a.values.len());
    let c_fits = rows == 0 || cols == 0 || (rows - 1) * c_stride + cols <= c.len();
    if !a_fits || b.len() < col_panels * k * NR || !c_fits || cols > c_stride {
        return false;
    }
    if k == 0 {
        for row in 0..rows {
            c[row * c_stride..row * c_stride + cols].fill(0.0);
        }
        return true;
    }
    for p0 in (0..k).step_by(KC) {
        let block = KC.min(k - p0);
        for j in 0..col_panels {
            let b_block = &b[(j * k + p0) * NR..(j * k + p0 + block) * NR];
            for i in 0..row_panels {
                let a_start = i * a.panel_stride + p0 * MR;
                let a_block = &a.values[a_start..a_start + block * MR];
                let tile = Tile {
                    rows: MR.min(rows - i * MR),
                    cols: NR.min(cols - j * NR),
                    row_stride: c_stride,
                    accumulate: p0 > 0,
                };
                fast::kernel(
                    block,
                    a_block,
                    b_block,
                    &mut c[i * MR * c_stride + j * NR..],
                    tile,
                );
            }
        }
    }
    true
}

/// The micro-kernel in plain Rust (the same sums in the same k order, without fusing).
fn portable_kernel(k: usize, a: &[f32], b: &[f32], c: &mut [f32], tile: Tile) {
    let mut acc = [[0f32; NR]; MR];
    for p in 0..k {
        let a_lanes = &a[p * MR..(p + 1) * MR];
        let b_lanes = &b[p * NR..(p + 1) * NR];
        for (acc_row, &a_value) in acc.iter_mut().zip(a_lanes) {
            for (sum, &b_value) in acc_row.iter_mut().zip(b_lanes) {
                *sum += a_value * b_value;
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate().take(tile.rows) {
        let out = &mut c[r * tile.row_stride..r * tile.row_stride + tile.cols];
        for (o, &v) in out.iter_mut().zip(acc_row) {
            *o = if tile.accumulate { *o + v } else { v };
        }
    }
}

/// The AVX-512F micro-kernel: a `12 × 32` f32 accumulator tile held in 24 registers.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod fast {
    use super::{Tile, MR, NR};
    use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps};

    pub(super) fn detected() -> bool {
        std::is_x86_feature_detected!("avx512f")
    }

    /// Runs the micro-kernel after checking every slice covers what it will touch.
    pub(super) fn kernel(k: usize, a: &[f32], b: &[f32], c: &mut [f32], tile: Tile) {
        if !tile.fits_panels([MR, NR], k, a.len(), b.len(), c.len()) || !detected() {
            super::portable_kernel(k, a, b, c, tile);
            return;
        }
        // SAFETY: the CPU has AVX-512F (checked just above, cached by std); `a` holds `k·MR`
        // and `b` `k·NR` values, and `c` covers `tile.rows` rows of `tile.cols` values
        // `row_stride` apart (all checked above), which is everything the kernel reads or
        // writes: its masked loads and stores touch only the first `tile.cols` lanes of the
        // first `tile.rows` rows.
        unsafe { kernel_avx512(k, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), tile) }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn kernel_avx512(k: usize, a: *const f32, b: *const f32, c: *mut f32, tile: Tile) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for p in 0..k {
            // SAFETY: `p < k`, so values `p·NR .. p·NR + 32` of `b` and `p·MR .. p·MR + 12` of
            // `a` exist (the caller checked the lengths).
            let (b0, b1, a_row) = unsafe {
                let b_lanes = b.add(p * NR);
                (
                    _mm512_loadu_ps(b_lanes),
                    _mm512_loadu_ps(b_lanes.add(16)),
                    a.add(p * MR),
                )
            };
            for (r, acc_row) in acc.iter_mut().enumerate() {
                // SAFETY: `r < MR`, inside this k's `MR` values of `a`.
                let a_value = _mm512_set1_ps(unsafe { *a_row.add(r) });
                acc_row[0] = _mm512_fmadd_ps(a_value, b0, acc_row[0]);
                acc_row[1] = _mm512_fmadd_ps(a_value, b1, acc_row[1]);
            }
        }
        // SAFETY: the CPU has AVX-512F and the caller checked that `c` covers the tile.
        unsafe { crate::gemm_bf16::fast::store_tile(&acc, c, tile) }
    }
}

/// Non-x86 targets: the portable kernel is all there is.
#[cfg(not(target_arch = "x86_64"))]
mod fast {
    use super::Tile;

    pub(super) fn detected() -> bool {
        false
    }

    pub(super) fn kernel(k: usize, a: &[f32], b: &[f32], c: &mut [f32], tile: Tile) {
        super::portable_kernel(k, a, b, c, tile);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_product_matches_the_definition_over_ragged_edges() {
        let (rows, k, cols) = (29, 300, 45);
        let a: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0)
            .collect();
        let b: Vec<f32> = (0..k * cols)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 4.0)
            .collect();
        let panel_stride = k * MR + 3;
        let mut packed_a = vec![0f32; panels(rows) * panel_stride];
        for r in 0..rows {
            for kk in 0..k {
                packed_a[(r / MR) * panel_stride + kk * MR + r % MR] = a[r * k + kk];
            }
        }
        let mut packed_b = vec![0f32; cols.div_ceil(NR) * k * NR];
        assert!(pack_rhs(&b, k, cols, cols, &mut packed_b));
        let c_stride = cols + 5;
        let mut c = vec![f32::NAN; rows * c_stride];
        let a_view = PackedRows {
            values: &packed_a,
            panel_stride,
        };
        assert!(multiply(
            a_view,
            &packed_b,
            [rows, k, cols],
            &mut c,
            c_stride
        ));
        for r in 0..rows {
            for n in 0..cols {
                let want: f64 = (0..k)
                    .map(|kk| f64::from(a[r * k + kk]) * f64::from(b[kk * cols + n]))
                    .sum();
                let got = f64::from(c[r * c_stride + n]);
                assert!((got - want).abs() < 1e-3, "({r}, {n}): {got} vs {want}");
            }
            assert!(c[r * c_stride + cols].is_nan(), "wrote past the row");
        }
        assert!(!multiply(
            a_view,
            &packed_b[1..],
            [rows, k, cols],
            &mut c,
            c_stride
        ));
    }
}
