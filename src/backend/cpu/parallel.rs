//! How the CPU kernels use threads: one persistent worker pool, and a per-thread budget.
//!
//! # The model
//!
//! A kernel that splits its work (GEMM, convolution, pooling, normalisation, elementwise
//! chunks) cuts it into parts and runs them with [`par_map`] (or [`par_chunks_mut`] on top of
//! it). The calling thread always takes part in the work; up to `thread_limit() - 1` helpers
//! come from one worker pool shared by every kernel and every caller, started on first use and
//! kept for the life of the process. Parts are claimed one at a time from a shared counter, so
//! a helper that starts late (its core busy with something else) takes whatever is left, and
//! if the caller finishes first it takes the helpers' share itself. Each part runs entirely on
//! one thread, so a kernel whose parts do not depend on the part count gives the same bits at
//! every thread count.
//!
//! # The budget
//!
//! [`thread_limit`] is how many threads (the calling thread included) a kernel called on this
//! thread may use. By default it is `MATMUL_NUM_THREADS` when that is set to a positive
//! integer (an unusable value is ignored), else the machine's available parallelism, at most
//! [`MAX_THREADS`]. A host caps it for a stretch of code with [`with_thread_limit`], e.g. to
//! give an unlearning run one core while other threads keep serving predictions: the cap is
//! per calling thread, so concurrent callers each keep their own. Work handed to pool helpers
//! carries its share of the caller's budget, so a kernel that runs inside a helper (a GEMM
//! inside one sample of a batch-parallel convolution) splits no further than its share, and a
//! call never uses more threads than its caller's limit. With a limit of 1 nothing is handed
//! to the pool: every part runs inline on the calling thread.
//!
//! # Why a pool
//!
//! A training step makes hundreds of kernel calls of a few tens of microseconds each. Spawning
//! scoped threads per call (what the kernels did before) paid a thread creation and join on
//! every one, and matrixmultiply's own threaded GEMM kept a second pool of its own, sized once
//! for the process, that no caller could cap. One pool of parked workers, woken per call,
//! serves every kernel. The pool itself is rayon-core's (thread start-up, parking, waking,
//! job queues); ours are the budget, the part claiming, and the small handshake by which a
//! caller skips helper jobs that have not started instead of waiting for them (see `Call`:
//! rayon's scopes wait for every job they spawned, which on a loaded machine cost callers a
//! scheduler time slice per call).
//!
//! # Keeping helpers awake between calls
//!
//! A parked thread took 25 to 55 microseconds to wake on the 2-core virtual machines the
//! benchmarks run on, and rayon parks an idle worker quickly. A training step's kernels come
//! a few to a few hundred microseconds apart, so every GEMM started on one core and the
//! helper joined late (or not at all: small products finished before it arrived). A helper
//! that has done its parts therefore lingers for half a millisecond (`LINGER`), spinning,
//! and takes the next call's job straight from a mailbox (each job is also queued on the
//! pool, and a ticket makes it run once); a caller waiting for its helpers spins for 100
//! microseconds (`FINISH_SPIN`) before it parks. Measured on the benchmark MLP's whole ∇τ
//! run: 10 % faster. A helper core stays busy for at most `LINGER` after a process's last
//! kernel call.

use std::any::Any;
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Upper bound on any thread budget: past this, the kernels' parts get too small to pay for a
/// thread, and a bogus `MATMUL_NUM_THREADS` cannot make the pool huge.
pub const MAX_THREADS: usize = 64;

