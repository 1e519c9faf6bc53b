//! 2-D convolution over NCHW tensors (PyTorch layout: weight `[C_out, C_in, kh, kw]`).
//!
//! Stride-1 convolutions (every convolution of the benchmark CNN) run on hand-written
//! kernels (the private module `direct`): they read the zero-padded input in place instead of copying it
//! into a patch matrix that the GEMM then copies again into its packed layout, which is
//! where the per-sample GEMM path spent most of its time on small layers.
//!
//! Other convolutions use im2col + GEMM, one sample at a time, samples spread over threads.
//! Per sample the patch matrix `col: [C_in*kh*kw, OH*OW]` stays in cache, `W @ col` lands
//! directly in the sample's NCHW output, and the backward products read the sample's output
//! gradient in place, so no batch-sized scratch buffer or layout permutation is needed. The
//! batch is cut into ranges run on the shared CPU pool under the caller's thread budget; a
//! range's GEMMs get that range's share of the budget (one thread each when there are at
//! least as many ranges as threads). Measured on the benchmark CNN (batch 128, 28x28, 2
//! cores), this ran conv forward+backward 2-4x faster than one batch-wide GEMM over a
//! `[K, N*OH*OW]` patch matrix, whose scratch buffers and NCHW permutations cost more than
//! the larger GEMM gained.

use super::{expect_rank, host, same_device};
use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::backend::cpu::{matmul as gemm, par_map, simd, Transpose};
use crate::backend::cuda::{self, Conv2dGeometry};
use crate::backend::Storage;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Below this many output elements, a kernel runs on the calling thread: spawning costs more.
pub(crate) const PAR_MIN: usize = 1 << 15;

/// Stride and zero padding of a convolution, per (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: (1, 1),
            padding: (0, 0),
        }
    }
}

/// PyTorch's output length `floor((len + 2 pad - k) / stride) + 1`, or an error naming `op`
/// when the kernel does not fit the padded input or the stride is zero.
pub(crate) fn out_len(
    op: &'static str,
    axis: &str,
    len: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> Result<usize> {
    if stride == 0 {
        return Err(Error::invalid(format!("{op}: {axis} stride must be > 0")));
    }
    if k == 0 {
        return Err(Error::invalid(format!(
            "{op}: {axis} kernel size must be > 0"
        )));
    }
    let padded = len + 2 * pad;
    if k > padded {
        return Err(Error::shape(
            op,
            format!(
                "{axis} kernel {k} is larger than the padded input ({len} + 2*{pad} = {padded})"
            ),
        ));
    }
    Ok((padded - k) / stride + 1)
}

/// The output indices `o < out_len` whose input index `o*stride + offset` lies in
/// `[0, in_len)`, as a half-open range; `offset` is the kernel tap minus the padding.
/// Computing it once per row lets the inner loops run over plain slices.
#[inline]
pub(crate) fn valid_range(
    out_len: usize,
    stride: usize,
    offset: isize,
    in_len: usize,
) -> (usize, usize) {
    let s = stride as isize;
    let lo = if offset >= 0 {
        0
    } else {
        ((-offset + s - 1) / s) as usize
    };
    let last = in_len as isize - 1 - offset;
    let hi = if last < 0 {
        0
    } else {
        ((last / s) as usize + 1).min(out_len)
    };
    (lo.min(hi), hi)
}

/// Every size of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    co: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    oh: usize,
    ow: usize,
}

impl Geom {
    fn new(x: &Tensor, w: &Tensor, p: Conv2dParams) -> Result<Self> {
        expect_rank(x, 4, "conv2d", "input [N, C_in, H, W]")?;
        expect_rank(w, 4, "conv2d", "weight [C_out, C_in, kh, kw]")?;
        let (n, c, h, wd) = (x.dim(0), x.dim(1), x.dim(2), x.dim(3));
        let (co, ci, kh, kw) = (w.dim(0), w.dim(1), w.dim(2), w.dim(3));
        if ci != c {
            return Err(Error::shape(
                "conv2d",
                format!(
                    "input has {c} channels but the weight {:?} expects {ci}",
                    w.shape()
                ),
            ));
        }
        let oh = out_len("conv2d", "height", h, kh, p.stride.0, p.padding.0)?;
        let ow = out_len("conv2d", "width", wd, kw, p.stride.1, p.padding.1)?;
        Ok(Geom {
            n,
            c,
            h,
            w: wd,
            co,
            kh,
            kw,
            sh: p.stride.0,
            sw: p.stride.1,
            ph: p.padding.0,
            pw: p.padding.1,
            oh,
            ow,
        })
    }

    /// The CUDA backend's description of the same convolution.
    fn cuda(&self) -> Conv2dGeometry {
        Conv2dGeometry {
            n: self.n,
            c_in: self.c,
            h: self.h,
            w: self.w,
            c_out: self.co,
            kh: self.kh,
            kw: self.kw,
            stride: (self.sh, self.sw),
            padding: (self.ph, self.pw),
            dilation: (1, 1),
            groups: 1,
        }
    }

    fn out_shape(&self) -> Vec<usize> {
        vec![self.n, self.co, self.oh, self.ow]
    }

    /// Output positions per sample.
    fn p(&self) -> usize {
        self.oh * self.ow
    }

    /// Rows of the patch matrix: one per (input channel, kernel row, kernel column).
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// The kernel tap of patch row `r` as (channel, row tap, column tap).
    #[inline]
    fn tap(&self, r: usize) -> (usize, usize, usize) {
        (
            r / (self.kh * self.kw),
            (r / self.kw) % self.kh,
            r % self.kw,
        )
    }

    /// Valid output rows and columns for tap (i, j).
    #[inline]
    fn ranges(&self, i: usize, j: usize) -> ((usize, usize), (usize, usize)) {
        (
            valid_range(self.oh, self.sh, i as isize - self.ph as isize, self.h),
            valid_range(self.ow, self.sw, j as isize - self.pw as isize, self.w),
        )
    }
}

// Image rows are short (often under 16 floats), below the length at which LLVM's loop
// vectoriser enters its vector loop, and `copy_from_slice` becomes a libc call. Fixed-size
// chunks of 4 compile to one SSE instruction each.

#[inline(always)]
fn add_row(d: &mut [f32], s: &[f32]) {
    let mut dc = d.chunks_exact_mut(4);
    let mut sc = s.chunks_exact(4);
    for (a, b) in (&mut dc).zip(&mut sc) {
        for q in 0..4 {
            a[q] += b[q];
        }
    }
    for (a, b) in dc.into_remainder().iter_mut().zip(sc.remainder()) {
        *a += *b;
    }
}

#[inline(always)]
fn copy_row(d: &mut [f32], s: &[f32]) {
    let mut dc = d.chunks_exact_mut(4);
    let mut sc = s.chunks_exact(4);
    for (a, b) in (&mut dc).zip(&mut sc) {
        a.copy_from_slice(b);
    }
    for (a, b) in dc.into_remainder().iter_mut().zip(sc.remainder()) {
        *a = *b;
    }
}

