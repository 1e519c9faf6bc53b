//! Safetensors files (<https://github.com/huggingface/safetensors>): an 8-byte little-endian
//! header length N, N bytes of JSON mapping each tensor name to
//! `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to the data section,
//! plus an optional `"__metadata__"` string map), then the raw little-endian data.
//!
//! Written by hand rather than through the `safetensors` crate: the format is a page long,
//! and loading converts F64/F16/BF16 to f32, which the crate leaves to the caller anyway.
//! Checks follow the reference implementation: header at most 100 MB, offsets in bounds,
//! sized exactly for dtype x shape, and tiling the data section without gaps or overlaps.
//! Saved files list tensors sorted by name and are byte-for-byte deterministic.

use super::{io_err, read_bytes, write_bytes};
use crate::error::{Error, Result};
use crate::tensor::checked_numel;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Name -> (shape, values), sorted by name.
pub type TensorMap = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// The reference implementation's cap; a larger header is not a real model file.
const MAX_HEADER: usize = 100_000_000;

fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
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

struct Entry<'a> {
    name: &'a str,
    dtype: &'a str,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

fn parse_entry<'a>(key: &'a str, v: &'a Value, file: &str) -> Result<Entry<'a>> {
    let bad = |what: &str| io_err(file, format!("tensor `{key}`: {what}"));
    let obj = v
        .as_object()
        .ok_or_else(|| bad("entry is not a JSON object"))?;
    let dtype = obj
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("missing or non-string `dtype`"))?;
    let shape = obj
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing or non-array `shape`"))?
        .iter()
        .map(|d| {
            d.as_u64()
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| bad(&format!("shape entry {d} is not a non-negative integer")))
        })
        .collect::<Result<Vec<usize>>>()?;
    let offsets = obj
        .get("data_offsets")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing or non-array `data_offsets`"))?;
    let off = |i: usize| {
        offsets
            .get(i)
            .and_then(Value::as_u64)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or_else(|| bad("`data_offsets` must be two non-negative integers"))
    };
    if offsets.len() != 2 {
        return Err(bad("`data_offsets` must be two non-negative integers"));
    }
    let (begin, end) = (off(0)?, off(1)?);
    Ok(Entry {
        name: key,
        dtype,
        shape,
        begin,
        end,
    })
}

/// Decodes safetensors bytes into f32 tensors (F32 as is; F64, F16 and BF16 converted).
/// `file` labels error messages.
pub fn decode(bytes: &[u8], file: &str) -> Result<TensorMap> {
    if bytes.len() < 8 {
        return Err(io_err(
            file,
            "not a safetensors file: shorter than its 8-byte header length",
        ));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if n > MAX_HEADER as u64 {
        return Err(io_err(
            file,
            format!("safetensors header length {n} exceeds the {MAX_HEADER}-byte limit (not a safetensors file?)"),
        ));
    }
    let n = n as usize;
    let rest = &bytes[8..];
    if n > rest.len() {
        return Err(io_err(
            file,
            format!(
                "truncated safetensors header: {n} bytes declared, {} present",
                rest.len()
            ),
        ));
    }
    let (header, data) = rest.split_at(n);
    let header =
        std::str::from_utf8(header).map_err(|_| io_err(file, "safetensors header is not UTF-8"))?;
    if !header.starts_with('{') {
        return Err(io_err(file, "safetensors header is not a JSON object"));
    }
    let json: Map<String, Value> = serde_json::from_str(header)
        .map_err(|e| io_err(file, format!("safetensors header is not valid JSON: {e}")))?;
    let mut entries = Vec::with_capacity(json.len());
    for (key, v) in &json {
        if key == "__metadata__" {
            let ok = v
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string));
            if !ok {
                return Err(io_err(file, "`__metadata__` must map strings to strings"));
            }
            continue;
        }
        entries.push(parse_entry(key, v, file)?);
    }
    entries.sort_by_key(|e| (e.begin, e.end));
    let mut expected_begin = 0usize;
    for e in &entries {
        let size = dtype_size(e.dtype).ok_or_else(|| {
            io_err(
                file,
                format!("tensor `{}`: unknown dtype `{}`", e.name, e.dtype),
            )
        })?;
        let nbytes = checked_numel(&e.shape)
            .ok()
            .and_then(|n| n.checked_mul(size))
            .ok_or_else(|| {
                io_err(
                    file,
                    format!("tensor `{}`: shape {:?} is too large", e.name, e.shape),
                )
            })?;
        if e.begin > e.end || e.end - e.begin != nbytes {
            return Err(io_err(
                file,
                format!(
                    "tensor `{}`: data_offsets [{}, {}] do not span the {nbytes} bytes of {} {:?}",
                    e.name, e.begin, e.end, e.dtype, e.shape
                ),
            ));
        }
        if e.begin != expected_begin {
            return Err(io_err(
                file,
                format!(
                    "tensor `{}` starts at byte {} but the previous tensor ends at {expected_begin} (gap or overlap)",
                    e.name, e.begin
                ),
            ));
        }
        if e.end > data.len() {
            return Err(io_err(
                file,
                format!(
                    "truncated: tensor `{}` ends at data byte {}, the file has {}",
                    e.name,
                    e.end,
                    data.len()
                ),
            ));
        }
        expected_begin = e.end;
    }
    if expected_begin != data.len() {
        return Err(io_err(
            file,
            format!(
                "{} data bytes after the header, tensors cover {expected_begin}",
                data.len()
            ),
        ));
    }
    let mut out = TensorMap::new();
    for e in entries {
        let raw = &data[e.begin..e.end];
        let values: Vec<f32> = match e.dtype {
            "F32" => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            "F64" => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect(),
            "F16" => raw
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            "BF16" => raw
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                .collect(),
            other => {
                return Err(io_err(
                    file,
                    format!(
                        "tensor `{}` has dtype {other}; only F32, F64, F16 and BF16 load as f32",
                        e.name
                    ),
                ))
            }
        };
        out.insert(e.name.to_owned(), (e.shape, values));
    }
    Ok(out)
}

