//! A model built from a [`ModelSpec`]: parameter layout, initialisation, forward pass on a
//! tape, per-sample losses and batched inference.

use super::budget::{self, Budget, Footprint, MemoryLimit, NodeSize, Workload};
use super::spec::{LossKind, ModelSpec, NodeOp};
use crate::autograd::{Tape, Var};
use crate::backend::Device;
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::ops;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Where a node reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Input,
    Node(usize),
}

/// One parameter tensor of the model.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    /// `<node>.<param>`, as in PyTorch's `state_dict`.
    pub name: String,
    pub shape: Vec<usize>,
    /// False for buffers such as batchnorm running statistics.
    pub trainable: bool,
}

impl ParamInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// How normalisation and dropout layers behave in a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ForwardMode {
    /// Batchnorm uses batch statistics and updates its running statistics.
    pub norm_training: bool,
    /// Dropout is active.
    pub dropout: bool,
}

impl ForwardMode {
    /// Training as PyTorch's `model.train()`.
    pub const TRAIN: ForwardMode = ForwardMode {
        norm_training: true,
        dropout: true,
    };
    /// Evaluation as PyTorch's `model.eval()`.
    pub const EVAL: ForwardMode = ForwardMode {
        norm_training: false,
        dropout: false,
    };
}

/// The output of a forward pass.
pub struct Forward {
    /// The model's output (logits or predictions).
    pub out: Var,
    /// Updated buffers (parameter index, new value), from batchnorm in training mode.
    pub buffer_updates: Vec<(usize, Tensor)>,
}

/// An architecture: the spec, compiled into parameter indices and input wiring.
#[derive(Clone, Debug)]
pub struct Model {
    spec: ModelSpec,
    params: Vec<ParamInfo>,
    node_params: Vec<Vec<usize>>,
    node_inputs: Vec<Vec<Source>>,
    /// Per node: a ReLU whose only reader is the max-pool right after it. The pass runs the
    /// pool first and the ReLU on its output (see [`relu_pool_swaps`]).
    relu_after_pool: Vec<bool>,
    /// Per node: an embedding computed by the mean right after it (see
    /// [`embedding_mean_fusions`]).
    embedding_into_mean: Vec<bool>,
    output_shape: Vec<usize>,
    /// Per-node sizes inferred from the spec, for the resource guard.
    node_sizes: Vec<NodeSize>,
    /// The memory budget of the calls on this model (see [`budget`]).
    memory_limit: MemoryLimit,
}

/// Marks the ReLU nodes that can run after the max-pool reading them instead of before.
///
/// `max` picks one of its inputs and ReLU is monotone and keeps positives as they are, so
/// `maxpool(relu(x)) == relu(maxpool(x))` value for value, and the gradient reaches the same
/// cell either way (the first maximum; nothing at all when the maximum is not positive, since
/// ReLU's gradient at 0 is 0). For finite inputs the two orders give bit-identical outputs
/// and gradients, but the swapped one applies ReLU, forward and backward, to a quarter of the
/// values behind a 2x2 pool: measured on the benchmark CNN (two cores, batch 128), the two
/// ReLUs took 2.7 of 16.4 ms per training step. (A NaN differs: ReLU maps it to 0 before
/// the pool, while the pool propagates it; losses are checked for NaN at every step anyway.)
fn relu_pool_swaps(spec: &ModelSpec, node_inputs: &[Vec<Source>]) -> Vec<bool> {
    read_only_by_next(spec, node_inputs, |op, next| {
        matches!(op, NodeOp::Relu) && matches!(next, NodeOp::MaxPool2d { .. })
    })
}

/// Per node: an embedding whose only reader is a mean right after it over the last id axis
/// (`sizes`: the per-sample output shapes). The mean computes both in one op
/// ([`Tape::embedding_mean`]), without the lookup's `[..., L, dim]` output.
fn embedding_mean_fusions(
    spec: &ModelSpec,
    node_inputs: &[Vec<Source>],
    sizes: &[NodeSize],
) -> Vec<bool> {
    let mut fused = read_only_by_next(spec, node_inputs, |op, next| {
        matches!(op, NodeOp::Embedding { .. }) && matches!(next, NodeOp::Mean { .. })
    });
    for (i, f) in fused.iter_mut().enumerate().filter(|(_, f)| **f) {
        // Per sample the lookup is ids + [dim]; with the batch axis in front, the last id
        // axis has the index of that dim.
        let last_id_axis = sizes.get(i).map(|s| s.shape.len() - 1);
        *f = match spec.nodes[i + 1].op {
            NodeOp::Mean { dim } => dim >= 1 && Some(dim) == last_id_axis,
            _ => false,
        };
    }
    fused
}

