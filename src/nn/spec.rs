//! The model spec: a small JSON document describing the architecture.
//!
//! ```json
//! {"format": "gradtau.model/1",
//!  "input": {"shape": [784]},
//!  "nodes": [
//!    {"name": "0", "op": "linear", "in_features": 784, "out_features": 256},
//!    {"name": "1", "op": "relu"},
//!    {"name": "2", "op": "linear", "in_features": 256, "out_features": 10}],
//!  "loss": "cross_entropy"}
//! ```
//!
//! A node takes the previous node's output unless it lists `"inputs"` (node names, or
//! `"input"` for the model input), so residual `add` nodes make the graph a DAG. Field names
//! follow PyTorch's constructor arguments; parameters are named `<node>.<param>` with PyTorch's
//! `state_dict` names and layouts. Unknown fields are rejected so typos do not pass silently.
//! Every error names the node and the field.

use crate::error::{Error, Result};
use crate::ops::activation::GeluApprox;
use crate::ops::linear::WeightLayout;
use serde_json::{Map, Value};

/// The format tag this version reads.
pub const FORMAT: &str = "gradtau.model/1";

/// The training loss of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Cross-entropy over class logits, integer labels.
    CrossEntropy,
    /// Mean squared error against float targets.
    Mse,
    /// Binary cross-entropy with logits against float targets (multi-label).
    BceWithLogits,
}

impl LossKind {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "cross_entropy" => Ok(LossKind::CrossEntropy),
            "mse" => Ok(LossKind::Mse),
            "bce_with_logits" => Ok(LossKind::BceWithLogits),
            _ => Err(Error::Spec(format!(
                "field `loss`: unknown loss `{s}` (expected cross_entropy, mse or bce_with_logits)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LossKind::CrossEntropy => "cross_entropy",
            LossKind::Mse => "mse",
            LossKind::BceWithLogits => "bce_with_logits",
        }
    }
}

/// One layer and its settings.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeOp {
    Linear {
        in_features: usize,
        out_features: usize,
        bias: bool,
        /// `"weight_layout"`: `"out_in"` (default, PyTorch's) or `"in_out"` (`x @ W + b`).
        layout: WeightLayout,
    },
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        bias: bool,
    },
    Relu,
    Gelu(GeluApprox),
    Tanh,
    Sigmoid,
    MaxPool2d {
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    },
    AvgPool2d {
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    },
    GlobalAvgPool,
    BatchNorm {
        num_features: usize,
        eps: f32,
        momentum: f32,
        affine: bool,
    },
    LayerNorm {
        normalized_shape: Vec<usize>,
        eps: f32,
        affine: bool,
    },
    Embedding {
        num_embeddings: usize,
        embedding_dim: usize,
    },
    /// Mean over one axis (e.g. the token axis of `[batch, tokens, dim]`).
    Mean {
        dim: usize,
    },
    Flatten,
    /// Reshape of the per-sample part; the batch dimension is kept.
    Reshape {
        shape: Vec<usize>,
    },
    Dropout {
        p: f32,
    },
    Add,
}

impl NodeOp {
    /// The parameter tensors of this layer: (suffix, shape, trainable).
    pub fn params(&self) -> Vec<(&'static str, Vec<usize>, bool)> {
        match self {
            NodeOp::Linear {
                in_features,
                out_features,
                bias,
                layout,
            } => {
                let shape = match layout {
                    WeightLayout::OutIn => vec![*out_features, *in_features],
                    WeightLayout::InOut => vec![*in_features, *out_features],
                };
                let mut p = vec![("weight", shape, true)];
                if *bias {
                    p.push(("bias", vec![*out_features], true));
                }
                p
            }
            NodeOp::Conv2d {
                in_channels,
                out_channels,
                kernel,
                bias,
                ..
            } => {
                let mut p = vec![(
                    "weight",
                    vec![*out_channels, *in_channels, kernel.0, kernel.1],
                    true,
                )];
                if *bias {
                    p.push(("bias", vec![*out_channels], true));
                }
                p
            }
            NodeOp::BatchNorm {
                num_features,
                affine,
                ..
            } => {
                let mut p = Vec::new();
                if *affine {
                    p.push(("weight", vec![*num_features], true));
                    p.push(("bias", vec![*num_features], true));
                }
                p.push(("running_mean", vec![*num_features], false));
                p.push(("running_var", vec![*num_features], false));
                p
            }
            NodeOp::LayerNorm {
                normalized_shape,
                affine,
                ..
            } => {
                if *affine {
                    vec![
                        ("weight", normalized_shape.clone(), true),
                        ("bias", normalized_shape.clone(), true),
                    ]
                } else {
                    Vec::new()
                }
            }
            NodeOp::Embedding {
                num_embeddings,
                embedding_dim,
            } => {
                vec![("weight", vec![*num_embeddings, *embedding_dim], true)]
            }
            _ => Vec::new(),
        }
    }

