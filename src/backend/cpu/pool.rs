//! A small recycling pool for large f32 buffers.
//!
//! Activations and gradients are allocated and freed every step with the same sizes. Left to
//! the system allocator, large blocks go back to the kernel when freed and come back as fresh
//! zero pages, so every step pays a page fault per 4 KiB written, and with two threads a TLB
//! shootdown each (measured on the Fashion-MNIST CNN: 3.4 M minor faults and ~30 % of a ∇τ
//! run). The tape hands the buffers of values it drops back here, and ops take their output
//! buffers from here, so steady-state steps reuse resident memory.

//!
//! The pool only fills while a run is in progress (a [`RunGuard`] is alive; every autograd
//! tape holds one, so training, unlearning, inference and benchmark loops all count), and it
//! is emptied when the last guard drops, so a host that embeds gradtau gets its memory back
//! between calls instead of keeping the largest run's working set resident.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Buffers smaller than this (in f32s) are left to the allocator, which handles them well.
const MIN_POOLED: usize = 1 << 18;
/// At most this many f32s are kept in the pool (1 GiB), and only during a run. A ∇τ step at
/// batch 256 frees more than 256 MiB per step on a small CNN; with a 256 MiB cap the rest
/// came back as fresh pages every step, and the step ran 12 % slower per sample than at
/// batch 128.
const MAX_POOLED_TOTAL: usize = 1 << 28;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());
static ACTIVE_RUNS: AtomicUsize = AtomicUsize::new(0);

/// While alive, freed large buffers are kept for reuse; when the last one drops, the pool
/// is emptied. Guards nest and may be held on several threads at once.
#[must_use = "the pool is emptied as soon as the guard drops"]
pub struct RunGuard(());

/// Marks a run in progress (see [`RunGuard`]).
pub fn run_guard() -> RunGuard {
    ACTIVE_RUNS.fetch_add(1, Ordering::SeqCst);
    RunGuard(())
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if ACTIVE_RUNS.fetch_sub(1, Ordering::SeqCst) == 1 {
            if let Ok(mut pool) = POOL.lock() {
                // A run that started meanwhile only loses its cached buffers.
                *pool = Vec::new();
            }
        }
    }
}

fn pooled_total(pool: &[Vec<f32>]) -> usize {
    pool.iter().map(|v| v.capacity()).sum()
}

/// How many f32s the pool holds for reuse right now: 0 whenever no run is in progress.
pub fn pooled_floats() -> usize {
    POOL.lock().map(|p| pooled_total(&p)).unwrap_or(0)
}

/// A zero-filled buffer of `n` values, recycled when a suitable one is free.
pub fn zeroed(n: usize) -> Vec<f32> {
    let mut v = take(n);
    v.iter_mut().for_each(|x| *x = 0.0);
    v
}

/// A buffer of `n` values for an op that overwrites every element: a recycled one keeps
/// whatever values it held (no zero-fill pass over memory that is about to be written).
pub fn take(n: usize) -> Vec<f32> {
    if n >= MIN_POOLED {
        if let Ok(mut pool) = POOL.lock() {
            // Best fit among buffers no more than twice as large, so big buffers are not
            // wasted on small requests; among equals the most recently returned one, whose
            // memory is most likely still in cache.
            let best = pool
                .iter()
                .enumerate()
                .rev()
                .filter(|(_, v)| v.capacity() >= n && v.capacity() <= 2 * n)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            if let Some(i) = best {
                let mut v = pool.remove(i);
                drop(pool);
                v.truncate(n);
                v.resize(n, 0.0);
                return v;
            }
        }
    }
    vec![0.0; n]
}

/// Gives a buffer back for reuse (small ones, any beyond the pool's cap, and any given back
/// while no run is in progress are freed).
pub fn recycle(v: Vec<f32>) {
    if v.capacity() < MIN_POOLED || ACTIVE_RUNS.load(Ordering::SeqCst) == 0 {
        return;
    }
    if let Ok(mut pool) = POOL.lock() {
        if pooled_total(&pool) + v.capacity() <= MAX_POOLED_TOTAL {
            pool.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_buffers_come_back_zeroed() {
        let _run = run_guard();
        let mut v = zeroed(MIN_POOLED * 3);
        v.iter_mut().for_each(|x| *x = 7.0);
        let cap = v.capacity();
        recycle(v);
        // Another test thread may take it first; either way the result is all zeros.
        let w = zeroed(MIN_POOLED * 2);
        assert_eq!(w.len(), MIN_POOLED * 2);
        assert!(w.iter().all(|&x| x == 0.0));
        assert!(w.capacity() >= MIN_POOLED * 2 && (w.capacity() == cap || w.capacity() < 2 * cap));
        let small = zeroed(10);
        assert_eq!(small, vec![0.0; 10]);
        let t = take(MIN_POOLED + 5);
        assert_eq!(t.len(), MIN_POOLED + 5);
    }
}
