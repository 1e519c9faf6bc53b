//! Import and write-back on graphs built here with the same prost messages, checked against
//! hand-computed outputs and against the equivalent hand-written spec. (Parity with ONNX
//! Runtime on exported files is in tests/onnx_parity.rs.)

use super::proto::*;
use super::*;
use prost::Message;

fn tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        name: name.into(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    output: &str,
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: name.into(),
        op_type: op.into(),
        attribute: attrs,
        domain: String::new(),
    }
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        ..Default::default()
    }
}

fn ints_attr(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            dim_value: *d,
                            dim_param: d.is_none().then(|| "batch".to_string()),
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

fn model(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    input: ValueInfoProto,
    out: &str,
    opset: i64,
) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: inits,
            input: vec![input],
            output: vec![value_info(out, &[None, Some(2)])],
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
    }
    .encode_to_vec()
}

/// 3 → 2 linear (PyTorch names), ReLU, 2 → 2 linear whose initializers have exporter names.
fn mlp_bytes() -> Vec<u8> {
    let nodes = vec![
        node(
            "Gemm",
            "/fc1/Gemm",
            &["x", "fc1.weight", "fc1.bias"],
            "h",
            vec![int_attr("transB", 1)],
        ),
        node("Relu", "/act/Relu", &["h"], "r", vec![]),
        node("Identity", "id", &["r"], "r2", vec![]),
        node(
            "Gemm",
            "/fc2/Gemm",
            &["r2", "onnx::Gemm_7", "onnx::Gemm_8"],
            "y",
            vec![int_attr("transB", 1)],
        ),
    ];
    let inits = vec![
        tensor("fc1.weight", &[2, 3], &[1.0, 0.0, -1.0, 0.5, 0.5, 0.5]),
        tensor("fc1.bias", &[2], &[0.0, -1.0]),
        tensor("onnx::Gemm_7", &[2, 2], &[1.0, 2.0, -1.0, 1.0]),
        tensor("onnx::Gemm_8", &[2], &[0.5, 0.0]),
    ];
    model(nodes, inits, value_info("x", &[None, Some(3)]), "y", 17)
}

#[test]
fn an_mlp_imports_with_its_initializer_names_and_predicts_by_hand() {
    let m = OnnxModel::from_bytes(&mlp_bytes(), LossKind::CrossEntropy).unwrap();
    let names: Vec<&str> = m.model.params().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["fc1.weight", "fc1.bias", "onnx::Gemm_7", "onnx::Gemm_8"]
    );
    let x = Tensor::from_slice(&[1.0, 2.0, 3.0], &[1, 3]).unwrap();
    let y = m
        .model
        .predict(&m.weights, &x, 8)
        .unwrap()
        .to_vec()
        .unwrap();
    // h = [1 - 3, 0.5 * 6 - 1] = [-2, 2]; relu = [0, 2]; y = [0 + 4 + 0.5, 0 + 2] = [4.5, 2].
    assert_eq!(y, vec![4.5, 2.0]);
}

#[test]
fn write_back_replaces_only_the_initializers() {
    let bytes = mlp_bytes();
    let m = OnnxModel::from_bytes(&bytes, LossKind::CrossEntropy).unwrap();
    let doubled: Vec<Tensor> = m
        .weights
        .iter()
        .map(|w| {
            let v: Vec<f32> = w.to_vec().unwrap().iter().map(|x| x * 2.0).collect();
            Tensor::from_vec(v, w.shape()).unwrap()
        })
        .collect();
    let out = m.to_bytes(&doubled).unwrap();
    let again = OnnxModel::from_bytes(&out, LossKind::CrossEntropy).unwrap();
    for (a, b) in again.weights.iter().zip(&doubled) {
        assert_eq!(a.to_vec().unwrap(), b.to_vec().unwrap());
    }
    // Everything but the initializers' data is unchanged: the graph's nodes, names and
    // opset decode the same.
    let (before, after) = (
        ModelProto::decode(&bytes[..]).unwrap(),
        ModelProto::decode(&out[..]).unwrap(),
    );
    assert_eq!(before.opset_import, after.opset_import);
    let (g0, g1) = (before.graph.unwrap(), after.graph.unwrap());
    assert_eq!(g0.node, g1.node);
    assert_eq!(g0.input, g1.input);
    assert_eq!(g0.output, g1.output);
    // Writing the same weights gives the same file back, byte for byte.
    assert_eq!(m.to_bytes(&m.weights).unwrap(), bytes);
}

