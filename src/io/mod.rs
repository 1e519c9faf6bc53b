//! File readers and writers: `.npy` arrays, IDX files (MNIST, Fashion-MNIST), safetensors.
//!
//! Every reader works on the bytes of a whole file and checks each size it reads against the
//! bytes actually present before allocating, so a truncated or hostile file gives an
//! [`Error::Io`] naming the file and the problem, never a panic or a huge allocation. The
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

/// Whether the file starts with the `.npy` magic (`\x93NUMPY`).
fn is_npy(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| io_err(&path.display().to_string(), e))?;
    let mut magic = [0u8; 6];
    let n = f
        .read(&mut magic)
        .map_err(|e| io_err(&path.display().to_string(), e))?;
    Ok(n == 6 && &magic == b"\x93NUMPY")
}

/// Reads a float array from a `.npy` file or an IDX image file (plain or gzip), chosen by
/// the file's contents.
pub fn read_array_f32(path: impl AsRef<Path>) -> Result<(Vec<f32>, Vec<usize>)> {
    let path = path.as_ref();
    if is_npy(path)? {
        read_npy_f32(path)
    } else {
        read_idx_images(path)
    }
}

/// Reads class labels from a `.npy` file or an IDX label file, chosen by the contents.
pub fn read_array_labels(path: impl AsRef<Path>) -> Result<Vec<u32>> {
    let path = path.as_ref();
    if is_npy(path)? {
        read_npy_labels(path)
    } else {
        read_idx_labels(path)
    }
}
