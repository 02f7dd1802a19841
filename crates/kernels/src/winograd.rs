//! Winograd F(m×m, 3×3) convolution for the 3×3, stride-1, padding-1 layers that make up most of
//! a VAE decoder's work and the outer level of a UNet's. Each m×m output tile comes from an α×α
//! input tile (α = m + 2) with α² multiplies per channel pair instead of 9m²: 2.25× fewer for
//! F(2,3), 4× for F(4,3). The weights are transformed once per call into α²
//! matrices `U_ξ` (O × C, packed for the f32 micro-kernel of [`crate::gemm_f32`]), the input
//! tiles into α² matrices `V_ξ` (C × tiles), the α² products `U_ξ·V_ξ` run one per task, and
//! the output transform folds them back into pixels. Tiles go in bands of tile rows sized so a
//! band's transformed input and products stay in the last-level cache; the transforms run
//! separably (columns, then rows) over whole tile rows so they vectorise.
//!
//! The transforms are exact in real arithmetic; in f32, F(2,3)'s coefficients (0, ±1, ±½) add
//! little to a direct convolution's rounding, F(4,3)'s about ten times that: still ~1e-5 of the
//! values, a hundredth of an 8-bit level, so f32 computations take F(4,3) too and their images
//! stay ComfyUI's (see [`Layer::variant`]). The products are f32 whatever the computation: in
//! bf16 the transforms would amplify bf16's rounding instead. F(6,3) (5.1× fewer multiplies)
//! was measured slower than F(4,3) on every VAE and UNet layer here (its denser 8×8 transforms
//! and larger tiles cost more than the products save) and is not built.

use std::ops::Range;

use rayon::prelude::*;

use crate::element::Element;
use crate::gemm_f32::{multiply, pack_rhs, panels, PackedRows, MR, NR};
use crate::scratch::{with_scratch, Scratch};
use crate::threads::install;

/// The transform matrices of F(M, 3), `A = M + 2`: input `bt` (A × A), filter `g` (A × 3),
/// output `at` (M × A), so that a 1-D correlation of an A-long input `d` with a 3-tap filter
/// `k` is `at · ((g·k) ⊙ (bt·d))`.
pub(crate) struct Transform<const M: usize, const A: usize> {
    bt: [[f32; A]; A],
    g: [[f64; 3]; A],
    at: [[f32; A]; M],
}

/// F(2,3): 16 products per 4 outputs (2.25× fewer than direct); coefficients 0, ±1, ±½.
pub(crate) const F2: Transform<2, 4> = Transform {
    bt: [
        [1.0, 0.0, -1.0, 0.0],
        [0.0, 1.0, 1.0, 0.0],
        [0.0, -1.0, 1.0, 0.0],
        [0.0, 1.0, 0.0, -1.0],
    ],
    g: [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ],
    at: [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]],
};

/// F(4,3): 36 products per 16 outputs (4× fewer than direct), on the points 0, 1, −1, 2, −½
/// and ∞ rather than the usual 0, ±1, ±2, ∞: smaller input coefficients (at most 2.5, not 5)
/// and a third of the rounding error in f32 (measured against an f64 direct convolution).
pub(crate) const F4: Transform<4, 6> = Transform {
    bt: [
        [1.0, 1.5, -2.0, -1.5, 1.0, 0.0],
        [0.0, -1.0, -2.5, -0.5, 1.0, 0.0],
        [0.0, 1.0, 0.5, -2.5, 1.0, 0.0],
        [0.0, -0.5, -1.0, 0.5, 1.0, 0.0],
        [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
        [0.0, 1.0, 1.5, -2.0, -1.5, 1.0],
    ],
    g: [
        [1.0, 0.0, 0.0],
        [-1.0 / 3.0, -1.0 / 3.0, -1.0 / 3.0],
        [1.0 / 3.0, -1.0 / 3.0, 1.0 / 3.0],
        [1.0 / 15.0, 2.0 / 15.0, 4.0 / 15.0],
        [-16.0 / 15.0, 8.0 / 15.0, -4.0 / 15.0],
        [0.0, 0.0, 1.0],
    ],
    at: [
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -0.5, 0.0],
        [0.0, 1.0, 1.0, 4.0, 0.25, 0.0],
        [0.0, 1.0, -1.0, 8.0, -0.125, 1.0],
    ],
};

/// A variant's transforms as compile-time constants: the blocked transforms below unroll over
/// them, so zero coefficients vanish and ±1 become plain additions.
pub(crate) trait Coefficients<const M: usize, const A: usize> {
    const TRANSFORM: Transform<M, A>;
}

