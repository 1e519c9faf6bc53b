//! Adam and AdamW (PyTorch's formulas: bias-corrected moments; Adam adds `wd * p` to the
//! gradient, AdamW shrinks the weights by `1 - lr * wd` before the update).

use super::Optimizer;
use crate::autograd::Gradients;
use crate::backend::cpu::{parallel, simd};
use crate::backend::cuda::AdamParams;
use crate::backend::Storage;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Below this many values a parameter is updated on the calling thread alone.
const PARALLEL_MIN: usize = 1 << 16;
/// Values per part of a parallel update: long enough that claiming a part costs nothing.
const PART: usize = 1 << 14;

/// One update of a host parameter, cut into parts run under the caller's thread budget.
/// Every value's update reads only that value's own state, so the bits do not depend on
/// how it is cut. On the benchmark MLP the update had run on the calling thread alone while
/// the other kernel thread idled: 6.6 % of the calling thread's samples in a ∇τ run.
fn adam_update_cpu(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: AdamParams) {
    let update = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
        simd::adam_update(
            p,
            g,
            m,
            v,
            c.lr,
            c.beta1,
            c.beta2,
            c.eps,
            c.l2_weight_decay,
            c.decoupled_weight_decay,
            c.bias_correction1,
            c.bias_correction2_sqrt,
        )
    };
    if p.len() < PARALLEL_MIN || parallel::thread_limit() <= 1 {
        return update(p, g, m, v);
    }
    let parts: Vec<_> = p
        .chunks_mut(PART)
        .zip(g.chunks(PART))
        .zip(m.chunks_mut(PART))
        .zip(v.chunks_mut(PART))
        .collect();
    parallel::par_map(parts, |_, (((p, g), m), v)| update(p, g, m, v));
}

/// Hyper-parameters of Adam / AdamW.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// `true` for AdamW's decoupled weight decay, `false` for Adam's L2 penalty.
    pub decoupled: bool,
}

impl AdamConfig {
    /// PyTorch's `torch.optim.Adam` defaults.
    pub fn adam(lr: f32) -> Self {
        AdamConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }

    /// PyTorch's `torch.optim.AdamW` defaults (weight decay 0.01).
    pub fn adamw(lr: f32) -> Self {
        AdamConfig {
            weight_decay: 0.01,
            decoupled: true,
            ..Self::adam(lr)
        }
    }
}

/// Moment buffers live on the parameter's device, so a CUDA step never leaves the GPU.
struct Slot {
    m: Tensor,
    v: Tensor,
    t: u32,
}

/// Adam or AdamW with per-parameter moment buffers.
pub struct Adam {
    cfg: AdamConfig,
    slots: Vec<Option<Slot>>,
}

impl Adam {
    pub fn new(cfg: AdamConfig) -> Self {
        Adam {
            cfg,
            slots: Vec::new(),
        }
    }

    pub fn config(&self) -> &AdamConfig {
        &self.cfg
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &mut [Tensor], grads: &Gradients) -> Result<()> {
        if self.slots.len() < params.len() {
            self.slots.resize_with(params.len(), || None);
        }
        let c = self.cfg;
        for (key, g) in grads.iter() {
            let p = super::param_for(params, key, g, "adam")?;
            let slot = match &mut self.slots[key] {
                Some(slot) => slot,
                empty => empty.insert(Slot {
                    m: p.zeros_like()?,
                    v: p.zeros_like()?,
                    t: 0,
                }),
            };
            slot.t += 1;
            let (l2, decoupled) = if c.decoupled {
                (0.0, c.weight_decay)
            } else {
                (c.weight_decay, 0.0)
            };
            let params = AdamParams {
                lr: c.lr,
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                l2_weight_decay: l2,
                decoupled_weight_decay: decoupled,
                bias_correction1: 1.0 - c.beta1.powi(slot.t as i32),
                bias_correction2_sqrt: (1.0 - c.beta2.powi(slot.t as i32)).sqrt(),
            };
            let storages = (
                p.storage_mut(),
                g.storage(),
                slot.m.storage_mut(),
                slot.v.storage_mut(),
            );
            match storages {
                (Storage::Cuda(p), Storage::Cuda(g), Storage::Cuda(m), Storage::Cuda(v)) => {
                    p.adam_step(g, m, v, params)?
                }
                (Storage::Cpu(p), Storage::Cpu(g), Storage::Cpu(m), Storage::Cpu(v)) => {
                    adam_update_cpu(p, g, m, v, params)
                }
                _ => {
                    return Err(Error::invalid(format!(
                        "adam: parameter {key}, its gradient and its moments are not all on \
                         one device"
                    )))
                }
            }
        }
        Ok(())
    }

