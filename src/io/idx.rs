//! IDX files, the format of MNIST and Fashion-MNIST (<http://yann.lecun.com/exdb/mnist/>):
//! a big-endian magic `00 00 <type> <ndims>`, `ndims` big-endian u32 sizes, then the raw
//! values. Files may be gzip'd (detected by the gzip magic `1f 8b`; concatenated members are
//! read as one stream, like `zcat`).
//!
//! A hostile file cannot make the reader allocate much: the size the header declares is
//! checked against a cap ([`DEFAULT_MAX_IDX_BYTES`], or the caller's) before anything is
//! allocated, and the (possibly gzip'd) stream is read through `take(declared + 1)`, so a
//! header that lies about its size cannot inflate past it either.
//!
//! Written by hand: the format is a magic number, a list of sizes and raw bytes, and the
//! crates that read it add little besides a dependency.

use super::{io_err, read_bytes};
use crate::error::Result;
use std::io::Read;
use std::path::Path;

/// Magic of an unsigned-byte array with 3 dimensions (images `[n, rows, cols]`).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic of an unsigned-byte array with 1 dimension (labels `[n]`).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The default cap on an IDX file's data (decompressed), in bytes: 1 GiB, twenty times
/// Fashion-MNIST's training images (47 MB), whose f32 form is then 4 GiB.
pub const DEFAULT_MAX_IDX_BYTES: u64 = 1 << 30;

/// The decoded contents of an unsigned-byte IDX file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxU8 {
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

fn type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "short",
        0x0C => "int",
        0x0D => "float",
        0x0E => "double",
        _ => "unknown",
    }
}

/// Decodes an IDX file (plain or gzip'd) whose magic must be `expected_magic`, an
/// unsigned-byte type, with at most [`DEFAULT_MAX_IDX_BYTES`] of data. `name` labels error
/// messages.
pub fn decode_u8(bytes: &[u8], expected_magic: u32, name: &str) -> Result<IdxU8> {
    decode_u8_limited(bytes, expected_magic, name, DEFAULT_MAX_IDX_BYTES)
}

/// [`decode_u8`] with a caller-chosen cap on the data size in bytes (after gunzip).
pub fn decode_u8_limited(
    bytes: &[u8],
    expected_magic: u32,
    name: &str,
    max_bytes: u64,
) -> Result<IdxU8> {
    let limits = Limits {
        name,
        max_bytes,
        how: "",
    };
    if bytes.starts_with(&GZIP_MAGIC) {
        let mut dec = flate2::read::MultiGzDecoder::new(bytes);
        let how = " (after gunzip)";
        decode_stream(&mut dec, expected_magic, Limits { how, ..limits })
    } else {
        let mut cursor = bytes;
        decode_stream(&mut cursor, expected_magic, limits)
    }
}

/// What a decode may take, and how to name it in messages.
#[derive(Clone, Copy)]
struct Limits<'a> {
    name: &'a str,
    max_bytes: u64,
    /// " (after gunzip)" for compressed input, else empty.
    how: &'a str,
}

fn read_exact_or(r: &mut dyn Read, buf: &mut [u8], name: &str, what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            io_err(name, format!("truncated IDX file: {what} missing"))
        } else {
            io_err(name, format!("reading {what}: {e}"))
        }
    })
}

fn decode_stream(r: &mut dyn Read, expected: u32, limits: Limits<'_>) -> Result<IdxU8> {
    let Limits {
        name,
        max_bytes,
        how,
    } = limits;
    let mut magic = [0u8; 4];
    read_exact_or(r, &mut magic, name, "magic number")?;
    let m = u32::from_be_bytes(magic);
    if magic[0] != 0 || magic[1] != 0 {
        return Err(io_err(
            name,
            format!("not an IDX file{how}: magic {m:#010x} does not start with two zero bytes"),
        ));
    }
    if m != expected {
        return Err(io_err(
            name,
            format!(
                "IDX magic {m:#010x} ({} values, {} dims), expected {expected:#010x} ({} values, {} dims)",
                type_name(magic[2]),
                magic[3],
                type_name((expected >> 8) as u8),
                expected & 0xff
            ),
        ));
    }
    let ndims = magic[3] as usize;
    let mut shape = Vec::with_capacity(ndims);
    for d in 0..ndims {
        let mut b = [0u8; 4];
        read_exact_or(r, &mut b, name, &format!("size of dimension {d}"))?;
        shape.push(u32::from_be_bytes(b) as usize);
    }
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| io_err(name, format!("IDX shape {shape:?} is too large")))?;
    if numel as u64 > max_bytes {
        return Err(io_err(
            name,
            format!(
                "IDX header declares {numel} bytes of data{how} (shape {shape:?}), over the cap of {max_bytes} bytes"
            ),
        ));
    }
    // `take` caps the bytes pulled out of a (possibly gzip'd) stream at one more than
    // declared; the buffer then grows only as real data arrives, never to a claimed size.
    let mut data = Vec::new();
    r.take((numel as u64).saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| io_err(name, format!("reading IDX data{how}: {e}")))?;
    if data.len() < numel {
        return Err(io_err(
            name,
            format!(
                "truncated IDX data{how}: shape {shape:?} needs {numel} bytes, found {}",
                data.len()
            ),
        ));
    }
    if data.len() > numel {
        return Err(io_err(
            name,
            format!("IDX file{how} has bytes after the {numel} declared by shape {shape:?}"),
        ));
    }
    Ok(IdxU8 { shape, data })
}

