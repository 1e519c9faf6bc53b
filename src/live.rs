//! A model that keeps answering while it is trained or unlearned.
//!
//! A service holds one [`LiveModel`] and calls it from many threads. The rules:
//!
//! * **Reads run side by side.** [`predict`](LiveModel::predict),
//!   [`probabilities`](LiveModel::probabilities), [`classify`](LiveModel::classify),
//!   [`losses`](LiveModel::losses) and [`audit`](LiveModel::audit) take a copy of the current
//!   weights under a shared lock (held only for that copy) and compute on their own scratch
//!   memory, so any number of them run at once, also while a run is in progress.
//! * **A run works on a private copy.** [`unlearn`](LiveModel::unlearn) and
//!   [`train`](LiveModel::train) copy the weights once, run on the copy, and publish the
//!   result at the end; reads during the run see the weights from before it.
//! * **Publishing is atomic.** The new weights replace the old under the exclusive lock, so
//!   a read sees the old model or the new one, never a mix. The lock is writer-preferring
//!   (new reads wait while a publish waits), and reads hold it only for a copy, so neither
//!   side can starve the other.
//! * **One writer at a time, without waiting.** A second run, or a change of the weights
//!   ([`modify`](LiveModel::modify): binding buffers, initialising), while a run is in
//!   progress fails at once with [`Error::Busy`]: a service should learn that a deletion
//!   request is already being carried out, not queue behind it for minutes.
//! * **The host may own the publish.** A host whose own engine reads the weight buffers
//!   registers a [`PublishHook`]: it is called with [`PublishPhase::Begin`] before the
//!   buffers are written (take your engine's write lock; answer [`Control::Cancel`] to keep
//!   the old weights, and the run reports [`Error::Cancelled`]) and with
//!   [`PublishPhase::End`] after (release it). The hook runs on the thread that made the
//!   call, outside gradtau's own lock, so it may itself call the read methods.
//! * **Threads are capped per model.** [`set_threads`](LiveModel::set_threads) caps the CPU
//!   threads every call on this model uses (0, the default: all cores), so a run can be given
//!   one core while serving keeps the other.
//!
//! The weights live in a [`WeightStore`]: owned tensors (`Vec<Tensor>`) for a Rust host, or
//! the caller's own buffers for the C ABI.

use crate::audit::{audit_model, AuditRow, AuditSets};
use crate::backend::cpu::with_thread_limit;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::nn::{outputs, Model};
use crate::tensor::Tensor;
use crate::unlearn::{self, Control, Method, ProgressFn, RunReport, TrainRecipe, UnlearnSets};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, TryLockError};

/// Samples per forward pass of the read methods: large enough to amortise per-batch work,
/// small enough that a big request does not hold gigabytes of activations.
pub const INFER_BATCH: usize = 256;

/// Where a [`LiveModel`]'s weights live.
pub trait WeightStore: Send + Sync {
    /// A copy of the current weights, checked against the model (every parameter present,
    /// finite values).
    fn snapshot(&self, model: &Model) -> Result<Vec<Tensor>>;
    /// A copy of the current weights for a read call, which may skip the scan for NaN and
    /// infinity (a read's non-finite outputs are refused anyway).
    fn read_snapshot(&self, model: &Model) -> Result<Vec<Tensor>> {
        self.snapshot(model)
    }
    /// Replaces the weights with `weights`. Must check everything before it writes anything,
    /// so an error leaves the store unchanged.
    fn replace(&mut self, model: &Model, weights: &[Tensor]) -> Result<()>;
}

/// Owned weights. Tensors share their storage, so a snapshot costs no copy of the values, and
/// a publish swaps them whole.
impl WeightStore for Vec<Tensor> {
    fn snapshot(&self, model: &Model) -> Result<Vec<Tensor>> {
        model.check_weights(self)?;
        Ok(self.clone())
    }

    fn replace(&mut self, model: &Model, weights: &[Tensor]) -> Result<()> {
        model.check_weights(weights)?;
        *self = weights.to_vec();
        Ok(())
    }
}

/// When a [`PublishHook`] is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishPhase {
    /// Before the new weights are written.
    Begin,
    /// After they were written (or after a failed write; the old weights are then intact).
    End,
}

/// The host's side of publishing new weights (see the [module docs](self)).
pub type PublishHook = Box<dyn FnMut(PublishPhase) -> Control + Send>;

/// State that only the one writer touches.
struct WriterState {
    hook: Option<PublishHook>,
}