/// [`F2`] as a type.
pub(crate) struct F23;
/// [`F4`] as a type.
pub(crate) struct F43;

impl Coefficients<2, 4> for F23 {
    const TRANSFORM: Transform<2, 4> = F2;
}
impl Coefficients<4, 6> for F43 {
    const TRANSFORM: Transform<4, 6> = F4;
}

/// Tiles one blocked transform handles side by side: one 16-lane f32 vector per value.
const LANES: usize = 16;
type Lanes = [f32; LANES];

/// Elements of the calling thread's band buffer (transformed input plus products), 16 MiB:
/// with the weights' transform it stays within the 32 MiB last-level cache of the machines
/// measured, and a band at 512² still holds a few tile rows.
const BAND_ELEMENTS: usize = 1 << 22;

/// The most transformed-weight elements held at once when a layer takes several bands (48 MiB
/// in f32): the VAE's 512-channel layers (F(4,3): 9.4 M) fit, a 1280-channel UNet layer at a
/// resolution that needs bands does not and keeps the im2col path.
const MAX_HELD_WEIGHTS: usize = 12 << 20;

/// The fewest input and output channels for which the transforms pay for themselves.
const MIN_CHANNELS: usize = 16;

/// The fewest tiles (over all images) for which the weights' transform, done once per call,
/// pays for itself: with fewer, the small images of a UNet's inner levels run faster on im2col
/// (measured with `cargo bench -p kiln-kernels -- winograd`). Approximate computations compete
/// with bf16 im2col products, twice as fast as f32 ones, and need more.
const MIN_TILES: usize = 256;
const MIN_TILES_APPROXIMATE: usize = 400;

/// One 3×3, stride-1, padding-1 convolution's sizes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layer {
    pub(crate) batch: usize,
    pub(crate) in_channels: usize,
    pub(crate) out_channels: usize,
    pub(crate) height: usize,
    pub(crate) width: usize,
}

/// Which Winograd variant a layer runs, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Variant {
    /// F(2,3).
    F2,
    /// F(4,3).
    F4,
}

/// How a layer's tiles split into bands (whole tile rows over all images).
#[derive(Clone, Copy, Debug)]
struct Bands {
    tiles_x: usize,
    tiles_y: usize,
    /// Tile rows per band.
    rows: usize,
    count: usize,
}

impl Layer {
    fn bands(&self, m: usize, alpha: usize) -> Bands {
        let tiles_x = self.width.div_ceil(m);
        let tiles_y = self.height.div_ceil(m);
        let tile_rows = self.batch * tiles_y;
        let per_row = alpha * alpha * (self.in_channels + self.out_channels) * tiles_x;
        let rows = (BAND_ELEMENTS / per_row.max(1)).clamp(1, tile_rows.max(1));
        Bands {
            tiles_x,
            tiles_y,
            rows,
            count: tile_rows.div_ceil(rows),
        }
    }

    /// Whether F(m,3) suits this layer: enough channels to amortise the transforms, and either
    /// one band (weights transformed one matrix at a time) or weights small enough to hold.
    fn suits(&self, m: usize, alpha: usize, min_tiles: usize) -> bool {
        let weights = alpha * alpha * self.in_channels * self.out_channels;
        let bands = self.bands(m, alpha);
        self.in_channels >= MIN_CHANNELS
            && self.out_channels >= MIN_CHANNELS
            && self.batch * bands.tiles_x * bands.tiles_y >= min_tiles
            && self.height >= m
            && self.width >= m
            && (bands.count == 1 || weights <= MAX_HELD_WEIGHTS)
    }

    /// The variant for this layer, or none (im2col; also on CPUs without AVX-512F for now).
    /// F(4,3) wherever it suits, f32 computations included: its error, about ten times a
    /// direct f32 convolution's, is still ~1e-5 of the values, a hundredth of an 8-bit level —
    /// a real-size SD1.5 image (f32, one euler step, then the VAE) differs from ComfyUI's f32
    /// one in 0.079 % of its 8-bit values, each by one, against 0.060 % with F(2,3) throughout.
    /// F(2,3) takes the f32 layers too small for F(4,3)'s tiles; approximate computations
    /// (16-bit inputs, bf16 products) compete with im2col's bf16 products instead, twice as
    /// fast as f32 ones, and need more tiles.
    pub(crate) fn variant(&self, approximate: bool) -> Option<Variant> {
        let min_tiles = if approximate {
            MIN_TILES_APPROXIMATE
        } else {
            MIN_TILES
        };
        // Without the fast f32 micro-kernel the products would be slower than im2col's gemm.
        if !crate::gemm_f32::available() {
            None
        } else if self.suits(4, 6, min_tiles) {
            Some(Variant::F4)
        } else if !approximate && self.suits(2, 4, min_tiles) {
            Some(Variant::F2)
        } else {
            None
        }
    }
}

