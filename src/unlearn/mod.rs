//! Unlearning: ∇τ ([`nabla_tau`](mod@nabla_tau)), the baselines ([`baselines`]) and the `train` routine that
//! produces original models and the retrain-from-scratch reference ([`train`](mod@train)).
//!
//! Every routine takes the weights as `&mut Vec<Tensor>` and is transactional: it works on a
//! copy and replaces the caller's weights only when it finishes without error or
//! cancellation (unless `keep_partial` is set). Everything here sits on the public
//! model/autograd/optimizer API.
//!
//! Every routine also, before it allocates anything:
//! - validates its options (`validate()` on each options struct; errors name the field and
//!   the allowed range),
//! - checks its peak memory against the model's budget ([`Model::check_memory`]),
//! - refuses a forget set that shares samples with the retain set (or, for ∇τ, with the
//!   validation set) unless the options allow it ([`check_overlap`]),
//!
//! and stops with [`Error::NonFinite`] naming the step when a loss or a weight becomes NaN or
//! infinite, or when the final weights give non-finite outputs (`check_divergence`); a
//! diverged run never writes its weights back, `keep_partial` or not.

pub mod baselines;
pub mod nabla_tau;
pub mod train;

pub use baselines::{finetune, neggrad, neggrad_plus, BaselineOptions};
pub use nabla_tau::{nabla_tau, NablaTauMode, NablaTauOptions};
pub use train::{train, OptimizerKind, TrainRecipe};

use crate::autograd::{Tape, Var};
use crate::backend::{Device, DeviceRequest};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
pub use crate::nn::Workload;
use crate::nn::{Bindings, ForwardMode, Model};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// One report per optimisation step, handed to the progress callback.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// "nabla_tau", "finetune", "neggrad", "neggrad_plus" or "train".
    pub method: &'static str,
    /// 0-based epoch (a forget-epoch for ∇τ) and the planned number of epochs.
    pub epoch: usize,
    pub epochs: usize,
    /// 0-based step and the planned number of steps.
    pub step: usize,
    pub total_steps: usize,
    /// Mean loss of the forget batch (NaN where the method uses none, and in ∇τ's repair
    /// phase, once the forget term is switched off and the forget batch is not evaluated).
    pub forget_loss: f32,
    /// Mean loss of the retain (or training) batch (NaN where the method uses none).
    pub retain_loss: f32,
    /// Weight of the forget term.
    pub alpha: f32,
    /// Current target loss τ (NaN outside ∇τ).
    pub tau: f32,
    /// Learning rate used for this step.
    pub lr: f32,
}

/// What the progress callback answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Cancel,
}

/// A progress callback: called after every step; [`Control::Cancel`] stops the run.
pub type ProgressFn<'a> = dyn FnMut(&Progress) -> Control + 'a;

/// A callback that never cancels.
pub fn no_progress(_: &Progress) -> Control {
    Control::Continue
}

/// The sets an unlearning run works on.
#[derive(Clone, Copy)]
pub struct UnlearnSets<'a> {
    /// Samples whose influence must be removed.
    pub forget: &'a Dataset,
    /// Samples to keep performing well on.
    pub retain: &'a Dataset,
    /// Held-out samples the model never trained on (∇τ's target; not the audit's test set).
    pub val: &'a Dataset,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunReport {
    pub method: String,
    pub epochs: usize,
    pub steps: usize,
    /// The learning rate at the first step (∇τ's default depends on the forget fraction).
    pub lr: f32,
    pub seconds: f64,
    /// ∇τ: the last α and τ; NaN elsewhere.
    pub final_alpha: f32,
    pub final_tau: f32,
    /// ∇τ adaptive mode: the epoch at which the forget term switched off, if it did.
    pub forget_stopped_at: Option<usize>,
    /// Why the run ended. Every method reports one: the baselines and `train` have no stop
    /// test of their own and report [`StopReason::Budget`].
    pub stop_reason: StopReason,
}

impl RunReport {
    /// True when the run was cut short by `max_steps`.
    pub fn truncated(&self) -> bool {
        self.stop_reason == StopReason::MaxSteps
    }
}

