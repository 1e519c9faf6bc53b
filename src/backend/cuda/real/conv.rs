//! conv2d launchers: im2col + one cuBLAS GEMM per group (the batch folded into the GEMM's
//! columns), layout transposes, and the backward through the same pieces.

use super::blas::gemm_view;
use super::memory::{all_same_dev, check_len, same_dev, u, CudaStorage};
use super::{elems, rows};
use crate::backend::cuda::kernels::conv as k;
use crate::backend::cuda::Conv2dGeometry;
use crate::error::{Error, Result};
use cudarc::driver::DeviceRepr;

/// Mirrors `struct ConvGeom` in kernels/conv.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
struct ConvGeom {
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
    dh: i32,
    dw: i32,
    ho: i32,
    wo: i32,
}
// SAFETY: plain #[repr(C)] integers, laid out as the C struct.
unsafe impl DeviceRepr for ConvGeom {}

/// `v` as one of the kernels' `int`s, or an error naming it.
pub(super) fn int(op: &'static str, what: &str, v: Option<usize>) -> Result<i32> {
    v.and_then(|v| i32::try_from(v).ok()).ok_or_else(|| {
        Error::shape(
            op,
            format!("{what} too large for the GPU kernels' 32-bit coordinates"),
        )
    })
}

/// The kernels' geometry. Besides each field, the padded extents `h + 2 ph`, `w + 2 pw` and
/// the dilated kernel spans must fit an `int`: every row / column coordinate the kernels
/// compute (`oh * sh - ph + kh * dh` and its inverse) lies within them. Offsets into the
/// tensors are computed in 64 bits.
fn conv_geom(g: &Conv2dGeometry) -> Result<ConvGeom> {
    let f = |what: &str, v: usize| int("conv2d", what, Some(v));
    let padded = |x: usize, p: usize| p.checked_mul(2).and_then(|p| p.checked_add(x));
    let span = |k: usize, d: usize| k.checked_mul(d);
    int("conv2d", "padded height", padded(g.h, g.padding.0))?;
    int("conv2d", "padded width", padded(g.w, g.padding.1))?;
    int("conv2d", "dilated kernel height", span(g.kh, g.dilation.0))?;
    int("conv2d", "dilated kernel width", span(g.kw, g.dilation.1))?;
    Ok(ConvGeom {
        n: f("batch", g.n)?,
        c: f("input channels", g.c_in)?,
        h: f("height", g.h)?,
        w: f("width", g.w)?,
        kh: f("kernel height", g.kh)?,
        kw: f("kernel width", g.kw)?,
        sh: f("stride", g.stride.0)?,
        sw: f("stride", g.stride.1)?,
        ph: f("padding", g.padding.0)?,
        pw: f("padding", g.padding.1)?,
        dh: f("dilation", g.dilation.0)?,
        dw: f("dilation", g.dilation.1)?,
        ho: f("output height", g.out_h())?,
        wo: f("output width", g.out_w())?,
    })
}

/// Validates `g` against the operands: (kernel geometry, `c_in * kh * kw`, `n * out_h * out_w`).
fn conv_checks(
    g: &Conv2dGeometry,
    x: &CudaStorage,
    w: &CudaStorage,
) -> Result<(ConvGeom, usize, usize)> {
    g.validate()?;
    same_dev("conv2d", x, w)?;
    check_len("conv2d", "input", x, g.n * g.c_in * g.h * g.w)?;
    check_len(
        "conv2d",
        "weight",
        w,
        g.c_out * (g.c_in / g.groups) * g.kh * g.kw,
    )?;
    let cg = conv_geom(g)?;
    let ckk = g.c_in * g.kh * g.kw;
    let cols = g.n * g.out_h() * g.out_w();
    Ok((cg, ckk, cols))
}

/// conv2d forward over NCHW: `[n, c_in, h, w]` * `[c_out, c_in/groups, kh, kw]` (+ bias
/// `[c_out]`) gives `[n, c_out, out_h, out_w]`. im2col into `[c_in*kh*kw, n*out_h*out_w]`,
/// one GEMM per group, then a transpose back to NCHW that also adds the bias.
pub fn conv2d_forward(
    x: &CudaStorage,
    w: &CudaStorage,
    bias: Option<&CudaStorage>,
    g: &Conv2dGeometry,
) -> Result<CudaStorage> {
    let (cg, ckk, ncols) = conv_checks(g, x, w)?;
    if let Some(b) = bias {
        same_dev("conv2d", x, b)?;
        check_len("conv2d", "bias", b, g.c_out)?;
    }
    let dev = x.dev.clone();
    let hw = g.out_h() * g.out_w();
    let out_len = g.n * g.c_out * hw;
    let mut y = x.empty(out_len)?;
    if out_len == 0 {
        return Ok(y);
    }
    // No input channels: the product is empty and the output is the bias alone.
    let mut yc = if ckk == 0 {
        x.zeros_like_len(g.c_out * ncols)?
    } else {
        x.empty(g.c_out * ncols)?
    };
    if ckk > 0 {
        let mut cols = x.empty(ckk * ncols)?;
        launch!(dev, k::IM2COL, elems(ckk * ncols); &x.buf, &mut cols.buf, &cg)?;
        let (cout_g, ckk_g) = (g.c_out / g.groups, ckk / g.groups);
        for gi in 0..g.groups {
            let wv = w.buf.slice(gi * cout_g * ckk_g..(gi + 1) * cout_g * ckk_g);
            let cv = cols.buf.slice(gi * ckk_g * ncols..(gi + 1) * ckk_g * ncols);
            let mut yv = yc
                .buf
                .slice_mut(gi * cout_g * ncols..(gi + 1) * cout_g * ncols);
            gemm_view(
                &dev, cout_g, ckk_g, ncols, 1.0, &wv, false, &cv, false, 0.0, &mut yv,
            )?;
        }
    }
    let has_bias = bias.is_some() as i32;
    // Not read when has_bias is 0; any valid pointer will do.
    let b = bias.map_or(&yc.buf, |b| &b.buf);
    launch!(dev, k::CNHW_TO_NCHW, elems(out_len);
        &yc.buf, b, &mut y.buf, &u(g.n), &u(g.c_out), &u(hw), &has_bias)?;
    Ok(y)
}

