//! Row-major matrix products: matrixmultiply's packed single-threaded sgemm, with C cut into
//! blocks that run in parallel under the caller's thread budget.
//!
//! matrixmultiply's own threading (a process-wide pool sized once from `MATMUL_NUM_THREADS`)
//! cannot honour a per-call budget, so it is off, and products large enough to pay for it
//! are split here: C is cut along its longer side (rows when `m >= n`, else columns) into at
//! most [`thread_limit`] blocks, each a single-threaded sgemm on the same operands with
//! offset pointers, run through [`par_map`]. Every element of C is still the same sum in the
//! same order (matrixmultiply blocks only along k in a fixed way), so the result is bitwise
//! the same at every thread count. Cutting the longer side means the operand every block
//! packs in full is the smaller one.

use super::parallel::{par_map, thread_limit};

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transpose {
    No,
    Yes,
}

/// Below this many multiply-adds (`m*k*n`, about 128^3, some 35 us on one core) a product
/// runs on one thread: waking a helper costs microseconds, and each block repacks the smaller
/// operand. On the shared (loaded) 2-core machine this was measured on, products of 0.3M to
/// 2M multiply-adds ran 0-15 % slower split in two and 8M ones about as fast, while 25M ones
/// (the MLP's first layer) ran about 2x faster; the threshold errs towards one thread.
const PARALLEL_MIN_MACS: usize = 1 << 21;

/// Blocks are whole multiples of this many rows or columns: the widest register tile of
/// matrixmultiply's sgemm kernels (AVX-512's 16; AVX's 8 divides it), so that only the last
/// block can end in a partial tile.
const BLOCK_ALIGN: usize = 16;

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
    if m == 1 && ta == Transpose::No && tb == Transpose::Yes {
        row_times_rows(k, alpha, &a[..k], &b[..n * k], beta, &mut c[..n]);
        return;
    }
    let p = Product {
        m,
        k,
        n,
        alpha,
        a: a.as_ptr(),
        a_strides: match ta {
            Transpose::No => (k as isize, 1),
            Transpose::Yes => (1, m as isize),
        },
        b: b.as_ptr(),
        b_strides: match tb {
            Transpose::No => (n as isize, 1),
            Transpose::Yes => (1, k as isize),
        },
        beta,
        c: c.as_mut_ptr(),
    };
    let blocks = block_count(m, k, n, thread_limit());
    if blocks <= 1 {
        // SAFETY: the asserts above put every element of op(a), op(b) and c inside the
        // three slices; `c` is exclusively borrowed for this call.
        unsafe { p.run(0..m, 0..n) };
        return;
    }
    let rows = m >= n;
    let long = if rows { m } else { n };
    let step = long.div_ceil(blocks).next_multiple_of(BLOCK_ALIGN);
    let ranges: Vec<_> = (0..long)
        .step_by(step)
        .map(|s| s..(s + step).min(long))
        .collect();
    let p = &p;
    par_map(ranges, |_, r| {
        // SAFETY: as above for the operands; the blocks cover disjoint row (or column)
        // ranges of c, so no element of c is written by two threads, and `c` stays
        // exclusively borrowed until par_map has returned, after every block has finished.
        unsafe {
            if rows {
                p.run(r, 0..n)
            } else {
                p.run(0..m, r)
            }
        }
    });
}

/// How many blocks to cut an `m x k x n` product into under a budget of `limit` threads.
fn block_count(m: usize, k: usize, n: usize, limit: usize) -> usize {
    if limit <= 1 || m.saturating_mul(k).saturating_mul(n) < PARALLEL_MIN_MACS {
        return 1;
    }
    // No block thinner than one register tile.
    limit.min(m.max(n).div_ceil(BLOCK_ALIGN))
}

/// One validated product, as raw parts that blocks on several threads may share.
struct Product {
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: *const f32,
    a_strides: (isize, isize),
    b: *const f32,
    b_strides: (isize, isize),
    beta: f32,
    c: *mut f32,
}

// SAFETY: the pointers come from slices borrowed by `matmul` for as long as any block runs
// (par_map returns only after every block has finished); a and b are only read, and blocks
// write disjoint parts of c.
unsafe impl Sync for Product {}

impl Product {
    /// Computes the block `c[rows, cols]` on the calling thread.
    ///
    /// # Safety
    /// The pointers must cover the whole product (as `matmul` checks), and no other thread
    /// may touch `c[rows, cols]` meanwhile.
    unsafe fn run(&self, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) {
        let (rsa, csa) = self.a_strides;
        let (rsb, csb) = self.b_strides;
        let (r0, c0) = (rows.start as isize, cols.start as isize);
        debug_assert!(rows.end <= self.m && cols.end <= self.n);
        // SAFETY: the offsets stay inside op(a)'s rows, op(b)'s columns and c (the caller's
        // contract), and matrixmultiply reads and writes only the block they describe.
        unsafe {
            matrixmultiply::sgemm(
                rows.len(),
                self.k,
                cols.len(),
                self.alpha,
                self.a.offset(r0 * rsa),
                rsa,
                csa,
                self.b.offset(c0 * csb),
                rsb,
                csb,
                self.beta,
                self.c.offset(r0 * self.n as isize + c0),
                self.n as isize,
                1,
            );
        }
    }
}