/// Patch matrix of one sample, `[K, P]`:
/// `col[(c,i,j), oh*OW + ow] = x[c, oh*sh+i-ph, ow*sw+j-pw]`, zero in the padding.
/// `col` is reused between samples, so every element is written.
fn im2col(x: &[f32], g: &Geom, col: &mut [f32]) {
    let (p, hw) = (g.p(), g.h * g.w);
    for (r, row) in col.chunks_exact_mut(p).enumerate() {
        let (c, i, j) = g.tap(r);
        let ((oh_lo, oh_hi), (ow_lo, ow_hi)) = g.ranges(i, j);
        if ow_lo >= ow_hi || oh_lo >= oh_hi {
            row.fill(0.0);
            continue;
        }
        let plane = &x[c * hw..][..hw];
        row[..oh_lo * g.ow].fill(0.0);
        row[oh_hi * g.ow..].fill(0.0);
        // First input column read, for output column ow_lo.
        let iw0 = ow_lo * g.sw + j - g.pw;
        let span = ow_hi - ow_lo;
        for oh in oh_lo..oh_hi {
            let ih = oh * g.sh + i - g.ph;
            let src = &plane[ih * g.w + iw0..];
            let d = &mut row[oh * g.ow..][..g.ow];
            d[..ow_lo].fill(0.0);
            d[ow_hi..].fill(0.0);
            let d = &mut d[ow_lo..ow_hi];
            if g.sw == 1 {
                copy_row(d, &src[..span]);
            } else {
                for (o, v) in d.iter_mut().zip(src.iter().step_by(g.sw)) {
                    *o = *v;
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds one sample's patch-matrix gradient into `dx: [C, H, W]`.
fn col2im(dcol: &[f32], g: &Geom, dx: &mut [f32]) {
    let (p, hw) = (g.p(), g.h * g.w);
    for (r, src) in dcol.chunks_exact(p).enumerate() {
        let (c, i, j) = g.tap(r);
        let ((oh_lo, oh_hi), (ow_lo, ow_hi)) = g.ranges(i, j);
        if ow_lo >= ow_hi {
            continue;
        }
        let plane = &mut dx[c * hw..][..hw];
        let iw0 = ow_lo * g.sw + j - g.pw;
        let span = ow_hi - ow_lo;
        for oh in oh_lo..oh_hi {
            let ih = oh * g.sh + i - g.ph;
            let s = &src[oh * g.ow + ow_lo..][..span];
            let d = &mut plane[ih * g.w + iw0..];
            if g.sw == 1 {
                add_row(&mut d[..span], s);
            } else {
                for (o, v) in d.iter_mut().step_by(g.sw).zip(s) {
                    *o += *v;
                }
            }
        }
    }
}

/// Stride-1 convolutions without a patch matrix.
///
/// Why hand-written: on the benchmark CNN the per-sample im2col + packed GEMM spent most of
/// its time copying, not multiplying (the first layer's patch matrix has 9 rows, so
/// matrixmultiply packs 784 columns to do 9 multiply-adds on each; its weight gradient is a
/// 9 x 16 product whose inner dimension is 784, and both operands are packed per sample).
/// With stride 1, the input laid out once per sample with its zero padding, at a row
/// stride equal to the padded width, makes every patch-matrix row a contiguous shifted view
/// of that buffer: output position `q = oh * wp + ow` reads `xpad[c * plane + i * wp + j + q]`
/// for tap `(c, i, j)`. The kernels run over `q` on that padded-width grid (the `kw - 1`
/// columns past each row's end are computed and dropped), so the GEMM's B operand is read in
/// place and never packed. The input gradient of a stride-1 convolution is itself a stride-1
/// convolution of the output gradient (padding `k - 1 - pad`, weights flipped, channels
/// swapped), so it runs on the same kernel and writes `dx` once instead of zero-filling it
/// and scattering `col2im` sums into it.
///
/// Every output element is one fused multiply-add chain in tap order (forward, input
/// gradient) or sixteen lane chains over `q` added in a fixed order (weight gradient), so
/// neither the tiling nor the thread count changes its bits, and the AVX-512, AVX2 and
/// portable builds of a kernel agree bit for bit (`mul_add` is one rounding everywhere).
// Tile loops index several arrays by the same lane, row or tap number.
#[allow(clippy::needless_range_loop)]
mod direct {
    /// Lanes of one vector chunk along `q` (one AVX-512 register; two AVX2 ones).
    pub(super) const L: usize = 16;
    /// Output channels per forward tile with AVX-512 ([`tile_avx512_8`]), and on narrower
    /// units, where a 16-lane chunk takes two registers (3 x 2 x 2 of 16).
    const CB_WIDE: usize = 8;
    const CB_NARROW: usize = 3;
    /// Vector chunks along `q` per forward tile: 8 x 2 accumulators and 2 + 8 loads per
    /// tap, the balance of a GEMM micro-kernel.
    const NV: usize = 2;
    /// Output channels and taps per weight-gradient tile (4 x 3 accumulators, 7 loads).
    const WB: usize = 4;
    const TB: usize = 3;

    /// A stride-1 convolution of one `[c, h, w]` plane stack on the padded-width grid.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Flat {
        pub c: usize,
        pub h: usize,
        pub w: usize,
        pub ph: usize,
        pub pw: usize,
        pub kh: usize,
        pub kw: usize,
        /// Padded width: the row stride of the input buffer and of the `q` grid.
        pub wp: usize,
        pub oh: usize,
        pub ow: usize,
        /// Positions computed per output plane, rounded up to whole tiles.
        pub qpad: usize,
        /// Floats per padded input plane.
        pub plane: usize,
        /// Floats of the input buffer: every plane, plus the reads of the last tile past
        /// the last plane's end.
        pub buf: usize,
    }

    impl Flat {
        pub fn new(
            c: usize,
            (h, w): (usize, usize),
            (ph, pw): (usize, usize),
            (kh, kw): (usize, usize),
        ) -> Self {
            let (hp, wp) = (h + 2 * ph, w + 2 * pw);
            let (oh, ow) = (hp + 1 - kh, wp + 1 - kw);
            let q = oh * wp;
            let qpad = q.next_multiple_of(NV * L);
            let plane = hp * wp;
            Flat {
                c,
                h,
                w,
                ph,
                pw,
                kh,
                kw,
                wp,
                oh,
                ow,
                qpad,
                plane,
                buf: c * plane + kw - 1 + (qpad - q),
            }
        }

        pub fn k(&self) -> usize {
            self.c * self.kh * self.kw
        }

        /// Buffer offset of tap `(c, i, j)` for every tap, in weight order.
        pub fn offsets(&self) -> Vec<usize> {
            let mut o = Vec::with_capacity(self.k());
            for c in 0..self.c {
                for i in 0..self.kh {
                    for j in 0..self.kw {
                        o.push(c * self.plane + i * self.wp + j);
                    }
                }
            }
            o
        }

        /// Copies one sample `[c, h, w]` into the interior of `buf`, whose padding (and
        /// tail) must already be zero: it is never written, so a buffer reused across
        /// samples is zero-filled once.
        pub fn load(&self, x: &[f32], buf: &mut [f32]) {
            let hw = self.h * self.w;
            if self.w == 0 {
                return;
            }
            for (c, src) in x[..self.c * hw].chunks_exact(hw.max(1)).enumerate() {
                let dst = &mut buf[c * self.plane + self.ph * self.wp + self.pw..];
                for (r, row) in src.chunks_exact(self.w).enumerate() {
                    super::copy_row(&mut dst[r * self.wp..][..self.w], row);
                }
            }
        }
    }

    /// Weights `[co, k]` regrouped as `[co / cb][k][cb]` (missing channels zero), so that a
    /// tile reads its `cb` weights of one tap from one place.
    pub(super) struct Packed {
        w: Vec<f32>,
        co: usize,
        cb: usize,
    }

    pub(super) fn pack_weights(w: &[f32], co: usize, k: usize) -> crate::error::Result<Packed> {
        let cb = if isa() == Isa::Portable {
            CB_NARROW
        } else {
            tile_rows()
        };
        let blocks = co.div_ceil(cb);
        let mut p = crate::backend::cpu::pool::zeroed(blocks * k * cb)?;
        for o in 0..co {
            for t in 0..k {
                p[((o / cb) * k + t) * cb + o % cb] = w[o * k + t];
            }
        }
        Ok(Packed { w: p, co, cb })
    }

    /// Tile height for the widest vector unit present.
    fn tile_rows() -> usize {
        #[cfg(target_arch = "x86_64")]
        if isa() == Isa::Avx512 {
            return CB_WIDE;
        }
        CB_NARROW
    }

    /// Reads `L` floats at `p`.
    ///
    /// # Safety
    /// `p .. p + L` must lie inside one live allocation.
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; L] {
        // SAFETY: the caller's contract; `[f32; L]` has no alignment beyond f32's when read
        // unaligned.
        unsafe { std::ptr::read_unaligned(p.cast::<[f32; L]>()) }
    }

    /// `y[o, oh, ow] = bias[o] + sum_t w[o, t] * buf[offs[t] + oh * wp + ow]` for every
    /// output channel `o < co` and position of `f`'s output, `wpk` from [`pack_weights`].
    /// Each tile's valid columns go from its registers straight to `y`: a `[co, qpad]`
    /// scratch copied out afterwards cost a pass over a buffer larger than L1.
    #[inline(always)]
    fn forward_body<const CB: usize>(
        f: &Flat,
        buf: &[f32],
        offs: &[usize],
        wpk: &[f32],
        co: usize,
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) {
        // SAFETY: forward_with checks that every read of the tiles stays inside `buf`.
        forward_with::<CB>(f, buf, offs, wpk, co, bias, y, |bp, wb, q0, b0| unsafe {
            tile_portable::<CB>(bp, offs, wb, q0, b0)
        })
    }

    /// One tile's sums, `acc[r][v][l]` for output channel `r` of the block and position
    /// `q0 + v * L + l`: the bias, then one fused multiply-add per tap in weight order.
    ///
    /// # Safety
    /// `bp + off + q0 .. bp + off + q0 + NV * L` must be readable for every `off` in `offs`,
    /// and `wb` must hold `offs.len() * CB` weights.
    #[inline(always)]
    unsafe fn tile_portable<const CB: usize>(
        bp: *const f32,
        offs: &[usize],
        wb: &[f32],
        q0: usize,
        b0: [f32; CB],
    ) -> [[[f32; L]; NV]; CB] {
        let mut acc = [[[0.0f32; L]; NV]; CB];
        for r in 0..CB {
            acc[r] = [[b0[r]; L]; NV];
        }
        for (&off, wt) in offs.iter().zip(wb.chunks_exact(CB)) {
            // SAFETY: the caller's contract.
            let xs: [[f32; L]; NV] =
                std::array::from_fn(|v| unsafe { load(bp.add(off + q0 + v * L)) });
            let wt: &[f32; CB] = wt.try_into().unwrap();
            for r in 0..CB {
                let wr = wt[r];
                for v in 0..NV {
                    for l in 0..L {
                        acc[r][v][l] = wr.mul_add(xs[v][l], acc[r][v][l]);
                    }
                }
            }
        }
        acc
    }

    /// [`tile_portable`] for 8 output channels in AVX-512 registers (16 accumulators, 2 + 8
    /// loads per 16 multiply-adds). Written with intrinsics because LLVM turned the portable
    /// body into gathers at 8 rows; `_mm512_fmadd_ps` rounds once, as `mul_add` does, so
    /// the sums have the same bits.
    ///
    /// # Safety
    /// As [`tile_portable`], and the processor must support AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_avx512_8(
        bp: *const f32,
        offs: &[usize],
        wb: &[f32],
        q0: usize,
        b0: [f32; 8],
    ) -> [[[f32; L]; NV]; 8] {
        use std::arch::x86_64::*;
        const { assert!(NV == 2 && L == 16) };
        let mut acc = [[_mm512_setzero_ps(); NV]; 8];
        for r in 0..8 {
            acc[r] = [_mm512_set1_ps(b0[r]); NV];
        }
        for (&off, wt) in offs.iter().zip(wb.chunks_exact(8)) {
            // SAFETY: the caller's contract.
            let (x0, x1) = unsafe {
                (
                    _mm512_loadu_ps(bp.add(off + q0)),
                    _mm512_loadu_ps(bp.add(off + q0 + L)),
                )
            };
            for r in 0..8 {
                let w = _mm512_set1_ps(wt[r]);
                acc[r][0] = _mm512_fmadd_ps(w, x0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(w, x1, acc[r][1]);
            }
        }
        let mut out = [[[0.0f32; L]; NV]; 8];
        for r in 0..8 {
            for v in 0..NV {
                // SAFETY: `out[r][v]` holds L = 16 floats.
                unsafe { _mm512_storeu_ps(out[r][v].as_mut_ptr(), acc[r][v]) };
            }
        }
        out
    }

    /// The forward loop around a tile function (see [`forward_body`]).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn forward_with<const CB: usize>(
        f: &Flat,
        buf: &[f32],
        offs: &[usize],
        wpk: &[f32],
        co: usize,
        bias: Option<&[f32]>,
        y: &mut [f32],
        tile: impl Fn(*const f32, &[f32], usize, [f32; CB]) -> [[[f32; L]; NV]; CB],
    ) {
        let (qpad, wp, ow, p) = (f.qpad, f.wp, f.ow, f.oh * f.ow);
        let q_end = f.oh * wp;
        let k = offs.len();
        assert!(qpad % (NV * L) == 0 && y.len() >= co * p && ow <= wp);
        assert!(offs.iter().all(|&o| o + qpad <= buf.len()));
        let bp = buf.as_ptr();
        for (blk, wb) in wpk.chunks_exact(k * CB).enumerate() {
            let mut b0 = [0.0f32; CB];
            if let Some(b) = bias {
                for r in 0..CB {
                    b0[r] = b.get(blk * CB + r).copied().unwrap_or(0.0);
                }
            }
            let rows = CB.min(co - blk * CB);
            let out = &mut y[blk * CB * p..][..rows * p];
            for q0 in (0..q_end).step_by(NV * L) {
                // off + q0 + NV * L <= off + qpad <= buf.len() for every tap (asserted above).
                let acc = tile(bp, wb, q0, b0);
                // The output rows this tile overlaps, and the valid columns of each.
                let q1 = (q0 + NV * L).min(q_end);
                let mut row = q0 / wp;
                while row * wp < q1 {
                    let lo = (row * wp).max(q0);
                    let hi = (row * wp + ow).min(q1);
                    if lo < hi {
                        let dst = row * ow + lo - row * wp;
                        for r in 0..rows {
                            let src = &acc[r].as_flattened()[lo - q0..hi - q0];
                            super::copy_row(&mut out[r * p + dst..][..hi - lo], src);
                        }
                    }
                    row += 1;
                }
            }
        }
    }

    /// Floats of the lane-wise weight-gradient sums: `[co, k, L]`, `co` and `k` rounded up
    /// to whole tiles.
    pub(super) fn lanes_len(co: usize, k: usize) -> usize {
        co.next_multiple_of(WB) * k.next_multiple_of(TB) * L
    }

    /// `lanes[o, t, l] += sum_{q = l mod L} gz[o, q] * buf[offs[t] + q]`, `gz: [co rounded
    /// up to WB, qpad]` zero past each row's `ow` valid columns. The lanes are added up by
    /// [`reduce_lanes`] once per range of samples: a horizontal sum per element and sample
    /// would be a long chain of dependent scalar adds.
    #[inline(always)]
    fn weight_grad_body(buf: &[f32], offs: &[usize], gz: &[f32], qpad: usize, lanes: &mut [f32]) {
        let k = offs.len();
        let kp = k.next_multiple_of(TB);
        let blocks = lanes.len() / (WB * kp * L).max(1);
        assert!(k > 0 && qpad.is_multiple_of(L) && gz.len() >= blocks * WB * qpad);
        assert!(offs.iter().all(|&o| o + qpad <= buf.len()));
        let (bp, gp) = (buf.as_ptr(), gz.as_ptr());
        for blk in 0..blocks {
            for tb in (0..kp).step_by(TB) {
                // A tap past the end repeats the last one; its sums land in padding.
                let o: [usize; TB] = std::array::from_fn(|s| offs[(tb + s).min(k - 1)]);
                let mut acc = [[[0.0f32; L]; TB]; WB];
                for q0 in (0..qpad).step_by(L) {
                    // SAFETY: (blk * WB + r) * qpad + q0 + L <= blocks * WB * qpad <= gz.len(),
                    // and o[s] + q0 + L <= o[s] + qpad <= buf.len() (asserted above).
                    let gv: [[f32; L]; WB] = std::array::from_fn(|r| unsafe {
                        load(gp.add((blk * WB + r) * qpad + q0))
                    });
                    // SAFETY: as above.
                    let xv: [[f32; L]; TB] =
                        std::array::from_fn(|s| unsafe { load(bp.add(o[s] + q0)) });
                    for r in 0..WB {
                        for s in 0..TB {
                            for l in 0..L {
                                acc[r][s][l] = gv[r][l].mul_add(xv[s][l], acc[r][s][l]);
                            }
                        }
                    }
                }
                for r in 0..WB {
                    for s in 0..TB {
                        let d = &mut lanes[((blk * WB + r) * kp + tb + s) * L..][..L];
                        for l in 0..L {
                            d[l] += acc[r][s][l];
                        }
                    }
                }
            }
        }
    }

    /// `dw[o, t] += sum_l lanes[o, t, l]`, lanes added in order.
    pub(super) fn reduce_lanes(lanes: &[f32], co: usize, k: usize, dw: &mut [f32]) {
        let kp = k.next_multiple_of(TB);
        for o in 0..co {
            for t in 0..k {
                let mut s = 0.0f32;
                for &v in &lanes[(o * kp + t) * L..][..L] {
                    s += v;
                }
                dw[o * k + t] += s;
            }
        }
    }

    /// Floats of the zero-padded output-gradient copy the weight gradient reads.
    pub(super) fn gz_len(f: &Flat, co: usize) -> usize {
        co.next_multiple_of(WB) * f.qpad
    }

    /// Copies `g: [co, oh, ow]` into `gz` on the `q` grid; the columns past `ow` and the
    /// tail past `oh * wp` must already be zero (they are never written).
    pub(super) fn load_grad(f: &Flat, g: &[f32], gz: &mut [f32]) {
        let p = f.oh * f.ow;
        if p == 0 {
            return;
        }
        for (o, plane) in g.chunks_exact(p).enumerate() {
            for (r, row) in plane.chunks_exact(f.ow).enumerate() {
                super::copy_row(&mut gz[o * f.qpad + r * f.wp..][..f.ow], row);
            }
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Isa {
        Portable,
        #[cfg(target_arch = "x86_64")]
        Avx2,
        #[cfg(target_arch = "x86_64")]
        Avx512,
    }

    fn isa() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            static ISA: std::sync::LazyLock<Isa> = std::sync::LazyLock::new(|| {
                if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                    Isa::Avx512
                } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    Isa::Avx2
                } else {
                    Isa::Portable
                }
            });
            if !crate::backend::cpu::simd::reference_mode() {
                return *ISA;
            }
        }
        Isa::Portable
    }

    /// The forward kernel (see [`forward_body`]) on the widest vector unit present.
    pub(super) fn forward(
        f: &Flat,
        buf: &[f32],
        offs: &[usize],
        w: &Packed,
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) {
        let (wpk, co) = (&w.w[..], w.co);
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512(
                f: &Flat,
                buf: &[f32],
                offs: &[usize],
                wpk: &[f32],
                co: usize,
                bias: Option<&[f32]>,
                y: &mut [f32],
            ) {
                // SAFETY: forward_with checks that every read of the tiles stays inside
                // `buf`, and this function runs only where AVX-512F is present.
                forward_with::<CB_WIDE>(f, buf, offs, wpk, co, bias, y, |bp, wb, q0, b0| unsafe {
                    tile_avx512_8(bp, offs, wb, q0, b0)
                })
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2(
                f: &Flat,
                buf: &[f32],
                offs: &[usize],
                wpk: &[f32],
                co: usize,
                bias: Option<&[f32]>,
                y: &mut [f32],
            ) {
                forward_body::<CB_NARROW>(f, buf, offs, wpk, co, bias, y)
            }
            // The tile height was fixed when the weights were packed (possibly on another
            // thread, in another reference mode): the build must match it.
            match (w.cb, isa()) {
                // SAFETY: the processor has these features (detected at run time in `isa`).
                (CB_WIDE, Isa::Avx512) => return unsafe { avx512(f, buf, offs, wpk, co, bias, y) },
                // SAFETY: as above.
                (CB_NARROW, Isa::Avx2 | Isa::Avx512) => {
                    return unsafe { avx2(f, buf, offs, wpk, co, bias, y) }
                }
                _ => {}
            }
        }
        if w.cb == CB_WIDE {
            forward_body::<CB_WIDE>(f, buf, offs, wpk, co, bias, y)
        } else {
            forward_body::<CB_NARROW>(f, buf, offs, wpk, co, bias, y)
        }
    }

    /// The weight-gradient kernel (see [`weight_grad_body`]) on the widest vector unit present.
    pub(super) fn weight_grad(
        buf: &[f32],
        offs: &[usize],
        gz: &[f32],
        qpad: usize,
        lanes: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512(
                buf: &[f32],
                offs: &[usize],
                gz: &[f32],
                qpad: usize,
                lanes: &mut [f32],
            ) {
                weight_grad_body(buf, offs, gz, qpad, lanes)
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2(
                buf: &[f32],
                offs: &[usize],
                gz: &[f32],
                qpad: usize,
                lanes: &mut [f32],
            ) {
                weight_grad_body(buf, offs, gz, qpad, lanes)
            }
            match isa() {
                // SAFETY: the processor has these features (detected at run time in `isa`).
                Isa::Avx512 => return unsafe { avx512(buf, offs, gz, qpad, lanes) },
                // SAFETY: as above.
                Isa::Avx2 => return unsafe { avx2(buf, offs, gz, qpad, lanes) },
                Isa::Portable => {}
            }
        }
        weight_grad_body(buf, offs, gz, qpad, lanes)
    }
}

