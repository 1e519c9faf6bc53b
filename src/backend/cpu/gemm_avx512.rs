//! Our own single-precision GEMM block for processors with AVX-512.
//!
//! # Why not matrixmultiply
//!
//! matrixmultiply (the path on every other processor) packs both operands of every product
//! into its own panel layout, in a buffer it allocates (and the system zeroes) on every call,
//! and when a product is split over threads each block packs the operand the blocks share
//! again. In the MLP's ∇τ step, profiled, packing was 18 % of the run's cycles against 65 %
//! in the register kernel. Here `op(b)` is packed into a buffer kept per thread, and `op(a)`
//! is read where it lies whenever it is stored row-major: a register tile takes 12 rows of
//! `a`, 12 short contiguous streams along k, which need no copy. Threads split C by whole
//! panels of columns, so each block packs only its own columns of `b`. A transposed `a` (the
//! `dyᵀ · x` of a weight gradient) is packed one tile at a time k-major, the tile's 12 values
//! of a step side by side as they already lie in `a` (one masked load and store per step);
//! rows a multiple of 4 KiB apart (which fall into the same few L1 sets) are copied into
//! rows the kernel reads like those of `a`. Measured on one core (`examples/gemm_shapes.rs`),
//! the MLP's forward products ran 11 to 13 % faster than matrixmultiply, the input gradient
//! 8 %; on two cores of an AMD EPYC (Zen 4), the forward products 12 to 15 % faster, the
//! weight gradients 0 to 4 % slower (they had been 12 to 15 % slower while the transposed
//! tiles went through the register transposes below, its accumulators were written back
//! through a call, and a 16-column last panel ran the 32-column kernel).
//!
//! # The tile
//!
//! 12 rows × 32 columns: 24 zmm accumulators, two loads of `b` and twelve broadcasts of `a`
//! per step along k. k is taken in blocks of [`KC`], columns in chunks of [`NC`]; a block of
//! `b` (KC × NC, 512 KiB) stays in L2 while every row tile passes over it. A short last tile
//! (fewer than 12 rows) runs the kernel of the next size up (4, 8 or 12 rows), its missing
//! rows read from a row of zeros; a short last panel (fewer than 32 columns) is packed with
//! zeros and stored through masks, and one of at most 16 columns runs a kernel one vector
//! wide. Every element of C is the same sequence of fused
//! multiply-adds along k, in the same order, whichever tile, panel, block or thread computes
//! it, so the result is bitwise the same at every thread count. A transposed `b` (a weight
//! `[out, in]` read as `[in, out]`) is packed through 16 × 16 register transposes.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::ops::Range;

/// Rows of a register tile.
pub(super) const MR: usize = 12;
/// Columns of a register tile (two zmm vectors).
pub(super) const NR: usize = 32;
/// Length of a block along k: the 12 × KC tile of `a` (12 KiB) fits L1 with room for the
/// panel of `b` being read.
const KC: usize = 256;
/// Columns packed at once: a KC × NC block of `b` (512 KiB) stays in L2 while every row
/// tile of `a` passes over it.
const NC: usize = 512;

/// Whether this processor runs the kernel (AVX-512 Foundation; detected once).
pub(super) fn available() -> bool {
    static HAS: std::sync::LazyLock<bool> =
        std::sync::LazyLock::new(|| is_x86_feature_detected!("avx512f"));
    *HAS
}

/// Whether tiles of an `op(a)` with these (row, column) strides are read in place (else
/// copied): rows stored contiguously, not a multiple of 4 KiB apart.
pub(super) fn reads_in_place((rs, cs): (isize, isize)) -> bool {
    cs == 1 && !aliases_in_l1(rs)
}

/// Where `op(x)`'s element `(i, j)` is: `ptr + i * rs + j * cs`, stored row-major (`cs == 1`)
/// or transposed (`rs == 1`), as every product of `gemm.rs` is.
#[derive(Clone, Copy)]
pub(super) struct Operand {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

thread_local! {
    /// Scratch (packed panels of `b`, a row of zeros for the missing rows of a short tile,
    /// the copy of a tile of `a` when it is not read in place), kept between calls so that a
    /// training step's products allocate nothing: at most about 0.6 MiB per thread that ran
    /// a product. Per thread, not a shared list: handing a buffer between threads through a
    /// Rust mutex is invisible to the ThreadSanitizer run of the C tests, which then reports
    /// the next thread's writes as a race.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer, grown to at least `need` values.
fn with_scratch<R>(need: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut buf = s.borrow_mut();
        if buf.len() < need {
            buf.resize(need, 0.0);
        }
        f(&mut buf)
    })
}

