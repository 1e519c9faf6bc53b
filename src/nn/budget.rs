//! The resource guard: how much memory a run of a model will need, computed from the spec and
//! the batch size before anything is allocated, and checked against a budget.
//!
//! A spec of a few hundred bytes can describe a layer whose activations do not fit in any
//! machine (a convolution padded by 40 000 on an 8×8 input holds 25 GB per channel and per
//! sample), and an allocation that cannot be made aborts the whole host process. So every
//! entry that computes (training, each unlearning method, inference, the audit) first asks
//! [`Model::check_memory`] whether its peak fits, and refuses with
//! [`Error::ResourceLimit`] naming the node and the bytes when it does not.
//!
//! The estimate is an upper-leaning sum, all in `u128` with checked arithmetic so no spec can
//! overflow it:
//! - the parameters: the caller's copy, the working copy, the gradient and the optimizer's
//!   moments (AdamW: two) when training; the caller's copy and the copy read for the call
//!   otherwise;
//! - every node's output for the whole batch (the tape keeps them all until the step ends)
//!   and, when training, as much again for its gradient and as much for what the op saves
//!   for its backward pass, times the number of batches one step puts on the tape (∇τ and
//!   NegGrad+ put a forget and a retain batch on it);
//! - the largest transient workspace: a convolution's patch matrix (im2col), one per worker
//!   thread, and when training its gradient as well;
//! - the input batch.
//!
//! The budget is per model ([`Model::set_memory_limit`]); by default it is the environment
//! variable `GRADTAU_MEMORY_LIMIT` (bytes) when set, else three quarters of the memory the
//! kernel reports available (`MemAvailable` in `/proc/meminfo`) when the run starts, or
//! [`FALLBACK_LIMIT`] where that cannot be read. The default also bounds compiling a model
//! (one sample's pass with fresh weights), which happens before a per-model limit can be set.

use super::model::Model;
use super::spec::{ModelSpec, NodeOp};
use crate::error::{Error, Result};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// The budget used where the available memory cannot be read (no `/proc/meminfo`): 8 GiB.
pub const FALLBACK_LIMIT: u64 = 8 << 30;

/// The share of `MemAvailable` a run may plan to use by default (numerator / denominator):
/// the rest is left to the host process and the page cache.
const DEFAULT_SHARE: (u64, u64) = (3, 4);

const F32: u128 = std::mem::size_of::<f32>() as u128;

/// A model's memory budget in bytes; 0 means the machine-derived default. Shared by the
/// concurrent calls on one model, hence atomic; a clone starts with the same value.
#[derive(Default)]
pub(crate) struct MemoryLimit(AtomicU64);

impl MemoryLimit {
    pub fn set(&self, bytes: Option<u64>) {
        self.0.store(bytes.unwrap_or(0), Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&b| b != 0)
    }
}

impl Clone for MemoryLimit {
    fn clone(&self) -> Self {
        MemoryLimit(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

impl fmt::Debug for MemoryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.get() {
            Some(b) => write!(f, "{b} bytes"),
            None => f.write_str("default"),
        }
    }
}

/// The budget in force and where it came from (for the error message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub bytes: u64,
    /// True when the caller set it; false for the machine-derived default.
    pub explicit: bool,
}

impl Budget {
    /// The caller's limit, or the default derived from the machine's available memory.
    pub fn resolve(explicit: Option<u64>) -> Budget {
        match explicit {
            Some(bytes) => Budget {
                bytes,
                explicit: true,
            },
            None => Budget {
                bytes: default_limit(),
                explicit: false,
            },
        }
    }
}

/// The environment variable that sets the process-wide default budget, in bytes.
pub const LIMIT_ENV: &str = "GRADTAU_MEMORY_LIMIT";

/// `GRADTAU_MEMORY_LIMIT` when it holds a positive number of bytes, else three quarters of
/// `MemAvailable`, or [`FALLBACK_LIMIT`].
pub fn default_limit() -> u64 {
    if let Some(b) = std::env::var(LIMIT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&b| b > 0)
    {
        return b;
    }
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| mem_available(&t))
        .map_or(FALLBACK_LIMIT, |b| b / DEFAULT_SHARE.1 * DEFAULT_SHARE.0)
}

/// `MemAvailable` in bytes from the text of `/proc/meminfo`.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut it = line.split_whitespace().skip(1);
    let n: u64 = it.next()?.parse().ok()?;
    match it.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        _ => None,
    }
}

