//! A bf16 × bf16 → f32 matrix product for CPUs with AVX512-BF16: both operands are rounded to
//! bf16 and packed as the adjacent-k pairs `vdpbf16ps` multiplies, products accumulate in f32.
//! Each instruction does twice the multiply-adds of an f32 FMA (on Zen 4 about 1.7× the f32
//! throughput in practice), which is where bf16 compute gets its speed. The left operand (a
//! convolution's weights) is packed once per call; the right one is packed cache block by cache
//! block from any [`RhsRows`] source, so im2col columns go straight into it. Rows of the result
//! are split over the kernel pool. CPUs without the instruction run a portable kernel over the
//! same packing (correct, not fast: callers ask [`available`] and keep their f32 path otherwise).

use rayon::prelude::*;

use crate::matmul::{MatMut, MatRef};
use crate::scratch::PackedBuffer;

/// Rows of the result one micro-kernel call computes.
const MR: usize = 12;
/// Columns of the result one micro-kernel call computes (two 16-lane vectors).
const NR: usize = 32;
/// k pairs per cache block, at most: the `KC × NR` right panel (24 KiB) stays in L1 while every
/// left panel of a task's rows streams past it (192 measured a little faster than 128 here).
const KC_PAIRS: usize = 192;

/// k pairs per cache block for a product with `k_pairs` in all: at most [`KC_PAIRS`], split
/// evenly so no block is a short remainder (each block reloads and stores the result tile).
fn block_pairs(k_pairs: usize) -> usize {
    k_pairs.div_ceil(k_pairs.div_ceil(KC_PAIRS).max(1)).max(1)
}

/// Rows of the result per parallel task (a multiple of `MR`).
const ROWS_PER_TASK: usize = 2 * MR;

/// Whether this CPU has the `vdpbf16ps` instruction the fast kernel needs (detected at run time).
pub(crate) fn available() -> bool {
    fast::detected()
}

/// f32 rounded to bf16 (nearest, ties to even; NaN stays a quiet NaN), as raw bits. Branch-free
/// apart from a select, so packing loops vectorise.
#[inline(always)]
pub(crate) fn bf16_bits(value: f32) -> u32 {
    let bits = value.to_bits();
    let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16;
    if value.is_nan() {
        (bits >> 16) | 0x40
    } else {
        rounded
    }
}

/// Two bf16 values as one 32-bit lane: `low` in bits 0..16, `high` in 16..32 (the order
/// `vdpbf16ps` reads a k pair in).
#[inline(always)]
pub(crate) fn pair(low: f32, high: f32) -> u32 {
    bf16_bits(low) | (bf16_bits(high) << 16)
}

/// The left operand rounded to bf16 and packed in panels of `MR` rows: panel `i`, k pair `p`,
/// row `r` is `data[(i · k_pairs + p) · MR + r]`. Rows past the end and the odd k are zero.
pub(crate) struct PackedLhs {
    data: PackedBuffer,
    rows: usize,
    cols: usize,
    k_pairs: usize,
}

impl PackedLhs {
    /// Packs `lhs` (any strides). Returns `None` when the view reaches outside its slice.
    pub(crate) fn new(lhs: MatRef<'_>) -> Option<Self> {
        if !crate::matmul::view_fits(&lhs) {
            return None;
        }
        let k_pairs = lhs.cols.div_ceil(2);
        let panels = lhs.rows.div_ceil(MR);
        if panels * k_pairs == 0 {
            return Some(Self::empty(lhs.rows, lhs.cols));
        }
        // Every lane is written below (zero past the matrix), so a reused buffer needs no reset.
        let mut data = PackedBuffer::take(panels * k_pairs * MR);
        let at = |r: usize, k: usize| -> f32 {
            if r < lhs.rows && k < lhs.cols {
                lhs.data[r * lhs.row_stride + k * lhs.col_stride]
            } else {
                0.0
            }
        };
        crate::threads::install(|| {
            data.as_mut_slice()
                .par_chunks_mut(k_pairs * MR)
                .enumerate()
                .for_each(|(panel, dst)| {
                    for (p, lanes) in dst.chunks_exact_mut(MR).enumerate() {
                        for (r, lane) in lanes.iter_mut().enumerate() {
                            let row = panel * MR + r;
                            *lane = pair(at(row, 2 * p), at(row, 2 * p + 1));
                        }
                    }
                });
        });
        Some(Self {
            data,
            rows: lhs.rows,
            cols: lhs.cols,
            k_pairs,
        })
    }

    /// Packs a row-major `rows × cols` matrix already in bf16 (no rounding: its bits are
    /// copied). Returns `None` when `values` is not `rows · cols` long.
    pub(crate) fn from_bf16(values: &[half::bf16], rows: usize, cols: usize) -> Option<Self> {
        Self::from_elements(values, rows, cols)
    }

    /// Packs a row-major `rows × cols` matrix of any element type: bf16 bits are copied, other
    /// types rounded to bf16 as they are read (the same values as converting them first).
    /// Returns `None` when `values` is not `rows · cols` long.
    pub(crate) fn from_elements<T: crate::element::Element>(
        values: &[T],
        rows: usize,
        cols: usize,
    ) -> Option<Self> {
        Self::from_elements_in(values, rows, cols, PackedBuffer::take)
    }