/// `c = alpha * a · bᵀ + beta * c` for one row `a` (`k`) and `b` stored `[n, k]`: a linear
/// layer on a single sample, as a service predicts one request. `n` dot products over
/// contiguous rows; the blocked kernel would first pack all of `b` and then fill a whole
/// register tile to use one of its rows (for the Fashion MLP's 784 × 256 layer, packing and
/// the tile took about 40 % of a single-sample prediction, measured with perf).
fn row_times_rows(k: usize, alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
    for (cj, bj) in c.iter_mut().zip(b.chunks_exact(k)) {
        let d = alpha * dot(a, bj);
        *cj = if beta == 0.0 { d } else { d + beta * *cj };
    }
}

/// A dot product with eight independent partial sums, which the compiler turns into vector
/// instructions.
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (xs, xt) = x.split_at(x.len() / 8 * 8);
    let (ys, yt) = y.split_at(xs.len());
    for (xc, yc) in xs.chunks_exact(8).zip(ys.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += xc[l] * yc[l];
        }
    }
    let tail: f32 = xt.iter().zip(yt).map(|(a, b)| a * b).sum();
    acc.iter().sum::<f32>() + tail
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
    use crate::backend::cpu::with_thread_limit;
    use crate::rng::Rng;

    /// `(m, k, n)` of every shape class: scalars, empty sums and empty outputs, tall-skinny,
    /// wide, odd sizes, and products large enough to be split by rows and by columns.
    const SHAPES: &[(usize, usize, usize)] = &[
        (1, 1, 1),
        (2, 0, 3),
        (0, 4, 3),
        (3, 4, 0),
        (3, 5, 7),
        (17, 33, 9),
        (64, 31, 65),
        (67, 129, 33),
        (1000, 40, 3),
        (3, 40, 1000),
        (2100, 40, 30),
        (30, 40, 2100),
        (130, 70, 257),
        // One row: the dot-product path when b is transposed (k not a multiple of 8, too).
        (1, 784, 256),
        (1, 13, 5),
    ];

    fn randn(r: &mut Rng, len: usize) -> Vec<f32> {
        (0..len).map(|_| r.normal()).collect()
    }

    fn close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what}: {g} vs {w}");
        }
    }

    /// `alpha * op(a) op(b) + beta * c0`, through `matmul` at the current thread limit.
    #[allow(clippy::too_many_arguments)]
    fn product(
        (m, k, n): (usize, usize, usize),
        alpha: f32,
        a: &[f32],
        ta: Transpose,
        b: &[f32],
        tb: Transpose,
        beta: f32,
        c0: &[f32],
    ) -> Vec<f32> {
        let mut c = c0.to_vec();
        matmul(m, k, n, alpha, a, ta, b, tb, beta, &mut c);
        c
    }

    #[test]
    fn matches_reference_on_every_shape_class_at_every_limit() {
        let mut r = Rng::new(3);
        for &(m, k, n) in SHAPES {
            let a = randn(&mut r, m * k);
            let b = randn(&mut r, k * n);
            let c0 = randn(&mut r, m * n);
            for ta in [Transpose::No, Transpose::Yes] {
                for tb in [Transpose::No, Transpose::Yes] {
                    let ab = matmul_reference(m, k, n, &a, ta, &b, tb);
                    let what = format!("{m}x{k}x{n} {ta:?} {tb:?}");
                    let mut by_limit = Vec::new();
                    for limit in [1, 2, 0] {
                        with_thread_limit(limit, || {
                            // beta = 0 overwrites whatever c held (NaN included).
                            let got = product((m, k, n), 1.0, &a, ta, &b, tb, 0.0, &c0);
                            close(&got, &ab, 1e-4, &what);
                            let nan = vec![f32::NAN; m * n];
                            let got = product((m, k, n), 1.0, &a, ta, &b, tb, 0.0, &nan);
                            close(&got, &ab, 1e-4, &what);
                            // alpha and a non-zero beta.
                            let got = product((m, k, n), 2.0, &a, ta, &b, tb, 0.5, &c0);
                            let want: Vec<f32> =
                                ab.iter().zip(&c0).map(|(p, c)| 2.0 * p + 0.5 * c).collect();
                            close(&got, &want, 1e-3, &what);
                            by_limit.push(got);
                        });
                    }
                    // Splitting C leaves every element's sum and its order unchanged.
                    for got in &by_limit[1..] {
                        let same = got
                            .iter()
                            .zip(&by_limit[0])
                            .all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(same, "{what}: bits differ between thread limits");
                    }
                }
            }
        }
    }

    #[test]
    fn large_products_are_split_under_a_budget_and_small_ones_are_not() {
        // The split shapes of the test above.
        for &(m, k, n) in &[(2100, 40, 30), (30, 40, 2100), (130, 70, 257)] {
            assert_eq!(block_count(m, k, n, 1), 1);
            assert_eq!(block_count(m, k, n, 2), 2);
        }
        assert_eq!(block_count(2100, 40, 30, 8), 8);
        // Never more blocks than register tiles along the longer side.
        assert_eq!(
            block_count(40, 1000, 3000, 512),
            3000usize.div_ceil(BLOCK_ALIGN)
        );
        assert_eq!(block_count(67, 129, 33, 2), 1);
        assert_eq!(block_count(128, 256, 10, 2), 1);
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
        let mut c = vec![5.0f32; 6];
        let none: &[f32] = &[];
        matmul(
            2,
            0,
            3,
            1.0,
            none,
            Transpose::Yes,
            none,
            Transpose::Yes,
            0.5,
            &mut c,
        );
        assert_eq!(c, vec![2.5; 6]);
    }
}
