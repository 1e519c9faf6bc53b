//! Safetensors files (<https://github.com/huggingface/safetensors>): an 8-byte little-endian
//! header length N, N bytes of JSON mapping each tensor name to
//! `{"dtype", "shape", "data_offsets": [begin, end]}` (plus an optional `"__metadata__"`
//! string map), then the raw little-endian data.
//!
//! The header is parsed and checked by the `safetensors` crate (header at most 100 MB,
//! offsets tiling the data section exactly, sizes matching dtype x shape, no arithmetic
//! overflow); this module only turns its verdicts into messages that name the file and the
//! tensor, and converts the data.
//!
//! Files are memory-mapped, not read: F32 values are decoded straight from the mapped pages
//! and F64, F16 and BF16 converted on the way, so a multi-GB checkpoint costs its f32 copy
//! and no second in-memory copy of the file. The map lives only while [`load_checkpoint`]
//! runs; a file truncated by another process during that time raises SIGBUS, the usual
//! price of mapping (the same as any reader of mapped checkpoints).
//!
//! Integer and boolean tensors are not model weights: PyTorch's `state_dict` of a model with
//! batch norm carries `<node>.num_batches_tracked` (I64, shape `[]`). [`load_checkpoint`]
//! keeps such tensors as stored ([`RawTensor`]) so that [`save_checkpoint`] writes them back;
//! [`advance_batch_counts`] moves the counters on by the steps a run took.
//!
//! Saved files list tensors sorted by dtype, then name (the crate's order), with the header
//! padded to 8 bytes, and are byte-for-byte deterministic.

use super::{io_err, read_bytes};
use crate::error::{Error, Result};
use crate::tensor::checked_numel;
use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorInfo, View};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

/// Name -> (shape, values), sorted by name.
pub type TensorMap = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// The crate's cap on the header length; a larger header is not a real model file.
const MAX_HEADER: u64 = 100_000_000;

/// The float dtypes that load as f32.
const FLOAT_DTYPES: &str = "F32, F64, F16 and BF16";

/// The name PyTorch gives batch norm's step counter (`<node>.num_batches_tracked`).
pub const NUM_BATCHES_TRACKED: &str = "num_batches_tracked";

/// A tensor kept exactly as stored: the integer and boolean tensors of a checkpoint, which
/// are not model weights but must survive a load/save round trip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawTensor {
    /// The safetensors dtype name (`"I64"`, `"U8"`, `"BOOL"`, ...).
    pub dtype: String,
    pub shape: Vec<usize>,
    /// The little-endian element bytes, `numel x element size` of them.
    pub bytes: Vec<u8>,
}

impl RawTensor {
    /// A 0-d I64 tensor, the layout of PyTorch's `num_batches_tracked`.
    pub fn i64_scalar(v: i64) -> Self {
        RawTensor {
            dtype: "I64".into(),
            shape: Vec::new(),
            bytes: v.to_le_bytes().to_vec(),
        }
    }

    /// The value of a one-element I64 tensor (shape `[]` or `[1]`).
    pub fn as_i64_scalar(&self) -> Option<i64> {
        let one = self.shape.iter().all(|&d| d == 1);
        match (
            self.dtype.as_str(),
            one,
            <[u8; 8]>::try_from(self.bytes.as_slice()),
        ) {
            ("I64", true, Ok(b)) => Some(i64::from_le_bytes(b)),
            _ => None,
        }
    }
}

/// Everything a safetensors file holds: float tensors as f32, the rest carried as stored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    pub floats: TensorMap,
    pub others: BTreeMap<String, RawTensor>,
}

/// Adds `steps` to every `*.num_batches_tracked` counter in `others`, as PyTorch does once
/// per training-mode forward pass of each batch norm layer.
pub fn advance_batch_counts(others: &mut BTreeMap<String, RawTensor>, steps: u64) -> Result<()> {
    for (name, t) in others.iter_mut() {
        if name.rsplit('.').next() != Some(NUM_BATCHES_TRACKED) {
            continue;
        }
        let count = t.as_i64_scalar().ok_or_else(|| {
            Error::Binding(format!(
                "`{name}` is {} {:?}; a batch counter must be one I64 value",
                t.dtype, t.shape
            ))
        })?;
        let next = i64::try_from(steps)
            .ok()
            .and_then(|s| count.checked_add(s))
            .ok_or_else(|| {
                Error::invalid(format!("`{name}`: {count} + {steps} steps overflows i64"))
            })?;
        let shape = std::mem::take(&mut t.shape);
        *t = RawTensor {
            shape,
            ..RawTensor::i64_scalar(next)
        };
    }
    Ok(())
}

