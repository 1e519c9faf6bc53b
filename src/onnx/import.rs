//! ONNX graph → gradtau model spec, and the initializers → weights.
//!
//! The graph is read node by node in its (topological) order. Each node either becomes one
//! gradtau node, is folded away (`Identity`, `Dropout`: their output is their input), or is
//! refused with an error naming the node, its op type and the reason. Initializers become
//! the parameters of the node that reads them, under their ONNX names (for a PyTorch export,
//! the `state_dict` names), through the spec's `param_names`.
//!
//! Before that, three patterns that exporters spell out in primitive ops are fused back into
//! one layer each: GELU's erf form and its tanh form (below opset 20 `Gelu` does not exist,
//! so `nn.GELU()` arrives as Div/Erf/Add/Mul/Mul and `nn.GELU(approximate="tanh")` as
//! Pow-or-Mul/Mul/Add/Mul/Tanh/Add/Mul/Mul), and `MatMul` by a weight followed by the `Add`
//! of a bias (`x @ W + b`, a linear layer whose weight is stored `[in, out]`). A part of a
//! pattern that anything else reads stops the fusion, and the nodes are then read one by one.

use super::proto::{self, AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use crate::error::{Error, Result};
use crate::nn::{LossKind, Model};
use crate::ops::linear::WeightLayout;
use crate::tensor::Tensor;
use prost::Message;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

/// The oldest default-domain opset the importer reads (attributes moved to inputs across
/// opsets; 13 is where the ops it knows took their present form).
pub const MIN_OPSET: i64 = 13;

/// An imported model: the compiled gradtau model, and the initializer values of its
/// parameters in parameter order.
pub struct Imported {
    pub model: Model,
    pub weights: Vec<Tensor>,
}

fn err(node: &NodeProto, why: impl std::fmt::Display) -> Error {
    Error::Spec(format!(
        "ONNX node `{}` ({}): {why}",
        node.name, node.op_type
    ))
}

/// Decodes `bytes` as an ONNX model and builds the gradtau model with loss `loss`.
pub fn import(bytes: &[u8], loss: LossKind) -> Result<Imported> {
    let m = ModelProto::decode(bytes)
        .map_err(|e| Error::Spec(format!("not an ONNX model (protobuf): {e}")))?;
    check_opset(&m)?;
    let graph = m
        .graph
        .as_ref()
        .ok_or_else(|| Error::Spec("the ONNX model has no graph".into()))?;
    let mut b = Builder::new(graph)?;
    let nodes = fuse_gelu_tanh(&fuse_gelu(&graph.node, &b), &b);
    let biases = matmul_biases(&nodes, &b);
    let absorbed: HashSet<usize> = biases.values().copied().collect();
    for (i, node) in nodes.iter().enumerate() {
        match biases.get(&i) {
            Some(&add) => b.matmul(node, Some(&nodes[add]))?,
            None if absorbed.contains(&i) => {}
            None => b.node(node)?,
        }
    }
    let spec = b.finish(graph, loss)?;
    let model = Model::from_json(&spec.to_string())?;
    let weights = model
        .params()
        .iter()
        .map(|p| {
            let t = b.initializers.get(p.name.as_str()).ok_or_else(|| {
                Error::Spec(format!("parameter `{}` has no ONNX initializer", p.name))
            })?;
            Tensor::from_vec(floats(t)?, &p.shape)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Imported { model, weights })
}

fn check_opset(m: &ModelProto) -> Result<()> {
    let v = m
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| Error::Spec("the ONNX model imports no default-domain opset".into()))?;
    if v < MIN_OPSET {
        return Err(Error::Spec(format!(
            "the ONNX model uses opset {v}; gradtau reads opset {MIN_OPSET} and newer \
             (re-export with a newer opset)"
        )));
    }
    Ok(())
}

/// The values of a float tensor (FLOAT, or DOUBLE narrowed), from `raw_data` or the typed
/// field, checked against its dims.
pub(crate) fn floats(t: &TensorProto) -> Result<Vec<f32>> {
    if t.data_location == 1 {
        return Err(Error::Spec(format!(
            "initializer `{}` keeps its data in an external file, which gradtau does not read",
            t.name
        )));
    }
    let n = numel(t)?;
    raw_whole(
        t,
        &[(proto::data_type::FLOAT, 4), (proto::data_type::DOUBLE, 8)],
    )?;
    let values: Vec<f32> = match t.data_type {
        proto::data_type::FLOAT if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        proto::data_type::FLOAT => t.float_data.clone(),
        proto::data_type::DOUBLE if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        proto::data_type::DOUBLE => t.double_data.iter().map(|&v| v as f32).collect(),
        other => {
            return Err(Error::Spec(format!(
                "tensor `{}` has ONNX data type {other}; gradtau reads float (1) and double (11)",
                t.name
            )))
        }
    };
    if values.len() != n {
        return Err(Error::Spec(format!(
            "tensor `{}`: dims {:?} need {n} values, the file holds {}",
            t.name,
            t.dims,
            values.len()
        )));
    }
    Ok(values)
}

/// The values of an integer tensor (INT64 or INT32), for shapes and axes.
fn ints(t: &TensorProto) -> Result<Vec<i64>> {
    raw_whole(
        t,
        &[(proto::data_type::INT64, 8), (proto::data_type::INT32, 4)],
    )?;
    let values: Vec<i64> = match t.data_type {
        proto::data_type::INT64 if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect(),
        proto::data_type::INT64 => t.int64_data.clone(),
        proto::data_type::INT32 if !t.raw_data.is_empty() => t
            .raw_data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
            .collect(),
        proto::data_type::INT32 => t.int32_data.iter().map(|&v| v as i64).collect(),
        other => {
            return Err(Error::Spec(format!(
                "tensor `{}` has ONNX data type {other} where integers are expected",
                t.name
            )))
        }
    };
    if values.len() != numel(t)? {
        return Err(Error::Spec(format!(
            "tensor `{}`: dims {:?} do not match its {} values",
            t.name,
            t.dims,
            values.len()
        )));
    }
    Ok(values)
}

/// `raw_data` holds whole values of the tensor's type (`sizes`: type → bytes per value), so
/// no trailing bytes are silently dropped.
fn raw_whole(t: &TensorProto, sizes: &[(i32, usize)]) -> Result<()> {
    match sizes.iter().find(|(ty, _)| *ty == t.data_type) {
        Some((_, size)) if !t.raw_data.len().is_multiple_of(*size) => Err(Error::Spec(format!(
            "tensor `{}`: its {} bytes of raw data are not a whole number of {size}-byte values",
            t.name,
            t.raw_data.len()
        ))),
        _ => Ok(()),
    }
}

fn numel(t: &TensorProto) -> Result<usize> {
    t.dims.iter().try_fold(1usize, |acc, &d| {
        usize::try_from(d)
            .ok()
            .and_then(|d| acc.checked_mul(d))
            .filter(|&n| n <= crate::nn::model::MAX_TENSOR_ELEMENTS)
            .ok_or_else(|| {
                Error::Spec(format!(
                    "tensor `{}`: dims {:?} are negative or too large",
                    t.name, t.dims
                ))
            })
    })
}

fn dims(t: &TensorProto) -> Result<Vec<usize>> {
    numel(t)?;
    Ok(t.dims.iter().map(|&d| d as usize).collect())
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

/// A pair of non-negative sizes from a 2-element attribute.
fn pair(node: &NodeProto, name: &str, v: &[i64]) -> Result<(usize, usize)> {
    match v {
        [a, b] if *a >= 0 && *b >= 0 => Ok((*a as usize, *b as usize)),
        _ => Err(err(
            node,
            format!("`{name}` must hold two sizes, got {v:?}"),
        )),
    }
}

/// ONNX pads `[top, left, bottom, right]` as gradtau's symmetric padding.
fn symmetric_pads(node: &NodeProto) -> Result<(usize, usize)> {
    let pads = attr_ints(node, "pads").unwrap_or_else(|| vec![0; 4]);
    match pads.as_slice() {
        [t, l, b, r] if t == b && l == r && *t >= 0 && *l >= 0 => Ok((*t as usize, *l as usize)),
        _ => Err(err(
            node,
            format!("pads {pads:?} are not symmetric; gradtau pads each side equally"),
        )),
    }
}

fn require_default_auto_pad(node: &NodeProto) -> Result<()> {
    match attr(node, "auto_pad").map(|a| a.s.as_slice()) {
        None | Some(b"NOTSET") | Some(b"") => Ok(()),
        Some(v) => Err(err(
            node,
            format!(
                "auto_pad {} is not supported; export with explicit pads",
                String::from_utf8_lossy(v)
            ),
        )),
    }
}

fn require_unit(node: &NodeProto, name: &str) -> Result<()> {
    match attr_ints(node, name) {
        Some(v) if v.iter().any(|&d| d != 1) => Err(err(
            node,
            format!("{name} {v:?} are not supported (only 1)"),
        )),
        _ => Ok(()),
    }
}

/// Builds the spec node by node.
struct Builder<'g> {
    initializers: HashMap<&'g str, &'g TensorProto>,
    /// Tensors produced by `Constant` nodes.
    constants: HashMap<String, TensorProto>,
    /// ONNX value name → gradtau node name (`"input"` for the model input).
    source: HashMap<String, String>,
    nodes: Vec<Value>,
    names: HashSet<String>,
    input_shape: Vec<usize>,
}

impl<'g> Builder<'g> {
    fn new(graph: &'g GraphProto) -> Result<Self> {
        let initializers: HashMap<&str, &TensorProto> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let data: Vec<_> = graph
            .input
            .iter()
            .filter(|i| !initializers.contains_key(i.name.as_str()))
            .collect();
        let [input] = data.as_slice() else {
            return Err(Error::Spec(format!(
                "the ONNX graph has {} inputs that are not initializers ({:?}); gradtau \
                 takes models with exactly one",
                data.len(),
                data.iter().map(|i| &i.name).collect::<Vec<_>>()
            )));
        };
        let shape = input
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .and_then(|t| t.shape.as_ref())
            .ok_or_else(|| Error::Spec(format!("the ONNX input `{}` has no shape", input.name)))?;
        let mut input_shape = Vec::new();
        for (i, d) in shape.dim.iter().enumerate().skip(1) {
            match d.dim_value {
                Some(v) if v > 0 => input_shape.push(v as usize),
                _ => {
                    return Err(Error::Spec(format!(
                        "the ONNX input `{}` has a dynamic size in dimension {i}; gradtau needs \
                         every dimension but the batch fixed",
                        input.name
                    )))
                }
            }
        }
        if shape.dim.is_empty() {
            return Err(Error::Spec(format!(
                "the ONNX input `{}` has rank 0; gradtau needs a batch dimension",
                input.name
            )));
        }
        let mut constants = HashMap::new();
        for node in graph.node.iter().filter(|n| n.op_type == "Constant") {
            let t = attr(node, "value")
                .and_then(|a| a.t.clone())
                .ok_or_else(|| err(node, "only `value` tensor constants are supported"))?;
            let out = node
                .output
                .first()
                .ok_or_else(|| err(node, "has no output"))?;
            constants.insert(out.clone(), t);
        }
        let mut source = HashMap::new();
        source.insert(input.name.clone(), "input".to_string());
        Ok(Builder {
            initializers,
            constants,
            source,
            nodes: Vec::new(),
            names: HashSet::new(),
            input_shape,
        })
    }

    fn constant(&self, name: &str) -> Option<&TensorProto> {
        self.initializers
            .get(name)
            .copied()
            .or_else(|| self.constants.get(name))
    }

    fn initializer(&self, node: &NodeProto, i: usize, what: &str) -> Result<&'g TensorProto> {
        let name = node
            .input
            .get(i)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| err(node, format!("input {i} ({what}) is missing")))?;
        self.initializers
            .get(name.as_str())
            .copied()
            .ok_or_else(|| {
                err(
                    node,
                    format!(
                        "input {i} ({what}) `{name}` must be an initializer (a trained weight)"
                    ),
                )
            })
    }

    fn optional_initializer(&self, node: &NodeProto, i: usize) -> Result<Option<&'g TensorProto>> {
        match node.input.get(i).filter(|n| !n.is_empty()) {
            None => Ok(None),
            Some(_) => self.initializer(node, i, "optional weight").map(Some),
        }
    }

    /// The gradtau node that produces the data input `i` of `node`.
    fn data(&self, node: &NodeProto, i: usize) -> Result<String> {
        let name = node
            .input
            .get(i)
            .ok_or_else(|| err(node, format!("input {i} is missing")))?;
        self.source.get(name).cloned().ok_or_else(|| {
            if self.constant(name).is_some() {
                err(
                    node,
                    format!("input `{name}` is a constant where data is expected"),
                )
            } else {
                err(
                    node,
                    format!("input `{name}` is produced by no node gradtau has read"),
                )
            }
        })
    }

    fn unique_name(&mut self, node: &NodeProto) -> String {
        let base: String = if node.name.is_empty() {
            node.op_type.clone()
        } else {
            node.name.trim_start_matches('/').to_string()
        }
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
        let base = if base.is_empty() || base == "input" {
            format!("n_{base}")
        } else {
            base
        };
        let mut name = base.clone();
        let mut k = 1;
        while !self.names.insert(name.clone()) {
            k += 1;
            name = format!("{base}_{k}");
        }
        name
    }

    /// Emits one gradtau node for `node` reading `inputs`, with `fields` and `params`
    /// (suffix → initializer name).
    fn emit(
        &mut self,
        node: &NodeProto,
        op: &str,
        inputs: Vec<String>,
        mut fields: Map<String, Value>,
        params: &[(&str, &str)],
    ) -> Result<()> {
        let name = self.unique_name(node);
        fields.insert("name".into(), json!(name));
        fields.insert("op".into(), json!(op));
        fields.insert("inputs".into(), json!(inputs));
        if !params.is_empty() {
            let map: Map<String, Value> = params
                .iter()
                .map(|(s, n)| (s.to_string(), json!(n)))
                .collect();
            fields.insert("param_names".into(), Value::Object(map));
        }
        self.nodes.push(Value::Object(fields));
        self.produces(node, name)
    }

    /// Folds `node` away: its output is its first input.
    fn alias(&mut self, node: &NodeProto) -> Result<()> {
        let src = self.data(node, 0)?;
        self.produces(node, src)
    }

    /// Records that the gradtau node `source` computes `node`'s output.
    fn produces(&mut self, node: &NodeProto, source: String) -> Result<()> {
        let out = node
            .output
            .first()
            .ok_or_else(|| err(node, "has no output"))?;
        self.source.insert(out.clone(), source);
        Ok(())
    }

    fn node(&mut self, node: &NodeProto) -> Result<()> {
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(err(
                node,
                format!("operator domain `{}` is not supported", node.domain),
            ));
        }
        match node.op_type.as_str() {
            "Identity" | "Dropout" => {
                if node
                    .input
                    .first()
                    .is_some_and(|i| self.constant(i).is_some())
                {
                    return Err(err(
                        node,
                        "reads an initializer: the exporter merged identical weights into one \
                         (tied weights are not supported)",
                    ));
                }
                self.alias(node)
            }
            // Read up front by `Builder::new`, so that patterns can see them.
            "Constant" => Ok(()),
            "Gemm" => self.gemm(node),
            "MatMul" => self.matmul(node, None),
            "Conv" => self.conv(node),
            "Relu" | "Tanh" | "Sigmoid" => {
                let x = self.data(node, 0)?;
                self.emit(
                    node,
                    &node.op_type.to_ascii_lowercase(),
                    vec![x],
                    Map::new(),
                    &[],
                )
            }
            "Gelu" => {
                let approx = match attr(node, "approximate").map(|a| a.s.as_slice()) {
                    None | Some(b"none") => "none",
                    Some(b"tanh") => "tanh",
                    Some(v) => {
                        return Err(err(
                            node,
                            format!("approximate `{}` is unknown", String::from_utf8_lossy(v)),
                        ))
                    }
                };
                let x = self.data(node, 0)?;
                self.emit(
                    node,
                    "gelu",
                    vec![x],
                    as_map(json!({ "approximate": approx })),
                    &[],
                )
            }
            "MaxPool" | "AveragePool" => self.pool(node),
            "GlobalAveragePool" => {
                let x = self.data(node, 0)?;
                self.emit(node, "global_avg_pool", vec![x], Map::new(), &[])
            }
            "BatchNormalization" => self.batchnorm(node),
            "LayerNormalization" => self.layernorm(node),
            "Flatten" => {
                if attr_i(node, "axis", 1) != 1 {
                    return Err(err(
                        node,
                        "only axis 1 (keep the batch dimension) is supported",
                    ));
                }
                let x = self.data(node, 0)?;
                self.emit(node, "flatten", vec![x], Map::new(), &[])
            }
            "Reshape" => self.reshape(node),
            "Gather" => self.gather(node),
            "ReduceMean" => self.reduce_mean(node),
            "Add" => {
                let (a, b) = (self.data(node, 0)?, self.data(node, 1)?);
                self.emit(node, "add", vec![a, b], Map::new(), &[])
            }
            other => Err(err(
                node,
                format!(
                    "op type `{other}` is not supported (gradtau reads Gemm, MatMul, Conv, Relu, Gelu, \
                     Tanh, Sigmoid, MaxPool, AveragePool, GlobalAveragePool, BatchNormalization, \
                     LayerNormalization, Flatten, Reshape, Gather, ReduceMean, Add, Dropout, \
                     Identity, Constant)"
                ),
            )),
        }
    }

    fn gemm(&mut self, node: &NodeProto) -> Result<()> {
        if attr_i(node, "transA", 0) != 0
            || attr_f(node, "alpha", 1.0) != 1.0
            || attr_f(node, "beta", 1.0) != 1.0
        {
            return Err(err(
                node,
                "only Gemm with transA = 0, alpha = 1 and beta = 1 is supported",
            ));
        }
        let w = self.initializer(node, 1, "weight B")?;
        // transB = 1 is PyTorch's nn.Linear ([out, in]); transB = 0 is `x @ W + b`.
        let layout = match attr_i(node, "transB", 0) {
            0 => WeightLayout::InOut,
            1 => WeightLayout::OutIn,
            t => return Err(err(node, format!("transB = {t} must be 0 or 1"))),
        };
        let bias = self.optional_initializer(node, 2)?;
        let x = self.data(node, 0)?;
        self.linear(node, x, w, bias, layout)
    }

    /// `MatMul(x, W)` by a weight `W: [in, out]`, with the bias of the `Add` that
    /// `matmul_biases` paired with it, as one linear layer.
    fn matmul(&mut self, node: &NodeProto, add: Option<&NodeProto>) -> Result<()> {
        if node.input.len() != 2 {
            return Err(err(
                node,
                format!("has {} inputs, MatMul takes 2", node.input.len()),
            ));
        }
        let w = self.initializer(node, 1, "weight B")?;
        let bias = match add {
            Some(add) => {
                let name = other(add, &node.output[0])
                    .ok_or_else(|| err(add, "does not read the MatMul it was paired with"))?;
                Some(self.initializer(add, usize::from(add.input[0] != name), "bias")?)
            }
            None => None,
        };
        let x = self.data(node, 0)?;
        self.linear(node, x, w, bias, WeightLayout::InOut)?;
        if let Some(add) = add {
            // The Add's output is the same layer's output.
            let layer = self
                .source
                .get(&node.output[0])
                .cloned()
                .unwrap_or_default();
            self.produces(add, layer)?;
        }
        Ok(())
    }

    /// A linear layer reading `x` with weight `w` stored in `layout` and an optional bias.
    fn linear(
        &mut self,
        node: &NodeProto,
        x: String,
        w: &TensorProto,
        bias: Option<&TensorProto>,
        layout: WeightLayout,
    ) -> Result<()> {
        let [rows, cols] = dims(w)?[..] else {
            return Err(err(
                node,
                format!("weight `{}` must be a matrix, dims {:?}", w.name, w.dims),
            ));
        };
        let (out, inp) = match layout {
            WeightLayout::OutIn => (rows, cols),
            WeightLayout::InOut => (cols, rows),
        };
        let mut params = vec![("weight", w.name.as_str())];
        if let Some(b) = bias {
            if dims(b)? != [out] {
                return Err(err(
                    node,
                    format!("bias `{}` must have dims [{out}], has {:?}", b.name, b.dims),
                ));
            }
            params.push(("bias", b.name.as_str()));
        }
        let layout_name = match layout {
            WeightLayout::OutIn => "out_in",
            WeightLayout::InOut => "in_out",
        };
        let fields = json!({"in_features": inp, "out_features": out, "bias": bias.is_some(),
                            "weight_layout": layout_name});
        self.emit(node, "linear", vec![x], as_map(fields), &params)
    }

    fn conv(&mut self, node: &NodeProto) -> Result<()> {
        require_default_auto_pad(node)?;
        require_unit(node, "dilations")?;
        if attr_i(node, "group", 1) != 1 {
            return Err(err(
                node,
                "grouped convolutions are not supported (group must be 1)",
            ));
        }
        let w = self.initializer(node, 1, "weight W")?;
        let [out, inp, kh, kw] = dims(w)?[..] else {
            return Err(err(
                node,
                format!("weight `{}` must be 4-D, dims {:?}", w.name, w.dims),
            ));
        };
        let stride = pair(
            node,
            "strides",
            &attr_ints(node, "strides").unwrap_or(vec![1, 1]),
        )?;
        let padding = symmetric_pads(node)?;
        let bias = self.optional_initializer(node, 2)?;
        let x = self.data(node, 0)?;
        let mut params = vec![("weight", w.name.as_str())];
        if let Some(b) = bias {
            params.push(("bias", b.name.as_str()));
        }
        let fields = json!({"in_channels": inp, "out_channels": out, "kernel_size": [kh, kw],
                            "stride": [stride.0, stride.1], "padding": [padding.0, padding.1],
                            "bias": bias.is_some()});
        self.emit(node, "conv2d", vec![x], as_map(fields), &params)
    }

    fn pool(&mut self, node: &NodeProto) -> Result<()> {
        require_default_auto_pad(node)?;
        require_unit(node, "dilations")?;
        if attr_i(node, "ceil_mode", 0) != 0 {
            return Err(err(node, "ceil_mode = 1 is not supported"));
        }
        if node.output.len() > 1 && node.output[1..].iter().any(|o| !o.is_empty()) {
            return Err(err(node, "the indices output of MaxPool is not supported"));
        }
        let kernel = pair(
            node,
            "kernel_shape",
            &attr_ints(node, "kernel_shape").unwrap_or_default(),
        )?;
        let stride = pair(
            node,
            "strides",
            &attr_ints(node, "strides").unwrap_or(vec![1, 1]),
        )?;
        let padding = symmetric_pads(node)?;
        let avg = node.op_type == "AveragePool";
        if avg && padding != (0, 0) {
            return Err(err(node, "AveragePool with padding is not supported"));
        }
        let x = self.data(node, 0)?;
        let fields = json!({"kernel_size": [kernel.0, kernel.1], "stride": [stride.0, stride.1],
                            "padding": [padding.0, padding.1]});
        self.emit(
            node,
            if avg { "avgpool2d" } else { "maxpool2d" },
            vec![x],
            as_map(fields),
            &[],
        )
    }

    fn batchnorm(&mut self, node: &NodeProto) -> Result<()> {
        if attr_i(node, "training_mode", 0) != 0 {
            return Err(err(
                node,
                "training_mode = 1 graphs are not supported; export in eval mode",
            ));
        }
        let names = ["scale", "bias", "mean", "var"];
        let mut t = Vec::new();
        for (i, what) in names.iter().enumerate() {
            t.push(self.initializer(node, i + 1, what)?);
        }
        let [c] = dims(t[0])?[..] else {
            return Err(err(node, "scale must be 1-D"));
        };
        // ONNX's momentum weighs the old running value; PyTorch's (gradtau's) the new one.
        let momentum = 1.0 - attr_f(node, "momentum", 0.9);
        let fields = json!({"num_features": c, "eps": attr_f(node, "epsilon", 1e-5),
                            "momentum": momentum});
        let x = self.data(node, 0)?;
        let params = [
            ("weight", t[0].name.as_str()),
            ("bias", t[1].name.as_str()),
            ("running_mean", t[2].name.as_str()),
            ("running_var", t[3].name.as_str()),
        ];
        self.emit(node, "batchnorm", vec![x], as_map(fields), &params)
    }

    fn layernorm(&mut self, node: &NodeProto) -> Result<()> {
        let scale = self.initializer(node, 1, "scale")?;
        let bias = self.optional_initializer(node, 2)?;
        let shape = dims(scale)?;
        if attr_i(node, "axis", -1) != -1 && shape.len() == 1 {
            return Err(err(
                node,
                "only normalisation over the last axis (axis = -1) is supported",
            ));
        }
        if bias.is_none() {
            return Err(err(
                node,
                "a LayerNormalization without bias is not supported",
            ));
        }
        let x = self.data(node, 0)?;
        let fields = json!({"normalized_shape": shape, "eps": attr_f(node, "epsilon", 1e-5)});
        let params = [
            ("weight", scale.name.as_str()),
            ("bias", bias.map_or("", |b| b.name.as_str())),
        ];
        self.emit(node, "layernorm", vec![x], as_map(fields), &params)
    }

    fn reshape(&mut self, node: &NodeProto) -> Result<()> {
        let shape_name = node
            .input
            .get(1)
            .ok_or_else(|| err(node, "the shape input is missing"))?;
        let shape = self.constant(shape_name).ok_or_else(|| {
            err(
                node,
                "the target shape is computed at run time; gradtau needs it static",
            )
        })?;
        let s = ints(shape)?;
        let per_sample = &s[1.min(s.len())..];
        if s.is_empty() || per_sample.iter().any(|&d| d <= 0) {
            return Err(err(
                node,
                format!("shape {s:?}: every dimension but the batch must be a fixed size"),
            ));
        }
        let x = self.data(node, 0)?;
        let fields = json!({"shape": per_sample});
        self.emit(node, "reshape", vec![x], as_map(fields), &[])
    }

    fn gather(&mut self, node: &NodeProto) -> Result<()> {
        if attr_i(node, "axis", 0) != 0 {
            return Err(err(
                node,
                "only Gather along axis 0 of a weight table (an embedding)",
            ));
        }
        let w = self.initializer(node, 0, "embedding table")?;
        let [num, dim] = dims(w)?[..] else {
            return Err(err(node, "the embedding table must be 2-D"));
        };
        let x = self.data(node, 1)?;
        let fields = json!({"num_embeddings": num, "embedding_dim": dim});
        self.emit(
            node,
            "embedding",
            vec![x],
            as_map(fields),
            &[("weight", w.name.as_str())],
        )
    }

    fn reduce_mean(&mut self, node: &NodeProto) -> Result<()> {
        let axes = match attr_ints(node, "axes") {
            Some(a) => a,
            None => match node.input.get(1).filter(|n| !n.is_empty()) {
                Some(n) => ints(
                    self.constant(n)
                        .ok_or_else(|| err(node, "axes must be constant"))?,
                )?,
                None => Vec::new(),
            },
        };
        let keepdims = attr_i(node, "keepdims", 1) != 0;
        let mut spatial = axes.clone();
        spatial.sort_unstable();
        if keepdims && (spatial == [2, 3] || spatial == [-2, -1]) {
            // The mean over both spatial axes of [N, C, H, W]: global average pooling (as
            // exporters write AdaptiveAvgPool2d(1)); the [N, C, 1, 1] result is read as
            // [N, C] by the Flatten or Reshape that follows it in such graphs.
            let x = self.data(node, 0)?;
            return self.emit(node, "global_avg_pool", vec![x], Map::new(), &[]);
        }
        if keepdims {
            return Err(err(
                node,
                "keepdims = 1 is supported only over the two spatial axes",
            ));
        }
        let [axis] = axes[..] else {
            return Err(err(
                node,
                format!("exactly one axis is supported, got {axes:?}"),
            ));
        };
        if axis < 1 {
            return Err(err(
                node,
                format!("axis {axis}: the batch axis cannot be reduced (use a positive axis)"),
            ));
        }
        let x = self.data(node, 0)?;
        self.emit(node, "mean", vec![x], as_map(json!({"dim": axis})), &[])
    }

    fn finish(&self, graph: &GraphProto, loss: LossKind) -> Result<Value> {
        let [out] = graph.output.as_slice() else {
            return Err(Error::Spec(format!(
                "the ONNX graph has {} outputs; gradtau takes models with exactly one",
                graph.output.len()
            )));
        };
        let last = self
            .nodes
            .last()
            .and_then(|n| n.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Spec("the ONNX graph has no node gradtau can run".into()))?;
        if self.source.get(&out.name).map(String::as_str) != Some(last) {
            return Err(Error::Spec(format!(
                "the ONNX output `{}` is not produced by the last node of the graph",
                out.name
            )));
        }
        Ok(json!({
            "format": "gradtau.model/1",
            "input": {"shape": self.input_shape},
            "nodes": self.nodes,
            "loss": loss.name(),
        }))
    }
}