/// Why a run ended (a run that fails or is cancelled returns an error, not a report).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// It ran every planned epoch (∇τ's class removal too, whose forget term may have
    /// switched off earlier: see `forget_stopped_at`).
    #[default]
    Budget,
    /// ∇τ adaptive mode, random forgetting: the membership stop test passed and was
    /// confirmed, and the run ended early (further retain-only steps would re-teach the
    /// forget set).
    Forgotten,
    /// Cut short by `max_steps`.
    MaxSteps,
}

impl StopReason {
    /// A lower-case name ("budget", "forgotten", "max_steps"), as reports print it.
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Budget => "budget",
            StopReason::Forgotten => "forgotten",
            StopReason::MaxSteps => "max_steps",
        }
    }
}

/// Any of the unlearning methods, with its options.
#[derive(Clone, Debug)]
pub enum Method {
    NablaTau(NablaTauOptions),
    FineTune(BaselineOptions),
    NegGrad(BaselineOptions),
    NegGradPlus(BaselineOptions),
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::NablaTau(_) => "nabla_tau",
            Method::FineTune(_) => "finetune",
            Method::NegGrad(_) => "neggrad",
            Method::NegGradPlus(_) => "neggrad_plus",
        }
    }

    /// Whether the method keeps partial progress after an error or cancellation.
    pub fn keep_partial(&self) -> bool {
        match self {
            Method::NablaTau(o) => o.keep_partial,
            Method::FineTune(o) | Method::NegGrad(o) | Method::NegGradPlus(o) => o.keep_partial,
        }
    }

    /// Checks the method's options (every run does this first; a front end may call it
    /// before it reads any data).
    pub fn validate(&self) -> Result<()> {
        match self {
            Method::NablaTau(o) => o.validate(),
            Method::FineTune(o) | Method::NegGrad(o) | Method::NegGradPlus(o) => o.validate(),
        }
    }

    /// Runs the method on `weights` (transactional, see the module docs).
    pub fn run(
        &self,
        model: &Model,
        weights: &mut Vec<Tensor>,
        sets: UnlearnSets<'_>,
        progress: &mut ProgressFn<'_>,
    ) -> Result<RunReport> {
        match self {
            Method::NablaTau(o) => nabla_tau(model, weights, sets, o, progress),
            Method::FineTune(o) => finetune(model, weights, sets, o, progress),
            Method::NegGrad(o) => neggrad(model, weights, sets, o, progress),
            Method::NegGradPlus(o) => neggrad_plus(model, weights, sets, o, progress),
        }
    }
}

/// Unlearns on caller-owned buffers: reads them through `bindings`, runs `method`, and writes
/// the result back only on success. On any error or a cancellation the buffers are untouched,
/// unless the method's options set `keep_partial`, in which case the weights reached so far
/// are written back and the error is still returned.
pub fn unlearn_bound(
    model: &Model,
    bindings: &mut Bindings<'_>,
    sets: UnlearnSets<'_>,
    method: &Method,
    progress: &mut ProgressFn<'_>,
) -> Result<RunReport> {
    let mut weights = bindings.read(model)?;
    let result = method.run(model, &mut weights, sets, progress);
    // With keep_partial the run has already swapped in its partial weights; hand them on.
    if result.is_ok() || method.keep_partial() {
        bindings.write(model, &weights)?;
    }
    result
}

/// Validation shared by every method: weights fit the model, sets fit the model, and the
/// sets a method needs are not empty.
pub(crate) fn check_inputs(
    model: &Model,
    weights: &[Tensor],
    sets: &[(&Dataset, &str)],
) -> Result<()> {
    model.check_weights(weights)?;
    for (d, what) in sets {
        if d.is_empty() {
            return Err(Error::invalid(format!("the {what} set is empty")));
        }
        model.check_dataset(d, what)?;
    }
    Ok(())
}