/// Images from an IDX file (magic `0x00000803`, plain or gzip'd): pixel values scaled from
/// 0..255 to [0, 1], and the shape `[n, rows, cols]`. At most [`DEFAULT_MAX_IDX_BYTES`]
/// pixels; [`read_idx_images_limited`] takes another cap.
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<(Vec<f32>, Vec<usize>)> {
    read_idx_images_limited(path, DEFAULT_MAX_IDX_BYTES)
}

/// [`read_idx_images`] with at most `max_bytes` pixels (one byte each before conversion).
pub fn read_idx_images_limited(
    path: impl AsRef<Path>,
    max_bytes: u64,
) -> Result<(Vec<f32>, Vec<usize>)> {
    let path = path.as_ref();
    let idx = decode_u8_limited(
        &read_bytes(path)?,
        IMAGES_MAGIC,
        &path.display().to_string(),
        max_bytes,
    )?;
    Ok((
        idx.data.iter().map(|&b| b as f32 / 255.0).collect(),
        idx.shape,
    ))
}

/// Labels from an IDX file (magic `0x00000801`, plain or gzip'd), at most
/// [`DEFAULT_MAX_IDX_BYTES`] of them.
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u32>> {
    let path = path.as_ref();
    let idx = decode_u8(
        &read_bytes(path)?,
        LABELS_MAGIC,
        &path.display().to_string(),
    )?;
    Ok(idx.data.iter().map(|&b| b as u32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::temp_path;
    use std::io::Write;

    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn reads_plain_and_gzipped_images_and_labels() {
        let pixels: Vec<u8> = (0..2 * 3 * 2).map(|i| (i * 23) as u8).collect();
        let img = idx(IMAGES_MAGIC, &[2, 3, 2], &pixels);
        let lab = idx(LABELS_MAGIC, &[3], &[7, 0, 9]);
        for (i, (img, lab)) in [(img.clone(), lab.clone()), (gzip(&img), gzip(&lab))]
            .into_iter()
            .enumerate()
        {
            let pi = temp_path(&format!("img{i}"));
            let pl = temp_path(&format!("lab{i}"));
            std::fs::write(&pi, &img).unwrap();
            std::fs::write(&pl, &lab).unwrap();
            let (x, shape) = read_idx_images(&pi).unwrap();
            assert_eq!(shape, vec![2, 3, 2]);
            let want: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
            assert_eq!(x, want);
            assert_eq!(x[0], 0.0);
            assert_eq!(read_idx_labels(&pl).unwrap(), vec![7, 0, 9]);
            // Swapped files are caught by the magic.
            let err = read_idx_labels(&pi).unwrap_err().to_string();
            assert!(
                err.contains("0x00000803") && err.contains("expected 0x00000801"),
                "{err}"
            );
            std::fs::remove_file(&pi).unwrap();
            std::fs::remove_file(&pl).unwrap();
        }
    }

    #[test]
    fn malformed_files_give_named_errors() {
        let good = idx(IMAGES_MAGIC, &[2, 2, 2], &[1; 8]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "magic number missing"),
            (vec![0, 0, 8], "magic number missing"),
            (b"\x89PNG\r\n\x1a\n".to_vec(), "not an IDX file"),
            (idx(0x0000_0D03, &[1, 1, 1], &[0; 4]), "float values"),
            (idx(IMAGES_MAGIC, &[2], &[]), "size of dimension 1 missing"),
            (good[..good.len() - 1].to_vec(), "truncated IDX data"),
            ([good.clone(), vec![0]].concat(), "bytes after"),
            (
                idx(IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX], &[0; 16]),
                "too large",
            ),
            // A huge but representable claim must not allocate what it claims.
            (
                idx(IMAGES_MAGIC, &[600, 28, 28_000], &[0; 16]),
                "truncated IDX data",
            ),
            (
                gzip(&good[..good.len() - 3]),
                "truncated IDX data (after gunzip)",
            ),
            (gzip(b"\x89PNG"), "not an IDX file (after gunzip)"),
            (gzip(&good)[..20].to_vec(), "bad.idx"),
            (vec![0x1f, 0x8b, 0, 0], "bad.idx"),
        ];
        for (bytes, want) in cases {
            let err = decode_u8(&bytes, IMAGES_MAGIC, "bad.idx").unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("bad.idx") && msg.contains(want),
                "expected `{want}`, got: {msg}"
            );
        }
        assert_eq!(
            decode_u8(&gzip(&good), IMAGES_MAGIC, "ok").unwrap().data,
            vec![1; 8]
        );
    }

    #[test]
    fn declared_sizes_over_the_cap_are_refused_before_allocating() {
        // 2^40 bytes declared by a 16-byte header, plain and gzip'd.
        let huge = idx(IMAGES_MAGIC, &[1 << 20, 1 << 10, 1 << 10], &[]);
        for bytes in [huge.clone(), gzip(&huge)] {
            let msg = decode_u8(&bytes, IMAGES_MAGIC, "huge.idx")
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("huge.idx")
                    && msg.contains("1099511627776 bytes")
                    && msg.contains(&format!("cap of {DEFAULT_MAX_IDX_BYTES} bytes")),
                "{msg}"
            );
        }
        // A gzip bomb: 16 MiB of zeros compress to about 16 KiB. Honest about its size, it
        // is refused by a 1 MiB cap before inflating; under a header that claims 1 MiB it
        // inflates no further than the claim (plus one byte to see the excess).
        let zeros = vec![0u8; 16 << 20];
        let bomb = gzip(&[idx(IMAGES_MAGIC, &[16, 1024, 1024], &[]), zeros.clone()].concat());
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        let msg = decode_u8_limited(&bomb, IMAGES_MAGIC, "bomb.idx.gz", 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("bomb.idx.gz") && msg.contains("16777216 bytes"),
            "{msg}"
        );
        let liar = gzip(&[idx(IMAGES_MAGIC, &[1, 1024, 1024], &[]), zeros].concat());
        let msg = decode_u8_limited(&liar, IMAGES_MAGIC, "liar.idx.gz", 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("bytes after the 1048576 declared"), "{msg}");
        // Exactly at the cap is fine.
        let at_cap = idx(IMAGES_MAGIC, &[2, 2, 2], &[3; 8]);
        assert_eq!(
            decode_u8_limited(&at_cap, IMAGES_MAGIC, "c", 8)
                .unwrap()
                .data,
            vec![3; 8]
        );
        assert!(decode_u8_limited(&at_cap, IMAGES_MAGIC, "c", 7).is_err());
    }

    #[test]
    fn reads_the_real_fashion_mnist_when_installed() {
        let dir = Path::new("/usr/share/datasets/fashion-mnist");
        let train_x = dir.join("train-images-idx3-ubyte.gz");
        if !train_x.exists() {
            eprintln!(
                "SKIPPED: {} not found (apt-get install dataset-fashion-mnist)",
                train_x.display()
            );
            return;
        }
        let (x, shape) = read_idx_images(&train_x).unwrap();
        assert_eq!(shape, vec![60000, 28, 28]);
        assert_eq!(x.len(), 60000 * 28 * 28);
        assert!(x.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(x.contains(&1.0), "some pixel should be saturated");
        let y = read_idx_labels(dir.join("train-labels-idx1-ubyte.gz")).unwrap();
        assert_eq!(y.len(), 60000);
        let mut counts = [0usize; 10];
        for &l in &y {
            assert!(l < 10, "label {l}");
            counts[l as usize] += 1;
        }
        // Fashion-MNIST's training split is exactly balanced.
        assert_eq!(counts, [6000; 10]);
        let (tx, tshape) = read_idx_images(dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
        assert_eq!((tshape, tx.len()), (vec![10000, 28, 28], 10000 * 784));
        let ty = read_idx_labels(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
        assert_eq!(ty.len(), 10000);
        assert!(ty.iter().all(|&l| l < 10));
    }
}