/// What a call will do with the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Workload {
    /// Samples per forward pass.
    pub batch: usize,
    /// Batches on the tape at once in one training step; 0 for inference (no tape gradients).
    pub batches_per_step: usize,
    /// Parameter-sized optimizer states (AdamW: 2, SGD with momentum: 1).
    pub optimizer_moments: usize,
}

impl Workload {
    /// Inference (prediction, losses, the audit) in batches of `batch`.
    pub fn inference(batch: usize) -> Self {
        Workload {
            batch,
            batches_per_step: 0,
            optimizer_moments: 0,
        }
    }

    /// Training steps over `batches_per_step` batches of `batch` with an optimizer keeping
    /// `optimizer_moments` parameter-sized states.
    pub fn training(batch: usize, batches_per_step: usize, optimizer_moments: usize) -> Self {
        Workload {
            batch,
            batches_per_step,
            optimizer_moments,
        }
    }

    fn training_mode(&self) -> bool {
        self.batches_per_step > 0
    }
}

/// The estimated peak of one workload, in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footprint {
    pub total: u128,
    pub parameters: u128,
    pub activations: u128,
    pub workspace: u128,
    /// The node with the largest share (activations plus workspace), with that share.
    pub largest: Option<(String, u128)>,
    /// The largest parameter tensor, with its bytes (one copy).
    pub largest_parameter: Option<(String, u128)>,
}

/// Per-sample sizes of one node, in values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeSize {
    /// Per-sample output shape.
    pub shape: Vec<usize>,
    /// Values of the output per sample.
    pub numel: usize,
    /// Values of a transient per-sample workspace (a convolution's patch matrix).
    pub workspace: usize,
}

/// Error for a size that does not fit in the address space.
fn overflow(node: &str, op: &str, what: impl fmt::Display) -> Error {
    Error::ResourceLimit(format!(
        "node `{node}` ({op}): {what} does not fit in the address space"
    ))
}

fn out_len(len: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    let padded = len.checked_add(pad.checked_mul(2)?)?;
    if stride == 0 || k == 0 || k > padded {
        return None;
    }
    Some((padded - k) / stride + 1)
}

fn op_name(op: &NodeOp) -> &'static str {
    match op {
        NodeOp::Linear { .. } => "linear",
        NodeOp::Conv2d { .. } => "conv2d",
        NodeOp::Relu => "relu",
        NodeOp::Gelu(_) => "gelu",
        NodeOp::Tanh => "tanh",
        NodeOp::Sigmoid => "sigmoid",
        NodeOp::MaxPool2d { .. } => "maxpool2d",
        NodeOp::AvgPool2d { .. } => "avgpool2d",
        NodeOp::GlobalAvgPool => "global_avg_pool",
        NodeOp::BatchNorm { .. } => "batchnorm",
        NodeOp::LayerNorm { .. } => "layernorm",
        NodeOp::Embedding { .. } => "embedding",
        NodeOp::Mean { .. } => "mean",
        NodeOp::Flatten => "flatten",
        NodeOp::Reshape { .. } => "reshape",
        NodeOp::Dropout { .. } => "dropout",
        NodeOp::Add => "add",
    }
}

