//! The CPU buffer pools: one per run, holding memory only while that run is open, never
//! shared between runs on different threads, and failing cleanly on impossible requests.
//! Its own test binary, so the library's unit tests running alongside cannot disturb it.

use gradtau::backend::cpu::par_map;
use gradtau::backend::cpu::pool::{pooled_floats, recycle, run_guard, take, zeroed};
use gradtau::{Error, Tape, Tensor};
use std::sync::{Arc, Barrier};

const BIG: usize = 1 << 20;

#[test]
fn a_run_holds_memory_only_while_it_is_open() {
    assert_eq!(pooled_floats(), 0, "nothing is pooled before any run");
    // Outside a run a buffer given back is freed, not kept.
    recycle(vec![0.0; BIG]);
    assert_eq!(pooled_floats(), 0, "kept a buffer outside any run");
    let watch;
    {
        let run = run_guard();
        watch = run.watch();
        recycle(vec![0.0; BIG]);
        assert!(
            pooled_floats() >= BIG,
            "a run keeps the buffer it was given"
        );
        let again = take(BIG).unwrap();
        assert_eq!(again.len(), BIG);
        assert_eq!(pooled_floats(), 0, "the kept buffer was handed out again");
        recycle(again);
        // A nested run (every tape holds one) shares the outer run's pool, which stays
        // until the outer run ends.
        let tape = Tape::new();
        let t = Tensor::from_vec(vec![1.0; BIG], &[BIG]).unwrap();
        t.recycle();
        drop(tape);
        assert!(pooled_floats() >= 2 * BIG);
        assert_eq!(run.pooled_floats(), pooled_floats());
    }
    assert!(watch.is_freed(), "the pool outlived its run");
    assert_eq!(watch.pooled_floats(), 0);
    assert_eq!(pooled_floats(), 0, "the pool is emptied when the run ends");
}

#[test]
fn two_runs_on_two_threads_keep_separate_pools() {
    // Both runs are open at the same time: each gives a buffer back, then each looks at
    // what it can see and takes a buffer; neither may see or get the other's.
    let both_open = Arc::new(Barrier::new(2));
    let both_recycled = Arc::new(Barrier::new(2));
    let run_on_a_thread = |size: usize| {
        let (open, recycled) = (Arc::clone(&both_open), Arc::clone(&both_recycled));
        std::thread::spawn(move || {
            let run = run_guard();
            let watch = run.watch();
            open.wait();
            let v = vec![1.0f32; size];
            let ptr = v.as_ptr() as usize;
            recycle(v);
            recycled.wait();
            let seen = pooled_floats();
            let again = take(size).unwrap();
            let reused = again.as_ptr() as usize == ptr;
            drop(again);
            drop(run);
            (seen, reused, ptr, watch.is_freed(), watch.pooled_floats())
        })
    };
    // Different sizes, each within twice the other: a shared pool would hand either
    // buffer to either thread.
    let a = run_on_a_thread(BIG);
    let b = run_on_a_thread(BIG + BIG / 2);
    let (seen_a, reused_a, ptr_a, freed_a, left_a) = a.join().unwrap();
    let (seen_b, reused_b, ptr_b, freed_b, left_b) = b.join().unwrap();
    assert_ne!(ptr_a, ptr_b);
    assert!(
        (BIG..2 * BIG).contains(&seen_a),
        "thread a sees {seen_a} pooled floats: not just its own buffer"
    );
    assert!(
        (BIG + BIG / 2..2 * BIG).contains(&seen_b),
        "thread b sees {seen_b} pooled floats: not just its own buffer"
    );
    assert!(reused_a && reused_b, "each run reuses its own buffer");
    assert!(freed_a && freed_b, "a run's pool outlived the run");
    assert_eq!((left_a, left_b), (0, 0), "memory left after the runs ended");
}

#[test]
fn kernel_helpers_work_in_their_callers_run() {
    let run = run_guard();
    // Whichever thread runs a part (the caller or a pool helper), a buffer it gives back
    // lands in the caller's run.
    let parts: Vec<usize> = (0..8).collect();
    // Parts slow enough that the helpers wake up and claim some before the caller is done.
    par_map(parts, |_, _| {
        std::thread::sleep(std::time::Duration::from_millis(5));
        recycle(vec![0.0f32; BIG]);
    });
    assert_eq!(
        run.pooled_floats(),
        8 * BIG,
        "a part's buffer was freed instead of kept"
    );
    let watch = run.watch();
    drop(run);
    assert!(watch.is_freed());
}

#[test]
fn an_impossible_buffer_is_an_error_not_an_abort() {
    // 2^60 bytes: no machine has that, and the request must come back as an error.
    let floats = (1usize << 60) / std::mem::size_of::<f32>();
    for result in [take(floats), zeroed(floats)] {
        match result {
            Err(Error::ResourceLimit(msg)) => {
                assert!(msg.contains(&(1u64 << 60).to_string()), "{msg}");
            }
            other => panic!(
                "expected a resource-limit error, got {:?}",
                other.map(|v| v.len())
            ),
        }
    }
    let _run = run_guard();
    assert!(matches!(take(floats), Err(Error::ResourceLimit(_))));
}

#[test]
fn dropped_gradients_go_back_to_the_run_that_computed_them() {
    // A weight gradient big enough to be pooled; the step's loop drops it after the update.
    let (rows, cols) = (512, 256);
    let mut tape = Tape::new();
    let step = |tape: &mut Tape| {
        tape.clear();
        let w = tape.var(
            Tensor::from_vec(vec![0.01; rows * cols], &[rows, cols]).unwrap(),
            0,
        );
        let x = tape.constant(Tensor::from_vec(vec![1.0; 4 * cols], &[4, cols]).unwrap());
        let h = tape.linear(x, w, None).unwrap();
        let loss = tape.mean(h).unwrap();
        tape.backward(loss).unwrap()
    };
    let grads = step(&mut tape);
    assert_eq!(grads.get(0).unwrap().shape(), &[rows, cols]);
    let before = pooled_floats();
    drop(grads);
    assert!(
        pooled_floats() >= before + rows * cols,
        "the gradient's buffer was freed instead of kept: {before} -> {}",
        pooled_floats()
    );
    // The next step's gradient takes that buffer instead of asking the allocator.
    let kept = pooled_floats();
    let grads = step(&mut tape);
    assert!(
        pooled_floats() < kept + rows * cols,
        "the next step did not reuse it"
    );
    drop(grads);
    drop(tape);
    assert_eq!(pooled_floats(), 0, "the pool is emptied when the run ends");
}

#[test]
fn evaluation_passes_do_not_grow_the_pool() {
    // Inputs of 1200 values a row in batches of 64: each batch is 300 KiB, large enough to
    // be pooled. An evaluation pass that brought its batches from outside the pool left one
    // spare buffer behind per batch, and an adaptive ∇τ run repeats such passes.
    let spec = r#"{"format": "gradtau.model/1", "input": {"shape": [1200]},
        "nodes": [{"name": "fc", "op": "linear", "in_features": 1200, "out_features": 8}]}"#;
    let model = gradtau::nn::Model::from_json(spec).unwrap();
    let w = model.init_weights(0);
    let x = Tensor::from_vec(vec![0.5; 640 * 1200], &[640, 1200]).unwrap();
    let run = run_guard();
    model.predict(&w, &x, 64).unwrap();
    let after_one = run.pooled_floats();
    for _ in 0..5 {
        model.predict(&w, &x, 64).unwrap();
    }
    assert_eq!(
        run.pooled_floats(),
        after_one,
        "every pass left buffers behind in the run's pool"
    );
}
