//! Learning-rate schedules: a factor applied to the base learning rate at each step.

/// How the learning rate evolves over `total_steps`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    /// Always the base rate.
    Constant,
    /// Linear interpolation of the factor from `start` to `end` over `total_steps`
    /// (PyTorch's `LinearLR`); stays at `end` afterwards.
    Linear {
        start: f32,
        end: f32,
        total_steps: usize,
    },
    /// Cosine annealing from the base rate down to `min_factor` times it over `total_steps`
    /// (PyTorch's `CosineAnnealingLR` with `eta_min = min_factor * lr`).
    Cosine { min_factor: f32, total_steps: usize },
}

impl LrSchedule {
    /// The multiplier of the base learning rate at `step` (0-based).
    pub fn factor(&self, step: usize) -> f32 {
        match *self {
            LrSchedule::Constant => 1.0,
            LrSchedule::Linear {
                start,
                end,
                total_steps,
            } => {
                if total_steps == 0 {
                    return end;
                }
                let t = (step.min(total_steps)) as f32 / total_steps as f32;
                start + (end - start) * t
            }
            LrSchedule::Cosine {
                min_factor,
                total_steps,
            } => {
                if total_steps == 0 {
                    return min_factor;
                }
                let t = (step.min(total_steps)) as f32 / total_steps as f32;
                min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (std::f32::consts::PI * t).cos())
            }
        }
    }

    /// The learning rate at `step` for base rate `base`.
    pub fn lr(&self, base: f32, step: usize) -> f32 {
        base * self.factor(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_hit_their_endpoints_and_midpoints() {
        assert_eq!(LrSchedule::Constant.lr(0.5, 100), 0.5);
        let lin = LrSchedule::Linear {
            start: 1.0,
            end: 0.1,
            total_steps: 10,
        };
        assert_eq!(lin.factor(0), 1.0);
        assert!((lin.factor(5) - 0.55).abs() < 1e-6);
        assert!((lin.factor(10) - 0.1).abs() < 1e-6);
        assert!((lin.factor(50) - 0.1).abs() < 1e-6);
        let cos = LrSchedule::Cosine {
            min_factor: 0.0,
            total_steps: 4,
        };
        assert_eq!(cos.factor(0), 1.0);
        assert!((cos.factor(2) - 0.5).abs() < 1e-6);
        assert!(cos.factor(4).abs() < 1e-6);
        assert!((cos.factor(1) - (0.5 + 0.5 * std::f32::consts::FRAC_1_SQRT_2)).abs() < 1e-6);
    }
}