/// How many contiguous ranges a batch-parallel convolution cuts the batch into. Fixed, not
/// taken from the thread budget, so that the weight gradient (summed per range, then over the
/// ranges in order) has the same bits at every thread count; several per thread, so that the
/// ranges balance when a helper starts late.
const BATCH_RANGES: usize = 16;

/// Runs `f(samples, out_chunk)` over contiguous ranges of the batch, spread over threads
/// when `parallel` (else one range, the whole batch), where `out_chunk` holds the
/// `per_sample` outputs of those samples (empty when `out` is). Returns each range's result
/// in order.
fn over_batch<R: Send, F>(
    n: usize,
    parallel: bool,
    out: &mut [f32],
    per_sample: usize,
    f: F,
) -> Vec<R>
where
    F: Fn(std::ops::Range<usize>, &mut [f32]) -> R + Sync,
{
    if !parallel || n <= 1 {
        return vec![f(0..n, out)];
    }
    let per = n.div_ceil(BATCH_RANGES.min(n));
    let mut ranges = Vec::with_capacity(n.div_ceil(per));
    let mut rest = out;
    for start in (0..n).step_by(per) {
        let end = (start + per).min(n);
        let take = if rest.is_empty() {
            0
        } else {
            (end - start) * per_sample
        };
        let (chunk, tail) = std::mem::take(&mut rest).split_at_mut(take);
        rest = tail;
        ranges.push((start..end, chunk));
    }
    par_map(ranges, |_, (samples, chunk)| f(samples, chunk))
}

