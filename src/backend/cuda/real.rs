//! The CUDA backend proper (feature `cuda`): cudarc with the CUDA libraries loaded at run time.
//!
//! One context and one stream per device ordinal, created at first use and cached for the
//! life of the process. Every kernel runs on that stream, so work on one device is ordered
//! without events; host copies (`to_vec`) synchronise. Kernel sources are compiled by NVRTC
//! for the device's own architecture the first time one of their kernels is launched.

use super::{
    AdamParams, BatchNormParams, BinaryOp, Conv2dGeometry, Pool2dGeometry, RegressionLoss,
    SgdParams, MAX_RANK,
};
use crate::backend::{Device, Storage};
use crate::error::{Error, Result};
use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, CudaView, CudaViewMut,
    DeviceRepr, DriverError, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions, Ptx};
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

const COMMON: &str = include_str!("kernels/common.cuh");

/// Every kernel file, by name. A kernel is found by its name in these sources.
const FILES: &[(&str, &str)] = &[
    ("elementwise", include_str!("kernels/elementwise.cu")),
    ("activation", include_str!("kernels/activation.cu")),
    ("reduce", include_str!("kernels/reduce.cu")),
    ("loss", include_str!("kernels/loss.cu")),
    ("conv", include_str!("kernels/conv.cu")),
    ("pool", include_str!("kernels/pool.cu")),
    ("norm", include_str!("kernels/norm.cu")),
    ("embedding", include_str!("kernels/embedding.cu")),
    ("dropout", include_str!("kernels/dropout.cu")),
    ("optim", include_str!("kernels/optim.cu")),
];

const BLOCK: u32 = 256;
/// Grid cap; every kernel loops (grid-stride) over what a capped grid does not cover.
const MAX_BLOCKS: usize = 65_535;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the maps half-updated (each
    // update is a single insert), so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn drv(what: &'static str) -> impl Fn(DriverError) -> Error {
    move |e| Error::Cuda(format!("{what}: {e}"))
}

/// One device's context, stream, cuBLAS handle and compiled kernels.
struct Dev {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    /// Compute capability (major, minor): the kernels are compiled for exactly this.
    capability: (i32, i32),
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    funcs: Mutex<HashMap<&'static str, CudaFunction>>,
}

type DeviceSlot = std::result::Result<Arc<Dev>, String>;
static DEVICES: Lazy<Mutex<HashMap<usize, DeviceSlot>>> = Lazy::new(|| Mutex::new(HashMap::new()));

