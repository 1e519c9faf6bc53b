//! Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay
//! (PyTorch's `torch.optim.SGD` update rule).

use super::Optimizer;
use crate::autograd::Gradients;
use crate::backend::cuda::SgdParams;
use crate::backend::Storage;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Hyper-parameters of SGD.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

impl SgdConfig {
    /// Plain SGD.
    pub fn new(lr: f32) -> Self {
        SgdConfig {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// SGD with optional momentum buffers.
pub struct Sgd {
    cfg: SgdConfig,
    /// Momentum buffers, on each parameter's device.
    buffers: Vec<Option<Tensor>>,
}

impl Sgd {
    /// Fails for Nesterov without momentum or with dampening (as PyTorch does).
    pub fn new(cfg: SgdConfig) -> Result<Self> {
        if cfg.nesterov && (cfg.momentum <= 0.0 || cfg.dampening != 0.0) {
            return Err(Error::invalid(
                "Nesterov momentum needs momentum > 0 and zero dampening",
            ));
        }
        Ok(Sgd {
            cfg,
            buffers: Vec::new(),
        })
    }
}

fn mixed(key: usize) -> Error {
    Error::invalid(format!(
        "sgd: parameter {key}, its gradient and its momentum buffer are not all on one device"
    ))
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &mut [Tensor], grads: &Gradients) -> Result<()> {
        if self.buffers.len() < params.len() {
            self.buffers.resize_with(params.len(), || None);
        }
        let c = self.cfg;
        for (key, g) in grads.iter() {
            let p = super::param_for(params, key, g, "sgd")?;
            let first = self.buffers[key].is_none();
            if c.momentum != 0.0 && first {
                self.buffers[key] = Some(p.zeros_like()?);
            }
            let buf = if c.momentum != 0.0 {
                self.buffers[key].as_mut().map(|b| b.storage_mut())
            } else {
                None
            };
            match (p.storage_mut(), g.storage(), buf) {
                (Storage::Cuda(p), Storage::Cuda(g), buf) => {
                    let buf = match buf {
                        Some(Storage::Cuda(b)) => Some(b),
                        None => None,
                        Some(Storage::Cpu(_)) => return Err(mixed(key)),
                    };
                    let params = SgdParams {
                        lr: c.lr,
                        momentum: c.momentum,
                        dampening: c.dampening,
                        weight_decay: c.weight_decay,
                        nesterov: c.nesterov,
                        first,
                    };
                    p.sgd_step(g, buf, params)?;
                }
                (Storage::Cpu(pd), Storage::Cpu(gd), None) => {
                    for (w, &gi) in pd.iter_mut().zip(gd) {
                        *w -= c.lr * (gi + c.weight_decay * *w);
                    }
                }
                (Storage::Cpu(pd), Storage::Cpu(gd), Some(Storage::Cpu(buf))) => {
                    for ((w, &gi), b) in pd.iter_mut().zip(gd).zip(buf.iter_mut()) {
                        let d = gi + c.weight_decay * *w;
                        *b = if first {
                            d
                        } else {
                            c.momentum * *b + (1.0 - c.dampening) * d
                        };
                        let step = if c.nesterov { d + c.momentum * *b } else { *b };
                        *w -= c.lr * step;
                    }
                }
                _ => return Err(mixed(key)),
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

    fn run(cfg: SgdConfig, steps: usize) -> f32 {
        // Quadratic f(w) = w²/2 has gradient w; start at 1.
        let mut p = vec![Tensor::from_slice(&[1.0], &[1]).unwrap()];
        let mut opt = Sgd::new(cfg).unwrap();
        for _ in 0..steps {
            let mut g = Gradients::default();
            g.set(0, p[0].clone());
            opt.step(&mut p, &g).unwrap();
        }
        p[0].item().unwrap()
    }

    #[test]
    fn plain_sgd_is_geometric() {
        // w_{t+1} = (1 - lr(1 + wd)) w_t
        let cfg = SgdConfig {
            weight_decay: 0.5,
            ..SgdConfig::new(0.1)
        };
        assert!((run(cfg, 3) - 0.85f32.powi(3)).abs() < 1e-6);
    }

    #[test]
    fn momentum_and_nesterov_match_hand_values() {
        // lr = 0.1, momentum 0.9 on f = w²/2 from w = 1:
        // step 1: b = 1, w = 0.9; step 2: g = 0.9, b = 0.9·1 + 0.9 = 1.8, w = 0.72
        let cfg = SgdConfig {
            momentum: 0.9,
            ..SgdConfig::new(0.1)
        };
        assert!((run(cfg, 2) - 0.72).abs() < 1e-6);
        // Nesterov: step 1: b = 1, step = 1 + 0.9 = 1.9, w = 0.81;
        // step 2: g = 0.81, b = 0.9 + 0.81 = 1.71, step = 0.81 + 1.539 = 2.349, w = 0.5751
        let cfg = SgdConfig {
            momentum: 0.9,
            nesterov: true,
            ..SgdConfig::new(0.1)
        };
        assert!((run(cfg, 2) - 0.5751).abs() < 1e-6);
        // dampening 0.5: step 2 b = 0.9 + 0.5·0.9 = 1.35, w = 0.9 - 0.135 = 0.765
        let cfg = SgdConfig {
            momentum: 0.9,
            dampening: 0.5,
            ..SgdConfig::new(0.1)
        };
        assert!((run(cfg, 2) - 0.765).abs() < 1e-6);
        assert!(Sgd::new(SgdConfig {
            nesterov: true,
            ..SgdConfig::new(0.1)
        })
        .is_err());
    }
}
