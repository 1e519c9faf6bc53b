//! Recycling of large f32 buffers, one pool per run.
//!
//! Activations and gradients are allocated and freed every step with the same sizes. Left to
//! the system allocator, large blocks go back to the kernel when freed and come back as fresh
//! zero pages, so every step pays a page fault per 4 KiB written, and with two threads a TLB
//! shootdown each (measured on the Fashion-MNIST CNN: 3.4 M minor faults and ~30 % of a ∇τ
//! run). The tape hands the buffers of values it drops back here, and ops take their output
//! buffers from here, so steady-state steps reuse resident memory.
//!
//! # One pool per run
//!
//! A run (a [`RunGuard`] is alive; every autograd tape holds one, so training, unlearning,
//! inference and benchmark loops all count) owns its own pool. The guard makes that pool the
//! *current* one of the thread that opened it, and [`take`] / [`recycle`] use the current
//! pool of the calling thread (a tape gives its own values back to its own run). A run opened
//! while another is open on the same thread (an evaluation tape made while a training tape is
//! alive) joins the outer run's pool instead of starting one. The CPU kernels' worker threads
//! take on the pool of the caller they are working for, for the duration of that work (see
//! [`CurrentRun`]), so buffers move freely within a run.
//!
//! Two runs on two threads (two models served by one host) therefore never touch the same
//! pool or lock, and a run's memory goes back to the allocator as soon as its last guard
//! drops, instead of when the last run of the whole process ends.
//!
//! # Allocation failures
//!
//! Every allocation here is fallible: a buffer the allocator cannot provide is an
//! [`Error::ResourceLimit`] naming the bytes asked for, not an abort of the host process.

use crate::error::{Error, Result};
use std::alloc::Layout;
use std::cell::RefCell;
use std::sync::{Arc, Mutex, Weak};

/// Buffers smaller than this (in f32s, 16 KiB) are left to the allocator. Every larger
/// buffer is worth keeping: the allocator hands a freed block back through `calloc`, which
/// zero-fills reused heap memory, and above glibc's mmap threshold (128 KiB at first) it
/// maps fresh pages, a fault per 4 KiB. At 1 MiB the benchmark MLP's activations of a ∇τ
/// step with both batches in one ([512, 256], 512 KiB) went to the allocator: 52k minor
/// faults over the paper-mode run, 29k at 256 KiB, and about 6 % less wall time (median of
/// 5, interleaved, load average 5). At 256 KiB the same MLP's training step at batch 128
/// (activations [128, 256], 128 KiB) still took its four largest buffers from the
/// allocator; at 16 KiB the step's median fell from 1.60–1.69 to 1.29–1.41 ms (4 rounds,
/// interleaved) and the step benchmark's page faults from 58k to 10.5k.
const MIN_POOLED: usize = 1 << 12;
/// At most this many f32s are kept in one run's pool (1 GiB). A ∇τ step at batch 256 frees
/// more than 256 MiB per step on a small CNN; with a 256 MiB cap the rest came back as fresh
/// pages every step, and the step ran 12 % slower per sample than at batch 128.
const MAX_POOLED_TOTAL: usize = 1 << 28;

/// The buffers one run keeps for reuse. The lock is only ever shared by the threads working
/// for that one run (its caller and the kernel helpers it woke).
#[derive(Default)]
struct RunPool {
    buffers: Mutex<Vec<Vec<f32>>>,
}

impl RunPool {
    /// Best fit among buffers no more than twice as large, so big buffers are not wasted on
    /// small requests; among equals the most recently returned one, whose memory is most
    /// likely still in cache.
    fn take_fit(&self, n: usize) -> Option<Vec<f32>> {
        let mut pool = self.buffers.lock().ok()?;
        let best = pool
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, v)| v.capacity() >= n && v.capacity() <= 2 * n)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i)?;
        Some(pool.remove(best))
    }

    fn keep(&self, v: Vec<f32>) {
        if let Ok(mut pool) = self.buffers.lock() {
            if pooled_total(&pool) + v.capacity() <= MAX_POOLED_TOTAL {
                pool.push(v);
            }
        }
    }

    fn floats(&self) -> usize {
        self.buffers.lock().map(|p| pooled_total(&p)).unwrap_or(0)
    }
}

fn pooled_total(pool: &[Vec<f32>]) -> usize {
    pool.iter().map(|v| v.capacity()).sum()
}

