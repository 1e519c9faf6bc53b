//! What the task tests (text, regression) share: adaptive ∇τ at its defaults on the CPU, and
//! how a model is judged (the library's audit row plus the ROC AUC of "lower loss = member"
//! over the forget and test sets), and one scenario run against its retrained reference. Included by path
//! (`#[path = "common/judge.rs"] mod judge;`) so those tests do not compile the digits helpers.

use gradtau::audit::{audit_model, roc_auc, AuditRow, AuditSets};
use gradtau::data::Dataset;
use gradtau::nn::Model;
use gradtau::unlearn::{
    no_progress, train, Method, NablaTauOptions, RunReport, TrainRecipe, UnlearnSets,
};
use gradtau::{Device, DeviceRequest, Tensor};

/// Adaptive ∇τ with its default options on the CPU, on a copy of `original`.
pub fn nabla_tau_on_cpu(
    model: &Model,
    original: &[Tensor],
    sets: UnlearnSets<'_>,
) -> (Vec<Tensor>, RunReport) {
    let mut w = original.to_vec();
    let opts = NablaTauOptions {
        device: DeviceRequest::Exact(Device::Cpu),
        ..Default::default()
    };
    let rep = Method::NablaTau(opts)
        .run(model, &mut w, sets, &mut no_progress)
        .unwrap();
    (w, rep)
}

pub struct Judged {
    pub row: AuditRow,
    pub auc: f64,
}

pub fn judge(
    model: &Model,
    w: &[Tensor],
    retain: &Dataset,
    forget: &Dataset,
    test: &Dataset,
) -> Judged {
    let sets = AuditSets {
        retain,
        forget,
        test,
    };
    let row = audit_model(model, w, sets, 0).unwrap();
    let lf = model.losses(w, forget, 512).unwrap();
    let lt = model.losses(w, test, 512).unwrap();
    Judged {
        row,
        auc: roc_auc(&lf, &lt),
    }
}

/// One scenario: the original, a model retrained from scratch on `retain` alone with
/// `recipe`, and adaptive ∇τ from the original, each judged on the same sets.
pub struct Scenario {
    pub original: Judged,
    pub retrained: Judged,
    pub unlearned: Judged,
    pub report: RunReport,
}

impl Scenario {
    pub fn run(
        model: &Model,
        original: &[Tensor],
        sets: UnlearnSets<'_>,
        test: &Dataset,
        recipe: &TrainRecipe,
    ) -> Scenario {
        let mut retrained = model.init_weights(0);
        train(model, &mut retrained, sets.retain, recipe, &mut no_progress).unwrap();
        let (unlearned, report) = nabla_tau_on_cpu(model, original, sets);
        let judged = |w: &[Tensor]| judge(model, w, sets.retain, sets.forget, test);
        Scenario {
            original: judged(original),
            retrained: judged(&retrained),
            unlearned: judged(&unlearned),
            report,
        }
    }

    /// The share of the original→retrain gap in `f` that ∇τ closed (1 = retraining's value).
    pub fn closed(&self, f: fn(&Judged) -> f64) -> f64 {
        let o = f(&self.original);
        (o - f(&self.unlearned)) / (o - f(&self.retrained))
    }
}