/// Whether tensors of this dtype are carried through as stored rather than loaded as f32.
fn is_carried(dtype: Dtype) -> bool {
    matches!(
        dtype,
        Dtype::BOOL
            | Dtype::U8
            | Dtype::I8
            | Dtype::U16
            | Dtype::I16
            | Dtype::U32
            | Dtype::I32
            | Dtype::U64
            | Dtype::I64
    )
}

fn dtype_from_name(name: &str) -> Option<Dtype> {
    serde_json::from_value(Value::String(name.to_owned())).ok()
}

/// IEEE half to single precision, exact for every value including subnormals, inf and NaN.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal half: value = man * 2^-24, which is a normal f32.
            let v = man as f32 * (1.0 / (1u32 << 24) as f32);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// F64 narrowed to f32; a finite value outside the f32 range is an error, not an infinity.
fn f64s_to_f32(raw: &[u8], tensor: &str, file: &str) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(raw.len() / 8);
    for (i, c) in raw.chunks_exact(8).enumerate() {
        let v = f64::from_le_bytes(c.try_into().expect("chunks_exact(8)"));
        let x = v as f32;
        if v.is_finite() && !x.is_finite() {
            return Err(io_err(
                file,
                format!("tensor `{tensor}`: F64 value {v:e} at index {i} overflows f32"),
            ));
        }
        out.push(x);
    }
    Ok(out)
}

fn to_f32(dtype: Dtype, raw: &[u8], tensor: &str, file: &str) -> Result<Vec<f32>> {
    Ok(match dtype {
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => f64s_to_f32(raw, tensor, file)?,
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        other => {
            return Err(io_err(
                file,
                format!(
                    "tensor `{tensor}` has dtype {other}; only {FLOAT_DTYPES} load as f32 \
                     (integer and BOOL tensors are carried through as stored)"
                ),
            ))
        }
    })
}

/// The header's tensor entries sorted by offset, for naming the culprit of a layout error
/// the crate reports without a name. Only called once the crate has parsed the same JSON.
fn header_entries(bytes: &[u8]) -> Vec<(String, TensorInfo)> {
    let n = usize::try_from(declared_len(bytes)).unwrap_or(0);
    let header = bytes
        .get(8..8usize.saturating_add(n))
        .and_then(|h| std::str::from_utf8(h).ok())
        .unwrap_or("{}");
    let map: BTreeMap<String, Value> = serde_json::from_str(header).unwrap_or_default();
    let mut entries: Vec<(String, TensorInfo)> = map
        .into_iter()
        .filter(|(k, _)| k != "__metadata__")
        .filter_map(|(k, v)| Some((k, serde_json::from_value(v).ok()?)))
        .collect();
    entries.sort_by_key(|(_, t)| t.data_offsets);
    entries
}

