//! Device buffers and host transfers.
//!
//! A [`CudaStorage`] has a *logical* length and a device buffer of at least one element: an
//! empty tensor never asks the driver for 0 bytes (what `cuMemAlloc(0)` returns is not
//! documented), it holds a 1-element buffer no kernel reads. Every length check, launch
//! size and host copy uses the logical length.

use super::context::{device, drv, Dev};
use crate::backend::{Device, Storage};
use crate::error::{Error, Result};
use cudarc::driver::CudaSlice;
use std::fmt;
use std::sync::Arc;

/// Device memory holding f32 values, on one device.
pub struct CudaStorage {
    /// At least `max(len, 1)` values.
    pub(super) buf: CudaSlice<f32>,
    /// The logical number of values.
    pub(super) len: usize,
    pub(super) dev: Arc<Dev>,
}

impl Dev {
    /// An uninitialised buffer for `len` values (one value when `len` is 0).
    pub(super) fn alloc(&self, len: usize) -> Result<CudaSlice<f32>> {
        self.bind()?;
        // SAFETY: every caller fully overwrites the first `len` values (a kernel writes each
        // element) before anything reads them; the spare value of an empty buffer is never
        // read.
        unsafe { self.stream.alloc::<f32>(len.max(1)) }.map_err(drv("allocating device memory"))
    }

    /// A zeroed buffer for `len` values (one value when `len` is 0).
    pub(super) fn zeros(&self, len: usize) -> Result<CudaSlice<f32>> {
        self.bind()?;
        self.stream
            .alloc_zeros::<f32>(len.max(1))
            .map_err(drv("allocating device memory"))
    }

    /// Host indices copied to the device (a 1-element zero buffer when `v` is empty).
    pub(super) fn upload_u32(&self, v: &[u32]) -> Result<CudaSlice<u32>> {
        self.bind()?;
        let src: &[u32] = if v.is_empty() { &[0] } else { v };
        self.stream
            .clone_htod(src)
            .map_err(drv("copying indices to the device"))
    }
}

impl Clone for CudaStorage {
    /// A device-to-device copy. `Clone` cannot fail, so an out-of-memory here panics, as
    /// cloning a `Vec` aborts when the host is out of memory.
    fn clone(&self) -> Self {
        let buf = self
            .dev
            .bind()
            .and_then(|()| {
                self.dev
                    .stream
                    .clone_dtod(&self.buf)
                    .map_err(drv("copying a buffer"))
            })
            .unwrap_or_else(|e| panic!("cuda:{}: {e}", self.dev.ordinal));
        CudaStorage {
            buf,
            len: self.len,
            dev: self.dev.clone(),
        }
    }
}

impl fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CudaStorage(cuda:{}, {} values)",
            self.dev.ordinal, self.len
        )
    }
}

/// An error unless `s` holds exactly `want` values.
pub(super) fn check_len(op: &'static str, what: &str, s: &CudaStorage, want: usize) -> Result<()> {
    if s.len() != want {
        return Err(Error::shape(
            op,
            format!("{what} holds {} values, {want} expected", s.len()),
        ));
    }
    Ok(())
}

/// An error unless `a` and `b` live on the same device.
pub(super) fn same_dev(op: &'static str, a: &CudaStorage, b: &CudaStorage) -> Result<()> {
    if a.dev.ordinal != b.dev.ordinal {
        return Err(Error::invalid(format!(
            "{op}: inputs on different devices (cuda:{} and cuda:{})",
            a.dev.ordinal, b.dev.ordinal
        )));
    }
    Ok(())
}

/// [`same_dev`] for every operand against the first.
pub(super) fn all_same_dev(
    op: &'static str,
    first: &CudaStorage,
    rest: &[&CudaStorage],
) -> Result<()> {
    rest.iter().try_for_each(|s| same_dev(op, first, s))
}

