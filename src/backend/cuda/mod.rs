//! The CUDA backend. Without the `cuda` feature this is a stub with the same API: the storage
//! type is uninhabited (no value of it can exist, so every CUDA arm is statically dead) and the
//! device queries return [`Error::DeviceUnavailable`](crate::Error::DeviceUnavailable).

use super::Device;
use crate::error::{Error, Result};

/// Device memory holding f32 values. Uninhabited while the `cuda` feature is off.
#[derive(Clone, Debug)]
pub enum CudaStorage {}

impl CudaStorage {
    pub fn device(&self) -> Device {
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
    pub fn copy_to(&self, _target: Device) -> Result<super::Storage> {
        match *self {}
    }
    pub fn from_host(_data: &[f32], ordinal: usize) -> Result<Self> {
        ensure_usable(ordinal)?;
        unreachable!("ensure_usable always fails without the cuda feature")
    }
}

/// Whether CUDA device `ordinal` can be used right now.
pub fn is_available(_ordinal: usize) -> bool {
    false
}

/// A clear error explaining why CUDA device `ordinal` cannot be used.
pub fn ensure_usable(ordinal: usize) -> Result<()> {
    Err(Error::DeviceUnavailable(format!(
        "cuda:{ordinal} requested, but this build of gradtau has no CUDA support \
         (rebuild with `--features cuda`)"
    )))
}
