//! 2-D pooling over NCHW tensors: max, average, and global average.
//!
//! Semantics follow PyTorch's defaults: max pooling pads with -inf (padded cells never win),
//! average pooling counts the padding in the divisor (`count_include_pad=True`), output sizes
//! are floored (`ceil_mode=False`), and padding may be at most half the kernel.

use super::conv::{out_len, PAR_MIN};
use super::{expect_rank, host};
use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::backend::cpu::parallel::{group_len, par_chunks_mut, par_map, thread_limit};
use crate::backend::cuda::{self, Pool2dGeometry};
use crate::backend::Storage;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Window, stride and padding of a pooling op, per (height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dParams {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

impl Pool2dParams {
    /// Non-overlapping `k x k` windows without padding (the usual `MaxPool2d(k)`).
    pub fn square(k: usize) -> Self {
        Pool2dParams {
            kernel: (k, k),
            stride: (k, k),
            padding: (0, 0),
        }
    }
}

/// Every size of one pooling op.
#[derive(Clone, Copy, Debug)]
struct Geom {
    planes: usize,
    h: usize,
    w: usize,
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
    fn new(x: &Tensor, p: Pool2dParams, op: &'static str) -> Result<Self> {
        expect_rank(x, 4, op, "input [N, C, H, W]")?;
        let (h, w) = (x.dim(2), x.dim(3));
        if h == 0 || w == 0 {
            // A window of padding alone would have no maximum to point the gradient at.
            return Err(Error::shape(
                op,
                format!("input {:?} has empty planes", x.shape()),
            ));
        }
        let oh = out_len(op, "height", h, p.kernel.0, p.stride.0, p.padding.0)?;
        let ow = out_len(op, "width", w, p.kernel.1, p.stride.1, p.padding.1)?;
        if p.padding.0 > p.kernel.0 / 2 || p.padding.1 > p.kernel.1 / 2 {
            return Err(Error::invalid(format!(
                "{op}: padding {:?} must be at most half the kernel {:?}",
                p.padding, p.kernel
            )));
        }
        if h * w > u32::MAX as usize {
            return Err(Error::invalid(format!(
                "{op}: planes of {h}x{w} are too large to index"
            )));
        }
        Ok(Geom {
            planes: x.dim(0) * x.dim(1),
            h,
            w,
            kh: p.kernel.0,
            kw: p.kernel.1,
            sh: p.stride.0,
            sw: p.stride.1,
            ph: p.padding.0,
            pw: p.padding.1,
            oh,
            ow,
        })
    }

    /// The CUDA backend's description of the same pooling over `x: [N, C, H, W]`.
    fn cuda(&self, x: &Tensor) -> Pool2dGeometry {
        Pool2dGeometry {
            n: x.dim(0),
            c: x.dim(1),
            h: self.h,
            w: self.w,
            kh: self.kh,
            kw: self.kw,
            stride: (self.sh, self.sw),
            padding: (self.ph, self.pw),
        }
    }

    fn out_shape(&self, x: &Tensor) -> Vec<usize> {
        vec![x.dim(0), x.dim(1), self.oh, self.ow]
    }

    /// The input rows and columns covered by output (oh, ow), clipped to the input.
    #[inline]
    fn window(&self, oh: usize, ow: usize) -> (usize, usize, usize, usize) {
        let h0 = (oh * self.sh) as isize - self.ph as isize;
        let w0 = (ow * self.sw) as isize - self.pw as isize;
        let h1 = ((h0 + self.kh as isize) as usize).min(self.h);
        let w1 = ((w0 + self.kw as isize) as usize).min(self.w);
        (h0.max(0) as usize, h1, w0.max(0) as usize, w1)
    }
}

/// Splits `a` and `b` into planes of `ca` and `cb` elements and runs `f(plane, a, b)` on
/// matching pairs across threads (like `par_chunks_mut`, for two outputs); each plane is
/// processed by one thread, so results do not depend on the thread count.
fn par_planes2<A: Send, B: Send, F>(a: &mut [A], ca: usize, b: &mut [B], cb: usize, f: F)
where
    F: Fn(usize, &mut [A], &mut [B]) + Sync,
{
    let planes = a.len().checked_div(ca).unwrap_or(0);
    let threads = thread_limit();
    if threads <= 1 || a.len() < PAR_MIN || planes < 2 {
        for (i, (pa, pb)) in a
            .chunks_mut(ca.max(1))
            .zip(b.chunks_mut(cb.max(1)))
            .enumerate()
        {
            f(i, pa, pb);
        }
        return;
    }
    let per = group_len(planes, threads);
    let groups: Vec<_> = a.chunks_mut(per * ca).zip(b.chunks_mut(per * cb)).collect();
    par_map(groups, |t, (ga, gb)| {
        for (j, (pa, pb)) in ga.chunks_mut(ca).zip(gb.chunks_mut(cb)).enumerate() {
            f(t * per + j, pa, pb);
        }
    });
}

/// PyTorch's rule: a larger value or a NaN replaces the current maximum, so NaN propagates
/// and ties keep the first cell.
#[inline(always)]
fn wins(v: f32, best: f32) -> bool {
    v > best || v.is_nan()
}

/// The common `MaxPool2d(2)` on one plane: row pairs walked as slices, no window arithmetic.
fn max_pool_2x2(plane: &[f32], g: &Geom, out: &mut [f32], idx: &mut [u32]) {
    let w = g.w;
    for (oh, (orow, irow)) in out
        .chunks_exact_mut(g.ow)
        .zip(idx.chunks_exact_mut(g.ow))
        .enumerate()
    {
        let r0 = &plane[2 * oh * w..][..2 * g.ow];
        let r1 = &plane[(2 * oh + 1) * w..][..2 * g.ow];
        let base = (2 * oh * w) as u32;
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if crate::backend::cpu::simd::has_avx2_fma() && !crate::backend::cpu::simd::reference_mode()
        {
            // SAFETY: the processor has AVX2 (checked just above).
            done = unsafe { max_pool_2x2_row_avx2(r0, r1, base, w as u32, orow, irow) };
        }
        max_pool_2x2_row(r0, r1, base, w as u32, done, orow, irow);
    }
}

/// Windows `from..` of one output row, one at a time (the reference, and the tail of the
/// vector path).
fn max_pool_2x2_row(
    r0: &[f32],
    r1: &[f32],
    base: u32,
    w: u32,
    from: usize,
    orow: &mut [f32],
    irow: &mut [u32],
) {
    for ow in from..orow.len() {
        let (a, b) = (&r0[2 * ow..2 * ow + 2], &r1[2 * ow..2 * ow + 2]);
        let c = base + 2 * ow as u32;
        let (mut best, mut arg) = (a[0], c);
        if wins(a[1], best) {
            (best, arg) = (a[1], c + 1);
        }
        if wins(b[0], best) {
            (best, arg) = (b[0], c + w);
        }
        if wins(b[1], best) {
            (best, arg) = (b[1], c + w + 1);
        }
        orow[ow] = best;
        irow[ow] = arg;
    }
}

/// Four windows at a time: compares and blends instead of branches. On real activations
/// which cell wins is random, so the scalar version's branches cannot be predicted (this
/// path is about 3x faster on random [256, 32, 14, 14] inputs; max pooling was the CNN
/// run's top kernel after GEMM and im2col). The candidates are
/// compared in the scalar order with the same rule as [`wins`] (greater, or NaN), so ties
/// and NaNs pick the same cell. Four lanes, not eight, because the rows that matter are
/// short (14 and 7 windows in the benchmark CNN); a last group that would run past the row
/// is moved back to end at it, recomputing a few windows with the same result. Returns how
/// many windows it did: all of them, or none in rows of fewer than four.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn max_pool_2x2_row_avx2(
    r0: &[f32],
    r1: &[f32],
    base: u32,
    w: u32,
    orow: &mut [f32],
    irow: &mut [u32],
) -> usize {
    use std::arch::x86_64::*;
    let n = orow.len();
    if n < 4 {
        return 0;
    }
    // The even and odd cells of 8 consecutive floats: windows k..k+4's left and right cells.
    #[inline(always)]
    unsafe fn split(p: *const f32) -> (__m128, __m128) {
        let (lo, hi) = (_mm_loadu_ps(p), _mm_loadu_ps(p.add(4)));
        (
            _mm_shuffle_ps::<0x88>(lo, hi),
            _mm_shuffle_ps::<0xDD>(lo, hi),
        )
    }
    let (step, one, down) = (
        _mm_setr_epi32(0, 2, 4, 6),
        _mm_set1_epi32(1),
        _mm_set1_epi32(w as i32),
    );
    let mut k = 0;
    loop {
        let k0 = k.min(n - 4);
        // In bounds: window k0+3 reads cells up to 2 k0 + 7 < 2 n <= r0.len(), r1.len().
        let (a0, a1) = split(r0.as_ptr().add(2 * k0));
        let (b0, b1) = split(r1.as_ptr().add(2 * k0));
        let c = _mm_add_epi32(_mm_set1_epi32((base + 2 * k0 as u32) as i32), step);
        let (mut best, mut arg) = (a0, _mm_castsi128_ps(c));
        let cd = _mm_add_epi32(c, down);
        for (v, at) in [
            (a1, _mm_add_epi32(c, one)),
            (b0, cd),
            (b1, _mm_add_epi32(cd, one)),
        ] {
            let t = _mm_or_ps(
                _mm_cmp_ps::<_CMP_GT_OQ>(v, best),
                _mm_cmp_ps::<_CMP_UNORD_Q>(v, v),
            );
            best = _mm_blendv_ps(best, v, t);
            arg = _mm_blendv_ps(arg, _mm_castsi128_ps(at), t);
        }
        _mm_storeu_ps(orow.as_mut_ptr().add(k0), best);
        _mm_storeu_si128(irow.as_mut_ptr().add(k0).cast(), _mm_castps_si128(arg));
        k = k0 + 4;
        if k >= n {
            return n;
        }
    }
}

/// Max pooling; also returns, per output, the index of the winner within its input plane
/// (on the CPU only: the CUDA backward recomputes the winners from the input).
fn max_forward(x: &Tensor, p: Pool2dParams) -> Result<(Tensor, Vec<u32>, Geom)> {
    let g = Geom::new(x, p, "max_pool2d")?;
    if let Storage::Cuda(s) = x.storage() {
        let y = cuda::max_pool2d_forward(s, &g.cuda(x))?;
        return Ok((Tensor::from_cuda(y, g.out_shape(x)), Vec::new(), g));
    }
    let xd = host(x, "max_pool2d")?;
    let (hw, op) = (g.h * g.w, g.oh * g.ow);
    // Both paths below write every output and index.
    let mut out = crate::backend::cpu::pool::take(g.planes * op)?;
    let mut idx = vec![0u32; g.planes * op];
    let pairs = g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0;
    par_planes2(&mut out, op, &mut idx, op, |pl, out, idx| {
        let plane = &xd[pl * hw..][..hw];
        if pairs {
            max_pool_2x2(plane, &g, out, idx);
            return;
        }
        for oh in 0..g.oh {
            for ow in 0..g.ow {
                let (h0, h1, w0, w1) = g.window(oh, ow);
                // Padding is -inf, so it never wins; with padding <= kernel/2 every window
                // holds at least one real cell.
                let mut best = f32::NEG_INFINITY;
                let mut arg = h0 * g.w + w0;
                for ih in h0..h1 {
                    let base = ih * g.w + w0;
                    for (iw, &v) in plane[base..ih * g.w + w1].iter().enumerate() {
                        if wins(v, best) {
                            best = v;
                            arg = base + iw;
                        }
                    }
                }
                out[oh * g.ow + ow] = best;
                idx[oh * g.ow + ow] = arg as u32;
            }
        }
    });
    Ok((Tensor::cpu(out, g.out_shape(x)), idx, g))
}

/// Max over each window; padded cells count as -inf.
pub fn max_pool2d(x: &Tensor, p: Pool2dParams) -> Result<Tensor> {
    max_forward(x, p).map(|(out, _, _)| out)
}

/// Mean over each window, dividing by the full window size (padding counts as zeros).
pub fn avg_pool2d(x: &Tensor, p: Pool2dParams) -> Result<Tensor> {
    let g = Geom::new(x, p, "avg_pool2d")?;
    if let Storage::Cuda(s) = x.storage() {
        // count_include_pad: with floor mode and padding <= kernel/2 every window lies inside
        // the padded input, so this divides by kh*kw as the CPU path does.
        let y = cuda::avg_pool2d_forward(s, &g.cuda(x), true)?;
        return Ok(Tensor::from_cuda(y, g.out_shape(x)));
    }
    let xd = host(x, "avg_pool2d")?;
    let (hw, op) = (g.h * g.w, g.oh * g.ow);
    let inv = 1.0 / (g.kh * g.kw) as f32;
    let mut out = crate::backend::cpu::pool::take(g.planes * op)?;
    par_chunks_mut(&mut out, op, PAR_MIN, |pl, out| {
        let plane = &xd[pl * hw..][..hw];
        for oh in 0..g.oh {
            for ow in 0..g.ow {
                let (h0, h1, w0, w1) = g.window(oh, ow);
                let mut s = 0.0f32;
                for ih in h0..h1 {
                    s += plane[ih * g.w + w0..ih * g.w + w1].iter().sum::<f32>();
                }
                out[oh * g.ow + ow] = s * inv;
            }
        }
    });
    Ok(Tensor::cpu(out, g.out_shape(x)))
}

/// Mean over each whole plane: `[N, C, H, W] -> [N, C]`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    expect_rank(x, 4, "global_avg_pool", "input [N, C, H, W]")?;
    let hw = x.dim(2) * x.dim(3);
    if hw == 0 {
        return Err(Error::shape(
            "global_avg_pool",
            format!("input {:?} has empty planes", x.shape()),
        ));
    }
    if let Storage::Cuda(s) = x.storage() {
        let y = cuda::global_avg_pool_forward(s, x.dim(0), x.dim(1), hw)?;
        return Ok(Tensor::from_cuda(y, vec![x.dim(0), x.dim(1)]));
    }
    let xd = host(x, "global_avg_pool")?;
    let inv = 1.0 / hw as f32;
    let out = xd
        .chunks_exact(hw)
        .map(|plane| crate::backend::cpu::simd::sum(plane) * inv)
        .collect();
    Ok(Tensor::cpu(out, vec![x.dim(0), x.dim(1)]))
}