#[test]
fn unknown_fields_survive_the_write_back() {
    // A doc string (field 6) and metadata (field 14) that the importer does not declare.
    let mut bytes = mlp_bytes();
    bytes.extend_from_slice(&[6 << 3 | 2, 3, b'd', b'o', b'c']);
    bytes.extend_from_slice(&[14 << 3 | 2, 4, 10, 2, b'k', b'v']);
    let m = OnnxModel::from_bytes(&bytes, LossKind::CrossEntropy).unwrap();
    let out = m.to_bytes(&m.weights).unwrap();
    assert!(out.ends_with(&[
        6 << 3 | 2,
        3,
        b'd',
        b'o',
        b'c',
        14 << 3 | 2,
        4,
        10,
        2,
        b'k',
        b'v'
    ]));
}

#[test]
fn a_cnn_with_batch_norm_matches_the_same_spec_written_by_hand() {
    let c = 2i64;
    let nodes = vec![
        node(
            "Conv",
            "conv",
            &["x", "c.weight", "c.bias"],
            "c1",
            vec![
                ints_attr("pads", &[1, 1, 1, 1]),
                ints_attr("kernel_shape", &[3, 3]),
            ],
        ),
        node(
            "BatchNormalization",
            "bn",
            &[
                "c1",
                "bn.weight",
                "bn.bias",
                "bn.running_mean",
                "bn.running_var",
            ],
            "b1",
            vec![],
        ),
        node("Relu", "relu", &["b1"], "r1", vec![]),
        node(
            "MaxPool",
            "pool",
            &["r1"],
            "p1",
            vec![
                ints_attr("kernel_shape", &[2, 2]),
                ints_attr("strides", &[2, 2]),
            ],
        ),
        node("GlobalAveragePool", "gap", &["p1"], "g1", vec![]),
        node("Flatten", "flat", &["g1"], "f1", vec![int_attr("axis", 1)]),
        node(
            "Gemm",
            "fc",
            &["f1", "fc.weight", "fc.bias"],
            "y",
            vec![int_attr("transB", 1)],
        ),
    ];
    let w: Vec<f32> = (0..(c * 9)).map(|i| (i as f32 * 0.37).sin()).collect();
    let inits = vec![
        tensor("c.weight", &[c, 1, 3, 3], &w),
        tensor("c.bias", &[c], &[0.1, -0.2]),
        tensor("bn.weight", &[c], &[1.5, 0.5]),
        tensor("bn.bias", &[c], &[0.0, 0.3]),
        tensor("bn.running_mean", &[c], &[0.2, -0.1]),
        tensor("bn.running_var", &[c], &[1.2, 0.8]),
        tensor("fc.weight", &[2, c], &[1.0, -1.0, 0.5, 2.0]),
        tensor("fc.bias", &[2], &[0.0, 0.1]),
    ];
    let bytes = model(
        nodes,
        inits,
        value_info("x", &[None, Some(1), Some(6), Some(6)]),
        "y",
        13,
    );
    let m = OnnxModel::from_bytes(&bytes, LossKind::CrossEntropy).unwrap();
    let spec = r#"{"format": "gradtau.model/1", "input": {"shape": [1, 6, 6]}, "nodes": [
        {"name": "c", "op": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"name": "bn", "op": "batchnorm2d", "num_features": 2},
        {"name": "r", "op": "relu"},
        {"name": "p", "op": "maxpool2d", "kernel_size": 2},
        {"name": "g", "op": "global_avg_pool"},
        {"name": "f", "op": "flatten"},
        {"name": "fc", "op": "linear", "in_features": 2, "out_features": 2}],
        "loss": "cross_entropy"}"#;
    let by_hand = Model::from_json(spec).unwrap();
    let x: Vec<f32> = (0..72).map(|i| (i as f32 * 0.11).cos()).collect();
    let x = Tensor::from_vec(x, &[2, 1, 6, 6]).unwrap();
    let a = m
        .model
        .predict(&m.weights, &x, 8)
        .unwrap()
        .to_vec()
        .unwrap();
    let b = by_hand
        .predict(&m.weights, &x, 8)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(m.model.params()[5].name, "bn.running_var");
}

