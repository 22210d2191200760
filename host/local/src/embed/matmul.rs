//! A bounds-checked safe wrapper over `matrixmultiply`'s f32 matrix product (strided views
//! into row-major buffers), split by rows over rayon; the embedder's only unsafe code.
#![allow(unsafe_code)]

use rayon::prelude::*;

/// A read-only strided matrix view: element (r, c) is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// A dense row-major `rows × cols` matrix starting at `data[0]`, rows `row_stride` apart.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transpose of a dense row-major `cols × rows` matrix (rows `row_stride` apart).
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: 1,
            col_stride: row_stride,
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1)
                .checked_mul(self.row_stride)
                .zip((self.cols - 1).checked_mul(self.col_stride))
                .and_then(|(a, b)| a.checked_add(b))
                .is_some_and(|last| last < self.data.len())
    }
}

/// Computes `out = (accumulate ? out : 0) + lhs × rhs`, `out` dense row-major `lhs.rows ×
/// rhs.cols` with rows `out_stride` apart, split by rows over `threads` rayon tasks. Returns
/// false (and leaves `out` alone) when the shapes disagree or a view runs past its buffer.
pub fn matmul(
    lhs: View<'_>,
    rhs: View<'_>,
    out: &mut [f32],
    out_stride: usize,
    accumulate: bool,
    threads: usize,
) -> bool {
    let (m, n) = (lhs.rows, rhs.cols);
    if rhs.rows != lhs.cols
        || n > out_stride
        || !lhs.fits()
        || !rhs.fits()
        || !View::rows(out, m, n, out_stride).fits()
    {
        return false;
    }
    if m == 0 || n == 0 {
        return true;
    }
    let rows_per_task = m.div_ceil(threads.max(1)).max(16);
    if rows_per_task >= m {
        return product(lhs, rhs, out, out_stride, accumulate);
    }
    let out = &mut out[..(m - 1) * out_stride + n];
    out.par_chunks_mut(rows_per_task * out_stride)
        .enumerate()
        .map(|(i, chunk)| {
            let first = i * rows_per_task;
            let rows = rows_per_task.min(m - first);
            let part = View {
                data: &lhs.data[first * lhs.row_stride..],
                rows,
                ..lhs
            };
            product(part, rhs, chunk, out_stride, accumulate)
        })
        .reduce(|| true, |a, b| a && b)
}

/// One single-threaded `sgemm` on checked views.
fn product(
    lhs: View<'_>,
    rhs: View<'_>,
    out: &mut [f32],
    out_stride: usize,
    accumulate: bool,
) -> bool {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    if rhs.rows != k || !lhs.fits() || !rhs.fits() || !View::rows(out, m, n, out_stride).fits() {
        return false;
    }
    let as_isize = |v: usize| isize::try_from(v).ok();
    let (Some(l_rs), Some(l_cs), Some(r_rs), Some(r_cs), Some(o_rs)) = (
        as_isize(lhs.row_stride),
        as_isize(lhs.col_stride),
        as_isize(rhs.row_stride),
        as_isize(rhs.col_stride),
        as_isize(out_stride),
    ) else {
        return false;
    };
    if m == 0 || n == 0 {
        return true;
    }
    let beta = if accumulate { 1.0 } else { 0.0 };
    // SAFETY: `fits` checked that every element each view addresses (non-negative strides,
    // last index in bounds) lies inside its slice, and that `out` holds `m × n` elements at
    // stride `out_stride`; `out` is borrowed mutably so it aliases neither input. With
    // beta = 0 sgemm does not read `out`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            lhs.data.as_ptr(),
            l_rs,
            l_cs,
            rhs.data.as_ptr(),
            r_rs,
            r_cs,
            beta,
            out.as_mut_ptr(),
            o_rs,
            1,
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product_with_strides() {
        // lhs 2×3, rhs given as the transpose of a 2×3 (so 3×2).
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, -1.0, 2.0, 1.0, 0.5];
        let mut out = vec![10.0; 4];
        assert!(matmul(
            View::rows(&a, 2, 3, 3),
            View::transposed(&b, 3, 2, 3),
            &mut out,
            2,
            true,
            1
        ));
        // row0: [1,2,3]·[1,0,-1] = -2, [1,2,3]·[2,1,0.5] = 5.5
        // row1: [4,5,6]·[1,0,-1] = -2, [4,5,6]·[2,1,0.5] = 16
        assert_eq!(out, vec![8.0, 15.5, 8.0, 26.0]);
    }

    #[test]
    fn refuses_out_of_bounds_views() {
        let a = [1.0; 5];
        let mut out = vec![0.0; 4];
        assert!(!matmul(
            View::rows(&a, 2, 3, 3),
            View::rows(&a, 3, 2, 2),
            &mut out,
            2,
            false,
            1
        ));
    }
}