/// A scalar float constant of the graph, if `name` is one.
fn scalar(b: &Builder<'_>, name: &str) -> Option<f32> {
    let t = b.constant(name)?;
    match floats(t).ok()?.as_slice() {
        [v] => Some(*v),
        _ => None,
    }
}

/// Who reads each value of a node list, for the pattern fusions below: a chain of nodes is
/// fused only when each intermediate value has the chain's next node as its one reader, so
/// nothing else sees the parts.
struct Readers<'n> {
    nodes: &'n [NodeProto],
    readers: HashMap<&'n str, Vec<usize>>,
    producer: HashMap<&'n str, usize>,
}

impl<'n> Readers<'n> {
    fn new(nodes: &'n [NodeProto]) -> Self {
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut producer = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for input in &n.input {
                readers.entry(input.as_str()).or_default().push(i);
            }
            for out in &n.output {
                producer.entry(out.as_str()).or_insert(i);
            }
        }
        Readers {
            nodes,
            readers,
            producer,
        }
    }

    /// The one node reading the first output of node `i`, if it is of type `op`.
    fn next(&self, i: usize, op: &str) -> Option<usize> {
        let out = self.nodes[i].output.first()?;
        match self.readers.get(out.as_str()).map(Vec::as_slice) {
            Some([j]) if self.nodes[*j].op_type == op => Some(*j),
            _ => None,
        }
    }

    /// The node of type `op` producing `value`, if it is `value`'s one reader's only source.
    fn prev(&self, value: &str, op: &str) -> Option<usize> {
        let i = *self.producer.get(value)?;
        let one_reader = matches!(self.readers.get(value).map(Vec::as_slice), Some([_]));
        (one_reader && self.nodes[i].op_type == op && self.nodes[i].output.len() == 1).then_some(i)
    }
}