/// Largest patch matrix (`K * OH*OW` floats, 512 KiB) for which samples are spread over
/// threads, one range of samples per part.
const BATCH_PARALLEL_MAX_PATCH: usize = 1 << 17;

/// Whether to spread samples over threads. That pays off while one sample's patch matrix
/// stays cache-sized; past that, one sample's products are large enough to be split well
/// inside the GEMM, sample after sample. Decided by the geometry only, never by the thread
/// budget, so that the arithmetic (and so the result) is the same at every budget.
fn batch_parallel(g: &Geom) -> bool {
    g.n >= 2 && g.k() * g.p() <= BATCH_PARALLEL_MAX_PATCH
}

/// Largest patch-matrix height (`C_in * kh * kw`) sent to the [`direct`] kernels, which do
/// not block along it: a tile's packed weights (`K x 8` floats) stay within a 48 KiB L1
/// cache up to here. Measured only on the benchmark CNN's layers (K = 9 and 144); past this
/// the packed GEMM, which does block along K, keeps the larger layers.
const DIRECT_MAX_K: usize = 1152;

/// Whether the forward pass (and the weight gradient) runs on the [`direct`] kernels:
/// stride 1, and no empty dimension (those keep the general path's handling).
fn direct_forward(g: &Geom) -> bool {
    g.sh == 1 && g.sw == 1 && g.c > 0 && g.co > 0 && g.h > 0 && g.w > 0 && g.k() <= DIRECT_MAX_K
}

/// Whether the input gradient of a convolution that [`direct_forward`] accepts runs on the
/// [`direct`] kernels too, as a stride-1 convolution with padding `k - 1 - pad` (which must
/// not be negative) whose output channels are the input's, computed in tiles of up to 6:
/// with fewer, most of each tile would be thrown away, and `col2im` is cheaper (the first
/// layer of an image model, whose input needs no gradient anyway). The weight and bias
/// gradients stay on the direct kernels either way.
const DIRECT_DX_MIN_CHANNELS: usize = 6;

fn direct_input_grad(g: &Geom) -> bool {
    g.ph < g.kh
        && g.pw < g.kw
        && g.c >= DIRECT_DX_MIN_CHANNELS
        && g.co * g.kh * g.kw <= DIRECT_MAX_K
}

/// The padded-width layout of a convolution's input.
fn flat_input(g: &Geom) -> direct::Flat {
    direct::Flat::new(g.c, (g.h, g.w), (g.ph, g.pw), (g.kh, g.kw))
}

fn forward_direct(
    xd: &[f32],
    wd: &[f32],
    bias: Option<&[f32]>,
    g: &Geom,
    out: &mut [f32],
) -> Result<()> {
    let f = flat_input(g);
    let offs = f.offsets();
    let wpk = direct::pack_weights(wd, g.co, g.k())?;
    let (chw, per_out) = (g.c * g.h * g.w, g.co * g.p());
    let parts = over_batch(g.n, g.n >= 2, out, per_out, |samples, out| {
        let mut buf = crate::backend::cpu::pool::zeroed(f.buf)?;
        // Fully written by every call of the kernel.
        for (s, y) in samples.zip(out.chunks_exact_mut(per_out)) {
            f.load(&xd[s * chw..][..chw], &mut buf);
            direct::forward(&f, &buf, &offs, &wpk, bias, y);
        }
        crate::backend::cpu::pool::recycle(buf);
        Ok::<(), Error>(())
    });
    parts.into_iter().collect()
}

