//! A bounds-checked f32 matrix product over the `gemm` crate (the one candle uses), with its
//! AVX-512 micro-kernels enabled. The only `unsafe` call in the crate lives here.

/// A read-only strided matrix view.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

/// A writable strided matrix view.
pub(crate) struct MatMut<'a> {
    pub(crate) data: &'a mut [f32],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

/// Whether every element `(r, c)` of a `rows × cols` view with these strides lies in `len`.
fn fits(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    let last = (rows - 1).checked_mul(row_stride).and_then(|r| {
        (cols - 1)
            .checked_mul(col_stride)
            .and_then(|c| r.checked_add(c))
    });
    matches!(last, Some(last) if last < len && row_stride <= isize::MAX as usize && col_stride <= isize::MAX as usize)
}

/// Whether every element of `view` lies inside its slice.
pub(crate) fn view_fits(view: &MatRef<'_>) -> bool {
    fits(
        view.data.len(),
        view.rows,
        view.cols,
        view.row_stride,
        view.col_stride,
    )
}

/// How many threads one product may use.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// The caller already runs in parallel (one product per task).
    One,
    /// Spread over the kernel pool.
    Pool,
}

/// `dst = scale·lhs·rhs`, or `dst += scale·lhs·rhs` when `accumulate`. Returns false (and
/// computes nothing) when the views' sizes disagree or reach outside their slices.
pub(crate) fn matmul(
    dst: MatMut<'_>,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    scale: f32,
    accumulate: bool,
    threads: Threads,
) -> bool {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    let shapes_agree = lhs.rows == m && rhs.rows == k && rhs.cols == n;
    let in_bounds = fits(dst.data.len(), m, n, dst.row_stride, dst.col_stride)
        && fits(lhs.data.len(), m, k, lhs.row_stride, lhs.col_stride)
        && fits(rhs.data.len(), k, n, rhs.row_stride, rhs.col_stride);
    if !shapes_agree || !in_bounds {
        return false;
    }
    if m == 0 || n == 0 {
        return true;
    }
    let parallelism = match threads {
        Threads::One => gemm::Parallelism::None,
        Threads::Pool => gemm::Parallelism::Rayon(crate::threads::kernel_threads()),
    };
    run_gemm(dst, lhs, rhs, scale, accumulate, parallelism);
    true
}

#[allow(unsafe_code)]
fn run_gemm(
    dst: MatMut<'_>,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    scale: f32,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    // SAFETY: `matmul` checked that every element the three strided views address lies inside
    // its slice and that the strides fit `isize`; `dst` is borrowed mutably, so it aliases
    // neither input; gemm reads `dst` only when `accumulate` (read_dst) is set.
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            lhs.cols,
            dst.data.as_mut_ptr(),
            dst.col_stride as isize,
            dst.row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_product_matches_by_hand() {
        let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2×3
        let b = [1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0]; // 3×2
        let mut c = [10.0f32; 4];
        let ok = matmul(
            MatMut {
                data: &mut c,
                rows: 2,
                cols: 2,
                row_stride: 2,
                col_stride: 1,
            },
            MatRef {
                data: &a,
                rows: 2,
                cols: 3,
                row_stride: 3,
                col_stride: 1,
            },
            MatRef {
                data: &b,
                rows: 3,
                cols: 2,
                row_stride: 2,
                col_stride: 1,
            },
            2.0,
            true,
            Threads::One,
        );
        assert!(ok);
        assert_eq!(c, [10.0 + 8.0, 10.0 + 10.0, 10.0 + 20.0, 10.0 + 22.0]);
    }

    #[test]
    fn out_of_bounds_views_are_refused() {
        let a = [0.0f32; 5];
        let mut c = [0.0f32; 4];
        let ok = matmul(
            MatMut {
                data: &mut c,
                rows: 2,
                cols: 2,
                row_stride: 2,
                col_stride: 1,
            },
            MatRef {
                data: &a,
                rows: 2,
                cols: 3,
                row_stride: 3,
                col_stride: 1,
            },
            MatRef {
                data: &a,
                rows: 3,
                cols: 2,
                row_stride: 2,
                col_stride: 1,
            },
            1.0,
            false,
            Threads::One,
        );
        assert!(!ok);
    }
}