/// The input of a two-input node other than `known`.
fn other<'a>(n: &'a NodeProto, known: &str) -> Option<&'a str> {
    match n.input.as_slice() {
        [a, c] if a == known => Some(c),
        [a, c] if c == known => Some(a),
        _ => None,
    }
}

fn near(v: Option<f32>, want: f32) -> bool {
    v.is_some_and(|v| (v - want).abs() < 1e-4 * want.abs().max(1.0))
}

/// `x · 0.5 · p` from node `i` (computing `p`) on: the two products in either order
/// (`Mul(x, p)` then `Mul(·, 0.5)`, or `Mul(0.5, p)` then `Mul(x, ·)`). The two Mul nodes.
fn halves_x_times(r: &Readers<'_>, b: &Builder<'_>, i: usize, x: &str) -> Option<[usize; 2]> {
    let m1 = r.next(i, "Mul")?;
    let first = other(&r.nodes[m1], &r.nodes[i].output[0])?;
    let m2 = r.next(m1, "Mul")?;
    let second = other(&r.nodes[m2], &r.nodes[m1].output[0])?;
    let ok = (first == x && near(scalar(b, second), 0.5))
        || (second == x && near(scalar(b, first), 0.5));
    ok.then_some([m1, m2])
}

/// A `Gelu` node reading `x`, writing the output of `last`, named after `anchor`.
fn gelu_node(anchor: &NodeProto, x: &str, last: &NodeProto, approximate: &str) -> NodeProto {
    let mut attribute = Vec::new();
    if approximate != "none" {
        attribute.push(AttributeProto {
            name: "approximate".into(),
            s: approximate.as_bytes().to_vec(),
            ..Default::default()
        });
    }
    NodeProto {
        input: vec![x.to_string()],
        output: last.output.clone(),
        name: format!("{}_gelu", anchor.name),
        op_type: "Gelu".into(),
        attribute,
        domain: String::new(),
    }
}