/// Runs `body` on a copy of `weights` and commits the copy only on success (or, with
/// `keep_partial`, also after an error or cancellation, except divergence). A run that
/// succeeded is probed once more: the final weights must give finite outputs on up to
/// [`PROBE_SAMPLES`] samples of `probe` (a last step can leave finite weights whose outputs
/// overflow).
pub(crate) fn transact<F>(
    weights: &mut Vec<Tensor>,
    keep_partial: bool,
    device: DeviceRequest,
    probe: (&Model, &Dataset),
    body: F,
) -> Result<RunReport>
where
    F: FnOnce(&mut Vec<Tensor>, Device) -> Result<RunReport>,
{
    let dev = device.resolve()?;
    // Weights go to the device once here and come back once, below.
    let mut work = weights
        .iter()
        .map(|w| w.to_device(dev))
        .collect::<Result<Vec<_>>>()?;
    let result = body(&mut work, dev)
        .and_then(|r| check_final_outputs(probe.0, &r, &work, probe.1).map(|()| r));
    // The run's buffers are freed by now; the memory goes back to the system, not only to
    // the allocator.
    crate::backend::cpu::pool::release_free_memory();
    if matches!(result, Err(Error::NonFinite(_))) {
        return result;
    }
    if result.is_ok() || keep_partial {
        let back = work
            .iter()
            .map(|w| w.to_device(Device::Cpu))
            .collect::<Result<Vec<_>>>()?;
        if back.iter().all(|w| w.all_finite().unwrap_or(false)) {
            *weights = back;
        } else if result.is_ok() {
            return Err(Error::NonFinite(
                "the run produced NaN or infinite weights; the original weights were kept".into(),
            ));
        }
    }
    result
}

/// Samples of the probe set the final weights are evaluated on.
pub const PROBE_SAMPLES: usize = 256;

/// Stops a run whose loss or weights became non-finite at `step`. `losses` lists the losses
/// the step computed (`None` for a term the step skipped). Weights on the CPU are scanned
/// every step (a pass over the parameters, small next to a step); weights on a GPU are
/// checked through the next step's loss and the final probe instead of a copy to the host
/// per step. Every training loop calls this after its optimizer step.
pub(crate) fn check_divergence(
    model: &Model,
    method: &str,
    step: usize,
    losses: &[(&str, Option<f32>)],
    weights: &[Tensor],
) -> Result<()> {
    for (what, v) in losses {
        if let Some(v) = v.filter(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "{method}: the {what} loss became {v} at step {step}: the run diverged (try a smaller learning rate); the weights were left as they were"
            )));
        }
    }
    for (p, w) in model.params().iter().zip(weights) {
        if w.device() == Device::Cpu && !w.all_finite()? {
            return Err(Error::NonFinite(format!(
                "{method}: parameter `{}` became NaN or infinite at step {step}: the run diverged (try a smaller learning rate); the weights were left as they were",
                p.name
            )));
        }
    }
    Ok(())
}

/// The final weights of a finished run must give finite outputs (see [`transact`]).
fn check_final_outputs(
    model: &Model,
    report: &RunReport,
    weights: &[Tensor],
    probe: &Dataset,
) -> Result<()> {
    let n = probe.len().min(PROBE_SAMPLES);
    if n == 0 {
        return Ok(());
    }
    let idx: Vec<usize> = (0..n).collect();
    let (x, _) = probe.gather(&idx)?;
    match model.predict(weights, &x, PROBE_SAMPLES) {
        Err(Error::NonFinite(detail)) => Err(Error::NonFinite(format!(
            "{}: after the last step (step {}) the weights give non-finite outputs ({detail}): the run diverged (try a smaller learning rate); the weights were left as they were",
            report.method,
            report.steps.saturating_sub(1)
        ))),
        other => other.map(|_| ()),
    }
}

/// Whether a forget set may share samples with the retain set (or, for ∇τ, with the
/// validation set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverlapPolicy {
    /// A shared sample is an error, with the count (the default): a sample kept in the
    /// retain set re-teaches what the forget term removes, and a validation set that holds
    /// forget samples makes ∇τ aim the forget losses at themselves.
    #[default]
    Refuse,
    /// Shared samples are accepted (for data sets with legitimate exact duplicates).
    Allow,
}