/// The weight gradient `[co, k]`, bias gradient and (when `need_x`) input gradient of a
/// convolution that [`direct_forward`] accepts (the input gradient only where
/// [`direct_input_grad`] allows).
fn backward_direct(
    xd: &[f32],
    wd: &[f32],
    gd: &[f32],
    g: &Geom,
    [need_x, need_w, need_b]: [bool; 3],
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let (k, pp, chw) = (g.k(), g.p(), g.c * g.h * g.w);
    let per_out = g.co * pp;
    let f = flat_input(g);
    let offs = f.offsets();
    // dx = conv(g, flip(w) with channels swapped), stride 1, padding k - 1 - pad.
    let fb = direct::Flat::new(
        g.co,
        (g.oh, g.ow),
        (g.kh - 1 - g.ph.min(g.kh - 1), g.kw - 1 - g.pw.min(g.kw - 1)),
        (g.kh, g.kw),
    );
    let (offs_b, wpk_b) = if need_x {
        let kb = g.co * g.kh * g.kw;
        let mut flipped = crate::backend::cpu::pool::take(g.c * kb)?;
        for o in 0..g.co {
            for c in 0..g.c {
                for i in 0..g.kh {
                    for j in 0..g.kw {
                        flipped[((c * g.co + o) * g.kh + g.kh - 1 - i) * g.kw + g.kw - 1 - j] =
                            wd[((o * g.c + c) * g.kh + i) * g.kw + j];
                    }
                }
            }
        }
        (fb.offsets(), direct::pack_weights(&flipped, g.c, kb)?)
    } else {
        (Vec::new(), direct::pack_weights(&[], 0, 0)?)
    };
    // Every sample's input gradient is written whole by the kernel.
    let mut dx = crate::backend::cpu::pool::take(if need_x { g.n * chw } else { 0 })?;
    let partials = over_batch(g.n, g.n >= 2, &mut dx, chw, |samples, dx| -> Result<_> {
        let mut dw = crate::backend::cpu::pool::zeroed(if need_w { g.co * k } else { 0 })?;
        let mut lanes = crate::backend::cpu::pool::zeroed(if need_w {
            direct::lanes_len(g.co, k)
        } else {
            0
        })?;
        let mut db = crate::backend::cpu::pool::zeroed(if need_b { g.co } else { 0 })?;
        let mut buf = crate::backend::cpu::pool::zeroed(if need_w { f.buf } else { 0 })?;
        let mut gz =
            crate::backend::cpu::pool::zeroed(if need_w { direct::gz_len(&f, g.co) } else { 0 })?;
        let mut gbuf = crate::backend::cpu::pool::zeroed(if need_x { fb.buf } else { 0 })?;
        let start = samples.start;
        for s in samples {
            let gs = &gd[s * per_out..][..per_out];
            if need_w {
                f.load(&xd[s * chw..][..chw], &mut buf);
                direct::load_grad(&f, gs, &mut gz);
                direct::weight_grad(&buf, &offs, &gz, f.qpad, &mut lanes);
            }
            if need_x {
                fb.load(gs, &mut gbuf);
                let dxs = &mut dx[(s - start) * chw..][..chw];
                direct::forward(&fb, &gbuf, &offs_b, &wpk_b, None, dxs);
            }
            if need_b {
                for (acc, plane) in db.iter_mut().zip(gs.chunks_exact(pp)) {
                    *acc += simd::sum(plane);
                }
            }
        }
        if need_w {
            direct::reduce_lanes(&lanes, g.co, k, &mut dw);
        }
        for v in [buf, gz, gbuf, lanes] {
            crate::backend::cpu::pool::recycle(v);
        }
        Ok((dw, db))
    });
    let partials = partials.into_iter().collect::<Result<Vec<_>>>()?;
    let mut parts = partials.into_iter();
    let (mut dw, mut db) = parts.next().unwrap_or_default();
    for (pw, pb) in parts {
        simd::add_assign(&mut dw, &pw);
        simd::add_assign(&mut db, &pb);
    }
    Ok((dx, dw, db))
}

/// 2-D cross-correlation (what PyTorch calls convolution) with zero padding.
///
/// `x: [N, C_in, H, W]`, `w: [C_out, C_in, kh, kw]`, `b: [C_out]`; the output is
/// `[N, C_out, OH, OW]` with `OH = floor((H + 2 pad_h - kh) / stride_h) + 1` (likewise OW).
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams) -> Result<Tensor> {
    forward(x, w, b, p).map(|(out, _)| out)
}

fn forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams) -> Result<(Tensor, Geom)> {
    same_device(x, w, "conv2d")?;
    let g = Geom::new(x, w, p)?;
    if let Some(b) = b {
        same_device(x, b, "conv2d")?;
        if b.shape() != [g.co] {
            return Err(Error::shape(
                "conv2d",
                format!("bias of shape {:?} for {} output channels", b.shape(), g.co),
            ));
        }
    }
    if let (Storage::Cuda(xs), Storage::Cuda(ws)) = (x.storage(), w.storage()) {
        let bs = match b.map(Tensor::storage) {
            Some(Storage::Cuda(bs)) => Some(bs),
            _ => None,
        };
        let y = cuda::conv2d_forward(xs, ws, bs, &g.cuda())?;
        return Ok((Tensor::from_cuda(y, g.out_shape()), g));
    }
    let bias = b.map(|b| host(b, "conv2d")).transpose()?;
    let xd = host(x, "conv2d")?;
    let wd = host(w, "conv2d")?;
    let (k, pp, chw) = (g.k(), g.p(), g.c * g.h * g.w);
    let per_out = g.co * pp;
    if direct_forward(&g) {
        // Every output element is written by the kernel.
        let mut out = crate::backend::cpu::pool::take(g.n * per_out)?;
        forward_direct(xd, wd, bias, &g, &mut out)?;
        return Ok((Tensor::cpu(out, g.out_shape()), g));
    }
    let parallel = batch_parallel(&g);
    // Every output element is written below (bias fill or the GEMM with beta 0),
    // except when there is no input channel at all: then the output is zero (or the bias).
    let mut out = if k == 0 {
        crate::backend::cpu::pool::zeroed(g.n * per_out)?
    } else {
        crate::backend::cpu::pool::take(g.n * per_out)?
    };
    let parts = over_batch(g.n, parallel, &mut out, per_out, |samples, out| {
        // im2col writes every element of the patch matrix, padding zeros included.
        let mut col = crate::backend::cpu::pool::take(k * pp)?;
        for (s, y) in samples.zip(out.chunks_exact_mut(per_out.max(1))) {
            im2col(&xd[s * chw..][..chw], &g, &mut col);
            let beta = match bias {
                Some(bd) => {
                    for (plane, &bv) in y.chunks_exact_mut(pp.max(1)).zip(bd) {
                        plane.fill(bv);
                    }
                    1.0
                }
                None => 0.0,
            };
            gemm(
                g.co,
                k,
                pp,
                1.0,
                wd,
                Transpose::No,
                &col,
                Transpose::No,
                beta,
                y,
            );
        }
        Ok::<(), Error>(())
    });
    parts.into_iter().collect::<Result<()>>()?;
    Ok((Tensor::cpu(out, g.out_shape()), g))
}

struct Conv2dBackward {
    geom: Geom,
    has_bias: bool,
}

impl BackwardOp for Conv2dBackward {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        let g = &self.geom;
        let need_x = c.needs[0];
        let need_w = c.needs[1];
        let need_b = self.has_bias && c.needs[2];
        if let (Storage::Cuda(xs), Storage::Cuda(ws), Storage::Cuda(gs)) = (
            c.inputs[0].storage(),
            c.inputs[1].storage(),
            c.grad.storage(),
        ) {
            let (gx, gw, gb) =
                cuda::conv2d_backward(xs, ws, gs, &g.cuda(), [need_x, need_w, need_b])?;
            let mut result = vec![
                gx.map(|s| Tensor::from_cuda(s, vec![g.n, g.c, g.h, g.w])),
                gw.map(|s| Tensor::from_cuda(s, vec![g.co, g.c, g.kh, g.kw])),
            ];
            if self.has_bias {
                result.push(gb.map(|s| Tensor::from_cuda(s, vec![g.co])));
            }
            return Ok(result);
        }
        let xd = host(c.inputs[0], "conv2d")?;
        let wd = host(c.inputs[1], "conv2d")?;
        let gd = host(c.grad, "conv2d")?;

        let needs = [need_x, need_w, need_b];
        if direct_forward(g) {
            let direct_x = need_x && direct_input_grad(g);
            let (mut dx, dw, db) = backward_direct(xd, wd, gd, g, [direct_x, need_w, need_b])?;
            if need_x && !direct_x {
                dx = backward_im2col(xd, wd, gd, g, [true, false, false])?.0;
            }
            return Ok(self.grads(dx, dw, db, needs));
        }
        let (dx, dw, db) = backward_im2col(xd, wd, gd, g, needs)?;
        Ok(self.grads(dx, dw, db, needs))
    }
}

