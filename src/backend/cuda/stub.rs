//! The CUDA API without the `cuda` feature. [`CudaStorage`] is uninhabited: no value of it
//! can exist, so every function taking one is statically unreachable (`match *x {}`), and the
//! only entry points, the device queries and the constructors, return
//! [`Error::DeviceUnavailable`]. Signatures mirror `real/` exactly.

use super::{
    AdamParams, BatchNormParams, BinaryOp, Conv2dGeometry, Pool2dGeometry, RegressionLoss,
    SgdParams,
};
use crate::backend::{Device, Storage};
use crate::error::{Error, Result};

/// Device memory holding f32 values. Uninhabited while the `cuda` feature is off.
#[derive(Clone, Debug)]
pub enum CudaStorage {}

fn unavailable(ordinal: usize) -> Error {
    Error::DeviceUnavailable(format!(
        "cuda:{ordinal} requested, but this build of gradtau has no CUDA support \
         (rebuild with `--features cuda`)"
    ))
}

/// Whether CUDA device `ordinal` can be used right now: never, in this build.
pub fn is_available(_ordinal: usize) -> bool {
    false
}

/// A clear error explaining why CUDA device `ordinal` cannot be used.
pub fn ensure_usable(ordinal: usize) -> Result<()> {
    Err(unavailable(ordinal))
}

/// Waits for queued work on device `ordinal`; there is none in this build.
pub fn synchronize(ordinal: usize) -> Result<()> {
    Err(unavailable(ordinal))
}

#[allow(clippy::too_many_arguments)]
impl CudaStorage {
    pub fn device(&self) -> Device {
        match *self {}
    }
    pub fn ordinal(&self) -> usize {
        match *self {}
    }
    pub fn len(&self) -> usize {
        match *self {}
    }
    pub fn is_empty(&self) -> bool {
        match *self {}
    }
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match *self {}
    }
    /// Copies to `target` (host memory or another device).
    pub fn copy_to(&self, _target: Device) -> Result<Storage> {
        match *self {}
    }
    pub fn from_host(_data: &[f32], ordinal: usize) -> Result<Self> {
        Err(unavailable(ordinal))
    }
    pub fn zeros(_len: usize, ordinal: usize) -> Result<Self> {
        Err(unavailable(ordinal))
    }
    pub fn range(&self, _start: usize, _len: usize) -> Result<Self> {
        match *self {}
    }
    pub fn placed(&self, _total: usize, _start: usize) -> Result<Self> {
        match *self {}
    }
    pub fn unary(&self, _kernel: &'static str, _param: f32) -> Result<Self> {
        match *self {}
    }
    pub fn unary_backward(&self, _grad: &Self, _kernel: &'static str, _param: f32) -> Result<Self> {
        match *self {}
    }
    pub fn binary(
        &self,
        _rhs: &Self,
        _op: BinaryOp,
        _lhs_shape: &[usize],
        _rhs_shape: &[usize],
        _out_shape: &[usize],
    ) -> Result<Self> {
        match *self {}
    }
    pub fn reduce_to_shape(&self, _from: &[usize], _to: &[usize]) -> Result<Self> {
        match *self {}
    }
    pub fn add_assign(&mut self, _rhs: &Self) -> Result<()> {
        match *self {}
    }
    pub fn repeat_rows(&self, _rows: usize) -> Result<Self> {
        match *self {}
    }
    pub fn sum_all(&self, _scale: f32) -> Result<Self> {
        match *self {}
    }
    pub fn broadcast_scalar(&self, _len: usize, _scale: f32) -> Result<Self> {
        match *self {}
    }
    pub fn mean_axis(&self, _outer: usize, _len: usize, _inner: usize) -> Result<Self> {
        match *self {}
    }
    pub fn mean_axis_backward(&self, _outer: usize, _len: usize, _inner: usize) -> Result<Self> {
        match *self {}
    }
    pub fn cross_entropy(&self, _labels: &[u32], _n: usize, _c: usize) -> Result<(Self, Self)> {
        match *self {}
    }
    pub fn cross_entropy_backward(
        &self,
        _labels: &[u32],
        _grad: &Self,
        _n: usize,
        _c: usize,
    ) -> Result<Self> {
        match *self {}
    }
    pub fn regression_loss(
        &self,
        _target: &Self,
        _n: usize,
        _d: usize,
        _kind: RegressionLoss,
    ) -> Result<Self> {
        match *self {}
    }
    pub fn regression_loss_backward(
        &self,
        _target: &Self,
        _grad: &Self,
        _n: usize,
        _d: usize,
        _kind: RegressionLoss,
    ) -> Result<(Self, Self)> {
        match *self {}
    }
    pub fn dropout(&self, _p: f32, _seed: u64) -> Result<Self> {
        match *self {}
    }
    pub fn sgd_step(
        &mut self,
        _grad: &Self,
        _momentum_buf: Option<&mut Self>,
        _p: SgdParams,
    ) -> Result<()> {
        match *self {}
    }
    pub fn adam_step(
        &mut self,
        _grad: &Self,
        _m: &mut Self,
        _v: &mut Self,
        _p: AdamParams,
    ) -> Result<()> {
        match *self {}
    }
}