/// Fails when `a` and `b` are the same data set or share samples (identical input values
/// and target), naming both sets and the number of shared samples. Rows are compared by a
/// hash of their bytes, then byte for byte.
pub fn check_overlap(
    a: (&Dataset, &str),
    b: (&Dataset, &str),
    policy: OverlapPolicy,
) -> Result<()> {
    if policy == OverlapPolicy::Allow {
        return Ok(());
    }
    let shared = shared_rows(a.0, b.0)?;
    if shared > 0 {
        return Err(Error::invalid(format!(
            "the {} set and the {} set share {shared} sample(s) (same inputs and target); remove them from one of the sets, or allow the overlap in the options",
            a.1, b.1
        )));
    }
    Ok(())
}

/// One data set's samples as bit patterns, borrowed from the host buffers where possible:
/// copying a whole training set just to look at it once cost more than the comparison
/// (fresh pages for two copies of every input).
struct Rows<'a> {
    x: std::borrow::Cow<'a, [f32]>,
    y: std::borrow::Cow<'a, [u32]>,
    /// Input and target values per sample.
    px: usize,
    py: usize,
    n: usize,
}

impl<'a> Rows<'a> {
    fn new(d: &'a Dataset) -> Result<Self> {
        use std::borrow::Cow;
        let n = d.len();
        let x = match d.x.cpu_data("check_overlap") {
            Ok(v) => Cow::Borrowed(v),
            Err(_) => Cow::Owned(d.x.to_vec()?),
        };
        let y = match &d.y {
            Targets::Classes(c) => Cow::Borrowed(c.as_slice()),
            Targets::Values(t) => Cow::Owned(t.to_vec()?.iter().map(|v| v.to_bits()).collect()),
        };
        let (px, py) = (x.len() / n.max(1), y.len() / n.max(1));
        Ok(Rows { x, y, px, py, n })
    }

    fn x(&self, i: usize) -> &[f32] {
        &self.x[i * self.px..(i + 1) * self.px]
    }

    fn y(&self, i: usize) -> &[u32] {
        &self.y[i * self.py..(i + 1) * self.py]
    }

    /// A 64-bit hash of sample `i`'s bits. Not collision-proof (candidates are compared bit
    /// for bit afterwards), only well mixed and fast: four independent multiply chains, so
    /// the CPU overlaps them, where SipHash walked each row byte stream serially.
    fn hash(&self, i: usize) -> u64 {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = [K, K.rotate_left(16), K.rotate_left(32), K.rotate_left(48)];
        let x = self.x(i);
        let mut quads = x.chunks_exact(8);
        for q in &mut quads {
            for (l, h) in h.iter_mut().enumerate() {
                let w = u64::from(q[2 * l].to_bits()) | (u64::from(q[2 * l + 1].to_bits()) << 32);
                *h = (*h ^ w).wrapping_mul(K).rotate_left(31);
            }
        }
        let tail = quads.remainder().iter().map(|v| v.to_bits());
        for w in tail.chain(self.y(i).iter().copied()) {
            h[0] = (h[0] ^ u64::from(w)).wrapping_mul(K).rotate_left(31);
        }
        let mut out = (x.len() as u64).wrapping_mul(K);
        for v in h {
            out = (out ^ v).wrapping_mul(K).rotate_left(27);
        }
        out ^ (out >> 29)
    }

