//! Embedding lookup: each id picks a row of a `[num_embeddings, dim]` weight table. Ids travel
//! as f32 tensors like every other input, so each one is checked to be an exact integer in
//! range before it is used as an index.

use super::{expect_rank, host, same_device};
use crate::autograd::{BackwardCtx, BackwardOp, Tape, Var};
use crate::backend::cpu::pool::try_alloc;
use crate::backend::cpu::simd;
use crate::backend::cuda;
use crate::backend::Storage;
use crate::error::{Error, Result};
use crate::tensor::{checked_numel, Tensor};

/// The multi-dimensional position of flat index `k` in `shape`.
fn position(shape: &[usize], mut k: usize) -> Vec<usize> {
    let mut pos = vec![0; shape.len()];
    for (p, &d) in pos.iter_mut().zip(shape).rev() {
        if d > 0 {
            *p = k % d;
            k /= d;
        }
    }
    pos
}

/// The ids as row indices, or an error naming the first bad value and where it sits.
fn row_indices(ids: &Tensor, num_embeddings: usize) -> Result<Vec<usize>> {
    parse_ids(host(ids, "embedding")?, ids.shape(), num_embeddings)
}

/// [`row_indices`] of the values `data` of an ids tensor shaped `shape`.
fn parse_ids(data: &[f32], shape: &[usize], num_embeddings: usize) -> Result<Vec<usize>> {
    data.iter()
        .enumerate()
        .map(|(k, &v)| {
            // An exact integer survives the round trip through usize; NaN (which converts to
            // 0), infinities and values past usize saturate to something else. One
            // conversion each way, where `fract` was a library call per id (the largest cost
            // of a text model's forward pass once the lookup and mean were fused).
            let row = v as usize;
            if v >= 0.0 && row as f32 == v && row < num_embeddings {
                Ok(row)
            } else {
                Err(Error::invalid(format!(
                    "embedding: id {v} at position {:?} of ids {:?} is not an integer in \
                     [0, {num_embeddings})",
                    position(shape, k),
                    shape
                )))
            }
        })
        .collect()
}

/// Output shape `ids.shape() + [dim]`, and the table's `(num_embeddings, dim)`.
fn geometry(ids: &Tensor, weight: &Tensor) -> Result<(Vec<usize>, usize, usize)> {
    expect_rank(weight, 2, "embedding", "weight")?;
    same_device(ids, weight, "embedding")?;
    let mut shape = ids.shape().to_vec();
    shape.push(weight.dim(1));
    checked_numel(&shape)?;
    Ok((shape, weight.dim(0), weight.dim(1)))
}

/// Looks up the rows of `weight` (`[num_embeddings, dim]`) named by `ids` (any shape, exact
/// non-negative integer values below `num_embeddings`); the output is `ids.shape() + [dim]`.
pub fn embedding(ids: &Tensor, weight: &Tensor) -> Result<Tensor> {
    forward(ids, weight).map(|(out, _)| out)
}

/// The lookup, and on CUDA the validated ids as the kernels take them (the backward reuses
/// them instead of copying the ids to the host a second time).
fn forward(ids: &Tensor, weight: &Tensor) -> Result<(Tensor, Option<Vec<u32>>)> {
    let (shape, num, dim) = geometry(ids, weight)?;
    if let Storage::Cuda(ws) = weight.storage() {
        // Ids decide which rows are read, so they are checked on the host either way.
        let rows = parse_ids(&ids.to_vec()?, ids.shape(), num)?;
        if num > u32::MAX as usize {
            return Err(Error::invalid(format!(
                "embedding: {num} embeddings are too many to index on the GPU"
            )));
        }
        let rows: Vec<u32> = rows.into_iter().map(|r| r as u32).collect();
        let out = cuda::embedding_forward(ws, &rows, dim)?;
        return Ok((Tensor::from_cuda(out, shape), Some(rows)));
    }
    let rows = row_indices(ids, num)?;
    let wd = host(weight, "embedding")?;
    let mut out = try_alloc(rows.len().saturating_mul(dim), "embedding")?;
    for &r in &rows {
        out.extend_from_slice(&wd[r * dim..][..dim]);
    }
    Ok((Tensor::cpu(out, shape), None))
}