/// Per node i: `pair(op i, op i + 1)` holds, and node i + 1 is node i's only reader and
/// reads nothing else.
fn read_only_by_next(
    spec: &ModelSpec,
    node_inputs: &[Vec<Source>],
    pair: impl Fn(&NodeOp, &NodeOp) -> bool,
) -> Vec<bool> {
    let n = spec.nodes.len();
    let mut readers = vec![0usize; n];
    for ins in node_inputs {
        for s in ins {
            if let Source::Node(j) = *s {
                readers[j] += 1;
            }
        }
    }
    (0..n)
        .map(|i| {
            i + 1 < n
                && readers[i] == 1
                && pair(&spec.nodes[i].op, &spec.nodes[i + 1].op)
                && node_inputs[i + 1] == [Source::Node(i)]
        })
        .collect()
}

impl Model {
    /// Compiles a spec and checks that every layer's shapes fit, by running one sample
    /// through the model; shape errors name the node.
    ///
    /// Sizes are computed from the spec first, with checked arithmetic: a layer whose
    /// output overflows the address space is an [`Error::ResourceLimit`], and so is a model
    /// whose one-sample pass (with its freshly initialised weights) would not fit in the
    /// default memory budget.
    pub fn new(spec: ModelSpec) -> Result<Self> {
        check_sizes(&spec)?;
        let node_sizes = budget::node_sizes(&spec)?;
        let mut params = Vec::new();
        let mut node_params = Vec::new();
        let mut node_inputs = Vec::new();
        for (i, n) in spec.nodes.iter().enumerate() {
            let mut mine = Vec::new();
            for (suffix, shape, trainable) in n.op.params() {
                mine.push(params.len());
                let name = n
                    .param_names
                    .iter()
                    .find(|(s, _)| s == suffix)
                    .map_or_else(|| format!("{}.{suffix}", n.name), |(_, full)| full.clone());
                if params.iter().any(|p: &ParamInfo| p.name == name) {
                    return Err(Error::Spec(format!(
                        "node `{}`: parameter name `{name}` is used twice",
                        n.name
                    )));
                }
                params.push(ParamInfo {
                    name,
                    shape,
                    trainable,
                });
            }
            node_params.push(mine);
            let inputs = if n.inputs.is_empty() {
                vec![if i == 0 {
                    Source::Input
                } else {
                    Source::Node(i - 1)
                }]
            } else {
                n.inputs
                    .iter()
                    .map(|name| {
                        if name == "input" {
                            Source::Input
                        } else {
                            Source::Node(
                                spec.nodes
                                    .iter()
                                    .position(|m| &m.name == name)
                                    .expect("validated by the spec parser"),
                            )
                        }
                    })
                    .collect()
            };
            node_inputs.push(inputs);
        }
        let relu_after_pool = relu_pool_swaps(&spec, &node_inputs);
        let embedding_into_mean = embedding_mean_fusions(&spec, &node_inputs, &node_sizes);
        let mut model = Model {
            spec,
            params,
            node_params,
            node_inputs,
            relu_after_pool,
            embedding_into_mean,
            output_shape: Vec::new(),
            node_sizes,
            memory_limit: MemoryLimit::default(),
        };
        budget::check(
            &model,
            Workload::inference(1),
            Budget::resolve(None),
            "compiling the model (one sample)",
        )?;
        let weights = model.init_weights(0);
        let mut tape = Tape::no_grad();
        let mut shape = vec![1];
        shape.extend_from_slice(&model.spec.input_shape);
        let x = Tensor::try_zeros(&shape)?;
        let f = model.forward(&mut tape, &weights, x, ForwardMode::EVAL, &mut Rng::new(0))?;
        model.output_shape = tape.value(f.out).shape()[1..].to_vec();
        // The forward pass accepted every node, so the inference reached them all; should it
        // ever stop short, the missing nodes are counted at the output's size.
        while model.node_sizes.len() < model.spec.nodes.len() {
            let numel = model.output_shape.iter().product();
            model.node_sizes.push(NodeSize {
                shape: model.output_shape.clone(),
                numel,
                workspace: 0,
            });
        }
        Ok(model)
    }