/// A model that serves reads while one writer at a time trains or unlearns it (see the
/// [module docs](self)).
pub struct LiveModel<S> {
    model: Model,
    store: RwLock<S>,
    writer: Mutex<WriterState>,
    threads: AtomicUsize,
}

/// Proof that the caller is the one writer; released on drop.
pub struct Writer<'a, S> {
    live: &'a LiveModel<S>,
    state: MutexGuard<'a, WriterState>,
}

impl<S: WeightStore> LiveModel<S> {
    pub fn new(model: Model, store: S) -> Self {
        LiveModel {
            model,
            store: RwLock::new(store),
            writer: Mutex::new(WriterState { hook: None }),
            threads: AtomicUsize::new(0),
        }
    }

    /// The compiled model (architecture, parameter layout, loss).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Caps the CPU threads of every later call on this model (0: no cap).
    pub fn set_threads(&self, threads: usize) {
        self.threads.store(threads, Ordering::Relaxed);
    }

    /// The cap set by [`set_threads`](Self::set_threads) (0: none).
    pub fn threads(&self) -> usize {
        self.threads.load(Ordering::Relaxed)
    }

    fn limited<T>(&self, f: impl FnOnce() -> T) -> T {
        with_thread_limit(self.threads(), f)
    }

    /// Shared access to the store, for as long as `f` runs. Keep `f` short: a publish waits
    /// for it.
    pub fn read<T>(&self, f: impl FnOnce(&S) -> T) -> T {
        // A panic while the lock was held (caught at the C boundary) cannot have left the
        // store half-replaced: stores check everything before they write.
        let store = self.store.read().unwrap_or_else(|p| p.into_inner());
        f(&store)
    }

    /// A copy of the current weights.
    pub fn weights(&self) -> Result<Vec<Tensor>> {
        self.read(|s| s.snapshot(&self.model))
    }

    /// The weights a read computes with.
    fn read_weights(&self) -> Result<Vec<Tensor>> {
        self.read(|s| s.read_snapshot(&self.model))
    }

    /// Raw outputs (logits for a classifier) for the samples `x` `[N, input_shape...]`.
    pub fn predict(&self, x: &Tensor) -> Result<Tensor> {
        let weights = self.read_weights()?;
        self.limited(|| self.model.predict(&weights, x, INFER_BATCH))
    }

    /// Class probabilities (softmax for `cross_entropy`, sigmoid for `bce_with_logits`).
    pub fn probabilities(&self, x: &Tensor) -> Result<Tensor> {
        outputs::probabilities(self.model.loss_kind(), &self.predict(x)?)
    }

    /// The predicted class of each sample (`cross_entropy` models).
    pub fn classify(&self, x: &Tensor) -> Result<Vec<usize>> {
        outputs::classes(self.model.loss_kind(), &self.predict(x)?)
    }

    /// Per-sample losses of a labelled set.
    pub fn losses(&self, data: &Dataset) -> Result<Vec<f32>> {
        self.model.check_dataset(data, "data")?;
        let weights = self.read_weights()?;
        self.limited(|| self.model.losses(&weights, data, INFER_BATCH))
    }

    /// The audit row (accuracies and membership attacks) of the current weights.
    pub fn audit(&self, sets: AuditSets<'_>, seed: u64) -> Result<AuditRow> {
        for (d, what) in [
            (sets.retain, "retain"),
            (sets.forget, "forget"),
            (sets.test, "test"),
        ] {
            if d.is_empty() {
                return Err(Error::invalid(format!("the {what} set is empty")));
            }
            self.model.check_dataset(d, what)?;
        }
        let weights = self.read_weights()?;
        self.limited(|| audit_model(&self.model, &weights, sets, seed))
    }

