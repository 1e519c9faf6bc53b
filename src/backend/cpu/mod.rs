//! CPU kernels: GEMM (our AVX-512 block where the processor has it, matrixmultiply's
//! single-threaded packed sgemm elsewhere), split over threads by us; SIMD elementwise maps and reductions (AVX2/FMA picked at run time, with a portable
//! reference path kept for tests); and the threading every kernel shares: one persistent
//! worker pool and a per-call thread budget (see [`parallel`]).

pub mod gemm;
#[cfg(target_arch = "x86_64")]
mod gemm_avx512;
pub mod parallel;
pub mod pool;
pub mod simd;

pub use gemm::{matmul, matmul_bias, Transpose};
pub use parallel::{par_chunks_mut, par_map, thread_limit, with_thread_limit};
