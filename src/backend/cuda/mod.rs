//! The CUDA backend: device buffers and contexts through cudarc, kernels as `.cu` files under
//! `kernels/` compiled by NVRTC at first use (cached per device), cuBLAS for GEMM.
//!
//! Two implementations share one API, selected by the `cuda` feature:
//! - `real/` (feature on): the CUDA libraries are loaded at run time, so the crate builds on
//!   a machine without the toolkit; [`is_available`] / [`ensure_usable`] say whether (and why
//!   not) a device can be used;
//! - `stub.rs` (feature off): [`CudaStorage`] is uninhabited, so every CUDA arm of every op is
//!   statically dead, and the device queries return
//!   [`DeviceUnavailable`](crate::Error::DeviceUnavailable) errors.
//!
//! The parameter types below (geometries, optimizer settings, the dropout hash) are shared by
//! both, so the op files compile identically either way.

// The kernel catalogue is also compiled into the unit tests of a build without CUDA, so
// its tests run on every machine.
#[cfg(any(feature = "cuda", test))]
mod kernels;

// The one place the implementation is chosen: every other file sees `cuda::*` only.
#[cfg(feature = "cuda")]
#[path = "real/mod.rs"]
mod imp;
#[cfg(not(feature = "cuda"))]
#[path = "stub.rs"]
mod imp;

pub use imp::*;

use crate::error::{Error, Result};

/// The most dimensions a broadcasting binary op handles on the GPU (kernel argument size).
pub const MAX_RANK: usize = 8;

/// A binary elementwise op with broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Mul,
}

impl BinaryOp {
    /// The kernel-name prefix in `kernels/elementwise.cu`.
    pub fn kernel_prefix(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Mul => "mul",
        }
    }
}

/// Per-sample regression losses (`kernels/loss.cu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegressionLoss {
    Mse,
    BceWithLogits,
}

/// Shape and hyper-parameters of a 2-D convolution over NCHW input (PyTorch's conventions:
/// weight `[c_out, c_in / groups, kh, kw]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Conv2dGeometry {
    fn out_len(input: usize, k: usize, stride: usize, pad: usize, dil: usize) -> Option<usize> {
        let span = dil.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
        let padded = input.checked_add(2 * pad)?;
        if stride == 0 || padded < span {
            return None;
        }
        Some((padded - span) / stride + 1)
    }

    /// Output height (0 when the kernel does not fit; [`validate`](Self::validate) rejects it).
    pub fn out_h(&self) -> usize {
        Self::out_len(
            self.h,
            self.kh,
            self.stride.0,
            self.padding.0,
            self.dilation.0,
        )
        .unwrap_or(0)
    }

    pub fn out_w(&self) -> usize {
        Self::out_len(
            self.w,
            self.kw,
            self.stride.1,
            self.padding.1,
            self.dilation.1,
        )
        .unwrap_or(0)
    }

    /// Checks that the geometry is consistent and that every size fits the kernels' `int`s.
    pub fn validate(&self) -> Result<()> {
        let bad = |d: String| Err(Error::shape("conv2d", d));
        if self.groups == 0
            || !self.c_in.is_multiple_of(self.groups)
            || !self.c_out.is_multiple_of(self.groups)
        {
            return bad(format!(
                "groups = {} must divide c_in = {} and c_out = {}",
                self.groups, self.c_in, self.c_out
            ));
        }
        if self.kh == 0 || self.kw == 0 || self.dilation.0 == 0 || self.dilation.1 == 0 {
            return bad("kernel size and dilation must be positive".into());
        }
        if Self::out_len(
            self.h,
            self.kh,
            self.stride.0,
            self.padding.0,
            self.dilation.0,
        )
        .is_none()
            || Self::out_len(
                self.w,
                self.kw,
                self.stride.1,
                self.padding.1,
                self.dilation.1,
            )
            .is_none()
        {
            return bad(format!(
                "kernel {}x{} (stride {:?}, padding {:?}, dilation {:?}) does not fit input {}x{}",
                self.kh, self.kw, self.stride, self.padding, self.dilation, self.h, self.w
            ));
        }
        let cols = [
            self.c_in,
            self.kh,
            self.kw,
            self.n,
            self.out_h(),
            self.out_w(),
        ]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d));
        let fits = |v: usize| v <= i32::MAX as usize;
        let too_many = !matches!(cols, Some(c) if c <= isize::MAX as usize / 4);
        if too_many
            || ![self.n, self.c_in, self.h, self.w, self.c_out]
                .into_iter()
                .all(fits)
        {
            return bad("sizes too large for the GPU kernels".into());
        }
        Ok(())
    }
}

