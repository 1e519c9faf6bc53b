//! What the task tests (text, regression) share: adaptive ∇τ at its defaults on the CPU, and
//! how a model is judged (the library's audit row plus the ROC AUC of "lower loss = member"
//! over the forget and test sets). Included by path
//! (`#[path = "common/judge.rs"] mod judge;`) so those tests do not compile the digits helpers.

use gradtau::audit::{audit_model, roc_auc, AuditRow, AuditSets};
use gradtau::data::Dataset;
use gradtau::nn::Model;
use gradtau::unlearn::{no_progress, Method, NablaTauOptions, RunReport, UnlearnSets};
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