/// `out = conv3×3(x, w) + bias` for all images of `x` (`[B, C, H, W]`) and `w` (`[O, C, 3, 3]`),
/// written over every element of `out` (`[B, O, H, W]`), the products in f32 whatever the
/// element types (in bf16, F(4,3)'s transforms would amplify the rounding tenfold). Returns false when a product's views disagree (a sizing bug, not an input error:
/// callers checked the shapes).
#[allow(clippy::too_many_arguments)]
pub(crate) fn convolve<T: Element, W: Element>(
    variant: Variant,
    layer: Layer,
    x: &[T],
    w: &[W],
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> bool {
    match variant {
        Variant::F2 => Winograd::<F23, 2, 4>::new(layer).convolve(x, w, bias, out),
        Variant::F4 => Winograd::<F43, 4, 6>::new(layer).convolve(x, w, bias, out),
    }
}

struct Winograd<C, const M: usize, const A: usize> {
    layer: Layer,
    coefficients: std::marker::PhantomData<fn() -> C>,
}

/// Transformed weights for `count` ξ from `first`, packed for the micro-kernel: panel `i` (output
/// channels `i·MR..`), ξ `first + local`, input channel `c`, row `r` at
/// `values[((i · count + local) · C + c) · MR + r]`.
struct Prepared {
    values: Vec<f32>,
    first: usize,
    count: usize,
}

impl Prepared {
    /// `U_ξ` as the product's left operand, if this holds ξ.
    fn rows(&self, xi: usize, in_channels: usize) -> Option<PackedRows<'_>> {
        let local = xi.checked_sub(self.first).filter(|&l| l < self.count)?;
        Some(PackedRows {
            values: self.values.get(local * in_channels * MR..)?,
            panel_stride: self.count * in_channels * MR,
        })
    }
}

impl<C: Coefficients<M, A>, const M: usize, const A: usize> Winograd<C, M, A> {
    fn new(layer: Layer) -> Self {
        Self {
            layer,
            coefficients: std::marker::PhantomData,
        }
    }

    fn convolve<T: Element, W: Element>(
        &self,
        x: &[T],
        w: &[W],
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) -> bool {
        let l = self.layer;
        let (c, o) = (l.in_channels, l.out_channels);
        let xis = A * A;
        let bands = l.bands(M, A);
        let plane = l.height * l.width;
        if x.len() != l.batch * c * plane
            || w.len() != o * c * 9
            || out.len() != l.batch * o * plane
        {
            return false;
        }
        let band_tiles = bands.rows * bands.tiles_x;
        // Each output channel's planes, one per image, so output tasks own them outright.
        let mut planes: Vec<Vec<&mut [f32]>> =
            (0..o).map(|_| Vec::with_capacity(l.batch)).collect();
        for (index, plane_out) in out.chunks_exact_mut(plane.max(1)).enumerate() {
            planes[index % o].push(plane_out);
        }
        // The weights widened and laid out `[O][tap][C]` once, so each ξ's transform is a
        // vectorised sum of nine rows (the im2col path's widened weight, same size).
        // Buffers live on the calling thread (as the im2col path's); the work runs on the pool.
        let len = xis * (c + o) * band_tiles;
        with_scratch(Scratch::Widened, 9 * o * c, |taps| {
            with_scratch(Scratch::Columns, len, |buffer| {
                install(|| self.run(x, w, bias, &bands, taps, buffer, &mut planes))
            })
        })
    }