/// The cached device `ordinal`, opened on first use. A failure is cached too: what made it
/// fail (no driver, no such device) does not change while the process runs.
fn device(ordinal: usize) -> Result<Arc<Dev>> {
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
        modules: Mutex::new(HashMap::new()),
        funcs: Mutex::new(HashMap::new()),
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

/// Compiles one kernel file for a device of compute capability `(major, minor)`.
///
/// Machine code (CUBIN, `sm_XY`) first: a CUBIN from any CUDA 13 NVRTC loads on any CUDA 13
/// driver, while PTX is JIT-compiled by the driver and is refused when the NVRTC that wrote
/// it is newer than the driver (a pip-installed NVRTC 13.2 next to a 13.0 driver gives
/// `CUDA_ERROR_UNSUPPORTED_PTX_VERSION`). PTX (`compute_XY`) only when NVRTC cannot emit
/// machine code for this architecture (a GPU newer than the NVRTC).
pub(crate) fn compile_kernels(
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
fn compile_cubin(file: &str, source: &str, arch: &str) -> std::result::Result<Vec<u8>, String> {
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
    fn module(&self, file: &'static str, body: &str) -> Result<Arc<CudaModule>> {
        let mut modules = lock(&self.modules);
        if let Some(m) = modules.get(file) {
            return Ok(m.clone());
        }
        let image = compile_kernels(file, &format!("{COMMON}\n{body}"), self.capability).map_err(
            |detail| {
                Error::Cuda(format!(
                    "NVRTC could not compile kernels/{file}.cu for cuda:{}: {detail}",
                    self.ordinal
                ))
            },
        )?;
        let m = self
            .ctx
            .load_module(image)
            .map_err(drv("loading a compiled kernel module"))?;
        modules.insert(file, m.clone());
        Ok(m)
    }

    /// The kernel `name`, compiling its file on first use.
    fn function(&self, name: &'static str) -> Result<CudaFunction> {
        if let Some(f) = lock(&self.funcs).get(name) {
            return Ok(f.clone());
        }
        let signature = format!("void {name}(");
        let &(file, body) = FILES
            .iter()
            .find(|(_, src)| src.contains(&signature))
            .ok_or_else(|| Error::Cuda(format!("no CUDA kernel named `{name}`")))?;
        let f = self
            .module(file, body)?
            .load_function(name)
            .map_err(|e| Error::Cuda(format!("kernel `{name}`: {e}")))?;
        lock(&self.funcs).insert(name, f.clone());
        Ok(f)
    }

    fn alloc(&self, len: usize) -> Result<CudaSlice<f32>> {
        // SAFETY: every caller fully overwrites the buffer (a kernel writes each element)
        // before anything reads it.
        unsafe { self.stream.alloc::<f32>(len) }.map_err(drv("allocating device memory"))
    }

    fn zeros(&self, len: usize) -> Result<CudaSlice<f32>> {
        self.stream
            .alloc_zeros::<f32>(len)
            .map_err(drv("allocating device memory"))
    }

    fn upload_u32(&self, v: &[u32]) -> Result<CudaSlice<u32>> {
        self.stream
            .clone_htod(v)
            .map_err(drv("copying indices to the device"))
    }
}

/// Launches kernel `$name` on `$dev`'s stream. Arguments are pushed by reference; they all
/// live until the end of the statement, which encloses the launch.
macro_rules! launch {
    ($dev:expr, $name:expr, $cfg:expr; $($arg:expr),* $(,)?) => {{
        let f = $dev.function($name)?;
        // SAFETY: each kernel's parameter list in kernels/*.cu matches the argument list
        // given here in order and type (device buffers for pointers, u64 for `u64`, f32 for
        // `float`, i32 for `int`, #[repr(C)] mirrors for the structs), and the callers check
        // every buffer length against the sizes passed, so no kernel indexes out of bounds.
        let r = unsafe { $dev.stream.launch_builder(&f)$(.arg($arg))*.launch($cfg) };
        r.map(|_| ()).map_err(|e| Error::Cuda(format!("launching `{}`: {e}", $name)))
    }};
}

/// One thread per element, grid-stride.
fn elems(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.div_ceil(BLOCK as usize).clamp(1, MAX_BLOCKS) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block per row (or channel), grid-stride over rows.
fn rows(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.clamp(1, MAX_BLOCKS) as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Broadcast geometry passed to the kernels by value; mirrors `struct Dims` in common.cuh.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Dims {
    rank: i32,
    out: [i32; MAX_RANK],
    sa: [i32; MAX_RANK],
    sb: [i32; MAX_RANK],
}
// SAFETY: plain #[repr(C)] integers, laid out as the C struct.
unsafe impl DeviceRepr for Dims {}

/// Strides of `shape` right-aligned in a rank-`rank` output, 0 on broadcast dimensions.
fn broadcast_strides(shape: &[usize], rank: usize) -> [i32; MAX_RANK] {
    let mut st = [0i32; MAX_RANK];
    let off = rank - shape.len();
    let mut s = 1usize;
    for i in (0..shape.len()).rev() {
        st[i + off] = if shape[i] == 1 { 0 } else { s as i32 };
        s *= shape[i];
    }
    st
}

fn dims(op: &'static str, out: &[usize], a: &[usize], b: &[usize]) -> Result<Dims> {
    let n: usize = out.iter().product();
    if out.len() > MAX_RANK || n > i32::MAX as usize {
        return Err(Error::Unsupported {
            op,
            device: format!("cuda (general broadcasting of rank > {MAX_RANK} or > 2^31 elements)"),
        });
    }
    let mut d = Dims {
        rank: out.len() as i32,
        ..Default::default()
    };
    for (o, &v) in d.out.iter_mut().zip(out) {
        *o = v as i32;
    }
    d.sa = broadcast_strides(a, out.len());
    d.sb = broadcast_strides(b, out.len());
    Ok(d)
}

/// Device memory holding f32 values, on one device.
pub struct CudaStorage {
    buf: CudaSlice<f32>,
    dev: Arc<Dev>,
}

impl Clone for CudaStorage {
    /// A device-to-device copy. `Clone` cannot fail, so an out-of-memory here panics, as
    /// cloning a `Vec` aborts when the host is out of memory.
    fn clone(&self) -> Self {
        let buf =
            self.dev.stream.clone_dtod(&self.buf).unwrap_or_else(|e| {
                panic!("cuda:{}: copying a buffer failed: {e}", self.dev.ordinal)
            });
        CudaStorage {
            buf,
            dev: self.dev.clone(),
        }
    }
}

impl fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CudaStorage(cuda:{}, {} values)",
            self.dev.ordinal,
            self.buf.len()
        )
    }
}

fn check_len(op: &'static str, what: &str, s: &CudaStorage, want: usize) -> Result<()> {
    if s.len() != want {
        return Err(Error::shape(
            op,
            format!("{what} holds {} values, {want} expected", s.len()),
        ));
    }
    Ok(())
}

fn same_dev(op: &'static str, a: &CudaStorage, b: &CudaStorage) -> Result<()> {
    if a.dev.ordinal != b.dev.ordinal {
        return Err(Error::invalid(format!(
            "{op}: inputs on different devices (cuda:{} and cuda:{})",
            a.dev.ordinal, b.dev.ordinal
        )));
    }
    Ok(())
}

fn u(n: usize) -> u64 {
    n as u64
}

impl CudaStorage {
    fn wrap(&self, buf: CudaSlice<f32>) -> Self {
        CudaStorage {
            buf,
            dev: self.dev.clone(),
        }
    }

    pub fn device(&self) -> Device {
        Device::Cuda(self.dev.ordinal)
    }

    pub fn ordinal(&self) -> usize {
        self.dev.ordinal
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() == 0
    }

    /// Copies to host memory (waits for the device's queued work).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        self.dev
            .stream
            .clone_dtoh(&self.buf)
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
            dev.stream
                .clone_htod(data)
                .map_err(drv("copying to the device"))?
        };
        Ok(CudaStorage { buf, dev })
    }

    /// `len` zeros on device `ordinal`.
    pub fn zeros(len: usize, ordinal: usize) -> Result<Self> {
        let dev = device(ordinal)?;
        let buf = dev.zeros(len)?;
        Ok(CudaStorage { buf, dev })
    }

    fn zeros_like_len(&self, len: usize) -> Result<Self> {
        Ok(self.wrap(self.dev.zeros(len)?))
    }

    fn empty(&self, len: usize) -> Result<Self> {
        Ok(self.wrap(self.dev.alloc(len)?))
    }

    // ---- pointwise -------------------------------------------------------------------

    /// `y = kernel(x; param)` for a pointwise kernel `(x, y, p, n)`: `relu_fwd`,
    /// `gelu_erf_fwd`, `gelu_tanh_fwd`, `tanh_fwd`, `sigmoid_fwd`, `scale`, `add_scalar`.
    pub fn unary(&self, kernel: &'static str, param: f32) -> Result<Self> {
        let n = self.len();
        let mut out = self.empty(n)?;
        if n > 0 {
            launch!(self.dev, kernel, elems(n); &self.buf, &mut out.buf, &param, &u(n))?;
        }
        Ok(out)
    }

    /// The gradient of a pointwise op, `kernel(s, grad; param)` with `(s, g, out, p, n)`:
    /// `relu_bwd`, `gelu_erf_bwd`, `gelu_tanh_bwd` take the input as `self`; `tanh_bwd`,
    /// `sigmoid_bwd` the output.
    pub fn unary_backward(&self, grad: &Self, kernel: &'static str, param: f32) -> Result<Self> {
        same_dev(kernel, self, grad)?;
        let n = self.len();
        check_len(kernel, "gradient", grad, n)?;
        let mut out = self.empty(n)?;
        if n > 0 {
            launch!(self.dev, kernel, elems(n);
                &self.buf, &grad.buf, &mut out.buf, &param, &u(n))?;
        }
        Ok(out)
    }

    /// `self op rhs` with NumPy broadcasting; the shapes are the operands' and the result's.
    pub fn binary(
        &self,
        rhs: &Self,
        op: BinaryOp,
        lhs_shape: &[usize],
        rhs_shape: &[usize],
        out_shape: &[usize],
    ) -> Result<Self> {
        let name = op.kernel_prefix();
        same_dev(name, self, rhs)?;
        check_len(name, "left operand", self, lhs_shape.iter().product())?;
        check_len(name, "right operand", rhs, rhs_shape.iter().product())?;
        let n: usize = out_shape.iter().product();
        let mut out = self.empty(n)?;
        if n == 0 {
            return Ok(out);
        }
        let suffix = lhs_shape == out_shape
            && rhs_shape.len() <= lhs_shape.len()
            && lhs_shape[lhs_shape.len() - rhs_shape.len()..] == *rhs_shape;
        let (a, b, cfg) = (&self.buf, &rhs.buf, elems(n));
        match op {
            _ if lhs_shape == rhs_shape => {
                let k = if op == BinaryOp::Add {
                    "add_same"
                } else {
                    "mul_same"
                };
                launch!(self.dev, k, cfg; a, b, &mut out.buf, &u(n))?
            }
            _ if suffix => {
                let k = if op == BinaryOp::Add {
                    "add_rowsuffix"
                } else {
                    "mul_rowsuffix"
                };
                launch!(self.dev, k, cfg; a, b, &mut out.buf, &u(n), &u(rhs.len()))?
            }
            _ => {
                let d = dims(name, out_shape, lhs_shape, rhs_shape)?;
                let k = if op == BinaryOp::Add {
                    "add_general"
                } else {
                    "mul_general"
                };
                launch!(self.dev, k, cfg; a, b, &mut out.buf, &u(n), &d)?
            }
        }
        Ok(out)
    }

    /// Sums a gradient shaped `from` (a broadcast result) down to the operand shape `to`.
    pub fn reduce_to_shape(&self, from: &[usize], to: &[usize]) -> Result<Self> {
        check_len("reduce_to_shape", "gradient", self, from.iter().product())?;
        let m: usize = to.iter().product();
        if from == to {
            return Ok(self.clone());
        }
        let n = self.len();
        if to.len() <= from.len() && from[from.len() - to.len()..] == *to && m > 0 {
            let mut out = self.empty(m)?;
            launch!(self.dev, "sum_rows", elems(m);
                &self.buf, &mut out.buf, &u(n / m), &u(m))?;
            return Ok(out);
        }
        let mut out = self.zeros_like_len(m)?;
        if n > 0 {
            let d = dims("reduce_to_shape", from, from, to)?;
            launch!(self.dev, "reduce_general", elems(n); &self.buf, &mut out.buf, &u(n), &d)?;
        }
        Ok(out)
    }

    /// `self += rhs` elementwise (gradient accumulation).
    pub fn add_assign(&mut self, rhs: &Self) -> Result<()> {
        same_dev("accumulate", self, rhs)?;
        let n = self.len();
        check_len("accumulate", "addend", rhs, n)?;
        if n > 0 {
            let dev = self.dev.clone();
            launch!(dev, "add_assign", elems(n); &mut self.buf, &rhs.buf, &u(n))?;
        }
        Ok(())
    }

    /// `self` (a row of `w` values) repeated `rows` times: `[rows, w]` (bias initialisation).
    pub fn repeat_rows(&self, rows: usize) -> Result<Self> {
        let w = self.len();
        let n = rows * w;
        let mut out = self.empty(n)?;
        if n > 0 {
            launch!(self.dev, "repeat_rows", elems(n); &self.buf, &mut out.buf, &u(n), &u(w))?;
        }
        Ok(out)
    }

    // ---- reductions --------------------------------------------------------------------

    /// `scale * sum(self)` as a one-element buffer (deterministic two-pass reduction).
    pub fn sum_all(&self, scale: f32) -> Result<Self> {
        let n = self.len();
        if n == 0 {
            // Same as the CPU: 0 * scale (NaN for the mean of nothing).
            return CudaStorage::from_host(&[0.0 * scale], self.dev.ordinal);
        }
        let blocks = n.div_ceil(BLOCK as usize).min(1024);
        let mut partial = self.empty(blocks)?;
        launch!(self.dev, "sum_partial", rows(blocks); &self.buf, &mut partial.buf, &u(n))?;
        let mut out = self.empty(1)?;
        launch!(self.dev, "sum_final", rows(1);
            &partial.buf, &mut out.buf, &u(blocks), &scale)?;
        Ok(out)
    }

    /// `len` copies of `scale * self[0]` (the backward of sum / mean).
    pub fn broadcast_scalar(&self, len: usize, scale: f32) -> Result<Self> {
        check_len("broadcast_scalar", "scalar", self, 1)?;
        let mut out = self.empty(len)?;
        if len > 0 {
            launch!(self.dev, "broadcast_scalar", elems(len);
                &self.buf, &mut out.buf, &scale, &u(len))?;
        }
        Ok(out)
    }

    /// Mean over the middle axis of `[outer, len, inner]`, giving `[outer, inner]`.
    pub fn mean_axis(&self, outer: usize, len: usize, inner: usize) -> Result<Self> {
        check_len("mean_axis", "input", self, outer * len * inner)?;
        let m = outer * inner;
        let mut out = self.empty(m)?;
        if m > 0 {
            launch!(self.dev, "mean_axis_fwd", elems(m);
                &self.buf, &mut out.buf, &u(outer), &u(len), &u(inner))?;
        }
        Ok(out)
    }

    /// The backward of [`mean_axis`](Self::mean_axis): `self` is the `[outer, inner]` gradient.
    pub fn mean_axis_backward(&self, outer: usize, len: usize, inner: usize) -> Result<Self> {
        check_len("mean_axis", "gradient", self, outer * inner)?;
        let n = outer * len * inner;
        let mut out = self.empty(n)?;
        if n > 0 {
            launch!(self.dev, "mean_axis_bwd", elems(n);
                &self.buf, &mut out.buf, &u(outer), &u(len), &u(inner))?;
        }
        Ok(out)
    }

    // ---- losses ------------------------------------------------------------------------

    /// Fused softmax cross-entropy of logits `[n, c]`: (per-sample loss `[n]`, probabilities
    /// `[n, c]`). Labels must already be checked against `c`.
    pub fn cross_entropy(&self, labels: &[u32], n: usize, c: usize) -> Result<(Self, Self)> {
        check_len("cross_entropy", "logits", self, n * c)?;
        if labels.len() != n {
            return Err(Error::shape(
                "cross_entropy",
                format!("{} labels for {n} samples", labels.len()),
            ));
        }
        let mut loss = self.empty(n)?;
        let mut probs = self.empty(n * c)?;
        if n > 0 && c > 0 {
            let l = self.dev.upload_u32(labels)?;
            launch!(self.dev, "softmax_xent_fwd", rows(n);
                &self.buf, &l, &mut loss.buf, &mut probs.buf, &u(n), &u(c))?;
        }
        Ok((loss, probs))
    }

    /// The logits' gradient from the saved probabilities `self` and the loss gradient `[n]`.
    pub fn cross_entropy_backward(
        &self,
        labels: &[u32],
        grad: &Self,
        n: usize,
        c: usize,
    ) -> Result<Self> {
        check_len("cross_entropy", "probabilities", self, n * c)?;
        check_len("cross_entropy", "gradient", grad, n)?;
        let mut out = self.empty(n * c)?;
        if n > 0 && c > 0 {
            let l = self.dev.upload_u32(labels)?;
            launch!(self.dev, "softmax_xent_bwd", elems(n * c);
                &self.buf, &l, &grad.buf, &mut out.buf, &u(n), &u(c))?;
        }
        Ok(out)
    }

    /// Per-sample MSE or BCE-with-logits of `[n, d]` predictions against `target`.
    pub fn regression_loss(
        &self,
        target: &Self,
        n: usize,
        d: usize,
        kind: RegressionLoss,
    ) -> Result<Self> {
        same_dev("loss", self, target)?;
        check_len("loss", "prediction", self, n * d)?;
        check_len("loss", "target", target, n * d)?;
        let mut out = self.empty(n)?;
        if n > 0 {
            let k = match kind {
                RegressionLoss::Mse => "mse_fwd",
                RegressionLoss::BceWithLogits => "bce_fwd",
            };
            launch!(self.dev, k, rows(n); &self.buf, &target.buf, &mut out.buf, &u(n), &u(d))?;
        }
        Ok(out)
    }

    /// Gradients (prediction, target) of the per-sample loss given its gradient `[n]`.
    pub fn regression_loss_backward(
        &self,
        target: &Self,
        grad: &Self,
        n: usize,
        d: usize,
        kind: RegressionLoss,
    ) -> Result<(Self, Self)> {
        check_len("loss", "prediction", self, n * d)?;
        check_len("loss", "target", target, n * d)?;
        check_len("loss", "gradient", grad, n)?;
        let mut gp = self.empty(n * d)?;
        let mut gt = self.empty(n * d)?;
        if n * d > 0 {
            let k = match kind {
                RegressionLoss::Mse => "mse_bwd",
                RegressionLoss::BceWithLogits => "bce_bwd",
            };
            launch!(self.dev, k, elems(n * d);
                &self.buf, &target.buf, &grad.buf, &mut gp.buf, &mut gt.buf, &u(n), &u(d))?;
        }
        Ok((gp, gt))
    }

    // ---- dropout and optimizers ----------------------------------------------------------

    /// Inverted dropout with the stateless mask of [`super::dropout_keep`]; the backward is
    /// the same call on the gradient with the same `p` and `seed`.
    pub fn dropout(&self, p: f32, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid(format!(
                "dropout probability {p} outside [0, 1)"
            )));
        }
        let n = self.len();
        let mut out = self.empty(n)?;
        if n > 0 {
            launch!(self.dev, "dropout_apply", elems(n);
                &self.buf, &mut out.buf, &p, &seed, &u(n))?;
        }
        Ok(out)
    }

    /// One SGD step on the parameter `self` in place; `momentum_buf` is required when
    /// `p.momentum != 0`.
    pub fn sgd_step(
        &mut self,
        grad: &Self,
        momentum_buf: Option<&mut Self>,
        p: SgdParams,
    ) -> Result<()> {
        same_dev("sgd", self, grad)?;
        let n = self.len();
        check_len("sgd", "gradient", grad, n)?;
        if n == 0 {
            return Ok(());
        }
        let dev = self.dev.clone();
        match momentum_buf {
            _ if p.momentum == 0.0 => launch!(dev, "sgd_plain", elems(n);
                &mut self.buf, &grad.buf, &u(n), &p.lr, &p.weight_decay),
            Some(buf) => {
                check_len("sgd", "momentum buffer", buf, n)?;
                launch!(dev, "sgd_momentum", elems(n);
                    &mut self.buf, &grad.buf, &mut buf.buf, &u(n), &p.lr, &p.momentum,
                    &p.dampening, &p.weight_decay, &(p.nesterov as i32), &(p.first as i32))
            }
            None => Err(Error::invalid("sgd: momentum without a momentum buffer")),
        }
    }

    /// One Adam/AdamW step on the parameter `self` and its moments `m`, `v`, in place.
    pub fn adam_step(
        &mut self,
        grad: &Self,
        m: &mut Self,
        v: &mut Self,
        p: AdamParams,
    ) -> Result<()> {
        same_dev("adam", self, grad)?;
        let n = self.len();
        check_len("adam", "gradient", grad, n)?;
        check_len("adam", "first moment", m, n)?;
        check_len("adam", "second moment", v, n)?;
        if n == 0 {
            return Ok(());
        }
        let dev = self.dev.clone();
        launch!(dev, "adam_step", elems(n);
            &mut self.buf, &grad.buf, &mut m.buf, &mut v.buf, &u(n), &p.lr, &p.beta1, &p.beta2,
            &p.eps, &p.l2_weight_decay, &p.decoupled_weight_decay, &p.bias_correction1,
            &p.bias_correction2_sqrt)
    }
}