/// The gradients `(dx, dw [co, k], db)` through im2col and GEMM, per sample: rebuild the
/// patch matrix (a copy, cheaper to redo than to keep for the whole batch),
/// dW += g_n @ col^T, dcol = W^T @ g_n, dx_n = col2im(dcol). Each range of samples keeps
/// its own dW and db partial sums, added at the end in a fixed order.
fn backward_im2col(
    xd: &[f32],
    wd: &[f32],
    gd: &[f32],
    g: &Geom,
    [need_x, need_w, need_b]: [bool; 3],
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let (k, pp, chw) = (g.k(), g.p(), g.c * g.h * g.w);
    let per_out = g.co * pp;
    let parallel = batch_parallel(g);
    let mut dx = crate::backend::cpu::pool::zeroed(if need_x { g.n * chw } else { 0 })?;
    let partials = over_batch(g.n, parallel, &mut dx, chw, |samples, dx| -> Result<_> {
        // dW^T [K, C_out] += col @ g_n^T, summed per range, transposed once at the end.
        let mut dwt = crate::backend::cpu::pool::zeroed(if need_w { k * g.co } else { 0 })?;
        let mut db = crate::backend::cpu::pool::zeroed(if need_b { g.co } else { 0 })?;
        let mut col = crate::backend::cpu::pool::take(if need_w { k * pp } else { 0 })?;
        // Overwritten per sample by a product with β = 0.
        let mut dcol = crate::backend::cpu::pool::take(if need_x { k * pp } else { 0 })?;
        let start = samples.start;
        for s in samples {
            let gs = &gd[s * per_out..][..per_out];
            if need_w {
                im2col(&xd[s * chw..][..chw], g, &mut col);
                gemm(
                    k,
                    pp,
                    g.co,
                    1.0,
                    &col,
                    Transpose::No,
                    gs,
                    Transpose::Yes,
                    1.0,
                    &mut dwt,
                );
            }
            if need_x {
                // dcol = W^T @ g_n, W read transposed in place.
                gemm(
                    k,
                    g.co,
                    pp,
                    1.0,
                    wd,
                    Transpose::Yes,
                    gs,
                    Transpose::No,
                    0.0,
                    &mut dcol,
                );
                col2im(&dcol, g, &mut dx[(s - start) * chw..][..chw]);
            }
            if need_b {
                for (acc, plane) in db.iter_mut().zip(gs.chunks_exact(pp.max(1))) {
                    *acc += simd::sum(plane);
                }
            }
        }
        Ok((dwt, db))
    });
    let partials = partials.into_iter().collect::<Result<Vec<_>>>()?;
    let mut parts = partials.into_iter();
    let (mut dwt, mut db) = parts.next().unwrap_or_default();
    for (pw, pb) in parts {
        simd::add_assign(&mut dwt, &pw);
        simd::add_assign(&mut db, &pb);
    }
    let mut dw = crate::backend::cpu::pool::take(dwt.len())?;
    for (r, row) in dwt.chunks_exact(g.co.max(1)).enumerate() {
        for (o, &v) in row.iter().enumerate() {
            dw[o * k + r] = v;
        }
    }
    Ok((dx, dw, db))
}

impl Conv2dBackward {
    /// The gradients as tensors, `None` where not needed; `dw` is `[co, k]`.
    fn grads(
        &self,
        dx: Vec<f32>,
        dw: Vec<f32>,
        db: Vec<f32>,
        [need_x, need_w, need_b]: [bool; 3],
    ) -> Vec<Option<Tensor>> {
        let g = &self.geom;
        let gx = need_x.then(|| Tensor::cpu(dx, vec![g.n, g.c, g.h, g.w]));
        let gw = need_w.then(|| Tensor::cpu(dw, vec![g.co, g.c, g.kh, g.kw]));
        let mut result = vec![gx, gw];
        if self.has_bias {
            result.push(need_b.then(|| Tensor::cpu(db, vec![g.co])));
        }
        result
    }
}

impl Tape {
    /// 2-D convolution of `x: [N, C_in, H, W]` with `w: [C_out, C_in, kh, kw]` and an
    /// optional bias `[C_out]`.
    pub fn conv2d(&mut self, x: Var, w: Var, b: Option<Var>, p: Conv2dParams) -> Result<Var> {
        let (out, geom) = forward(self.value(x), self.value(w), b.map(|b| self.value(b)), p)?;
        let has_bias = b.is_some();
        let inputs: Vec<Var> = [Some(x), Some(w), b].into_iter().flatten().collect();
        Ok(self.push(out, &inputs, move || {
            Box::new(Conv2dBackward { geom, has_bias })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check_gradients, GradCheck};
    use crate::rng::Rng;

    fn params(s: (usize, usize), p: (usize, usize)) -> Conv2dParams {
        Conv2dParams {
            stride: s,
            padding: p,
        }
    }

    /// The definition, term by term, summed in f64.
    fn naive(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams) -> Vec<f32> {
        let (xs, ws) = (x.shape(), w.shape());
        let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
        let (co, kh, kw) = (ws[0], ws[2], ws[3]);
        let oh = (h + 2 * p.padding.0 - kh) / p.stride.0 + 1;
        let ow = (wd + 2 * p.padding.1 - kw) / p.stride.1 + 1;
        let (xd, wv) = (x.to_vec().unwrap(), w.to_vec().unwrap());
        let bv = b.map(|b| b.to_vec().unwrap());
        let mut out = Vec::with_capacity(n * co * oh * ow);
        for ni in 0..n {
            for o in 0..co {
                for y in 0..oh {
                    for z in 0..ow {
                        let mut s = bv.as_ref().map_or(0.0, |b| b[o] as f64);
                        for ci in 0..c {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let ih = (y * p.stride.0 + i) as isize - p.padding.0 as isize;
                                    let iw = (z * p.stride.1 + j) as isize - p.padding.1 as isize;
                                    if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                        continue;
                                    }
                                    let xv =
                                        xd[((ni * c + ci) * h + ih as usize) * wd + iw as usize];
                                    let wt = wv[((o * c + ci) * kh + i) * kw + j];
                                    s += xv as f64 * wt as f64;
                                }
                            }
                        }
                        out.push(s as f32);
                    }
                }
            }
        }
        out
    }