struct EmbeddingBackward {
    /// The ids as row indices when the op ran on CUDA.
    device_ids: Option<Vec<u32>>,
}
impl BackwardOp for EmbeddingBackward {
    fn name(&self) -> &'static str {
        "embedding"
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        // Ids are indices, not a differentiable quantity: they never get a gradient.
        if !c.needs[1] {
            return Ok(vec![None, None]);
        }
        let (ids, weight) = (c.inputs[0], c.inputs[1]);
        let (num, dim) = (weight.dim(0), weight.dim(1));
        if let (Some(rows), Storage::Cuda(gs)) = (&self.device_ids, c.grad.storage()) {
            let gw = cuda::embedding_backward(rows, gs, num, dim)?;
            return Ok(vec![None, Some(Tensor::from_cuda(gw, vec![num, dim]))]);
        }
        // The forward pass validated these ids, and tensors are immutable, so this re-parse
        // cannot fail; it avoids keeping a second copy of the ids on the tape.
        let rows = row_indices(ids, num)?;
        let gd = host(c.grad, "embedding")?;
        let mut gw = crate::backend::cpu::pool::zeroed(num * dim)?;
        if dim > 0 {
            // Repeated ids accumulate: each occurrence adds its output gradient to the row.
            for (&r, g) in rows.iter().zip(gd.chunks_exact(dim)) {
                simd::add_assign(&mut gw[r * dim..][..dim], g);
            }
        }
        Ok(vec![None, Some(Tensor::cpu(gw, vec![num, dim]))])
    }
}

impl Tape {
    /// `ids`: any shape, f32 values that must be exact non-negative integers
    /// `< num_embeddings` (error otherwise, naming the bad value and position); `weight`:
    /// `[num_embeddings, dim]`. Output: `ids.shape() + [dim]`.
    ///
    /// Backward: scatter-add into the weight gradient (repeated ids accumulate); no gradient
    /// to `ids`.
    pub fn embedding(&mut self, ids: Var, weight: Var) -> Result<Var> {
        let (out, device_ids) = forward(self.value(ids), self.value(weight))?;
        Ok(self.push(out, &[ids, weight], || {
            Box::new(EmbeddingBackward { device_ids })
        }))
    }
}

/// Below this many floats summed (samples × bag length × dim) the bag forward runs on the
/// calling thread: handing out the work would cost more than it saves.
const BAG_PARALLEL_MIN: usize = 1 << 16;

/// The mean over the last id axis of [`embedding`]'s output, computed without it (what
/// PyTorch calls an embedding bag in mean mode): `ids` `[..., L]` gives `[..., dim]`, each
/// output row the mean of the `L` table rows its ids name. A text model's embedding →
/// mean over tokens would otherwise write `L` times its output (at a batch of 512 mails of
/// 256 tokens and 32 dims, 16 MiB of fresh memory per pass, most of the pass's time in
/// page faults and copies) only to average it away. Sums run in token order and are then
/// scaled by `1 / L`, as [`super::reduce::mean_axis`] does, so the result has the same bits
/// as the two ops composed. Also returns the validated rows, for the backward pass.
fn bag_forward(ids: &Tensor, weight: &Tensor) -> Result<(Tensor, Vec<usize>)> {
    let (mut shape, num, dim) = geometry(ids, weight)?;
    let len = ids.shape()[ids.rank() - 1];
    shape.remove(shape.len() - 2);
    let rows = row_indices(ids, num)?;
    let wd = host(weight, "embedding")?;
    let bags = rows.len() / len;
    let mut out = crate::backend::cpu::pool::zeroed(bags * dim)?;
    let inv = 1.0 / len as f32;
    let work = rows.len().saturating_mul(dim);
    let min = if work >= BAG_PARALLEL_MIN {
        0
    } else {
        usize::MAX
    };
    crate::backend::cpu::par_chunks_mut(&mut out, dim.max(1), min, |b, acc| {
        for &r in &rows[b * len..][..len] {
            simd::add_assign(acc, &wd[r * dim..][..dim]);
        }
        for v in acc.iter_mut() {
            *v *= inv;
        }
    });
    Ok((Tensor::cpu(out, shape), rows))
}

struct EmbeddingBagBackward {
    /// The validated ids as row indices, `L` per output row.
    rows: Vec<usize>,
    len: usize,
}
impl BackwardOp for EmbeddingBagBackward {
    fn name(&self) -> &'static str {
        "embedding_mean"
    }
    fn backward(&self, c: &BackwardCtx<'_>) -> Result<Vec<Option<Tensor>>> {
        if !c.needs[1] {
            return Ok(vec![None, None]);
        }
        let weight = c.inputs[1];
        let (num, dim) = (weight.dim(0), weight.dim(1));
        let gd = host(c.grad, "embedding_mean")?;
        let mut gw = crate::backend::cpu::pool::zeroed(num * dim)?;
        if dim > 0 {
            // Each id of a bag gets the bag's gradient over L, added in the order the
            // composed ops add it (mean's backward scales, the lookup's scatters).
            let inv = 1.0 / self.len as f32;
            let mut share = vec![0.0f32; dim];
            for (bag, g) in self.rows.chunks_exact(self.len).zip(gd.chunks_exact(dim)) {
                simd::scale(g, inv, &mut share);
                for &r in bag {
                    simd::add_assign(&mut gw[r * dim..][..dim], &share);
                }
            }
        }
        Ok(vec![None, Some(Tensor::cpu(gw, vec![num, dim]))])
    }
}

