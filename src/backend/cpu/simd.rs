//! Elementwise maps and reductions over f32 slices.
//!
//! Each kernel is written once as a portable body. On x86-64 the same body is also compiled
//! with AVX2+FMA enabled and chosen at run time when the processor has them; the compiler
//! vectorises it to 8 lanes. Reductions are written with 8 independent accumulators so they
//! vectorise too (a plain running sum cannot be reordered by the compiler).
//!
//! [`set_reference_mode`] switches the calling thread to the reference path (the portable
//! body, and naive sequential loops for reductions), so tests can compare the two.

use std::cell::Cell;

thread_local! {
    static REFERENCE: Cell<bool> = const { Cell::new(false) };
}

/// Makes the SIMD kernels on this thread use the portable reference path (for tests).
pub fn set_reference_mode(on: bool) {
    REFERENCE.with(|r| r.set(on));
}

/// Whether this thread currently uses the reference path.
pub fn reference_mode() -> bool {
    REFERENCE.with(|r| r.get())
}

/// Whether the processor offers AVX2 and FMA (detected once).
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
        });
        *HAS
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Name of the path the kernels take on this thread, for benchmarks and logs.
pub fn active_path() -> &'static str {
    if reference_mode() {
        "reference"
    } else if has_avx2_fma() {
        "avx2+fma"
    } else {
        "portable"
    }
}

/// Defines `pub fn $name(args)` from one body: AVX2+FMA build when available, portable
/// otherwise, and `$reference` (an expression over the same args) in reference mode.
macro_rules! kernel {
    ($(#[$m:meta])* fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
     reference $reference:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
            if reference_mode() {
                return $reference;
            }
            #[cfg(target_arch = "x86_64")]
            if has_avx2_fma() {
                // SAFETY: the processor supports AVX2 and FMA (checked just above).
                return unsafe { avx2($($arg),*) };
            }
            body($($arg),*)
        }
    };
}

const LANES: usize = 8;

kernel! {
    /// `out[i] = a[i] + b[i]`
    fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
        for ((o, x), y) in out.iter_mut().zip(a).zip(b) { *o = x + y; }
    }
    reference { for i in 0..out.len() { out[i] = a[i] + b[i]; } }
}

kernel! {
    /// `out[i] = a[i] * b[i]`
    fn mul(a: &[f32], b: &[f32], out: &mut [f32]) {
        for ((o, x), y) in out.iter_mut().zip(a).zip(b) { *o = x * y; }
    }
    reference { for i in 0..out.len() { out[i] = a[i] * b[i]; } }
}

kernel! {
    /// `out[i] = s * x[i]`
    fn scale(x: &[f32], s: f32, out: &mut [f32]) {
        for (o, v) in out.iter_mut().zip(x) { *o = s * v; }
    }
    reference { for i in 0..out.len() { out[i] = s * x[i]; } }
}

kernel! {
    /// `y[i] += a * x[i]`
    fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        for (o, v) in y.iter_mut().zip(x) { *o = a.mul_add(*v, *o); }
    }
    reference { for i in 0..y.len() { y[i] += a * x[i]; } }
}

kernel! {
    /// `y[i] += x[i]`
    fn add_assign(y: &mut [f32], x: &[f32]) {
        for (o, v) in y.iter_mut().zip(x) { *o += v; }
    }
    reference { for i in 0..y.len() { y[i] += x[i]; } }
}

kernel! {
    /// `out[i] = max(x[i], 0)`
    fn relu(x: &[f32], out: &mut [f32]) {
        for (o, v) in out.iter_mut().zip(x) { *o = if *v > 0.0 { *v } else { 0.0 }; }
    }
    reference { for i in 0..out.len() { out[i] = if x[i] > 0.0 { x[i] } else { 0.0 }; } }
}

kernel! {
    /// `out[i] = g[i]` where `x[i] > 0`, else 0
    fn relu_backward(x: &[f32], g: &[f32], out: &mut [f32]) {
        for ((o, v), d) in out.iter_mut().zip(x).zip(g) { *o = if *v > 0.0 { *d } else { 0.0 }; }
    }
    reference { for i in 0..out.len() { out[i] = if x[i] > 0.0 { g[i] } else { 0.0 }; } }
}

kernel! {
    /// Sum of all elements.
    fn sum(x: &[f32]) -> f32 {
        let mut acc = [0.0f32; LANES];
        let chunks = x.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks { for l in 0..LANES { acc[l] += c[l]; } }
        let mut s = 0.0f32;
        for v in rest { s += v; }
        acc.iter().sum::<f32>() + s
    }
    reference { let mut s = 0.0f32; for v in x { s += v; } s }
}

kernel! {
    /// Dot product.
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let mut acc = [0.0f32; LANES];
        let full = n / LANES * LANES;
        for (ca, cb) in a[..full].chunks_exact(LANES).zip(b[..full].chunks_exact(LANES)) {
            for l in 0..LANES { acc[l] = ca[l].mul_add(cb[l], acc[l]); }
        }
        let mut s = 0.0f32;
        for i in full..n { s += a[i] * b[i]; }
        acc.iter().sum::<f32>() + s
    }
    reference { let mut s = 0.0f32; for i in 0..a.len().min(b.len()) { s += a[i] * b[i]; } s }
}

