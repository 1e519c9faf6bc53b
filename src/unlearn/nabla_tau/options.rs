//! What a caller can set on a ∇τ run: [`NablaTauOptions`] (every field has a default, the
//! authors' where the mode follows them) and the [`NablaTauMode`] it runs in.

use crate::backend::DeviceRequest;
use crate::error::Result;
use crate::unlearn::train::{bad_option, check_lr, check_positive, check_weight_decay};
use crate::unlearn::OverlapPolicy;

/// Which variant of ∇τ to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NablaTauMode {
    /// The authors' recipe, faithfully.
    Paper,
    /// Distribution-matching target, non-decaying α, audit-based switch-off (default).
    #[default]
    Adaptive,
}

/// Options of ∇τ; every field has the authors' default and can be overridden.
#[derive(Clone, Debug, PartialEq)]
pub struct NablaTauOptions {
    pub mode: NablaTauMode,
    /// Forget and retain batch size. Default: 256 in paper mode; in adaptive mode 256 capped
    /// at half the forget set (at least 32), so small forget sets still get enough steps.
    pub batch_size: Option<usize>,
    /// AdamW learning rate at the first forget-epoch. Default: 1e-3 in paper mode; in
    /// adaptive mode 1e-3 × 10 × forget fraction, kept within [1e-3, 3e-3] (see
    /// [`adaptive_lr`](super::adaptive_lr)), and for random forgetting on a short run (under
    /// 300 planned steps) raised by up to 4× where the membership checks can see an
    /// overshoot, halving at each check that sees one (the run then goes back to the
    /// previous check's weights). A rate set here is used as given.
    pub lr: Option<f32>,
    pub weight_decay: f32,
    /// The learning rate decays linearly from 1× to this factor over the forget-epochs.
    pub lr_end_factor: f32,
    /// α₀; default 5/3 · |D_f| / (|D_f| + |D_r|), capped at 1 (paper mode) or 0.4
    /// (adaptive mode).
    pub alpha0: Option<f32>,
    /// Adaptive mode, random forgetting: the largest value the α controller may raise α to
    /// (default 0.8). Set it to α₀ to keep α on its fixed schedule.
    pub alpha_max: Option<f32>,
    /// E, the number of forget-epochs; default ⌊3 · retain batches / forget batches⌋, at
    /// least 1 (paper mode), or kept within [12, 50] (adaptive mode).
    pub epochs: Option<usize>,
    /// τ is recomputed every this many forget-epochs (paper mode; adaptive mode: every epoch).
    pub tau_every: usize,
    /// Run normalisation layers in training mode (default: evaluation mode).
    pub norm_training: bool,
    /// Adaptive mode: the smallest accuracy margin above 0.5 at which the membership test
    /// counts as unable to tell forget from reference data (the margin grows for small sets).
    pub stop_margin: f32,
    pub seed: u64,
    pub device: DeviceRequest,
    /// Keep partial progress after an error or cancellation.
    pub keep_partial: bool,
    /// Stop after this many steps (for benchmarks); the report says it was truncated.
    pub max_steps: Option<usize>,
    /// Whether the forget set may share samples with the retain set or the validation set
    /// (default: refused, see [`OverlapPolicy`]).
    pub overlap: OverlapPolicy,
}

impl Default for NablaTauOptions {
    fn default() -> Self {
        NablaTauOptions {
            mode: NablaTauMode::Adaptive,
            batch_size: None,
            lr: None,
            weight_decay: 0.01,
            lr_end_factor: 0.1,
            alpha0: None,
            alpha_max: None,
            epochs: None,
            tau_every: 5,
            norm_training: false,
            stop_margin: 0.01,
            seed: 0,
            device: DeviceRequest::Auto,
            keep_partial: false,
            max_steps: None,
            overlap: OverlapPolicy::Refuse,
        }
    }
}

impl NablaTauOptions {
    /// Checks every field (each run calls it first); errors name the field and its range.
    /// `alpha_max` is checked against the α₀ actually used once the schedule is derived.
    pub fn validate(&self) -> Result<()> {
        const O: &str = "nabla_tau";
        if let Some(b) = self.batch_size {
            check_positive(O, "batch_size", b)?;
        }
        if let Some(lr) = self.lr {
            check_lr(O, "lr", lr)?;
        }
        check_weight_decay(O, self.weight_decay)?;
        if !(self.lr_end_factor > 0.0 && self.lr_end_factor <= 1.0) {
            return Err(bad_option(
                O,
                "lr_end_factor",
                "in (0, 1]",
                self.lr_end_factor,
            ));
        }
        for (field, a) in [("alpha0", self.alpha0), ("alpha_max", self.alpha_max)] {
            if let Some(a) = a.filter(|a| !(0.0..=1.0).contains(a)) {
                return Err(bad_option(O, field, "in [0, 1]", a));
            }
        }
        if let (Some(a0), Some(am)) = (self.alpha0, self.alpha_max) {
            if am < a0 {
                let range = format!("in [alpha0, 1] = [{a0}, 1]");
                return Err(bad_option(O, "alpha_max", &range, am));
            }
        }
        if let Some(e) = self.epochs {
            check_positive(O, "epochs", e)?;
        }
        check_positive(O, "tau_every", self.tau_every)?;
        if !(0.0..0.5).contains(&self.stop_margin) {
            return Err(bad_option(
                O,
                "stop_margin",
                "in [0, 0.5)",
                self.stop_margin,
            ));
        }
        if let Some(m) = self.max_steps {
            check_positive(O, "max_steps", m)?;
        }
        Ok(())
    }

    /// The authors' recipe.
    pub fn paper() -> Self {
        NablaTauOptions {
            mode: NablaTauMode::Paper,
            ..Default::default()
        }
    }
}