// ---- GEMM ------------------------------------------------------------------------------

fn op(t: bool) -> cublasOperation_t {
    if t {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

fn int(op: &'static str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::shape(op, format!("dimension {v} too large for cuBLAS")))
}

/// Row-major `c = alpha op(a) op(b) + beta c` on views. cuBLAS is column-major, and a
/// row-major matrix is its transpose in column-major, so we compute `c^T = op(b)^T op(a)^T`:
/// swap the operands and the m/n roles, keep each operand's own transpose flag.
#[allow(clippy::too_many_arguments)]
fn gemm_view(
    dev: &Dev,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &CudaView<'_, f32>,
    ta: bool,
    b: &CudaView<'_, f32>,
    tb: bool,
    beta: f32,
    c: &mut CudaViewMut<'_, f32>,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let cfg = GemmConfig {
        transa: op(tb),
        transb: op(ta),
        m: int("gemm", n)?,
        n: int("gemm", m)?,
        k: int("gemm", k)?,
        alpha,
        lda: int("gemm", if tb { k } else { n })?.max(1),
        ldb: int("gemm", if ta { m } else { k })?.max(1),
        beta,
        ldc: int("gemm", n)?,
    };
    // SAFETY: the callers check that a, b and c hold at least m*k, k*n and m*n values, and
    // the leading dimensions above are those of contiguous row-major operands.
    unsafe { dev.blas.gemm(cfg, b, a, c) }.map_err(|e| Error::Cuda(format!("cublasSgemm: {e:?}")))
}

/// Row-major `c = alpha op(a) op(b) + beta c` with cuBLAS: `op(a)` is `m x k`, `op(b)` is
/// `k x n`; a transposed operand is stored transposed (as the CPU `matmul`).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &CudaStorage,
    ta: bool,
    b: &CudaStorage,
    tb: bool,
    beta: f32,
    c: &mut CudaStorage,
) -> Result<()> {
    same_dev("gemm", a, b)?;
    same_dev("gemm", a, c)?;
    check_len("gemm", "left operand", a, m * k)?;
    check_len("gemm", "right operand", b, k * n)?;
    check_len("gemm", "output", c, m * n)?;
    if m * n == 0 {
        return Ok(());
    }
    let dev = a.dev.clone();
    if k == 0 {
        // cuBLAS would only scale c by beta; do the same without it. β = 0 means "ignore c"
        // (it may be uninitialised, and 0 · NaN is NaN), as on the CPU.
        *c = if beta == 0.0 {
            c.zeros_like_len(m * n)?
        } else {
            c.unary("scale", beta)?
        };
        return Ok(());
    }
    gemm_view(
        &dev,
        m,
        k,
        n,
        alpha,
        &a.buf.as_view(),
        ta,
        &b.buf.as_view(),
        tb,
        beta,
        &mut c.buf.as_view_mut(),
    )
}

