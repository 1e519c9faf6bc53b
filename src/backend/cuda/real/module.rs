//! Kernel compilation and loading: NVRTC compiles a kernel file (with `common.cuh` in front)
//! for the device's own architecture the first time one of its kernels is launched; the
//! module and each of its entry points are then cached per device, keyed by the names in
//! [`kernels`](crate::backend::cuda::kernels).

use super::context::{drv, lock, Dev};
use crate::backend::cuda::kernels::{Kernel, KernelFile, COMMON, FILES};
use crate::error::{Error, Result};
use cudarc::driver::{CudaFunction, CudaModule};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions, Ptx};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One device's loaded modules (by file name) and entry points (by kernel name).
#[derive(Default)]
pub(super) struct Modules {
    files: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    funcs: Mutex<HashMap<&'static str, CudaFunction>>,
}

/// The full source NVRTC compiles for `file`.
pub(super) fn full_source(file: &KernelFile) -> String {
    format!("{COMMON}\n{}", file.source)
}

/// Compiles one kernel file for a device of compute capability `(major, minor)`.
///
/// Machine code (CUBIN, `sm_XY`) first: a CUBIN from any CUDA 13 NVRTC loads on any CUDA 13
/// driver, while PTX is JIT-compiled by the driver and is refused when the NVRTC that wrote
/// it is newer than the driver (a pip-installed NVRTC 13.2 next to a 13.0 driver gives
/// `CUDA_ERROR_UNSUPPORTED_PTX_VERSION`). PTX (`compute_XY`) only when NVRTC cannot emit
/// machine code for this architecture (a GPU newer than the NVRTC).
pub(super) fn compile_kernels(
    file: &str,
    source: &str,
    (major, minor): (i32, i32),
) -> std::result::Result<Ptx, String> {
    match compile_cubin(file, source, &format!("sm_{major}{minor}")) {
        Ok(cubin) => Ok(Ptx::from_binary(cubin)),
        Err(cubin_error) => {
            let opts = CompileOptions {
                options: vec![format!("--gpu-architecture=compute_{major}{minor}")],
                name: Some(format!("{file}.cu")),
                ..Default::default()
            };
            compile_ptx_with_opts(source, opts).map_err(|e| {
                let detail = match &e {
                    CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
                    other => format!("{other:?}"),
                };
                format!("{detail} (machine code for sm_{major}{minor} failed first: {cubin_error})")
            })
        }
    }
}

/// NVRTC to CUBIN for `arch` (`sm_XY`); the error carries NVRTC's log.
pub(super) fn compile_cubin(
    file: &str,
    source: &str,
    arch: &str,
) -> std::result::Result<Vec<u8>, String> {
    use cudarc::nvrtc::{result as nvrtc, sys};
    use std::ffi::{CStr, CString};
    let src = CString::new(source).map_err(|e| e.to_string())?;
    let name = CString::new(format!("{file}.cu")).map_err(|e| e.to_string())?;
    let prog = nvrtc::create_program(&src, Some(&name)).map_err(|e| format!("{e:?}"))?;
    // SAFETY: `prog` comes from create_program, `src` and `name` outlive it, and it is
    // destroyed exactly once, below, after its last use.
    let out = unsafe {
        let compiled = nvrtc::compile_program(prog, &[format!("--gpu-architecture={arch}")]);
        match compiled {
            Err(e) => {
                let log = nvrtc::get_program_log(prog)
                    .map(|l| CStr::from_ptr(l.as_ptr()).to_string_lossy().into_owned())
                    .unwrap_or_default();
                Err(format!("{e:?}: {log}"))
            }
            Ok(()) => {
                let mut size = 0usize;
                let size_status = sys::nvrtcGetCUBINSize(prog, &mut size);
                if size_status != sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
                    Err(format!("no machine code from NVRTC ({size_status:?})"))
                } else {
                    let mut cubin = vec![0u8; size];
                    match sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast()) {
                        sys::nvrtcResult::NVRTC_SUCCESS => Ok(cubin),
                        other => Err(format!("reading machine code: {other:?}")),
                    }
                }
            }
        }
    };
    // SAFETY: see above; nothing uses `prog` after this.
    let _ = unsafe { nvrtc::destroy_program(prog) };
    out
}

