//! Data sets held in memory, batching, and the embedded UCI digits set.

pub mod digits;

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// What a sample is compared against.
#[derive(Clone, Debug)]
pub enum Targets {
    /// Integer class labels (cross-entropy).
    Classes(Vec<u32>),
    /// Float targets `[N, ...]` (MSE, BCE-with-logits).
    Values(Tensor),
}

impl Targets {
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes(y) => y.len(),
            Targets::Values(t) => t.shape().first().copied().unwrap_or(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The class labels, if these are class targets.
    pub fn classes(&self) -> Option<&[u32]> {
        match self {
            Targets::Classes(y) => Some(y),
            Targets::Values(_) => None,
        }
    }
}

/// Inputs `[N, ...]` and their targets.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub x: Tensor,
    pub y: Targets,
}

fn gather_rows(x: &[f32], per: usize, idx: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(idx.len() * per);
    for &i in idx {
        out.extend_from_slice(&x[i * per..(i + 1) * per]);
    }
    out
}

impl Dataset {
    /// A classification set; `x` is `[N, ...]` and `y` has N labels.
    pub fn classification(x: Tensor, y: Vec<u32>) -> Result<Self> {
        Self::new(x, Targets::Classes(y))
    }

    /// Pairs inputs with targets, checking that the counts agree.
    pub fn new(x: Tensor, y: Targets) -> Result<Self> {
        if x.rank() < 1 {
            return Err(Error::shape("dataset", "inputs need a sample dimension"));
        }
        if x.dim(0) != y.len() {
            return Err(Error::shape(
                "dataset",
                format!("{} inputs but {} targets", x.dim(0), y.len()),
            ));
        }
        Ok(Dataset { x, y })
    }

    pub fn len(&self) -> usize {
        self.x.dim(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shape of one sample.
    pub fn sample_shape(&self) -> &[usize] {
        &self.x.shape()[1..]
    }

    fn per_sample(&self) -> usize {
        self.sample_shape().iter().product()
    }

    /// Copies the samples at `idx` into a batch.
    pub fn gather(&self, idx: &[usize]) -> Result<(Tensor, Targets)> {
        if let Some(&bad) = idx.iter().find(|&&i| i >= self.len()) {
            return Err(Error::invalid(format!(
                "sample index {bad} out of range for {} samples",
                self.len()
            )));
        }
        let per = self.per_sample();
        let mut shape = self.x.shape().to_vec();
        shape[0] = idx.len();
        let x = Tensor::from_vec(gather_rows(self.x.cpu_data("gather")?, per, idx), &shape)?;
        let y = match &self.y {
            Targets::Classes(y) => Targets::Classes(idx.iter().map(|&i| y[i]).collect()),
            Targets::Values(t) => {
                let tper = if t.dim(0) == 0 {
                    0
                } else {
                    t.numel() / t.dim(0)
                };
                let mut ts = t.shape().to_vec();
                ts[0] = idx.len();
                Targets::Values(Tensor::from_vec(
                    gather_rows(t.cpu_data("gather")?, tper, idx),
                    &ts,
                )?)
            }
        };
        Ok((x, y))
    }

    /// A new data set holding the samples at `idx`.
    pub fn subset(&self, idx: &[usize]) -> Result<Dataset> {
        let (x, y) = self.gather(idx)?;
        Ok(Dataset { x, y })
    }

    /// Fails if any input or float target is NaN or infinite, naming the first sample.
    pub fn check_finite(&self) -> Result<()> {
        let per = self.per_sample().max(1);
        if let Some(i) = self
            .x
            .cpu_data("check_finite")?
            .iter()
            .position(|v| !v.is_finite())
        {
            return Err(Error::NonFinite(format!(
                "input of sample {} holds NaN or infinity",
                i / per
            )));
        }
        if let Targets::Values(t) = &self.y {
            let tper = (t.numel() / t.dim(0).max(1)).max(1);
            if let Some(i) = t
                .cpu_data("check_finite")?
                .iter()
                .position(|v| !v.is_finite())
            {
                return Err(Error::NonFinite(format!(
                    "target of sample {} holds NaN or infinity",
                    i / tper
                )));
            }
        }
        Ok(())
    }
}

/// Splits `0..n` into a shuffled (first, second) pair with `round(n * fraction)` in the first.
pub fn split_indices(n: usize, fraction: f64, rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let mut p = rng.permutation(n);
    let k = ((n as f64) * fraction).round() as usize;
    let second = p.split_off(k.min(n));
    (p, second)
}

/// Endless shuffled batches over `n` samples: reshuffles at the end of each pass.
pub struct BatchCycler {
    order: Vec<usize>,
    pos: usize,
    batch: usize,
    rng: Rng,
}

impl BatchCycler {
    pub fn new(n: usize, batch: usize, rng: Rng) -> Self {
        let mut c = BatchCycler {
            order: (0..n).collect(),
            pos: n,
            batch: batch.max(1),
            rng,
        };
        c.reshuffle();
        c
    }

    fn reshuffle(&mut self) {
        self.rng.shuffle(&mut self.order);
        self.pos = 0;
    }

    /// The next batch (the last one of a pass may be smaller, as with PyTorch's DataLoader).
    pub fn next_batch(&mut self) -> &[usize] {
        if self.pos >= self.order.len() {
            self.reshuffle();
        }
        let start = self.pos;
        let end = (start + self.batch).min(self.order.len());
        self.pos = end;
        &self.order[start..end]
    }

    /// Batches per pass.
    pub fn batches_per_pass(&self) -> usize {
        self.order.len().div_ceil(self.batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_subset_and_cycling() {
        let x = Tensor::from_vec((0..12).map(|v| v as f32).collect(), &[6, 2]).unwrap();
        let d = Dataset::classification(x, vec![0, 1, 2, 0, 1, 2]).unwrap();
        let (xb, yb) = d.gather(&[5, 0]).unwrap();
        assert_eq!(xb.to_vec().unwrap(), vec![10.0, 11.0, 0.0, 1.0]);
        assert_eq!(yb.classes().unwrap(), &[2, 0]);
        assert!(d.gather(&[6]).is_err());
        assert!(Dataset::classification(Tensor::zeros(&[2, 2]), vec![0]).is_err());
        let mut c = BatchCycler::new(5, 2, Rng::new(1));
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.extend_from_slice(c.next_batch());
        }
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
        assert_eq!(c.batches_per_pass(), 3);
        let (a, b) = split_indices(10, 0.8, &mut Rng::new(2));
        assert_eq!((a.len(), b.len()), (8, 2));
        let mut bad = Tensor::zeros(&[2, 2]);
        bad.data_mut().unwrap()[3] = f32::NAN;
        let e = Dataset::classification(bad, vec![0, 0])
            .unwrap()
            .check_finite()
            .unwrap_err();
        assert!(e.to_string().contains("sample 1"), "{e}");
    }
}
