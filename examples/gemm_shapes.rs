//! Times the matrix products of the benchmark MLP's ∇τ step (784-256-256-10, 256 forget +
//! 256 retain rows in one pass) on both CPU GEMM engines: the default one (ours, where the
//! processor has AVX-512) and matrixmultiply (the reference path). Prints, per product, the
//! median and best of `REPS` runs in microseconds and GFLOP/s at the best, under the default
//! thread budget (`MATMUL_NUM_THREADS`). An argument keeps only the products whose name
//! contains it.
//!
//! ```text
//! MATMUL_NUM_THREADS=2 cargo run --release --example gemm_shapes
//! ```

use gradtau::backend::cpu::{matmul, simd, Transpose};
use gradtau::rng::Rng;
use std::time::Instant;

const REPS: usize = 201;

fn main() {
    let (no, yes) = (Transpose::No, Transpose::Yes);
    // (what, m, k, n, ta, tb): weights stored [out, in] as PyTorch's nn.Linear.
    let shapes = [
        ("fwd 1: x·W1ᵀ", 512, 784, 256, no, yes),
        ("fwd 2: h·W2ᵀ", 512, 256, 256, no, yes),
        ("dW1: dyᵀ·x", 256, 512, 784, yes, no),
        ("dW2: dyᵀ·h", 256, 512, 256, yes, no),
        ("dx2: dy·W2", 512, 256, 256, no, no),
        ("fwd 3: h·W3ᵀ", 512, 256, 10, no, yes),
        ("dW3: dyᵀ·h", 10, 512, 256, yes, no),
        ("dx3: dy·W3", 512, 10, 256, no, no),
        ("dWx: 240", 240, 512, 256, yes, no),
        ("dWy: 240 rows", 240, 512, 256, no, no),
        ("square 1024", 1024, 1024, 1024, no, no),
    ];
    // An argument keeps only the products whose name contains it.
    let only = std::env::args().nth(1).unwrap_or_default();
    let mut rng = Rng::new(7);
    println!("product                m    k    n   engine          median us   best us   GFLOP/s");
    for (what, m, k, n, ta, tb) in shapes {
        if !what.contains(&only) {
            continue;
        }
        let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
        let mut c = vec![0.0f32; m * n];
        for reference in [false, true] {
            simd::set_reference_mode(reference);
            let mut times = Vec::with_capacity(REPS);
            for _ in 0..REPS {
                let t = Instant::now();
                matmul(m, k, n, 1.0, &a, ta, &b, tb, 0.0, &mut c);
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
            times.sort_by(f64::total_cmp);
            let engine = if reference {
                "matrixmultiply"
            } else {
                "default"
            };
            let gflops = 2.0 * (m * k * n) as f64 / times[0] / 1e3;
            println!(
                "{what:<20} {m:>4} {k:>4} {n:>4}   {engine:<14} {:>10.1} {:>9.1} {:>9.1}",
                times[REPS / 2],
                times[0],
                gflops
            );
        }
        simd::set_reference_mode(false);
    }
}
