use crate::backend::cpu::pool::{self, RunGuard};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::time::{Duration, Instant};

/// A value on the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(pub(crate) usize);

/// What an op needs to compute its inputs' gradients.
pub struct BackwardCtx<'a> {
    /// The op's inputs, in the order they were recorded.
    pub inputs: Vec<&'a Tensor>,
    /// The op's output value.
    pub output: &'a Tensor,
    /// The gradient of the loss with respect to the output.
    pub grad: &'a Tensor,
    /// Which inputs need a gradient (others may return `None` to save work).
    pub needs: Vec<bool>,
}

/// The backward rule of one recorded op.
pub trait BackwardOp: Send {
    /// A short name for error messages.
    fn name(&self) -> &'static str;
    /// One entry per input: its gradient, or `None` where `needs` is false or none flows.
    fn backward(&self, ctx: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>>;
}

struct Node {
    value: Tensor,
    inputs: Vec<Var>,
    op: Option<Box<dyn BackwardOp>>,
    requires_grad: bool,
    key: Option<usize>,
}

/// Gradients of the leaves, by the key they were created with.
#[derive(Default, Debug)]
pub struct Gradients {
    by_key: Vec<Option<Tensor>>,
}

impl Gradients {
    /// The gradient of the leaf created with `key`, if any flowed to it.
    pub fn get(&self, key: usize) -> Option<&Tensor> {
        self.by_key.get(key).and_then(|g| g.as_ref())
    }

    /// Takes the gradient out, leaving `None`.
    pub fn take(&mut self, key: usize) -> Option<Tensor> {
        self.by_key.get_mut(key).and_then(|g| g.take())
    }

    /// Sets or replaces a gradient (used by gradient transforms such as clipping).
    pub fn set(&mut self, key: usize, g: Tensor) {
        if self.by_key.len() <= key {
            self.by_key.resize(key + 1, None);
        }
        self.by_key[key] = Some(g);
    }

    /// Iterates over `(key, gradient)` pairs that are present.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Tensor)> {
        self.by_key
            .iter()
            .enumerate()
            .filter_map(|(k, g)| g.as_ref().map(|g| (k, g)))
    }