thread_local! {
    /// The pools of the runs open on this thread, innermost last. Weak references: the
    /// guards own the pools, so a guard dropped on another thread than the one it was opened
    /// on (a tape moved between threads) still frees its memory; the dead entry it leaves
    /// here is skipped by [`current`] and pruned by the next [`run_guard`].
    static RUNS: RefCell<Vec<Weak<RunPool>>> = const { RefCell::new(Vec::new()) };
}

/// The innermost live run of this thread.
fn current() -> Option<Arc<RunPool>> {
    RUNS.try_with(|r| r.borrow().iter().rev().find_map(Weak::upgrade))
        .ok()
        .flatten()
}

fn push_current(pool: &Arc<RunPool>) {
    let _ = RUNS.try_with(|r| {
        let mut r = r.borrow_mut();
        r.retain(|w| w.strong_count() > 0);
        r.push(Arc::downgrade(pool));
    });
}

fn pop_current(pool: &Arc<RunPool>) {
    // `try_*`: the guard may drop while this thread's locals are being torn down.
    let _ = RUNS.try_with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            if let Some(i) = r.iter().rposition(|w| w.as_ptr() == Arc::as_ptr(pool)) {
                r.remove(i);
            }
        }
    });
}

/// Hands the allocator's free memory back to the system (glibc's `malloc_trim`; nothing
/// elsewhere), for the end of a whole run (an unlearning or a training run, not a
/// prediction: a run lasts long enough that the trim's walk over the heap does not show).
///
/// Why: a run's helper threads allocate some of its buffers, and glibc serves each thread
/// from an arena of its own, which keeps what is freed into it; and once a large buffer has
/// been freed, glibc raises its threshold for serving large buffers by `mmap` (up to
/// 32 MiB), so later ones come from those arenas too. After the benchmark CNN's ∇τ run, the
/// host process kept 45 MiB more resident than before it (the next, smaller run's peak went
/// from 30 to 75 MiB) until this was called.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's malloc_trim takes no pointers and may be called from any thread.
        unsafe { malloc_trim(0) };
    }
}

/// A run in progress: while alive, large buffers freed on its thread are kept in its pool
/// for reuse; the pool is freed when the last guard sharing it drops.
#[must_use = "the run's pool is freed as soon as the guard drops"]
pub struct RunGuard {
    pool: Arc<RunPool>,
}

/// Opens a run on this thread (see [`RunGuard`]): a new pool, or the pool of the run
/// already open on this thread.
pub fn run_guard() -> RunGuard {
    let pool = current().unwrap_or_default();
    push_current(&pool);
    RunGuard { pool }
}

impl RunGuard {
    /// Gives a buffer back to this run's pool, whichever thread the guard is on now.
    pub fn recycle(&self, v: Vec<f32>) {
        if v.capacity() >= MIN_POOLED {
            self.pool.keep(v);
        }
    }

    /// How many f32s this run's pool holds for reuse right now.
    pub fn pooled_floats(&self) -> usize {
        self.pool.floats()
    }

    /// A handle that can still look at this run's pool after the guard is gone (to check
    /// that its memory was given back).
    pub fn watch(&self) -> PoolWatch {
        PoolWatch(Arc::downgrade(&self.pool))
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        pop_current(&self.pool);
        // The pool itself (and every buffer in it) is freed with the last `Arc`.
    }
}

/// A weak view of one run's pool (see [`RunGuard::watch`]).
pub struct PoolWatch(Weak<RunPool>);

impl PoolWatch {
    /// Whether the pool has been freed (every guard and worker using it is done).
    pub fn is_freed(&self) -> bool {
        self.0.strong_count() == 0
    }

    /// How many f32s the pool holds: 0 once it is freed.
    pub fn pooled_floats(&self) -> usize {
        self.0.upgrade().map_or(0, |p| p.floats())
    }
}

/// The run open on the calling thread, to be carried to the worker threads that do part of
/// its work, so their freed buffers land in the same pool. Holds no reference that keeps the
/// pool alive.
#[derive(Clone, Default)]
pub struct CurrentRun(Option<Weak<RunPool>>);

/// The run open on this thread, if any (see [`CurrentRun`]).
pub fn current_run() -> CurrentRun {
    CurrentRun(current().map(|p| Arc::downgrade(&p)))
}

impl CurrentRun {
    /// Makes this run current on the calling thread until the returned guard drops (a
    /// worker thread doing part of the run's work). Does nothing if the run has ended.
    pub fn enter(&self) -> Option<RunGuard> {
        let pool = self.0.as_ref()?.upgrade()?;
        push_current(&pool);
        Some(RunGuard { pool })
    }
}

/// How many f32s the pool of the run open on this thread holds for reuse right now: 0 when
/// no run is open on this thread.
pub fn pooled_floats() -> usize {
    current().map_or(0, |p| p.floats())
}