/// Per-sample output shape of one node from its inputs' shapes, with its per-sample
/// workspace in values (a convolution's patch matrix, 0 elsewhere); `None` where the inputs do
/// not fit the op (the forward pass then reports that, naming the node, before it
/// allocates), `Err` where a size overflows.
fn node_shape(name: &str, op: &NodeOp, ins: &[&[usize]]) -> Result<Option<(Vec<usize>, usize)>> {
    let x = ins[0];
    let kind = op_name(op);
    let spatial = |kernel: (usize, usize), stride: (usize, usize), pad: (usize, usize)| {
        if x.len() != 3 {
            return Ok(None);
        }
        // Only an addition can overflow here; a kernel larger than the input is the op's
        // own (shape) error.
        if x[1].checked_add(pad.0.saturating_mul(2)).is_none()
            || x[2].checked_add(pad.1.saturating_mul(2)).is_none()
        {
            return Err(overflow(name, kind, format_args!("padding {pad:?}")));
        }
        Ok(out_len(x[1], kernel.0, stride.0, pad.0).zip(out_len(x[2], kernel.1, stride.1, pad.1)))
    };
    let shape = match op {
        NodeOp::Linear {
            in_features,
            out_features,
            ..
        } => match x.split_last() {
            Some((&last, rest)) if last == *in_features => {
                let mut s = rest.to_vec();
                s.push(*out_features);
                s
            }
            _ => return Ok(None),
        },
        NodeOp::Conv2d {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding,
            ..
        } => {
            if x.first() != Some(in_channels) {
                return Ok(None);
            }
            let Some((oh, ow)) = spatial(*kernel, *stride, *padding)? else {
                return Ok(None);
            };
            let s = vec![*out_channels, oh, ow];
            let patch = in_channels
                .checked_mul(kernel.0)
                .and_then(|k| k.checked_mul(kernel.1))
                .and_then(|k| k.checked_mul(oh))
                .and_then(|k| k.checked_mul(ow))
                .ok_or_else(|| {
                    overflow(
                        name,
                        kind,
                        format_args!("the patch matrix of a {oh}×{ow} output"),
                    )
                })?;
            return Ok(Some((s, patch)));
        }
        NodeOp::MaxPool2d {
            kernel,
            stride,
            padding,
        }
        | NodeOp::AvgPool2d {
            kernel,
            stride,
            padding,
        } => {
            let Some((oh, ow)) = spatial(*kernel, *stride, *padding)? else {
                return Ok(None);
            };
            vec![x[0], oh, ow]
        }
        NodeOp::GlobalAvgPool => match x {
            [c, _, _] => vec![*c],
            _ => return Ok(None),
        },
        NodeOp::Embedding { embedding_dim, .. } => {
            let mut s = x.to_vec();
            s.push(*embedding_dim);
            s
        }
        NodeOp::Mean { dim } => {
            // `dim` counts the batch axis.
            if *dim == 0 || *dim > x.len() {
                return Ok(None);
            }
            let mut s = x.to_vec();
            s.remove(dim - 1);
            s
        }
        NodeOp::Flatten => vec![numel(name, kind, x)?],
        NodeOp::Reshape { shape } => shape.clone(),
        NodeOp::Add => {
            let y = ins.get(1).copied().unwrap_or(x);
            // NumPy broadcasting, aligned right; the batch axis is common to both.
            let rank = x.len().max(y.len());
            let at = |s: &[usize], i: usize| (i + s.len()).checked_sub(rank).map_or(1, |j| s[j]);
            let mut s = Vec::with_capacity(rank);
            for i in 0..rank {
                let (a, b) = (at(x, i), at(y, i));
                if a != b && a != 1 && b != 1 {
                    return Ok(None);
                }
                s.push(a.max(b));
            }
            s
        }
        NodeOp::Relu
        | NodeOp::Gelu(_)
        | NodeOp::Tanh
        | NodeOp::Sigmoid
        | NodeOp::BatchNorm { .. }
        | NodeOp::LayerNorm { .. }
        | NodeOp::Dropout { .. } => x.to_vec(),
    };
    Ok(Some((shape, 0)))
}

fn numel(name: &str, kind: &str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| overflow(name, kind, format_args!("an output of shape {shape:?}")))
}

/// The per-sample sizes of every node, inferred from the spec alone with checked arithmetic.
/// Stops at the first node whose inputs do not fit its op (the forward pass names that
/// error); fails only when a size overflows the address space.
pub(crate) fn node_sizes(spec: &ModelSpec) -> Result<Vec<NodeSize>> {
    let mut sizes: Vec<NodeSize> = Vec::with_capacity(spec.nodes.len());
    for (i, node) in spec.nodes.iter().enumerate() {
        let source = |name: &str| -> Option<&[usize]> {
            if name == "input" {
                Some(&spec.input_shape)
            } else {
                let j = spec.nodes.iter().position(|m| m.name == name)?;
                sizes.get(j).map(|s| s.shape.as_slice())
            }
        };
        let ins: Option<Vec<&[usize]>> = if node.inputs.is_empty() {
            Some(vec![match i {
                0 => spec.input_shape.as_slice(),
                _ => sizes[i - 1].shape.as_slice(),
            }])
        } else {
            node.inputs.iter().map(|n| source(n)).collect()
        };
        let Some(ins) = ins else { break };
        match node_shape(&node.name, &node.op, &ins)? {
            Some((shape, workspace)) => {
                let numel = numel(&node.name, op_name(&node.op), &shape)?;
                sizes.push(NodeSize {
                    shape,
                    numel,
                    workspace,
                });
            }
            None => break,
        }
    }
    Ok(sizes)
}

/// Worker threads that may each hold a convolution workspace at once.
fn worker_threads() -> u128 {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(64) as u128
}