// ---- conv2d ----------------------------------------------------------------------------

/// Mirrors `struct ConvGeom` in kernels/conv.cu.
#[repr(C)]
#[derive(Clone, Copy)]
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

fn conv_geom(g: &Conv2dGeometry) -> ConvGeom {
    ConvGeom {
        n: g.n as i32,
        c: g.c_in as i32,
        h: g.h as i32,
        w: g.w as i32,
        kh: g.kh as i32,
        kw: g.kw as i32,
        sh: g.stride.0 as i32,
        sw: g.stride.1 as i32,
        ph: g.padding.0 as i32,
        pw: g.padding.1 as i32,
        dh: g.dilation.0 as i32,
        dw: g.dilation.1 as i32,
        ho: g.out_h() as i32,
        wo: g.out_w() as i32,
    }
}

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
    let cg = conv_geom(g);
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
    let dev = x.dev.clone();
    let hw = g.out_h() * g.out_w();
    let out_len = g.n * g.c_out * hw;
    let mut y = x.empty(out_len)?;
    if out_len == 0 {
        return Ok(y);
    }
    let mut cols = x.empty(ckk * ncols)?;
    launch!(dev, "im2col", elems(ckk * ncols); &x.buf, &mut cols.buf, &cg)?;
    let mut yc = x.empty(g.c_out * ncols)?;
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
    drop(cols);
    let has_bias = bias.is_some() as i32;
    let b = match bias {
        Some(b) => {
            same_dev("conv2d", x, b)?;
            check_len("conv2d", "bias", b, g.c_out)?;
            &b.buf
        }
        // Not read when has_bias is 0; any valid pointer will do.
        None => &yc.buf,
    };
    launch!(dev, "cnhw_to_nchw", elems(out_len);
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
    let hw = g.out_h() * g.out_w();
    check_len("conv2d", "output gradient", grad, g.n * g.c_out * hw)?;
    let dev = x.dev.clone();
    let (cout_g, ckk_g) = (g.c_out / g.groups, ckk / g.groups);
    let gb = if needs[2] {
        let mut gb = x.empty(g.c_out)?;
        if g.c_out > 0 {
            launch!(dev, "channel_sum", rows(g.c_out);
                &grad.buf, &mut gb.buf, &u(g.n), &u(g.c_out), &u(hw))?;
        }
        Some(gb)
    } else {
        None
    };
    if !needs[0] && !needs[1] {
        return Ok((None, None, gb));
    }
    if ncols == 0 {
        let gx = needs[0].then(|| x.zeros_like_len(x.len())).transpose()?;
        let gw = needs[1].then(|| x.zeros_like_len(w.len())).transpose()?;
        return Ok((gx, gw, gb));
    }
    let mut gyc = x.empty(g.c_out * ncols)?;
    launch!(dev, "nchw_to_cnhw", elems(g.c_out * ncols);
        &grad.buf, &mut gyc.buf, &u(g.n), &u(g.c_out), &u(hw))?;
    let gw = if needs[1] {
        let mut cols = x.empty(ckk * ncols)?;
        launch!(dev, "im2col", elems(ckk * ncols); &x.buf, &mut cols.buf, &cg)?;
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
        launch!(dev, "col2im", elems(x.len()); &gcols.buf, &mut gx.buf, &cg)?;
        Some(gx)
    } else {
        None
    };
    Ok((gx, gw, gb))
}

