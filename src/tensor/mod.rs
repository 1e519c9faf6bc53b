//! `Tensor`: an f32 buffer with a shape, on some device. Cloning is cheap (the buffer is
//! shared); writing through [`Tensor::data_mut`] copies first if the buffer is shared.

mod ndarray_interop;

use crate::backend::cpu::simd;
use crate::backend::cuda::CudaStorage;
use crate::backend::{Device, Storage};
use crate::error::{Error, Result};
use crate::rng::Rng;
use std::sync::Arc;

/// A dense, contiguous, row-major f32 tensor.
#[derive(Clone, Debug)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Arc<Storage>,
}

/// Number of elements of a shape, or an error if it overflows `usize`.
pub fn checked_numel(shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::invalid(format!("shape {shape:?} has too many elements")))
}

/// Fallible host allocation (see [`crate::backend::cpu::pool::try_alloc`]), re-exported
/// where callers that build tensors look for it.
pub use crate::backend::cpu::pool::try_alloc;

impl Tensor {
    /// Zeros on the CPU, or [`Error::ResourceLimit`] when the shape overflows or the
    /// memory cannot be allocated.
    pub fn try_zeros(shape: &[usize]) -> Result<Self> {
        let n = checked_numel(shape).map_err(|_| {
            Error::ResourceLimit(format!("shape {shape:?} does not fit in the address space"))
        })?;
        let mut v = try_alloc(n, "a tensor")?;
        v.resize(n, 0.0);
        Ok(Self::cpu(v, shape.to_vec()))
    }

    /// Wraps host data; fails if `data.len()` does not match `shape`.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Self> {
        let n = checked_numel(shape)?;
        if n != data.len() {
            return Err(Error::shape(
                "from_vec",
                format!("{} values for shape {shape:?} ({n} expected)", data.len()),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            storage: Arc::new(Storage::Cpu(data)),
        })
    }

    /// Copies a host slice.
    pub fn from_slice(data: &[f32], shape: &[usize]) -> Result<Self> {
        Self::from_vec(data.to_vec(), shape)
    }

    pub(crate) fn from_storage(storage: Storage, shape: Vec<usize>) -> Self {
        debug_assert_eq!(storage.len(), shape.iter().product::<usize>());
        Tensor {
            shape,
            storage: Arc::new(storage),
        }
    }

    /// Wraps a CUDA kernel's output as a tensor of `shape` (the caller guarantees the
    /// length). Lives here rather than on the storage type so the backend never needs to
    /// know what a tensor is.
    pub(crate) fn from_cuda(storage: CudaStorage, shape: Vec<usize>) -> Self {
        Self::from_storage(Storage::Cuda(storage), shape)
    }

    /// A CPU tensor (the common internal constructor; shape must match).
    pub(crate) fn cpu(data: Vec<f32>, shape: Vec<usize>) -> Self {
        Self::from_storage(Storage::Cpu(data), shape)
    }