    /// [`from_elements`](Self::from_elements) into a buffer from `allocate` (a form kept across
    /// calls takes [`PackedBuffer::kept`]).
    pub(crate) fn from_elements_in<T: crate::element::Element>(
        values: &[T],
        rows: usize,
        cols: usize,
        allocate: fn(usize) -> PackedBuffer,
    ) -> Option<Self> {
        if rows.checked_mul(cols) != Some(values.len()) {
            return None;
        }
        let k_pairs = cols.div_ceil(2);
        let panels = rows.div_ceil(MR);
        if panels * k_pairs == 0 {
            return Some(Self::empty(rows, cols));
        }
        let mut data = allocate(panels * k_pairs * MR);
        crate::threads::install(|| {
            data.as_mut_slice()
                .par_chunks_mut(k_pairs * MR)
                .enumerate()
                .for_each_init(Vec::new, |widened: &mut Vec<f32>, (panel, dst)| {
                    let first_row = panel * MR;
                    let panel_rows = MR.min(rows - first_row);
                    // The rows below are written lane by lane; those past the matrix (last
                    // panel only) must read as zero in a reused buffer.
                    if panel_rows < MR {
                        dst.fill(0);
                    }
                    let source = &values[first_row * cols..(first_row + panel_rows) * cols];
                    // Whole pairs first (the odd last k, if any, pairs with zero below).
                    let whole = cols / 2;
                    for (r, row) in source.chunks_exact(cols).enumerate() {
                        match T::as_bf16(row) {
                            Some(row) => {
                                for (lanes, two) in
                                    dst.chunks_exact_mut(MR).zip(row.chunks_exact(2))
                                {
                                    lanes[r] = u32::from(two[0].to_bits())
                                        | (u32::from(two[1].to_bits()) << 16);
                                }
                            }
                            None => {
                                // Widened a row at a time (F16C for f16), then rounded.
                                widened.resize(cols, 0.0);
                                T::widen_into(row, widened);
                                for (lanes, two) in
                                    dst.chunks_exact_mut(MR).zip(widened.chunks_exact(2))
                                {
                                    lanes[r] = pair(two[0], two[1]);
                                }
                            }
                        }
                        if whole < k_pairs {
                            dst[whole * MR + r] = u32::from(row[cols - 1].to_bf16_bits());
                        }
                    }
                });
        });
        Some(Self {
            data,
            rows,
            cols,
            k_pairs,
        })
    }

    /// A matrix with no rows or no columns (nothing to pack).
    fn empty(rows: usize, cols: usize) -> Self {
        Self {
            data: PackedBuffer::take(0),
            rows,
            cols,
            k_pairs: cols.div_ceil(2),
        }
    }

    fn panel(&self, panel: usize) -> &[u32] {
        &self.data.as_slice()[panel * self.k_pairs * MR..(panel + 1) * self.k_pairs * MR]
    }
}

/// A right operand the product packs itself, one row segment at a time, so a convolution can
/// gather its im2col columns straight into the packed form without an f32 copy.
pub(crate) trait RhsRows: Sync {
    /// Rows (the shared k dimension).
    fn rows(&self) -> usize;
    /// Columns.
    fn cols(&self) -> usize;
    /// bf16 bits of row `k < rows()`, columns `first_col..first_col + dst.len() <= cols()`.
    fn fill(&self, k: usize, first_col: usize, dst: &mut [u16]);
}

/// A row-major f32 matrix as a right operand (rounded to bf16 as it is packed).
pub(crate) struct F32Rows<'a>(MatRef<'a>);

impl<'a> F32Rows<'a> {
    /// `None` unless the view is row-major and inside its slice.
    pub(crate) fn new(view: MatRef<'a>) -> Option<Self> {
        (view.col_stride == 1 && crate::matmul::view_fits(&view)).then_some(Self(view))
    }
}

impl RhsRows for F32Rows<'_> {
    fn rows(&self) -> usize {
        self.0.rows
    }
    fn cols(&self) -> usize {
        self.0.cols
    }
    fn fill(&self, k: usize, first_col: usize, dst: &mut [u16]) {
        let start = k * self.0.row_stride + first_col;
        let len = dst.len();
        for (d, &v) in dst.iter_mut().zip(&self.0.data[start..start + len]) {
            *d = bf16_bits(v) as u16;
        }
    }
}

/// A row-major bf16 matrix as a right operand (its bits are packed as they are).
struct Bf16Rows<'a> {
    data: &'a [half::bf16],
    rows: usize,
    cols: usize,
}

impl RhsRows for Bf16Rows<'_> {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn fill(&self, k: usize, first_col: usize, dst: &mut [u16]) {
        let start = k * self.cols + first_col;
        let len = dst.len();
        for (d, v) in dst.iter_mut().zip(&self.data[start..start + len]) {
            *d = v.to_bits();
        }
    }
}

/// Right-operand columns one packing task covers (a kilobyte of each f32 row it reads, so the
/// reads stream instead of hopping a page per 128 bytes).
const PACK_PANELS: usize = 8;