// ---- pooling ---------------------------------------------------------------------------

/// Mirrors `struct PoolGeom` in kernels/pool.cu.
#[repr(C)]
#[derive(Clone, Copy)]
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

fn pool_geom(x: &CudaStorage, g: &Pool2dGeometry) -> Result<(PoolGeom, usize)> {
    g.validate()?;
    check_len("pool2d", "input", x, g.n * g.c * g.h * g.w)?;
    let pg = PoolGeom {
        n: g.n as i32,
        c: g.c as i32,
        h: g.h as i32,
        w: g.w as i32,
        kh: g.kh as i32,
        kw: g.kw as i32,
        sh: g.stride.0 as i32,
        sw: g.stride.1 as i32,
        ph: g.padding.0 as i32,
        pw: g.padding.1 as i32,
        ho: g.out_h() as i32,
        wo: g.out_w() as i32,
    };
    Ok((pg, g.n * g.c * g.out_h() * g.out_w()))
}

/// Max pooling forward: `[n, c, h, w]` to `[n, c, out_h, out_w]`.
pub fn max_pool2d_forward(x: &CudaStorage, g: &Pool2dGeometry) -> Result<CudaStorage> {
    let (pg, m) = pool_geom(x, g)?;
    let mut y = x.empty(m)?;
    if m > 0 {
        launch!(x.dev, "maxpool2d_fwd", elems(m); &x.buf, &mut y.buf, &pg)?;
    }
    Ok(y)
}

