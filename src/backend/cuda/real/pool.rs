//! Pooling launchers: 2-D max and average pooling (PyTorch's floor-mode semantics) and
//! global average pooling (a mean over the spatial axis).

use super::conv::int;
use super::elems;
use super::memory::{check_len, same_dev, CudaStorage};
use crate::backend::cuda::kernels::pool as k;
use crate::backend::cuda::Pool2dGeometry;
use crate::error::Result;
use cudarc::driver::DeviceRepr;

/// Mirrors `struct PoolGeom` in kernels/pool.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
struct PoolGeom {
    n: i32,
    c: i32,
    h: i32,
    w: i32,
    kh: i32,
    kw: i32,
    sh: i32,
    sw: i32,
    ph: i32,
    pw: i32,
    ho: i32,
    wo: i32,
}
// SAFETY: plain #[repr(C)] integers, laid out as the C struct.
unsafe impl DeviceRepr for PoolGeom {}

/// The kernels' geometry, with the padded extents checked to fit an `int` (every window
/// coordinate lies within them); in-plane offsets are computed in 64 bits by the kernels.
fn pool_geom(g: &Pool2dGeometry) -> Result<PoolGeom> {
    g.validate()?;
    let f = |what: &str, v: usize| int("pool2d", what, Some(v));
    let padded = |x: usize, p: usize| p.checked_mul(2).and_then(|p| p.checked_add(x));
    int("pool2d", "padded height", padded(g.h, g.padding.0))?;
    int("pool2d", "padded width", padded(g.w, g.padding.1))?;
    Ok(PoolGeom {
        n: f("batch", g.n)?,
        c: f("channels", g.c)?,
        h: f("height", g.h)?,
        w: f("width", g.w)?,
        kh: f("kernel height", g.kh)?,
        kw: f("kernel width", g.kw)?,
        sh: f("stride", g.stride.0)?,
        sw: f("stride", g.stride.1)?,
        ph: f("padding", g.padding.0)?,
        pw: f("padding", g.padding.1)?,
        ho: f("output height", g.out_h())?,
        wo: f("output width", g.out_w())?,
    })
}

/// The geometry checked against the input: (kernel geometry, output length).
fn pool_checks(x: &CudaStorage, g: &Pool2dGeometry) -> Result<(PoolGeom, usize)> {
    let pg = pool_geom(g)?;
    check_len("pool2d", "input", x, g.n * g.c * g.h * g.w)?;
    Ok((pg, g.n * g.c * g.out_h() * g.out_w()))
}

/// Max pooling forward: `[n, c, h, w]` to `[n, c, out_h, out_w]`.
pub fn max_pool2d_forward(x: &CudaStorage, g: &Pool2dGeometry) -> Result<CudaStorage> {
    let (pg, m) = pool_checks(x, g)?;
    let mut y = x.empty(m)?;
    if m > 0 {
        launch!(x.dev, k::MAXPOOL2D_FWD, elems(m); &x.buf, &mut y.buf, &pg)?;
    }
    Ok(y)
}

/// Max pooling backward (the window maxima are recomputed from `x`).
pub fn max_pool2d_backward(
    x: &CudaStorage,
    grad: &CudaStorage,
    g: &Pool2dGeometry,
) -> Result<CudaStorage> {
    let (pg, m) = pool_checks(x, g)?;
    same_dev("max_pool2d", x, grad)?;
    check_len("max_pool2d", "output gradient", grad, m)?;
    let mut gx = x.zeros_like_len(x.len())?;
    if m > 0 {
        launch!(x.dev, k::MAXPOOL2D_BWD, elems(m); &x.buf, &grad.buf, &mut gx.buf, &pg)?;
    }
    Ok(gx)
}

/// Average pooling forward; `count_include_pad` as PyTorch's flag (default true there).
pub fn avg_pool2d_forward(
    x: &CudaStorage,
    g: &Pool2dGeometry,
    count_include_pad: bool,
) -> Result<CudaStorage> {
    let (pg, m) = pool_checks(x, g)?;
    let mut y = x.empty(m)?;
    if m > 0 {
        launch!(x.dev, k::AVGPOOL2D_FWD, elems(m);
            &x.buf, &mut y.buf, &pg, &(count_include_pad as i32))?;
    }
    Ok(y)
}

/// Average pooling backward: `grad` is `[n, c, out_h, out_w]`, the result `[n, c, h, w]`.
pub fn avg_pool2d_backward(
    grad: &CudaStorage,
    g: &Pool2dGeometry,
    count_include_pad: bool,
) -> Result<CudaStorage> {
    let pg = pool_geom(g)?;
    let m = g.n * g.c * g.out_h() * g.out_w();
    check_len("avg_pool2d", "output gradient", grad, m)?;
    let mut gx = grad.zeros_like_len(g.n * g.c * g.h * g.w)?;
    if m > 0 {
        launch!(grad.dev, k::AVGPOOL2D_BWD, elems(m);
            &grad.buf, &mut gx.buf, &pg, &(count_include_pad as i32))?;
    }
    Ok(gx)
}

/// Global average pooling: `[n, c, h, w]` to `[n, c]` (`hw = h * w`).
pub fn global_avg_pool_forward(
    x: &CudaStorage,
    n: usize,
    c: usize,
    hw: usize,
) -> Result<CudaStorage> {
    x.mean_axis(n * c, hw, 1)
}

/// Backward of [`global_avg_pool_forward`]: `grad` is `[n, c]`.
pub fn global_avg_pool_backward(
    grad: &CudaStorage,
    n: usize,
    c: usize,
    hw: usize,
) -> Result<CudaStorage> {
    grad.mean_axis_backward(n * c, hw, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_past_2_to_31_pixels_keep_32_bit_coordinates() {
        // 50 000 x 50 000 = 2.5e9 pixels in one plane: the in-plane offset needs 64 bits (the
        // kernels compute it so), each coordinate still fits an int.
        let g = Pool2dGeometry {
            n: 1,
            c: 1,
            h: 50_000,
            w: 50_000,
            kh: 2,
            kw: 2,
            stride: (2, 2),
            padding: (1, 1),
        };
        let pg = pool_geom(&g).unwrap();
        assert_eq!((pg.ho, pg.wo), (25_001, 25_001));
        let huge = Pool2dGeometry {
            h: i32::MAX as usize,
            kh: 4,
            padding: (2, 1),
            ..g
        };
        let e = pool_geom(&huge).unwrap_err().to_string();
        assert!(e.contains("padded height"), "{e}");
    }
}