/// `c[rows, cols] = alpha * op(a)[rows, :] · op(b)[:, cols] + start` on the calling thread,
/// where `start` is `beta * c[rows, cols]` (C not read when `beta == 0`) or a bias row added
/// to every row; `op(a)` is `m x k`, `op(b)` is `k x n`, `c` row-major with `ldc` columns.
///
/// # Safety
/// [`available`] must be true; `a`, `b` and `c` must cover every element the block touches,
/// and no other thread may access `c[rows, cols]` meanwhile.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn block(
    rows: Range<usize>,
    cols: Range<usize>,
    k: usize,
    alpha: f32,
    a: Operand,
    b: Operand,
    start: Start,
    c: *mut f32,
    ldc: usize,
) {
    debug_assert!(
        a.rs == 1 || a.cs == 1,
        "gemm: a neither row-major nor transposed"
    );
    debug_assert!(
        b.rs == 1 || b.cs == 1,
        "gemm: b neither row-major nor transposed"
    );
    if rows.is_empty() || cols.is_empty() {
        return;
    }
    let widest = cols.len().min(NC).next_multiple_of(NR);
    let need = KC.min(k) * widest + KC + MR * COPY_LD + 16;
    with_scratch(need, |s| {
        // 64-byte alignment for the panels: every load of b is then one cache line.
        let skip = s.as_ptr().align_offset(64).min(15);
        let (panels, rest) = s[skip..].split_at_mut(KC.min(k) * widest);
        let (zeros, copy) = rest.split_at_mut(KC);
        zeros.fill(0.0);
        let mut j0 = cols.start;
        while j0 < cols.end {
            let nc = (cols.end - j0).min(NC);
            let mut k0 = 0;
            while k0 < k {
                let kc = (k - k0).min(KC);
                // SAFETY: the caller's contract covers these elements of a, b and c.
                unsafe {
                    pack_b(b, k0, kc, j0..j0 + nc, panels);
                    // Later blocks along k add to what the earlier ones left in c.
                    let start = if k0 == 0 { start } else { Start::Scale(1.0) };
                    row_tiles(
                        &rows,
                        j0..j0 + nc,
                        k0,
                        kc,
                        alpha,
                        a,
                        panels,
                        zeros,
                        copy,
                        start,
                        c,
                        ldc,
                    );
                }
                k0 += kc;
            }
            j0 += nc;
        }
    });
}

/// Every row tile of `rows` against the packed panels of columns `cols`, for one k block.
#[allow(clippy::too_many_arguments)]
unsafe fn row_tiles(
    rows: &Range<usize>,
    cols: Range<usize>,
    k0: usize,
    kc: usize,
    alpha: f32,
    a: Operand,
    panels: &[f32],
    zeros: &[f32],
    copy: &mut [f32],
    start: Start,
    c: *mut f32,
    ldc: usize,
) {
    let in_place = reads_in_place((a.rs, a.cs));
    let mut i0 = rows.start;
    while i0 < rows.end {
        let mr = (rows.end - i0).min(MR);
        // A transposed `a` of one row (`rs == cs == 1`) is read in place like a row-major one.
        let packed = !in_place && a.rs == 1;
        if !in_place {
            // SAFETY: rows i0..i0 + mr and steps k0..k0 + kc lie inside op(a).
            unsafe { copy_tile(a, i0, mr, k0, kc, copy) };
        }
        let tile: [*const f32; MR] = std::array::from_fn(|r| {
            if packed {
                copy.as_ptr()
            } else if r >= mr {
                zeros.as_ptr()
            } else if in_place {
                // SAFETY: row i0 + r of op(a), from column k0 (kc values follow).
                unsafe { a.ptr.offset((i0 + r) as isize * a.rs + k0 as isize) }
            } else {
                copy[r * COPY_LD..].as_ptr()
            }
        });
        let mut j = cols.start;
        for panel in panels.chunks_exact(kc * NR).take(cols.len().div_ceil(NR)) {
            let out = Out {
                // SAFETY: rows i0..i0 + mr and columns j.. of the caller's block.
                c: unsafe { c.add(i0 * ldc + j) },
                ldc,
                mr,
                nr: (cols.end - j).min(NR),
                alpha,
                // SAFETY: a bias holds a value for every column of the block.
                start: match start {
                    Start::Bias(bias) => Start::Bias(unsafe { bias.add(j) }),
                    scale => scale,
                },
            };
            // SAFETY: every row pointer has kc values, the panel kc rows of NR values.
            unsafe {
                if packed {
                    tile_kernel::<true>(kc, &tile, panel, out)
                } else {
                    tile_kernel::<false>(kc, &tile, panel, out)
                }
            }
            j += NR;
        }
        i0 += mr;
    }
}