    /// [`Self::convolve`] with its buffers: `taps` for the widened weights, `buffer` for a band's
    /// transformed input and products.
    #[allow(clippy::too_many_arguments)]
    fn run<T: Element, W: Element>(
        &self,
        x: &[T],
        w: &[W],
        bias: Option<&[f32]>,
        bands: &Bands,
        taps: &mut [f32],
        buffer: &mut [f32],
        planes: &mut [Vec<&mut [f32]>],
    ) -> bool {
        let l = self.layer;
        let (c, o) = (l.in_channels, l.out_channels);
        let xis = A * A;
        let band_tiles = bands.rows * bands.tiles_x;
        lay_out_taps(w, o, c, taps);
        let coefficients = self.coefficients();
        let held = (bands.count > 1).then(|| self.prepare(taps, &coefficients, 0..xis));
        let (v_all, m_all) = buffer.split_at_mut(xis * c * band_tiles);
        let tile_rows = l.batch * bands.tiles_y;
        for band in 0..bands.count {
            let first_row = band * bands.rows;
            let rows = bands.rows.min(tile_rows - first_row);
            let tiles = rows * bands.tiles_x;
            let v = &mut v_all[..xis * c * tiles];
            let m = &mut m_all[..xis * o * tiles];
            self.transform_input(x, bands, first_row..first_row + rows, v);
            // One product per task: α² independent products share the pool without a barrier
            // between them.
            let multiplied = m
                .par_chunks_mut(o * tiles)
                .enumerate()
                .map_init(Vec::new, |packed_v, (xi, m_xi)| {
                    let single;
                    let prepared = match &held {
                        Some(held) => held,
                        None => {
                            single = self.prepare(taps, &coefficients, xi..xi + 1);
                            &single
                        }
                    };
                    self.multiply(prepared, xi, v, m_xi, tiles, packed_v)
                })
                .reduce(|| true, |a, b| a && b);
            if !multiplied {
                return false;
            }
            self.transform_output(m, bands, first_row..first_row + rows, bias, planes);
        }
        true
    }

    /// `coefficients[ξ][tap]`: the weight of 3×3 tap `tap` in `U_ξ` (`g[i][ky]·g[j][kx]` for
    /// ξ = (i, j), products taken in f64 so F(4,3)'s sixths round once).
    fn coefficients(&self) -> Vec<[f32; 9]> {
        let g = &C::TRANSFORM.g;
        (0..A * A)
            .map(|xi| {
                let (i, j) = (xi / A, xi % A);
                let mut taps = [0f32; 9];
                for (tap, value) in taps.iter_mut().enumerate() {
                    *value = (g[i][tap / 3] * g[j][tap % 3]) as f32;
                }
                taps
            })
            .collect()
    }

    /// The transformed weights `U_ξ` for ξ in `range`, from the `[O][tap][C]` taps, packed.
    fn prepare(&self, taps: &[f32], coefficients: &[[f32; 9]], range: Range<usize>) -> Prepared {
        let (o, c) = (self.layer.out_channels, self.layer.in_channels);
        let count = range.len();
        let mut values = vec![0f32; panels(o) * count * c * MR];
        values
            .par_chunks_mut(count * c * MR)
            .enumerate()
            .for_each_init(
                || vec![0f32; c],
                |row, (panel, packed)| {
                    crate::simd::dispatch(
                        #[inline(always)]
                        || {
                            for r in 0..MR.min(o - panel * MR) {
                                let taps = &taps[(panel * MR + r) * 9 * c..][..9 * c];
                                for (local, packed_xi) in
                                    packed.chunks_exact_mut(c * MR).enumerate()
                                {
                                    let coefficient = &coefficients[range.start + local];
                                    row.fill(0.0);
                                    for (tap, &weight) in coefficient.iter().enumerate() {
                                        if weight != 0.0 {
                                            let tap_row = &taps[tap * c..(tap + 1) * c];
                                            for (sum, &value) in row.iter_mut().zip(tap_row) {
                                                *sum += weight * value;
                                            }
                                        }
                                    }
                                    for (lanes, &value) in packed_xi.chunks_exact_mut(MR).zip(&*row)
                                    {
                                        lanes[r] = value;
                                    }
                                }
                            }
                        },
                    );
                },
            );
        Prepared {
            values,
            first: range.start,
            count,
        }
    }

    /// `m_ξ = U_ξ · V_ξ` for one ξ over the band's `tiles` tiles (`v` is `[C][ξ][tiles]`,
    /// `m_xi` `[O][tiles]`), on this thread; `packed_v` is its buffer for `V_ξ` packed.
    fn multiply(
        &self,
        prepared: &Prepared,
        xi: usize,
        v: &[f32],
        m_xi: &mut [f32],
        tiles: usize,
        packed_v: &mut Vec<f32>,
    ) -> bool {
        let (o, c) = (self.layer.out_channels, self.layer.in_channels);
        let Some(u) = prepared.rows(xi, c) else {
            return false;
        };
        packed_v.resize(tiles.div_ceil(NR) * c * NR, 0.0);
        let Some(v_xi) = v.get(xi * tiles..) else {
            return false;
        };
        pack_rhs(v_xi, c, tiles, A * A * tiles, packed_v)
            && multiply(u, packed_v, [o, c, tiles], m_xi, tiles)
    }