fn alloc_error<T>(n: usize, what: &str) -> Error {
    Error::ResourceLimit(format!(
        "could not allocate {} bytes for {what}",
        (n as u128) * std::mem::size_of::<T>() as u128
    ))
}

/// An empty vector with room for `n` items, or [`Error::ResourceLimit`] naming `what` and
/// the bytes when the allocator cannot provide it (instead of aborting the process).
pub fn try_vec<T>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| alloc_error::<T>(n, what))?;
    Ok(v)
}

/// An empty host buffer with room for `n` values (see [`try_vec`]).
pub fn try_alloc(n: usize, what: &str) -> Result<Vec<f32>> {
    try_vec(n, what)
}

/// `n` zeros straight from the allocator, or [`Error::ResourceLimit`]. Unlike
/// `try_alloc` + `resize`, this asks for zeroed memory (`calloc`), so a large buffer comes
/// as untouched zero pages, as `vec![0.0; n]` gives, rather than being written once here
/// and again by the op that fills it.
fn try_zeroed_vec(n: usize, what: &str) -> Result<Vec<f32>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let layout = Layout::array::<f32>(n).map_err(|_| alloc_error::<f32>(n, what))?;
    // SAFETY: `layout` has a non-zero size (n > 0 and f32 is 4 bytes).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) } as *mut f32;
    if ptr.is_null() {
        return Err(alloc_error::<f32>(n, what));
    }
    // SAFETY: `ptr` comes from the global allocator with the layout of `[f32; n]`, which is
    // what a `Vec<f32>` of capacity `n` frees with; all `n` values are initialised (zero
    // bits are 0.0).
    Ok(unsafe { Vec::from_raw_parts(ptr, n, n) })
}

/// A recycled buffer of at least `n` values from the current run, resized to `n`.
fn take_recycled(n: usize) -> Option<Vec<f32>> {
    if n < MIN_POOLED {
        return None;
    }
    let mut v = current()?.take_fit(n)?;
    v.truncate(n);
    v.resize(n, 0.0);
    Some(v)
}

/// A zero-filled buffer of `n` values, recycled when a suitable one is free; an
/// [`Error::ResourceLimit`] when the memory cannot be had.
pub fn zeroed(n: usize) -> Result<Vec<f32>> {
    let mut v = take(n)?;
    // Also over a fresh (already zero) buffer: skipping this pass for fresh buffers left the
    // first touch of their pages to the kernels and doubled the minor faults of a small-CNN
    // ∇τ step on the shared 2-core machine (about 21k instead of 11k per step; timings were
    // within that machine's noise either way), so the old single pass is kept.
    v.fill(0.0);
    Ok(v)
}

/// A buffer of `n` values for an op that overwrites every element: a recycled one keeps
/// whatever values it held (no zero-fill pass over memory that is about to be written). An
/// [`Error::ResourceLimit`] when the memory cannot be had.
pub fn take(n: usize) -> Result<Vec<f32>> {
    match take_recycled(n) {
        Some(v) => Ok(v),
        None => try_zeroed_vec(n, "a CPU buffer"),
    }
}

/// Gives a buffer back to the pool of the run open on this thread (small ones, any beyond
/// the pool's cap, and any given back while no run is open here are freed).
pub fn recycle(v: Vec<f32>) {
    if v.capacity() < MIN_POOLED {
        return;
    }
    if let Some(pool) = current() {
        pool.keep(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_buffers_come_back_zeroed() {
        let _run = run_guard();
        let mut v = zeroed(MIN_POOLED * 3).unwrap();
        v.iter_mut().for_each(|x| *x = 7.0);
        let cap = v.capacity();
        recycle(v);
        let w = zeroed(MIN_POOLED * 2).unwrap();
        assert_eq!(w.len(), MIN_POOLED * 2);
        assert!(w.iter().all(|&x| x == 0.0));
        assert_eq!(w.capacity(), cap, "this run's own buffer is reused");
        let small = zeroed(10).unwrap();
        assert_eq!(small, vec![0.0; 10]);
        let t = take(MIN_POOLED + 5).unwrap();
        assert_eq!(t.len(), MIN_POOLED + 5);
    }

    #[test]
    fn an_impossible_request_is_an_error() {
        let e = take(usize::MAX / 2).unwrap_err();
        assert!(matches!(e, Error::ResourceLimit(_)), "{e}");
        assert!(try_alloc(usize::MAX / 2, "x").is_err());
        assert_eq!(take(0).unwrap().len(), 0);
    }
}
