//! Helpers shared by the command-line tool's integration tests.

use gradtau::data::Dataset;
use gradtau::io::{write_npy_f32, write_npy_i32};
use std::path::{Path, PathBuf};

/// A fresh, empty directory for one test (`suite` and `tag` keep tests apart).
pub fn workdir(suite: &str, tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gradtau-{suite}-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Writes a classification set as `<name>_x.npy` (float32) and `<name>_y.npy` (int32).
pub fn write_set(dir: &Path, name: &str, d: &Dataset) {
    write_npy_f32(
        dir.join(format!("{name}_x.npy")),
        d.x.as_slice().unwrap(),
        d.x.shape(),
    )
    .unwrap();
    let y: Vec<i32> = d.y.classes().unwrap().iter().map(|&v| v as i32).collect();
    write_npy_i32(dir.join(format!("{name}_y.npy")), &y, &[y.len()]).unwrap();
}