/// Row stride of a tile's copy: rows of KC values, 16 more so they do not share L1 sets.
const COPY_LD: usize = KC + 16;

/// Copies rows `i0..i0 + mr`, steps `k0..k0 + kc` of `op(a)` into `out`: a transposed `a`
/// k-major (see [`pack_transposed`]), a row-major one (whose rows alias in L1) as `mr` rows of
/// [`COPY_LD`] values.
unsafe fn copy_tile(a: Operand, i0: usize, mr: usize, k0: usize, kc: usize, out: &mut [f32]) {
    if a.rs == 1 {
        // SAFETY: the caller's rows and steps lie inside op(a); AVX-512 is available.
        return unsafe { pack_transposed(a, i0, mr, k0, kc, out) };
    }
    // SAFETY: the caller's rows and steps lie inside op(a).
    let origin = unsafe { a.ptr.offset(i0 as isize * a.rs + k0 as isize) };
    for r in 0..mr {
        // SAFETY: kc contiguous values of row i0 + r (`a.cs == 1`).
        let row = unsafe { std::slice::from_raw_parts(origin.offset(r as isize * a.rs), kc) };
        out[r * COPY_LD..][..kc].copy_from_slice(row);
    }
}

/// Packs rows `i0..i0 + mr`, steps `k0..k0 + kc` of a transposed `op(a)` (stored `k x m`)
/// k-major into `out`: the tile's [`MR`] values of step `p` side by side at `p * MR`, rows
/// past `mr` zero. Stored transposed, those values already lie side by side in `a`, so each
/// step is one masked load and store (where 16 x 16 register transposes into rows had cost
/// the weight gradients 5 to 15 % against matrixmultiply).
#[target_feature(enable = "avx512f")]
unsafe fn pack_transposed(a: Operand, i0: usize, mr: usize, k0: usize, kc: usize, out: &mut [f32]) {
    debug_assert!(a.rs == 1 && mr <= MR && out.len() >= kc * MR + (16 - MR));
    let (load, store) = (lanes(mr), lanes(MR));
    for p in 0..kc {
        // SAFETY: step k0 + p, rows i0..i0 + mr of op(a) (masked beyond); the store writes
        // MR values at p * MR, inside `out`.
        unsafe {
            let v =
                _mm512_maskz_loadu_ps(load, a.ptr.offset((k0 + p) as isize * a.cs + i0 as isize));
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(p * MR), store, v);
        }
    }
}

/// Whether rows `stride` floats apart fall into the same few L1 sets: at a multiple of
/// 4 KiB, every row of a tile maps to the same 16 sets, more rows than the cache has ways.
fn aliases_in_l1(stride: isize) -> bool {
    stride % 1024 == 0
}

/// What a block adds to `alpha * op(a) · op(b)`.
#[derive(Clone, Copy)]
pub(super) enum Start {
    /// `beta * c` (c not read when `beta == 0`).
    Scale(f32),
    /// A bias row added to every row of C: one value per column of C (for a tile, from the
    /// tile's first column).
    Bias(*const f32),
}

/// Where a kernel's tile goes: `c = alpha * acc + start` on its first `mr` rows and `nr`
/// columns, C row-major with `ldc` columns.
#[derive(Clone, Copy)]
struct Out {
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    alpha: f32,
    start: Start,
}