#[test]
fn refusals_name_the_node_the_op_and_the_reason() {
    let cases: Vec<(NodeProto, &str)> = vec![
        (
            node("Softmax", "sm", &["x"], "y", vec![]),
            "op type `Softmax` is not supported",
        ),
        (
            node("Gemm", "g", &["x", "w"], "y", vec![int_attr("transB", 2)]),
            "transB = 2",
        ),
        (node("MatMul", "m", &["x", "x"], "y", vec![]), "initializer"),
        (
            node("Conv", "c", &["x", "w"], "y", vec![int_attr("group", 2)]),
            "grouped",
        ),
        (
            node("Relu", "r", &["nowhere"], "y", vec![]),
            "produced by no node",
        ),
    ];
    for (n, want) in cases {
        let bytes = model(
            vec![n.clone()],
            vec![tensor("w", &[2, 3], &[0.0; 6])],
            value_info("x", &[None, Some(3)]),
            "y",
            17,
        );
        let e = OnnxModel::from_bytes(&bytes, LossKind::Mse)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains(&format!("`{}` ({})", n.name, n.op_type)) && e.contains(want),
            "{e}"
        );
    }
    let old = model(
        vec![node("Relu", "r", &["x"], "y", vec![])],
        vec![],
        value_info("x", &[None, Some(3)]),
        "y",
        11,
    );
    assert!(OnnxModel::from_bytes(&old, LossKind::Mse)
        .err()
        .unwrap()
        .to_string()
        .contains("opset 11"));
    let dynamic = model(
        vec![node("Relu", "r", &["x"], "y", vec![])],
        vec![],
        value_info("x", &[None, None]),
        "y",
        17,
    );
    assert!(OnnxModel::from_bytes(&dynamic, LossKind::Mse)
        .err()
        .unwrap()
        .to_string()
        .contains("dynamic"));
}

#[test]
fn hostile_bytes_are_errors_never_panics() {
    let good = mlp_bytes();
    for cut in [0, 1, 7, good.len() / 2, good.len() - 1] {
        let _ = OnnxModel::from_bytes(&good[..cut], LossKind::Mse);
    }
    let mut rng = crate::rng::Rng::new(3);
    for _ in 0..300 {
        let mut b = good.clone();
        for _ in 0..4 {
            let i = rng.below(b.len());
            b[i] = rng.below(256) as u8;
        }
        if let Ok(m) = OnnxModel::from_bytes(&b, LossKind::Mse) {
            let _ = m.to_bytes(&m.weights);
        }
    }
    // A declared size far beyond what the file holds.
    let huge = model(
        vec![node(
            "Gemm",
            "g",
            &["x", "w"],
            "y",
            vec![int_attr("transB", 1)],
        )],
        vec![TensorProto {
            dims: vec![1 << 40, 1 << 40],
            data_type: data_type::FLOAT,
            name: "w".into(),
            ..Default::default()
        }],
        value_info("x", &[None, Some(3)]),
        "y",
        17,
    );
    assert!(OnnxModel::from_bytes(&huge, LossKind::Mse).is_err());
    // Raw data with bytes left over after the last whole value.
    let mut w = tensor("w", &[2, 3], &[0.0; 6]);
    w.raw_data.push(0);
    let ragged = model(
        vec![node(
            "Gemm",
            "g",
            &["x", "w"],
            "y",
            vec![int_attr("transB", 1)],
        )],
        vec![w],
        value_info("x", &[None, Some(3)]),
        "y",
        17,
    );
    let e = OnnxModel::from_bytes(&ragged, LossKind::Mse)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not a whole number"), "{e}");
}

/// `x @ W + b` with `W: [3, 2]` stored as the exporter wrote it.
fn matmul_bytes(with_bias: bool, bias_first: bool) -> Vec<u8> {
    let mut nodes = vec![node("MatMul", "/MatMul", &["x", "W"], "mm", vec![])];
    let mut inits = vec![tensor("W", &[3, 2], &[1.0, 0.5, 0.0, 0.5, -1.0, 0.5])];
    let out = if with_bias {
        let inputs: &[&str] = if bias_first {
            &["b", "mm"]
        } else {
            &["mm", "b"]
        };
        nodes.push(node("Add", "/Add", inputs, "y", vec![]));
        inits.push(tensor("b", &[2], &[0.0, -1.0]));
        "y"
    } else {
        nodes[0].output = vec!["y".into()];
        "y"
    };
    model(nodes, inits, value_info("x", &[None, Some(3)]), out, 17)
}