/// Shape and hyper-parameters of 2-D max / average pooling over NCHW input (floor mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dGeometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

impl Pool2dGeometry {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.padding.0)
            .checked_sub(self.kh)
            .map_or(0, |d| d / self.stride.0.max(1) + 1)
    }

    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.padding.1)
            .checked_sub(self.kw)
            .map_or(0, |d| d / self.stride.1.max(1) + 1)
    }

    /// PyTorch's rules: positive kernel and stride, padding at most half the kernel.
    pub fn validate(&self) -> Result<()> {
        if self.kh == 0 || self.kw == 0 || self.stride.0 == 0 || self.stride.1 == 0 {
            return Err(Error::shape("pool2d", "kernel and stride must be positive"));
        }
        if 2 * self.padding.0 > self.kh || 2 * self.padding.1 > self.kw {
            return Err(Error::shape(
                "pool2d",
                format!(
                    "padding {:?} exceeds half the kernel {}x{}",
                    self.padding, self.kh, self.kw
                ),
            ));
        }
        if self.h + 2 * self.padding.0 < self.kh || self.w + 2 * self.padding.1 < self.kw {
            return Err(Error::shape(
                "pool2d",
                format!(
                    "kernel {}x{} larger than the padded input",
                    self.kh, self.kw
                ),
            ));
        }
        let fits = |v: usize| v <= i32::MAX as usize;
        if ![self.n, self.c, self.h, self.w].into_iter().all(fits) {
            return Err(Error::shape(
                "pool2d",
                "sizes too large for the GPU kernels",
            ));
        }
        Ok(())
    }
}

/// One SGD step's settings (see [`crate::optim::SgdConfig`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdParams {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
    /// The momentum buffer is uninitialised (PyTorch seeds it with the first gradient).
    pub first: bool,
}

/// One Adam/AdamW step's settings, with the bias corrections of this step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Adam's coupled L2 decay (added to the gradient).
    pub l2_weight_decay: f32,
    /// AdamW's decoupled decay (weights shrink by `1 - lr * wd`).
    pub decoupled_weight_decay: f32,
    /// `1 - beta1^t`
    pub bias_correction1: f32,
    /// `sqrt(1 - beta2^t)`
    pub bias_correction2_sqrt: f32,
}

/// Batch-norm settings for one forward pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormParams {
    /// Batch statistics (and running-estimate update) when true; running estimates when false.
    pub train: bool,
    pub momentum: f32,
    pub eps: f32,
}

/// The uniform number in [0, 1) that decides whether dropout keeps element `index` under
/// `seed` (kept when `>= p`). The same splitmix64-based hash as `kernels/dropout.cu`, so a
/// CPU implementation can reproduce the GPU's mask exactly.
pub fn dropout_uniform(seed: u64, index: u64) -> f32 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// Whether dropout with probability `p` keeps element `index` under `seed`.
pub fn dropout_keep(seed: u64, index: u64, p: f32) -> bool {
    dropout_uniform(seed, index) >= p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_hash_is_uniform_and_seeded() {
        let n = 100_000u64;
        let kept = (0..n).filter(|&i| dropout_keep(7, i, 0.3)).count() as f64 / n as f64;
        assert!((kept - 0.7).abs() < 0.01, "{kept}");
        let same = (0..1000).filter(|&i| dropout_keep(7, i, 0.5) == dropout_keep(8, i, 0.5));
        assert!(
            same.count() < 600,
            "different seeds must give different masks"
        );
        assert!(dropout_keep(1, 3, 0.0));
        assert!((0..1000).all(|i| !dropout_keep(1, i, 1.0)));
    }

    #[test]
    fn conv_and_pool_geometry() {
        let g = Conv2dGeometry {
            n: 2,
            c_in: 4,
            h: 7,
            w: 5,
            c_out: 6,
            kh: 3,
            kw: 3,
            stride: (2, 1),
            padding: (1, 0),
            dilation: (1, 2),
            groups: 2,
        };
        assert_eq!((g.out_h(), g.out_w()), (4, 1));
        assert!(g.validate().is_ok());
        assert!(Conv2dGeometry { groups: 3, ..g }.validate().is_err());
        assert!(Conv2dGeometry { w: 4, ..g }.validate().is_err());
        let p = Pool2dGeometry {
            n: 1,
            c: 1,
            h: 5,
            w: 5,
            kh: 2,
            kw: 2,
            stride: (2, 2),
            padding: (0, 0),
        };
        assert_eq!((p.out_h(), p.out_w()), (2, 2));
        assert!(p.validate().is_ok());
        assert!(Pool2dGeometry {
            padding: (2, 0),
            ..p
        }
        .validate()
        .is_err());
    }
}