/// Which header entry, and which field of it, the crate's serde error is about: serde
/// reports a flattened map's errors without the key.
fn bad_entry(bytes: &[u8]) -> Option<String> {
    use std::collections::HashMap;
    fn check<T: serde::de::DeserializeOwned>(v: Option<&Value>, what: &str) -> Option<String> {
        match v {
            None => Some(format!("missing `{what}`")),
            Some(v) => serde_json::from_value::<T>(v.clone())
                .err()
                .map(|e| format!("`{what}`: {e}")),
        }
    }
    let n = usize::try_from(declared_len(bytes)).ok()?;
    let header = std::str::from_utf8(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    let map: BTreeMap<String, Value> = serde_json::from_str(header).ok()?;
    map.iter().find_map(|(key, v)| {
        if key == "__metadata__" {
            return serde_json::from_value::<HashMap<String, String>>(v.clone())
                .err()
                .map(|e| format!("`__metadata__` must map strings to strings: {e}"));
        }
        let Some(obj) = v.as_object() else {
            return Some(format!("tensor `{key}`: entry is not a JSON object"));
        };
        check::<Dtype>(obj.get("dtype"), "dtype")
            .or_else(|| check::<Vec<usize>>(obj.get("shape"), "shape (non-negative integers)"))
            .or_else(|| check::<(usize, usize)>(obj.get("data_offsets"), "data_offsets"))
            .or_else(|| check::<TensorInfo>(Some(v), "entry"))
            .map(|e| format!("tensor `{key}`: {e}"))
    })
}

/// The crate's verdict as a sentence naming the tensor where the crate does not.
fn explain(err: SafeTensorError, bytes: &[u8]) -> String {
    let declared = declared_len(bytes);
    let data_len = (bytes.len() as u64).saturating_sub(8 + declared);
    match err {
        SafeTensorError::HeaderTooSmall => {
            "not a safetensors file: shorter than its 8-byte header length".into()
        }
        SafeTensorError::HeaderTooLarge => format!(
            "safetensors header length {declared} exceeds the {MAX_HEADER}-byte limit (not a safetensors file?)"
        ),
        SafeTensorError::InvalidHeaderLength => format!(
            "truncated safetensors header: {declared} bytes declared, {} present",
            bytes.len().saturating_sub(8)
        ),
        SafeTensorError::InvalidHeader(_) => "safetensors header is not UTF-8".into(),
        SafeTensorError::InvalidHeaderStart => "safetensors header is not a JSON object".into(),
        SafeTensorError::InvalidHeaderDeserialization(e) => {
            bad_entry(bytes).unwrap_or_else(|| format!("safetensors header is not valid JSON: {e}"))
        }
        SafeTensorError::InvalidOffset(name) => {
            let offsets = header_entries(bytes)
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.data_offsets);
            match offsets {
                Some((begin, end)) if end < begin => {
                    format!("tensor `{name}`: data_offsets [{begin}, {end}] end before they begin")
                }
                _ => format!(
                    "tensor `{name}`: data_offsets leave a gap or overlap (each tensor must start where the previous one ends)"
                ),
            }
        }
        SafeTensorError::TensorInvalidInfo
        | SafeTensorError::ValidationOverflow
        | SafeTensorError::MisalignedSlice => {
            let bad = header_entries(bytes).into_iter().find_map(|(name, t)| {
                let what = format!("{} {:?}", t.dtype, t.shape);
                let bits = checked_numel(&t.shape)
                    .ok()
                    .and_then(|n| n.checked_mul(t.dtype.bitsize()));
                let (begin, end) = t.data_offsets;
                match bits {
                    None => Some(format!("tensor `{name}`: shape of {what} is too large")),
                    Some(b) if b % 8 != 0 => {
                        Some(format!("tensor `{name}`: {what} does not fill whole bytes"))
                    }
                    Some(b) if end.checked_sub(begin) != Some(b / 8) => Some(format!(
                        "tensor `{name}`: data_offsets [{begin}, {end}] do not span the {} bytes of {what}",
                        b / 8
                    )),
                    _ => None,
                }
            });
            bad.unwrap_or_else(|| format!("invalid tensor table: {err}"))
        }
        SafeTensorError::MetadataIncompleteBuffer => {
            let covered = header_entries(bytes)
                .last()
                .map_or(0, |(_, t)| t.data_offsets.1 as u64);
            if covered > data_len {
                format!(
                    "truncated: tensors end at data byte {covered}, the file has {data_len}"
                )
            } else {
                format!("{data_len} data bytes after the header, tensors cover {covered}")
            }
        }
        other => format!("not a valid safetensors file: {other}"),
    }
}

/// Decodes safetensors bytes: float tensors as f32 (F32 as is; F64, F16 and BF16
/// converted), integer and BOOL tensors kept as stored. `file` labels error messages.
pub fn decode_checkpoint(bytes: &[u8], file: &str) -> Result<Checkpoint> {
    // The crate does not yet insist on a JSON object (its check is commented out); an array
    // or scalar header would otherwise be reported as a type error deep in serde.
    let header = usize::try_from(declared_len(bytes))
        .ok()
        .and_then(|n| bytes.get(8..8usize.checked_add(n)?));
    if header.is_some_and(|h| h.first() != Some(&b'{')) {
        return Err(io_err(
            file,
            explain(SafeTensorError::InvalidHeaderStart, bytes),
        ));
    }
    let st = SafeTensors::deserialize(bytes).map_err(|e| io_err(file, explain(e, bytes)))?;
    let mut out = Checkpoint::default();
    for (name, view) in st.iter() {
        if is_carried(view.dtype()) {
            let raw = RawTensor {
                dtype: view.dtype().to_string(),
                shape: view.shape().to_vec(),
                bytes: view.data().to_vec(),
            };
            out.others.insert(name.to_owned(), raw);
        } else {
            let values = to_f32(view.dtype(), view.data(), name, file)?;
            out.floats
                .insert(name.to_owned(), (view.shape().to_vec(), values));
        }
    }
    Ok(out)
}