/// A size as the kernels' `u64` parameters take it.
pub(super) fn u(n: usize) -> u64 {
    n as u64
}

impl CudaStorage {
    pub fn device(&self) -> Device {
        Device::Cuda(self.dev.ordinal)
    }

    pub fn ordinal(&self) -> usize {
        self.dev.ordinal
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies to host memory (waits for the device's queued work).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        self.dev.bind()?;
        self.dev
            .stream
            .clone_dtoh(&self.buf.slice(..self.len))
            .map_err(drv("copying to the host"))
    }

    /// Copies to `target` (host memory or another device).
    pub fn copy_to(&self, target: Device) -> Result<Storage> {
        match target {
            Device::Cpu => Ok(Storage::Cpu(self.to_vec()?)),
            Device::Cuda(i) if i == self.dev.ordinal => Ok(Storage::Cuda(self.clone())),
            // Through the host: peer copies would need peer access set up, and moving a model
            // between GPUs is rare.
            Device::Cuda(i) => Ok(Storage::Cuda(CudaStorage::from_host(&self.to_vec()?, i)?)),
        }
    }

    /// Copies host data to device `ordinal`.
    pub fn from_host(data: &[f32], ordinal: usize) -> Result<Self> {
        let dev = device(ordinal)?;
        let buf = if data.is_empty() {
            dev.zeros(0)?
        } else {
            dev.bind()?;
            dev.stream
                .clone_htod(data)
                .map_err(drv("copying to the device"))?
        };
        Ok(CudaStorage {
            buf,
            len: data.len(),
            dev,
        })
    }

    /// `len` zeros on device `ordinal`.
    pub fn zeros(len: usize, ordinal: usize) -> Result<Self> {
        let dev = device(ordinal)?;
        let buf = dev.zeros(len)?;
        Ok(CudaStorage { buf, len, dev })
    }

    /// `len` zeros on this storage's device.
    pub(super) fn zeros_like_len(&self, len: usize) -> Result<Self> {
        Ok(CudaStorage {
            buf: self.dev.zeros(len)?,
            len,
            dev: self.dev.clone(),
        })
    }

    /// `len` uninitialised values on this storage's device, for a kernel to fill.
    pub(super) fn empty(&self, len: usize) -> Result<Self> {
        Ok(CudaStorage {
            buf: self.dev.alloc(len)?,
            len,
            dev: self.dev.clone(),
        })
    }

    /// Values `start..start + len` in a new buffer: a device-to-device copy, with no kernel.
    pub fn range(&self, start: usize, len: usize) -> Result<Self> {
        check_range("range", self.len, start, len)?;
        if len == 0 {
            return self.zeros_like_len(0);
        }
        self.dev.bind()?;
        let buf = self
            .dev
            .stream
            .clone_dtod(&self.buf.slice(start..start + len))
            .map_err(drv("copying a range of a buffer"))?;
        Ok(CudaStorage {
            buf,
            len,
            dev: self.dev.clone(),
        })
    }

    /// `self` copied into `total` zeros at `start` (the backward of [`range`](Self::range)).
    pub fn placed(&self, total: usize, start: usize) -> Result<Self> {
        check_range("placed", total, start, self.len)?;
        let mut out = self.zeros_like_len(total)?;
        if self.len > 0 {
            self.dev.bind()?;
            let mut dst = out.buf.slice_mut(start..start + self.len);
            self.dev
                .stream
                .memcpy_dtod(&self.buf.slice(..self.len), &mut dst)
                .map_err(drv("copying into a range of a buffer"))?;
        }
        Ok(out)
    }
}

/// An error unless `start..start + len` lies within `total` values.
fn check_range(op: &'static str, total: usize, start: usize, len: usize) -> Result<()> {
    match start.checked_add(len) {
        Some(end) if end <= total => Ok(()),
        _ => Err(Error::shape(
            op,
            format!("values {start}..{start}+{len} of a buffer of {total}"),
        )),
    }
}