    /// How many inputs the op consumes.
    pub fn arity(&self) -> usize {
        if matches!(self, NodeOp::Add) {
            2
        } else {
            1
        }
    }
}

/// A parsed node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeSpec {
    pub name: String,
    pub op: NodeOp,
    /// Names of the nodes it reads (`"input"` is the model input). Empty: the previous node.
    pub inputs: Vec<String>,
    /// Parameter names that do not follow `<node>.<param>` (an ONNX initializer called
    /// `onnx::Gemm_12`, say): (param suffix, full name). Empty: the usual names.
    pub param_names: Vec<(String, String)>,
}

/// A parsed, validated model spec.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// Per-sample input shape (without the batch dimension).
    pub input_shape: Vec<usize>,
    pub nodes: Vec<NodeSpec>,
    pub loss: LossKind,
}

/// Reads fields of one JSON object, remembering which were used, for precise errors.
struct Fields<'a> {
    ctx: String,
    map: &'a Map<String, Value>,
    used: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn err(&self, field: &str, what: impl std::fmt::Display) -> Error {
        Error::Spec(format!("{}: field `{field}` {what}", self.ctx))
    }

    fn get(&mut self, field: &'static str) -> Option<&'a Value> {
        self.used.push(field);
        self.map.get(field)
    }

    fn usize_req(&mut self, field: &'static str) -> Result<usize> {
        match self.get(field) {
            None => Err(self.err(field, "is missing")),
            Some(v) => self.as_usize(field, v),
        }
    }

    fn as_usize(&self, field: &str, v: &Value) -> Result<usize> {
        v.as_u64()
            .filter(|&n| n > 0 && n <= (1 << 31))
            .map(|n| n as usize)
            .ok_or_else(|| self.err(field, format!("must be a positive integer, got {v}")))
    }

    fn usize_or(&mut self, field: &'static str, default: usize, allow_zero: bool) -> Result<usize> {
        match self.get(field) {
            None => Ok(default),
            Some(v) if allow_zero && v.as_u64() == Some(0) => Ok(0),
            Some(v) => self.as_usize(field, v),
        }
    }

    /// An int or an `[h, w]` pair, as PyTorch accepts for kernel_size/stride/padding.
    fn pair(
        &mut self,
        field: &'static str,
        default: Option<(usize, usize)>,
        allow_zero: bool,
    ) -> Result<(usize, usize)> {
        let one = |this: &Self, v: &Value| -> Result<usize> {
            if allow_zero && v.as_u64() == Some(0) {
                Ok(0)
            } else {
                this.as_usize(field, v)
            }
        };
        match self.get(field) {
            None => default.ok_or_else(|| self.err(field, "is missing")),
            Some(Value::Array(a)) if a.len() == 2 => Ok((one(self, &a[0])?, one(self, &a[1])?)),
            Some(v @ Value::Number(_)) => {
                let n = one(self, v)?;
                Ok((n, n))
            }
            Some(v) => Err(self.err(field, format!("must be an integer or [h, w], got {v}"))),
        }
    }

    fn bool_or(&mut self, field: &'static str, default: bool) -> Result<bool> {
        match self.get(field) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.err(field, format!("must be true or false, got {v}"))),
        }
    }

    fn f32_or(&mut self, field: &'static str, default: f32) -> Result<f32> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map(|x| x as f32)
                .ok_or_else(|| self.err(field, format!("must be a finite number, got {v}"))),
        }
    }

    fn shape(&mut self, field: &'static str) -> Result<Vec<usize>> {
        match self.get(field) {
            Some(Value::Array(a)) if !a.is_empty() => {
                a.iter().map(|v| self.as_usize(field, v)).collect()
            }
            Some(v @ Value::Number(_)) => Ok(vec![self.as_usize(field, v)?]),
            Some(v) => Err(self.err(
                field,
                format!("must be a non-empty list of positive integers, got {v}"),
            )),
            None => Err(self.err(field, "is missing")),
        }
    }

    fn finish(&self) -> Result<()> {
        for k in self.map.keys() {
            if !self.used.contains(&k.as_str()) {
                return Err(Error::Spec(format!("{}: unknown field `{k}`", self.ctx)));
            }
        }
        Ok(())
    }
}