fn declared_len(bytes: &[u8]) -> u64 {
    bytes
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

/// Decodes safetensors bytes whose tensors are all float (see [`decode_checkpoint`] for
/// files that also carry integer tensors).
pub fn decode(bytes: &[u8], file: &str) -> Result<TensorMap> {
    only_floats(decode_checkpoint(bytes, file)?, file)
}

fn only_floats(c: Checkpoint, file: &str) -> Result<TensorMap> {
    if let Some((name, t)) = c.others.iter().next() {
        return Err(io_err(
            file,
            format!(
                "tensor `{name}` has dtype {}; only {FLOAT_DTYPES} load as f32 (load_checkpoint carries integer tensors through)",
                t.dtype
            ),
        ));
    }
    Ok(c.floats)
}

/// A tensor to write: f32 values borrowed from the caller, or a carried tensor.
enum Out<'a> {
    F32(&'a [usize], &'a [f32]),
    Raw(&'a RawTensor, Dtype),
}

impl View for Out<'_> {
    fn dtype(&self) -> Dtype {
        match self {
            Out::F32(..) => Dtype::F32,
            Out::Raw(_, d) => *d,
        }
    }

    fn shape(&self) -> &[usize] {
        match self {
            Out::F32(s, _) => s,
            Out::Raw(t, _) => &t.shape,
        }
    }

    fn data(&self) -> Cow<'_, [u8]> {
        match self {
            Out::F32(_, d) => f32_bytes(d),
            Out::Raw(t, _) => Cow::Borrowed(&t.bytes),
        }
    }

    fn data_len(&self) -> usize {
        match self {
            Out::F32(_, d) => d.len() * 4,
            Out::Raw(t, _) => t.bytes.len(),
        }
    }
}

/// The little-endian bytes of `d`: a view of the caller's buffer where the machine is
/// little-endian, so saving a large tensor does not copy it.
#[cfg(target_endian = "little")]
fn f32_bytes(d: &[f32]) -> Cow<'_, [u8]> {
    // SAFETY: f32 has no padding and no invalid bit patterns as bytes; u8 has alignment 1;
    // the byte length is exactly the slice's size, and the borrow keeps `d` alive and
    // unmodified for the returned lifetime. On little-endian targets these bytes are the
    // safetensors (little-endian) encoding.
    Cow::Borrowed(unsafe { std::slice::from_raw_parts(d.as_ptr().cast::<u8>(), size_of_val(d)) })
}

#[cfg(not(target_endian = "little"))]
fn f32_bytes(d: &[f32]) -> Cow<'_, [u8]> {
    Cow::Owned(d.iter().flat_map(|v| v.to_le_bytes()).collect())
}

/// Checks names, sizes and dtypes, and pairs each tensor with its view for the crate.
fn prepare<'a>(
    floats: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [f32])>,
    others: &'a BTreeMap<String, RawTensor>,
) -> Result<BTreeMap<&'a str, Out<'a>>> {
    let mut sorted: BTreeMap<&str, Out<'a>> = BTreeMap::new();
    let mut add = |name: &'a str, out: Out<'a>| {
        if name == "__metadata__" {
            return Err(Error::invalid("`__metadata__` is reserved in safetensors"));
        }
        if sorted.insert(name, out).is_some() {
            return Err(Error::invalid(format!("tensor name `{name}` given twice")));
        }
        Ok(())
    };
    for (name, shape, data) in floats {
        let n = checked_numel(shape)?;
        if n != data.len() {
            return Err(Error::shape(
                "save_safetensors",
                format!("tensor `{name}`: {} values for shape {shape:?}", data.len()),
            ));
        }
        add(name, Out::F32(shape, data))?;
    }
    for (name, t) in others {
        let dtype = dtype_from_name(&t.dtype)
            .filter(|d| is_carried(*d))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "tensor `{name}`: dtype `{}` is not an integer or BOOL dtype",
                    t.dtype
                ))
            })?;
        let want = checked_numel(&t.shape)?.checked_mul(dtype.bitsize() / 8);
        if want != Some(t.bytes.len()) {
            return Err(Error::shape(
                "save_safetensors",
                format!(
                    "tensor `{name}`: {} bytes for {} {:?}",
                    t.bytes.len(),
                    t.dtype,
                    t.shape
                ),
            ));
        }
        add(name, Out::Raw(t, dtype))?;
    }
    Ok(sorted)
}

