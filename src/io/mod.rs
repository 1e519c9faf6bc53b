//! File readers and writers: `.npy` arrays, IDX files (MNIST, Fashion-MNIST), safetensors.
//!
//! Every reader checks each size it reads against the bytes actually present (or, for
//! gzip'd IDX data, against a cap) before allocating, so a truncated or hostile file gives an
//! [`Error::Io`] naming the file and the problem, never a panic or a huge allocation.
//! Safetensors files are memory-mapped; `.npy` and IDX files are read whole. The
//! `decode_*`/`encode_*` functions work on byte slices (handy for tests and for data that
//! does not come from a file); `read_*`/`write_*`/`load_*`/`save_*` wrap them with file I/O.

pub mod idx;
pub mod npy;
pub mod safetensors;

pub use idx::{read_idx_images, read_idx_labels};
pub use npy::{read_npy_f32, read_npy_labels, write_npy_f32, write_npy_i32};
pub use safetensors::{
    advance_batch_counts, load_checkpoint, load_safetensors, save_checkpoint, save_safetensors,
    Checkpoint, RawTensor, TensorMap,
};

use crate::error::{Error, Result};
use std::path::Path;

/// An I/O error that names its source (a file name, or a label for in-memory bytes).
pub(crate) fn io_err(name: &str, detail: impl std::fmt::Display) -> Error {
    Error::Io(format!("{name}: {detail}"))
}

pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io_err(&path.display().to_string(), e))
}

pub(crate) fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| io_err(&path.display().to_string(), e))
}

/// A fresh path in the system temp directory, for tests that round-trip through files.
#[cfg(test)]
pub(crate) fn temp_path(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "gradtau-test-{}-{}-{tag}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The array formats [`read_array_f32`] and [`read_array_labels`] accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArrayFormat {
    Npy,
    Idx,
}

/// The format of the file at `path`, from its first bytes: the `.npy` magic, or an IDX magic
/// (two zero bytes) plain or gzip'd. An empty or unrecognised file is an error naming it.
fn detect_format(path: &Path) -> Result<ArrayFormat> {
    use std::io::Read;
    let name = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| io_err(&name, e))?;
    let mut head = Vec::with_capacity(6);
    f.take(6)
        .read_to_end(&mut head)
        .map_err(|e| io_err(&name, e))?;
    if head.is_empty() {
        return Err(io_err(
            &name,
            "the file is empty (expected a .npy array or an IDX file)",
        ));
    }
    if head == b"\x93NUMPY" {
        Ok(ArrayFormat::Npy)
    } else if head.starts_with(&idx::GZIP_MAGIC) || head.starts_with(&[0, 0]) {
        Ok(ArrayFormat::Idx)
    } else {
        let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
        Err(io_err(
            &name,
            format!(
                "not a recognised .npy or IDX file (it starts with bytes {}; .npy starts with 93 4e 55 4d 50 59, IDX with 00 00 or gzip's 1f 8b)",
                hex.join(" ")
            ),
        ))
    }
}

/// Reads a float array from a `.npy` file or an IDX image file (plain or gzip), chosen by
/// the file's contents.
pub fn read_array_f32(path: impl AsRef<Path>) -> Result<(Vec<f32>, Vec<usize>)> {
    let path = path.as_ref();
    match detect_format(path)? {
        ArrayFormat::Npy => read_npy_f32(path),
        ArrayFormat::Idx => read_idx_images(path),
    }
}

/// Reads class labels from a `.npy` file or an IDX label file, chosen by the contents.
pub fn read_array_labels(path: impl AsRef<Path>) -> Result<Vec<u32>> {
    let path = path.as_ref();
    match detect_format(path)? {
        ArrayFormat::Npy => read_npy_labels(path),
        ArrayFormat::Idx => read_idx_labels(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_detection_names_empty_and_unknown_files() {
        let cases: [(&[u8], &str); 4] = [
            (
                b"",
                "the file is empty (expected a .npy array or an IDX file)",
            ),
            (
                b"PK\x03\x04zip",
                "not a recognised .npy or IDX file (it starts with bytes 50 4b 03 04 7a 69",
            ),
            (b"\x93NUM", "not a recognised"),
            (b"{", "starts with bytes 7b;"),
        ];
        for (bytes, want) in cases {
            let p = temp_path("detect.npy");
            std::fs::write(&p, bytes).unwrap();
            for msg in [
                read_array_f32(&p).unwrap_err().to_string(),
                read_array_labels(&p).unwrap_err().to_string(),
            ] {
                assert!(msg.contains("detect.npy") && msg.contains(want), "{msg}");
            }
            std::fs::remove_file(&p).unwrap();
        }
        let p = temp_path("ok.npy");
        write_npy_f32(&p, &[1.0, 2.0], &[2]).unwrap();
        assert_eq!(read_array_f32(&p).unwrap(), (vec![1.0, 2.0], vec![2]));
        std::fs::write(&p, [0, 0, 8, 1, 0, 0, 0, 2, 4, 5]).unwrap();
        assert_eq!(read_array_labels(&p).unwrap(), vec![4, 5]);
        std::fs::remove_file(&p).unwrap();
    }
}
