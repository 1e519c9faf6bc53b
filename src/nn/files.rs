//! Data sets read from files for a given model: the model knows its sample shape and its
//! loss, so it knows what the inputs file must hold and whether the targets are class labels
//! or float values. Used by the command-line tool and the C ABI (`gradtau_dataset_load`).

use super::{LossKind, Model};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::io;
use crate::tensor::Tensor;
use std::path::Path;

impl Model {
    /// Reads inputs `[N, input_shape...]` from a `.npy` or IDX file (plain or gzip).
    pub fn read_inputs(&self, path: &Path) -> Result<Tensor> {
        let (data, shape) = io::read_array_f32(path)?;
        let n = shape.first().copied().unwrap_or(0);
        let per: usize = self.input_shape().iter().product();
        if n == 0 || n.checked_mul(per) != Some(data.len()) {
            return Err(Error::shape(
                "inputs",
                format!(
                    "{}: array of shape {shape:?} does not hold [N, {:?}] samples",
                    path.display(),
                    self.input_shape()
                ),
            ));
        }
        let mut s = vec![n];
        s.extend_from_slice(self.input_shape());
        Tensor::from_vec(data, &s)
    }

    /// Reads a labelled set: inputs from `x`, and from `y` class labels (a `cross_entropy`
    /// model) or float targets `[N, output_shape...]` (`mse`, `bce_with_logits`). `what`
    /// names the set in errors ("forget", "retain", ...).
    pub fn read_dataset(&self, x: &Path, y: &Path, what: &str) -> Result<Dataset> {
        let inputs = self.read_inputs(x)?;
        let n = inputs.dim(0);
        let mismatch = |m: usize, kind: &str| {
            Error::shape(
                "dataset",
                format!(
                    "{what} set: {} holds {n} samples but {} holds {m} {kind}",
                    x.display(),
                    y.display()
                ),
            )
        };
        let targets = match self.loss_kind() {
            LossKind::CrossEntropy => {
                let labels = io::read_array_labels(y)?;
                if labels.len() != n {
                    return Err(mismatch(labels.len(), "labels"));
                }
                Targets::Classes(labels)
            }
            _ => {
                let (t, _) = io::read_array_f32(y)?;
                let per: usize = self.output_shape().iter().product();
                if Some(t.len()) != n.checked_mul(per) {
                    return Err(mismatch(t.len() / per.max(1), "targets"));
                }
                let mut s = vec![n];
                s.extend_from_slice(self.output_shape());
                Targets::Values(
                    Tensor::from_vec(t, &s)
                        .map_err(|e| Error::Io(format!("{}: {e}", y.display())))?,
                )
            }
        };
        let d = Dataset::new(inputs, targets)?;
        self.check_dataset(&d, what).map_err(|e| match e {
            Error::InvalidArgument(m) => {
                Error::InvalidArgument(format!("{m} (files {} and {})", x.display(), y.display()))
            }
            other => other,
        })?;
        Ok(d)
    }
}