    /// All zeros on the CPU.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, 0.0)
    }

    /// Every element `value`, on the CPU.
    pub fn full(shape: &[usize], value: f32) -> Self {
        let n: usize = shape.iter().product();
        Self::cpu(vec![value; n], shape.to_vec())
    }

    /// A single number.
    pub fn scalar(value: f32) -> Self {
        Self::cpu(vec![value], vec![])
    }

    /// Zeros with the same shape and device as `self`.
    pub fn zeros_like(&self) -> Result<Self> {
        match self.device() {
            Device::Cpu => Ok(Self::zeros(&self.shape)),
            d => Self::zeros(&self.shape).to_device(d),
        }
    }

    /// Ones with the same shape and device as `self` (the seed of a backward pass).
    pub fn ones_like(&self) -> Result<Self> {
        Self::full(&self.shape, 1.0).to_device(self.device())
    }

    /// `self += g` in place (same shape, same device): how gradients that reach one value
    /// along several paths are summed. A tensor method rather than an op so the autograd
    /// tape, which the ops build on, does not have to call back up into them.
    pub fn add_assign(&mut self, g: &Tensor) -> Result<()> {
        if self.shape != g.shape {
            return Err(Error::shape(
                "accumulate",
                format!("{:?} vs {:?}", self.shape, g.shape),
            ));
        }
        if self.device() != g.device() {
            return Err(Error::invalid(format!(
                "accumulate: inputs on different devices ({} and {})",
                self.device(),
                g.device()
            )));
        }
        if let Storage::Cuda(src) = g.storage() {
            if let Storage::Cuda(dst) = self.storage_mut() {
                return dst.add_assign(src);
            }
        }
        let src = g.cpu_data("accumulate")?;
        simd::add_assign(self.data_mut()?, src);
        Ok(())
    }

    /// Normal(0, std²) values from `rng`.
    pub fn randn(shape: &[usize], std: f32, rng: &mut Rng) -> Self {
        let n: usize = shape.iter().product();
        Self::cpu((0..n).map(|_| std * rng.normal()).collect(), shape.to_vec())
    }

    /// Uniform values in [lo, hi) from `rng`.
    pub fn rand_uniform(shape: &[usize], lo: f32, hi: f32, rng: &mut Rng) -> Self {
        let n: usize = shape.iter().product();
        Self::cpu(
            (0..n).map(|_| rng.uniform_range(lo, hi)).collect(),
            shape.to_vec(),
        )
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Size of dimension `d`; panics if out of range (an internal error).
    pub fn dim(&self, d: usize) -> usize {
        self.shape[d]
    }

    pub fn numel(&self) -> usize {
        self.storage.len()
    }

    pub fn device(&self) -> Device {
        self.storage.device()
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The host data, or an `Unsupported` error naming `op` if the tensor is on a GPU.
    pub fn cpu_data(&self, op: &'static str) -> Result<&[f32]> {
        match &*self.storage {
            Storage::Cpu(v) => Ok(v),
            Storage::Cuda(_) => Err(Error::Unsupported {
                op,
                device: self.device().to_string(),
            }),
        }
    }

    /// Host data of a CPU tensor (internal: callers know the device).
    pub fn as_slice(&self) -> Result<&[f32]> {
        self.cpu_data("as_slice")
    }

    /// Mutable host data; copies the buffer first if another tensor shares it.
    pub fn data_mut(&mut self) -> Result<&mut [f32]> {
        let dev = self.device();
        match Arc::make_mut(&mut self.storage) {
            Storage::Cpu(v) => Ok(v),
            Storage::Cuda(_) => Err(Error::Unsupported {
                op: "data_mut",
                device: dev.to_string(),
            }),
        }
    }

    /// Mutable storage, copied first if shared (for device kernels writing in place).
    pub fn storage_mut(&mut self) -> &mut Storage {
        Arc::make_mut(&mut self.storage)
    }

    /// Copies the values to a host vector, from any device.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        self.storage.to_vec()
    }

    /// The only value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                format!("tensor of shape {:?} is not a scalar", self.shape),
            ));
        }
        Ok(self.to_vec()?[0])
    }

    /// The same tensor on `device` (shares the buffer if already there).
    pub fn to_device(&self, device: Device) -> Result<Self> {
        if self.device() == device {
            return Ok(self.clone());
        }
        Ok(Tensor {
            shape: self.shape.clone(),
            storage: Arc::new(self.storage.to_device(device)?),
        })
    }

    /// Same data, new shape (no copy). One dimension may be `usize::MAX` to infer it.
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        let shape = infer_shape(shape, self.numel())?;
        Ok(Tensor {
            shape,
            storage: self.storage.clone(),
        })
    }

    /// Drops the tensor, handing a large host buffer that nothing else shares back to the
    /// pool of the run open on this thread for reuse.
    pub fn recycle(self) {
        if let Some(v) = self.into_host_vec() {
            crate::backend::cpu::pool::recycle(v);
        }
    }

    /// The host buffer, if it is on the CPU and no other tensor shares it.
    pub(crate) fn into_host_vec(self) -> Option<Vec<f32>> {
        match Arc::try_unwrap(self.storage) {
            Ok(Storage::Cpu(v)) => Some(v),
            _ => None,
        }
    }

    /// Whether every element is finite (no NaN, no infinity).
    pub fn all_finite(&self) -> Result<bool> {
        Ok(match &*self.storage {
            Storage::Cpu(v) => all_finite(v),
            Storage::Cuda(_) => self.to_vec()?.iter().all(|x| x.is_finite()),
        })
    }
}