    fn lr(&self) -> f32 {
        self.cfg.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.cfg.lr = lr;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grads(v: &[f32]) -> Gradients {
        let mut g = Gradients::default();
        g.set(0, Tensor::from_slice(v, &[v.len()]).unwrap());
        g
    }

    #[test]
    fn a_large_parameter_gets_the_same_bits_at_every_thread_count() {
        use crate::backend::cpu::with_thread_limit;
        use crate::rng::Rng;
        let n = 3 * PART + PARALLEL_MIN + 5;
        let mut rng = Rng::new(3);
        let start = Tensor::randn(&[n], 1.0, &mut rng);
        let gs: Vec<Gradients> = (0..3)
            .map(|_| grads(&Tensor::randn(&[n], 1.0, &mut rng).to_vec().unwrap()))
            .collect();
        let run = |threads: usize| {
            with_thread_limit(threads, || {
                let mut p = vec![start.clone()];
                let mut opt = Adam::new(AdamConfig {
                    weight_decay: 0.01,
                    ..AdamConfig::adamw(1e-2)
                });
                for g in &gs {
                    opt.step(&mut p, g).unwrap();
                }
                p[0].to_vec().unwrap()
            })
        };
        let one: Vec<u32> = run(1).iter().map(|x| x.to_bits()).collect();
        assert_ne!(run(1), start.to_vec().unwrap());
        for threads in [2, 3, 4] {
            let bits: Vec<u32> = run(threads).iter().map(|x| x.to_bits()).collect();
            assert!(bits == one, "{threads} threads");
        }
    }

    #[test]
    fn first_step_moves_each_weight_by_lr_times_sign() {
        // With bias correction, step 1 gives m̂ = g, v̂ = g², so Δ = -lr·g/(|g| + eps).
        let mut p = vec![Tensor::from_slice(&[1.0, -2.0, 0.5], &[3]).unwrap()];
        let mut opt = Adam::new(AdamConfig::adam(0.1));
        opt.step(&mut p, &grads(&[0.3, -4.0, 0.0])).unwrap();
        let got = p[0].to_vec().unwrap();
        let want = [1.0 - 0.1 * 0.3 / (0.3 + 1e-8), -2.0 + 0.1, 0.5];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn several_steps_match_closed_form() {
        // Constant gradient g: m_t = g(1-b1^t), v_t = g²(1-b2^t), so m̂ = g, v̂ = g² every
        // step and each step moves by -lr·g/(|g|+eps); AdamW also shrinks by (1 - lr·wd).
        let (lr, wd, g) = (0.01f32, 0.1f32, 2.0f32);
        let mut p = vec![Tensor::from_slice(&[3.0], &[1]).unwrap()];
        let mut opt = Adam::new(AdamConfig {
            weight_decay: wd,
            ..AdamConfig::adamw(lr)
        });
        let mut want = 3.0f64;
        for _ in 0..5 {
            opt.step(&mut p, &grads(&[g])).unwrap();
            want = want * (1.0 - (lr * wd) as f64) - lr as f64 * (g as f64 / (g as f64 + 1e-8));
        }
        assert!((p[0].item().unwrap() as f64 - want).abs() < 1e-5);

        // Adam's coupled decay: the gradient becomes g + wd·p, which varies; check step 1.
        let mut p = vec![Tensor::from_slice(&[3.0], &[1]).unwrap()];
        let mut opt = Adam::new(AdamConfig {
            weight_decay: wd,
            ..AdamConfig::adam(lr)
        });
        opt.step(&mut p, &grads(&[g])).unwrap();
        assert!((p[0].item().unwrap() - (3.0 - lr)).abs() < 1e-6);
    }

    #[test]
    fn second_step_with_changing_gradient() {
        // Hand-computed: g1 = 1, g2 = -1, b1 = 0.9, b2 = 0.999, lr = 1.
        // m2 = 0.9·0.1 - 0.1 = -0.01, v2 = 0.999·0.001 + 0.001 = 0.001999
        // m̂ = -0.01/0.19, v̂ = 0.001999/0.001999 = 1 → Δ2 = +0.0526316
        let mut p = vec![Tensor::from_slice(&[0.0], &[1]).unwrap()];
        let mut opt = Adam::new(AdamConfig::adam(1.0));
        opt.step(&mut p, &grads(&[1.0])).unwrap();
        assert!((p[0].item().unwrap() + 1.0).abs() < 1e-6);
        opt.step(&mut p, &grads(&[-1.0])).unwrap();
        assert!(
            (p[0].item().unwrap() - (-1.0 + 0.01 / 0.19)).abs() < 1e-5,
            "{}",
            p[0].item().unwrap()
        );
    }

    #[test]
    fn rejects_mismatched_gradient() {
        let mut p = vec![Tensor::zeros(&[2])];
        let mut opt = Adam::new(AdamConfig::adamw(0.1));
        assert!(opt.step(&mut p, &grads(&[1.0, 2.0, 3.0])).is_err());
        let mut g = Gradients::default();
        g.set(3, Tensor::zeros(&[2]));
        assert!(opt.step(&mut p, &g).is_err());
    }
}
