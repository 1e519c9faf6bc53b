//! Devices: one context, one stream and one cuBLAS handle per device ordinal, opened at first
//! use and cached for the life of the process, with the compiled kernels of each device.
//!
//! The driver keeps a *current context* per host thread, and a call made on a thread where
//! another context (or none) is current works on the wrong device or fails. The op functions
//! run on whatever thread the caller (or the CPU worker pool) uses, so every path that talks
//! to the device binds the context itself through [`Dev::bind`] first: kernel launches, cuBLAS
//! calls, allocations and copies. None relies on an earlier call having bound it on that thread.

use super::module::Modules;
use crate::error::{Error, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaStream, DriverError};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the maps half-updated (each
    // update is a single insert), so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Maps a driver error to [`Error::Cuda`] saying what was being done.
pub(super) fn drv(what: &'static str) -> impl Fn(DriverError) -> Error {
    move |e| Error::Cuda(format!("{what}: {e}"))
}

/// One device's context, stream, cuBLAS handle and compiled kernels.
pub(super) struct Dev {
    pub ordinal: usize,
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub blas: CudaBlas,
    /// Compute capability (major, minor): the kernels are compiled for exactly this.
    pub capability: (i32, i32),
    pub modules: Modules,
}

impl Dev {
    /// Makes this device's context current on the calling thread (a no-op when it already is).
    pub fn bind(&self) -> Result<()> {
        self.ctx.bind_to_thread().map_err(|e| {
            Error::Cuda(format!(
                "cuda:{}: binding the context to this thread: {e}",
                self.ordinal
            ))
        })
    }
}

type DeviceSlot = std::result::Result<Arc<Dev>, String>;
static DEVICES: LazyLock<Mutex<HashMap<usize, DeviceSlot>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The cached device `ordinal`, opened on first use. A failure is cached too: what made it
/// fail (no driver, no such device) does not change while the process runs.
pub(super) fn device(ordinal: usize) -> Result<Arc<Dev>> {
    let mut map = lock(&DEVICES);
    map.entry(ordinal)
        .or_insert_with(|| open(ordinal))
        .clone()
        .map_err(Error::DeviceUnavailable)
}

fn open(ordinal: usize) -> DeviceSlot {
    // cudarc's dynamic loader panics when a symbol is missing (e.g. a driver older than the
    // API level we bind); turn that into an error instead of unwinding into the caller.
    std::panic::catch_unwind(|| open_unguarded(ordinal)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!(
            "cuda:{ordinal}: loading the CUDA libraries failed: {msg}"
        ))
    })
}

fn open_unguarded(ordinal: usize) -> DeviceSlot {
    let at = |what: &str, e: DriverError| format!("cuda:{ordinal}: {what} failed: {e}");
    // SAFETY: only tries to dlopen the driver library to see whether it exists.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(
            "CUDA driver library (libcuda.so) not found: no NVIDIA driver is installed, or it \
             is not on the loader path (LD_LIBRARY_PATH)"
                .into(),
        );
    }
    cudarc::driver::result::init().map_err(|e| {
        format!("cuInit failed ({e}): the driver sees no usable GPU, or is older than CUDA 13")
    })?;
    let count = CudaContext::device_count().map_err(|e| at("counting devices", e))?;
    if ordinal >= count.max(0) as usize {
        return Err(format!(
            "no such device: cuda:{ordinal} requested, {count} CUDA device(s) present"
        ));
    }
    // SAFETY: as above, a presence test.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(
            "NVRTC library (libnvrtc.so.13) not found: install the CUDA 13 toolkit (or the \
             nvidia-cuda-nvrtc wheel) and add its lib directory to LD_LIBRARY_PATH"
                .into(),
        );
    }
    // SAFETY: as above, a presence test.
    if !unsafe { cudarc::cublas::sys::is_culib_present() } {
        return Err(
            "cuBLAS library (libcublas.so.13) not found: install the CUDA 13 toolkit (or the \
             nvidia-cublas wheel) and add its lib directory to LD_LIBRARY_PATH"
                .into(),
        );
    }
    let ctx = CudaContext::new(ordinal).map_err(|e| at("creating the context", e))?;
    // SAFETY: gradtau uses exactly one stream per context, so stream order already keeps
    // every use of a buffer before its free; per-buffer events would only add overhead.
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx.new_stream().map_err(|e| at("creating the stream", e))?;
    let blas = CudaBlas::new(stream.clone())
        .map_err(|e| format!("cuda:{ordinal}: creating the cuBLAS handle failed: {e:?}"))?;
    let (major, minor) = ctx
        .compute_capability()
        .map_err(|e| at("reading the compute capability", e))?;
    Ok(Arc::new(Dev {
        ordinal,
        ctx,
        stream,
        blas,
        capability: (major, minor),
        modules: Modules::default(),
    }))
}

/// Whether CUDA device `ordinal` can be used right now (driver, device, NVRTC and cuBLAS).
pub fn is_available(ordinal: usize) -> bool {
    device(ordinal).is_ok()
}

/// `Ok` when CUDA device `ordinal` is usable, else an error saying what is missing.
pub fn ensure_usable(ordinal: usize) -> Result<()> {
    device(ordinal).map(|_| ())
}

/// Waits for every queued kernel on device `ordinal` (for timing).
pub fn synchronize(ordinal: usize) -> Result<()> {
    let dev = device(ordinal)?;
    dev.bind()?;
    dev.stream
        .synchronize()
        .map_err(drv("synchronising the stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The driver, NVRTC and cuBLAS versions in use and the files they were loaded from, for
    /// the GPU check's log (a wrong library on the loader path is the usual first-run fault).
    fn loaded_versions(dev: &Dev) -> String {
        let (mut driver, mut nv_major, mut nv_minor, mut blas) = (0, 0, 0, 0);
        // SAFETY: each call writes plain integers through pointers to locals; the cuBLAS
        // handle is the device's own, alive for the call.
        unsafe {
            cudarc::driver::sys::cuDriverGetVersion(&mut driver);
            cudarc::nvrtc::sys::nvrtcVersion(&mut nv_major, &mut nv_minor);
            cudarc::cublas::sys::cublasGetVersion_v2(*dev.blas.handle(), &mut blas);
        }
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let mut files: Vec<&str> = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .filter(|p| {
                ["libcuda.so", "libnvrtc", "libcublas"]
                    .iter()
                    .any(|n| p.contains(n))
            })
            .collect();
        files.dedup();
        format!(
            "cuda:{} sm_{}{}: driver API {driver}, NVRTC {nv_major}.{nv_minor}, cuBLAS {blas}; loaded: {}",
            dev.ordinal,
            dev.capability.0,
            dev.capability.1,
            files.join(" ")
        )
    }

    /// Prints which CUDA libraries this process loaded (scripts/gpu-check.sh runs it first).
    #[test]
    fn report_loaded_cuda_versions() {
        match device(0) {
            Ok(dev) => {
                // Compile and load one kernel file so NVRTC is loaded too.
                dev.bind().unwrap();
                dev.function(crate::backend::cuda::kernels::elementwise::SCALE)
                    .unwrap();
                eprintln!("CUDA versions: {}", loaded_versions(&dev));
            }
            Err(e) => {
                if std::env::var_os("GRADTAU_REQUIRE_CUDA").is_some() {
                    panic!("GRADTAU_REQUIRE_CUDA is set but CUDA is unusable: {e}");
                }
                eprintln!("SKIPPED: no usable CUDA device ({e})");
            }
        }
    }
}