struct MaxPoolBackward {
    geom: Geom,
    /// Per output, the winning cell's index within its input plane (empty on CUDA).
    argmax: Vec<u32>,
}

impl BackwardOp for MaxPoolBackward {
    fn name(&self) -> &'static str {
        "max_pool2d"
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        let g = &self.geom;
        let x = c.inputs[0];
        if let (Storage::Cuda(xs), Storage::Cuda(gs)) = (x.storage(), c.grad.storage()) {
            let gx = cuda::max_pool2d_backward(xs, gs, &g.cuda(x))?;
            return Ok(vec![Some(Tensor::from_cuda(gx, x.shape().to_vec()))]);
        }
        let gd = host(c.grad, "max_pool2d")?;
        let (hw, op) = (g.h * g.w, g.oh * g.ow);
        // Zeroed plane by plane inside the parallel part, not as one batch-sized fill first:
        // that fill ran on the calling thread alone (half of this op's time in the profiled
        // CNN run), and a plane filled just before its scatter is still in cache.
        let mut dx = crate::backend::cpu::pool::take(g.planes * hw)?;
        par_chunks_mut(&mut dx, hw, PAR_MIN, |pl, dst| {
            dst.fill(0.0);
            let src = &gd[pl * op..][..op];
            let arg = &self.argmax[pl * op..][..op];
            for (&a, &v) in arg.iter().zip(src) {
                dst[a as usize] += v;
            }
        });
        Ok(vec![Some(Tensor::cpu(dx, c.inputs[0].shape().to_vec()))])
    }
}