/// The process-wide default budget, read once.
static DEFAULT_LIMIT: LazyLock<usize> = LazyLock::new(|| {
    std::env::var("MATMUL_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(MAX_THREADS)
});

/// The helpers. The calling thread is always one of a call's threads, so `default - 1`
/// helpers let one caller reach its full default budget; concurrent callers share them, and
/// part claiming lets a caller go on alone when they are busy.
static POOL: OnceLock<Option<rayon_core::ThreadPool>> = OnceLock::new();

thread_local! {
    /// This thread's cap (0: none). Set by [`with_thread_limit`] on a caller's thread, and by
    /// the pool for the duration of each part it runs for a caller.
    static CAP: Cell<usize> = const { Cell::new(0) };
}

/// The number of threads, the calling thread included, that a CPU kernel called on this
/// thread may use: the default budget (see the [module docs](self)), lowered by any
/// enclosing [`with_thread_limit`], or by the share of a caller's budget when running as
/// part of that caller's work on a pool helper. Always at least 1.
pub fn thread_limit() -> usize {
    let default = *DEFAULT_LIMIT;
    match CAP.with(Cell::get) {
        0 => default,
        cap => cap.min(default),
    }
}

/// Runs `f` with the CPU kernels it calls on this thread limited to `limit` threads in total
/// (this thread included); `0` means no cap beyond the default. A cap only ever lowers the
/// budget: nested calls keep the smaller limit, and a limit above the default changes nothing.
/// The previous budget comes back when `f` returns or unwinds.
pub fn with_thread_limit<T>(limit: usize, f: impl FnOnce() -> T) -> T {
    let old = CAP.with(Cell::get);
    let new = match (old, limit) {
        (_, 0) => old,
        (0, l) => l,
        (o, l) => o.min(l),
    };
    let _restore = CapGuard::set(new);
    f()
}

/// Sets this thread's cap until dropped (also during unwinding).
struct CapGuard(usize);

impl CapGuard {
    fn set(cap: usize) -> CapGuard {
        CapGuard(CAP.with(|c| c.replace(cap)))
    }
}

impl Drop for CapGuard {
    fn drop(&mut self) {
        CAP.with(|c| c.set(self.0));
    }
}

fn pool() -> Option<&'static rayon_core::ThreadPool> {
    POOL.get_or_init(|| {
        let helpers = (*DEFAULT_LIMIT).saturating_sub(1).max(1);
        // A pool that cannot start (no threads left in the process) leaves every kernel
        // on its calling thread, which is correct, only slower.
        rayon_core::ThreadPoolBuilder::new()
            .num_threads(helpers)
            .thread_name(|i| format!("gradtau-cpu-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// Runs `f(i, part)` for every part, on up to `min(thread_limit(), parts.len())` threads
/// (the calling thread included), and returns the results in part order. Each part runs
/// entirely on one thread; which thread is not fixed. With a limit of 1, or a single part,
/// every part runs inline on the calling thread, in order. A panic in any part is resumed on
/// the calling thread once every thread working on the call has stopped.
pub fn par_map<T, R, F>(parts: Vec<T>, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(usize, T) -> R + Sync,
{
    let n = parts.len();
    let limit = thread_limit();
    let threads = limit.min(n);
    let pool = match (threads > 1).then(pool).flatten() {
        // The pool is started only once some call can use it.
        Some(pool) => pool,
        _ => {
            return parts
                .into_iter()
                .enumerate()
                .map(|(i, p)| f(i, p))
                .collect()
        }
    };
    let todo: Vec<Mutex<Option<T>>> = parts.into_iter().map(|p| Mutex::new(Some(p))).collect();
    let done: Vec<Mutex<Option<R>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    // Every thread of the call gets an equal share of the budget for whatever its parts call;
    // the caller keeps the remainder.
    let share = limit / threads;
    // Helpers work for the caller's run, so the buffers its parts free go to that run's pool
    // (see `pool`); a run on another thread never sees them.
    let run = super::pool::current_run();
    let claim_parts = |cap: usize| {
        let _share = CapGuard::set(cap);
        let _run = run.enter();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            // Each index is claimed once, so these locks are never contended; a poisoned lock
            // only means another part panicked, and that panic is resumed below anyway.
            let part = todo[i].lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(part) = part {
                let r = f(i, part);
                *done[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
            }
        }
    };
    let helper_work = || claim_parts(share);
    let call = Call::new();
    for _ in 1..threads {
        // SAFETY: `call.finish()` below returns only once no helper runs `helper_work` and
        // none can start it any more, and it runs before `helper_work` goes out of scope,
        // also when the caller's own part panics (it is caught first).
        unsafe { call.spawn_helper(pool, &helper_work) };
    }
    let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        claim_parts(limit - share * (threads - 1))
    }));
    let theirs = call.finish();
    if let Err(payload) = mine.and(theirs) {
        std::panic::resume_unwind(payload);
    }
    // Every part was claimed and, with no panic, has left its result.
    done.into_iter()
        .filter_map(|r| r.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

/// One parallel call's bookkeeping with its helpers, shared with helper jobs that may outlive
/// the call. The pool runs a helper job whenever a worker is free; by then the caller may
/// have claimed every part itself (its helpers' cores were busy) and returned. A job must then
/// not touch the call's work, and the caller must not wait for it: rayon's scopes wait for
/// every spawned job to run, which on a loaded machine blocked callers for a whole scheduler
/// time slice (a 256x128x784 GEMM took 2.7x as long at limit 2 as at limit 1, measured on the
/// shared 2-core machine). So a helper first *enters* the call, which fails once the caller
/// has *closed* it, and the caller waits only for helpers that entered.
struct Call {
    shared: Arc<CallShared>,
}

struct CallShared {
    /// The number of helpers inside the work, plus [`CLOSED`] once the caller has closed it.
    state: AtomicUsize,
    /// Helper jobs queued and not yet taken: each is queued twice (on the pool, and for a
    /// lingering helper), and whichever copy runs first takes the ticket.
    tickets: AtomicUsize,
    /// The first panic of a helper, resumed by the caller.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// The calling thread, to unpark; taken back by [`Call::finish`] on the caller itself. A
    /// job that never entered may drop the last `Arc` of this struct on a pool thread long
    /// after the call, and if the caller was a host's thread that has exited by then, that
    /// drop would free the caller's `Thread` on another thread; ThreadSanitizer (in the C
    /// tests) cannot see the reference count's ordering and reported it as a race.
    caller: Mutex<Option<std::thread::Thread>>,
}

const CLOSED: usize = 1 << (usize::BITS - 1);

/// A lifetime-erased pointer to a call's helper work.
#[derive(Clone, Copy)]
struct WorkPtr(*const (dyn Fn() + Sync + 'static));

// SAFETY: the pointee is `Sync`, so it may be called from any thread; when it may be called
// at all is governed by `Call` (see `Call::spawn_helper`).
unsafe impl Send for WorkPtr {}

impl Call {
    fn new() -> Call {
        Call {
            shared: Arc::new(CallShared {
                state: AtomicUsize::new(0),
                tickets: AtomicUsize::new(0),
                panic: Mutex::new(None),
                caller: Mutex::new(Some(std::thread::current())),
            }),
        }
    }

    /// Queues a job on the pool that runs `work` unless the call has closed by then, and
    /// hands it as well to a helper that is lingering after its last call (see [`linger`]),
    /// whichever comes first: the job runs once.
    ///
    /// # Safety
    /// [`Call::finish`] must return before `work` is dropped or invalidated.
    unsafe fn spawn_helper<'a>(
        &self,
        pool: &rayon_core::ThreadPool,
        work: &'a (dyn Fn() + Sync + 'a),
    ) {
        // SAFETY: the caller's contract.
        let job = unsafe { self.helper_job(work) };
        if LINGERING.waiting.load(Ordering::SeqCst) > 0 {
            LINGERING.post(job.clone());
        }
        pool.spawn(move || {
            if job.run() {
                linger();
            }
        });
    }

    /// A helper job (with its ticket) that runs `work` for this call.
    ///
    /// # Safety
    /// [`Call::finish`] must return before `work` is dropped or invalidated.
    unsafe fn helper_job<'a>(&self, work: &'a (dyn Fn() + Sync + 'a)) -> HelperJob {
        let ptr: *const (dyn Fn() + Sync + 'a) = work;
        // SAFETY: only the lifetime changes; the job dereferences the pointer only between a
        // successful `enter` and its `leave`, and `finish` (which the caller's contract runs
        // while `work` lives) returns only after every entered helper has left and closes the
        // call to any later one.
        let ptr = WorkPtr(unsafe {
            std::mem::transmute::<*const (dyn Fn() + Sync + 'a), *const (dyn Fn() + Sync + 'static)>(
                ptr,
            )
        });
        self.shared.tickets.fetch_add(1, Ordering::AcqRel);
        HelperJob {
            shared: Arc::clone(&self.shared),
            ptr,
        }
    }

    /// Closes the call to helpers that have not started, waits for those that have, and
    /// returns the first helper panic.
    fn finish(self) -> std::thread::Result<()> {
        let s = &self.shared;
        let mut state = s.state.fetch_or(CLOSED, Ordering::AcqRel) | CLOSED;
        let started = Instant::now();
        while state != CLOSED {
            if started.elapsed() < FINISH_SPIN {
                // A helper inside has a part about as long as ours: it is usually done within
                // microseconds, sooner than a parked thread is woken.
                spin_a_little();
            } else {
                // The last helper to leave unparks us; park also returns spuriously, hence
                // the loop.
                std::thread::park();
            }
            state = s.state.load(Ordering::Acquire);
        }
        // No helper is inside and none can enter any more, so no one unparks us again.
        drop(s.caller.lock().unwrap_or_else(|e| e.into_inner()).take());
        match s.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(payload) => Err(payload),
            None => Ok(()),
        }
    }
}

/// One queued helper job of a call: runs the call's work if it takes a ticket and the call
/// is still open.
#[derive(Clone)]
struct HelperJob {
    shared: Arc<CallShared>,
    ptr: WorkPtr,
}

impl HelperJob {
    /// Runs the work unless another copy of this job took the ticket or the call has closed;
    /// whether it ran.
    fn run(&self) -> bool {
        let shared = &self.shared;
        if !shared.enter() {
            return false;
        }
        // SAFETY: entered, so the call is open and its work alive until `leave`.
        let r =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (*self.ptr.0)() }));
        if let Err(payload) = r {
            let mut first = shared.panic.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert(payload);
        }
        shared.leave();
        true
    }
}

/// How long a helper that has done its parts keeps waiting, spinning, for the next call
/// before it goes back to the pool, which parks it. A training step is a chain of kernel
/// calls a few to a few hundred microseconds apart, and waking a parked thread took 25 to
/// 55 microseconds on the 2-core virtual machines this was measured on: paid on every call,
/// that is the first tens of microseconds of every GEMM on one core, and a second wake for
/// a caller that parks to wait for the helper. This is the same trade as OpenMP's spin
/// before sleeping (libgomp spins for a while by default): a helper core stays busy for at
/// most this long after a process's last kernel call.
const LINGER: Duration = Duration::from_micros(500);

/// How long a caller whose parts are done spins for its helpers before it parks.
const FINISH_SPIN: Duration = Duration::from_micros(100);

/// Helper jobs handed straight to lingering helpers.
struct Lingering {
    /// How many helpers are lingering now.
    waiting: AtomicUsize,
    /// Jobs posted for them (each also queued on the pool), and how many, to poll cheaply.
    jobs: Mutex<VecDeque<HelperJob>>,
    posted: AtomicUsize,
}

static LINGERING: Lingering = Lingering {
    waiting: AtomicUsize::new(0),
    jobs: Mutex::new(VecDeque::new()),
    posted: AtomicUsize::new(0),
};

impl Lingering {
    fn post(&self, job: HelperJob) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.push_back(job);
        self.posted.store(jobs.len(), Ordering::Release);
    }

    /// The oldest posted job, if any.
    fn take(&self) -> Option<HelperJob> {
        if self.posted.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let job = jobs.pop_front();
        self.posted.store(jobs.len(), Ordering::Release);
        job
    }
}

/// Waits on a pool thread for jobs posted to lingering helpers, running them, until none
/// has come for [`LINGER`]. A job posted as the helper leaves is not lost: its copy on the
/// pool runs it (or finds its ticket taken), and the post is dropped by a later `take`.
fn linger() {
    LINGERING.waiting.fetch_add(1, Ordering::SeqCst);
    let mut idle_since = Instant::now();
    loop {
        if let Some(job) = LINGERING.take() {
            if job.run() {
                idle_since = Instant::now();
            }
            continue;
        }
        if idle_since.elapsed() >= LINGER {
            break;
        }
        spin_a_little();
        // A thread the host has waiting for this core gets it: lingering uses idle time only.
        std::thread::yield_now();
    }
    LINGERING.waiting.fetch_sub(1, Ordering::SeqCst);
}

/// A short busy wait between two polls of shared state.
fn spin_a_little() {
    for _ in 0..64 {
        std::hint::spin_loop();
    }
}

impl CallShared {
    /// Takes one helper job's ticket, then enters the work unless the call is closed.
    fn enter(&self) -> bool {
        let ticket = self
            .tickets
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| t.checked_sub(1));
        ticket.is_ok()
            && self
                .state
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                    (s & CLOSED == 0).then_some(s + 1)
                })
                .is_ok()
    }

    fn leave(&self) {
        if self.state.fetch_sub(1, Ordering::AcqRel) == CLOSED + 1 {
            let caller = self.caller.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = caller.as_ref() {
                t.unpark();
            }
        }
    }
}