/// `nodes` with the nodes of each match dropped and a replacement put at the position of
/// the match's last node (its inputs are computed before the first).
fn rewrite(nodes: &[NodeProto], matches: Vec<(Vec<usize>, NodeProto)>) -> Vec<NodeProto> {
    let mut drop: HashSet<usize> = HashSet::new();
    let mut replace: HashMap<usize, NodeProto> = HashMap::new();
    for (parts, node) in matches {
        let Some(&last) = parts.iter().max() else {
            continue;
        };
        if parts.iter().any(|p| drop.contains(p)) {
            continue;
        }
        drop.extend(parts.iter().copied());
        replace.insert(last, node);
    }
    nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match replace.remove(&i) {
            Some(r) => Some(r),
            None => (!drop.contains(&i)).then(|| n.clone()),
        })
        .collect()
}

/// GELU's erf form, as exporters write `nn.GELU()` below opset 20, as one `Gelu` node:
/// `y = x · 0.5 · (1 + erf(x / √2))`.
fn fuse_gelu(nodes: &[NodeProto], b: &Builder<'_>) -> Vec<NodeProto> {
    let r = Readers::new(nodes);
    let mut matches = Vec::new();
    for (i, div) in nodes.iter().enumerate() {
        if div.op_type != "Div" || div.input.len() != 2 || !near(scalar(b, &div.input[1]), SQRT_2) {
            continue;
        }
        let x = div.input[0].as_str();
        let found = (|| {
            let erf = r.next(i, "Erf")?;
            let add = r.next(erf, "Add")?;
            let one = other(&nodes[add], &nodes[erf].output[0])?;
            near(scalar(b, one), 1.0).then_some(())?;
            let [m1, m2] = halves_x_times(&r, b, add, x)?;
            Some(vec![i, erf, add, m1, m2])
        })();
        if let Some(parts) = found {
            let node = gelu_node(div, x, &nodes[parts[4]], "none");
            matches.push((parts, node));
        }
    }
    rewrite(nodes, matches)
}