fn crate_err(e: SafeTensorError) -> Error {
    Error::invalid(format!("safetensors: {e}"))
}

/// Encodes F32 tensors and carried tensors; fails on duplicate names or size mismatches.
pub fn encode_checkpoint<'a>(
    floats: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [f32])>,
    others: &'a BTreeMap<String, RawTensor>,
) -> Result<Vec<u8>> {
    safetensors::serialize(prepare(floats, others)?, None).map_err(crate_err)
}

/// Encodes F32 tensors; fails on duplicate names or data/shape mismatches.
pub fn encode<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [f32])>,
) -> Result<Vec<u8>> {
    encode_checkpoint(tensors, &EMPTY)
}

static EMPTY: BTreeMap<String, RawTensor> = BTreeMap::new();

/// Loads every tensor of a safetensors file: floats as f32 (F32, F64, F16, BF16), integer
/// and BOOL tensors as stored. The file is memory-mapped, not read into memory.
pub fn load_checkpoint(path: impl AsRef<Path>) -> Result<Checkpoint> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| io_err(&name, e))?;
    // SAFETY: the map is only read, within this call, and no reference into it outlives
    // `decode_checkpoint`, which copies what it keeps. Another process shrinking the file
    // meanwhile would fault (SIGBUS) rather than give wrong data; that is documented above.
    let map = match unsafe { memmap2::Mmap::map(&file) } {
        Ok(m) => m,
        // Some files cannot be mapped (pipes, some network file systems): read them instead.
        Err(_) => return decode_checkpoint(&read_bytes(path)?, &name),
    };
    decode_checkpoint(&map, &name)
}

/// Loads a safetensors file whose tensors are all float, as f32 (F32, F64, F16, BF16).
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<TensorMap> {
    let path = path.as_ref();
    only_floats(load_checkpoint(path)?, &path.display().to_string())
}

/// Saves F32 tensors and carried tensors (streamed to the file, not assembled in memory).
pub fn save_checkpoint<'a>(
    path: impl AsRef<Path>,
    floats: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [f32])>,
    others: &'a BTreeMap<String, RawTensor>,
) -> Result<()> {
    let path = path.as_ref();
    safetensors::serialize_to_file(prepare(floats, others)?, None, path).map_err(|e| match e {
        SafeTensorError::IoError(e) => io_err(&path.display().to_string(), e),
        e => crate_err(e),
    })
}