    /// `V` for tile rows `rows` (over all images): `v[c][ξ][t]`, `t` the tile's index in the
    /// band. Per channel and tile row, the A input rows are read deinterleaved by column phase
    /// (`d[row][phase][q]` = column `q·M + phase − 1`), so the tile column `k` of 16
    /// neighbouring tiles is one vector; per block of 16 tiles, `bt` combines those vectors down
    /// the columns and then across, in registers, and each ξ's 16 values are stored once.
    fn transform_input<T: Element>(
        &self,
        x: &[T],
        bands: &Bands,
        rows: Range<usize>,
        v: &mut [f32],
    ) {
        let l = self.layer;
        let (height, width) = (l.height, l.width);
        let tiles_x = bands.tiles_x;
        let tiles = rows.len() * tiles_x;
        let span = tiles_x + 1;
        let phase_len = M * span;
        v.par_chunks_mut(A * A * tiles).enumerate().for_each_init(
            || (vec![0f32; A * phase_len], vec![0f32; phase_len]),
            |(d, padded), (channel, v_c)| {
                // Compiled for the CPU's widest vectors (the crate's baseline is SSE2).
                crate::simd::dispatch(
                    #[inline(always)]
                    || {
                        for (local_row, tile_row) in rows.clone().enumerate() {
                            let (image, ty) = (tile_row / bands.tiles_y, tile_row % bands.tiles_y);
                            let start = (image * l.in_channels + channel) * height * width;
                            let plane = &x[start..start + height * width];
                            for (i, d_row) in d.chunks_exact_mut(phase_len).enumerate() {
                                let y = (ty * M + i).checked_sub(1).filter(|&y| y < height);
                                match y {
                                    None => d_row.fill(0.0),
                                    Some(y) => {
                                        let source = &plane[y * width..(y + 1) * width];
                                        deinterleave::<T, M>(source, padded, d_row);
                                    }
                                }
                            }
                            let row_start = local_row * tiles_x;
                            let row_v = RowOfTiles {
                                tiles,
                                start: row_start,
                            };
                            for (first, count) in blocks(tiles_x) {
                                // Whole blocks compile with constant sizes (vector moves).
                                if count == LANES {
                                    Self::input_block::<true>(d, span, first, LANES, v_c, row_v);
                                } else {
                                    Self::input_block::<false>(d, span, first, count, v_c, row_v);
                                }
                            }
                        }
                    },
                );
            },
        );
    }

    /// One block of `count` tiles (all [`LANES`] when `WHOLE`) from first tile `first` of a
    /// tile row: column `k` of the tiles is one vector per deinterleaved input row of `d`
    /// (`span` per phase); `bt` combines them down the rows, then across, in registers, and
    /// each ξ's lanes land in `v_c[ξ · tiles + row.start + first..]`.
    #[inline(always)]
    fn input_block<const WHOLE: bool>(
        d: &[f32],
        span: usize,
        first: usize,
        count: usize,
        v_c: &mut [f32],
        row: RowOfTiles,
    ) {
        let count = if WHOLE { LANES } else { count };
        let phase_len = M * span;
        // r[i][k]: tile column k combined down the rows.
        let mut r = [[[0f32; LANES]; A]; A];
        for k in 0..A {
            let from = (k % M) * span + k / M + first;
            let mut column = [[0f32; LANES]; A];
            for (i, lanes) in column.iter_mut().enumerate() {
                *lanes = load_lanes(d, i * phase_len + from, count);
            }
            for (i, r_i) in r.iter_mut().enumerate() {
                r_i[k] = combine_lanes(&C::TRANSFORM.bt[i], &column);
            }
        }
        for (i, r_i) in r.iter().enumerate() {
            for j in 0..A {
                let lanes = combine_lanes(&C::TRANSFORM.bt[j], r_i);
                let at = (i * A + j) * row.tiles + row.start + first;
                store_lanes(&lanes, v_c, at, count);
            }
        }
    }