/// The right operand packed for the cache blocks of [`block_pairs`] k pairs: block `b` (starting at
/// pair `p0`, `bs` pairs long) holds `NR`-column panels back to back, and within panel `j`, k
/// pair `q`, column `n` is `data[p0 · panels · NR + (j · bs + q) · NR + n]`.
///
/// Every lane is written (zero past the matrix), so the buffer is a reused one.
fn pack_rhs(
    rhs: &impl RhsRows,
    k_pairs: usize,
    allocate: fn(usize) -> PackedBuffer,
) -> PackedBuffer {
    let (rows, cols) = (rhs.rows(), rhs.cols());
    let panels = cols.div_ceil(NR);
    let mut data = allocate(panels * k_pairs * NR);
    let mut blocks = Vec::new();
    let mut rest = data.as_mut_slice();
    let block_size = block_pairs(k_pairs);
    for p0 in (0..k_pairs).step_by(block_size) {
        let block = block_size.min(k_pairs - p0);
        let (mine, later) = std::mem::take(&mut rest).split_at_mut(block * panels * NR);
        blocks.push((p0, block, mine));
        rest = later;
    }
    blocks.into_par_iter().for_each(|(p0, block, packed)| {
        packed
            .par_chunks_mut(block * NR * PACK_PANELS)
            .enumerate()
            .for_each(|(group, dst)| {
                let first_col = group * PACK_PANELS * NR;
                let width = (PACK_PANELS * NR).min(cols - first_col);
                let mut low = [0u16; PACK_PANELS * NR];
                let mut high = [0u16; PACK_PANELS * NR];
                for q in 0..block {
                    let (k0, k1) = (2 * (p0 + q), 2 * (p0 + q) + 1);
                    rhs.fill(k0, first_col, &mut low[..width]);
                    if k1 < rows {
                        rhs.fill(k1, first_col, &mut high[..width]);
                    } else {
                        high.fill(0);
                    }
                    for (local, panel) in dst.chunks_exact_mut(block * NR).enumerate() {
                        let col = local * NR;
                        let lanes = &mut panel[q * NR..(q + 1) * NR];
                        let sources = low[col..col + NR].iter().zip(&high[col..col + NR]);
                        for (lane, (&l, &h)) in lanes.iter_mut().zip(sources) {
                            *lane = u32::from(l) | (u32::from(h) << 16);
                        }
                    }
                }
            });
    });
    data
}

/// The right operand packed by [`pack_rhs`] for a product with any left operand of as many
/// columns as it has rows: a linear layer's weight packs once into this and serves every call
/// while its model runs ([`crate::PackedWeight`]).
pub(crate) struct PackedRhs {
    data: PackedBuffer,
    rows: usize,
    cols: usize,
}

impl PackedRhs {
    /// `rhs` rounded to bf16 and packed, on the kernel pool.
    pub(crate) fn new(rhs: &impl RhsRows) -> Self {
        Self::new_in(rhs, PackedBuffer::take)
    }

    /// [`new`](Self::new) into a buffer from `allocate` (a form kept across calls takes
    /// [`PackedBuffer::kept`]).
    pub(crate) fn new_in(rhs: &impl RhsRows, allocate: fn(usize) -> PackedBuffer) -> Self {
        let data = crate::threads::install(|| pack_rhs(rhs, rhs.rows().div_ceil(2), allocate));
        Self {
            data,
            rows: rhs.rows(),
            cols: rhs.cols(),
        }
    }

    /// Rows (the shared k dimension) and columns.
    pub(crate) fn dims(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// Bytes of the packed lanes.
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of_val(self.data.as_slice())
    }
}

impl PackedLhs {
    /// Rows and columns of the matrix it packs.
    pub(crate) fn dims(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// Bytes of the packed lanes.
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of_val(self.data.as_slice())
    }
}

/// Whether `dst` (row-major, `col_stride` 1) can hold `lhs · rhs` for a right operand of
/// `rhs_dims` and the inner sizes agree.
fn product_fits(dst: &MatMut<'_>, lhs: &PackedLhs, [rhs_rows, rhs_cols]: [usize; 2]) -> bool {
    let (m, n) = (dst.rows, dst.cols);
    let shapes_agree = lhs.rows == m && rhs_rows == lhs.cols && rhs_cols == n;
    shapes_agree
        && dst.col_stride == 1
        && (m == 0
            || n == 0
            || (m - 1)
                .checked_mul(dst.row_stride)
                .and_then(|last_row| last_row.checked_add(n))
                .is_some_and(|end| end <= dst.data.len()))
}

/// `dst = lhs·rhs`, or `dst += lhs·rhs` when `accumulate`, with `rhs` in bf16 and the products
/// summed in f32. `dst` must be row-major (`col_stride` 1). Returns false (and computes nothing)
/// when the sizes disagree or `dst` reaches outside its slice.
pub(crate) fn matmul_bf16(
    dst: MatMut<'_>,
    lhs: &PackedLhs,
    rhs: &impl RhsRows,
    accumulate: bool,
) -> bool {
    if !product_fits(&dst, lhs, [rhs.rows(), rhs.cols()]) {
        return false;
    }
    matmul_bf16_packed(dst, lhs, &PackedRhs::new(rhs), accumulate)
}