/// Saves tensors as F32. Takes borrowed `(name, shape, data)` triples so that weights are
/// written straight from the host's buffers without copying; a [`TensorMap`] adapts with
/// `map.iter().map(|(k, (s, d))| (k.as_str(), s.as_slice(), d.as_slice()))`.
pub fn save_safetensors<'a>(
    path: impl AsRef<Path>,
    tensors: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [f32])>,
) -> Result<()> {
    save_checkpoint(path, tensors, &EMPTY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::temp_path;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn save_load_round_trip_is_sorted_and_deterministic() {
        let w: Vec<f32> = (0..6).map(|i| i as f32 - 2.5).collect();
        let b = vec![0.25f32, -1.0];
        let s = vec![7.0f32];
        let items = [
            ("fc.weight", &[2usize, 3][..], &w[..]),
            ("fc.bias", &[2][..], &b[..]),
            ("scale", &[][..], &s[..]),
            ("empty", &[0, 4][..], &[][..]),
        ];
        let bytes = encode(items).unwrap();
        let mut reversed = items;
        reversed.reverse();
        assert_eq!(
            bytes,
            encode(reversed).unwrap(),
            "input order must not matter"
        );
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
        assert!(
            header.starts_with(
                r#"{"empty":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},"fc.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#
            ),
            "{header}"
        );

        let p = temp_path("rt.safetensors");
        save_safetensors(&p, items).unwrap();
        let m = load_safetensors(&p).unwrap();
        assert_eq!(
            m.keys().collect::<Vec<_>>(),
            ["empty", "fc.bias", "fc.weight", "scale"]
        );
        assert_eq!(m["fc.weight"], (vec![2, 3], w.clone()));
        assert_eq!(m["fc.bias"], (vec![2], b));
        assert_eq!(m["scale"], (vec![], s));
        assert_eq!(m["empty"], (vec![0, 4], vec![]));
        // And back again from the loaded map.
        save_safetensors(
            &p,
            m.iter()
                .map(|(k, (s, d))| (k.as_str(), s.as_slice(), d.as_slice())),
        )
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), bytes);
        std::fs::remove_file(&p).unwrap();

        assert!(encode([("a", &[3usize][..], &w[..2])]).is_err());
        assert!(encode([("a", &[1usize][..], &w[..1]), ("a", &[1][..], &w[..1])]).is_err());
        assert!(encode([("__metadata__", &[1usize][..], &w[..1])]).is_err());
    }

    #[test]
    fn converts_f64_f16_bf16_and_skips_metadata() {
        let f64s: Vec<u8> = [1.5f64, -0.1]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        // 1.0, -2.0, 65504 (max half), 2^-24 (smallest subnormal), inf, 0.0 in IEEE half.
        let f16s: Vec<u8> = [0x3c00u16, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x0000]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        // bf16 of 1.0 and -3.0 are the top halves of the f32 bits.
        let bf16s: Vec<u8> = [0x3f80u16, 0xc040]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let header = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},"h":{"dtype":"F16","shape":[2,3],"data_offsets":[16,28]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[28,32]}}"#;
        let bytes = file(header, &[f64s, f16s, bf16s].concat());
        let m = decode(&bytes, "mixed").unwrap();
        assert_eq!(m["a"], (vec![2], vec![1.5, -0.1f64 as f32]));
        assert_eq!(
            m["h"],
            (
                vec![2, 3],
                vec![1.0, -2.0, 65504.0, 2f32.powi(-24), f32::INFINITY, 0.0]
            )
        );
        assert_eq!(m["b"], (vec![2], vec![1.0, -3.0]));
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14));
        assert_eq!(f16_to_f32(0x83ff), -(1023.0 * 2f32.powi(-24)));
    }

    #[test]
    fn malformed_files_give_named_errors() {
        let t = |dtype: &str, shape: &str, off: &str| {
            format!(r#"{{"t":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{off}}}}}"#)
        };
        let d8 = [0u8; 8];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![1, 2, 3], "shorter than"),
            (u64::MAX.to_le_bytes().to_vec(), "exceeds"),
            (
                file("{}", &[])[..9].to_vec(),
                "truncated safetensors header",
            ),
            (file("[1, 2]", &[]), "not a JSON object"),
            (file("{\"t\": ", &[]), "not valid JSON"),
            (file(&t("F32", "[2]", "[0,8]"), &d8[..4]), "truncated"),
            (file(&t("F32", "[2]", "[0,4]"), &d8), "do not span"),
            (
                file(&t("F32", "[2]", "[8,0]"), &d8),
                "end before they begin",
            ),
            (file(&t("F32", "[1]", "[4,8]"), &d8), "gap or overlap"),
            (
                file(&t("F32", "[1]", "[0,4]"), &d8),
                "data bytes after the header",
            ),
            (
                file(&t("Q4", "[2]", "[0,8]"), &d8),
                "`dtype`: unknown variant `Q4`",
            ),
            (file(&t("I32", "[2]", "[0,8]"), &d8), "only F32"),
            (file(&t("F8_E4M3", "[2]", "[0,2]"), &d8[..2]), "only F32"),
            (
                file(&t("F32", "[-2]", "[0,8]"), &d8),
                "tensor `t`: `shape (non-negative integers)`",
            ),
            (file(&t("F32", "[2]", "[0]"), &d8), "data_offsets"),
            (file(&t("F32", "[2]", "[0,8,9]"), &d8), "data_offsets"),
            (
                file(&t("F64", "[4294967296,4294967296]", "[0,8]"), &d8),
                "too large",
            ),
            (file(r#"{"t": 3}"#, &[]), "not a JSON object"),
            (
                file(r#"{"t": {"shape": [1], "data_offsets": [0,4]}}"#, &d8[..4]),
                "dtype",
            ),
            (file(r#"{"__metadata__": {"a": 1}}"#, &[]), "__metadata__"),
            (
                file(
                    r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
                    &d8,
                ),
                "gap or overlap",
            ),
        ];
        let mut wrong = Vec::new();
        for (bytes, want) in cases {
            let err = decode(&bytes, "bad.st").unwrap_err();
            let msg = err.to_string();
            if !(matches!(err, Error::Io(_)) && msg.contains("bad.st") && msg.contains(want)) {
                wrong.push(format!("expected `{want}`, got: {msg}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        let err = load_safetensors(temp_path("nope.safetensors")).unwrap_err();
        assert!(err.to_string().contains("nope.safetensors"));
    }

    #[test]
    fn checkpoints_carry_integer_tensors_and_count_batches() {
        let w = [0.5f32, -1.5, 2.0];
        let mut others = BTreeMap::new();
        others.insert(
            "bn.num_batches_tracked".to_owned(),
            RawTensor::i64_scalar(41),
        );
        others.insert(
            "mask".to_owned(),
            RawTensor {
                dtype: "U8".into(),
                shape: vec![3],
                bytes: vec![1, 0, 1],
            },
        );
        let floats = [("bn.weight", &[3usize][..], &w[..])];
        let p = temp_path("ckpt.safetensors");
        save_checkpoint(&p, floats, &others).unwrap();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            encode_checkpoint(floats, &others).unwrap()
        );
        let mut c = load_checkpoint(&p).unwrap();
        assert_eq!(c.floats["bn.weight"], (vec![3], w.to_vec()));
        assert_eq!(c.others, others);
        assert_eq!(c.others["bn.num_batches_tracked"].as_i64_scalar(), Some(41));
        assert_eq!(c.others["mask"].as_i64_scalar(), None);
        // The float-only loader names the integer tensor it cannot return as f32.
        let err = load_safetensors(&p).unwrap_err().to_string();
        assert!(
            err.contains("bn.num_batches_tracked")
                && err.contains("I64")
                && err.contains("load_checkpoint"),
            "{err}"
        );

        advance_batch_counts(&mut c.others, 9).unwrap();
        assert_eq!(c.others["bn.num_batches_tracked"].as_i64_scalar(), Some(50));
        assert_eq!(
            c.others["bn.num_batches_tracked"].shape,
            Vec::<usize>::new()
        );
        assert_eq!(c.others["mask"], others["mask"], "only counters move");
        c.others.insert(
            "x.num_batches_tracked".into(),
            RawTensor::i64_scalar(i64::MAX),
        );
        assert!(advance_batch_counts(&mut c.others, 1)
            .unwrap_err()
            .to_string()
            .contains("overflows"));
        c.others
            .insert("x.num_batches_tracked".into(), others["mask"].clone());
        assert!(advance_batch_counts(&mut c.others, 1)
            .unwrap_err()
            .to_string()
            .contains("one I64 value"));

        // Carried tensors are checked before anything is written.
        let mut bad = BTreeMap::new();
        bad.insert(
            "n".to_owned(),
            RawTensor {
                dtype: "I64".into(),
                shape: vec![2],
                bytes: vec![0; 8],
            },
        );
        assert!(save_checkpoint(&p, floats, &bad).is_err());
        bad.insert(
            "n".to_owned(),
            RawTensor {
                dtype: "F32".into(),
                ..RawTensor::i64_scalar(0)
            },
        );
        assert!(encode_checkpoint(floats, &bad).is_err());
        assert!(encode_checkpoint([("mask", &[3usize][..], &w[..])], &others).is_err());
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn f64_overflow_names_the_tensor_and_index() {
        let f64s: Vec<u8> = [1.0f64, 1e300]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let header = r#"{"w":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}"#;
        let msg = decode(&file(header, &f64s), "big.st")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("big.st")
                && msg.contains("`w`")
                && msg.contains("index 1")
                && msg.contains("overflows f32"),
            "{msg}"
        );
    }

    #[test]
    fn empty_and_missing_files_are_named() {
        let p = temp_path("empty.safetensors");
        std::fs::write(&p, b"").unwrap();
        let msg = load_checkpoint(&p).unwrap_err().to_string();
        assert!(
            msg.contains("empty.safetensors") && msg.contains("shorter than"),
            "{msg}"
        );
        std::fs::remove_file(&p).unwrap();
    }
}
