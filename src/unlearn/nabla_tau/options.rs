//! What a caller can set on a ∇τ run: [`NablaTauOptions`] (every field has a default, the
//! authors' where the mode follows them) and the [`NablaTauMode`] it runs in.

use crate::backend::DeviceRequest;

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
    /// [`adaptive_lr`](super::adaptive_lr)).
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
        }
    }
}

impl NablaTauOptions {
    /// The authors' recipe.
    pub fn paper() -> Self {
        NablaTauOptions {
            mode: NablaTauMode::Paper,
            ..Default::default()
        }
    }
}