    /// Sets the memory budget of every later call on this model, in bytes; `None` restores
    /// the default (3/4 of the memory the machine reports available when a call starts).
    /// Takes `&self` because the C ABI shares a model between concurrent calls; a call
    /// already running keeps the budget it started with.
    pub fn set_memory_limit(&self, bytes: Option<u64>) {
        self.memory_limit.set(bytes);
    }

    /// The budget set with [`Model::set_memory_limit`] (`None`: the default).
    pub fn memory_limit(&self) -> Option<u64> {
        self.memory_limit.get()
    }

    /// Checks that `work` fits in this model's memory budget before anything is allocated;
    /// `what` names the call in the error. Returns the estimate.
    pub fn check_memory(&self, work: Workload, what: &str) -> Result<Footprint> {
        budget::check(self, work, Budget::resolve(self.memory_limit.get()), what)
    }

    /// Whether node `i`'s output is computed inside the next node's op and never held (an
    /// embedding fused into the mean after it).
    pub(crate) fn fused_into_next(&self, i: usize) -> bool {
        self.embedding_into_mean[i]
    }

    /// Per-node sizes inferred from the spec.
    pub(crate) fn node_sizes(&self) -> &[NodeSize] {
        &self.node_sizes
    }

    /// Parses a JSON spec and compiles it.
    pub fn from_json(text: &str) -> Result<Self> {
        Self::new(ModelSpec::from_json(text)?)
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Every parameter and buffer, in spec order.
    pub fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    /// Index of the parameter called `name`.
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }

