//! Pointwise activations: relu, gelu (erf and tanh forms), tanh, sigmoid.

use super::host;
use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::backend::cpu::pool::try_alloc;
use crate::backend::cpu::{parallel, simd};
use crate::backend::Storage;
use crate::error::Result;
use crate::tensor::Tensor;

/// ReLU's forward and backward passes split tensors of at least this many values between the
/// kernel threads, in chunks of [`RELU_CHUNK`]. On the benchmark MLP the passes over its
/// [512, 256] activations ran on the calling thread alone, 3 to 4 % of a whole ∇τ run's
/// samples, while the other kernel thread waited for the next product. Each value depends on
/// its own inputs only, so the bits do not depend on the split.
const RELU_PARALLEL_MIN: usize = 1 << 16;
const RELU_CHUNK: usize = 1 << 14;

/// `out = max(x, 0)`, on the kernel threads for large tensors.
fn relu_into(x: &[f32], out: &mut [f32]) {
    parallel::par_chunks_mut(out, RELU_CHUNK, RELU_PARALLEL_MIN, |i, o| {
        let start = i * RELU_CHUNK;
        simd::relu(&x[start..start + o.len()], o);
    });
}

/// `out = g` where `x > 0`, else 0, on the kernel threads for large tensors.
fn relu_backward_into(x: &[f32], g: &[f32], out: &mut [f32]) {
    parallel::par_chunks_mut(out, RELU_CHUNK, RELU_PARALLEL_MIN, |i, o| {
        let r = i * RELU_CHUNK..i * RELU_CHUNK + o.len();
        simd::relu_backward(&x[r.clone()], &g[r], o);
    });
}