kernel! {
    /// Largest element (`-inf` for an empty slice; NaN propagates as "not larger").
    fn max(x: &[f32]) -> f32 {
        let mut acc = [f32::NEG_INFINITY; LANES];
        let chunks = x.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks { for l in 0..LANES { acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] }; } }
        let mut m = f32::NEG_INFINITY;
        for &v in acc.iter().chain(rest) { if v > m { m = v; } }
        m
    }
    reference { let mut m = f32::NEG_INFINITY; for &v in x { if v > m { m = v; } } m }
}

kernel! {
    /// One AdamW (or Adam, with `decoupled_wd = 0`) update of `p` in place.
    /// `l2_wd` adds `l2_wd * p` to the gradient first (Adam's coupled weight decay).
    fn adam_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], lr: f32, beta1: f32,
                   beta2: f32, eps: f32, l2_wd: f32, decoupled_wd: f32, bc1: f32, bc2_sqrt: f32) {
        let step = lr / bc1;
        let shrink = 1.0 - lr * decoupled_wd;
        for (((pi, gi), mi), vi) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let grad = l2_wd.mul_add(*pi, *gi);
            *mi = beta1.mul_add(*mi, (1.0 - beta1) * grad);
            *vi = beta2.mul_add(*vi, (1.0 - beta2) * grad * grad);
            let denom = vi.sqrt() / bc2_sqrt + eps;
            *pi = *pi * shrink - step * *mi / denom;
        }
    }
    reference {
        for i in 0..p.len() {
            let grad = g[i] + l2_wd * p[i];
            m[i] = beta1 * m[i] + (1.0 - beta1) * grad;
            v[i] = beta2 * v[i] + (1.0 - beta2) * grad * grad;
            let denom = v[i].sqrt() / bc2_sqrt + eps;
            p[i] = p[i] * (1.0 - lr * decoupled_wd) - (lr / bc1) * m[i] / denom;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn both<T>(f: impl Fn() -> T) -> (T, T) {
        set_reference_mode(true);
        let r = f();
        set_reference_mode(false);
        (f(), r)
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn simd_matches_reference_on_awkward_lengths() {
        let mut r = Rng::new(11);
        for &n in &[0usize, 1, 7, 8, 9, 15, 16, 17, 63, 100, 1023] {
            let a: Vec<f32> = (0..n).map(|_| r.normal()).collect();
            let b: Vec<f32> = (0..n).map(|_| r.normal()).collect();
            let (f, s) = both(|| {
                let mut o = vec![0.0; n];
                add(&a, &b, &mut o);
                o
            });
            close(&f, &s, 0.0);
            let (f, s) = both(|| {
                let mut o = vec![0.0; n];
                mul(&a, &b, &mut o);
                o
            });
            close(&f, &s, 0.0);
            let (f, s) = both(|| {
                let mut o = vec![0.0; n];
                scale(&a, -1.5, &mut o);
                o
            });
            close(&f, &s, 0.0);
            let (f, s) = both(|| {
                let mut o = b.clone();
                axpy(0.3, &a, &mut o);
                o
            });
            close(&f, &s, 1e-6);
            let (f, s) = both(|| {
                let mut o = b.clone();
                add_assign(&mut o, &a);
                o
            });
            close(&f, &s, 0.0);
            let (f, s) = both(|| {
                let mut o = vec![0.0; n];
                relu(&a, &mut o);
                o
            });
            close(&f, &s, 0.0);
            let (f, s) = both(|| {
                let mut o = vec![0.0; n];
                relu_backward(&a, &b, &mut o);
                o
            });
            close(&f, &s, 0.0);
            let (f, s) = both(|| sum(&a));
            assert!((f - s).abs() <= 1e-4 * (1.0 + n as f32), "sum {f} {s}");
            let (f, s) = both(|| dot(&a, &b));
            assert!((f - s).abs() <= 1e-4 * (1.0 + n as f32), "dot {f} {s}");
            let (f, s) = both(|| max(&a));
            assert_eq!(f, s);
            let (f, s) = both(|| {
                let (mut p, mut m, mut v) = (a.clone(), vec![0.1; n], vec![0.2; n]);
                adam_update(
                    &mut p, &b, &mut m, &mut v, 1e-2, 0.9, 0.999, 1e-8, 0.0, 0.01, 0.1, 0.0316,
                );
                [p, m, v].concat()
            });
            close(&f, &s, 1e-5);
        }
    }

    #[test]
    fn hand_values() {
        let mut o = vec![0.0; 3];
        add(&[1.0, 2.0, 3.0], &[0.5, -2.0, 1.0], &mut o);
        assert_eq!(o, vec![1.5, 0.0, 4.0]);
        relu(&[-1.0, 0.0, 2.0], &mut o);
        assert_eq!(o, vec![0.0, 0.0, 2.0]);
        assert_eq!(sum(&[1.0; 10]), 10.0);
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
        assert_eq!(max(&[1.0, 9.0, -3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 2.0]), 9.0);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
    }
}
