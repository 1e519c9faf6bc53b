//! ONNX in, ONNX out: a model an inference server already serves becomes a gradtau model,
//! and after unlearning its weights go back into the same file.
//!
//! [`OnnxModel::from_bytes`] reads the graph (opset 13 and newer; the supported ops are
//! listed in [`import`]) into a gradtau [`Model`] whose parameters carry the initializers'
//! names, and keeps the initializer values and the original bytes. [`OnnxModel::to_bytes`]
//! writes new weights into a copy of the original file: same graph, names, opset and
//! metadata, only the initializers' data replaced. Protobuf is decoded with prost; see
//! [`proto`] for why only the fields gradtau reads are declared, and [`export`] for why the
//! write-back edits the wire format instead of re-encoding.

pub mod export;
pub mod import;
pub mod proto;

use crate::error::{Error, Result};
use crate::nn::{LossKind, Model};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// An ONNX model compiled for gradtau.
pub struct OnnxModel {
    /// The gradtau model; its parameter names are the ONNX initializer names.
    pub model: Model,
    /// The initializers' values, in the model's parameter order.
    pub weights: Vec<Tensor>,
    /// The file it came from, to write new weights into.
    pub file: OnnxFile,
}

/// The bytes of an ONNX file, kept to write new weights into.
#[derive(Clone)]
pub struct OnnxFile {
    bytes: Vec<u8>,
}

impl OnnxModel {
    /// Imports an ONNX model from its file bytes; `loss` is the loss it was trained with
    /// (ONNX graphs do not record it).
    pub fn from_bytes(bytes: &[u8], loss: LossKind) -> Result<Self> {
        let imported = import::import(bytes, loss)?;
        Ok(OnnxModel {
            model: imported.model,
            weights: imported.weights,
            file: OnnxFile {
                bytes: bytes.to_vec(),
            },
        })
    }

    /// The original file with the initializers replaced by `weights` (in parameter order).
    pub fn to_bytes(&self, weights: &[Tensor]) -> Result<Vec<u8>> {
        self.file.with_weights(&self.model, weights)
    }
}

impl OnnxFile {
    /// The file with the initializers of `model`'s parameters replaced by `weights`.
    pub fn with_weights(&self, model: &Model, weights: &[Tensor]) -> Result<Vec<u8>> {
        model.check_weights(weights)?;
        let values: Vec<Vec<f32>> = weights.iter().map(Tensor::to_vec).collect::<Result<_>>()?;
        let map: HashMap<&str, &[f32]> = model
            .params()
            .iter()
            .zip(&values)
            .map(|(p, v)| (p.name.as_str(), v.as_slice()))
            .collect();
        if map.len() != values.len() {
            return Err(Error::Spec(
                "two parameters share an initializer name".into(),
            ));
        }
        export::replace_initializers(&self.bytes, &map)
    }
}

#[cfg(test)]
mod tests;