    /// Per-sample input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.spec.input_shape
    }

    /// Per-sample output shape (e.g. `[10]` for ten classes).
    pub fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    pub fn loss_kind(&self) -> LossKind {
        self.spec.loss
    }

    /// Fresh weights with PyTorch's default initialisation, from `seed`.
    pub fn init_weights(&self, seed: u64) -> Vec<Tensor> {
        let mut rng = Rng::new(seed);
        let mut out = Vec::with_capacity(self.params.len());
        for (node, idx) in self.spec.nodes.iter().zip(&self.node_params) {
            for (&i, (suffix, _, _)) in idx.iter().zip(node.op.params()) {
                let p = &self.params[i];
                let t = match (&node.op, suffix) {
                    // kaiming_uniform(a = sqrt 5) on the weight and the matching bias bound
                    // both come out as U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
                    (NodeOp::Linear { in_features, .. }, _) => {
                        let b = 1.0 / (*in_features as f32).sqrt();
                        Tensor::rand_uniform(&p.shape, -b, b, &mut rng)
                    }
                    (
                        NodeOp::Conv2d {
                            in_channels,
                            kernel,
                            ..
                        },
                        _,
                    ) => {
                        let b = 1.0 / ((*in_channels * kernel.0 * kernel.1) as f32).sqrt();
                        Tensor::rand_uniform(&p.shape, -b, b, &mut rng)
                    }
                    (NodeOp::Embedding { .. }, _) => Tensor::randn(&p.shape, 1.0, &mut rng),
                    (_, "weight") | (_, "running_var") => Tensor::full(&p.shape, 1.0),
                    _ => Tensor::zeros(&p.shape),
                };
                out.push(t);
            }
        }
        out
    }

    /// Checks that `weights` has one tensor per parameter with the right shape, all finite.
    pub fn check_weights(&self, weights: &[Tensor]) -> Result<()> {
        if weights.len() != self.params.len() {
            return Err(Error::Binding(format!(
                "{} weight tensors for {} parameters",
                weights.len(),
                self.params.len()
            )));
        }
        for (p, w) in self.params.iter().zip(weights) {
            if w.shape() != p.shape.as_slice() {
                return Err(Error::Binding(format!(
                    "`{}` has shape {:?}, the spec says {:?}",
                    p.name,
                    w.shape(),
                    p.shape
                )));
            }
            if !w.all_finite()? {
                return Err(Error::NonFinite(format!(
                    "parameter `{}` holds NaN or infinity",
                    p.name
                )));
            }
        }
        Ok(())
    }

    /// Runs the model on a batch `x: [N, ...input_shape]`. Trainable parameters go on the tape
    /// under their index, so the tape's gradients are keyed by parameter index.
    pub fn forward(
        &self,
        tape: &mut Tape,
        weights: &[Tensor],
        x: Tensor,
        mode: ForwardMode,
        rng: &mut Rng,
    ) -> Result<Forward> {
        if x.rank() != self.spec.input_shape.len() + 1
            || x.shape()[1..] != self.spec.input_shape[..]
        {
            return Err(Error::shape(
                "forward",
                format!(
                    "input of shape {:?}, the model takes [N, {:?}]",
                    x.shape(),
                    self.spec.input_shape
                ),
            ));
        }
        let input = tape.constant(x);
        let mut outs: Vec<Var> = Vec::with_capacity(self.spec.nodes.len());
        let mut buffer_updates = Vec::new();
        for (i, node) in self.spec.nodes.iter().enumerate() {
            if self.relu_after_pool[i] || self.embedding_into_mean[i] {
                // Its only reader, the max-pool or mean at i + 1, applies it to its input.
                outs.push(match self.node_inputs[i][0] {
                    Source::Input => input,
                    Source::Node(j) => outs[j],
                });
                continue;
            }
            let ins: Vec<Var> = self.node_inputs[i]
                .iter()
                .map(|s| match *s {
                    Source::Input => input,
                    Source::Node(j) => outs[j],
                })
                .collect();
            let fused_embedding = (i > 0 && self.embedding_into_mean[i - 1]).then(|| i - 1);
            // The node whose parameters this step reads: the embedding's where the mean
            // computes it.
            let owner = fused_embedding.unwrap_or(i);
            let pv: Vec<Var> = self.node_params[owner]
                .iter()
                .map(|&k| {
                    if self.params[k].trainable {
                        tape.var(weights[k].clone(), k)
                    } else {
                        tape.constant(weights[k].clone())
                    }
                })
                .collect();
            let out = match (&node.op, fused_embedding) {
                (NodeOp::Mean { dim }, Some(_)) => tape.embedding_mean(ins[0], pv[0], *dim),
                _ => self.node_forward(
                    tape,
                    &node.op,
                    &ins,
                    &pv,
                    &self.node_params[i],
                    weights,
                    mode,
                    rng,
                    &mut buffer_updates,
                ),
            };
            let out = out
                .and_then(|out| {
                    if i > 0 && self.relu_after_pool[i - 1] {
                        tape.relu(out)
                    } else {
                        Ok(out)
                    }
                })
                .map_err(|e| match e {
                    Error::Shape { detail, op } => Error::Shape {
                        op,
                        detail: format!("node `{}`: {detail}", node.name),
                    },
                    other => other,
                })?;
            outs.push(out);
        }
        Ok(Forward {
            out: *outs.last().expect("a spec has at least one node"),
            buffer_updates,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn node_forward(
        &self,
        tape: &mut Tape,
        op: &NodeOp,
        ins: &[Var],
        pv: &[Var],
        pidx: &[usize],
        weights: &[Tensor],
        mode: ForwardMode,
        rng: &mut Rng,
        buffer_updates: &mut Vec<(usize, Tensor)>,
    ) -> Result<Var> {
        use ops::conv::Conv2dParams;
        use ops::pool::Pool2dParams;
        let x = ins[0];
        match op {
            NodeOp::Linear { bias, layout, .. } => {
                tape.linear_with(x, pv[0], bias.then(|| pv[1]), *layout)
            }
            NodeOp::Conv2d {
                stride,
                padding,
                bias,
                ..
            } => tape.conv2d(
                x,
                pv[0],
                bias.then(|| pv[1]),
                Conv2dParams {
                    stride: *stride,
                    padding: *padding,
                },
            ),
            NodeOp::Relu => tape.relu(x),
            NodeOp::Gelu(a) => tape.gelu(x, *a),
            NodeOp::Tanh => tape.tanh(x),
            NodeOp::Sigmoid => tape.sigmoid(x),
            NodeOp::MaxPool2d {
                kernel,
                stride,
                padding,
            } => tape.max_pool2d(
                x,
                Pool2dParams {
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                },
            ),
            NodeOp::AvgPool2d {
                kernel,
                stride,
                padding,
            } => tape.avg_pool2d(
                x,
                Pool2dParams {
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                },
            ),
            NodeOp::GlobalAvgPool => tape.global_avg_pool(x),
            NodeOp::BatchNorm {
                eps,
                momentum,
                affine,
                ..
            } => {
                let (w, b, rm, rv) = if *affine {
                    (Some(pv[0]), Some(pv[1]), pidx[2], pidx[3])
                } else {
                    (None, None, pidx[0], pidx[1])
                };
                let cfg = ops::norm::BatchNormConfig {
                    training: mode.norm_training,
                    momentum: *momentum,
                    eps: *eps,
                };
                let r = tape.batch_norm(x, w, b, &weights[rm], &weights[rv], cfg)?;
                if let (Some(m), Some(v)) = (r.running_mean, r.running_var) {
                    buffer_updates.push((rm, m));
                    buffer_updates.push((rv, v));
                }
                Ok(r.out)
            }
            NodeOp::LayerNorm {
                normalized_shape,
                eps,
                affine,
            } => {
                let (w, b) = if *affine {
                    (Some(pv[0]), Some(pv[1]))
                } else {
                    (None, None)
                };
                tape.layer_norm(x, normalized_shape, w, b, *eps)
            }
            NodeOp::Embedding { .. } => tape.embedding(x, pv[0]),
            NodeOp::Mean { dim } => tape.mean_axis(x, *dim),
            NodeOp::Flatten => tape.flatten(x),
            NodeOp::Reshape { shape } => {
                let mut s = vec![tape.value(x).dim(0)];
                s.extend_from_slice(shape);
                tape.reshape(x, &s)
            }
            NodeOp::Dropout { p } => tape.dropout(x, *p, mode.dropout, rng),
            NodeOp::Add => tape.add(ins[0], ins[1]),
        }
    }

    /// Whether every sample's output of a forward pass in `mode` is the one it gets in a
    /// pass over any other batch that holds it, with nothing drawn from the generator: then
    /// two batches may be evaluated as one. Not so with batch norm in training mode (it
    /// normalises with the batch's own statistics and updates its running statistics once
    /// per pass), a mean over the batch axis, or active dropout (a pass over two batches
    /// at once draws its masks in another order than two passes: see
    /// `StepCtx::outputs_pair`).
    pub fn rows_independent(&self, mode: ForwardMode) -> bool {
        self.spec.nodes.iter().all(|n| match n.op {
            NodeOp::BatchNorm { .. } => !mode.norm_training,
            NodeOp::Mean { dim } => dim != 0,
            NodeOp::Dropout { p } => !mode.dropout || p == 0.0,
            // Listed one by one so that a new op has to say whether it mixes samples.
            NodeOp::Linear { .. }
            | NodeOp::Conv2d { .. }
            | NodeOp::Relu
            | NodeOp::Gelu(_)
            | NodeOp::Tanh
            | NodeOp::Sigmoid
            | NodeOp::MaxPool2d { .. }
            | NodeOp::AvgPool2d { .. }
            | NodeOp::GlobalAvgPool
            | NodeOp::LayerNorm { .. }
            | NodeOp::Embedding { .. }
            | NodeOp::Flatten
            | NodeOp::Reshape { .. }
            | NodeOp::Add => true,
        })
    }

    /// Per-sample loss `[N]` of the model output against `targets`.
    pub fn per_sample_loss(&self, tape: &mut Tape, out: Var, targets: &Targets) -> Result<Var> {
        match (self.spec.loss, targets) {
            (LossKind::CrossEntropy, Targets::Classes(y)) => tape.cross_entropy(out, y),
            (LossKind::Mse, Targets::Values(t)) => {
                let t = tape.constant(t.to_device(tape.value(out).device())?);
                tape.mse(out, t)
            }
            (LossKind::BceWithLogits, Targets::Values(t)) => {
                let t = tape.constant(t.to_device(tape.value(out).device())?);
                tape.bce_with_logits(out, t)
            }
            (k, _) => Err(Error::invalid(format!(
                "loss `{}` needs {} targets",
                k.name(),
                if k == LossKind::CrossEntropy {
                    "integer class"
                } else {
                    "float"
                }
            ))),
        }
    }

    /// Checks that a data set fits the model: sample shape, finite inputs, targets of the
    /// right kind and range.
    pub fn check_dataset(&self, data: &Dataset, what: &str) -> Result<()> {
        let ctx = |e: Error| match e {
            Error::Shape { op, detail } => Error::Shape {
                op,
                detail: format!("{what} set: {detail}"),
            },
            Error::InvalidArgument(d) => Error::InvalidArgument(format!("{what} set: {d}")),
            Error::NonFinite(d) => Error::NonFinite(format!("{what} set: {d}")),
            other => other,
        };
        if data.sample_shape() != self.spec.input_shape.as_slice() {
            return Err(Error::shape(
                "dataset",
                format!(
                    "{what} set: samples of shape {:?}, the model takes {:?}",
                    data.sample_shape(),
                    self.spec.input_shape
                ),
            ));
        }
        data.check_finite().map_err(ctx)?;
        match (self.spec.loss, &data.y) {
            (LossKind::CrossEntropy, Targets::Classes(y)) => {
                let classes = self.output_shape.iter().product::<usize>();
                ops::loss::check_labels(y, data.len(), classes, "labels").map_err(ctx)
            }
            (LossKind::CrossEntropy, Targets::Values(_)) => Err(Error::invalid(format!(
                "{what} set: the model's loss is cross_entropy, which needs integer labels"
            ))),
            (_, Targets::Values(t)) => {
                let mut want = vec![data.len()];
                want.extend_from_slice(&self.output_shape);
                if t.shape() != want.as_slice() {
                    return Err(Error::shape(
                        "dataset",
                        format!(
                            "{what} set: targets of shape {:?}, expected {want:?}",
                            t.shape()
                        ),
                    ));
                }
                Ok(())
            }
            (k, Targets::Classes(_)) => Err(Error::invalid(format!(
                "{what} set: the model's loss is {}, which needs float targets",
                k.name()
            ))),
        }
    }

    /// Model outputs for every sample, computed in batches without recording gradients, on
    /// the weights' device (each batch goes there, the outputs come back to the host).
    /// Outputs that come out NaN or infinite (finite weights whose values overflow) are an
    /// [`Error::NonFinite`] naming the sample, not a result.
    ///
    /// The batch is checked against the model's memory budget first (see [`budget`]).
    pub fn predict(&self, weights: &[Tensor], x: &Tensor, batch_size: usize) -> Result<Tensor> {
        let dev = weights_device(weights);
        let n = x.dim(0);
        self.check_memory(
            Workload::inference(batch_size.clamp(1, n.max(1))),
            "predict",
        )?;
        let per: usize = self.output_shape.iter().product();
        let mut out = crate::tensor::try_alloc(n.saturating_mul(per), "the predictions")?;
        let mut tape = Tape::no_grad();
        let mut rng = Rng::new(0);
        for start in (0..n).step_by(batch_size.max(1)) {
            let end = (start + batch_size.max(1)).min(n);
            let xb = slice_rows(x, start, end)?.to_device(dev)?;
            let f = self.forward(&mut tape, weights, xb, ForwardMode::EVAL, &mut rng)?;
            out.extend(tape.value(f.out).to_vec()?);
            tape.clear();
        }
        if let Some(i) = out.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "predict: output {} of sample {} is {} (the weights and inputs are finite, but the values overflow)",
                i % per.max(1),
                i / per.max(1),
                out[i]
            )));
        }
        let mut shape = vec![n];
        shape.extend_from_slice(&self.output_shape);
        Tensor::from_vec(out, &shape)
    }

    /// Per-sample losses of every sample, in evaluation mode, on the weights' device; a NaN or
    /// infinite loss is an [`Error::NonFinite`] naming the sample.
    pub fn losses(
        &self,
        weights: &[Tensor],
        data: &Dataset,
        batch_size: usize,
    ) -> Result<Vec<f32>> {
        let dev = weights_device(weights);
        self.check_memory(
            Workload::inference(batch_size.clamp(1, data.len().max(1))),
            "losses",
        )?;
        let mut out = crate::tensor::try_alloc(data.len(), "the losses")?;
        let mut tape = Tape::no_grad();
        let mut rng = Rng::new(0);
        let bs = batch_size.max(1);
        for start in (0..data.len()).step_by(bs) {
            let idx: Vec<usize> = (start..(start + bs).min(data.len())).collect();
            let (xb, yb) = data.gather(&idx)?;
            let f = self.forward(
                &mut tape,
                weights,
                xb.to_device(dev)?,
                ForwardMode::EVAL,
                &mut rng,
            )?;
            let l = self.per_sample_loss(&mut tape, f.out, &yb)?;
            out.extend(tape.value(l).to_vec()?);
            tape.clear();
        }
        if let Some(i) = out.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "losses: the loss of sample {i} is {} (the model's outputs overflow)",
                out[i]
            )));
        }
        Ok(out)
    }
}