    /// Becomes the one writer, or fails at once with [`Error::Busy`].
    pub fn writer(&self) -> Result<Writer<'_, S>> {
        let state = match self.writer.try_lock() {
            Ok(g) => g,
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Busy(
                    "a training or unlearning run, or a change of the weights, is in progress \
                     on this model; it does not wait for another"
                        .into(),
                ))
            }
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        Ok(Writer { live: self, state })
    }

    /// Changes the store directly (binding buffers, say), as the one writer and with reads
    /// held off meanwhile.
    pub fn modify<T>(&self, f: impl FnOnce(&Model, &mut S) -> Result<T>) -> Result<T> {
        let _writer = self.writer()?;
        let mut store = self.store.write().unwrap_or_else(|p| p.into_inner());
        f(&self.model, &mut store)
    }

    /// Sets (or, with `None`, removes) the host's publish hook. A writer call: [`Error::Busy`]
    /// while a run is in progress.
    pub fn set_publish_hook(&self, hook: Option<PublishHook>) -> Result<()> {
        self.writer()?.state.hook = hook;
        Ok(())
    }

    /// Writes PyTorch's default initialisation (seeded), published like a run's result.
    pub fn init_weights(&self, seed: u64) -> Result<()> {
        self.set_weights(&self.model.init_weights(seed))
    }

    /// Publishes `weights` (loaded from a file, say) like a run's result.
    pub fn set_weights(&self, weights: &[Tensor]) -> Result<()> {
        self.writer()?.publish(weights)
    }

    /// Unlearns `sets.forget` on a private copy of the weights and publishes the result (also
    /// after an error or a cancellation when the method keeps partial progress).
    pub fn unlearn(
        &self,
        sets: UnlearnSets<'_>,
        method: &Method,
        progress: &mut ProgressFn<'_>,
    ) -> Result<RunReport> {
        let mut w = self.writer()?;
        let mut weights = self.weights()?;
        let result = self.limited(|| method.run(&self.model, &mut weights, sets, progress));
        w.finish(result, method.keep_partial(), &weights)
    }

    /// Trains on a private copy of the weights and publishes the result, like
    /// [`unlearn`](Self::unlearn).
    pub fn train(
        &self,
        data: &Dataset,
        recipe: &TrainRecipe,
        progress: &mut ProgressFn<'_>,
    ) -> Result<RunReport> {
        let mut w = self.writer()?;
        let mut weights = self.weights()?;
        let result =
            self.limited(|| unlearn::train(&self.model, &mut weights, data, recipe, progress));
        w.finish(result, recipe.keep_partial, &weights)
    }
}

