//! How the task tests (text, regression) judge a model: the library's audit row plus the ROC
//! AUC of "lower loss = member" over the forget and test sets. Included by path
//! (`#[path = "common/judge.rs"] mod judge;`) so those tests do not compile the digits helpers.

use gradtau::audit::{audit_model, roc_auc, AuditRow, AuditSets};
use gradtau::data::Dataset;
use gradtau::nn::Model;
use gradtau::Tensor;

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