fn parse_node(index: usize, v: &Value) -> Result<NodeSpec> {
    let map = v
        .as_object()
        .ok_or_else(|| Error::Spec(format!("nodes[{index}]: must be an object")))?;
    let name = match map.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(Error::Spec(format!(
                "nodes[{index}]: field `name` must be a non-empty string, got {other}"
            )))
        }
        None => {
            return Err(Error::Spec(format!(
                "nodes[{index}]: field `name` is missing"
            )))
        }
    };
    if name == "input" || name.contains('.') {
        return Err(Error::Spec(format!(
            "node `{name}`: field `name` may not be `input` or contain `.`"
        )));
    }
    let op_name = match map.get("op") {
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        Some(other) => {
            return Err(Error::Spec(format!(
                "node `{name}`: field `op` must be a string, got {other}"
            )))
        }
        None => return Err(Error::Spec(format!("node `{name}`: field `op` is missing"))),
    };
    let mut f = Fields {
        ctx: format!("node `{name}` ({op_name})"),
        map,
        used: vec!["name", "op", "inputs", "param_names"],
    };
    let op = match op_name.as_str() {
        "linear" => NodeOp::Linear {
            in_features: f.usize_req("in_features")?,
            out_features: f.usize_req("out_features")?,
            bias: f.bool_or("bias", true)?,
            layout: match f.get("weight_layout") {
                None => WeightLayout::OutIn,
                Some(Value::String(s)) if s == "out_in" => WeightLayout::OutIn,
                Some(Value::String(s)) if s == "in_out" => WeightLayout::InOut,
                Some(v) => {
                    return Err(f.err(
                        "weight_layout",
                        format!("must be \"out_in\" or \"in_out\", got {v}"),
                    ))
                }
            },
        },
        "conv2d" => NodeOp::Conv2d {
            in_channels: f.usize_req("in_channels")?,
            out_channels: f.usize_req("out_channels")?,
            kernel: f.pair("kernel_size", None, false)?,
            stride: f.pair("stride", Some((1, 1)), false)?,
            padding: f.pair("padding", Some((0, 0)), true)?,
            bias: f.bool_or("bias", true)?,
        },
        "relu" => NodeOp::Relu,
        "gelu" => {
            let approx = match f.get("approximate") {
                None => GeluApprox::Erf,
                Some(Value::String(s)) if s == "none" => GeluApprox::Erf,
                Some(Value::String(s)) if s == "tanh" => GeluApprox::Tanh,
                Some(v) => {
                    return Err(f.err(
                        "approximate",
                        format!("must be \"none\" or \"tanh\", got {v}"),
                    ))
                }
            };
            NodeOp::Gelu(approx)
        }
        "tanh" => NodeOp::Tanh,
        "sigmoid" => NodeOp::Sigmoid,
        "maxpool2d" | "max_pool2d" | "avgpool2d" | "avg_pool2d" => {
            let kernel = f.pair("kernel_size", None, false)?;
            let stride = f.pair("stride", Some(kernel), false)?;
            let padding = f.pair("padding", Some((0, 0)), true)?;
            if op_name.starts_with("max") {
                NodeOp::MaxPool2d {
                    kernel,
                    stride,
                    padding,
                }
            } else {
                NodeOp::AvgPool2d {
                    kernel,
                    stride,
                    padding,
                }
            }
        }
        "global_avg_pool" | "adaptiveavgpool2d" | "adaptive_avg_pool2d" => {
            if let Some(v) = f.get("output_size") {
                if !(v.as_u64() == Some(1) || *v == serde_json::json!([1, 1])) {
                    return Err(f.err(
                        "output_size",
                        format!("only 1 (global pooling) is supported, got {v}"),
                    ));
                }
            }
            NodeOp::GlobalAvgPool
        }
        "batchnorm" | "batchnorm1d" | "batchnorm2d" | "batch_norm" => NodeOp::BatchNorm {
            num_features: f.usize_req("num_features")?,
            eps: f.f32_or("eps", 1e-5)?,
            momentum: f.f32_or("momentum", 0.1)?,
            affine: f.bool_or("affine", true)?,
        },
        "layernorm" | "layer_norm" => NodeOp::LayerNorm {
            normalized_shape: f.shape("normalized_shape")?,
            eps: f.f32_or("eps", 1e-5)?,
            affine: f.bool_or("elementwise_affine", true)?,
        },
        "embedding" => NodeOp::Embedding {
            num_embeddings: f.usize_req("num_embeddings")?,
            embedding_dim: f.usize_req("embedding_dim")?,
        },
        "mean" => NodeOp::Mean {
            dim: f.usize_or("dim", 1, false)?,
        },
        "flatten" => {
            if let Some(v) = f.get("start_dim") {
                if v.as_u64() != Some(1) {
                    return Err(f.err("start_dim", format!("only 1 is supported, got {v}")));
                }
            }
            NodeOp::Flatten
        }
        "reshape" | "view" => NodeOp::Reshape {
            shape: f.shape("shape")?,
        },
        "dropout" => {
            let p = f.f32_or("p", 0.5)?;
            if !(0.0..1.0).contains(&p) {
                return Err(f.err("p", format!("must be in [0, 1), got {p}")));
            }
            NodeOp::Dropout { p }
        }
        "add" => NodeOp::Add,
        other => {
            return Err(Error::Spec(format!(
                "node `{name}`: field `op`: unknown op `{other}`"
            )))
        }
    };
    let inputs = match map.get("inputs") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(f.err("inputs", format!("must list node names, got {other}"))),
            })
            .collect::<Result<Vec<_>>>()?,
        Some(v) => return Err(f.err("inputs", format!("must be a list of node names, got {v}"))),
    };
    if let NodeOp::BatchNorm { momentum, eps, .. } = op {
        if !(0.0..=1.0).contains(&momentum) {
            return Err(f.err("momentum", format!("must be in [0, 1], got {momentum}")));
        }
        if eps <= 0.0 {
            return Err(f.err("eps", format!("must be positive, got {eps}")));
        }
    }
    let param_names = parse_param_names(&f, &op)?;
    f.finish()?;
    let expected = op.arity();
    let given = if inputs.is_empty() { 1 } else { inputs.len() };
    if given != expected {
        return Err(Error::Spec(format!(
            "node `{name}` ({op_name}): field `inputs` lists {given} input(s), the op takes {expected}"
        )));
    }
    Ok(NodeSpec {
        name,
        op,
        inputs,
        param_names,
    })
}