/// Where a model's weights live (the CPU for a model without parameters).
fn weights_device(weights: &[Tensor]) -> Device {
    weights.first().map_or(Device::Cpu, Tensor::device)
}

/// Upper bound on the values of one tensor (parameters, one sample's input): 2³¹ floats,
/// 8 GiB. A spec beyond it is refused up front rather than letting an allocation abort the
/// host process.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 31;

/// Upper bound on the parameters of a whole model: 2³² floats, 16 GiB.
pub const MAX_MODEL_ELEMENTS: usize = 1 << 32;

fn check_sizes(spec: &ModelSpec) -> Result<()> {
    let too_big = |what: String, shape: &[usize]| {
        Error::Spec(format!(
            "{what}: shape {shape:?} holds more than {MAX_TENSOR_ELEMENTS} values"
        ))
    };
    match crate::tensor::checked_numel(&spec.input_shape) {
        Ok(n) if n <= MAX_TENSOR_ELEMENTS => {}
        _ => return Err(too_big("input".into(), &spec.input_shape)),
    }
    let mut total = 0usize;
    for n in &spec.nodes {
        for (suffix, shape, _) in n.op.params() {
            let what = format!("node `{}`: parameter `{suffix}`", n.name);
            match crate::tensor::checked_numel(&shape) {
                Ok(k) if k <= MAX_TENSOR_ELEMENTS => total += k,
                _ => return Err(too_big(what, &shape)),
            }
        }
    }
    if total > MAX_MODEL_ELEMENTS {
        return Err(Error::Spec(format!(
            "the model has {total} parameter values, more than the limit of {MAX_MODEL_ELEMENTS}"
        )));
    }
    Ok(())
}