impl Tape {
    /// [`Tape::embedding`] followed by [`Tape::mean_axis`] over `axis`, in one op where
    /// `axis` is the last axis of `ids` (the tokens of a bag of words) and the tensors are on
    /// the CPU; otherwise the two ops composed. Same values and gradients either way.
    pub fn embedding_mean(&mut self, ids: Var, weight: Var, axis: usize) -> Result<Var> {
        let rank = self.value(ids).rank();
        let fusable = rank >= 2
            && axis == rank - 1
            && self.value(ids).dim(axis) > 0
            && matches!(self.value(weight).storage(), Storage::Cpu(_));
        if !fusable {
            let looked_up = self.embedding(ids, weight)?;
            return self.mean_axis(looked_up, axis);
        }
        let len = self.value(ids).dim(axis);
        let (out, rows) = bag_forward(self.value(ids), self.value(weight))?;
        Ok(self.push(out, &[ids, weight], || {
            Box::new(EmbeddingBagBackward { rows, len })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::{check_gradients_at, GradCheck};
    use crate::rng::Rng;

    fn t(v: &[f32], s: &[usize]) -> Tensor {
        Tensor::from_slice(v, s).unwrap()
    }

    fn table() -> Tensor {
        // row r = [10 r, 10 r + 1]
        t(&[0.0, 1.0, 10.0, 11.0, 20.0, 21.0], &[3, 2])
    }

    #[test]
    fn forward_hand_values() {
        let ids = t(&[2.0, 0.0, 1.0, 2.0], &[2, 2]);
        let y = embedding(&ids, &table()).unwrap();
        assert_eq!(y.shape(), &[2, 2, 2]);
        assert_eq!(
            y.to_vec().unwrap(),
            vec![20.0, 21.0, 0.0, 1.0, 10.0, 11.0, 20.0, 21.0]
        );
        // A scalar id gives one row; an empty id tensor gives an empty output.
        let y = embedding(&Tensor::scalar(1.0), &table()).unwrap();
        assert_eq!(y.shape(), &[2]);
        assert_eq!(y.to_vec().unwrap(), vec![10.0, 11.0]);
        let y = embedding(&Tensor::zeros(&[0, 4]), &table()).unwrap();
        assert_eq!(y.shape(), &[0, 4, 2]);
    }

    #[test]
    fn bad_ids_are_named() {
        let w = table();
        let cases = [(1.5f32, "1.5"), (-1.0, "-1"), (3.0, "3"), (f32::NAN, "NaN")];
        for (bad, text) in cases {
            let ids = t(&[0.0, 1.0, 2.0, bad, 0.0, 1.0], &[2, 3]);
            let e = embedding(&ids, &w).unwrap_err().to_string();
            assert!(
                e.contains(&format!("id {text} ")) && e.contains("[1, 0]") && e.contains("[0, 3)"),
                "{e}"
            );
        }
        assert!(embedding(&t(&[f32::INFINITY], &[1]), &w).is_err());
        // Past the range of usize; and -0 is the integer 0.
        assert!(embedding(&t(&[1e30], &[1]), &w).is_err());
        assert_eq!(
            embedding(&t(&[-0.0], &[1]), &w).unwrap().to_vec().unwrap(),
            vec![0.0, 1.0]
        );
        assert!(embedding(&t(&[0.0], &[1]), &Tensor::zeros(&[3])).is_err());
        // The tape refuses the same way.
        let mut tape = Tape::new();
        let ids = tape.constant(t(&[7.0], &[1]));
        let wv = tape.var(w, 0);
        assert!(tape.embedding(ids, wv).is_err());
    }

    #[test]
    fn repeated_ids_accumulate_in_the_weight_gradient() {
        // d sum(y * g) / d W[r] = sum of g over the positions holding id r.
        let mut tape = Tape::new();
        let ids = tape.var(t(&[1.0, 1.0, 0.0, 1.0], &[4]), 0);
        let w = tape.var(table(), 1);
        let y = tape.embedding(ids, w).unwrap();
        let seed = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], &[4, 2]);
        let grads = tape.backward_with_seed(y, seed).unwrap();
        // row 0 <- position 2: [5, 6]; row 1 <- positions 0, 1, 3: [1+3+7, 2+4+8];
        // row 2 unused.
        assert_eq!(
            grads.get(1).unwrap().to_vec().unwrap(),
            vec![5.0, 6.0, 11.0, 14.0, 0.0, 0.0]
        );
        assert!(grads.get(0).is_none(), "ids must not receive a gradient");
    }

    #[test]
    fn weight_gradient_matches_finite_differences() {
        let mut rng = Rng::new(21);
        let cases: &[(&[f32], &[usize], usize, usize)] = &[
            (&[0.0, 2.0, 2.0, 4.0, 2.0], &[5], 5, 3),
            (&[1.0, 0.0, 1.0, 1.0, 6.0, 3.0], &[2, 3], 7, 9),
            (&[0.0], &[1, 1], 1, 1),
            (&[3.0, 3.0, 3.0, 3.0], &[2, 1, 2], 4, 17),
        ];
        for &(ids, shape, num, dim) in cases {
            let ids = t(ids, shape);
            let w = Tensor::randn(&[num, dim], 1.0, &mut rng);
            check_gradients_at(&[w], GradCheck::default(), |tape, v| {
                let ids = tape.constant(ids.clone());
                tape.embedding(ids, v[0])
            });
        }
    }

    /// Output and weight gradient of `embedding_mean` (fused or not) against `seed`.
    fn bag_value_and_grad(ids: &Tensor, w: &Tensor, axis: usize, fused: bool) -> (Tensor, Tensor) {
        let mut tape = Tape::new();
        let iv = tape.constant(ids.clone());
        let wv = tape.var(w.clone(), 0);
        let y = if fused {
            tape.embedding_mean(iv, wv, axis).unwrap()
        } else {
            let e = tape.embedding(iv, wv).unwrap();
            tape.mean_axis(e, axis).unwrap()
        };
        let out = tape.value(y).clone();
        let seed = Tensor::randn(out.shape(), 1.0, &mut Rng::new(5));
        let grads = tape.backward_with_seed(y, seed).unwrap();
        (out, grads.get(0).unwrap().clone())
    }

    #[test]
    fn bag_forward_hand_values() {
        let ids = t(&[2.0, 0.0, 1.0, 2.0, 2.0, 2.0], &[2, 3]);
        let (y, rows) = bag_forward(&ids, &table()).unwrap();
        assert_eq!(y.shape(), &[2, 2]);
        assert_eq!(y.to_vec().unwrap(), vec![10.0, 11.0, 20.0, 21.0]);
        assert_eq!(rows, [2, 0, 1, 2, 2, 2]);
        let (y, _) = bag_forward(&Tensor::zeros(&[0, 4]), &table()).unwrap();
        assert_eq!(y.shape(), &[0, 2]);
    }

    #[test]
    fn bag_has_the_bits_of_lookup_then_mean() {
        let mut rng = Rng::new(8);
        // The last case is past BAG_PARALLEL_MIN, so its bags are split over threads.
        for (dims, num, dim) in [
            (vec![3usize, 5], 4usize, 3usize),
            (vec![2, 3, 7], 9, 16),
            (vec![1, 1], 1, 1),
            (vec![64, 256], 1000, 33),
        ] {
            let n: usize = dims.iter().product();
            let ids: Vec<f32> = (0..n).map(|_| rng.below(num) as f32).collect();
            let ids = Tensor::from_vec(ids, &dims).unwrap();
            let w = Tensor::randn(&[num, dim], 1.0, &mut rng);
            let axis = dims.len() - 1;
            let (ya, ga) = bag_value_and_grad(&ids, &w, axis, true);
            let (yb, gb) = bag_value_and_grad(&ids, &w, axis, false);
            assert_eq!(ya.shape(), yb.shape());
            assert_eq!(ya.to_vec().unwrap(), yb.to_vec().unwrap(), "{dims:?}");
            assert_eq!(ga.to_vec().unwrap(), gb.to_vec().unwrap(), "{dims:?}");
        }
    }

    #[test]
    fn bag_gradient_matches_finite_differences_and_bad_ids_are_named() {
        let mut rng = Rng::new(22);
        let ids = t(&[0.0, 2.0, 2.0, 4.0, 2.0, 1.0], &[2, 3]);
        let w = Tensor::randn(&[5, 4], 1.0, &mut rng);
        check_gradients_at(&[w], GradCheck::default(), |tape, v| {
            let ids = tape.constant(ids.clone());
            tape.embedding_mean(ids, v[0], 1)
        });
        let mut tape = Tape::new();
        let ids = tape.constant(t(&[0.0, 1.0, 2.0, 1.5], &[2, 2]));
        let wv = tape.var(table(), 0);
        let e = tape.embedding_mean(ids, wv, 1).unwrap_err().to_string();
        assert!(e.contains("id 1.5 ") && e.contains("[1, 1]"), "{e}");
        // An empty bag has no mean, fused or not.
        let ids = tape.constant(Tensor::zeros(&[2, 0]));
        assert!(tape.embedding_mean(ids, wv, 1).is_err());
    }
}
