//! Row-major matrix products, with C cut into blocks that run in parallel under the caller's
//! thread budget.
//!
//! Each block is computed by one of two engines (`Engine`): ours (`gemm_avx512`) on processors
//! with AVX-512, which packs the right operand into a buffer kept per thread and reads a
//! row-major left operand in place; and matrixmultiply's packed single-threaded sgemm on every
//! other processor and as the reference path of tests. matrixmultiply's own threading (a
//! process-wide pool sized once from `MATMUL_NUM_THREADS`) cannot honour a per-call budget, so
//! it is off, and products large enough to pay for it are split here into at most
//! [`thread_limit`] blocks (twice as many column ranges where ours copies nothing that the
//! ranges share, claimed as threads come free), each a single-threaded product on the same
//! operands with offset pointers, run through [`par_map`]. matrixmultiply's blocks cut C along
//! its longer side, so the operand each packs in full is the smaller one; ours cut columns, so
//! each packs only its own columns. Either way every element of C is the same sum in the same
//! order whichever block computes it (both engines block only along k, in a fixed way), so the
//! result is bitwise the same at every thread count.

use super::parallel::{par_map, thread_limit};

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transpose {
    No,
    Yes,
}

/// Below this many multiply-adds (`m*k*n`, about 80^3, some 10 us on one core) a product
/// runs on one thread. With helpers parked between calls (woken in 25 to 55 us), products
/// under 2M multiply-adds had run 0-15 % slower split in two; since helpers linger between
/// calls (see `parallel`), the MLP's last-layer products (1.3M, `512 x 256 x 10` and its
/// gradients) run in 20 us split instead of 37 us on one core (AMD EPYC, 2 cores).
const PARALLEL_MIN_MACS: usize = 1 << 19;

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
    product(m, k, n, alpha, a, ta, b, tb, Init::Scale(beta), c);
}

/// `c = op(a) * op(b) + bias` with `bias` (`n` values) added to every row: a linear layer's
/// forward pass. Whatever `c` held is overwritten.
#[allow(clippy::too_many_arguments)]
pub fn matmul_bias(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    ta: Transpose,
    b: &[f32],
    tb: Transpose,
    bias: &[f32],
    c: &mut [f32],
) {
    assert!(bias.len() >= n, "gemm: bias too short");
    product(m, k, n, 1.0, a, ta, b, tb, Init::Bias(&bias[..n]), c);
}

/// What a product adds to `alpha * op(a) * op(b)`.
#[derive(Clone, Copy)]
enum Init<'a> {
    /// `beta * c` (c not read when `beta == 0`).
    Scale(f32),
    /// One value per column, added to every row.
    Bias(&'a [f32]),
}

#[allow(clippy::too_many_arguments)]
fn product(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    ta: Transpose,
    b: &[f32],
    tb: Transpose,
    init: Init<'_>,
    c: &mut [f32],
) {
    assert!(a.len() >= m * k, "gemm: a too short");
    assert!(b.len() >= k * n, "gemm: b too short");
    assert!(c.len() >= m * n, "gemm: c too short");
    if m == 0 || n == 0 {
        return;
    }
    let beta = match init {
        Init::Scale(beta) => beta,
        // The paths below that do not take a bias start from it in c.
        Init::Bias(bias) if k == 0 || m == 1 => {
            fill_rows(&mut c[..m * n], bias);
            1.0
        }
        Init::Bias(_) => 1.0,
    };
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
    let bias = match init {
        Init::Bias(bias) if m > 1 => Some(bias.as_ptr()),
        _ => None,
    };
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
        bias,
        c: c.as_mut_ptr(),
    };
    let engine = Engine::for_this_call();
    let blocks = block_count(m, k, n, thread_limit(), engine);
    if blocks <= 1 {
        // SAFETY: the asserts above put every element of op(a), op(b) and c inside the
        // three slices; `c` is exclusively borrowed for this call.
        unsafe { p.run(engine, 0..m, 0..n) };
        return;
    }
    let rows = engine.split_rows(m, n, blocks);
    let (long, align) = if rows {
        (m, engine.row_align())
    } else {
        (n, engine.column_align())
    };
    let tiles = long.div_ceil(align);
    let pieces = engine.pieces(blocks, rows, tiles, p.a_strides);
    // Whole tiles, as evenly as they go: piece i takes tiles i·t/p up to (i+1)·t/p.
    let edge = |i: usize| (i * tiles / pieces * align).min(long);
    let ranges: Vec<_> = (0..pieces).map(|i| edge(i)..edge(i + 1)).collect();
    let p = &p;
    par_map(ranges, |_, r| {
        // SAFETY: as above for the operands; the blocks cover disjoint row (or column)
        // ranges of c, so no element of c is written by two threads, and `c` stays
        // exclusively borrowed until par_map has returned, after every block has finished.
        unsafe {
            if rows {
                p.run(engine, r, 0..n)
            } else {
                p.run(engine, 0..m, r)
            }
        }
    });
}