#[test]
fn matmul_and_add_become_one_linear_layer_with_its_weight_in_out() {
    let x = Tensor::from_slice(&[1.0, 2.0, 3.0, -1.0, 0.0, 2.0], &[2, 3]).unwrap();
    for bias_first in [false, true] {
        let m = OnnxModel::from_bytes(&matmul_bytes(true, bias_first), LossKind::Mse).unwrap();
        assert_eq!(m.model.spec().nodes.len(), 1, "MatMul + Add fused");
        let p = m.model.params();
        assert_eq!(
            (p[0].name.as_str(), p[0].shape.as_slice()),
            ("W", &[3, 2][..])
        );
        assert_eq!((p[1].name.as_str(), p[1].shape.as_slice()), ("b", &[2][..]));
        let y = m
            .model
            .predict(&m.weights, &x, 8)
            .unwrap()
            .to_vec()
            .unwrap();
        // [1, 2, 3] @ W = [1 + 0 - 3, 0.5 + 1 + 1.5] = [-2, 3], plus b = [-2, 2];
        // [-1, 0, 2] @ W = [-1 - 2, -0.5 + 1] = [-3, 0.5], plus b = [-3, -0.5].
        assert_eq!(y, vec![-2.0, 2.0, -3.0, -0.5]);
    }
    let m = OnnxModel::from_bytes(&matmul_bytes(false, false), LossKind::Mse).unwrap();
    assert_eq!(m.model.params().len(), 1);
    let y = m
        .model
        .predict(&m.weights, &x, 8)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(y, vec![-2.0, 3.0, -3.0, 0.5]);
}

#[test]
fn gemm_with_trans_b_0_equals_the_transposed_weight_with_trans_b_1() {
    let w_io = [1.0, 0.5, 0.0, 0.5, -1.0, 0.5];
    let w_oi = [1.0, 0.0, -1.0, 0.5, 0.5, 0.5];
    let gemm = |trans_b: i64, dims: &[i64], w: &[f32]| {
        let nodes = vec![node(
            "Gemm",
            "g",
            &["x", "W", "b"],
            "y",
            vec![int_attr("transB", trans_b)],
        )];
        let inits = vec![tensor("W", dims, w), tensor("b", &[2], &[0.25, -1.0])];
        model(nodes, inits, value_info("x", &[None, Some(3)]), "y", 13)
    };
    let a = OnnxModel::from_bytes(&gemm(0, &[3, 2], &w_io), LossKind::Mse).unwrap();
    let b = OnnxModel::from_bytes(&gemm(1, &[2, 3], &w_oi), LossKind::Mse).unwrap();
    let x: Vec<f32> = (0..12).map(|i| (i as f32 * 0.7).sin()).collect();
    let x = Tensor::from_vec(x, &[4, 3]).unwrap();
    let ya = a
        .model
        .predict(&a.weights, &x, 8)
        .unwrap()
        .to_vec()
        .unwrap();
    let yb = b
        .model
        .predict(&b.weights, &x, 8)
        .unwrap()
        .to_vec()
        .unwrap();
    for (p, q) in ya.iter().zip(&yb) {
        assert!((p - q).abs() < 1e-6, "{ya:?} vs {yb:?}");
    }
    assert_eq!(a.model.params()[0].shape, vec![3, 2]);
}

#[test]
fn an_in_out_weight_writes_back_in_its_own_layout() {
    let bytes = matmul_bytes(true, false);
    let m = OnnxModel::from_bytes(&bytes, LossKind::Mse).unwrap();
    let w: Vec<f32> = (0..6).map(|i| i as f32).collect();
    let new = vec![
        Tensor::from_vec(w.clone(), &[3, 2]).unwrap(),
        m.weights[1].clone(),
    ];
    let again = OnnxModel::from_bytes(&m.to_bytes(&new).unwrap(), LossKind::Mse).unwrap();
    assert_eq!(again.weights[0].to_vec().unwrap(), w);
    assert_eq!(again.weights[0].shape(), &[3, 2]);
}

