//! The CPU buffer pool keeps memory only while a run is in progress. Its own test binary:
//! in the library's unit tests other threads hold runs open at any moment, so "no run left"
//! could not be checked there.

use gradtau::backend::cpu::pool::{pooled_floats, recycle, run_guard, take};
use gradtau::{Tape, Tensor};

const BIG: usize = 1 << 20;

#[test]
fn the_pool_holds_memory_only_during_a_run() {
    assert_eq!(pooled_floats(), 0, "nothing is pooled before any run");
    // Outside a run a buffer given back is freed, not kept.
    recycle(vec![0.0; BIG]);
    assert_eq!(pooled_floats(), 0, "kept a buffer outside any run");
    {
        let _run = run_guard();
        recycle(vec![0.0; BIG]);
        assert!(
            pooled_floats() >= BIG,
            "a run keeps the buffer it was given"
        );
        let again = take(BIG);
        assert_eq!(again.len(), BIG);
        assert_eq!(pooled_floats(), 0, "the kept buffer was handed out again");
        recycle(again);
        // A nested run (every tape holds one) keeps the pool until the outer run ends.
        let tape = Tape::new();
        let t = Tensor::from_vec(vec![1.0; BIG], &[BIG]).unwrap();
        t.recycle();
        drop(tape);
        assert!(pooled_floats() >= 2 * BIG);
    }
    assert_eq!(
        pooled_floats(),
        0,
        "the pool is emptied when the last run ends"
    );
}
