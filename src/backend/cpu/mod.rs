//! CPU kernels: matrixmultiply GEMM, SIMD elementwise maps and reductions (AVX2/FMA picked at
//! run time, with a portable reference path kept for tests), and a small scoped-thread helper.

pub mod gemm;
pub mod pool;
pub mod simd;

pub use gemm::{matmul, Transpose};

/// Number of worker threads used by the CPU kernels that split work themselves.
/// matrixmultiply reads `MATMUL_NUM_THREADS` for GEMM; we honour the same variable.
pub fn num_threads() -> usize {
    thread_limit()
}

thread_local! {
    static LIMIT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs `f` with the CPU kernels called on this thread using at most `limit` threads (0: no
/// cap). Nested limits only lower it.
pub fn with_thread_limit<T>(limit: usize, f: impl FnOnce() -> T) -> T {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            LIMIT.with(|l| l.set(self.0));
        }
    }
    let old = LIMIT.with(|l| l.get());
    let new = match (old, limit) {
        (0, n) | (n, 0) => n,
        (a, b) => a.min(b),
    };
    LIMIT.with(|l| l.set(new));
    let _restore = Restore(old);
    f()
}

/// The number of threads a kernel called on this thread may use.
pub fn thread_limit() -> usize {
    let cap = LIMIT.with(|l| l.get());
    let default = default_threads();
    if cap == 0 {
        default
    } else {
        cap.min(default)
    }
}

fn default_threads() -> usize {
    static N: once_cell::sync::Lazy<usize> = once_cell::sync::Lazy::new(|| {
        std::env::var("MATMUL_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .min(64)
    });
    *N
}

/// Runs `f(chunk_index, chunk)` over `out` split into `chunk`-sized pieces, using up to
/// [`num_threads`] threads when the work is large enough to pay for them. Each chunk is
/// processed by exactly one thread, so results do not depend on the thread count.
pub fn par_chunks_mut<F>(out: &mut [f32], chunk: usize, min_parallel_len: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let chunk = chunk.max(1);
    let threads = num_threads();
    if threads <= 1 || out.len() < min_parallel_len || out.len() <= chunk {
        for (i, c) in out.chunks_mut(chunk).enumerate() {
            f(i, c);
        }
        return;
    }
    let n_chunks = out.len().div_ceil(chunk);
    let per_thread = n_chunks.div_ceil(threads);
    std::thread::scope(|s| {
        let f = &f;
        for (t, group) in out.chunks_mut(per_thread * chunk).enumerate() {
            s.spawn(move || {
                for (j, c) in group.chunks_mut(chunk).enumerate() {
                    f(t * per_thread + j, c);
                }
            });
        }
    });
}