struct AvgPoolBackward {
    geom: Geom,
}

impl BackwardOp for AvgPoolBackward {
    fn name(&self) -> &'static str {
        "avg_pool2d"
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        let g = &self.geom;
        let x = c.inputs[0];
        if let Storage::Cuda(gs) = c.grad.storage() {
            let gx = cuda::avg_pool2d_backward(gs, &g.cuda(x), true)?;
            return Ok(vec![Some(Tensor::from_cuda(gx, x.shape().to_vec()))]);
        }
        let gd = host(c.grad, "avg_pool2d")?;
        let (hw, op) = (g.h * g.w, g.oh * g.ow);
        let inv = 1.0 / (g.kh * g.kw) as f32;
        let mut dx = crate::backend::cpu::pool::zeroed(g.planes * hw)?;
        par_chunks_mut(&mut dx, hw, PAR_MIN, |pl, dst| {
            let src = &gd[pl * op..][..op];
            for oh in 0..g.oh {
                for ow in 0..g.ow {
                    let (h0, h1, w0, w1) = g.window(oh, ow);
                    let v = src[oh * g.ow + ow] * inv;
                    for ih in h0..h1 {
                        for d in &mut dst[ih * g.w + w0..ih * g.w + w1] {
                            *d += v;
                        }
                    }
                }
            }
        });
        Ok(vec![Some(Tensor::cpu(dx, c.inputs[0].shape().to_vec()))])
    }
}