/// [`matmul_bf16`] with the right operand packed already.
pub(crate) fn matmul_bf16_packed(
    dst: MatMut<'_>,
    lhs: &PackedLhs,
    rhs: &PackedRhs,
    accumulate: bool,
) -> bool {
    if !product_fits(&dst, lhs, rhs.dims()) {
        return false;
    }
    let (m, n) = (dst.rows, dst.cols);
    if m == 0 || n == 0 {
        return true;
    }
    let row_stride = dst.row_stride;
    if lhs.cols == 0 {
        // An empty sum: the product is zero.
        if !accumulate {
            for row in 0..m {
                dst.data[row * row_stride..row * row_stride + n].fill(0.0);
            }
        }
        return true;
    }
    let k_pairs = lhs.k_pairs;
    let fast = available();
    crate::threads::install(|| {
        let packed_rhs = rhs.data.as_slice();
        let rhs_panels = n.div_ceil(NR);
        let tasks = m.div_ceil(ROWS_PER_TASK);
        // Task `t` owns result rows `t·ROWS_PER_TASK..`; its slice starts at its first row.
        let mut slices: Vec<(usize, &mut [f32])> = Vec::with_capacity(tasks);
        let mut rest = &mut dst.data[..];
        for task in 0..tasks {
            let first_row = task * ROWS_PER_TASK;
            let rows = ROWS_PER_TASK.min(m - first_row);
            let take = if task + 1 == tasks {
                rest.len()
            } else {
                (ROWS_PER_TASK * row_stride).min(rest.len())
            };
            let (mine, later) = std::mem::take(&mut rest).split_at_mut(take);
            slices.push((rows, mine));
            rest = later;
        }
        slices
            .into_par_iter()
            .enumerate()
            .for_each(|(task, (rows, out))| {
                let first_panel = task * ROWS_PER_TASK / MR;
                let block_size = block_pairs(k_pairs);
                for p0 in (0..k_pairs).step_by(block_size) {
                    let block = block_size.min(k_pairs - p0);
                    let load = accumulate || p0 > 0;
                    for j in 0..rhs_panels {
                        let col = j * NR;
                        let width = NR.min(n - col);
                        let b_start = p0 * rhs_panels * NR + j * block * NR;
                        let b = &packed_rhs[b_start..b_start + block * NR];
                        for local in 0..rows.div_ceil(MR) {
                            let a_panel = lhs.panel(first_panel + local);
                            let a = &a_panel[p0 * MR..(p0 + block) * MR];
                            let tile_rows = MR.min(rows - local * MR);
                            let c = &mut out[local * MR * row_stride + col..];
                            let tile = Tile {
                                rows: tile_rows,
                                cols: width,
                                row_stride,
                                accumulate: load,
                            };
                            if fast {
                                fast::kernel(block, a, b, c, tile);
                            } else {
                                portable_kernel(block, a, b, c, tile);
                            }
                        }
                    }
                }
            });
    });
    true
}

/// Where one micro-kernel call writes: the top-left `rows × cols` of an `MR × NR` tile whose
/// rows lie `row_stride` apart in the output slice.
#[derive(Clone, Copy)]
pub(crate) struct Tile {
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
    /// Add to the values already there rather than overwrite them.
    pub(crate) accumulate: bool,
}

impl Tile {
    /// Whether a `rows × cols` micro-kernel over `k` steps of packed panels fits: the left
    /// panel (`a_len`) holds `k · rows`, the right (`b_len`) `k · cols` values, this tile lies
    /// within those bounds, and the output (`c_len`) covers the tile's rows `row_stride` apart.
    pub(crate) fn fits_panels(
        self,
        [rows, cols]: [usize; 2],
        k: usize,
        a_len: usize,
        b_len: usize,
        c_len: usize,
    ) -> bool {
        self.rows <= rows
            && self.cols <= cols
            && a_len >= k.saturating_mul(rows)
            && b_len >= k.saturating_mul(cols)
            && self.fits_output(c_len)
    }

    /// Whether an output of `c_len` values covers the tile's rows `row_stride` apart.
    pub(crate) fn fits_output(self, c_len: usize) -> bool {
        c_len >= self.rows.saturating_sub(1) * self.row_stride + self.cols
    }
}

/// A left operand read in place by [`row_tile`]: row-major bf16 pairs, row `r`'s k pair `p` at
/// `pairs[r · row_stride + p]` (no panel packing, so a caller can write it row by row).
#[derive(Clone, Copy)]
pub(crate) struct PairRows<'a> {
    pub(crate) pairs: &'a [u32],
    pub(crate) row_stride: usize,
}

/// `c = a·b` (or `c += a·b` when `tile.accumulate`) for one `ROWS × 16·VECTORS` tile of which
/// the top-left `tile.rows × tile.cols` is kept: `a` is [`PairRows`], `b` a panel of
/// `16·VECTORS` columns, k pair `p`, column `n` at `b[p · 16·VECTORS + n]`. Small products (an
/// attention block's scores and its probabilities times values) call this directly with the
/// tile shape that suits their width. The fast kernel runs where the CPU has AVX512-BF16 and
/// `a` holds all `ROWS` rows (callers leave room for them past a ragged end); the portable one
/// otherwise, reading only the kept rows.
pub(crate) fn row_tile<const ROWS: usize, const VECTORS: usize>(
    k_pairs: usize,
    a: PairRows<'_>,
    b: &[u32],
    c: &mut [f32],
    tile: Tile,
) {
    fast::row_tile::<ROWS, VECTORS>(k_pairs, a, b, c, tile);
}