/// Runs `f(chunk_index, chunk)` over `out` split into `chunk`-sized pieces (the last one may
/// be shorter), in parallel (see [`par_map`]) when `out` holds at least `min_parallel_len`
/// values and more than one chunk. Each chunk is processed by exactly one thread, so results
/// do not depend on the thread count.
pub fn par_chunks_mut<T, F>(out: &mut [T], chunk: usize, min_parallel_len: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync,
{
    let chunk = chunk.max(1);
    let threads = thread_limit();
    if threads <= 1 || out.len() < min_parallel_len || out.len() <= chunk {
        for (i, c) in out.chunks_mut(chunk).enumerate() {
            f(i, c);
        }
        return;
    }
    let per_group = group_len(out.len().div_ceil(chunk), threads);
    let groups: Vec<&mut [T]> = out.chunks_mut(per_group * chunk).collect();
    par_map(groups, |g, group| {
        for (j, c) in group.chunks_mut(chunk).enumerate() {
            f(g * per_group + j, c);
        }
    });
}

/// How many consecutive items of a job of `items` independent items to put in each part,
/// for `threads` threads: a few parts per thread, so that a helper that starts late still
/// finds work left, while a part stays long enough that claiming it costs nothing in
/// comparison.
pub fn group_len(items: usize, threads: usize) -> usize {
    const PARTS_PER_THREAD: usize = 4;
    items.div_ceil(threads.max(1) * PARTS_PER_THREAD).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::thread::ThreadId;

    /// The distinct threads that ran the parts of a job of `parts` parts of some work each.
    fn threads_used(parts: usize) -> HashSet<ThreadId> {
        let ids = par_map((0..parts).collect(), |_, p: usize| {
            // Enough work per part that helpers get a chance to join in.
            let mut x = p as f64;
            for _ in 0..200_000 {
                x = std::hint::black_box(x * 1.000_000_1 + 1e-9);
            }
            std::hint::black_box(x);
            std::thread::current().id()
        });
        ids.into_iter().collect()
    }

    #[test]
    fn limit_one_runs_every_part_on_the_caller() {
        let me = std::thread::current().id();
        let ids = with_thread_limit(1, || threads_used(64));
        assert_eq!(ids, HashSet::from([me]));
        // par_chunks_mut too, above its parallel threshold.
        let mut v = vec![0u8; 1 << 16];
        let seen = Mutex::new(HashSet::new());
        with_thread_limit(1, || {
            par_chunks_mut(&mut v, 64, 0, |_, _| {
                seen.lock().unwrap().insert(std::thread::current().id());
            })
        });
        assert_eq!(seen.into_inner().unwrap(), HashSet::from([me]));
    }

    #[test]
    fn limit_two_uses_at_most_two_threads() {
        let ids = with_thread_limit(2, || threads_used(64));
        assert!(!ids.is_empty() && ids.len() <= 2, "{} threads", ids.len());
        if *DEFAULT_LIMIT >= 2 {
            // Every part waits (up to a generous bound, so a broken pool fails instead of
            // hanging) until a second thread has joined in: a pool that never lends a helper
            // ends with one id.
            let seen = Mutex::new(HashSet::new());
            with_thread_limit(2, || {
                par_map(vec![(); 16], |_, ()| {
                    seen.lock().unwrap().insert(std::thread::current().id());
                    let start = std::time::Instant::now();
                    while seen.lock().unwrap().len() < 2
                        && start.elapsed() < std::time::Duration::from_secs(30)
                    {
                        std::thread::yield_now();
                    }
                })
            });
            assert_eq!(seen.into_inner().unwrap().len(), 2);
        }
    }

    #[test]
    fn a_lingering_helper_runs_a_posted_job_once() {
        let runs = AtomicUsize::new(0);
        let work = || {
            runs.fetch_add(1, Ordering::SeqCst);
        };
        let call = Call::new();
        // SAFETY: `call.finish()` below returns before `work` goes out of scope.
        let job = unsafe { call.helper_job(&work) };
        // Posted twice, as a job is posted and queued on the pool: it runs once. Posted
        // before the thread below starts lingering, so it cannot time out first.
        LINGERING.post(job.clone());
        LINGERING.post(job.clone());
        // A thread lingering as a pool helper does after its parts.
        let lingerer = std::thread::spawn(linger);
        let start = Instant::now();
        while runs.load(Ordering::SeqCst) == 0 && start.elapsed() < Duration::from_secs(30) {
            std::thread::yield_now();
        }
        assert!(!job.run(), "the ticket was taken by the lingering helper");
        call.finish().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // With nothing more posted, the lingerer stops (a spin that never ended would hang
        // the test here rather than burn a core for the life of a host process).
        lingerer.join().unwrap();
    }

    #[test]
    fn helpers_stop_lingering_when_calls_stop() {
        if *DEFAULT_LIMIT < 2 {
            eprintln!("SKIPPED: one CPU, so no helpers to linger");
            return;
        }
        for gap_us in [0, 100, 400, 700, 1500] {
            let sums = with_thread_limit(2, || {
                par_map((0..8u64).collect(), |_, p| {
                    std::thread::sleep(Duration::from_micros(gap_us));
                    (0..1000u64).map(|v| v * p).sum::<u64>()
                })
            });
            let want: Vec<u64> = (0..8u64).map(|p| 499_500 * p).collect();
            assert_eq!(sums, want);
        }
        // Every helper goes back to the pool once no call has come for a while; other tests
        // running meanwhile may keep one lingering, so this waits for a quiet moment.
        let start = Instant::now();
        while LINGERING.waiting.load(Ordering::SeqCst) > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "a helper kept spinning"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn parts_on_helpers_see_the_callers_share() {
        let limits = with_thread_limit(2, || par_map(vec![(); 8], |_, ()| thread_limit()));
        // Two threads share a budget of 2: every part may use one thread.
        assert!(limits.iter().all(|&l| l == 1), "{limits:?}");
        let inner = with_thread_limit(1, || par_map(vec![(); 8], |_, ()| thread_limit()));
        assert!(inner.iter().all(|&l| l == 1));
    }

    #[test]
    fn nested_limits_only_lower_and_restore() {
        let default = thread_limit();
        assert_eq!(default, *DEFAULT_LIMIT);
        with_thread_limit(1, || {
            assert_eq!(thread_limit(), 1);
            with_thread_limit(2, || assert_eq!(thread_limit(), 1));
            with_thread_limit(0, || assert_eq!(thread_limit(), 1));
            assert_eq!(thread_limit(), 1);
        });
        assert_eq!(thread_limit(), default);
        with_thread_limit(0, || assert_eq!(thread_limit(), default));
        with_thread_limit(MAX_THREADS + 1, || assert_eq!(thread_limit(), default));
        let r = std::panic::catch_unwind(|| with_thread_limit(1, || panic!("inside")));
        assert!(r.is_err());
        assert_eq!(thread_limit(), default, "the cap survived a panic");
    }

    #[test]
    fn concurrent_callers_keep_their_own_limits() {
        std::thread::scope(|s| {
            let capped = s.spawn(|| {
                with_thread_limit(1, || {
                    (0..50).all(|_| {
                        let me = std::thread::current().id();
                        threads_used(8) == HashSet::from([me]) && thread_limit() == 1
                    })
                })
            });
            let free: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        (0..50).all(|_| {
                            threads_used(8).len() <= *DEFAULT_LIMIT
                                && thread_limit() == *DEFAULT_LIMIT
                        })
                    })
                })
                .collect();
            assert!(capped.join().unwrap());
            for f in free {
                assert!(f.join().unwrap());
            }
        });
    }

    #[test]
    fn par_map_keeps_order_and_resumes_panics() {
        let out = with_thread_limit(2, || {
            par_map((0..100).collect(), |i, p: usize| i * 1000 + p)
        });
        assert_eq!(out, (0..100).map(|i| i * 1001).collect::<Vec<_>>());
        assert!(par_map(Vec::<usize>::new(), |_, p| p).is_empty());
        let r = std::panic::catch_unwind(|| {
            with_thread_limit(2, || {
                par_map((0..16).collect(), |_, p: usize| assert!(p != 7))
            })
        });
        assert!(r.is_err());
    }

    #[test]
    fn par_chunks_mut_visits_every_chunk_once_with_its_index() {
        for limit in [1, 2, 0] {
            let mut v = vec![0usize; 1003];
            with_thread_limit(limit, || {
                par_chunks_mut(&mut v, 10, 0, |i, c| c.iter_mut().for_each(|x| *x += i + 1))
            });
            let want: Vec<usize> = (0..1003).map(|j| j / 10 + 1).collect();
            assert_eq!(v, want, "limit {limit}");
        }
    }

    /// The bits of every output of the parallel CPU kernels on one input, at the current limit.
    fn kernel_outputs() -> Vec<Vec<u32>> {
        use crate::ops::conv::{conv2d, Conv2dParams};
        use crate::ops::norm::{batch_norm_train, layer_norm};
        use crate::ops::pool::{avg_pool2d, max_pool2d, Pool2dParams};
        use crate::rng::Rng;
        use crate::{Tape, Tensor};
        let bits = |t: &Tensor| t.to_vec().unwrap().iter().map(|v| v.to_bits()).collect();
        let mut rng = Rng::new(7);
        // Every output is above the kernels' parallel thresholds (2^15 elements).
        let x = Tensor::randn(&[16, 4, 28, 28], 1.0, &mut rng);
        let w = Tensor::randn(&[8, 4, 3, 3], 0.5, &mut rng);
        let b = Tensor::randn(&[8], 0.5, &mut rng);
        let seed = Tensor::randn(&[16, 8, 28, 28], 1.0, &mut rng);
        let conv = Conv2dParams {
            stride: (1, 1),
            padding: (1, 1),
        };
        let mut out = vec![bits(&conv2d(&x, &w, Some(&b), conv).unwrap())];
        // A layer too large per sample to spread samples over threads: its GEMMs are split.
        let big_x = Tensor::randn(&[2, 16, 64, 64], 1.0, &mut rng);
        let big_w = Tensor::randn(&[32, 16, 3, 3], 0.5, &mut rng);
        out.push(bits(&conv2d(&big_x, &big_w, None, conv).unwrap()));
        let mut tape = Tape::new();
        let v = [tape.var(x.clone(), 0), tape.var(w, 1), tape.var(b, 2)];
        let y = tape.conv2d(v[0], v[1], Some(v[2]), conv).unwrap();
        let grads = tape.backward_with_seed(y, seed).unwrap();
        out.extend((0..3).map(|key| bits(grads.get(key).unwrap())));
        let (ones, zeros) = (
            Tensor::from_vec(vec![1.0; 4], &[4]).unwrap(),
            Tensor::zeros(&[4]),
        );
        let (bn, mean, var) = batch_norm_train(&x, None, None, &zeros, &ones, 0.1, 1e-5).unwrap();
        out.extend([bits(&bn), bits(&mean), bits(&var)]);
        out.push(bits(&layer_norm(&x, &[28, 28], None, None, 1e-5).unwrap()));
        let pool = Pool2dParams::square(2);
        out.push(bits(&max_pool2d(&x, pool).unwrap()));
        out.push(bits(&avg_pool2d(&x, pool).unwrap()));
        out
    }

    #[test]
    fn kernels_give_the_same_bits_at_every_limit() {
        let one = with_thread_limit(1, kernel_outputs);
        assert_eq!(one, with_thread_limit(2, kernel_outputs));
        assert_eq!(one, kernel_outputs());
    }
}
