//! The CUDA backend proper (feature `cuda`): cudarc with the CUDA libraries loaded at run time.
//!
//! One context and one stream per device ordinal, created at first use and cached for the
//! life of the process ([`context`]). Every kernel runs on that stream, so work on one device
//! is ordered without events; host copies (`to_vec`) synchronise. Kernel files are compiled
//! by NVRTC for the device's own architecture the first time one of their kernels is
//! launched ([`module`]), and kernels are named through the table in
//! [`kernels`](super::kernels), never by searching source text.
//!
//! The files, by concern:
//! - [`context`]: devices, contexts, streams, binding the context on the calling thread;
//! - [`memory`]: [`CudaStorage`] (device buffers, never 0 bytes) and host transfers;
//! - [`module`]: NVRTC compilation and the per-device module / function cache;
//! - [`blas`]: GEMM through cuBLAS;
//! - the op launchers, grouped as the ops are: [`elementwise`] (broadcasting binary ops,
//!   pointwise maps and activations, dropout), [`reduce`], [`loss`], [`conv`], [`pool`],
//!   [`norm`], [`embedding`], [`optim`].

use super::kernels::Kernel;
use crate::error::{Error, Result};
use context::Dev;
use cudarc::driver::{CudaFunction, LaunchConfig};

/// Launches kernel `$kernel` (a [`Kernel`] from the name table) on `$dev`'s stream after
/// checking the argument count against the kernel's parameter list and binding the context
/// on this thread. Arguments are pushed by reference; they all live until the end of the
/// statement, which encloses the launch.
macro_rules! launch {
    ($dev:expr, $kernel:expr, $cfg:expr; $($arg:expr),+ $(,)?) => {{
        use cudarc::driver::PushKernelArg as _;
        let dev = &$dev;
        let kernel: $crate::backend::cuda::kernels::Kernel = $kernel;
        let f = super::prepare_launch(dev, kernel, [$(stringify!($arg)),+].len())?;
        // SAFETY: the argument count matches the kernel's parameter list (checked above),
        // and each argument's order and type match it (device buffers for pointers, u64 for
        // `u64`, f32 for `float`, i32 for `int`, #[repr(C)] mirrors for the structs); the
        // callers check every buffer length against the sizes passed, so no kernel indexes
        // out of bounds.
        let r = unsafe { dev.stream.launch_builder(&f)$(.arg($arg))+.launch($cfg) };
        r.map(|_| ()).map_err(|e| {
            $crate::error::Error::Cuda(format!("launching `{}`: {e}", kernel.name))
        })
    }};
}

mod blas;
mod context;
mod conv;
mod elementwise;
mod embedding;
mod loss;
mod memory;
mod module;
mod norm;
mod optim;
mod pool;
mod reduce;

pub use blas::gemm;
pub use context::{ensure_usable, is_available, synchronize};
pub use conv::{conv2d_backward, conv2d_forward};
pub use embedding::{embedding_backward, embedding_forward};
pub use memory::CudaStorage;
pub use norm::{
    batchnorm_backward, batchnorm_forward, layernorm_backward, layernorm_forward, BatchNormOutput,
};
pub use pool::{
    avg_pool2d_backward, avg_pool2d_forward, global_avg_pool_backward, global_avg_pool_forward,
    max_pool2d_backward, max_pool2d_forward,
};

const BLOCK: u32 = 256;
/// Grid cap; every kernel loops (grid-stride) over what a capped grid does not cover, so a
/// launch of more than `MAX_BLOCKS * BLOCK` elements (or `MAX_BLOCKS` rows) wraps.
const MAX_BLOCKS: usize = 65_535;

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

/// What every launch does first: the argument count checked against the kernel's parameter
/// list, the function loaded (compiling its file on first use), the context bound.
fn prepare_launch(dev: &Dev, kernel: Kernel, given: usize) -> Result<CudaFunction> {
    if given != kernel.params {
        return Err(Error::Cuda(format!(
            "kernel `{}` (kernels/{}.cu) takes {} parameters, the launch passes {given}",
            kernel.name, kernel.file.name, kernel.params
        )));
    }
    let f = dev.function(kernel)?;
    dev.bind()?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_shapes_cap_the_grid_and_never_launch_zero_blocks() {
        assert_eq!(elems(0).grid_dim.0, 1);
        assert_eq!(elems(257).grid_dim.0, 2);
        // Past the cap the grid stays at MAX_BLOCKS and the kernels' loops wrap.
        let big = MAX_BLOCKS * BLOCK as usize + 1;
        assert_eq!(elems(big).grid_dim.0 as usize, MAX_BLOCKS);
        assert_eq!(rows(MAX_BLOCKS + 5).grid_dim.0 as usize, MAX_BLOCKS);
        assert_eq!(rows(0).grid_dim.0, 1);
    }
}