/// Whether no value is NaN or infinite. ∇τ checks every weight after every step, so this
/// reads a block at a time with integer ORs the compiler vectorises, instead of stopping at
/// the first bad value (a check that passes reads everything anyway). Large tensors (a
/// run's input sets: 9.4 M values on the benchmark MLP, about 1 % of its whole run) are
/// read on the kernel threads in parts of [`FINITE_PART`].
fn all_finite(v: &[f32]) -> bool {
    if v.len() < 2 * FINITE_PART {
        return all_finite_serial(v);
    }
    crate::backend::cpu::par_map(v.chunks(FINITE_PART).collect(), |_, part| {
        all_finite_serial(part)
    })
    .into_iter()
    .all(|ok| ok)
}

/// Values per part of a parallel [`all_finite`].
const FINITE_PART: usize = 1 << 18;

fn all_finite_serial(v: &[f32]) -> bool {
    const EXPONENT: u32 = 0x7f80_0000;
    v.chunks(4096).all(|block| {
        let bad = block.iter().fold(0u32, |acc, x| {
            acc | u32::from(x.to_bits() & EXPONENT == EXPONENT)
        });
        bad == 0
    })
}

/// Resolves one `usize::MAX` placeholder and checks the element count.
pub fn infer_shape(shape: &[usize], numel: usize) -> Result<Vec<usize>> {
    let holes = shape.iter().filter(|&&d| d == usize::MAX).count();
    let known: usize = shape
        .iter()
        .filter(|&&d| d != usize::MAX)
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::shape("reshape", format!("{shape:?} overflows")))?;
    let mut out = shape.to_vec();
    match holes {
        0 if known == numel => Ok(out),
        1 if known > 0 && numel.is_multiple_of(known) => {
            for d in out.iter_mut() {
                if *d == usize::MAX {
                    *d = numel / known;
                }
            }
            Ok(out)
        }
        _ => Err(Error::shape(
            "reshape",
            format!("cannot view {numel} elements as {shape:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_finite_finds_one_bad_value_anywhere() {
        let parallel = 2 * FINITE_PART + 4097;
        for len in [0usize, 1, 17, 4095, 4096, 4097, 10_000, parallel] {
            let mut v: Vec<f32> = (0..len).map(|i| i as f32 * 1e30).collect();
            v.iter_mut().skip(1).step_by(7).for_each(|x| *x = -*x);
            assert!(all_finite(&v), "len {len}");
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for at in [0, FINITE_PART + 1, len / 2, len.saturating_sub(1)] {
                    if at < len {
                        let mut w = v.clone();
                        w[at] = bad;
                        assert!(!all_finite(&w), "{bad} at {at} of {len}");
                    }
                }
            }
        }
        assert!(all_finite(&[
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            1e-45,
            -0.0
        ]));
    }

    #[test]
    fn construction_and_views() {
        let t = Tensor::from_vec((0..6).map(|x| x as f32).collect(), &[2, 3]).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert!(Tensor::from_vec(vec![1.0; 5], &[2, 3]).is_err());
        let r = t.reshape(&[3, usize::MAX]).unwrap();
        assert_eq!(r.shape(), &[3, 2]);
        assert!(t.reshape(&[4, usize::MAX]).is_err());
        assert!(checked_numel(&[usize::MAX, 2]).is_err());
        // copy-on-write: mutating a clone leaves the original alone
        let mut c = t.clone();
        c.data_mut().unwrap()[0] = 42.0;
        assert_eq!(t.as_slice().unwrap()[0], 0.0);
        assert_eq!(c.as_slice().unwrap()[0], 42.0);
        assert!(Tensor::scalar(2.5).item().unwrap() == 2.5);
        assert!(t.item().is_err());
    }
}
