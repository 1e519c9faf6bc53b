//! Per-layer timing of the benchmark CNN's two convolutions (forward, weight gradient, input
//! gradient) at batch 128 and 256, under the default thread budget (`MATMUL_NUM_THREADS`).
//! The input gradient is the difference between a backward pass that needs the input and
//! one that does not. Prints the median and best of `REPS` runs in microseconds.
//!
//! ```text
//! MATMUL_NUM_THREADS=2 cargo run --release --example conv_layers
//! ```

use gradtau::ops::conv::Conv2dParams;
use gradtau::rng::Rng;
use gradtau::{Tape, Tensor};
use std::time::Instant;

const REPS: usize = 31;

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

fn main() -> gradtau::Result<()> {
    let p = Conv2dParams {
        stride: (1, 1),
        padding: (1, 1),
    };
    let mut rng = Rng::new(1);
    // (name, C_in, H, C_out)
    for (name, c, h, co) in [("conv1", 1, 28, 16), ("conv2", 16, 14, 32)] {
        for n in [128, 256] {
            let x = Tensor::randn(&[n, c, h, h], 1.0, &mut rng);
            let w = Tensor::randn(&[co, c, 3, 3], 0.3, &mut rng);
            let b = Tensor::randn(&[co], 0.1, &mut rng);
            let seed = Tensor::randn(&[n, co, h, h], 1.0, &mut rng);
            let (mut fwd, mut bw, mut bwx) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..REPS {
                for need_x in [false, true] {
                    let mut t = Tape::new();
                    let xv = if need_x {
                        t.var(x.clone(), 2)
                    } else {
                        t.constant(x.clone())
                    };
                    let wv = t.var(w.clone(), 0);
                    let bv = t.var(b.clone(), 1);
                    let t0 = Instant::now();
                    let y = t.conv2d(xv, wv, Some(bv), p)?;
                    let t1 = Instant::now();
                    let g = t.backward_with_seed(y, seed.clone())?;
                    let t2 = Instant::now();
                    std::hint::black_box(g);
                    fwd.push((t1 - t0).as_secs_f64() * 1e6);
                    if need_x {
                        bwx.push((t2 - t1).as_secs_f64() * 1e6);
                    } else {
                        bw.push((t2 - t1).as_secs_f64() * 1e6);
                    }
                }
            }
            let (fm, fb) = stats(fwd);
            let (wm, wb) = stats(bw);
            let (xm, xb) = stats(bwx);
            println!(
                "{name} n={n}: fwd {fm:.0} ({fb:.0})  dW+db {wm:.0} ({wb:.0})  dW+db+dX {xm:.0} ({xb:.0})  dX~{:.0} us  [median (best)]",
                xm - wm
            );
        }
    }
    Ok(())
}