fn scalar_init(name: &str, v: f32) -> TensorProto {
    tensor(name, &[], &[v])
}

/// `nn.GELU(approximate="tanh")` as the two PyTorch exporters spell it: the TorchScript
/// exporter's `Mul(x, Mul(x, x))` cube with constants first, or the `torch.export` one's
/// `Pow(x, 3)` with `0.5 · (1 + tanh)` formed before the product with x.
fn gelu_tanh_bytes(pow: bool) -> Vec<u8> {
    let mut nodes = Vec::new();
    if pow {
        nodes.push(node("Pow", "pow", &["x", "three"], "cube", vec![]));
    } else {
        nodes.push(node("Mul", "sq", &["x", "x"], "square", vec![]));
        nodes.push(node("Mul", "cu", &["x", "square"], "cube", vec![]));
    }
    nodes.extend([
        node("Mul", "m1", &["k1", "cube"], "c1", vec![]),
        node("Add", "a1", &["x", "c1"], "inner", vec![]),
        node("Mul", "m2", &["k2", "inner"], "u", vec![]),
        node("Tanh", "t", &["u"], "th", vec![]),
    ]);
    if pow {
        nodes.extend([
            node("Add", "a2", &["th", "one"], "p", vec![]),
            node("Mul", "m3", &["half", "p"], "h", vec![]),
            node("Mul", "m4", &["x", "h"], "y", vec![]),
        ]);
    } else {
        nodes.extend([
            node("Add", "a2", &["one", "th"], "p", vec![]),
            node("Mul", "m3", &["x", "p"], "h", vec![]),
            node("Mul", "m4", &["half", "h"], "y", vec![]),
        ]);
    }
    let inits = vec![
        scalar_init("three", 3.0),
        scalar_init("k1", 0.044_715),
        scalar_init("k2", 0.797_884_6),
        scalar_init("one", 1.0),
        scalar_init("half", 0.5),
    ];
    model(nodes, inits, value_info("x", &[None, Some(2)]), "y", 17)
}

#[test]
fn gelu_tanh_decompositions_fuse_into_one_tanh_gelu() {
    use crate::ops::activation::{gelu, GeluApprox};
    let x: Vec<f32> = (0..8).map(|i| i as f32 * 0.8 - 3.0).collect();
    let x = Tensor::from_vec(x, &[4, 2]).unwrap();
    let want = gelu(&x, GeluApprox::Tanh).unwrap().to_vec().unwrap();
    for pow in [true, false] {
        let m = OnnxModel::from_bytes(&gelu_tanh_bytes(pow), LossKind::Mse).unwrap();
        assert_eq!(m.model.spec().nodes.len(), 1);
        assert_eq!(
            m.model.spec().nodes[0].op,
            crate::nn::NodeOp::Gelu(GeluApprox::Tanh)
        );
        assert!(m.model.params().is_empty());
        let y = m
            .model
            .predict(&m.weights, &x, 8)
            .unwrap()
            .to_vec()
            .unwrap();
        assert_eq!(y, want);
    }
    // An opset-20 Gelu with approximate = "tanh" reads as the same op.
    let attr = AttributeProto {
        name: "approximate".into(),
        s: b"tanh".to_vec(),
        ..Default::default()
    };
    let g20 = model(
        vec![node("Gelu", "g", &["x"], "y", vec![attr])],
        vec![],
        value_info("x", &[None, Some(2)]),
        "y",
        20,
    );
    let m = OnnxModel::from_bytes(&g20, LossKind::Mse).unwrap();
    let y = m
        .model
        .predict(&m.weights, &x, 8)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(y, want);
}

#[test]
fn a_pattern_whose_parts_are_read_elsewhere_is_not_fused() {
    // The same tanh form, but `u` is also a second output path: the chain does not own it,
    // so nothing is fused and the Pow node is refused by name.
    let bytes = gelu_tanh_bytes(true);
    let mut m = ModelProto::decode(&bytes[..]).unwrap();
    let g = m.graph.as_mut().unwrap();
    g.node.push(node("Relu", "leak", &["u"], "z", vec![]));
    let e = OnnxModel::from_bytes(&m.encode_to_vec(), LossKind::Mse)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("`pow` (Pow)"), "{e}");
}