/// Encodes F32 tensors, sorted by name; fails on duplicate names or data/shape mismatches.
pub fn encode<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [f32])>,
) -> Result<Vec<u8>> {
    let mut sorted: BTreeMap<&str, (&[usize], &[f32])> = BTreeMap::new();
    for (name, shape, data) in tensors {
        let n = checked_numel(shape)?;
        if n != data.len() {
            return Err(Error::shape(
                "save_safetensors",
                format!("tensor `{name}`: {} values for shape {shape:?}", data.len()),
            ));
        }
        if name == "__metadata__" {
            return Err(Error::invalid("`__metadata__` is reserved in safetensors"));
        }
        if sorted.insert(name, (shape, data)).is_some() {
            return Err(Error::invalid(format!("tensor name `{name}` given twice")));
        }
    }
    let mut header = Map::new();
    let mut offset = 0usize;
    for (name, (shape, data)) in &sorted {
        let end = offset + data.len() * 4;
        header.insert(
            (*name).to_owned(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    // serde_json's Map keeps keys sorted (no `preserve_order` feature), so output is stable.
    let mut h = serde_json::to_string(&header)
        .map_err(|e| Error::invalid(format!("safetensors header: {e}")))?;
    // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
    while h.len() % 8 != 0 {
        h.push(' ');
    }
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    for (_, data) in sorted.values() {
        out.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    }
    Ok(out)
}

/// Loads every tensor of a safetensors file as f32 (F32, F64, F16, BF16 accepted).
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<TensorMap> {
    let path = path.as_ref();
    decode(&read_bytes(path)?, &path.display().to_string())
}

/// Saves tensors as F32, sorted by name. Takes borrowed `(name, shape, data)` triples so that
/// weights are written straight from the host's buffers without copying; a [`TensorMap`]
/// adapts with `map.iter().map(|(k, (s, d))| (k.as_str(), s.as_slice(), d.as_slice()))`.
pub fn save_safetensors<'a>(
    path: impl AsRef<Path>,
    tensors: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [f32])>,
) -> Result<()> {
    write_bytes(path.as_ref(), &encode(tensors)?)
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
                r#"{"empty":{"data_offsets":[0,0],"dtype":"F32","shape":[0,4]},"fc.bias":{"data_offsets":[0,8]"#
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
            (file(&t("F32", "[2]", "[8,0]"), &d8), "do not span"),
            (file(&t("F32", "[1]", "[4,8]"), &d8), "gap or overlap"),
            (
                file(&t("F32", "[1]", "[0,4]"), &d8),
                "data bytes after the header",
            ),
            (file(&t("Q4", "[2]", "[0,8]"), &d8), "unknown dtype"),
            (file(&t("I32", "[2]", "[0,8]"), &d8), "only F32"),
            (file(&t("F32", "[-2]", "[0,8]"), &d8), "non-negative"),
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
        for (bytes, want) in cases {
            let err = decode(&bytes, "bad.st").unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, Error::Io(_)) && msg.contains("bad.st") && msg.contains(want),
                "expected `{want}`, got: {msg}"
            );
        }
        let err = load_safetensors(temp_path("nope.safetensors")).unwrap_err();
        assert!(err.to_string().contains("nope.safetensors"));
    }
}