/// Which formula GELU uses (PyTorch's `approximate="none"` or `"tanh"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GeluApprox {
    /// `0.5 x (1 + erf(x / sqrt 2))`
    #[default]
    Erf,
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`
    Tanh,
}

/// The error function, accurate to about 1e-7 absolute (Abramowitz & Stegun 7.1.26 in f64).
pub fn erf(x: f64) -> f64 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    sign * (1.0 - poly * (-x * x).exp())
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const INV_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

fn gelu_value(x: f32, approx: GeluApprox) -> f32 {
    let x = x as f64;
    (match approx {
        GeluApprox::Erf => 0.5 * x * (1.0 + erf(x * INV_SQRT_2)),
        GeluApprox::Tanh => 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh()),
    }) as f32
}

fn gelu_derivative(x: f32, approx: GeluApprox) -> f32 {
    let x = x as f64;
    (match approx {
        GeluApprox::Erf => {
            0.5 * (1.0 + erf(x * INV_SQRT_2)) + x * INV_SQRT_2PI * (-0.5 * x * x).exp()
        }
        GeluApprox::Tanh => {
            let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
            let t = u.tanh();
            0.5 * (1.0 + t)
                + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044_715 * x * x)
        }
    }) as f32
}

fn sigmoid_value(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn map(x: &Tensor, op: &'static str, f: impl Fn(f32) -> f32) -> Result<Tensor> {
    let d = host(x, op)?;
    let mut out = try_alloc(d.len(), op)?;
    out.extend(d.iter().map(|&v| f(v)));
    Ok(Tensor::cpu(out, x.shape().to_vec()))
}

#[derive(Clone, Copy)]
enum Kind {
    Relu,
    Gelu(GeluApprox),
    Tanh,
    Sigmoid,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Relu => "relu",
            Kind::Gelu(_) => "gelu",
            Kind::Tanh => "tanh",
            Kind::Sigmoid => "sigmoid",
        }
    }

    /// The CUDA kernels (forward, backward) in `kernels/activation.cu`.
    fn kernels(self) -> (&'static str, &'static str) {
        match self {
            Kind::Relu => ("relu_fwd", "relu_bwd"),
            Kind::Gelu(GeluApprox::Erf) => ("gelu_erf_fwd", "gelu_erf_bwd"),
            Kind::Gelu(GeluApprox::Tanh) => ("gelu_tanh_fwd", "gelu_tanh_bwd"),
            Kind::Tanh => ("tanh_fwd", "tanh_bwd"),
            Kind::Sigmoid => ("sigmoid_fwd", "sigmoid_bwd"),
        }
    }

    /// tanh and sigmoid derivatives are cheapest in terms of the output y.
    fn backward_from_output(self) -> bool {
        matches!(self, Kind::Tanh | Kind::Sigmoid)
    }

    fn forward(self, x: &Tensor) -> Result<Tensor> {
        if let Storage::Cuda(s) = x.storage() {
            return Ok(Tensor::from_cuda(
                s.unary(self.kernels().0, 0.0)?,
                x.shape().to_vec(),
            ));
        }
        match self {
            Kind::Relu => {
                let d = host(x, "relu")?;
                let mut out = crate::backend::cpu::pool::take(d.len())?;
                relu_into(d, &mut out);
                Ok(Tensor::cpu(out, x.shape().to_vec()))
            }
            Kind::Gelu(a) => map(x, "gelu", |v| gelu_value(v, a)),
            Kind::Tanh => map(x, "tanh", f32::tanh),
            Kind::Sigmoid => map(x, "sigmoid", sigmoid_value),
        }
    }
}

/// `max(x, 0)`.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    Kind::Relu.forward(x)
}

/// GELU in the chosen form.
pub fn gelu(x: &Tensor, approx: GeluApprox) -> Result<Tensor> {
    Kind::Gelu(approx).forward(x)
}

/// Hyperbolic tangent.
pub fn tanh(x: &Tensor) -> Result<Tensor> {
    Kind::Tanh.forward(x)
}

/// Logistic sigmoid, computed without overflow for large |x|.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Kind::Sigmoid.forward(x)
}

struct ActivationBackward(Kind);
impl BackwardOp for ActivationBackward {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        let name = self.name();
        let saved = if self.0.backward_from_output() {
            c.output
        } else {
            c.inputs[0]
        };
        if let (Storage::Cuda(s), Storage::Cuda(g)) = (saved.storage(), c.grad.storage()) {
            let out = s.unary_backward(g, self.0.kernels().1, 0.0)?;
            return Ok(vec![Some(Tensor::from_cuda(out, c.grad.shape().to_vec()))]);
        }
        let g = host(c.grad, name)?;
        let mut out = crate::backend::cpu::pool::take(g.len())?;
        match self.0 {
            Kind::Relu => relu_backward_into(host(c.inputs[0], name)?, g, &mut out),
            Kind::Gelu(a) => {
                let x = host(c.inputs[0], name)?;
                for ((o, &xi), &gi) in out.iter_mut().zip(x).zip(g) {
                    *o = gi * gelu_derivative(xi, a);
                }
            }
            // Both derivatives are cheapest in terms of the output y.
            Kind::Tanh => {
                let y = host(c.output, name)?;
                for ((o, &yi), &gi) in out.iter_mut().zip(y).zip(g) {
                    *o = gi * (1.0 - yi * yi);
                }
            }
            Kind::Sigmoid => {
                let y = host(c.output, name)?;
                for ((o, &yi), &gi) in out.iter_mut().zip(y).zip(g) {
                    *o = gi * yi * (1.0 - yi);
                }
            }
        }
        Ok(vec![Some(Tensor::cpu(out, c.grad.shape().to_vec()))])
    }
}

impl Tape {
    fn activation(&mut self, x: Var, kind: Kind) -> Result<Var> {
        let out = kind.forward(self.value(x))?;
        Ok(self.push(out, &[x], || Box::new(ActivationBackward(kind))))
    }

    /// `max(x, 0)`; the gradient at exactly 0 is taken as 0 (as PyTorch does).
    pub fn relu(&mut self, x: Var) -> Result<Var> {
        self.activation(x, Kind::Relu)
    }

    /// GELU in the chosen form.
    pub fn gelu(&mut self, x: Var, approx: GeluApprox) -> Result<Var> {
        self.activation(x, Kind::Gelu(approx))
    }

    /// Hyperbolic tangent.
    pub fn tanh(&mut self, x: Var) -> Result<Var> {
        self.activation(x, Kind::Tanh)
    }

    /// Logistic sigmoid.
    pub fn sigmoid(&mut self, x: Var) -> Result<Var> {
        self.activation(x, Kind::Sigmoid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check_gradients, GradCheck};

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn forward_hand_values() {
        let x = Tensor::from_slice(&[-2.0, 0.0, 1.0], &[3]).unwrap();
        assert_eq!(relu(&x).unwrap().to_vec().unwrap(), vec![0.0, 0.0, 1.0]);
        let g = gelu(&x, GeluApprox::Erf).unwrap().to_vec().unwrap();
        // PyTorch: gelu([-2, 0, 1]) = [-0.0455003, 0, 0.8413447]
        assert!(
            close(g[0], -0.045_500_3) && g[1] == 0.0 && close(g[2], 0.841_344_7),
            "{g:?}"
        );
        let g = gelu(&x, GeluApprox::Tanh).unwrap().to_vec().unwrap();
        // PyTorch tanh form: [-0.0454023, 0, 0.8411920]
        assert!(close(g[0], -0.045_402_3) && close(g[2], 0.841_192), "{g:?}");
        let s = sigmoid(&x).unwrap().to_vec().unwrap();
        assert!(close(s[0], 0.119_202_92) && close(s[1], 0.5) && close(s[2], 0.731_058_6));
        let big = sigmoid(&Tensor::from_slice(&[-1000.0, 1000.0], &[2]).unwrap()).unwrap();
        assert_eq!(big.to_vec().unwrap(), vec![0.0, 1.0]);
        let t = tanh(&x).unwrap().to_vec().unwrap();
        assert!(close(t[0], -0.964_027_6) && close(t[2], 0.761_594_2));
        assert!((erf(0.5) - 0.520_499_877_8).abs() < 2e-7);
    }

    #[test]
    fn large_relus_are_split_between_threads_with_the_same_values() {
        let n = RELU_PARALLEL_MIN + 3 * RELU_CHUNK + 5;
        let mut rng = crate::rng::Rng::new(3);
        let xs: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        let gs: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        let run = || {
            let mut tape = Tape::new();
            let x = tape.var(Tensor::from_slice(&xs, &[n]).unwrap(), 0);
            let y = tape.relu(x).unwrap();
            let out = tape.value(y).to_vec().unwrap();
            let seed = Tensor::from_slice(&gs, &[n]).unwrap();
            let grads = tape.backward_with_seed(y, seed).unwrap();
            (out, grads.get(0).unwrap().to_vec().unwrap())
        };
        let (two_y, two_g) = parallel::with_thread_limit(2, run);
        let (one_y, one_g) = parallel::with_thread_limit(1, run);
        for i in 0..n {
            let want = if xs[i] > 0.0 {
                (xs[i], gs[i])
            } else {
                (0.0, 0.0)
            };
            assert_eq!((two_y[i], two_g[i]), want, "value {i}");
        }
        assert_eq!((one_y, one_g), (two_y, two_g));
    }

    #[test]
    fn gradients_match_finite_differences() {
        let cfg = GradCheck {
            min_abs: 0.05,
            ..Default::default()
        };
        for shape in [&[1usize][..], &[7], &[3, 9], &[2, 3, 5, 5]] {
            check_gradients(&[shape], cfg, |t, v| t.relu(v[0]));
            check_gradients(&[shape], cfg, |t, v| t.gelu(v[0], GeluApprox::Erf));
            check_gradients(&[shape], cfg, |t, v| t.gelu(v[0], GeluApprox::Tanh));
            check_gradients(&[shape], cfg, |t, v| t.tanh(v[0]));
            check_gradients(&[shape], cfg, |t, v| t.sigmoid(v[0]));
        }
    }
}