/// GELU's tanh form, as exporters write `nn.GELU(approximate="tanh")` below opset 20, as
/// one `Gelu` node: `y = x · 0.5 · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`, with `x³` as
/// `Pow(x, 3)` or `Mul(x, Mul(x, x))`, the constants on either side of their Mul and Add.
fn fuse_gelu_tanh(nodes: &[NodeProto], b: &Builder<'_>) -> Vec<NodeProto> {
    let r = Readers::new(nodes);
    let mut matches = Vec::new();
    // One side of a two-input node is the scalar `want`: the other side.
    let by_scalar = |n: &NodeProto, want: f32| -> Option<String> {
        match n.input.as_slice() {
            [a, c] if near(scalar(b, a), want) => Some(c.clone()),
            [a, c] if near(scalar(b, c), want) => Some(a.clone()),
            _ => None,
        }
    };
    for (i, tanh) in nodes.iter().enumerate() {
        if tanh.op_type != "Tanh" || tanh.input.len() != 1 {
            continue;
        }
        let found = (|| {
            let scale = r.prev(&tanh.input[0], "Mul")?;
            let sum = r.prev(&by_scalar(&nodes[scale], SQRT_2_OVER_PI)?, "Add")?;
            let [p, q] = nodes[sum].input.as_slice() else {
                return None;
            };
            // `x + 0.044715 · x³`: one side is the product with the constant.
            let (x, cubic, cube_value) = [(p, q), (q, p)].into_iter().find_map(|(x, c)| {
                let m = r.prev(c, "Mul")?;
                Some((x.as_str(), m, by_scalar(&nodes[m], GELU_TANH_CUBIC)?))
            })?;
            let mut parts = vec![scale, sum, cubic];
            parts.extend(cube_of(&r, b, &cube_value, x)?);
            let add = r.next(i, "Add")?;
            let one = other(&nodes[add], &tanh.output[0])?;
            near(scalar(b, one), 1.0).then_some(())?;
            let halves = halves_x_times(&r, b, add, x)?;
            parts.extend([i, add]);
            parts.extend(halves);
            Some((parts, x.to_string(), halves[1]))
        })();
        if let Some((parts, x, last)) = found {
            let node = gelu_node(tanh, &x, &nodes[last], "tanh");
            matches.push((parts, node));
        }
    }
    rewrite(nodes, matches)
}