/// Rows `start..end` of `x` along the first dimension (a copy).
///
/// The copy's buffer comes from the CPU pool of the run open on this thread: a batch that
/// goes on a tape is handed back to that pool when the tape is cleared, and a buffer from
/// outside the pool would stay there unused. `predict`'s batches did that, one per batch of
/// every evaluation pass, and an adaptive ∇τ run on the benchmark MLP ended with 50 spare
/// 800 KiB buffers in its pool (peak RSS 86 instead of 63 MiB).
pub fn slice_rows(x: &Tensor, start: usize, end: usize) -> Result<Tensor> {
    let per = if x.dim(0) == 0 {
        0
    } else {
        x.numel() / x.dim(0)
    };
    let d = x.cpu_data("slice_rows")?;
    let mut shape = x.shape().to_vec();
    shape[0] = end - start;
    let rows = &d[start * per..end * per];
    let mut out = crate::backend::cpu::pool::take(rows.len())?;
    out.copy_from_slice(rows);
    Tensor::from_vec(out, &shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CNN: &str = r#"{"format": "gradtau.model/1", "input": {"shape": [2, 8, 8]},
     "nodes": [
      {"name": "r0", "op": "relu"},
      {"name": "p0", "op": "maxpool2d", "kernel_size": 2, "stride": 1},
      {"name": "conv", "op": "conv2d", "in_channels": 2, "out_channels": 4, "kernel_size": 3, "padding": 1},
      {"name": "r1", "op": "relu"},
      {"name": "p1", "op": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1},
      {"name": "flat", "op": "flatten"},
      {"name": "fc", "op": "linear", "in_features": 64, "out_features": 3}],
     "loss": "cross_entropy"}"#;

    /// Logits and every gradient of a batch, with or without the ReLU/max-pool swap.
    fn logits_and_grads(model: &Model, w: &[Tensor], x: &Tensor) -> (Vec<f32>, Vec<Vec<f32>>) {
        let mut tape = Tape::new();
        let f = model
            .forward(
                &mut tape,
                w,
                x.clone(),
                ForwardMode::TRAIN,
                &mut Rng::new(0),
            )
            .unwrap();
        let labels = Targets::Classes((0..x.dim(0)).map(|i| (i % 3) as u32).collect());
        let l = model.per_sample_loss(&mut tape, f.out, &labels).unwrap();
        let loss = tape.mean(l).unwrap();
        let logits = tape.value(f.out).to_vec().unwrap();
        let grads = tape.backward(loss).unwrap();
        let g = (0..w.len())
            .map(|k| grads.get(k).unwrap().to_vec().unwrap())
            .collect();
        (logits, g)
    }

    #[test]
    fn relu_then_max_pool_runs_swapped_with_identical_results() {
        let model = Model::from_json(CNN).unwrap();
        assert_eq!(
            model.relu_after_pool,
            [true, false, false, true, false, false, false]
        );
        let plain = Model {
            relu_after_pool: vec![false; 7],
            ..model.clone()
        };
        let w = model.init_weights(7);
        let mut rng = Rng::new(3);
        // Normal values, with runs of exact zeros and of negatives so that some windows hold
        // no positive value and some hold ties.
        let x: Vec<f32> = (0..4 * 128)
            .map(|i| match i % 11 {
                0..=2 => 0.0,
                3 => -1.0,
                _ => rng.normal(),
            })
            .collect();
        let x = Tensor::from_vec(x, &[4, 2, 8, 8]).unwrap();
        let (la, ga) = logits_and_grads(&model, &w, &x);
        let (lb, gb) = logits_and_grads(&plain, &w, &x);
        assert_eq!(la, lb);
        assert_eq!(ga, gb);
        assert!(ga.iter().all(|g| g.iter().any(|&v| v != 0.0)));
    }

    #[test]
    fn a_relu_read_elsewhere_is_not_swapped() {
        let spec = r#"{"format": "gradtau.model/1", "input": {"shape": [1, 4, 4]},
         "nodes": [
          {"name": "r", "op": "relu"},
          {"name": "p", "op": "maxpool2d", "kernel_size": 1},
          {"name": "sum", "op": "add", "inputs": ["p", "r"]},
          {"name": "last", "op": "relu"},
          {"name": "p2", "op": "maxpool2d", "kernel_size": 2, "inputs": ["sum"]}],
         "loss": "mse"}"#;
        let model = Model::from_json(spec).unwrap();
        assert_eq!(model.relu_after_pool, [false; 5]);
    }

    /// A bag-of-words spec: ids `shape` → embedding → mean over `mean_dim` → linear.
    fn bag_spec(shape: &str, mean_dim: usize, in_features: usize) -> String {
        format!(
            r#"{{"format": "gradtau.model/1", "input": {{"shape": {shape}}},
             "nodes": [
              {{"name": "emb", "op": "embedding", "num_embeddings": 11, "embedding_dim": 5}},
              {{"name": "bag", "op": "mean", "dim": {mean_dim}}},
              {{"name": "flat", "op": "flatten"}},
              {{"name": "fc", "op": "linear", "in_features": {in_features}, "out_features": 3}}],
             "loss": "cross_entropy"}}"#
        )
    }

    #[test]
    fn embedding_then_mean_runs_fused_with_identical_results() {
        // Mean over the last id axis (fused), and over an earlier one (not fused).
        for (shape, dims, mean_dim, feats) in [
            ("[7]", vec![4usize, 7], 1, 5),
            ("[3, 6]", vec![4, 3, 6], 2, 15),
            ("[3, 6]", vec![4, 3, 6], 1, 30),
        ] {
            let model = Model::from_json(&bag_spec(shape, mean_dim, feats)).unwrap();
            let last_id_axis = dims.len() - 1;
            assert_eq!(
                model.embedding_into_mean,
                [mean_dim == last_id_axis, false, false, false]
            );
            let plain = Model {
                embedding_into_mean: vec![false; 4],
                ..model.clone()
            };
            // The footprint leaves out the lookup output the fused op never holds.
            let [fused, unfused] = [&model, &plain].map(|m| {
                budget::footprint(m, Workload::inference(64))
                    .unwrap()
                    .activations
            });
            let lookup = 64 * model.node_sizes[0].numel as u128 * 4;
            assert_eq!(
                unfused - fused,
                if model.embedding_into_mean[0] {
                    lookup
                } else {
                    0
                }
            );
            let w = model.init_weights(5);
            // Repeated ids, so that the scatter accumulates.
            let ids: Vec<f32> = (0..dims.iter().product::<usize>())
                .map(|i| ((i * 7 + i / 3) % 11) as f32)
                .collect();
            let x = Tensor::from_vec(ids, &dims).unwrap();
            let (la, ga) = logits_and_grads(&model, &w, &x);
            let (lb, gb) = logits_and_grads(&plain, &w, &x);
            assert_eq!(la, lb, "ids {dims:?}, mean over {mean_dim}");
            assert_eq!(ga, gb, "ids {dims:?}, mean over {mean_dim}");
            assert!(ga[0].iter().any(|&v| v != 0.0));
        }
    }

    #[test]
    fn an_embedding_read_elsewhere_is_not_fused() {
        let spec = r#"{"format": "gradtau.model/1", "input": {"shape": [4]},
         "nodes": [
          {"name": "emb", "op": "embedding", "num_embeddings": 11, "embedding_dim": 5},
          {"name": "bag", "op": "mean", "dim": 1},
          {"name": "first", "op": "mean", "dim": 1, "inputs": ["emb"]},
          {"name": "sum", "op": "add", "inputs": ["bag", "first"]}],
         "loss": "mse"}"#;
        let model = Model::from_json(spec).unwrap();
        assert_eq!(model.embedding_into_mean, [false; 4]);
    }
}
