//! Row-major matrix products on top of matrixmultiply's packed, threaded sgemm.

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transpose {
    No,
    Yes,
}

/// `c = alpha * op(a) * op(b) + beta * c`, all row-major and contiguous.
///
/// `op(a)` is `m x k`, `op(b)` is `k x n`, `c` is `m x n`. When `ta` is `Yes`, `a` is stored
/// as `k x m`; likewise for `b`. Transposition costs nothing: only the strides change.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    ta: Transpose,
    b: &[f32],
    tb: Transpose,
    beta: f32,
    c: &mut [f32],
) {
    assert!(a.len() >= m * k, "gemm: a too short");
    assert!(b.len() >= k * n, "gemm: b too short");
    assert!(c.len() >= m * n, "gemm: c too short");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // matrixmultiply would leave c unscaled; make beta's meaning hold for empty sums too.
        for v in &mut c[..m * n] {
            *v = if beta == 0.0 { 0.0 } else { *v * beta };
        }
        return;
    }
    let (rsa, csa) = match ta {
        Transpose::No => (k as isize, 1),
        Transpose::Yes => (1, m as isize),
    };
    let (rsb, csb) = match tb {
        Transpose::No => (n as isize, 1),
        Transpose::Yes => (1, k as isize),
    };
    // SAFETY: the asserts above guarantee every index matrixmultiply derives from these
    // dimensions and strides lies inside the three slices; `c` is exclusively borrowed.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// The naive triple loop, kept as a reference for tests.
#[allow(clippy::too_many_arguments)]
pub fn matmul_reference(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    ta: Transpose,
    b: &[f32],
    tb: Transpose,
) -> Vec<f32> {
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f64;
            for p in 0..k {
                let av = match ta {
                    Transpose::No => a[i * k + p],
                    Transpose::Yes => a[p * m + i],
                };
                let bv = match tb {
                    Transpose::No => b[p * n + j],
                    Transpose::Yes => b[j * k + p],
                };
                s += av as f64 * bv as f64;
            }
            c[i * n + j] = s as f32;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn matches_reference_for_all_transposes_and_odd_sizes() {
        let mut r = Rng::new(3);
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 7), (17, 33, 9), (64, 31, 65)] {
            let a: Vec<f32> = (0..m * k).map(|_| r.normal()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| r.normal()).collect();
            for ta in [Transpose::No, Transpose::Yes] {
                for tb in [Transpose::No, Transpose::Yes] {
                    let want = matmul_reference(m, k, n, &a, ta, &b, tb);
                    let mut got = vec![1.0f32; m * n];
                    matmul(m, k, n, 1.0, &a, ta, &b, tb, 0.0, &mut got);
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - w).abs() < 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
                    }
                    // beta = 1 accumulates
                    let mut acc = want.clone();
                    matmul(m, k, n, 2.0, &a, ta, &b, tb, 1.0, &mut acc);
                    for (g, w) in acc.iter().zip(&want) {
                        assert!((g - 3.0 * w).abs() < 1e-3 * (1.0 + w.abs()));
                    }
                }
            }
        }
    }

    #[test]
    fn empty_inner_dimension_respects_beta() {
        let mut c = vec![5.0f32; 6];
        matmul(
            2,
            0,
            3,
            1.0,
            &[],
            Transpose::No,
            &[],
            Transpose::No,
            0.0,
            &mut c,
        );
        assert_eq!(c, vec![0.0; 6]);
    }
}