impl<S: WeightStore> Writer<'_, S> {
    /// Publishes the weights of a finished run: always after success, after a failure only
    /// when partial progress is kept (the run's error is returned all the same).
    fn finish(
        &mut self,
        result: Result<RunReport>,
        keep_partial: bool,
        weights: &[Tensor],
    ) -> Result<RunReport> {
        match result {
            Ok(report) => self.publish(weights).map(|()| report),
            Err(e) => {
                if keep_partial {
                    self.publish(weights)?;
                }
                Err(e)
            }
        }
    }

    /// Replaces the weights atomically, between the host hook's `Begin` and `End`.
    pub fn publish(&mut self, weights: &[Tensor]) -> Result<()> {
        let live = self.live;
        let hook = &mut self.state.hook;
        if let Some(h) = hook.as_mut() {
            if h(PublishPhase::Begin) == Control::Cancel {
                return Err(Error::Cancelled);
            }
        }
        let replaced = {
            let mut store = live.store.write().unwrap_or_else(|p| p.into_inner());
            store.replace(&live.model, weights)
        };
        if let Some(h) = hook.as_mut() {
            // End's answer is not a veto: the weights are already in place.
            let _ = h(PublishPhase::End);
        }
        replaced
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::digits;
    use crate::unlearn::{no_progress, NablaTauOptions};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn digits_model() -> LiveModel<Vec<Tensor>> {
        let model = Model::from_json(digits::MLP_SPEC).unwrap();
        let w = model.init_weights(3);
        LiveModel::new(model, w)
    }

    /// The digits MLP after a short training run (through the live model itself).
    fn trained_digits_model() -> LiveModel<Vec<Tensor>> {
        let live = digits_model();
        let (train, _, _) = digits::train_val_test(1).unwrap();
        let recipe = TrainRecipe {
            epochs: 3,
            ..Default::default()
        };
        let r = live.train(&train, &recipe, &mut no_progress).unwrap();
        assert!(r.steps > 0);
        live
    }

    fn sample_inputs(n: usize) -> Tensor {
        let d = digits::dataset().unwrap();
        let idx: Vec<usize> = (0..n).collect();
        d.gather(&idx).unwrap().0
    }

    /// (forget 10 % of the training split, retain the rest, validation).
    fn sets() -> (Dataset, Dataset, Dataset) {
        let (train, val, _) = digits::train_val_test(1).unwrap();
        let mut rng = crate::rng::Rng::new(5);
        let (f, r) = crate::data::split_indices(train.len(), 0.1, &mut rng);
        (train.subset(&f).unwrap(), train.subset(&r).unwrap(), val)
    }

    #[test]
    fn a_second_writer_is_busy_at_once_and_reads_go_on() {
        let live = digits_model();
        let x = sample_inputs(4);
        let before = live.predict(&x).unwrap().to_vec().unwrap();
        let w = live.writer().unwrap();
        assert!(matches!(live.init_weights(1), Err(Error::Busy(_))));
        assert!(matches!(live.set_publish_hook(None), Err(Error::Busy(_))));
        assert!(matches!(live.modify(|_, _| Ok(())), Err(Error::Busy(_))));
        // Reads do not wait for the writer.
        assert_eq!(live.predict(&x).unwrap().to_vec().unwrap(), before);
        drop(w);
        live.init_weights(1).unwrap();
        assert_ne!(live.predict(&x).unwrap().to_vec().unwrap(), before);
    }

    #[test]
    fn the_hook_brackets_the_write_and_can_veto_it() {
        let live = digits_model();
        let x = sample_inputs(2);
        let before = live.predict(&x).unwrap().to_vec().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let veto = Arc::new(AtomicBool::new(true));
        let (l, v) = (log.clone(), veto.clone());
        live.set_publish_hook(Some(Box::new(move |phase| {
            l.lock().unwrap().push(phase);
            if phase == PublishPhase::Begin && v.load(Ordering::SeqCst) {
                Control::Cancel
            } else {
                Control::Continue
            }
        })))
        .unwrap();
        assert!(matches!(live.init_weights(9), Err(Error::Cancelled)));
        assert_eq!(live.predict(&x).unwrap().to_vec().unwrap(), before);
        assert_eq!(*log.lock().unwrap(), vec![PublishPhase::Begin]);
        veto.store(false, Ordering::SeqCst);
        live.init_weights(9).unwrap();
        assert_ne!(live.predict(&x).unwrap().to_vec().unwrap(), before);
        assert_eq!(
            *log.lock().unwrap(),
            vec![PublishPhase::Begin, PublishPhase::Begin, PublishPhase::End]
        );
    }

    #[test]
    fn reads_during_a_run_see_the_old_weights_then_the_new() {
        let live = Arc::new(trained_digits_model());
        let (forget, retain, val) = sets();
        let x = sample_inputs(8);
        let old = live.predict(&x).unwrap().to_vec().unwrap();
        // Paper mode runs its planned steps whatever the model looks like.
        let method = Method::NablaTau(NablaTauOptions {
            mode: crate::unlearn::NablaTauMode::Paper,
            max_steps: Some(6),
            ..Default::default()
        });
        let seen_during = Arc::new(Mutex::new(Vec::new()));
        let report = {
            let (live2, seen, x2) = (live.clone(), seen_during.clone(), x.clone());
            let mut cb = move |_: &unlearn::Progress| {
                // A read from inside the run (another thread would see the same).
                seen.lock()
                    .unwrap()
                    .push(live2.predict(&x2).unwrap().to_vec().unwrap());
                Control::Continue
            };
            live.unlearn(
                UnlearnSets {
                    forget: &forget,
                    retain: &retain,
                    val: &val,
                },
                &method,
                &mut cb,
            )
            .unwrap()
        };
        let seen = seen_during.lock().unwrap();
        assert_eq!(report.steps, 6);
        assert_eq!(seen.len(), 6);
        assert!(
            seen.iter().all(|p| *p == old),
            "a read saw unpublished weights"
        );
        let new = live.predict(&x).unwrap().to_vec().unwrap();
        assert_ne!(new, old);
        // The same run without readers gives the same weights.
        let alone = trained_digits_model();
        alone
            .unlearn(
                UnlearnSets {
                    forget: &forget,
                    retain: &retain,
                    val: &val,
                },
                &method,
                &mut no_progress,
            )
            .unwrap();
        assert_eq!(alone.predict(&x).unwrap().to_vec().unwrap(), new);
    }

    #[test]
    fn probabilities_and_classes_follow_the_outputs() {
        let live = digits_model();
        let x = sample_inputs(5);
        let logits = live.predict(&x).unwrap();
        let p = live.probabilities(&x).unwrap().to_vec().unwrap();
        let c = live.classify(&x).unwrap();
        for (i, row) in p.chunks(10).enumerate() {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            let l = &logits.to_vec().unwrap()[i * 10..i * 10 + 10];
            let best = (0..10).fold(0, |b, j| if l[j] > l[b] { j } else { b });
            assert_eq!(c[i], best);
        }
        let empty = Tensor::from_vec(vec![], &[0, 64]).unwrap();
        assert_eq!(live.predict(&empty).unwrap().shape(), &[0, 10]);
        assert!(live.classify(&empty).unwrap().is_empty());
    }
}