struct GlobalAvgPoolBackward;

impl BackwardOp for GlobalAvgPoolBackward {
    fn name(&self) -> &'static str {
        "global_avg_pool"
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        let x = c.inputs[0];
        let hw = x.dim(2) * x.dim(3);
        if let Storage::Cuda(gs) = c.grad.storage() {
            let gx = cuda::global_avg_pool_backward(gs, x.dim(0), x.dim(1), hw)?;
            return Ok(vec![Some(Tensor::from_cuda(gx, x.shape().to_vec()))]);
        }
        let inv = 1.0 / hw as f32;
        let gd = host(c.grad, "global_avg_pool")?;
        let mut dx = crate::backend::cpu::pool::take(x.numel())?;
        for (plane, &v) in dx.chunks_exact_mut(hw).zip(gd) {
            plane.fill(v * inv);
        }
        Ok(vec![Some(Tensor::cpu(dx, x.shape().to_vec()))])
    }
}

impl Tape {
    /// Max pooling of `x: [N, C, H, W]`; the gradient goes to each window's first maximum.
    pub fn max_pool2d(&mut self, x: Var, p: Pool2dParams) -> Result<Var> {
        let (out, argmax, geom) = max_forward(self.value(x), p)?;
        Ok(self.push(out, &[x], move || {
            Box::new(MaxPoolBackward { geom, argmax })
        }))
    }

