//! How forgetting is judged (DESIGN.md section 3): accuracy on each set, and the
//! membership-inference attack (MIA) of the ∇τ paper — a logistic regression that tries to
//! tell forget-set samples from test samples by their per-sample loss (or softmax entropy).
//! A score near 0.5 means the attacker cannot tell them apart, which is what a model
//! retrained without the forget set gives.

pub mod logistic;
pub mod metrics;
pub mod mia;
pub mod report;

pub use logistic::{fit_logistic, LogisticFit};
pub use metrics::{accuracy, per_sample_loss, softmax_entropy};
pub use mia::{mia_from_logits, mia_score, MiaFeature, MiaOptions, MiaResult};
pub use report::{audit_model, AuditRow, AuditSets};