    /// One block of `count` tiles (all [`LANES`] when `WHOLE`) of output channel `channel` from
    /// first tile `first` of a tile row: the A×A products of each tile (`m[ξ][o][t]`, `o`
    /// channels) folded by `at` down the columns, then across, in registers, plus `offset`
    /// (the bias); pixel (a, b) of tile tx lands in `y[(a · M + b) · tiles_x + tx]`.
    #[inline(always)]
    fn output_block<const WHOLE: bool>(
        m: &[f32],
        o: usize,
        (channel, first, offset): (usize, usize, f32),
        count: usize,
        row: RowOfTiles,
        y: &mut [f32],
        tiles_x: usize,
    ) {
        let count = if WHOLE { LANES } else { count };
        // q[a][j]: product column j folded down the rows.
        let mut q = [[[0f32; LANES]; A]; M];
        for j in 0..A {
            let mut column = [[0f32; LANES]; A];
            for (i, lanes) in column.iter_mut().enumerate() {
                let at = ((i * A + j) * o + channel) * row.tiles + row.start + first;
                *lanes = load_lanes(m, at, count);
            }
            for (a, q_a) in q.iter_mut().enumerate() {
                q_a[j] = combine_lanes(&C::TRANSFORM.at[a], &column);
            }
        }
        for (a, q_a) in q.iter().enumerate() {
            for b in 0..M {
                let mut lanes = combine_lanes(&C::TRANSFORM.at[b], q_a);
                for value in &mut lanes {
                    *value += offset;
                }
                store_lanes(&lanes, y, (a * M + b) * tiles_x + first, count);
            }
        }
    }

    /// Pixels from the products `m` (`[ξ][O][t]`) of tile rows `rows`: per output channel, tile
    /// row and block of 16 tiles, `at` folds the A×A products of each tile into its M×M pixels
    /// in registers (down the columns, then across), plus the bias; the rows of pixels are then
    /// woven into the output (tiles past the image's edge cut off).
    fn transform_output(
        &self,
        m: &[f32],
        bands: &Bands,
        rows: Range<usize>,
        bias: Option<&[f32]>,
        planes: &mut [Vec<&mut [f32]>],
    ) {
        let l = self.layer;
        let (height, width) = (l.height, l.width);
        let tiles_x = bands.tiles_x;
        let tiles = rows.len() * tiles_x;
        let o = l.out_channels;
        planes.par_iter_mut().enumerate().for_each_init(
            || vec![0f32; M * M * tiles_x],
            |y, (channel, planes)| {
                let offset = bias.map_or(0.0, |b| b[channel]);
                crate::simd::dispatch(
                    #[inline(always)]
                    || {
                        for (local_row, tile_row) in rows.clone().enumerate() {
                            let (image, ty) = (tile_row / bands.tiles_y, tile_row % bands.tiles_y);
                            let row_start = local_row * tiles_x;
                            let row_m = RowOfTiles {
                                tiles,
                                start: row_start,
                            };
                            for (first, count) in blocks(tiles_x) {
                                let place = (channel, first, offset);
                                if count == LANES {
                                    Self::output_block::<true>(
                                        m, o, place, LANES, row_m, y, tiles_x,
                                    );
                                } else {
                                    Self::output_block::<false>(
                                        m, o, place, count, row_m, y, tiles_x,
                                    );
                                }
                            }
                            let Some(plane) = planes.get_mut(image) else {
                                continue;
                            };
                            for a in 0..M {
                                let row = ty * M + a;
                                if row >= height {
                                    break;
                                }
                                let out_row = &mut plane[row * width..(row + 1) * width];
                                let y_rows = &y[a * M * tiles_x..(a + 1) * M * tiles_x];
                                interleave::<M>(y_rows, tiles_x, out_row);
                            }
                        }
                    },
                );
            },
        );
    }
}

/// The blocks of [`LANES`] tiles covering a row of `tiles_x`, as (first tile, tiles): whole
/// blocks only when the row has that many — the last one then overlaps its neighbour and
/// recomputes a few tiles rather than take the slow partial path — else one partial block.
fn blocks(tiles_x: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..tiles_x.div_ceil(LANES)).map(move |block| {
        if tiles_x < LANES {
            (0, tiles_x)
        } else {
            ((block * LANES).min(tiles_x - LANES), LANES)
        }
    })
}

/// `count` (at most [`LANES`]) values of `source` from `start` as lanes, the rest zero. A whole
/// block is one vector load; only a row's last, partial block copies value by value.
#[inline(always)]
fn load_lanes(source: &[f32], start: usize, count: usize) -> Lanes {
    if count == LANES {
        if let Some(whole) = source
            .get(start..start + LANES)
            .and_then(|values| <&Lanes>::try_from(values).ok())
        {
            return *whole;
        }
    }
    let mut lanes = [0f32; LANES];
    for (lane, &value) in lanes.iter_mut().zip(&source[start..start + count]) {
        *lane = value;
    }
    lanes
}