/// Packs `op(b)[k0..k0 + kc, cols]` into panels of [`NR`] columns, each `kc x NR`
/// row-major, the last one padded with zeros.
unsafe fn pack_b(b: Operand, k0: usize, kc: usize, cols: Range<usize>, out: &mut [f32]) {
    for (q, panel) in out
        .chunks_exact_mut(kc * NR)
        .take(cols.len().div_ceil(NR))
        .enumerate()
    {
        let j0 = cols.start + q * NR;
        let nr = (cols.end - j0).min(NR);
        // SAFETY: (k0, j0) and the panel's kc rows and nr columns are inside op(b).
        let origin = unsafe { b.ptr.offset(k0 as isize * b.rs + j0 as isize * b.cs) };
        if nr < NR {
            panel.fill(0.0);
        }
        if b.cs == 1 {
            // SAFETY: nr contiguous values of each row k0 + p; the panel has kc rows of NR.
            unsafe { copy_rows(origin, b.rs, kc, nr, panel) };
        } else {
            // Stored transposed (a weight `[out, in]` read as `[in, out]`): each column of
            // op(b) is contiguous along k, and 16 x 16 blocks are transposed in registers.
            for half in (0..nr).step_by(16) {
                for p0 in (0..kc).step_by(16) {
                    // SAFETY: columns j0 + half + j (j < nr - half) and steps k0 + p0 + t
                    // (t < kc - p0) lie inside op(b); the panel has kc rows of NR values.
                    unsafe {
                        let src = origin.offset(half as isize * b.cs + p0 as isize);
                        transpose_16x16(src, b.cs, nr - half, kc - p0, panel, p0 * NR + half, NR);
                    }
                }
            }
        }
    }
}

/// The mask of a vector's first `n` lanes (all 16 for `n >= 16`).
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// Copies `nr` (at most [`NR`]) values of `rows` rows, `stride` apart from `src`, into rows of
/// [`NR`] of `out`, with two (masked) vector moves per row: a memcpy call per 128 bytes
/// cost more than the copy.
#[target_feature(enable = "avx512f")]
unsafe fn copy_rows(src: *const f32, stride: isize, rows: usize, nr: usize, out: &mut [f32]) {
    let (m0, m1) = (lanes(nr), lanes(nr.saturating_sub(16)));
    for (p, row) in out.chunks_exact_mut(NR).take(rows).enumerate() {
        // SAFETY: masked lanes are not read; the others are the caller's nr values, and the
        // row holds NR values.
        unsafe {
            let s = src.offset(p as isize * stride);
            let (v0, v1) = (
                _mm512_maskz_loadu_ps(m0, s),
                _mm512_maskz_loadu_ps(m1, s.add(16)),
            );
            _mm512_storeu_ps(row.as_mut_ptr(), v0);
            _mm512_storeu_ps(row.as_mut_ptr().add(16), v1);
        }
    }
}

/// Writes the transpose of a block of up to 16 x 16 values into `out`: source row `j` (of
/// `rows`, each `stride` apart, `steps` contiguous values used) becomes column `j` of the
/// rows of `out` that start at `at`, `ld` apart. Missing rows read as zeros; only `steps`
/// rows are written.
#[target_feature(enable = "avx512f")]
unsafe fn transpose_16x16(
    src: *const f32,
    stride: isize,
    rows: usize,
    steps: usize,
    out: &mut [f32],
    at: usize,
    ld: usize,
) {
    let steps = steps.min(16);
    let mask = lanes(steps);
    // SAFETY: row j < rows has `steps` values from src + j * stride (masked beyond).
    let r: [__m512; 16] = std::array::from_fn(|j| {
        if j < rows {
            unsafe { _mm512_maskz_loadu_ps(mask, src.offset(j as isize * stride)) }
        } else {
            _mm512_setzero_ps()
        }
    });
    let lo = |a, b| _mm512_unpacklo_ps(a, b);
    let hi = |a, b| _mm512_unpackhi_ps(a, b);
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let pair = 2 * (i / 2);
        if i % 2 == 0 {
            lo(r[pair], r[pair + 1])
        } else {
            hi(r[pair], r[pair + 1])
        }
    });
    let dlo = |a: __m512, b: __m512| {
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
    };
    let dhi = |a: __m512, b: __m512| {
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
    };
    // Within each group of four rows: (t0, t2) and (t1, t3) give rows 0..4 of 4-wide blocks.
    let u: [__m512; 16] = std::array::from_fn(|i| {
        let g = 4 * (i / 4);
        match i % 4 {
            0 => dlo(t[g], t[g + 2]),
            1 => dhi(t[g], t[g + 2]),
            2 => dlo(t[g + 1], t[g + 3]),
            _ => dhi(t[g + 1], t[g + 3]),
        }
    });
    // 128-bit lanes: first pair groups 0/1 and 2/3, then 0-1/2-3.
    let v: [__m512; 16] = std::array::from_fn(|i| {
        let (base, hi_half) = (8 * (i / 8), i % 8 >= 4);
        let (a, b) = (u[base + i % 4], u[base + 4 + i % 4]);
        if hi_half {
            _mm512_shuffle_f32x4::<0xDD>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        }
    });
    for (i, o) in out[at..].chunks_mut(ld).take(steps).enumerate() {
        let (a, b) = (v[i % 8], v[8 + i % 8]);
        let row = if i < 8 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xDD>(a, b)
        };
        // SAFETY: the caller's rows of `out` hold 16 values from each row start.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), row) };
    }
}