/// The nodes computing `value = x³`: `Pow(x, 3)`, or `Mul(x, Mul(x, x))` in either order.
fn cube_of(r: &Readers<'_>, b: &Builder<'_>, value: &str, x: &str) -> Option<Vec<usize>> {
    if let Some(pow) = r.prev(value, "Pow") {
        let n = &r.nodes[pow];
        return (n.input.len() == 2 && n.input[0] == x && near(scalar(b, &n.input[1]), 3.0))
            .then(|| vec![pow]);
    }
    let outer = r.prev(value, "Mul")?;
    let square = other(&r.nodes[outer], x)?;
    let inner = r.prev(square, "Mul")?;
    (r.nodes[inner].input == [x, x]).then(|| vec![outer, inner])
}

/// For each `MatMul` by a weight whose one reader is an `Add` of a bias initializer of the
/// weight's output size (`x @ W + b`): the MatMul's index → the Add's. The pair becomes one
/// linear layer.
fn matmul_biases(nodes: &[NodeProto], b: &Builder<'_>) -> HashMap<usize, usize> {
    let r = Readers::new(nodes);
    let mut out = HashMap::new();
    for (i, mm) in nodes.iter().enumerate() {
        let found = (|| {
            (mm.op_type == "MatMul" && mm.input.len() == 2 && mm.output.len() == 1).then_some(())?;
            let w = b.initializers.get(mm.input[1].as_str())?;
            let &[_, cols] = w.dims.as_slice() else {
                return None;
            };
            let add = r.next(i, "Add")?;
            let bias = b.initializers.get(other(&nodes[add], &mm.output[0])?)?;
            (bias.dims == [cols] && nodes[add].domain == mm.domain).then_some(add)
        })();
        if let Some(add) = found {
            out.insert(i, add);
        }
    }
    out
}

const SQRT_2: f32 = std::f32::consts::SQRT_2;
/// √(2/π), the tanh form's scale.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// The tanh form's cubic coefficient.
const GELU_TANH_CUBIC: f32 = 0.044_715;

fn as_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