/// The first `count` lanes stored to `dst` from `start` (one vector store for a whole block).
#[inline(always)]
fn store_lanes(lanes: &Lanes, dst: &mut [f32], start: usize, count: usize) {
    if count == LANES {
        if let Some(whole) = dst
            .get_mut(start..start + LANES)
            .and_then(|values| <&mut Lanes>::try_from(values).ok())
        {
            *whole = *lanes;
            return;
        }
    }
    for (value, &lane) in dst[start..start + count].iter_mut().zip(lanes) {
        *value = lane;
    }
}

/// `Σ_k coefficients[k] · rows[k]`, lane by lane. The coefficients are a variant's constants:
/// the loop unrolls, zero terms drop out and ±1 multiply by nothing.
#[inline(always)]
fn combine_lanes<const N: usize>(coefficients: &[f32; N], rows: &[Lanes; N]) -> Lanes {
    let mut sum = [0f32; LANES];
    let mut started = false;
    for (&coefficient, row) in coefficients.iter().zip(rows) {
        if coefficient == 0.0 {
            continue;
        }
        for (total, &value) in sum.iter_mut().zip(row) {
            *total = if started {
                coefficient.mul_add(value, *total)
            } else {
                coefficient * value
            };
        }
        started = true;
    }
    sum
}

/// Where a tile row's tiles sit among a band's: `tiles` per band (the stride between ξ or
/// channels), this row's first at `start`.
#[derive(Clone, Copy)]
struct RowOfTiles {
    tiles: usize,
    start: usize,
}

/// One input row, padded by one zero column on the left and zeros past its end, split by
/// column phase: `dst[phase · span + q]` = column `q·M + phase − 1` (`padded` is `M · span`
/// long). The row is first copied into `padded` so the split is a plain M-way deinterleave of
/// whole chunks, which compiles to vector shuffles.
#[inline(always)]
fn deinterleave<T: Element, const M: usize>(source: &[T], padded: &mut [f32], dst: &mut [f32]) {
    let span = padded.len() / M;
    let width = source.len().min(padded.len().saturating_sub(1));
    padded[0] = 0.0;
    T::widen_into(&source[..width], &mut padded[1..=width]);
    padded[width + 1..].fill(0.0);
    let mut lanes = dst.chunks_exact_mut(span);
    let mut lanes: [&mut [f32]; M] = std::array::from_fn(|_| lanes.next().unwrap_or_default());
    for (q, chunk) in padded.chunks_exact(M).enumerate() {
        for (lane, &value) in lanes.iter_mut().zip(chunk) {
            lane[q] = value;
        }
    }
}

/// The M rows `y[b][tx]` of one output row woven into pixels: column `tx·M + b`, cut at the
/// row's end.
#[inline(always)]
fn interleave<const M: usize>(y: &[f32], tiles_x: usize, out_row: &mut [f32]) {
    let mut lanes = y.chunks_exact(tiles_x);
    let lanes: [&[f32]; M] = std::array::from_fn(|_| lanes.next().unwrap_or_default());
    let whole = out_row.len() / M;
    let (body, tail) = out_row.split_at_mut(whole * M);
    for (tx, pixels) in body.chunks_exact_mut(M).enumerate() {
        for (pixel, lane) in pixels.iter_mut().zip(&lanes) {
            *pixel = lane[tx];
        }
    }
    for (b, pixel) in tail.iter_mut().enumerate() {
        *pixel = lanes[b][whole];
    }
}

