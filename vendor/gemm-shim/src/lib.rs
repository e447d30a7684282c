//! dfdx 0.13 pins gemm 0.15. gemm 0.19 keeps the same `gemm` entry point (dimensions, strided pointers,
//! alpha/beta, conjugation flags, `Parallelism`) with faster kernels, so this crate re-exports it under the
//! old version number.
//!
//! It also holds [`matmul_f32`], a bounds-checked safe front of that entry point: the tinyalign crates forbid
//! `unsafe`, and their fused inference kernels (attention over blocks of queries) call gemm directly.
pub use gemm019::*;

/// `dst = (accumulate ? dst : 0) + lhs · rhs` for f32 `(m, k) · (k, n)` operands given as slices with row
/// and column strides: `lhs[i, l] = lhs[i·lhs_rs + l·lhs_cs]`, `rhs[l, j] = rhs[l·rhs_rs + j·rhs_cs]`,
/// `dst[i, j] = dst[i·dst_rs + j]`. `threads` > 1 splits the product over rayon's pool.
///
/// # Panics
/// If an operand's slice is too short for its dimensions and strides, or `dst_rs < n` (rows would overlap):
/// the checks that make the raw-pointer call sound.
#[allow(clippy::too_many_arguments)]
pub fn matmul_f32(
    (m, k, n): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    (lhs, lhs_rs, lhs_cs): (&[f32], usize, usize),
    (rhs, rhs_rs, rhs_cs): (&[f32], usize, usize),
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        dst_rs >= n,
        "dst rows overlap: row stride {dst_rs} < {n} columns"
    );
    assert!(
        (m - 1) * dst_rs + n <= dst.len(),
        "dst is too short for ({m}, {n})"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * dst_rs..i * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    assert!(
        (m - 1) * lhs_rs + (k - 1) * lhs_cs < lhs.len(),
        "lhs is too short for ({m}, {k})"
    );
    assert!(
        (k - 1) * rhs_rs + (n - 1) * rhs_cs < rhs.len(),
        "rhs is too short for ({k}, {n})"
    );
    let parallelism = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: every index gemm forms is inside the slices by the checks above, dst's rows are disjoint, and
    // the borrows keep lhs and rhs alive and unaliased by dst for the call.
    unsafe {
        gemm019::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::matmul_f32;

    fn naive(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        out
    }

    #[test]
    fn strided_products_match_a_plain_loop() {
        let (m, k, n) = (7, 5, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let want = naive(m, k, n, &a, &b);
        // bᵀ stored (n, k): read it with swapped strides.
        let mut b_t = vec![0.0; k * n];
        for l in 0..k {
            for j in 0..n {
                b_t[j * k + l] = b[l * n + j];
            }
        }
        for threads in [1, 2] {
            let mut dst = vec![0.0; m * 4];
            matmul_f32(
                (m, k, n),
                &mut dst,
                4,
                false,
                (&a, k, 1),
                (&b_t, 1, k),
                threads,
            );
            for i in 0..m {
                for j in 0..n {
                    assert!((dst[i * 4 + j] - want[i * n + j]).abs() < 1e-5);
                }
                assert_eq!(dst[i * 4 + 3], 0.0, "the padding column is untouched");
            }
            // Accumulating adds the same product again.
            matmul_f32(
                (m, k, n),
                &mut dst,
                4,
                true,
                (&a, k, 1),
                (&b, n, 1),
                threads,
            );
            for i in 0..m {
                for j in 0..n {
                    assert!((dst[i * 4 + j] - 2.0 * want[i * n + j]).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "rhs is too short")]
    fn a_short_operand_is_refused() {
        let mut dst = vec![0.0; 4];
        matmul_f32(
            (2, 2, 2),
            &mut dst,
            2,
            false,
            (&[1.0; 4], 2, 1),
            (&[1.0; 3], 2, 1),
            1,
        );
    }
}