#[allow(clippy::too_many_arguments)]
pub fn gemm(
    _m: usize,
    _k: usize,
    _n: usize,
    _alpha: f32,
    a: &CudaStorage,
    _ta: bool,
    _b: &CudaStorage,
    _tb: bool,
    _beta: f32,
    _c: &mut CudaStorage,
) -> Result<()> {
    match *a {}
}

pub fn conv2d_forward(
    x: &CudaStorage,
    _w: &CudaStorage,
    _bias: Option<&CudaStorage>,
    _g: &Conv2dGeometry,
) -> Result<CudaStorage> {
    match *x {}
}

#[allow(clippy::type_complexity)]
pub fn conv2d_backward(
    x: &CudaStorage,
    _w: &CudaStorage,
    _grad: &CudaStorage,
    _g: &Conv2dGeometry,
    _needs: [bool; 3],
) -> Result<(
    Option<CudaStorage>,
    Option<CudaStorage>,
    Option<CudaStorage>,
)> {
    match *x {}
}

pub fn max_pool2d_forward(x: &CudaStorage, _g: &Pool2dGeometry) -> Result<CudaStorage> {
    match *x {}
}

pub fn max_pool2d_backward(
    x: &CudaStorage,
    _grad: &CudaStorage,
    _g: &Pool2dGeometry,
) -> Result<CudaStorage> {
    match *x {}
}

pub fn avg_pool2d_forward(
    x: &CudaStorage,
    _g: &Pool2dGeometry,
    _count_include_pad: bool,
) -> Result<CudaStorage> {
    match *x {}
}

pub fn avg_pool2d_backward(
    grad: &CudaStorage,
    _g: &Pool2dGeometry,
    _count_include_pad: bool,
) -> Result<CudaStorage> {
    match *grad {}
}

pub fn global_avg_pool_forward(
    x: &CudaStorage,
    _n: usize,
    _c: usize,
    _hw: usize,
) -> Result<CudaStorage> {
    match *x {}
}

pub fn global_avg_pool_backward(
    grad: &CudaStorage,
    _n: usize,
    _c: usize,
    _hw: usize,
) -> Result<CudaStorage> {
    match *grad {}
}

/// What batch norm's forward returns (never constructed in this build).
#[derive(Debug)]
pub struct BatchNormOutput {
    pub y: CudaStorage,
    pub mean: CudaStorage,
    pub invstd: CudaStorage,
}

#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward(
    x: &CudaStorage,
    _weight: &CudaStorage,
    _bias: &CudaStorage,
    _running_mean: &mut CudaStorage,
    _running_var: &mut CudaStorage,
    _n: usize,
    _c: usize,
    _hw: usize,
    _p: BatchNormParams,
) -> Result<BatchNormOutput> {
    match *x {}
}

#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward(
    x: &CudaStorage,
    _weight: &CudaStorage,
    _grad: &CudaStorage,
    _mean: &CudaStorage,
    _invstd: &CudaStorage,
    _n: usize,
    _c: usize,
    _hw: usize,
    _train: bool,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    match *x {}
}

pub fn layernorm_forward(
    x: &CudaStorage,
    _weight: &CudaStorage,
    _bias: &CudaStorage,
    _rows: usize,
    _d: usize,
    _eps: f32,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    match *x {}
}

pub fn layernorm_backward(
    x: &CudaStorage,
    _weight: &CudaStorage,
    _grad: &CudaStorage,
    _mean: &CudaStorage,
    _invstd: &CudaStorage,
    _rows: usize,
    _d: usize,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    match *x {}
}

pub fn embedding_forward(weight: &CudaStorage, _ids: &[u32], _dim: usize) -> Result<CudaStorage> {
    match *weight {}
}

pub fn embedding_backward(
    _ids: &[u32],
    grad: &CudaStorage,
    _num: usize,
    _dim: usize,
) -> Result<CudaStorage> {
    match *grad {}
}