/// `taps[o][tap][c]` = `w[o][c][tap]` widened to f32.
fn lay_out_taps<W: Element>(w: &[W], out_channels: usize, in_channels: usize, taps: &mut [f32]) {
    taps.par_chunks_mut(9 * in_channels)
        .zip(w.par_chunks(9 * in_channels))
        .for_each(|(dst, src)| {
            for (c, kernel) in src.chunks_exact(9).enumerate() {
                for (tap, &value) in kernel.iter().enumerate() {
                    dst[tap * in_channels + c] = value.to_f32();
                }
            }
        });
    debug_assert_eq!(taps.len(), 9 * in_channels * out_channels);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_blocks_cover_a_row_with_whole_blocks_where_they_fit() {
        let covered = |tiles_x: usize| {
            let mut seen = vec![false; tiles_x];
            for (first, count) in blocks(tiles_x) {
                assert!(count == LANES || (tiles_x < LANES && count == tiles_x));
                seen[first..first + count]
                    .iter_mut()
                    .for_each(|s| *s = true);
            }
            seen.iter().all(|&s| s)
        };
        for tiles_x in [1, 5, 15, 16, 17, 31, 32, 43, 86] {
            assert!(covered(tiles_x), "{tiles_x}");
        }
        assert_eq!(blocks(86).last(), Some((70, 16)));
        assert_eq!(blocks(7).collect::<Vec<_>>(), vec![(0, 7)]);
    }

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The direct convolution in f64.
    fn direct(layer: Layer, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f64> {
        let Layer {
            batch,
            in_channels: c,
            out_channels: o,
            height: h,
            width: wd,
        } = layer;
        let mut out = vec![0f64; batch * o * h * wd];
        for b in 0..batch {
            for oc in 0..o {
                for y in 0..h {
                    for xx in 0..wd {
                        let mut sum = f64::from(bias[oc]);
                        for ic in 0..c {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (iy, ix) = (y + ky, xx + kx);
                                    if iy == 0 || ix == 0 || iy > h || ix > wd {
                                        continue;
                                    }
                                    let input = x[((b * c + ic) * h + iy - 1) * wd + ix - 1];
                                    let weight = w[((oc * c + ic) * 3 + ky) * 3 + kx];
                                    sum += f64::from(input) * f64::from(weight);
                                }
                            }
                        }
                        out[((b * o + oc) * h + y) * wd + xx] = sum;
                    }
                }
            }
        }
        out
    }

    /// Largest error relative to the result's RMS.
    fn error(variant: Variant, layer: Layer) -> f64 {
        let x = values(
            layer.batch * layer.in_channels * layer.height * layer.width,
            1,
        );
        let w = values(layer.out_channels * layer.in_channels * 9, 2);
        let bias = values(layer.out_channels, 3);
        let want = direct(layer, &x, &w, &bias);
        let mut got = vec![f32::NAN; want.len()];
        assert!(convolve(variant, layer, &x, &w, Some(&bias), &mut got));
        let rms = (want.iter().map(|v| v * v).sum::<f64>() / want.len() as f64).sqrt();
        got.iter()
            .zip(&want)
            .map(|(&g, &w)| (f64::from(g) - w).abs() / rms)
            .fold(0.0, f64::max)
    }

    /// Each variant against an f64 direct convolution, on layers with ragged edges (sizes not a
    /// multiple of the tile), several images, several bands and a single one. The bounds are
    /// about twice the errors measured (largest error over the result's RMS): F(2,3) within a
    /// few times a direct f32 convolution's, F(4,3) ten times that.
    #[test]
    fn every_variant_matches_the_direct_convolution() {
        let layers = [
            (2, 64, 24, 13, 18),
            (3, 16, 20, 4, 4),
            (1, 96, 40, 37, 29),
            (2, 16, 16, 5, 7),
        ];
        for (batch, in_channels, out_channels, height, width) in layers {
            let layer = Layer {
                batch,
                in_channels,
                out_channels,
                height,
                width,
            };
            for (variant, bound) in [(Variant::F2, 5e-6), (Variant::F4, 3e-5)] {
                let error = error(variant, layer);
                assert!(error < bound, "{variant:?} {layer:?}: {error:e}");
            }
        }
    }

    #[test]
    fn layers_take_the_variant_their_precision_and_size_allow() {
        let layer = |batch, channels, side| Layer {
            batch,
            in_channels: channels,
            out_channels: channels,
            height: side,
            width: side,
        };
        if !crate::gemm_f32::available() {
            assert_eq!(layer(1, 128, 512).variant(false), None);
            return;
        }
        // The VAE decoder's layers at 512², f32 or not.
        for approximate in [false, true] {
            assert_eq!(layer(1, 128, 512).variant(approximate), Some(Variant::F4));
            assert_eq!(layer(1, 512, 256).variant(approximate), Some(Variant::F4));
        }
        // 256 F(4,3) tiles: enough against f32 im2col, not against bf16 products.
        assert_eq!(layer(1, 512, 64).variant(false), Some(Variant::F4));
        assert_eq!(layer(1, 512, 64).variant(true), None);
        // SD1.5's UNet at 512² (CFG batch 2): the outer two levels in f32 (the second with
        // F(2,3): 128 F(4,3) tiles), the outer one under bf16 products; inner levels and tiny
        // layers keep im2col.
        assert_eq!(layer(2, 320, 64).variant(false), Some(Variant::F4));
        assert_eq!(layer(2, 320, 64).variant(true), Some(Variant::F4));
        assert_eq!(layer(2, 640, 32).variant(false), Some(Variant::F2));
        assert_eq!(layer(2, 640, 32).variant(true), None);
        assert_eq!(layer(2, 1280, 16).variant(false), None);
        assert_eq!(layer(1, 8, 512).variant(false), None);
    }
}