    /// Whether sample `i` of `self` and sample `j` of `o` have the same bits.
    fn same(&self, i: usize, o: &Rows<'_>, j: usize) -> bool {
        self.y(i) == o.y(j)
            && self
                .x(i)
                .iter()
                .zip(o.x(j))
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

/// How many rows of `b` also occur in `a`.
fn shared_rows(a: &Dataset, b: &Dataset) -> Result<usize> {
    if a.sample_shape() != b.sample_shape() || a.is_empty() || b.is_empty() {
        return Ok(0);
    }
    let (ra, rb) = (Rows::new(a)?, Rows::new(b)?);
    if (ra.px, ra.py) != (rb.px, rb.py) || ra.px + ra.py == 0 {
        return Ok(0);
    }
    // `a`'s hashes sorted: a lookup is a binary search, with no per-entry allocation as in
    // a map of buckets; equal hashes sit together, and each candidate is compared in full.
    let mut keys: Vec<(u64, usize)> = (0..ra.n).map(|i| (ra.hash(i), i)).collect();
    keys.sort_unstable();
    Ok((0..rb.n)
        .filter(|&j| {
            let h = rb.hash(j);
            let first = keys.partition_point(|&(k, _)| k < h);
            keys[first..]
                .iter()
                .take_while(|&&(k, _)| k == h)
                .any(|&(_, i)| ra.same(i, &rb, j))
        })
        .count())
}

/// What every optimisation step of a run shares: the model, how its normalisation and
/// dropout layers behave, the device, and the generator for dropout masks.
pub(crate) struct StepCtx<'m> {
    pub model: &'m Model,
    pub mode: ForwardMode,
    pub device: Device,
    pub rng: Rng,
}

impl StepCtx<'_> {
    /// Per-sample losses `[B]` of the samples `idx` of `data`, on the tape.
    pub fn losses(
        &mut self,
        tape: &mut Tape,
        weights: &[Tensor],
        data: &Dataset,
        idx: &[usize],
        updates: &mut Vec<(usize, Tensor)>,
    ) -> Result<Var> {
        let (out, y) = self.outputs(tape, weights, data, idx, updates)?;
        self.model.per_sample_loss(tape, out, &y)
    }

    /// Model outputs (logits) `[B, ...]` for the samples `idx` of `data`, on the tape, with
    /// their targets.
    pub fn outputs(
        &mut self,
        tape: &mut Tape,
        weights: &[Tensor],
        data: &Dataset,
        idx: &[usize],
        updates: &mut Vec<(usize, Tensor)>,
    ) -> Result<(Var, Targets)> {
        let (x, y) = data.gather(idx)?;
        let x = x.to_device(self.device)?;
        let f = self
            .model
            .forward(tape, weights, x, self.mode, &mut self.rng)?;
        updates.extend(f.buffer_updates);
        Ok((f.out, y))
    }

    /// Whether [`outputs_pair`](Self::outputs_pair) gives two batches the outputs (and
    /// gradients, up to the order of summation) of two [`outputs`](Self::outputs) calls.
    ///
    /// Not with active dropout: two passes draw each layer's mask for the first batch, then
    /// each layer's for the second; one pass draws each layer's mask for both at once, so
    /// with two dropout layers the numbers land on other layers. On the CPU two elements
    /// share a 64-bit draw, so an odd first batch of elements also shifts the second's mask,
    /// and on CUDA one draw seeds each application. ∇τ runs with dropout off, so nothing is
    /// lost by keeping two passes there.
    pub fn fuses(&self) -> bool {
        self.model.rows_independent(self.mode)
    }

    /// Model outputs for the samples `a.1` of `a.0` followed by those `b.1` of `b.0`, from one
    /// forward pass, with their targets (see [`fuses`](Self::fuses) for when that is the
    /// same as two passes). One pass over both packs each weight once for the matrix
    /// products and forms each weight gradient as one product rather than two and a sum.
    pub fn outputs_pair(
        &mut self,
        tape: &mut Tape,
        weights: &[Tensor],
        a: (&Dataset, &[usize]),
        b: (&Dataset, &[usize]),
        updates: &mut Vec<(usize, Tensor)>,
    ) -> Result<(Var, Targets)> {
        let (x, y) = Dataset::gather_pair(a, b)?;
        let x = x.to_device(self.device)?;
        let f = self
            .model
            .forward(tape, weights, x, self.mode, &mut self.rng)?;
        updates.extend(f.buffer_updates);
        Ok((f.out, y))
    }

    /// Mean loss over `idx` of `data`, on the tape.
    pub fn mean_loss(
        &mut self,
        tape: &mut Tape,
        weights: &[Tensor],
        data: &Dataset,
        idx: &[usize],
        updates: &mut Vec<(usize, Tensor)>,
    ) -> Result<Var> {
        let l = self.losses(tape, weights, data, idx, updates)?;
        tape.mean(l)
    }
}