    /// Mutable iteration over present gradients.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut Tensor)> {
        self.by_key
            .iter_mut()
            .enumerate()
            .filter_map(|(k, g)| g.as_mut().map(|g| (k, g)))
    }

    /// Number of keys that have a gradient.
    pub fn len(&self) -> usize {
        self.by_key.iter().filter(|g| g.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Gradients {
    /// Hands the gradients' buffers to the pool of the run open on this thread (the tape
    /// that computed them, when they are dropped after the optimizer's step, as in every
    /// training loop here). Dropped plainly, the first layer's weight gradient (800 KiB on
    /// the benchmark MLP) went back to the allocator each step and the next step's came
    /// from `calloc`, which zero-fills reused heap memory; a smaller gradient could also
    /// leave with a pooled buffer up to twice its size, which the next step then missed.
    fn drop(&mut self) {
        for g in self.by_key.drain(..).flatten() {
            g.recycle();
        }
    }
}

/// The recording of one forward pass.
pub struct Tape {
    nodes: Vec<Node>,
    grad_enabled: bool,
    /// Per-op backward timings, collected only when profiling was switched on.
    profile: Option<Vec<(&'static str, Duration)>>,
    /// A live tape is a run in progress: the buffers it frees are kept in the run's pool for
    /// reuse until the run ends (see `backend::cpu::pool`).
    run: RunGuard,
}

impl Default for Tape {
    fn default() -> Self {
        Self::new()
    }
}

impl Tape {
    /// A tape that records backward rules (for training).
    pub fn new() -> Self {
        Tape {
            nodes: Vec::with_capacity(64),
            grad_enabled: true,
            profile: None,
            run: pool::run_guard(),
        }
    }

    /// A tape for evaluation: ops compute values but record no backward rule and keep no
    /// saved state, and [`Tape::backward`] refuses to run.
    pub fn no_grad() -> Self {
        Tape {
            nodes: Vec::with_capacity(64),
            grad_enabled: false,
            profile: None,
            run: pool::run_guard(),
        }
    }

    /// Whether this tape records backward rules.
    pub fn grad_enabled(&self) -> bool {
        self.grad_enabled
    }

    /// Number of values on the tape.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Starts or stops recording the wall time of each op's backward rule (for benchmarks;
    /// off by default, when it costs one branch per node).
    pub fn set_profiling(&mut self, on: bool) {
        self.profile = on.then(Vec::new);
    }

    /// The `(op name, backward time)` pairs recorded since the last call, in sweep order.
    pub fn take_profile(&mut self) -> Vec<(&'static str, Duration)> {
        self.profile
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Drops every recorded value, keeping the allocation for the next pass.
    pub fn clear(&mut self) {
        self.drop_from(0);
    }

    /// Drops the nodes from `i` on, handing their buffers back to the CPU pool.
    fn drop_from(&mut self, i: usize) {
        for node in self.nodes.drain(i.min(self.nodes.len())..) {
            if let Some(v) = node.value.into_host_vec() {
                self.run.recycle(v);
            }
        }
    }

    /// A leaf whose gradient is wanted, reported under `key` (e.g. a parameter index).
    pub fn var(&mut self, value: Tensor, key: usize) -> Var {
        let requires_grad = self.grad_enabled;
        self.nodes.push(Node {
            value,
            inputs: Vec::new(),
            op: None,
            requires_grad,
            key: Some(key),
        });
        Var(self.nodes.len() - 1)
    }

    /// A leaf without gradient (inputs, targets, frozen values).
    pub fn constant(&mut self, value: Tensor) -> Var {
        self.nodes.push(Node {
            value,
            inputs: Vec::new(),
            op: None,
            requires_grad: false,
            key: None,
        });
        Var(self.nodes.len() - 1)
    }

    /// The value of `v`.
    pub fn value(&self, v: Var) -> &Tensor {
        &self.nodes[v.0].value
    }

    /// Whether a gradient will flow to `v`.
    pub fn requires_grad(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }

    /// Records an op's output. `make_op` is only called when a gradient can flow through it,
    /// so ops save backward state only when it will be used.
    pub fn push<F>(&mut self, value: Tensor, inputs: &[Var], make_op: F) -> Var
    where
        F: FnOnce() -> Box<dyn BackwardOp>,
    {
        let requires_grad =
            self.grad_enabled && inputs.iter().any(|v| self.nodes[v.0].requires_grad);
        let (op, inputs) = if requires_grad {
            (Some(make_op()), inputs.to_vec())
        } else {
            (None, Vec::new())
        };
        self.nodes.push(Node {
            value,
            inputs,
            op,
            requires_grad,
            key: None,
        });
        Var(self.nodes.len() - 1)
    }

    /// Backpropagates from the scalar `loss`, returns the leaves' gradients and clears the tape.
    pub fn backward(&mut self, loss: Var) -> Result<Gradients> {
        let v = self.value(loss);
        if v.numel() != 1 {
            return Err(Error::shape(
                "backward",
                format!("loss must be a scalar, got shape {:?}", v.shape()),
            ));
        }
        let seed = v.ones_like()?;
        self.backward_with_seed(loss, seed)
    }

    /// Backpropagates `seed` (the gradient of some scalar with respect to `out`), returns the
    /// leaves' gradients and clears the tape.
    pub fn backward_with_seed(&mut self, out: Var, seed: Tensor) -> Result<Gradients> {
        if !self.grad_enabled {
            return Err(Error::invalid(
                "backward on a tape created with Tape::no_grad",
            ));
        }
        if seed.shape() != self.value(out).shape() {
            return Err(Error::shape(
                "backward",
                format!(
                    "seed shape {:?} differs from output shape {:?}",
                    seed.shape(),
                    self.value(out).shape()
                ),
            ));
        }
        let mut profile = self.profile.take();
        let result = self.sweep(out, seed, profile.as_mut());
        self.profile = profile;
        self.clear();
        result
    }

    fn sweep(
        &mut self,
        out: Var,
        seed: Tensor,
        mut profile: Option<&mut Vec<(&'static str, Duration)>>,
    ) -> Result<Gradients> {
        let mut grads: Vec<Option<Tensor>> = vec![None; out.0 + 1];
        grads[out.0] = Some(seed);
        let mut result = Gradients::default();
        self.drop_from(out.0 + 1);
        for i in (0..=out.0).rev() {
            if let Some(g) = grads[i].take() {
                self.visit(i, g, &mut grads, &mut result, profile.as_deref_mut())?;
            }
            // Every consumer of node i has run its backward rule, and so has node i: its value
            // and saved state are dead. Dropping them now rather than at `clear` lets the
            // gradients computed next reuse that memory, which lowers the peak of a training
            // step and spares the allocator fresh pages.
            self.drop_from(i);
        }
        Ok(result)
    }

    /// Runs node `i`'s backward rule on its output gradient `g` and adds the results to the
    /// gradients of its inputs (or to `result` for a keyed leaf).
    fn visit(
        &self,
        i: usize,
        g: Tensor,
        grads: &mut [Option<Tensor>],
        result: &mut Gradients,
        profile: Option<&mut Vec<(&'static str, Duration)>>,
    ) -> Result<()> {
        let node = &self.nodes[i];
        if !node.requires_grad {
            return Ok(());
        }
        if let Some(key) = node.key {
            match result.by_key.get_mut(key) {
                Some(Some(acc)) => acc.add_assign(&g)?,
                _ => result.set(key, g),
            }
            return Ok(());
        }
        let Some(op) = &node.op else { return Ok(()) };
        let ctx = BackwardCtx {
            inputs: node.inputs.iter().map(|v| &self.nodes[v.0].value).collect(),
            output: &node.value,
            grad: &g,
            needs: node
                .inputs
                .iter()
                .map(|v| self.nodes[v.0].requires_grad)
                .collect(),
        };
        let started = profile.is_some().then(Instant::now);
        let input_grads = op.backward(&ctx)?;
        if let (Some(p), Some(t0)) = (profile, started) {
            p.push((op.name(), t0.elapsed()));
        }
        // An op's backward breaking its contract is a bug, not a bad argument of the caller.
        if input_grads.len() != node.inputs.len() {
            return Err(Error::Internal(format!(
                "backward of `{}` returned {} gradients for {} inputs",
                op.name(),
                input_grads.len(),
                node.inputs.len()
            )));
        }
        for (input, ig) in node.inputs.iter().zip(input_grads) {
            let Some(ig) = ig else { continue };
            if !self.nodes[input.0].requires_grad {
                continue;
            }
            let want = self.nodes[input.0].value.shape();
            if ig.shape() != want {
                return Err(Error::Internal(format!(
                    "backward of `{}` produced a gradient of shape {:?} for an input of shape \
                     {want:?}",
                    op.name(),
                    ig.shape()
                )));
            }
            match &mut grads[input.0] {
                Some(acc) => {
                    acc.add_assign(&ig)?;
                    self.recycle(ig);
                }
                slot @ None => *slot = Some(ig),
            }
        }
        drop(ctx);
        self.recycle(g);
        Ok(())
    }

    /// Hands a value's buffer to this tape's run for reuse (when nothing else shares it).
    fn recycle(&self, t: Tensor) {
        if let Some(v) = t.into_host_vec() {
            self.run.recycle(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiling_records_each_backward_rule_only_when_on() {
        let run = |tape: &mut Tape| {
            let w = tape.var(Tensor::from_slice(&[1.0, -2.0, 3.0], &[1, 3]).unwrap(), 0);
            let x = tape.constant(Tensor::from_slice(&[0.5, 0.5, 0.5], &[1, 3]).unwrap());
            let h = tape.linear(x, w, None).unwrap();
            let r = tape.relu(h).unwrap();
            let loss = tape.mean(r).unwrap();
            tape.backward(loss).unwrap()
        };
        let mut tape = Tape::new();
        let plain = run(&mut tape);
        assert!(tape.take_profile().is_empty());

        tape.set_profiling(true);
        let profiled = run(&mut tape);
        let names: Vec<_> = tape.take_profile().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["mean", "relu", "linear"]);
        // taken, so a second take is empty; gradients are unaffected by profiling
        assert!(tape.take_profile().is_empty());
        assert_eq!(
            plain.get(0).unwrap().to_vec().unwrap(),
            profiled.get(0).unwrap().to_vec().unwrap()
        );

        tape.set_profiling(false);
        run(&mut tape);
        assert!(tape.take_profile().is_empty());
    }

    /// Passes the gradient through; may own some saved state, and may watch (weakly) the
    /// state of an op recorded after it, noting whether that state was already freed.
    struct Probe {
        _owned: Option<std::sync::Arc<()>>,
        watch: Option<std::sync::Weak<()>>,
        later_state_freed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }
    impl BackwardOp for Probe {
        fn name(&self) -> &'static str {
            "probe"
        }
        fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
            if let Some(w) = &self.watch {
                self.later_state_freed
                    .store(w.upgrade().is_none(), std::sync::atomic::Ordering::SeqCst);
            }
            Ok(vec![Some(c.grad.clone())])
        }
    }

    #[test]
    fn backward_frees_each_op_state_once_its_rule_has_run() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let freed = Arc::new(AtomicBool::new(false));
        let state = Arc::new(());
        let mut tape = Tape::new();
        let x = tape.var(Tensor::from_slice(&[1.0, 2.0], &[2]).unwrap(), 0);
        let v = tape.value(x).clone();
        let watch = Some(Arc::downgrade(&state));
        let flag = freed.clone();
        let a = tape.push(v.clone(), &[x], move || {
            Box::new(Probe {
                _owned: None,
                watch,
                later_state_freed: flag,
            })
        });
        let flag = freed.clone();
        let b = tape.push(v, &[a], move || {
            Box::new(Probe {
                _owned: Some(state),
                watch: None,
                later_state_freed: flag,
            })
        });
        let seed = Tensor::from_slice(&[3.0, 4.0], &[2]).unwrap();
        let grads = tape.backward_with_seed(b, seed).unwrap();
        assert_eq!(grads.get(0).unwrap().to_vec().unwrap(), vec![3.0, 4.0]);
        // b's saved state was dropped before a's rule ran, not only at the end of the sweep
        assert!(freed.load(Ordering::SeqCst));
    }

    /// A backward rule that breaks the tape's contract: one gradient too many, or one of the
    /// wrong shape.
    struct Broken {
        extra: bool,
    }
    impl BackwardOp for Broken {
        fn name(&self) -> &'static str {
            "broken"
        }
        fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
            Ok(if self.extra {
                vec![Some(c.grad.clone()), None]
            } else {
                vec![Some(Tensor::zeros(&[3]))]
            })
        }
    }

    #[test]
    fn a_broken_backward_rule_is_an_internal_error() {
        for (extra, what) in [
            (true, "returned 2 gradients for 1 inputs"),
            (false, "shape [3]"),
        ] {
            let mut tape = Tape::new();
            let x = tape.var(Tensor::from_slice(&[1.0, 2.0], &[2]).unwrap(), 0);
            let v = tape.value(x).clone();
            let y = tape.push(v, &[x], move || Box::new(Broken { extra }));
            let seed = Tensor::from_slice(&[1.0, 1.0], &[2]).unwrap();
            match tape.backward_with_seed(y, seed) {
                Err(Error::Internal(m)) => assert!(m.contains(what) && m.contains("broken"), "{m}"),
                other => panic!("expected an internal error, got {other:?}"),
            }
        }
    }

    #[test]
    fn gradients_accumulate_per_key_and_the_tape_is_released() {
        // f(w) = sum(w * w) + sum(w): df/dw = 2w + 1, with w used three times.
        let mut tape = Tape::new();
        for _ in 0..3 {
            let w = tape.var(Tensor::from_slice(&[1.0, -2.0, 0.5], &[3]).unwrap(), 4);
            let sq = tape.mul(w, w).unwrap();
            let s = tape.sum(sq).unwrap();
            let t = tape.sum(w).unwrap();
            let l = tape.add(s, t).unwrap();
            let g = tape.backward(l).unwrap();
            assert_eq!(g.get(4).unwrap().to_vec().unwrap(), vec![3.0, -3.0, 2.0]);
            assert!(g.get(0).is_none());
            // backward clears the tape and keeps its allocation for the next step
            assert!(tape.is_empty());
        }
        // evaluation tapes record no backward rule and refuse backward
        let mut eval = Tape::no_grad();
        let w = eval.var(Tensor::scalar(2.0), 0);
        let y = eval.scale(w, 3.0).unwrap();
        assert!(!eval.requires_grad(y));
        assert!(eval.backward(y).is_err());
        // backward from a non-scalar needs an explicit seed
        let mut t = Tape::new();
        let w = t.var(Tensor::zeros(&[2]), 0);
        assert!(t.backward(w).is_err());
    }
}
