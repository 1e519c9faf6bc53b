//! The UCI "Optical Recognition of Handwritten Digits" test split (1797 8x8 images, classes
//! 0-9; E. Alpaydin and C. Kaynak, UCI Machine Learning Repository, CC BY 4.0). The gzip'd CSV
//! in `data/digits/` (see its README for the attribution) is compiled into the library.

use crate::error::{Error, Result};
use std::io::Read;

const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits/digits.csv.gz");

/// Pixels per image (8x8).
pub const FEATURES: usize = 64;
/// Number of classes.
pub const CLASSES: usize = 10;

/// A labelled classification data set held in memory.
#[derive(Clone, Debug)]
pub struct Digits {
    /// `[n, 64]` pixel values scaled to [0, 1] (raw values are 0..16).
    pub x: Vec<f32>,
    pub y: Vec<u32>,
}

impl Digits {
    pub fn len(&self) -> usize {
        self.y.len()
    }
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

/// Parses the digits CSV format (64 pixel values then the label per line).
pub fn parse_csv(text: &str) -> Result<Digits> {
    let mut x = Vec::new();
    let mut y = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != FEATURES + 1 {
            return Err(Error::Io(format!(
                "digits csv line {}: {} fields, expected {}",
                lineno + 1,
                fields.len(),
                FEATURES + 1
            )));
        }
        for f in &fields[..FEATURES] {
            let v: f32 = f.trim().parse().map_err(|_| {
                Error::Io(format!("digits csv line {}: bad pixel `{f}`", lineno + 1))
            })?;
            x.push(v / 16.0);
        }
        let l: u32 = fields[FEATURES]
            .trim()
            .parse()
            .map_err(|_| Error::Io(format!("digits csv line {}: bad label", lineno + 1)))?;
        if l as usize >= CLASSES {
            return Err(Error::Io(format!(
                "digits csv line {}: label {l} out of range",
                lineno + 1
            )));
        }
        y.push(l);
    }
    Ok(Digits { x, y })
}

/// The embedded data set, decompressed and parsed.
pub fn load() -> Result<Digits> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ).read_to_string(&mut text)?;
    parse_csv(&text)
}

/// The embedded set as a [`Dataset`](super::Dataset) of `[n, 64]` inputs.
pub fn dataset() -> Result<super::Dataset> {
    let d = load()?;
    let n = d.len();
    super::Dataset::classification(crate::tensor::Tensor::from_vec(d.x, &[n, FEATURES])?, d.y)
}

/// A seeded split of the embedded set into (train 70 %, validation 10 %, test 20 %): the
/// layout of the demo and of the end-to-end tests.
pub fn train_val_test(seed: u64) -> Result<(super::Dataset, super::Dataset, super::Dataset)> {
    let all = dataset()?;
    let n = all.len();
    let perm = crate::rng::Rng::new(seed).permutation(n);
    let (tr, rest) = perm.split_at(n * 7 / 10);
    let (va, te) = rest.split_at(n / 10);
    Ok((all.subset(tr)?, all.subset(va)?, all.subset(te)?))
}

/// The MLP of the demo and tests: 64-128-128-10 with ReLU, cross-entropy.
pub const MLP_SPEC: &str = r#"{"format": "gradtau.model/1", "input": {"shape": [64]},
 "nodes": [
  {"name": "0", "op": "linear", "in_features": 64, "out_features": 128},
  {"name": "1", "op": "relu"},
  {"name": "2", "op": "linear", "in_features": 128, "out_features": 128},
  {"name": "3", "op": "relu"},
  {"name": "4", "op": "linear", "in_features": 128, "out_features": 10}],
 "loss": "cross_entropy"}"#;

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_set_is_complete() {
        let d = super::load().unwrap();
        assert_eq!(d.len(), 1797);
        assert_eq!(d.x.len(), 1797 * 64);
        let mut counts = [0usize; 10];
        for &l in &d.y {
            counts[l as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 170), "{counts:?}");
        assert!(d.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
        assert!(super::parse_csv("1,2\n").is_err());
    }
}