/// Which code computes the blocks of a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Engine {
    /// Ours, on every product on processors with AVX-512 (see [`super::gemm_avx512`]).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// matrixmultiply's packed sgemm: other processors, and the reference path of tests.
    MatrixMultiply,
}

impl Engine {
    /// Chosen on the calling thread (whose reference mode counts), then shared by its blocks.
    fn for_this_call() -> Engine {
        #[cfg(target_arch = "x86_64")]
        if super::gemm_avx512::available() && !super::simd::reference_mode() {
            return Engine::Avx512;
        }
        Engine::MatrixMultiply
    }

    /// Whether to cut C into row ranges (else column ranges). Ours packs only `op(b)`, per
    /// block of columns, so column ranges pack nothing twice; it cuts rows only when there
    /// are too few column panels to go round and more row tiles than panels. matrixmultiply
    /// packs both operands in every block, so its blocks cut the longer side and each packs
    /// the smaller operand in full.
    fn split_rows(self, m: usize, n: usize, blocks: usize) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512 => {
                let panels = n.div_ceil(super::gemm_avx512::NR);
                panels < blocks && m.div_ceil(super::gemm_avx512::MR) > panels
            }
            Engine::MatrixMultiply => m >= n,
        }
    }

    /// How many ranges to cut C into for `blocks` threads, out of `tiles` whole tiles along
    /// the cut side. Column ranges of ours that read `a` in place share nothing that would
    /// be copied twice (each packs its own columns of `b`), so they are cut twice as fine:
    /// threads claim ranges as they come free, and a helper that starts late (its core busy)
    /// leaves the caller waiting for at most one small range. Every other range copies an
    /// operand in full (ours a copied `a`, matrixmultiply both), so those get one per thread:
    /// cut finer, the weight gradients (a transposed `a`) ran 5 to 10 % slower.
    fn pieces(self, blocks: usize, rows: bool, tiles: usize, a_strides: (isize, isize)) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512 if !rows && super::gemm_avx512::reads_in_place(a_strides) => {
                (2 * blocks).min(tiles)
            }
            _ => {
                let _ = a_strides;
                blocks
            }
        }
    }

    /// Row ranges are whole register tiles, so that only the last block has a partial one.
    fn row_align(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512 => super::gemm_avx512::MR,
            Engine::MatrixMultiply => BLOCK_ALIGN,
        }
    }

    /// Column ranges likewise.
    fn column_align(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Engine::Avx512 => super::gemm_avx512::NR,
            Engine::MatrixMultiply => BLOCK_ALIGN,
        }
    }
}