/// The kernel for a tile of `out.mr` rows and `out.nr` columns: the next row count up of
/// 4, 8 or 12, and one vector of columns instead of two for a panel of at most 16 (the last
/// panel of 784 columns, say, which two vectors would compute twice over).
///
/// # Safety
/// As [`kernel`].
unsafe fn tile_kernel<const PACKED: bool>(
    kc: usize,
    rows: &[*const f32; MR],
    panel: &[f32],
    out: Out,
) {
    // SAFETY: the caller's contract.
    unsafe {
        match (out.mr, out.nr <= 16) {
            (1..=4, false) => kernel::<4, 2, PACKED>(kc, rows, panel, out),
            (5..=8, false) => kernel::<8, 2, PACKED>(kc, rows, panel, out),
            (_, false) => kernel::<12, 2, PACKED>(kc, rows, panel, out),
            (1..=4, true) => kernel::<4, 1, PACKED>(kc, rows, panel, out),
            (5..=8, true) => kernel::<8, 1, PACKED>(kc, rows, panel, out),
            (_, true) => kernel::<12, 1, PACKED>(kc, rows, panel, out),
        }
    }
}

/// The register tile: `acc[r] += a[r][p] · panel[p]` along k, for the first `R` rows and
/// the first `W` vectors of 16 columns. Value `(r, p)` of the tile is at `rows[r] + p`, or,
/// `PACKED`, at `rows[0] + p * MR + r` (see [`pack_transposed`]).
///
/// # Safety
/// Each row pointer (the packed tile) holds kc steps; the panel (64-byte aligned) kc rows of
/// NR values; `out` a tile of the caller's c.
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const R: usize, const W: usize, const PACKED: bool>(
    kc: usize,
    rows: &[*const f32; MR],
    panel: &[f32],
    out: Out,
) {
    let mut acc = [[_mm512_setzero_ps(); W]; R];
    let b = panel.as_ptr();
    for p in 0..kc {
        // SAFETY: the panel (64-byte aligned) holds kc rows of NR values; each row pointer
        // kc values.
        unsafe {
            let bv: [__m512; W] = std::array::from_fn(|h| _mm512_load_ps(b.add(p * NR + 16 * h)));
            for r in 0..R {
                let x = if PACKED {
                    _mm512_set1_ps(*rows[0].add(p * MR + r))
                } else {
                    _mm512_set1_ps(*rows[r].add(p))
                };
                for h in 0..W {
                    acc[r][h] = _mm512_fmadd_ps(x, bv[h], acc[r][h]);
                }
            }
        }
    }
    // SAFETY: the caller's tile of c.
    unsafe { store(acc, out) }
}

/// `c = alpha * acc + start` on the tile's first `mr` rows and `nr` columns. Always inlined
/// into [`kernel`] (whose AVX-512 it then runs with): called, its accumulators would go
/// through memory, which cost 3 % of a ∇τ run in calls and spills.
///
/// # Safety
/// AVX-512 must be available; `out` a tile of the caller's c.
#[inline(always)]
unsafe fn store<const R: usize, const W: usize>(acc: [[__m512; W]; R], out: Out) {
    let masks = [lanes(out.nr), lanes(out.nr.saturating_sub(16))];
    let alpha = _mm512_set1_ps(out.alpha);
    for (r, row) in acc.iter().enumerate().take(out.mr) {
        for (h, (&v, &mask)) in row.iter().zip(&masks).enumerate() {
            // SAFETY: masked lanes are neither read nor written; the others lie in the tile
            // (and in the bias row).
            unsafe {
                let cp = out.c.add(r * out.ldc + 16 * h);
                let value = match out.start {
                    Start::Scale(0.0) => _mm512_mul_ps(alpha, v),
                    Start::Scale(beta) => {
                        let old = _mm512_maskz_loadu_ps(mask, cp);
                        _mm512_fmadd_ps(alpha, v, _mm512_mul_ps(_mm512_set1_ps(beta), old))
                    }
                    Start::Bias(bias) => {
                        let b = _mm512_maskz_loadu_ps(mask, bias.add(16 * h));
                        _mm512_fmadd_ps(alpha, v, b)
                    }
                };
                _mm512_mask_storeu_ps(cp, mask, value);
            }
        }
    }
}