impl Dev {
    /// Compiles and loads `file`, then loads every entry point its table lists, so a table
    /// that disagrees with the compiled module fails here, naming the kernel.
    fn load_file(&self, file: &'static KernelFile) -> Result<()> {
        let mut files = lock(&self.modules.files);
        if files.contains_key(file.name) {
            return Ok(());
        }
        let image =
            compile_kernels(file.name, &full_source(file), self.capability).map_err(|detail| {
                Error::Cuda(format!(
                    "NVRTC could not compile kernels/{}.cu for cuda:{}: {detail}",
                    file.name, self.ordinal
                ))
            })?;
        self.bind()?;
        let module = self
            .ctx
            .load_module(image)
            .map_err(drv("loading a compiled kernel module"))?;
        let entries = FILES
            .iter()
            .find(|(f, _)| f.name == file.name)
            .map_or(&[][..], |(_, kernels)| kernels);
        let mut funcs = lock(&self.modules.funcs);
        for k in entries {
            let f = module.load_function(k.name).map_err(|e| {
                Error::Cuda(format!(
                    "kernel `{}` is listed for kernels/{}.cu but its compiled module has no \
                     such entry point: {e}",
                    k.name, file.name
                ))
            })?;
            funcs.insert(k.name, f);
        }
        files.insert(file.name, module);
        Ok(())
    }

    /// The entry point `k`, compiling and loading its file on first use.
    pub(super) fn function(&self, k: Kernel) -> Result<CudaFunction> {
        if let Some(f) = lock(&self.modules.funcs).get(k.name) {
            return Ok(f.clone());
        }
        self.load_file(k.file)?;
        lock(&self.modules.funcs)
            .get(k.name)
            .cloned()
            .ok_or_else(|| {
                Error::Cuda(format!(
                    "kernel `{}` is not in the table of kernels/{}.cu",
                    k.name, k.file.name
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel file compiles to machine code for the Hopper H200 (sm_90) and for an
    /// Ampere A100 (sm_80). Needs only NVRTC, no GPU: where NVRTC is on the loader path (the
    /// GPU machine; here, the nvidia-cuda-nvrtc wheel of a PyTorch install) this checks the
    /// kernels before any GPU time is spent.
    #[test]
    fn every_kernel_file_compiles_to_machine_code() {
        // SAFETY: only probes whether the library can be loaded.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            if std::env::var_os("GRADTAU_REQUIRE_CUDA").is_some() {
                panic!("GRADTAU_REQUIRE_CUDA is set but NVRTC (libnvrtc.so.13) is not found");
            }
            eprintln!("SKIPPED: NVRTC (libnvrtc.so.13) is not on the loader path");
            return;
        }
        for (file, kernels) in FILES {
            let source = full_source(file);
            for arch in ["sm_90", "sm_80"] {
                let cubin = compile_cubin(file.name, &source, arch)
                    .unwrap_or_else(|e| panic!("kernels/{}.cu for {arch}: {e}", file.name));
                assert_eq!(
                    &cubin[..4],
                    b"\x7fELF",
                    "kernels/{}.cu for {arch}",
                    file.name
                );
                // Every listed entry point is in the machine code under its unmangled name
                // (the driver loads functions by these names).
                for k in kernels.iter() {
                    let symbol = format!("{}\0", k.name);
                    assert!(
                        cubin.windows(symbol.len()).any(|w| w == symbol.as_bytes()),
                        "kernels/{}.cu for {arch}: no symbol `{}`",
                        file.name,
                        k.name
                    );
                }
            }
            assert!(compile_kernels(file.name, &source, (9, 0)).is_ok());
        }
        // A compile error comes back with NVRTC's log, naming the problem.
        let e = compile_cubin(
            "broken",
            "extern \"C\" __global__ void k() { undefined_name; }",
            "sm_90",
        )
        .unwrap_err();
        assert!(e.contains("undefined_name"), "{e}");
    }
}