/// Applies batchnorm running-statistic updates to the weights.
pub(crate) fn apply_buffer_updates(weights: &mut [Tensor], updates: Vec<(usize, Tensor)>) {
    for (i, t) in updates {
        weights[i] = t;
    }
}

/// Fails with `Cancelled` if the callback asks to stop.
pub(crate) fn report(progress: &mut ProgressFn<'_>, p: &Progress) -> Result<()> {
    match progress(p) {
        Control::Continue => Ok(()),
        Control::Cancel => Err(Error::Cancelled),
    }
}

#[cfg(test)]
mod overlap_tests {
    use super::*;

    /// The obvious pairwise count, the reference for the hashed one.
    fn pairwise(a: &Dataset, b: &Dataset) -> usize {
        let (ra, rb) = (Rows::new(a).unwrap(), Rows::new(b).unwrap());
        (0..rb.n)
            .filter(|&j| (0..ra.n).any(|i| ra.same(i, &rb, j)))
            .count()
    }

    fn set(rows: &[[f32; 3]], y: Targets) -> Dataset {
        let x: Vec<f32> = rows.iter().flatten().copied().collect();
        Dataset::new(Tensor::from_vec(x, &[rows.len(), 3]).unwrap(), y).unwrap()
    }

    #[test]
    fn hashed_count_matches_the_pairwise_count() {
        let nan = f32::from_bits(0x7fc0_0001);
        let a = set(
            &[
                [1.0, 2.0, 3.0],
                [0.0, 0.0, 0.0],
                [nan, 1.0, 1.0],
                [4.0, 5.0, 6.0],
            ],
            Targets::Classes(vec![0, 1, 2, 3]),
        );
        // Same inputs with another label, -0.0 against 0.0, the same NaN bits, an exact
        // duplicate twice, and a row only in `b`.
        let b = set(
            &[
                [1.0, 2.0, 3.0],
                [-0.0, 0.0, 0.0],
                [nan, 1.0, 1.0],
                [4.0, 5.0, 6.0],
                [4.0, 5.0, 6.0],
                [7.0, 8.0, 9.0],
            ],
            Targets::Classes(vec![1, 1, 2, 3, 3, 0]),
        );
        assert_eq!(shared_rows(&a, &b).unwrap(), 3);
        assert_eq!(shared_rows(&a, &b).unwrap(), pairwise(&a, &b));
        assert_eq!(shared_rows(&b, &a).unwrap(), pairwise(&b, &a));
        let values = |v: Vec<f32>| Targets::Values(Tensor::from_vec(v, &[2, 1]).unwrap());
        let c = set(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], values(vec![0.5, 1.5]));
        let d = set(&[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], values(vec![0.5, 2.5]));
        assert_eq!(shared_rows(&c, &d).unwrap(), 1);
    }

    #[test]
    fn hashed_count_matches_on_random_sets_with_planted_duplicates() {
        let mut rng = Rng::new(7);
        // Long rows that differ only in their first 6 values (as images with blank borders
        // do): 128 distinct samples with labels, so many rows of `b` are in `a`.
        let (n, per) = (300, 37);
        let mk = |rng: &mut Rng| {
            let x: Vec<f32> = (0..n * per)
                .map(|k| {
                    if k % per < 6 {
                        rng.below(2) as f32
                    } else {
                        0.0
                    }
                })
                .collect();
            let y: Vec<u32> = (0..n).map(|_| rng.below(2) as u32).collect();
            Dataset::classification(Tensor::from_vec(x, &[n, per]).unwrap(), y).unwrap()
        };
        let (a, b) = (mk(&mut rng), mk(&mut rng));
        let shared = shared_rows(&a, &b).unwrap();
        assert!(shared > 0 && shared < n, "{shared}");
        assert_eq!(shared, pairwise(&a, &b));
        assert_eq!(shared_rows(&a, &a).unwrap(), n);
    }
}