/// Gradients of conv2d: (input, weight, bias), each computed only where `needs` asks.
#[allow(clippy::type_complexity)]
pub fn conv2d_backward(
    x: &CudaStorage,
    w: &CudaStorage,
    grad: &CudaStorage,
    g: &Conv2dGeometry,
    needs: [bool; 3],
) -> Result<(
    Option<CudaStorage>,
    Option<CudaStorage>,
    Option<CudaStorage>,
)> {
    let (cg, ckk, ncols) = conv_checks(g, x, w)?;
    all_same_dev("conv2d", x, &[grad])?;
    let hw = g.out_h() * g.out_w();
    check_len("conv2d", "output gradient", grad, g.n * g.c_out * hw)?;
    let dev = x.dev.clone();
    let (cout_g, ckk_g) = (g.c_out / g.groups, ckk / g.groups);
    let gb = if needs[2] {
        let mut gb = x.zeros_like_len(g.c_out)?;
        if g.c_out > 0 && ncols > 0 {
            launch!(dev, k::CHANNEL_SUM, rows(g.c_out);
                &grad.buf, &mut gb.buf, &u(g.n), &u(g.c_out), &u(hw))?;
        }
        Some(gb)
    } else {
        None
    };
    if !needs[0] && !needs[1] {
        return Ok((None, None, gb));
    }
    if ncols == 0 || ckk == 0 || g.c_out == 0 {
        let gx = needs[0].then(|| x.zeros_like_len(x.len())).transpose()?;
        let gw = needs[1].then(|| x.zeros_like_len(w.len())).transpose()?;
        return Ok((gx, gw, gb));
    }
    let mut gyc = x.empty(g.c_out * ncols)?;
    launch!(dev, k::NCHW_TO_CNHW, elems(g.c_out * ncols);
        &grad.buf, &mut gyc.buf, &u(g.n), &u(g.c_out), &u(hw))?;
    let gw = if needs[1] {
        let mut cols = x.empty(ckk * ncols)?;
        launch!(dev, k::IM2COL, elems(ckk * ncols); &x.buf, &mut cols.buf, &cg)?;
        let mut gw = x.empty(w.len())?;
        for gi in 0..g.groups {
            let gyv = gyc
                .buf
                .slice(gi * cout_g * ncols..(gi + 1) * cout_g * ncols);
            let cv = cols.buf.slice(gi * ckk_g * ncols..(gi + 1) * ckk_g * ncols);
            let mut wv = gw
                .buf
                .slice_mut(gi * cout_g * ckk_g..(gi + 1) * cout_g * ckk_g);
            // gW_g [cout_g, ckk_g] = gY_g [cout_g, ncols] @ cols_g^T
            gemm_view(
                &dev, cout_g, ncols, ckk_g, 1.0, &gyv, false, &cv, true, 0.0, &mut wv,
            )?;
        }
        Some(gw)
    } else {
        None
    };
    let gx = if needs[0] {
        let mut gcols = x.empty(ckk * ncols)?;
        for gi in 0..g.groups {
            let wv = w.buf.slice(gi * cout_g * ckk_g..(gi + 1) * cout_g * ckk_g);
            let gyv = gyc
                .buf
                .slice(gi * cout_g * ncols..(gi + 1) * cout_g * ncols);
            let mut cv = gcols
                .buf
                .slice_mut(gi * ckk_g * ncols..(gi + 1) * ckk_g * ncols);
            // gcols_g [ckk_g, ncols] = W_g^T @ gY_g
            gemm_view(
                &dev, ckk_g, cout_g, ncols, 1.0, &wv, true, &gyv, false, 0.0, &mut cv,
            )?;
        }
        let mut gx = x.empty(x.len())?;
        launch!(dev, k::COL2IM, elems(x.len()); &gcols.buf, &mut gx.buf, &cg)?;
        Some(gx)
    } else {
        None
    };
    Ok((gx, gw, gb))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry() -> Conv2dGeometry {
        Conv2dGeometry {
            n: 2,
            c_in: 3,
            h: 9,
            w: 8,
            c_out: 4,
            kh: 3,
            kw: 2,
            stride: (2, 1),
            padding: (1, 0),
            dilation: (1, 2),
            groups: 1,
        }
    }

    #[test]
    fn kernel_geometry_mirrors_the_op_geometry() {
        let g = geometry();
        let cg = conv_geom(&g).unwrap();
        assert_eq!((cg.ho, cg.wo), (g.out_h() as i32, g.out_w() as i32));
        assert_eq!((cg.sh, cg.pw, cg.dw), (2, 0, 2));
    }

    #[test]
    fn coordinates_past_32_bits_are_refused_by_name() {
        let padded = Conv2dGeometry {
            padding: (i32::MAX as usize, 0),
            kh: 3,
            ..geometry()
        };
        let e = conv_geom(&padded).unwrap_err().to_string();
        assert!(e.contains("padded height"), "{e}");
        let dilated = Conv2dGeometry {
            dilation: (1, 1 << 31),
            ..geometry()
        };
        let e = conv_geom(&dilated).unwrap_err().to_string();
        assert!(e.contains("dilated kernel width"), "{e}");
    }
}