    /// The gradients `(dx, dw, db)` of `sum(seed * conv2d(x, w, b))`, term by term in f64.
    fn naive_backward(
        x: &Tensor,
        w: &Tensor,
        seed: &Tensor,
        p: Conv2dParams,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (xs, ws) = (x.shape(), w.shape());
        let (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3]);
        let (co, kh, kw) = (ws[0], ws[2], ws[3]);
        let (oh, ow) = (seed.dim(2), seed.dim(3));
        let (xv, wv, gv) = (
            x.to_vec().unwrap(),
            w.to_vec().unwrap(),
            seed.to_vec().unwrap(),
        );
        let mut dx = vec![0.0f64; xv.len()];
        let mut dw = vec![0.0f64; wv.len()];
        let mut db = vec![0.0f64; co];
        for ni in 0..n {
            for o in 0..co {
                for y in 0..oh {
                    for z in 0..ow {
                        let gg = gv[((ni * co + o) * oh + y) * ow + z] as f64;
                        db[o] += gg;
                        for ci in 0..c {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let ih = (y * p.stride.0 + i) as isize - p.padding.0 as isize;
                                    let iw = (z * p.stride.1 + j) as isize - p.padding.1 as isize;
                                    if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                        continue;
                                    }
                                    let xi = ((ni * c + ci) * h + ih as usize) * wd + iw as usize;
                                    let wi = ((o * c + ci) * kh + i) * kw + j;
                                    dw[wi] += gg * xv[xi] as f64;
                                    dx[xi] += gg * wv[wi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        (dx, dw, db)
    }

    /// Output, then the gradients of x, w and b for `seed`, as computed by the op.
    fn run_op(
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        seed: &Tensor,
        p: Conv2dParams,
        need_x: bool,
    ) -> Vec<Vec<f32>> {
        let mut t = Tape::new();
        let xv = if need_x {
            t.var(x.clone(), 0)
        } else {
            t.constant(x.clone())
        };
        let v = [xv, t.var(w.clone(), 1), t.var(b.clone(), 2)];
        let y = t.conv2d(v[0], v[1], Some(v[2]), p).unwrap();
        let out = t.value(y).to_vec().unwrap();
        let grads = t.backward_with_seed(y, seed.clone()).unwrap();
        let mut r = vec![out];
        for key in [0, 1, 2] {
            r.push(grads.get(key).map_or(Vec::new(), |g| g.to_vec().unwrap()));
        }
        r
    }

    fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= tol * (1.0 + w.abs()),
                "{what}[{i}]: {g} vs {w}"
            );
        }
    }

    type Shape = (
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        (usize, usize),
        (usize, usize),
    );

    /// (n, c, h, w, co, kh, kw, stride, padding): stride 1 (the direct kernels) over channel
    /// counts 1..17, odd sizes, every padding up to the kernel size and past it, and strided
    /// cases (the patch-matrix path).
    fn many_shapes() -> Vec<Shape> {
        let mut v = Vec::new();
        for c in 1..=17usize {
            let n = 1 + c % 9;
            let co = 1 + (c * 5) % 17;
            let (h, w) = (3 + (c * 7) % 13, 2 + (c * 3) % 11);
            let (kh, kw) = (1 + c % 3, 1 + (c / 2) % 4);
            let (kh, kw) = (kh.min(h), kw.min(w));
            v.push((
                n,
                c,
                h,
                w,
                co,
                kh,
                kw,
                (1, 1),
                (c % kh.max(1), (c / 3) % kw.max(1)),
            ));
            v.push((n, c, h, w, co, kh, kw, (1, 1), (kh, kw)));
            v.push((n, c, h, w, co, kh, kw, (2, 1 + c % 3), (c % 2, 1)));
        }
        v.extend([
            (9, 1, 28, 28, 16, 3, 3, (1, 1), (1, 1)),
            (3, 16, 14, 14, 32, 3, 3, (1, 1), (1, 1)),
            (2, 7, 31, 5, 6, 5, 2, (1, 1), (2, 1)),
            (1, 12, 9, 40, 13, 3, 5, (1, 1), (0, 4)),
            (5, 6, 1, 1, 7, 1, 1, (1, 1), (0, 0)),
            // Past DIRECT_MAX_K: the input gradient's taps (130 * 9), then the forward's.
            (2, 6, 5, 6, 130, 3, 3, (1, 1), (1, 1)),
            (1, 129, 4, 4, 3, 3, 3, (1, 1), (1, 1)),
        ]);
        v
    }

    #[test]
    fn forward_and_gradients_match_naive_sums_on_many_shapes() {
        let mut rng = Rng::new(21);
        for (n, c, h, w, co, kh, kw, s, pd) in many_shapes() {
            let p = params(s, pd);
            let x = Tensor::randn(&[n, c, h, w], 1.0, &mut rng);
            let wt = Tensor::randn(&[co, c, kh, kw], 1.0, &mut rng);
            let b = Tensor::randn(&[co], 1.0, &mut rng);
            let y = conv2d(&x, &wt, Some(&b), p).unwrap();
            let seed = Tensor::randn(y.shape(), 1.0, &mut rng);
            let what = format!("{:?}", (n, c, h, w, co, kh, kw, s, pd));
            let want_y: Vec<f64> = naive(&x, &wt, Some(&b), p)
                .into_iter()
                .map(f64::from)
                .collect();
            let (dx, dw, db) = naive_backward(&x, &wt, &seed, p);
            for need_x in [false, true] {
                let got = run_op(&x, &wt, &b, &seed, p, need_x);
                assert_close(&got[0], &want_y, 1e-4, &format!("y {what}"));
                if need_x {
                    assert_close(&got[1], &dx, 1e-4, &format!("dx {what}"));
                } else {
                    assert!(got[1].is_empty());
                }
                assert_close(&got[2], &dw, 1e-4, &format!("dw {what}"));
                assert_close(&got[3], &db, 1e-4, &format!("db {what}"));
            }
        }
    }

    #[test]
    fn results_have_the_same_bits_at_every_thread_count() {
        use crate::backend::cpu::with_thread_limit;
        let mut rng = Rng::new(5);
        let mut shapes = many_shapes();
        shapes.push((33, 16, 14, 14, 32, 3, 3, (1, 1), (1, 1)));
        shapes.push((20, 1, 28, 28, 16, 3, 3, (1, 1), (1, 1)));
        for (n, c, h, w, co, kh, kw, s, pd) in shapes {
            let p = params(s, pd);
            let x = Tensor::randn(&[n, c, h, w], 1.0, &mut rng);
            let wt = Tensor::randn(&[co, c, kh, kw], 1.0, &mut rng);
            let b = Tensor::randn(&[co], 1.0, &mut rng);
            let y = conv2d(&x, &wt, Some(&b), p).unwrap();
            let seed = Tensor::randn(y.shape(), 1.0, &mut rng);
            let runs: Vec<_> = [1, 2, 3, 4]
                .into_iter()
                .map(|limit| with_thread_limit(limit, || run_op(&x, &wt, &b, &seed, p, true)))
                .collect();
            for r in &runs[1..] {
                for (a, b) in r.iter().zip(&runs[0]) {
                    let same = a.len() == b.len()
                        && a.iter().zip(b).all(|(u, v)| u.to_bits() == v.to_bits());
                    assert!(
                        same,
                        "bits differ between thread counts for {:?}",
                        (n, c, h, w, co, kh, kw, s, pd)
                    );
                }
            }
        }
    }

    #[test]
    fn direct_kernels_have_the_same_bits_on_every_vector_unit() {
        // The portable build (reference mode) against the widest one detected: the same
        // fused multiply-add chains and lane sums, so the same bits.
        use crate::backend::cpu::with_thread_limit;
        let mut rng = Rng::new(8);
        for (n, c, h, w, co, kh, kw) in [
            (3, 16, 14, 14, 32, 3, 3),
            (4, 1, 28, 28, 16, 3, 3),
            (2, 7, 9, 11, 13, 3, 2),
        ] {
            let p = params((1, 1), (1, 1));
            let x = Tensor::randn(&[n, c, h, w], 1.0, &mut rng);
            let wt = Tensor::randn(&[co, c, kh, kw], 1.0, &mut rng);
            let b = Tensor::randn(&[co], 1.0, &mut rng);
            let y = conv2d(&x, &wt, Some(&b), p).unwrap();
            let seed = Tensor::randn(y.shape(), 1.0, &mut rng);
            // One thread, so that every part runs where reference mode is set.
            let fast = with_thread_limit(1, || run_op(&x, &wt, &b, &seed, p, true));
            simd::set_reference_mode(true);
            let slow = with_thread_limit(1, || run_op(&x, &wt, &b, &seed, p, true));
            simd::set_reference_mode(false);
            // Output, dx, dw (the bias gradient uses simd::sum, whose reference differs).
            for i in 0..3 {
                let same = fast[i]
                    .iter()
                    .zip(&slow[i])
                    .all(|(u, v)| u.to_bits() == v.to_bits());
                assert!(
                    same,
                    "output {i} differs for {:?}",
                    (n, c, h, w, co, kh, kw)
                );
            }
        }
    }

    #[test]
    fn forward_hand_values() {
        // x = [[1 2 3], [4 5 6], [7 8 9]], w = [[1 0], [0 -1]] (x[i,j] - x[i+1,j+1]), b = 10:
        // every 2x2 window gives a - d = -4, so the valid output is 6 everywhere.
        let x = Tensor::from_slice(&[1., 2., 3., 4., 5., 6., 7., 8., 9.], &[1, 1, 3, 3]).unwrap();
        let w = Tensor::from_slice(&[1., 0., 0., -1.], &[1, 1, 2, 2]).unwrap();
        let b = Tensor::from_slice(&[10.0], &[1]).unwrap();
        let y = conv2d(&x, &w, Some(&b), Conv2dParams::default()).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.to_vec().unwrap(), vec![6.0; 4]);

        // Padding 1, stride 2, no bias: output 2x2 at top-left corners (-1,-1), (-1,1),
        // (1,-1), (1,1). Window at (-1,-1) covers only x[0,0] in its bottom-right tap: -1.
        // (-1,1): top row padding, bottom-right tap x[0,2] = 3 -> -3.
        // (1,-1): left padding, top-left tap is padding, bottom-right x[2,0] = 7 -> -7.
        // (1,1): x[1,1] - x[2,2] = 5 - 9 = -4.
        let y = conv2d(&x, &w, None, params((2, 2), (1, 1))).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.to_vec().unwrap(), vec![-1.0, -3.0, -7.0, -4.0]);