/// [`row_tile`] in plain Rust, summing each k pair in the order `vdpbf16ps` does. Reads only the
/// kept rows.
fn portable_row_tile<const ROWS: usize, const VECTORS: usize>(
    k_pairs: usize,
    a: PairRows<'_>,
    b: &[u32],
    c: &mut [f32],
    tile: Tile,
) {
    let widen = |bits: u32| f32::from_bits(bits << 16);
    let width = 16 * VECTORS;
    let rows = tile.rows.min(ROWS);
    let cols = tile.cols.min(width);
    for r in 0..rows {
        let a_row = &a.pairs[r * a.row_stride..r * a.row_stride + k_pairs];
        let out = &mut c[r * tile.row_stride..r * tile.row_stride + cols];
        let mut acc = [[0f32; 16]; VECTORS];
        for (p, &a_pair) in a_row.iter().enumerate() {
            let (a_low, a_high) = (widen(a_pair & 0xFFFF), widen(a_pair >> 16));
            let b_lanes = &b[p * width..(p + 1) * width];
            for (sum, &b_pair) in acc.iter_mut().flatten().zip(b_lanes) {
                *sum += a_low * widen(b_pair & 0xFFFF);
                *sum += a_high * widen(b_pair >> 16);
            }
        }
        for (o, &v) in out.iter_mut().zip(acc.iter().flatten()) {
            *o = if tile.accumulate { *o + v } else { v };
        }
    }
}

