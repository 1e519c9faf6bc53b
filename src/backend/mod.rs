//! Where tensor data lives and which kernels run on it.
//!
//! `Storage` is `Cpu | Cuda`. Every op dispatches on the storage of its inputs: the CPU arm
//! calls a kernel in [`cpu`], the CUDA arm a kernel in [`cuda`]. When the `cuda` feature is
//! off, [`cuda::CudaStorage`] is an uninhabited type, so the CUDA arms compile away and the
//! device queries report a clear "unavailable" error.

pub mod cpu;
pub mod cuda;

use crate::error::{Error, Result};
use std::fmt;

/// A compute device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// The host CPU (SIMD kernels, matrixmultiply GEMM).
    #[default]
    Cpu,
    /// A CUDA GPU, by ordinal.
    Cuda(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// What the caller asked for: a fixed device or "the best usable one".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceRequest {
    /// CUDA device 0 when usable, else the CPU.
    #[default]
    Auto,
    /// Exactly this device; an error if it cannot be used.
    Exact(Device),
}

impl DeviceRequest {
    /// Parses `auto`, `cpu`, `cuda` or `cuda:N`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "auto" => Ok(DeviceRequest::Auto),
            "cpu" => Ok(DeviceRequest::Exact(Device::Cpu)),
            "cuda" | "gpu" => Ok(DeviceRequest::Exact(Device::Cuda(0))),
            _ => {
                if let Some(n) = s.strip_prefix("cuda:") {
                    let i = n.parse::<usize>().map_err(|_| {
                        Error::invalid(format!("device `{s}`: expected cuda:N with N a number"))
                    })?;
                    Ok(DeviceRequest::Exact(Device::Cuda(i)))
                } else {
                    Err(Error::invalid(format!(
                        "device `{s}`: expected auto, cpu, cuda or cuda:N"
                    )))
                }
            }
        }
    }

    /// Picks the device: `Auto` falls back to the CPU, `Exact(Cuda)` fails loudly if unusable.
    pub fn resolve(self) -> Result<Device> {
        match self {
            DeviceRequest::Auto => Ok(if cuda::is_available(0) {
                Device::Cuda(0)
            } else {
                Device::Cpu
            }),
            DeviceRequest::Exact(Device::Cpu) => Ok(Device::Cpu),
            DeviceRequest::Exact(Device::Cuda(i)) => {
                cuda::ensure_usable(i)?;
                Ok(Device::Cuda(i))
            }
        }
    }
}

/// The buffer behind a tensor.
#[derive(Clone, Debug)]
pub enum Storage {
    Cpu(Vec<f32>),
    Cuda(cuda::CudaStorage),
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(s) => s.device(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(v) => v.len(),
            Storage::Cuda(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the data to host memory.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match self {
            Storage::Cpu(v) => Ok(v.clone()),
            Storage::Cuda(s) => s.to_vec(),
        }
    }

    /// Moves (copies) the data to `device`.
    pub fn to_device(&self, device: Device) -> Result<Storage> {
        match (self, device) {
            (Storage::Cpu(v), Device::Cpu) => Ok(Storage::Cpu(v.clone())),
            (Storage::Cpu(v), Device::Cuda(i)) => {
                Ok(Storage::Cuda(cuda::CudaStorage::from_host(v, i)?))
            }
            (Storage::Cuda(s), target) => s.copy_to(target),
        }
    }
}