        // Two input channels summed, two output channels: w0 takes channel 0 + channel 1,
        // w1 takes 2 * channel 1; 1x1 kernels. x channel 0 = [1 2], channel 1 = [3 4].
        let x = Tensor::from_slice(&[1., 2., 3., 4.], &[1, 2, 1, 2]).unwrap();
        let w = Tensor::from_slice(&[1., 1., 0., 2.], &[2, 2, 1, 1]).unwrap();
        let y = conv2d(&x, &w, None, Conv2dParams::default()).unwrap();
        assert_eq!(y.shape(), &[1, 2, 1, 2]);
        assert_eq!(y.to_vec().unwrap(), vec![4.0, 6.0, 6.0, 8.0]);
    }

    #[test]
    fn matches_naive_reference() {
        let mut rng = Rng::new(7);
        // (n, c, h, w, co, kh, kw, stride, padding)
        let cases = [
            (2, 3, 7, 9, 5, 3, 3, (1, 1), (1, 1)),
            (3, 2, 11, 6, 4, 3, 2, (2, 1), (1, 0)),
            (1, 5, 9, 9, 3, 5, 5, (2, 2), (2, 2)),
            (2, 1, 5, 13, 9, 1, 3, (1, 3), (0, 1)),
            (4, 3, 10, 10, 17, 4, 4, (3, 3), (1, 2)),
            (2, 2, 3, 3, 2, 3, 3, (1, 1), (0, 0)),
            (1, 1, 1, 1, 1, 3, 3, (1, 1), (1, 1)),
            // The benchmark's second layer (samples spread over threads).
            (2, 16, 14, 14, 32, 3, 3, (1, 1), (1, 1)),
            // A patch matrix too large to spread samples: per-sample GEMMs, split over threads.
            (2, 16, 48, 48, 8, 3, 3, (1, 1), (1, 1)),
        ];
        for &(n, c, h, w, co, kh, kw, s, pd) in &cases {
            let x = Tensor::randn(&[n, c, h, w], 1.0, &mut rng);
            let wt = Tensor::randn(&[co, c, kh, kw], 1.0, &mut rng);
            let b = Tensor::randn(&[co], 1.0, &mut rng);
            let p = params(s, pd);
            for bias in [None, Some(&b)] {
                let got = conv2d(&x, &wt, bias, p).unwrap();
                let want = naive(&x, &wt, bias, p);
                assert_eq!(got.numel(), want.len());
                for (g, w) in got.to_vec().unwrap().iter().zip(&want) {
                    assert!(
                        (g - w).abs() < 1e-4 * (1.0 + w.abs()),
                        "{g} vs {w} for {p:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let cfg = GradCheck::default();
        let cases: [(&[usize], &[usize], Conv2dParams); 6] = [
            (&[2, 2, 5, 5], &[3, 2, 3, 3], params((1, 1), (1, 1))),
            // Stride 1 with enough input channels for the direct input gradient.
            (&[2, 6, 4, 5], &[3, 6, 3, 2], params((1, 1), (1, 0))),
            (&[1, 7, 3, 3], &[2, 7, 2, 2], params((1, 1), (1, 1))),
            (&[2, 3, 6, 7], &[2, 3, 3, 2], params((2, 1), (1, 0))),
            (&[1, 2, 7, 5], &[3, 2, 2, 3], params((2, 2), (0, 1))),
            (&[2, 1, 5, 6], &[2, 1, 1, 1], params((1, 2), (0, 0))),
        ];
        for (xs, ws, p) in cases {
            let bs = [ws[0]];
            check_gradients(&[xs, ws, &bs], cfg, |t, v| {
                t.conv2d(v[0], v[1], Some(v[2]), p)
            });
            check_gradients(&[xs, ws], cfg, |t, v| t.conv2d(v[0], v[1], None, p));
        }
    }

    #[test]
    fn backward_matches_naive_sums_on_the_benchmark_layer() {
        // Too many inputs for finite differences: the benchmark CNN's second layer, checked
        // against direct sums.
        let (n, c, h, w, co, k) = (3, 16, 14, 14, 32, 3);
        let mut rng = Rng::new(11);
        let x = Tensor::randn(&[n, c, h, w], 1.0, &mut rng);
        let wt = Tensor::randn(&[co, c, k, k], 1.0, &mut rng);
        let b = Tensor::randn(&[co], 1.0, &mut rng);
        let seed = Tensor::randn(&[n, co, h, w], 1.0, &mut rng);
        let mut t = Tape::new();
        let v = [t.var(x.clone(), 0), t.var(wt.clone(), 1), t.var(b, 2)];
        let y = t
            .conv2d(v[0], v[1], Some(v[2]), params((1, 1), (1, 1)))
            .unwrap();
        let grads = t.backward_with_seed(y, seed.clone()).unwrap();
        let (dx, dw, db) = naive_backward(&x, &wt, &seed, params((1, 1), (1, 1)));
        for (key, want) in [(0, dx), (1, dw), (2, db)] {
            let got = grads.get(key).unwrap().to_vec().unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (*g as f64 - w).abs() < 1e-3 * (1.0 + w.abs()),
                    "input {key}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn only_requested_gradients_are_computed() {
        // Image inputs are constants: the op must still give the weight and bias gradients.
        let mut rng = Rng::new(3);
        let x = Tensor::randn(&[2, 1, 4, 4], 1.0, &mut rng);
        let w = Tensor::randn(&[2, 1, 3, 3], 1.0, &mut rng);
        let b = Tensor::zeros(&[2]);
        let mut t = Tape::new();
        let xv = t.constant(x);
        let wv = t.var(w, 0);
        let bv = t.var(b, 1);
        let y = t.conv2d(xv, wv, Some(bv), params((1, 1), (1, 1))).unwrap();
        let seed = Tensor::full(&[2, 2, 4, 4], 1.0);
        let grads = t.backward_with_seed(y, seed).unwrap();
        // d(sum y)/d b = number of output positions per channel and sample, times N.
        assert_eq!(grads.get(1).unwrap().to_vec().unwrap(), vec![32.0, 32.0]);
        assert_eq!(grads.get(0).unwrap().shape(), &[2, 1, 3, 3]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = Tensor::zeros(&[1, 2, 5, 5]);
        let w = Tensor::zeros(&[3, 2, 3, 3]);
        let d = Conv2dParams::default();
        // wrong ranks
        assert!(conv2d(&Tensor::zeros(&[2, 5, 5]), &w, None, d).is_err());
        assert!(conv2d(&x, &Tensor::zeros(&[3, 2, 3]), None, d).is_err());
        // channel mismatch
        assert!(conv2d(&x, &Tensor::zeros(&[3, 4, 3, 3]), None, d).is_err());
        // bias of the wrong size
        assert!(conv2d(&x, &w, Some(&Tensor::zeros(&[2])), d).is_err());
        // zero stride
        let e = conv2d(&x, &w, None, params((0, 1), (0, 0))).unwrap_err();
        assert!(e.to_string().contains("stride"), "{e}");
        // kernel larger than the padded input: 5 + 2*0 < 6, but 5 + 2*1 >= 6
        let big = Tensor::zeros(&[3, 2, 6, 6]);
        assert!(conv2d(&x, &big, None, d).is_err());
        assert_eq!(
            conv2d(&x, &big, None, params((1, 1), (1, 1)))
                .unwrap()
                .shape(),
            &[1, 3, 2, 2]
        );
        // empty kernel
        assert!(conv2d(&x, &Tensor::zeros(&[3, 2, 0, 3]), None, d).is_err());
    }

    #[test]
    fn empty_dimensions() {
        let p = params((1, 1), (1, 1));
        let b = Tensor::from_slice(&[1.0, 2.0], &[2]).unwrap();
        // No samples.
        let y = conv2d(
            &Tensor::zeros(&[0, 3, 4, 4]),
            &Tensor::zeros(&[2, 3, 3, 3]),
            None,
            p,
        );
        assert_eq!(y.unwrap().shape(), &[0, 2, 4, 4]);
        // No input channels: an empty sum, so every output is the bias.
        let y = conv2d(
            &Tensor::zeros(&[2, 0, 3, 3]),
            &Tensor::zeros(&[2, 0, 3, 3]),
            Some(&b),
            p,
        );
        let y = y.unwrap();
        assert_eq!(y.shape(), &[2, 2, 3, 3]);
        let want: Vec<f32> = (0..2)
            .flat_map(|_| [[1.0; 9], [2.0; 9]])
            .flatten()
            .collect();
        assert_eq!(y.to_vec().unwrap(), want);
        // No output channels, through backward as well.
        let mut t = Tape::new();
        let x = t.var(Tensor::full(&[2, 3, 4, 4], 1.0), 0);
        let w = t.var(Tensor::zeros(&[0, 3, 3, 3]), 1);
        let y = t.conv2d(x, w, None, p).unwrap();
        assert_eq!(t.value(y).shape(), &[2, 0, 4, 4]);
        let grads = t
            .backward_with_seed(y, Tensor::zeros(&[2, 0, 4, 4]))
            .unwrap();
        assert_eq!(grads.get(0).unwrap().to_vec().unwrap(), vec![0.0; 96]);
    }

    #[test]
    fn valid_range_edges() {
        // out 5, stride 2, offset -1 (tap 0, pad 1), input 7: o*2-1 in [0,7) -> o in 1..=3 (4*2-1=7 out)
        assert_eq!(valid_range(5, 2, -1, 7), (1, 4));
        assert_eq!(valid_range(3, 1, 0, 3), (0, 3));
        // entirely in the padding
        assert_eq!(valid_range(3, 1, 5, 3), (0, 0));
        assert_eq!(valid_range(1, 1, -2, 1), (1, 1));
    }
}