/// The micro-kernel in plain Rust, summing each k pair in the order `vdpbf16ps` does.
fn portable_kernel(k_pairs: usize, a: &[u32], b: &[u32], c: &mut [f32], tile: Tile) {
    let widen = |bits: u32| f32::from_bits(bits << 16);
    let mut acc = [[0f32; NR]; MR];
    for p in 0..k_pairs {
        let a_lanes = &a[p * MR..(p + 1) * MR];
        let b_lanes = &b[p * NR..(p + 1) * NR];
        for (acc_row, &a_pair) in acc.iter_mut().zip(a_lanes) {
            let (a_low, a_high) = (widen(a_pair & 0xFFFF), widen(a_pair >> 16));
            for (sum, &b_pair) in acc_row.iter_mut().zip(b_lanes) {
                *sum += a_low * widen(b_pair & 0xFFFF);
                *sum += a_high * widen(b_pair >> 16);
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

/// The AVX512-BF16 micro-kernel: a `12 × 32` f32 accumulator tile held in 24 registers.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
pub(crate) mod fast {
    use super::{PairRows, Tile, MR, NR};
    use std::arch::x86_64::{
        __m512, __m512bh, __m512i, _mm512_add_ps, _mm512_dpbf16_ps, _mm512_loadu_si512,
        _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_set1_epi32, _mm512_setzero_ps,
        _mm512_setzero_si512,
    };

    /// Runs [`super::row_tile`]'s fast kernel after checking every slice covers what it will
    /// touch (all `ROWS` rows of `a`), else the portable one.
    pub(super) fn row_tile<const ROWS: usize, const VECTORS: usize>(
        k_pairs: usize,
        a: PairRows<'_>,
        b: &[u32],
        c: &mut [f32],
        tile: Tile,
    ) {
        let a_needed = (ROWS - 1)
            .checked_mul(a.row_stride)
            .and_then(|start| start.checked_add(k_pairs));
        let sizes_ok = a_needed.is_some_and(|needed| a.pairs.len() >= needed)
            && b.len() >= k_pairs * 16 * VECTORS
            && tile.rows <= ROWS
            && tile.cols <= 16 * VECTORS
            && tile.fits_output(c.len());
        if !sizes_ok || !detected() {
            super::portable_row_tile::<ROWS, VECTORS>(k_pairs, a, b, c, tile);
            return;
        }
        // SAFETY: the CPU has AVX-512F and AVX512-BF16 (checked just above, cached by std);
        // `a` holds `ROWS` rows of `k_pairs` lanes `row_stride` apart, `b` `k_pairs` rows of
        // `16·VECTORS` lanes, and `c` covers `tile.rows` rows of `tile.cols` values
        // `row_stride` apart (all checked above), which is everything the kernel reads or
        // writes: its masked loads and stores touch only the first `tile.cols` lanes of the
        // first `tile.rows` rows.
        unsafe {
            row_tile_avx512::<ROWS, VECTORS>(
                k_pairs,
                a.pairs.as_ptr(),
                a.row_stride,
                b.as_ptr(),
                c.as_mut_ptr(),
                tile,
            )
        }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn row_tile_avx512<const ROWS: usize, const VECTORS: usize>(
        k_pairs: usize,
        a: *const u32,
        a_stride: usize,
        b: *const u32,
        c: *mut f32,
        tile: Tile,
    ) {
        let mut acc = [[_mm512_setzero_ps(); VECTORS]; ROWS];
        let mut b_vectors = [as_bh(_mm512_setzero_si512()); VECTORS];
        for p in 0..k_pairs {
            for (v, b_vector) in b_vectors.iter_mut().enumerate() {
                // SAFETY: `p < k_pairs` and `v < VECTORS`: inside `b`'s `k_pairs · 16·VECTORS`
                // lanes (checked by the caller).
                *b_vector =
                    as_bh(unsafe { _mm512_loadu_si512(b.add((p * VECTORS + v) * 16).cast()) });
            }
            for (r, acc_row) in acc.iter_mut().enumerate() {
                // SAFETY: `r < ROWS` and `p < k_pairs`: inside `a` (checked by the caller).
                let a_pair = as_bh(_mm512_set1_epi32(unsafe { *a.add(r * a_stride + p) } as i32));
                for (sum, &b_vector) in acc_row.iter_mut().zip(&b_vectors) {
                    *sum = _mm512_dpbf16_ps(*sum, a_pair, b_vector);
                }
            }
        }
        // SAFETY: the caller checked that `c` covers the tile.
        unsafe { store_tile(&acc, c, tile) }
    }

    /// Writes (or with `tile.accumulate` adds) the accumulators' top-left `tile.rows ×
    /// tile.cols` to `c`, rows `tile.row_stride` apart, with masked stores: the one epilogue of
    /// every AVX-512 micro-kernel here and in [`crate::gemm_f32`].
    ///
    /// Always inlined, into micro-kernels compiled for AVX-512F (a call would spill the 24
    /// accumulators to memory at the end of every tile).
    ///
    /// # Safety
    /// The CPU has AVX-512F, and `c` covers `tile.rows` rows of `tile.cols` values
    /// `tile.row_stride` apart ([`Tile::fits_output`]).
    #[inline(always)]
    pub(crate) unsafe fn store_tile<const ROWS: usize, const VECTORS: usize>(
        acc: &[[__m512; VECTORS]; ROWS],
        c: *mut f32,
        tile: Tile,
    ) {
        let mut masks = [0u16; VECTORS];
        for (v, mask) in masks.iter_mut().enumerate() {
            let lanes = tile.cols.saturating_sub(16 * v).min(16);
            *mask = ((1u32 << lanes) - 1) as u16;
        }
        for (r, acc_row) in acc.iter().enumerate().take(tile.rows) {
            for (v, &sum) in acc_row.iter().enumerate() {
                // SAFETY: row `r < tile.rows` and the masked lanes `< tile.cols` lie inside `c`
                // (the caller's contract); masked-off lanes are neither read nor written.
                unsafe {
                    let dst = c.add(r * tile.row_stride + 16 * v);
                    let value = if tile.accumulate {
                        _mm512_add_ps(_mm512_maskz_loadu_ps(masks[v], dst), sum)
                    } else {
                        sum
                    };
                    _mm512_mask_storeu_ps(dst, masks[v], value);
                }
            }
        }
    }

    pub(super) fn detected() -> bool {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bf16")
    }

    /// Runs the micro-kernel after checking every slice covers what it will touch.
    pub(super) fn kernel(k_pairs: usize, a: &[u32], b: &[u32], c: &mut [f32], tile: Tile) {
        if !tile.fits_panels([MR, NR], k_pairs, a.len(), b.len(), c.len()) || !detected() {
            super::portable_kernel(k_pairs, a, b, c, tile);
            return;
        }
        // SAFETY: the CPU has AVX-512F and AVX512-BF16 (checked just above, cached by std);
        // `a` holds `k_pairs·MR` and `b` `k_pairs·NR` lanes, and `c` covers `tile.rows` rows of
        // `tile.cols` values `row_stride` apart (all checked above), which is everything the
        // kernel reads or writes: its masked loads and stores touch only the first `tile.cols`
        // lanes of the first `tile.rows` rows.
        unsafe { kernel_avx512(k_pairs, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), tile) }
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    unsafe fn kernel_avx512(k_pairs: usize, a: *const u32, b: *const u32, c: *mut f32, tile: Tile) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for p in 0..k_pairs {
            // SAFETY: `p < k_pairs`, so lanes `p·NR .. p·NR + 32` of `b` and `p·MR .. p·MR + 12`
            // of `a` exist (the caller checked the lengths).
            let (b0, b1, a_row) = unsafe {
                let b_lanes = b.add(p * NR);
                (
                    as_bh(_mm512_loadu_si512(b_lanes.cast())),
                    as_bh(_mm512_loadu_si512(b_lanes.add(16).cast())),
                    a.add(p * MR),
                )
            };
            for (r, acc_row) in acc.iter_mut().enumerate() {
                // SAFETY: `r < MR`, inside this k pair's `MR` lanes of `a`.
                let a_pair = as_bh(_mm512_set1_epi32(unsafe { *a_row.add(r) } as i32));
                acc_row[0] = _mm512_dpbf16_ps(acc_row[0], a_pair, b0);
                acc_row[1] = _mm512_dpbf16_ps(acc_row[1], a_pair, b1);
            }
        }
        // SAFETY: the caller checked that `c` covers the tile.
        unsafe { store_tile(&acc, c, tile) }
    }

    /// The same 512 bits read as 32 bf16 values.
    #[inline(always)]
    fn as_bh(bits: __m512i) -> __m512bh {
        // SAFETY: both are plain 512-bit vectors with no invalid bit patterns.
        unsafe { std::mem::transmute::<__m512i, __m512bh>(bits) }
    }
}

/// Non-x86 targets have no `vdpbf16ps`: the portable kernel is all there is.
#[cfg(not(target_arch = "x86_64"))]
mod fast {
    use super::{PairRows, Tile};

    pub(super) fn detected() -> bool {
        false
    }

    pub(super) fn row_tile<const ROWS: usize, const VECTORS: usize>(
        k_pairs: usize,
        a: PairRows<'_>,
        b: &[u32],
        c: &mut [f32],
        tile: Tile,
    ) {
        super::portable_row_tile::<ROWS, VECTORS>(k_pairs, a, b, c, tile);
    }

    pub(super) fn kernel(k_pairs: usize, a: &[u32], b: &[u32], c: &mut [f32], tile: Tile) {
        super::portable_kernel(k_pairs, a, b, c, tile);
    }
}

/// How a kernel's matrix products multiply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Products {
    /// In the input's precision: f32 inputs (and 16-bit weights, widened exactly) multiply in
    /// f32; bf16 inputs multiply in bf16 where the CPU can.
    #[default]
    AsInput,
    /// Both operands rounded to bf16, products summed in f32, where the CPU multiplies bf16
    /// natively ([`bf16_compute_available`]); otherwise as [`Products::AsInput`]. Activations
    /// stay f32 around the product (as PyTorch's CPU autocast keeps norms and softmax in f32).
    /// A permission rather than a promise: 3×3 convolutions that take the Winograd path
    /// multiply in f32 there (five times fewer multiplies; within bf16's error and closer to f32).
    Bf16,
}

/// Whether this CPU multiplies bf16 natively (AVX512-BF16, detected at run time), so bf16
/// compute is faster than f32 here: [`crate::conv2d`] on bf16 tensors uses it then.
pub fn bf16_compute_available() -> bool {
    available()
}

/// `a·b` for 2-D CPU tensors `a` `[M, K]` and `b` `[K, N]` in any float dtype, both rounded to
/// bf16, products summed in f32; the result is f32 `[M, N]`. Runs the portable kernel (slowly)
/// where [`bf16_compute_available`] is false.
pub fn bf16_matmul(
    a: &candle_core::Tensor,
    b: &candle_core::Tensor,
) -> crate::Result<candle_core::Tensor> {
    const OP: &str = "bf16_matmul";
    use crate::KernelError;
    use candle_core::DType;
    if !a.device().is_cpu() {
        return Err(KernelError::NotOnCpu { op: OP, input: "a" });
    }
    if !b.device().is_cpu() {
        return Err(KernelError::NotOnCpu { op: OP, input: "b" });
    }
    let (m, k) = a.dims2().map_err(|_| KernelError::Shape {
        op: OP,
        input: "a",
        actual: a.dims().to_vec(),
        expected: "[M, K]".to_string(),
    })?;
    let n = match b.dims() {
        &[rows, cols] if rows == k => cols,
        other => {
            return Err(KernelError::Shape {
                op: OP,
                input: "b",
                actual: other.to_vec(),
                expected: format!("[{k}, N]"),
            })
        }
    };
    let bad_views = || KernelError::Shape {
        op: OP,
        input: "a",
        actual: a.dims().to_vec(),
        expected: "a contiguous matrix".to_string(),
    };
    let mut out = vec![0f32; m * n];
    let dst = MatMut {
        data: &mut out,
        rows: m,
        cols: n,
        row_stride: n,
        col_stride: 1,
    };
    fn view(data: &[f32], rows: usize, cols: usize) -> MatRef<'_> {
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }
    let multiplied = if a.dtype() == DType::BF16 && b.dtype() == DType::BF16 {
        // Already bf16: packed bit for bit, nothing rounded.
        let a_values = a.flatten_all()?.to_vec1::<half::bf16>()?;
        let b_values = b.flatten_all()?.to_vec1::<half::bf16>()?;
        let packed = PackedLhs::from_bf16(&a_values, m, k).ok_or_else(bad_views)?;
        let rhs = Bf16Rows {
            data: &b_values,
            rows: k,
            cols: n,
        };
        if rhs.data.len() != k * n {
            return Err(bad_views());
        }
        matmul_bf16(dst, &packed, &rhs, false)
    } else {
        let to_f32 = |t: &candle_core::Tensor| -> crate::Result<Vec<f32>> {
            Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let (a_values, b_values) = (to_f32(a)?, to_f32(b)?);
        let packed = PackedLhs::new(view(&a_values, m, k)).ok_or_else(bad_views)?;
        let rhs = F32Rows::new(view(&b_values, k, n)).ok_or_else(bad_views)?;
        matmul_bf16(dst, &packed, &rhs, false)
    };
    if !multiplied {
        return Err(bad_views());
    }
    Ok(candle_core::Tensor::from_vec(
        out,
        (m, n),
        &candle_core::Device::Cpu,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_to_bf16_matches_half() {
        for value in [
            0.0f32,
            -0.0,
            1.0,
            // Exact ties: down to the even 1.0, and up to the even 1 + 2⁻⁶.
            1.0 + 2f32.powi(-8),
            1.0 + 2f32.powi(-7) + 2f32.powi(-8),
            -3.3e-3,
            65504.0,
            3.0e38,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e-40,
        ] {
            assert_eq!(
                bf16_bits(value),
                u32::from(half::bf16::from_f32(value).to_bits()),
                "{value}"
            );
        }
        assert!(f32::from_bits(bf16_bits(f32::NAN) << 16).is_nan());
        assert!(f32::from_bits(bf16_bits(-f32::NAN) << 16).is_nan());
    }

    fn row_tile_case<const ROWS: usize, const VECTORS: usize>(k_pairs: usize, cols: usize) {
        let lanes = |count: usize, seed: u32| -> Vec<u32> {
            (0..count as u32)
                .map(|i| {
                    let x = ((i.wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0;
                    pair(x, 0.25 - x)
                })
                .collect()
        };
        let a_stride = k_pairs + 3;
        let a = lanes(ROWS * a_stride, 5);
        let b = lanes(k_pairs * 16 * VECTORS, 9);
        let row_stride = 16 * VECTORS + 5;
        let tile = Tile {
            rows: ROWS - 1,
            cols,
            row_stride,
            accumulate: true,
        };
        let mut portable = vec![1f32; ROWS * row_stride];
        let mut fast = portable.clone();
        let a = PairRows {
            pairs: &a,
            row_stride: a_stride,
        };
        portable_row_tile::<ROWS, VECTORS>(k_pairs, a, &b, &mut portable, tile);
        row_tile::<ROWS, VECTORS>(k_pairs, a, &b, &mut fast, tile);
        // The exact f64 sum of the same bf16 products bounds both kernels.
        let widen = |bits: u32| f64::from(f32::from_bits(bits << 16));
        for r in 0..ROWS {
            for n in 0..row_stride {
                let i = r * row_stride + n;
                if r >= tile.rows || n >= cols {
                    assert_eq!(fast[i], 1.0, "lane {i} outside the tile was written");
                    assert_eq!(portable[i], 1.0, "lane {i} outside the tile was written");
                    continue;
                }
                let mut want = 1.0f64;
                for p in 0..k_pairs {
                    let (x, y) = (a.pairs[r * a_stride + p], b[p * 16 * VECTORS + n]);
                    want += widen(x & 0xFFFF) * widen(y & 0xFFFF) + widen(x >> 16) * widen(y >> 16);
                }
                let bound = 2.0 * k_pairs as f64 * f64::from(f32::EPSILON) * (1.0 + want.abs());
                assert!(
                    (f64::from(fast[i]) - want).abs() <= bound,
                    "fast {i}: {} vs {want}",
                    fast[i]
                );
                assert!(
                    (f64::from(portable[i]) - want).abs() <= bound,
                    "portable {i}"
                );
            }
        }
    }

    #[test]
    fn row_tiles_of_every_shape_match_an_exact_sum() {
        row_tile_case::<12, 2>(20, 29);
        row_tile_case::<8, 3>(37, 40);
        row_tile_case::<6, 4>(5, 64);
        row_tile_case::<4, 5>(64, 75);
    }

    #[test]
    fn packing_into_a_dirty_reused_buffer_still_zeroes_the_padding() {
        let mut dirty = PackedBuffer::take(4096);
        dirty.as_mut_slice().fill(u32::MAX);
        drop(dirty);
        // 13 rows: the second panel has 11 rows of padding; 5 columns: an odd last k.
        let values: Vec<half::bf16> = (0..13 * 5)
            .map(|i| half::bf16::from_f32(i as f32))
            .collect();
        let packed = PackedLhs::from_bf16(&values, 13, 5).unwrap();
        let second = packed.panel(1);
        for p in 0..3 {
            for r in 0..MR {
                let want = if r == 0 {
                    let at = |k: usize| {
                        if k < 5 {
                            u32::from(values[12 * 5 + k].to_bits())
                        } else {
                            0
                        }
                    };
                    at(2 * p) | (at(2 * p + 1) << 16)
                } else {
                    0
                };
                assert_eq!(second[p * MR + r], want, "pair {p} row {r}");
            }
        }
    }

    #[test]
    fn fast_and_portable_kernels_agree() {
        let k_pairs = 37;
        let lanes = |count: usize, seed: u32| -> Vec<u32> {
            (0..count as u32)
                .map(|i| {
                    let x = ((i.wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0;
                    pair(x, 0.5 - x)
                })
                .collect()
        };
        let (a, b) = (lanes(k_pairs * MR, 7), lanes(k_pairs * NR, 11));
        let tile = Tile {
            rows: 11,
            cols: 29,
            row_stride: 40,
            accumulate: true,
        };
        let mut portable = vec![1f32; 11 * 40];
        let mut fast = portable.clone();
        portable_kernel(k_pairs, &a, &b, &mut portable, tile);
        fast::kernel(k_pairs, &a, &b, &mut fast, tile);
        for (i, (p, f)) in portable.iter().zip(&fast).enumerate() {
            let column = i % 40;
            if column >= 29 {
                assert_eq!(*f, 1.0, "lane {i} outside the tile was written");
            }
            assert!((p - f).abs() <= 1e-4, "lane {i}: {p} vs {f}");
        }
    }
}