/// The optional `"param_names": {"weight": "full.name", ...}` of a node: keys must be
/// parameters of the op, names non-empty.
fn parse_param_names(f: &Fields<'_>, op: &NodeOp) -> Result<Vec<(String, String)>> {
    let Some(v) = f.map.get("param_names") else {
        return Ok(Vec::new());
    };
    let obj = v.as_object().ok_or_else(|| {
        f.err(
            "param_names",
            format!("must map parameter names to names, got {v}"),
        )
    })?;
    let known: Vec<&str> = op.params().iter().map(|(s, _, _)| *s).collect();
    let mut out = Vec::new();
    for (k, v) in obj {
        if !known.contains(&k.as_str()) {
            return Err(f.err(
                "param_names",
                format!("`{k}` is not a parameter of this op (it has {known:?})"),
            ));
        }
        match v {
            Value::String(n) if !n.is_empty() => out.push((k.clone(), n.clone())),
            other => {
                return Err(f.err(
                    "param_names",
                    format!("the name of `{k}` must be a non-empty string, got {other}"),
                ))
            }
        }
    }
    Ok(out)
}

impl ModelSpec {
    /// Parses and validates a spec from JSON text.
    pub fn from_json(text: &str) -> Result<Self> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| Error::Spec(format!("not valid JSON: {e}")))?;
        Self::from_value(&v)
    }

    /// Parses and validates a spec from a JSON value.
    pub fn from_value(v: &Value) -> Result<Self> {
        let map = v
            .as_object()
            .ok_or_else(|| Error::Spec("the spec must be a JSON object".into()))?;
        let mut top = Fields {
            ctx: "spec".into(),
            map,
            used: Vec::new(),
        };
        match top.get("format") {
            Some(Value::String(s)) if s == FORMAT => {}
            Some(other) => {
                return Err(top.err("format", format!("must be \"{FORMAT}\", got {other}")))
            }
            None => return Err(top.err("format", format!("is missing (expected \"{FORMAT}\")"))),
        }
        let input_shape = match top.get("input") {
            Some(Value::Object(m)) => {
                let mut f = Fields {
                    ctx: "spec input".into(),
                    map: m,
                    used: Vec::new(),
                };
                let s = f.shape("shape")?;
                f.finish()?;
                s
            }
            Some(other) => {
                return Err(top.err(
                    "input",
                    format!("must be an object like {{\"shape\": [784]}}, got {other}"),
                ))
            }
            None => return Err(top.err("input", "is missing")),
        };
        let nodes = match top.get("nodes") {
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .enumerate()
                .map(|(i, n)| parse_node(i, n))
                .collect::<Result<Vec<_>>>()?,
            Some(_) => return Err(top.err("nodes", "must be a non-empty list")),
            None => return Err(top.err("nodes", "is missing")),
        };
        let loss = match top.get("loss") {
            Some(Value::String(s)) => LossKind::parse(s)?,
            None => LossKind::CrossEntropy,
            Some(other) => return Err(top.err("loss", format!("must be a string, got {other}"))),
        };
        top.finish()?;
        // names unique; inputs refer to earlier nodes
        for (i, n) in nodes.iter().enumerate() {
            if nodes[..i].iter().any(|m| m.name == n.name) {
                return Err(Error::Spec(format!(
                    "node `{}`: field `name` is used twice",
                    n.name
                )));
            }
            for inp in &n.inputs {
                if inp != "input" && !nodes[..i].iter().any(|m| &m.name == inp) {
                    return Err(Error::Spec(format!(
                        "node `{}`: field `inputs` names `{inp}`, which is not an earlier node or `input`",
                        n.name
                    )));
                }
            }
        }
        Ok(ModelSpec {
            input_shape,
            nodes,
            loss,
        })
    }

    /// Every parameter of the model: (full name, shape, trainable), in node order.
    pub fn parameters(&self) -> Vec<(String, Vec<usize>, bool)> {
        self.nodes
            .iter()
            .flat_map(|n| {
                n.op.params()
                    .into_iter()
                    .map(move |(suffix, shape, tr)| (format!("{}.{suffix}", n.name), shape, tr))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MLP: &str = r#"{"format": "gradtau.model/1",
        "input": {"shape": [784]},
        "nodes": [
          {"name": "0", "op": "linear", "in_features": 784, "out_features": 256},
          {"name": "1", "op": "relu"},
          {"name": "2", "op": "linear", "in_features": 256, "out_features": 10}],
        "loss": "cross_entropy"}"#;

    #[test]
    fn parses_the_contract_example() {
        let s = ModelSpec::from_json(MLP).unwrap();
        assert_eq!(s.input_shape, vec![784]);
        assert_eq!(s.nodes.len(), 3);
        let p = s.parameters();
        assert_eq!(p[0], ("0.weight".to_string(), vec![256, 784], true));
        assert_eq!(p[3], ("2.bias".to_string(), vec![10], true));
    }

    fn err(text: &str) -> String {
        ModelSpec::from_json(text).unwrap_err().to_string()
    }

    #[test]
    fn a_linear_weight_stored_in_out_has_that_shape() {
        let s = ModelSpec::from_json(&MLP.replace(
            "\"out_features\": 10}",
            "\"out_features\": 10, \"weight_layout\": \"in_out\"}",
        ))
        .unwrap();
        let p = s.parameters();
        assert_eq!(p[0].1, vec![256, 784]);
        assert_eq!(p[2], ("2.weight".to_string(), vec![256, 10], true));
        let e = err(&MLP.replace(
            "\"out_features\": 10}",
            "\"out_features\": 10, \"weight_layout\": \"io\"}",
        ));
        assert!(e.contains("node `2`") && e.contains("weight_layout"), "{e}");
    }

    #[test]
    fn errors_name_the_node_and_field() {
        let e = err(&MLP.replace("\"out_features\": 256", "\"out_features\": -3"));
        assert!(e.contains("node `0`") && e.contains("out_features"), "{e}");
        let e = err(&MLP.replace("\"in_features\": 256, ", ""));
        assert!(
            e.contains("node `2`") && e.contains("in_features") && e.contains("missing"),
            "{e}"
        );
        let e = err(&MLP.replace("\"relu\"", "\"relux\""));
        assert!(e.contains("node `1`") && e.contains("unknown op"), "{e}");
        let e = err(&MLP.replace("\"op\": \"relu\"", "\"op\": \"relu\", \"inplace\": true"));
        assert!(e.contains("unknown field `inplace`"), "{e}");
        let e = err(&MLP.replace("gradtau.model/1", "other/2"));
        assert!(e.contains("format"), "{e}");
        let e = err("{nope");
        assert!(e.contains("not valid JSON"), "{e}");
        let e = err(&MLP.replace("\"name\": \"2\"", "\"name\": \"0\""));
        assert!(e.contains("used twice"), "{e}");
        let e = err(&MLP.replace(
            "\"op\": \"relu\"",
            "\"op\": \"add\", \"inputs\": [\"0\", \"9\"]",
        ));
        assert!(e.contains("`9`"), "{e}");
        let e = err(&MLP.replace("cross_entropy", "hinge"));
        assert!(e.contains("hinge"), "{e}");
    }

    #[test]
    fn absurd_sizes_are_refused_before_allocating() {
        let huge = MLP.replace(
            "\"in_features\": 784, \"out_features\": 256",
            "\"in_features\": 2000000000, \"out_features\": 2000000000",
        );
        let e = crate::nn::Model::from_json(&huge).unwrap_err().to_string();
        assert!(e.contains("node `0`") && e.contains("weight"), "{e}");
        let huge_input = MLP.replace("\"shape\": [784]", "\"shape\": [100000, 100000]");
        let e = crate::nn::Model::from_json(&huge_input)
            .unwrap_err()
            .to_string();
        assert!(e.contains("input"), "{e}");
    }

    #[test]
    fn conv_pairs_and_defaults() {
        let text = r#"{"format": "gradtau.model/1", "input": {"shape": [1, 28, 28]},
          "nodes": [{"name": "c", "op": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": [3, 5], "padding": 1, "bias": false},
                    {"name": "p", "op": "maxpool2d", "kernel_size": 2},
                    {"name": "bn", "op": "batchnorm2d", "num_features": 4}]}"#;
        let s = ModelSpec::from_json(text).unwrap();
        assert_eq!(
            s.nodes[0].op,
            NodeOp::Conv2d {
                in_channels: 1,
                out_channels: 4,
                kernel: (3, 5),
                stride: (1, 1),
                padding: (1, 1),
                bias: false
            }
        );
        assert_eq!(
            s.nodes[1].op,
            NodeOp::MaxPool2d {
                kernel: (2, 2),
                stride: (2, 2),
                padding: (0, 0)
            }
        );
        let names: Vec<String> = s.parameters().into_iter().map(|p| p.0).collect();
        assert_eq!(
            names,
            [
                "c.weight",
                "bn.weight",
                "bn.bias",
                "bn.running_mean",
                "bn.running_var"
            ]
        );
        assert_eq!(s.loss, LossKind::CrossEntropy);
    }
}