    /// Average pooling of `x: [N, C, H, W]`, padding counted in the divisor.
    pub fn avg_pool2d(&mut self, x: Var, p: Pool2dParams) -> Result<Var> {
        let v = self.value(x);
        let out = avg_pool2d(v, p)?;
        let geom = Geom::new(v, p, "avg_pool2d")?;
        Ok(self.push(out, &[x], move || Box::new(AvgPoolBackward { geom })))
    }

    /// Mean over each plane: `[N, C, H, W] -> [N, C]`.
    pub fn global_avg_pool(&mut self, x: Var) -> Result<Var> {
        let out = global_avg_pool(self.value(x))?;
        Ok(self.push(out, &[x], || Box::new(GlobalAvgPoolBackward)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check_gradients, check_gradients_at, GradCheck};
    use crate::rng::Rng;

    fn params(k: (usize, usize), s: (usize, usize), p: (usize, usize)) -> Pool2dParams {
        Pool2dParams {
            kernel: k,
            stride: s,
            padding: p,
        }
    }

    /// `0.1 * (a random permutation of 0..n)`: distinct values 0.1 apart, so no window has a
    /// tie and a finite-difference step cannot change a window's winner.
    fn distinct(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let perm = Rng::new(seed).permutation(n);
        let v: Vec<f32> = perm
            .iter()
            .map(|&i| i as f32 * 0.1 - n as f32 * 0.05)
            .collect();
        Tensor::from_vec(v, shape).unwrap()
    }

    #[test]
    fn forward_hand_values() {
        // x (4x4) = 0..16 row-major; 2x2 windows: max is the bottom-right cell of each,
        // mean is the window's centre value.
        let x = Tensor::from_vec((0..16).map(|v| v as f32).collect(), &[1, 1, 4, 4]).unwrap();
        let m = max_pool2d(&x, Pool2dParams::square(2)).unwrap();
        assert_eq!(m.shape(), &[1, 1, 2, 2]);
        assert_eq!(m.to_vec().unwrap(), vec![5.0, 7.0, 13.0, 15.0]);
        let a = avg_pool2d(&x, Pool2dParams::square(2)).unwrap();
        assert_eq!(a.to_vec().unwrap(), vec![2.5, 4.5, 10.5, 12.5]);

        // 3x3 windows, stride 2, padding 1 on a 4x4 input -> 2x2 output (floor(5/2)+1).
        // Window (0,0) covers rows/cols -1..=1: real cells 0,1,4,5 -> max 5, sum 10 / 9.
        // Window (0,1) covers rows -1..=1, cols 1..=3: cells 1,2,3,5,6,7 -> max 7, sum 24/9.
        // Window (1,0): rows 1..=3, cols -1..=1: 4,5,8,9,12,13 -> max 13, sum 51/9.
        // Window (1,1): rows 1..=3, cols 1..=3: 5,6,7,9,10,11,13,14,15 -> 15, sum 90/9.
        let p = params((3, 3), (2, 2), (1, 1));
        let m = max_pool2d(&x, p).unwrap();
        assert_eq!(m.to_vec().unwrap(), vec![5.0, 7.0, 13.0, 15.0]);
        let a = avg_pool2d(&x, p).unwrap().to_vec().unwrap();
        for (g, w) in a.iter().zip([10.0 / 9.0, 24.0 / 9.0, 51.0 / 9.0, 10.0]) {
            assert!((g - w).abs() < 1e-6, "{a:?}");
        }
        // Padding is -inf for max: an all-negative plane keeps its real maximum.
        let neg = Tensor::from_slice(&[-4.0, -3.0, -2.0, -1.0], &[1, 1, 2, 2]).unwrap();
        let m = max_pool2d(&neg, params((2, 2), (1, 1), (1, 1))).unwrap();
        assert_eq!(m.shape(), &[1, 1, 3, 3]);
        assert_eq!(
            m.to_vec().unwrap(),
            vec![-4.0, -3.0, -3.0, -2.0, -1.0, -1.0, -2.0, -1.0, -1.0]
        );

        // Global average of planes [1 2 3 4] and [0 0 0 8].
        let x = Tensor::from_slice(&[1., 2., 3., 4., 0., 0., 0., 8.], &[1, 2, 2, 2]).unwrap();
        let gavg = global_avg_pool(&x).unwrap();
        assert_eq!(gavg.shape(), &[1, 2]);
        assert_eq!(gavg.to_vec().unwrap(), vec![2.5, 2.0]);
    }

    #[test]
    fn max_pool_propagates_nan() {
        let x = Tensor::from_slice(&[1.0, f32::NAN, 3.0, 2.0], &[1, 1, 2, 2]).unwrap();
        let m = max_pool2d(&x, Pool2dParams::square(2)).unwrap();
        assert!(m.to_vec().unwrap()[0].is_nan());
    }

    #[test]
    fn larger_random_inputs_match_a_naive_max() {
        // Big enough to run on several threads; checked against the definition.
        let mut rng = Rng::new(5);
        let x = Tensor::randn(&[4, 5, 33, 29], 1.0, &mut rng);
        let p = params((3, 2), (2, 3), (1, 1));
        let m = max_pool2d(&x, p).unwrap();
        let (oh, ow) = ((33 + 2 - 3) / 2 + 1, (29 + 2 - 2) / 3 + 1);
        assert_eq!(m.shape(), &[4, 5, oh, ow]);
        let xd = x.to_vec().unwrap();
        let md = m.to_vec().unwrap();
        for pl in 0..20 {
            for y in 0..oh {
                for z in 0..ow {
                    let mut best = f32::NEG_INFINITY;
                    for i in 0..3 {
                        for j in 0..2 {
                            let (ih, iw) = ((y * 2 + i) as isize - 1, (z * 3 + j) as isize - 1);
                            if (0..33).contains(&ih) && (0..29).contains(&iw) {
                                best = best.max(xd[pl * 33 * 29 + ih as usize * 29 + iw as usize]);
                            }
                        }
                    }
                    assert_eq!(md[(pl * oh + y) * ow + z], best);
                }
            }
        }
    }

    /// The vector path of `MaxPool2d(2)` against the scalar reference (reference mode), on
    /// odd widths and heights (rows of 1 to 17 windows, so every group/tail split occurs),
    /// channel counts 1..=17, and inputs full of ties, signed zeros and NaNs: values, winner
    /// indices and gradients must have the same bits.
    #[test]
    fn vector_2x2_matches_the_scalar_reference() {
        use crate::backend::cpu::simd::set_reference_mode;
        // Reference mode is per thread: every case here is below PAR_MIN, so the whole op
        // runs on this thread.
        let mut rng = Rng::new(11);
        let specials = [0.0, -0.0, 1.0, 1.0, f32::NAN, -1.0, f32::INFINITY];
        for (c, h, w) in [
            (1, 2, 2),
            (3, 5, 9),
            (17, 7, 16),
            (2, 9, 35),
            (5, 14, 14),
            (4, 28, 28),
        ] {
            let n = 2 * c * h * w;
            let v: Vec<f32> = (0..n)
                .map(|_| match rng.below(4) {
                    0 => specials[rng.below(specials.len())],
                    _ => rng.below(5) as f32 * 0.5,
                })
                .collect();
            let x = Tensor::from_vec(v, &[2, c, h, w]).unwrap();
            let run = |reference: bool| {
                set_reference_mode(reference);
                let (y, idx, _) = max_forward(&x, Pool2dParams::square(2)).unwrap();
                let mut t = Tape::new();
                let xv = t.var(x.clone(), 0);
                let yv = t.max_pool2d(xv, Pool2dParams::square(2)).unwrap();
                let s = t.sum(yv).unwrap();
                let g = t.backward(s).unwrap();
                set_reference_mode(false);
                let bits = |t: &Tensor| -> Vec<u32> {
                    t.to_vec().unwrap().iter().map(|v| v.to_bits()).collect()
                };
                (bits(&y), idx, bits(g.get(0).unwrap()))
            };
            assert_eq!(run(false), run(true), "shape {c}x{h}x{w}");
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let cfg = GradCheck::default();
        let cases = [
            ([2, 2, 6, 6], Pool2dParams::square(2)),
            // Rows of 4 and 5 windows: the vector path of the 2x2 kernel, odd sizes.
            ([1, 3, 5, 9], Pool2dParams::square(2)),
            ([2, 1, 4, 11], Pool2dParams::square(2)),
            ([2, 3, 5, 7], params((3, 3), (2, 2), (1, 1))),
            ([1, 2, 7, 5], params((2, 3), (1, 2), (1, 1))),
            ([2, 2, 5, 5], params((3, 2), (3, 1), (0, 0))),
        ];
        for (i, (shape, p)) in cases.iter().enumerate() {
            let x = distinct(shape, i as u64);
            check_gradients_at(&[x], cfg, |t, v| t.max_pool2d(v[0], *p));
            check_gradients(&[shape], cfg, |t, v| t.avg_pool2d(v[0], *p));
        }
        check_gradients(&[&[2, 3, 5, 7]], cfg, |t, v| t.global_avg_pool(v[0]));
        check_gradients(&[&[1, 1, 1, 1]], cfg, |t, v| t.global_avg_pool(v[0]));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = Tensor::zeros(&[1, 2, 5, 5]);
        // wrong rank
        assert!(max_pool2d(&Tensor::zeros(&[2, 5, 5]), Pool2dParams::square(2)).is_err());
        assert!(global_avg_pool(&Tensor::zeros(&[2, 5])).is_err());
        // zero stride, zero kernel
        let e = max_pool2d(&x, params((2, 2), (0, 2), (0, 0))).unwrap_err();
        assert!(e.to_string().contains("stride"), "{e}");
        assert!(avg_pool2d(&x, params((0, 2), (1, 1), (0, 0))).is_err());
        // padding over half the kernel (PyTorch rejects it too)
        let e = avg_pool2d(&x, params((3, 3), (1, 1), (2, 1))).unwrap_err();
        assert!(e.to_string().contains("half"), "{e}");
        assert!(max_pool2d(&x, params((2, 2), (1, 1), (1, 1))).is_ok());
        // kernel larger than the padded input
        assert!(max_pool2d(&x, params((6, 2), (1, 1), (0, 0))).is_err());
        assert!(max_pool2d(&x, params((6, 2), (1, 1), (1, 0))).is_ok());
        // empty planes
        assert!(max_pool2d(
            &Tensor::zeros(&[1, 1, 0, 4]),
            params((2, 2), (1, 1), (1, 1))
        )
        .is_err());
        assert!(global_avg_pool(&Tensor::zeros(&[1, 2, 0, 3])).is_err());
    }
}