/// The estimated peak bytes of `work` on `model` (see the module docs).
pub fn footprint(model: &Model, work: Workload) -> Option<Footprint> {
    let b = work.batch.max(1) as u128;
    let params: u128 = model.params().iter().map(|p| p.numel() as u128).sum();
    let copies = if work.training_mode() {
        3 + work.optimizer_moments as u128
    } else {
        2
    };
    let parameters = params.checked_mul(copies)?.checked_mul(F32)?;
    // value (+ gradient + saved state when training), per batch on the tape
    let per_value = if work.training_mode() {
        3 * work.batches_per_step as u128
    } else {
        1
    };
    let threads = worker_threads().min(b);
    let ws_copies = if work.training_mode() { 2 } else { 1 };
    let input: u128 = model.input_shape().iter().map(|&d| d as u128).product();
    let mut activations = input
        .checked_mul(b)?
        .checked_mul(F32)?
        .checked_mul(work.batches_per_step.max(1) as u128)?;
    let mut workspace = 0u128;
    let mut largest: Option<(String, u128)> = None;
    for (i, (node, size)) in model
        .spec()
        .nodes
        .iter()
        .zip(model.node_sizes())
        .enumerate()
    {
        if model.fused_into_next(i) {
            continue;
        }
        let act = (size.numel as u128)
            .checked_mul(b)?
            .checked_mul(per_value)?
            .checked_mul(F32)?;
        let ws = (size.workspace as u128)
            .checked_mul(threads)?
            .checked_mul(ws_copies)?
            .checked_mul(F32)?;
        activations = activations.checked_add(act)?;
        workspace = workspace.max(ws);
        let share = act.checked_add(ws)?;
        if largest.as_ref().is_none_or(|(_, s)| share > *s) {
            largest = Some((format!("`{}` ({})", node.name, op_name(&node.op)), share));
        }
    }
    let total = parameters
        .checked_add(activations)?
        .checked_add(workspace)?;
    let largest_parameter = model
        .params()
        .iter()
        .max_by_key(|p| p.numel())
        .map(|p| (format!("`{}`", p.name), p.numel() as u128 * F32));
    Some(Footprint {
        total,
        parameters,
        activations,
        workspace,
        largest,
        largest_parameter,
    })
}

/// Bytes for people: "102.4 GB (102400000000 bytes)".
pub fn human_bytes(b: u128) -> String {
    let units = ["bytes", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} bytes")
    } else {
        format!("{v:.1} {} ({b} bytes)", units[u])
    }
}

/// Checks `work` against `budget`; `what` names the call ("train", "nabla_tau", "predict").
pub fn check(model: &Model, work: Workload, budget: Budget, what: &str) -> Result<Footprint> {
    let Some(f) = footprint(model, work) else {
        return Err(Error::ResourceLimit(format!(
            "{what} at batch {}: the memory needed does not fit in 128 bits",
            work.batch
        )));
    };
    if f.total > budget.bytes as u128 {
        // Name what dominates: a node's activations, or a parameter's copies.
        let node = match (&f.largest, &f.largest_parameter) {
            (_, Some((p, b))) if f.parameters >= f.activations + f.workspace => {
                format!(
                    "; the largest parameter is {p} with {} per copy",
                    human_bytes(*b)
                )
            }
            (Some((n, s)), _) => {
                format!("; the largest part is node {n} with {}", human_bytes(*s))
            }
            _ => String::new(),
        };
        let source = if budget.explicit {
            "set by the caller"
        } else {
            "the default: GRADTAU_MEMORY_LIMIT or 3/4 of the available memory; set a model's limit to change it"
        };
        return Err(Error::ResourceLimit(format!(
            "{what} at batch {} needs about {} (parameters and optimizer state {}, activations {}, workspace {}){node}, over the memory limit of {} ({source})",
            work.batch,
            human_bytes(f.total),
            human_bytes(f.parameters),
            human_bytes(f.activations),
            human_bytes(f.workspace),
            human_bytes(budget.bytes as u128),
        )));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_available() {
        let text = "MemTotal:       16000000 kB\nMemFree: 1 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(mem_available(text), Some(8_192_000_000));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
        assert!(default_limit() > 0);
    }

    #[test]
    fn bytes_read_well() {
        assert_eq!(human_bytes(12), "12 bytes");
        assert_eq!(
            human_bytes(102_400_000_000),
            "102.4 GB (102400000000 bytes)"
        );
    }

    #[test]
    fn a_clone_keeps_the_limit() {
        let l = MemoryLimit::default();
        assert_eq!(l.get(), None);
        l.set(Some(5));
        assert_eq!(l.clone().get(), Some(5));
        l.set(None);
        assert_eq!(l.get(), None);
    }
}
