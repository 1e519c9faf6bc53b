//! Data sets held in memory, batching, and the embedded UCI digits set.

pub mod digits;

use crate::backend::cpu::pool;
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

/// The rows `idx` (of `per` values each) of `x`, one after another, in a buffer from the
/// run's pool: a batch is dropped by the tape into that pool at the end of its step, so a
/// buffer from anywhere else would pile up there, one per step, unused (150 MB over a ∇τ
/// run of the benchmark MLP with both batches in one), and every new one would be fresh
/// pages.
fn gather_rows(x: &[f32], per: usize, idx: &[usize]) -> Result<Vec<f32>> {
    let mut out = pool::take(idx.len().saturating_mul(per))?;
    gather_rows_into(&mut out, x, per, idx);
    Ok(out)
}

/// Below this many values (256 KiB) a gather runs on the calling thread.
const GATHER_PARALLEL_MIN: usize = 1 << 16;

/// Copies row `idx[r]` of `x` (rows of `per` values) into row `r` of `out`. A training
/// batch's rows come from anywhere in a set larger than the caches, so the copy waits on
/// memory; it is split over the kernel threads, whose loads then overlap (in the MLP's ∇τ
/// step the single-threaded gather of 512 rows was 6 % of the calling thread's samples).
fn gather_rows_into(out: &mut [f32], x: &[f32], per: usize, idx: &[usize]) {
    if per == 0 {
        return;
    }
    crate::backend::cpu::par_chunks_mut(out, per, GATHER_PARALLEL_MIN, |r, row| {
        row.copy_from_slice(&x[idx[r] * per..][..per]);
    });
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

    fn check_indices(&self, idx: &[usize]) -> Result<()> {
        if let Some(&bad) = idx.iter().find(|&&i| i >= self.len()) {
            return Err(Error::invalid(format!(
                "sample index {bad} out of range for {} samples",
                self.len()
            )));
        }
        Ok(())
    }

    /// Copies the samples at `idx` into a batch.
    pub fn gather(&self, idx: &[usize]) -> Result<(Tensor, Targets)> {
        self.check_indices(idx)?;
        let per = self.per_sample();
        let mut shape = self.x.shape().to_vec();
        shape[0] = idx.len();
        let x = Tensor::from_vec(gather_rows(self.x.cpu_data("gather")?, per, idx)?, &shape)?;
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
                    gather_rows(t.cpu_data("gather")?, tper, idx)?,
                    &ts,
                )?)
            }
        };
        Ok((x, y))
    }

    /// One batch holding the samples `a.1` of `a.0` followed by the samples `b.1` of `b.0`
    /// (what [`gather`](Self::gather) on each, concatenated, gives, copied once). The two sets must have the same sample shape and the same kind and shape of
    /// targets.
    pub fn gather_pair(
        a: (&Dataset, &[usize]),
        b: (&Dataset, &[usize]),
    ) -> Result<(Tensor, Targets)> {
        let ((da, ia), (db, ib)) = (a, b);
        da.check_indices(ia)?;
        db.check_indices(ib)?;
        let mismatch = |what: &str| {
            Error::shape(
                "gather_pair",
                format!("the two sets differ in their {what}; they cannot form one batch"),
            )
        };
        if da.sample_shape() != db.sample_shape() {
            return Err(mismatch("sample shapes"));
        }
        let n = ia.len() + ib.len();
        let per = da.per_sample();
        let mut x = pool::take(n.saturating_mul(per))?;
        let (xa, xb) = x.split_at_mut(ia.len() * per);
        gather_rows_into(xa, da.x.cpu_data("gather")?, per, ia);
        gather_rows_into(xb, db.x.cpu_data("gather")?, per, ib);
        let mut shape = da.x.shape().to_vec();
        shape[0] = n;
        let x = Tensor::from_vec(x, &shape)?;
        let y = match (&da.y, &db.y) {
            (Targets::Classes(ya), Targets::Classes(yb)) => Targets::Classes(
                ia.iter()
                    .map(|&i| ya[i])
                    .chain(ib.iter().map(|&i| yb[i]))
                    .collect(),
            ),
            (Targets::Values(ta), Targets::Values(tb)) if ta.shape()[1..] == tb.shape()[1..] => {
                let tper: usize = ta.shape()[1..].iter().product();
                let mut t = pool::take(n.saturating_mul(tper))?;
                let (ta_out, tb_out) = t.split_at_mut(ia.len() * tper);
                gather_rows_into(ta_out, ta.cpu_data("gather")?, tper, ia);
                gather_rows_into(tb_out, tb.cpu_data("gather")?, tper, ib);
                let mut ts = ta.shape().to_vec();
                ts[0] = n;
                Targets::Values(Tensor::from_vec(t, &ts)?)
            }
            _ => return Err(mismatch("targets")),
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

    #[test]
    fn gather_pair_is_both_gathers_concatenated() {
        let x = |n: usize, base: f32| {
            Tensor::from_vec((0..n * 2).map(|v| base + v as f32).collect(), &[n, 2]).unwrap()
        };
        let a = Dataset::classification(x(3, 0.0), vec![0, 1, 2]).unwrap();
        let b = Dataset::classification(x(4, 100.0), vec![3, 4, 5, 6]).unwrap();
        let (xp, yp) = Dataset::gather_pair((&a, &[2, 0]), (&b, &[1, 3, 1])).unwrap();
        let (xa, ya) = a.gather(&[2, 0]).unwrap();
        let (xb, yb) = b.gather(&[1, 3, 1]).unwrap();
        assert_eq!(xp.shape(), &[5, 2]);
        let mut want = xa.to_vec().unwrap();
        want.extend(xb.to_vec().unwrap());
        assert_eq!(xp.to_vec().unwrap(), want);
        let mut labels = ya.classes().unwrap().to_vec();
        labels.extend_from_slice(yb.classes().unwrap());
        assert_eq!(yp.classes().unwrap(), labels);
        // Float targets of several values per sample (multi-label, multi-output).
        let t = |n: usize, base: f32| {
            Targets::Values(
                Tensor::from_vec((0..n * 3).map(|v| base + v as f32).collect(), &[n, 3]).unwrap(),
            )
        };
        let c = Dataset::new(x(2, 0.0), t(2, 0.0)).unwrap();
        let d = Dataset::new(x(3, 50.0), t(3, 50.0)).unwrap();
        let (_, yp) = Dataset::gather_pair((&c, &[1]), (&d, &[2, 0])).unwrap();
        let Targets::Values(yp) = yp else {
            panic!("float targets expected")
        };
        assert_eq!(yp.shape(), &[3, 3]);
        assert_eq!(
            yp.to_vec().unwrap(),
            [3.0, 4.0, 5.0, 56.0, 57.0, 58.0, 50.0, 51.0, 52.0]
        );
        // Sets that cannot form one batch, and indices out of range.
        assert!(Dataset::gather_pair((&a, &[0]), (&c, &[0])).is_err());
        let wide = Dataset::classification(Tensor::zeros(&[2, 3]), vec![0, 0]).unwrap();
        assert!(Dataset::gather_pair((&a, &[0]), (&wide, &[0])).is_err());
        assert!(Dataset::gather_pair((&a, &[3]), (&b, &[0])).is_err());
        assert!(Dataset::gather_pair((&a, &[0]), (&b, &[4])).is_err());
    }
}