/// Max pooling backward (the window maxima are recomputed from `x`).
pub fn max_pool2d_backward(
    x: &CudaStorage,
    grad: &CudaStorage,
    g: &Pool2dGeometry,
) -> Result<CudaStorage> {
    let (pg, m) = pool_geom(x, g)?;
    same_dev("max_pool2d", x, grad)?;
    check_len("max_pool2d", "output gradient", grad, m)?;
    let mut gx = x.zeros_like_len(x.len())?;
    if m > 0 {
        launch!(x.dev, "maxpool2d_bwd", elems(m); &x.buf, &grad.buf, &mut gx.buf, &pg)?;
    }
    Ok(gx)
}

/// Average pooling forward; `count_include_pad` as PyTorch's flag (default true there).
pub fn avg_pool2d_forward(
    x: &CudaStorage,
    g: &Pool2dGeometry,
    count_include_pad: bool,
) -> Result<CudaStorage> {
    let (pg, m) = pool_geom(x, g)?;
    let mut y = x.empty(m)?;
    if m > 0 {
        launch!(x.dev, "avgpool2d_fwd", elems(m);
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
    g.validate()?;
    let mut gx = grad.zeros_like_len(g.n * g.c * g.h * g.w)?;
    let (pg, m) = pool_geom(&gx, g)?;
    check_len("avg_pool2d", "output gradient", grad, m)?;
    if m > 0 {
        launch!(grad.dev, "avgpool2d_bwd", elems(m);
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

// ---- normalisation -----------------------------------------------------------------------

/// What batch norm's forward returns: the output and the statistics its backward needs.
#[derive(Debug)]
pub struct BatchNormOutput {
    pub y: CudaStorage,
    /// Per-channel mean used (batch mean in training, running mean in evaluation).
    pub mean: CudaStorage,
    /// Per-channel `1 / sqrt(var + eps)` used.
    pub invstd: CudaStorage,
}

/// Batch norm over `[n, c, hw]` (1-d: `hw = 1`; 2-d: `hw = h * w`). In training mode the
/// running estimates are updated in place (PyTorch's momentum rule, unbiased variance).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward(
    x: &CudaStorage,
    weight: &CudaStorage,
    bias: &CudaStorage,
    running_mean: &mut CudaStorage,
    running_var: &mut CudaStorage,
    n: usize,
    c: usize,
    hw: usize,
    p: BatchNormParams,
) -> Result<BatchNormOutput> {
    check_len("batchnorm", "input", x, n * c * hw)?;
    for (what, s) in [("weight", weight), ("bias", bias)] {
        same_dev("batchnorm", x, s)?;
        check_len("batchnorm", what, s, c)?;
    }
    check_len("batchnorm", "running mean", running_mean, c)?;
    check_len("batchnorm", "running variance", running_var, c)?;
    if p.train && n * hw == 0 {
        return Err(Error::invalid(
            "batchnorm: training mode needs at least one value per channel",
        ));
    }
    let dev = x.dev.clone();
    let mut mean = x.empty(c)?;
    let mut invstd = x.empty(c)?;
    let mut y = x.empty(x.len())?;
    if c == 0 {
        return Ok(BatchNormOutput { y, mean, invstd });
    }
    if p.train {
        launch!(dev, "bn_train_stats", rows(c);
            &x.buf, &mut mean.buf, &mut invstd.buf, &mut running_mean.buf, &mut running_var.buf,
            &u(n), &u(c), &u(hw), &p.momentum, &p.eps)?;
    } else {
        launch!(dev, "bn_eval_stats", elems(c);
            &running_mean.buf, &running_var.buf, &mut mean.buf, &mut invstd.buf, &u(c), &p.eps)?;
    }
    if !x.is_empty() {
        launch!(dev, "bn_apply", elems(x.len());
            &x.buf, &mean.buf, &invstd.buf, &weight.buf, &bias.buf, &mut y.buf,
            &u(n), &u(c), &u(hw))?;
    }
    Ok(BatchNormOutput { y, mean, invstd })
}

/// Gradients (input, weight, bias) of batch norm from the forward's saved statistics.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward(
    x: &CudaStorage,
    weight: &CudaStorage,
    grad: &CudaStorage,
    mean: &CudaStorage,
    invstd: &CudaStorage,
    n: usize,
    c: usize,
    hw: usize,
    train: bool,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    check_len("batchnorm", "input", x, n * c * hw)?;
    check_len("batchnorm", "output gradient", grad, n * c * hw)?;
    for (what, s) in [("weight", weight), ("mean", mean), ("invstd", invstd)] {
        check_len("batchnorm", what, s, c)?;
    }
    let dev = x.dev.clone();
    let mut gw = x.empty(c)?;
    let mut gb = x.empty(c)?;
    let mut gx = x.empty(x.len())?;
    if c == 0 {
        return Ok((gx, gw, gb));
    }
    launch!(dev, "bn_bwd_reduce", rows(c);
        &x.buf, &grad.buf, &mean.buf, &invstd.buf, &mut gw.buf, &mut gb.buf, &u(n), &u(c), &u(hw))?;
    if !x.is_empty() {
        launch!(dev, "bn_bwd_dx", elems(x.len());
            &x.buf, &grad.buf, &mean.buf, &invstd.buf, &weight.buf, &gw.buf, &gb.buf,
            &mut gx.buf, &u(n), &u(c), &u(hw), &(train as i32))?;
    }
    Ok((gx, gw, gb))
}

/// Layer norm over the last dimension `d` of `rows` rows: (y, mean `[rows]`, invstd `[rows]`).
pub fn layernorm_forward(
    x: &CudaStorage,
    weight: &CudaStorage,
    bias: &CudaStorage,
    rows_n: usize,
    d: usize,
    eps: f32,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    check_len("layernorm", "input", x, rows_n * d)?;
    check_len("layernorm", "weight", weight, d)?;
    check_len("layernorm", "bias", bias, d)?;
    let mut y = x.empty(x.len())?;
    let mut mean = x.empty(rows_n)?;
    let mut invstd = x.empty(rows_n)?;
    if rows_n > 0 && d > 0 {
        launch!(x.dev, "layernorm_fwd", rows(rows_n);
            &x.buf, &weight.buf, &bias.buf, &mut y.buf, &mut mean.buf, &mut invstd.buf,
            &u(rows_n), &u(d), &eps)?;
    }
    Ok((y, mean, invstd))
}

/// Gradients (input, weight, bias) of layer norm from the forward's saved statistics.
pub fn layernorm_backward(
    x: &CudaStorage,
    weight: &CudaStorage,
    grad: &CudaStorage,
    mean: &CudaStorage,
    invstd: &CudaStorage,
    rows_n: usize,
    d: usize,
) -> Result<(CudaStorage, CudaStorage, CudaStorage)> {
    check_len("layernorm", "input", x, rows_n * d)?;
    check_len("layernorm", "output gradient", grad, rows_n * d)?;
    check_len("layernorm", "weight", weight, d)?;
    check_len("layernorm", "mean", mean, rows_n)?;
    check_len("layernorm", "invstd", invstd, rows_n)?;
    let mut gx = x.empty(x.len())?;
    let mut gw = x.zeros_like_len(d)?;
    let mut gb = x.zeros_like_len(d)?;
    if rows_n > 0 && d > 0 {
        launch!(x.dev, "layernorm_bwd_dx", rows(rows_n);
            &x.buf, &grad.buf, &weight.buf, &mean.buf, &invstd.buf, &mut gx.buf,
            &u(rows_n), &u(d))?;
        launch!(x.dev, "layernorm_bwd_params", elems(d);
            &x.buf, &grad.buf, &mean.buf, &invstd.buf, &mut gw.buf, &mut gb.buf,
            &u(rows_n), &u(d))?;
    }
    Ok((gx, gw, gb))
}

// ---- embedding ---------------------------------------------------------------------------

fn check_ids(ids: &[u32], num: usize) -> Result<()> {
    if let Some((i, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= num) {
        return Err(Error::invalid(format!(
            "embedding: index {id} at position {i} out of range for {num} embeddings"
        )));
    }
    Ok(())
}

/// Rows `ids` of `weight` (`[num, dim]`), giving `[ids.len(), dim]`.
pub fn embedding_forward(weight: &CudaStorage, ids: &[u32], dim: usize) -> Result<CudaStorage> {
    if dim == 0 || weight.len() % dim != 0 {
        return Err(Error::shape(
            "embedding",
            format!("weight of {} values is not [num, {dim}]", weight.len()),
        ));
    }
    check_ids(ids, weight.len() / dim)?;
    let m = ids.len() * dim;
    let mut y = weight.empty(m)?;
    if m > 0 {
        let l = weight.dev.upload_u32(ids)?;
        launch!(weight.dev, "embedding_fwd", elems(m);
            &weight.buf, &l, &mut y.buf, &u(ids.len()), &u(dim))?;
    }
    Ok(y)
}

/// The weight gradient `[num, dim]` of an embedding lookup (repeated ids accumulate).
pub fn embedding_backward(
    ids: &[u32],
    grad: &CudaStorage,
    num: usize,
    dim: usize,
) -> Result<CudaStorage> {
    check_ids(ids, num)?;
    check_len("embedding", "output gradient", grad, ids.len() * dim)?;
    let mut gw = grad.zeros_like_len(num * dim)?;
    if !grad.is_empty() {
        let l = grad.dev.upload_u32(ids)?;
        launch!(grad.dev, "embedding_bwd", elems(grad.len());
            &l, &grad.buf, &mut gw.buf, &u(ids.len()), &u(dim))?;
    }
    Ok(gw)
}

/// Waits for every queued kernel on device `ordinal` (for timing).
pub fn synchronize(ordinal: usize) -> Result<()> {
    device(ordinal)?
        .stream
        .synchronize()
        .map_err(drv("synchronising the stream"))
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
        for &(file, body) in FILES {
            let source = format!("{COMMON}\n{body}");
            for arch in ["sm_90", "sm_80"] {
                let cubin = compile_cubin(file, &source, arch)
                    .unwrap_or_else(|e| panic!("kernels/{file}.cu for {arch}: {e}"));
                assert_eq!(&cubin[..4], b"\x7fELF", "kernels/{file}.cu for {arch}");
            }
            assert!(compile_kernels(file, &source, (9, 0)).is_ok());
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
