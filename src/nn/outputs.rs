//! What a model's raw outputs mean to a caller: class probabilities and predicted classes,
//! where the model's loss gives them a meaning.
//!
//! The loss decides: `cross_entropy` outputs are logits over the classes of the last
//! dimension (softmax, argmax), `bce_with_logits` outputs are independent logits (sigmoid per
//! value, no single class), and `mse` outputs are values with no probability at all.

use super::spec::LossKind;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Probabilities from raw outputs `[N, ...]`: softmax over the last dimension for
/// `cross_entropy`, an elementwise sigmoid for `bce_with_logits`. `mse` has none.
pub fn probabilities(loss: LossKind, outputs: &Tensor) -> Result<Tensor> {
    let mut values = outputs.to_vec()?;
    match loss {
        LossKind::CrossEntropy => {
            let classes = last_dim(outputs)?;
            for row in values.chunks_mut(classes) {
                softmax_in_place(row);
            }
        }
        LossKind::BceWithLogits => values.iter_mut().for_each(|v| *v = sigmoid(*v)),
        LossKind::Mse => {
            return Err(Error::invalid(
                "probabilities are defined for models trained with cross_entropy or \
                 bce_with_logits; this model's loss is mse (its outputs are the predictions)",
            ))
        }
    }
    Tensor::from_vec(values, outputs.shape())
}

/// The most likely class of each sample (argmax over the last dimension; the first of equal
/// maxima) for a `cross_entropy` model with one class vector per sample.
pub fn classes(loss: LossKind, outputs: &Tensor) -> Result<Vec<usize>> {
    if loss != LossKind::CrossEntropy {
        return Err(Error::invalid(format!(
            "a single predicted class is defined for cross_entropy models; this model's loss is \
             {} (use the raw outputs or the probabilities)",
            loss.name()
        )));
    }
    if outputs.shape().len() != 2 {
        return Err(Error::invalid(format!(
            "a single predicted class needs one class vector per sample; the outputs have \
             shape {:?}",
            outputs.shape()
        )));
    }
    let classes = last_dim(outputs)?;
    let values = outputs.to_vec()?;
    Ok(values.chunks(classes).map(argmax).collect())
}

fn last_dim(outputs: &Tensor) -> Result<usize> {
    match outputs.shape().last() {
        Some(&c) if c > 0 => Ok(c),
        _ => Err(Error::invalid(format!(
            "outputs of shape {:?} have no class dimension",
            outputs.shape()
        ))),
    }
}

fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    row.iter_mut().for_each(|v| *v /= sum);
}

fn sigmoid(x: f32) -> f32 {
    // Written for both signs so that large |x| neither overflows nor loses the small side.
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape).unwrap()
    }

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let p = probabilities(
            LossKind::CrossEntropy,
            &t(&[1.0, 2.0, 3.0, 1000.0, 0.0, -1000.0], &[2, 3]),
        )
        .unwrap()
        .to_vec()
        .unwrap();
        assert!((p[0..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] < p[1] && p[1] < p[2]);
        // exp(1) / (exp(1) + exp(2) + exp(3)), computed by hand.
        assert!((p[0] - 0.090_030_57).abs() < 1e-6, "{}", p[0]);
        assert_eq!(&p[3..6], &[1.0, 0.0, 0.0]);
    }

    #[test]
    fn sigmoid_is_stable_at_both_ends() {
        let p = probabilities(
            LossKind::BceWithLogits,
            &t(&[0.0, 200.0, -200.0, 2.0], &[1, 4]),
        )
        .unwrap()
        .to_vec()
        .unwrap();
        assert_eq!(p[0], 0.5);
        assert_eq!(p[1], 1.0);
        assert!(p[2] >= 0.0 && p[2] < 1e-30);
        assert!((p[3] - 0.880_797_1).abs() < 1e-6);
    }

    #[test]
    fn classes_are_the_first_argmax_and_need_cross_entropy() {
        let out = t(&[0.1, 0.7, 0.7, 5.0, -1.0, 0.0], &[2, 3]);
        assert_eq!(classes(LossKind::CrossEntropy, &out).unwrap(), vec![1, 0]);
        let e = classes(LossKind::Mse, &out).unwrap_err();
        assert!(e.to_string().contains("mse"), "{e}");
        assert!(probabilities(LossKind::Mse, &out).is_err());
        let empty = Tensor::from_vec(vec![], &[0, 3]).unwrap();
        assert!(classes(LossKind::CrossEntropy, &empty).unwrap().is_empty());
    }
}