/// How many blocks to cut an `m x k x n` product into under a budget of `limit` threads.
fn block_count(m: usize, k: usize, n: usize, limit: usize, engine: Engine) -> usize {
    if limit <= 1 || m.saturating_mul(k).saturating_mul(n) < PARALLEL_MIN_MACS {
        return 1;
    }
    // No block thinner than one register tile.
    let tiles = if engine.split_rows(m, n, limit) {
        m.div_ceil(engine.row_align())
    } else {
        n.div_ceil(engine.column_align())
    };
    limit.min(tiles)
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
    /// `n` values added to every row of c instead of `beta * c`.
    bias: Option<*const f32>,
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
    unsafe fn run(
        &self,
        engine: Engine,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if engine == Engine::Avx512 {
            use super::gemm_avx512::{block, Operand, Start};
            let operand = |ptr, (rs, cs)| Operand { ptr, rs, cs };
            let start = self.bias.map_or(Start::Scale(self.beta), Start::Bias);
            // SAFETY: `available()` chose this engine; the caller's contract covers the rest.
            unsafe {
                block(
                    rows,
                    cols,
                    self.k,
                    self.alpha,
                    operand(self.a, self.a_strides),
                    operand(self.b, self.b_strides),
                    start,
                    self.c,
                    self.n,
                )
            };
            return;
        }
        let _ = engine;
        if let Some(bias) = self.bias {
            // SAFETY: the bias holds n values; the block's rows and columns lie in c.
            unsafe {
                let bias = std::slice::from_raw_parts(bias.add(cols.start), cols.len());
                for i in rows.clone() {
                    let row = self.c.add(i * self.n + cols.start);
                    std::slice::from_raw_parts_mut(row, cols.len()).copy_from_slice(bias);
                }
            }
        }
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

/// Copies `row` into every row of `c` (rows of `row.len()` values).
fn fill_rows(c: &mut [f32], row: &[f32]) {
    for r in c.chunks_exact_mut(row.len()) {
        r.copy_from_slice(row);
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
        // Our AVX-512 kernel's edges: short last tiles of every kernel size (m % 12 = 1, 5,
        // 9), short last panels (n % 32, of at most 16 columns and of more), two and three
        // blocks along k (KC = 256) with a short last one, more columns than one packed chunk
        // (NC = 512), and rows 4 KiB apart (k = 1024, copied when stored row-major).
        (25, 300, 70),
        (29, 513, 545),
        (33, 257, 33),
        (12, 256, 32),
        (100, 1024, 40),
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
    /// Both engines (the default, ours where the processor has AVX-512, and matrixmultiply
    /// through reference mode) against the f64 triple loop.
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
                    for (limit, reference) in [(1, false), (2, false), (0, false), (2, true)] {
                        crate::backend::cpu::simd::set_reference_mode(reference);
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
                            if !reference {
                                by_limit.push(got);
                            }
                        });
                        crate::backend::cpu::simd::set_reference_mode(false);
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
    fn bias_rows_match_the_reference_on_both_engines_with_the_same_bits_at_every_limit() {
        let mut r = Rng::new(5);
        for &(m, k, n) in SHAPES {
            let a = randn(&mut r, m * k);
            let b = randn(&mut r, k * n);
            let bias = randn(&mut r, n);
            for ta in [Transpose::No, Transpose::Yes] {
                for tb in [Transpose::No, Transpose::Yes] {
                    let ab = matmul_reference(m, k, n, &a, ta, &b, tb);
                    let want: Vec<f32> = ab
                        .chunks(n.max(1))
                        .flat_map(|row| row.iter().zip(&bias).map(|(p, b)| p + b))
                        .collect();
                    let what = format!("bias {m}x{k}x{n} {ta:?} {tb:?}");
                    let mut by_limit: Vec<Vec<f32>> = Vec::new();
                    for (limit, reference) in [(1, false), (2, false), (2, true)] {
                        crate::backend::cpu::simd::set_reference_mode(reference);
                        let mut c = vec![f32::NAN; m * n];
                        with_thread_limit(limit, || {
                            matmul_bias(m, k, n, &a, ta, &b, tb, &bias, &mut c)
                        });
                        crate::backend::cpu::simd::set_reference_mode(false);
                        close(&c, &want, 1e-4, &what);
                        if !reference {
                            by_limit.push(c);
                        }
                    }
                    let same = by_limit[0]
                        .iter()
                        .zip(&by_limit[1])
                        .all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{what}: bits differ between thread limits");
                }
            }
        }
    }

    #[test]
    fn large_products_are_split_under_a_budget_and_small_ones_are_not() {
        let mm = Engine::MatrixMultiply;
        // The split shapes of the test above.
        for &(m, k, n) in &[(2100, 40, 30), (30, 40, 2100), (130, 70, 257)] {
            assert_eq!(block_count(m, k, n, 1, mm), 1);
            assert_eq!(block_count(m, k, n, 2, mm), 2);
        }
        assert_eq!(block_count(2100, 40, 30, 8, mm), 8);
        // Never more blocks than register tiles along the longer side.
        assert_eq!(
            block_count(40, 1000, 3000, 512, mm),
            3000usize.div_ceil(BLOCK_ALIGN)
        );
        assert_eq!(block_count(67, 129, 33, 2, mm), 1);
        assert_eq!(block_count(128, 256, 10, 2, mm), 1);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn our_kernel_takes_every_product_unless_in_reference_mode() {
        if !super::super::gemm_avx512::available() {
            eprintln!("SKIPPED: this processor has no AVX-512; matrixmultiply runs every product");
            return;
        }
        assert_eq!(Engine::for_this_call(), Engine::Avx512);
        crate::backend::cpu::simd::set_reference_mode(true);
        let reference = Engine::for_this_call();
        crate::backend::cpu::simd::set_reference_mode(false);
        assert_eq!(reference, Engine::MatrixMultiply);
        // Ranges that copy no operand are cut finer than one per thread; others are not.
        let ours = Engine::Avx512;
        assert_eq!(ours.pieces(2, false, 8, (784, 1)), 4);
        assert_eq!(ours.pieces(2, false, 8, (1, 256)), 2);
        assert_eq!(ours.pieces(2, false, 8, (1024, 1)), 2);
        assert_eq!(ours.pieces(2, true, 40, (784, 1)), 2);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn our_kernel_cuts_columns_unless_too_few_panels() {
        use super::super::gemm_avx512::{MR, NR};
        let ours = Engine::Avx512;
        // The MLP's first layer: 256 columns are 8 panels, so two blocks of columns.
        assert!(!ours.split_rows(512, 256, 2));
        assert_eq!(block_count(512, 784, 256, 2, ours), 2);
        // 30 columns are one panel: rows are cut, in whole tiles, no more blocks than tiles.
        assert!(ours.split_rows(2100, 30, 2));
        assert_eq!(block_count(2100, 40, 30, 8, ours), 8);
        assert_eq!(
            block_count(30, 400, 2100, 512, ours),
            2100usize.div_ceil(NR)
        );
        assert_eq!(block_count(400, 1000, 20, 512, ours), 400usize.div_ceil(MR));
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
