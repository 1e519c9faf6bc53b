//! NumPy `.npy` files, format versions 1.0, 2.0 and 3.0
//! (<https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>).
//!
//! Read: little-endian, C-order arrays; `float32` (and `float64`, narrowed) as data, any
//! integer type as class labels (negative values and values above `u32::MAX` rejected).
//! Written: `float32` and `int32`, version 1.0 unless the header needs 2.0, padded to 64 bytes
//! like NumPy does so that the data is aligned when memory-mapped.
//!
//! Written by hand rather than through `ndarray-npy` (0.9.1), which allocates the array the
//! header declares before reading any data: a 144-byte file declaring shape `(2**36,)` of
//! `<f4` made it request 274877906944 bytes and abort the process (measured; a library
//! inside someone else's process must return an error there). This reader checks the
//! declared size against the bytes present first. `ndarray-npy` also needs the element type
//! chosen before reading, where data here may be `float32` or `float64` and labels any of
//! eight integer types.

use super::{io_err, read_bytes, write_bytes};
use crate::error::{Error, Result};
use crate::tensor::checked_numel;
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";
/// Headers nest at most a dtype tuple inside a dict; deeper means garbage, and a depth cap
/// keeps the recursive parser from overflowing the stack on hostile input.
const MAX_NESTING: usize = 8;

/// The element types this reader understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NpyDtype {
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
}

impl NpyDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            NpyDtype::I8 | NpyDtype::U8 => 1,
            NpyDtype::I16 | NpyDtype::U16 => 2,
            NpyDtype::F32 | NpyDtype::I32 | NpyDtype::U32 => 4,
            NpyDtype::F64 | NpyDtype::I64 | NpyDtype::U64 => 8,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, NpyDtype::F32 | NpyDtype::F64)
    }

    /// NumPy's name for the type, for messages.
    pub fn name(self) -> &'static str {
        match self {
            NpyDtype::F32 => "float32",
            NpyDtype::F64 => "float64",
            NpyDtype::I8 => "int8",
            NpyDtype::I16 => "int16",
            NpyDtype::I32 => "int32",
            NpyDtype::I64 => "int64",
            NpyDtype::U8 => "uint8",
            NpyDtype::U16 => "uint16",
            NpyDtype::U32 => "uint32",
            NpyDtype::U64 => "uint64",
        }
    }

    fn from_descr(descr: &str, name: &str) -> Result<Self> {
        let bytes = descr.as_bytes();
        if bytes.len() < 3 {
            return Err(io_err(name, format!("unsupported dtype `{descr}`")));
        }
        let little =
            matches!(bytes[0], b'<' | b'|') || (bytes[0] == b'=' && cfg!(target_endian = "little"));
        if !little {
            return Err(io_err(
                name,
                format!("dtype `{descr}` is big-endian; only little-endian arrays are read (convert with arr.astype(arr.dtype.newbyteorder('<')))"),
            ));
        }
        let t = match &descr[1..] {
            "f4" => NpyDtype::F32,
            "f8" => NpyDtype::F64,
            "i1" => NpyDtype::I8,
            "i2" => NpyDtype::I16,
            "i4" => NpyDtype::I32,
            "i8" => NpyDtype::I64,
            "u1" => NpyDtype::U8,
            "u2" => NpyDtype::U16,
            "u4" => NpyDtype::U32,
            "u8" => NpyDtype::U64,
            _ => {
                return Err(io_err(
                    name,
                    format!(
                        "unsupported dtype `{descr}` (float32, float64 and integer types are read)"
                    ),
                ))
            }
        };
        Ok(t)
    }
}

/// What the header of a `.npy` file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    pub dtype: NpyDtype,
    pub shape: Vec<usize>,
    pub version: (u8, u8),
}

/// The header of `bytes` and the data bytes after it, checked to hold exactly the array the
/// header declares. `name` labels error messages (usually the file name).
pub fn decode_header<'a>(bytes: &'a [u8], name: &str) -> Result<(NpyHeader, &'a [u8])> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(io_err(name, "not a .npy file (missing \\x93NUMPY magic)"));
    }
    let rest = &bytes[MAGIC.len()..];
    let (major, minor) = match rest {
        [a, b, ..] => (*a, *b),
        _ => return Err(io_err(name, "truncated .npy header (no version)")),
    };
    let rest = &rest[2..];
    let (len_bytes, utf8) = match major {
        1 => (2, false),
        2 => (4, false),
        3 => (4, true),
        _ => {
            return Err(io_err(
                name,
                format!(".npy format version {major}.{minor} is not supported (1.0, 2.0, 3.0 are)"),
            ))
        }
    };
    if rest.len() < len_bytes {
        return Err(io_err(name, "truncated .npy header (no header length)"));
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([rest[0], rest[1]]) as usize
    } else {
        u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize
    };
    let rest = &rest[len_bytes..];
    if header_len > rest.len() {
        return Err(io_err(
            name,
            format!(
                "truncated .npy header: it declares {header_len} bytes, the file has {} left",
                rest.len()
            ),
        ));
    }
    let (raw_header, data) = rest.split_at(header_len);
    let text: String = if utf8 {
        std::str::from_utf8(raw_header)
            .map_err(|_| io_err(name, ".npy v3 header is not valid UTF-8"))?
            .to_owned()
    } else {
        // Versions 1 and 2 are latin-1; every byte maps to the code point of the same value.
        raw_header.iter().map(|&b| b as char).collect()
    };
    let dict = match parse_literal(&text, name)? {
        Literal::Dict(d) => d,
        _ => return Err(io_err(name, ".npy header is not a dict")),
    };
    let get = |key: &str| {
        dict.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| io_err(name, format!(".npy header has no `{key}` entry")))
    };
    let dtype = match get("descr")? {
        Literal::Str(s) => NpyDtype::from_descr(s, name)?,
        Literal::List(_) | Literal::Tuple(_) => {
            return Err(io_err(name, "structured (record) dtypes are not supported"))
        }
        other => return Err(io_err(name, format!("bad `descr` in header: {other:?}"))),
    };
    match get("fortran_order")? {
        Literal::Bool(false) => {}
        Literal::Bool(true) => {
            return Err(io_err(
                name,
                "array is in Fortran (column-major) order; save it in C order (np.ascontiguousarray) first",
            ))
        }
        other => return Err(io_err(name, format!("bad `fortran_order` in header: {other:?}"))),
    }
    let shape = match get("shape")? {
        Literal::Tuple(items) => items
            .iter()
            .map(|v| match v {
                Literal::Int(i) => usize::try_from(*i)
                    .map_err(|_| io_err(name, format!("shape entry {i} is out of range"))),
                other => Err(io_err(name, format!("bad shape entry {other:?}"))),
            })
            .collect::<Result<Vec<usize>>>()?,
        other => return Err(io_err(name, format!("bad `shape` in header: {other:?}"))),
    };
    let numel = checked_numel(&shape).map_err(|_| {
        io_err(
            name,
            format!("shape {shape:?} has more elements than fit in memory"),
        )
    })?;
    let nbytes = numel
        .checked_mul(dtype.size())
        .ok_or_else(|| io_err(name, format!("shape {shape:?} is too large")))?;
    if data.len() != nbytes {
        let what = if data.len() < nbytes {
            "truncated"
        } else {
            "has trailing bytes"
        };
        return Err(io_err(
            name,
            format!(
                "data {what}: shape {shape:?} of {} needs {nbytes} bytes, the file has {}",
                dtype.name(),
                data.len()
            ),
        ));
    }
    Ok((
        NpyHeader {
            dtype,
            shape,
            version: (major, minor),
        },
        data,
    ))
}

/// A float array: `float32` as is, `float64` narrowed (a finite value outside the f32 range is
/// an error rather than a silent infinity). Returns the values and the shape.
pub fn decode_f32(bytes: &[u8], name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
    let (h, data) = decode_header(bytes, name)?;
    let values = match h.dtype {
        NpyDtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        NpyDtype::F64 => {
            let mut out = Vec::with_capacity(data.len() / 8);
            for (i, c) in data.chunks_exact(8).enumerate() {
                let v = f64::from_le_bytes(c.try_into().expect("chunks_exact(8)"));
                let x = v as f32;
                if v.is_finite() && !x.is_finite() {
                    return Err(io_err(
                        name,
                        format!("float64 value {v:e} at index {i} overflows float32"),
                    ));
                }
                out.push(x);
            }
            out
        }
        other => {
            return Err(io_err(
                name,
                format!(
                "expected a float32 or float64 array, found {} (read labels with read_npy_labels)",
                other.name()
            ),
            ))
        }
    };
    Ok((values, h.shape))
}

/// Class labels: an integer array of shape `[n]` or `[n, 1]`, every value in `0..=u32::MAX`.
pub fn decode_labels(bytes: &[u8], name: &str) -> Result<Vec<u32>> {
    let (h, data) = decode_header(bytes, name)?;
    if h.dtype.is_float() {
        return Err(io_err(
            name,
            format!("labels must be an integer array, found {}", h.dtype.name()),
        ));
    }
    match h.shape.as_slice() {
        [_] | [_, 1] => {}
        s => {
            return Err(io_err(
                name,
                format!("labels must have shape [n] or [n, 1], found {s:?}"),
            ))
        }
    }
    let size = h.dtype.size();
    let mut out = Vec::with_capacity(data.len() / size);
    for (i, c) in data.chunks_exact(size).enumerate() {
        let v: i128 = match h.dtype {
            NpyDtype::I8 => c[0] as i8 as i128,
            NpyDtype::U8 => c[0] as i128,
            NpyDtype::I16 => i16::from_le_bytes([c[0], c[1]]) as i128,
            NpyDtype::U16 => u16::from_le_bytes([c[0], c[1]]) as i128,
            NpyDtype::I32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i128,
            NpyDtype::U32 => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i128,
            NpyDtype::I64 => i64::from_le_bytes(c.try_into().expect("chunks_exact(8)")) as i128,
            NpyDtype::U64 => u64::from_le_bytes(c.try_into().expect("chunks_exact(8)")) as i128,
            NpyDtype::F32 | NpyDtype::F64 => unreachable!("float dtypes rejected above"),
        };
        let l = u32::try_from(v).map_err(|_| {
            io_err(
                name,
                format!("label {v} at index {i} is not a class index (must be in 0..=4294967295)"),
            )
        })?;
        out.push(l);
    }
    Ok(out)
}

fn encode(descr: &str, shape: &[usize], numel: usize, payload: Vec<u8>) -> Result<Vec<u8>> {
    let n = checked_numel(shape)?;
    if n != numel {
        return Err(Error::shape(
            "write_npy",
            format!("{numel} values for shape {shape:?} ({n} expected)"),
        ));
    }
    let shape_repr = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_repr}, }}");
    // NumPy pads with spaces and ends with '\n' so that the data starts on a 64-byte boundary.
    let fixed_v1 = MAGIC.len() + 2 + 2;
    let (version, fixed) = if header.len() + 1 + 63 <= u16::MAX as usize {
        (1u8, fixed_v1)
    } else {
        (2u8, fixed_v1 + 2)
    };
    let pad = (64 - (fixed + header.len() + 1) % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = Vec::with_capacity(fixed + header.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        let len = u32::try_from(header.len())
            .map_err(|_| Error::invalid("npy header longer than 4 GiB"))?;
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The bytes of a `float32` `.npy` file holding `data` with `shape`.
pub fn encode_f32(data: &[f32], shape: &[usize]) -> Result<Vec<u8>> {
    let payload = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    encode("<f4", shape, data.len(), payload)
}

/// The bytes of an `int32` `.npy` file holding `data` with `shape`.
pub fn encode_i32(data: &[i32], shape: &[usize]) -> Result<Vec<u8>> {
    let payload = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    encode("<i4", shape, data.len(), payload)
}

/// Reads a float array (`float32`, or `float64` narrowed to f32): values and shape.
pub fn read_npy_f32(path: impl AsRef<Path>) -> Result<(Vec<f32>, Vec<usize>)> {
    let path = path.as_ref();
    decode_f32(&read_bytes(path)?, &path.display().to_string())
}

/// Reads class labels from an integer array of shape `[n]` or `[n, 1]`.
pub fn read_npy_labels(path: impl AsRef<Path>) -> Result<Vec<u32>> {
    let path = path.as_ref();
    decode_labels(&read_bytes(path)?, &path.display().to_string())
}

/// Writes a `float32` array.
pub fn write_npy_f32(path: impl AsRef<Path>, data: &[f32], shape: &[usize]) -> Result<()> {
    write_bytes(path.as_ref(), &encode_f32(data, shape)?)
}

/// Writes an `int32` array.
pub fn write_npy_i32(path: impl AsRef<Path>, data: &[i32], shape: &[usize]) -> Result<()> {
    write_bytes(path.as_ref(), &encode_i32(data, shape)?)
}

/// The subset of Python literals that `.npy` headers use.
#[derive(Debug, PartialEq)]
enum Literal {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Tuple(Vec<Literal>),
    List(Vec<Literal>),
    Dict(Vec<(String, Literal)>),
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    name: &'a str,
}

fn parse_literal(text: &str, name: &str) -> Result<Literal> {
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
        name,
    };
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(p.err("unexpected text after the header dict"));
    }
    Ok(v)
}

impl Parser<'_> {
    fn err(&self, what: &str) -> Error {
        io_err(
            self.name,
            format!("malformed .npy header at byte {}: {what}", self.pos),
        )
    }

    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected `{}`", c as char)))
        }
    }

    /// Comma-separated items up to `close`; a trailing comma is allowed. Returns the items and
    /// whether any comma was seen (`(3)` is an int in Python, `(3,)` a tuple).
    fn sequence<T>(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<T>,
    ) -> Result<(Vec<T>, bool)> {
        let mut items = Vec::new();
        let mut comma = false;
        loop {
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok((items, comma));
            }
            items.push(item(self)?);
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    comma = true;
                }
                Some(c) if c == close => {}
                _ => return Err(self.err(&format!("expected `,` or `{}`", close as char))),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Literal> {
        if depth > MAX_NESTING {
            return Err(self.err("nested too deeply"));
        }
        match self.peek() {
            None => Err(self.err("unexpected end")),
            Some(b'\'') | Some(b'"') => Ok(Literal::Str(self.string()?)),
            Some(b'{') => {
                self.pos += 1;
                let (items, _) = self.sequence(b'}', |p| {
                    let key = match p.peek() {
                        Some(b'\'') | Some(b'"') => p.string()?,
                        _ => return Err(p.err("dict keys must be strings")),
                    };
                    p.expect(b':')?;
                    Ok((key, p.value(depth + 1)?))
                })?;
                Ok(Literal::Dict(items))
            }
            Some(b'(') => {
                self.pos += 1;
                let (mut items, comma) = self.sequence(b')', |p| p.value(depth + 1))?;
                if items.len() == 1 && !comma {
                    Ok(items.pop().expect("one item"))
                } else {
                    Ok(Literal::Tuple(items))
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let (items, _) = self.sequence(b']', |p| p.value(depth + 1))?;
                Ok(Literal::List(items))
            }
            Some(c) if c.is_ascii_digit() || c == b'-' || c == b'+' => self.int(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_alphanumeric() {
                    self.pos += 1;
                }
                match &self.s[start..self.pos] {
                    b"True" => Ok(Literal::Bool(true)),
                    b"False" => Ok(Literal::Bool(false)),
                    b"None" => Ok(Literal::None),
                    _ => {
                        self.pos = start;
                        Err(self.err("unknown name"))
                    }
                }
            }
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn string(&mut self) -> Result<String> {
        let quote = self.s[self.pos];
        self.pos += 1;
        let start = self.pos;
        // Header strings are dtype codes and key names: no escapes to handle.
        while self.pos < self.s.len() && self.s[self.pos] != quote {
            if self.s[self.pos] == b'\\' {
                return Err(self.err("escape sequences are not supported"));
            }
            self.pos += 1;
        }
        if self.pos >= self.s.len() {
            return Err(self.err("unterminated string"));
        }
        let s = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
        self.pos += 1;
        Ok(s)
    }

    fn int(&mut self) -> Result<Literal> {
        let start = self.pos;
        if matches!(self.s[self.pos], b'-' | b'+') {
            self.pos += 1;
        }
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).expect("ASCII digits");
        // Python 2 wrote long integers with an `L` suffix, e.g. `(3L, 4L)`.
        if self.pos < self.s.len() && self.s[self.pos] == b'L' {
            self.pos += 1;
        }
        text.parse::<i128>().map(Literal::Int).map_err(|_| {
            self.pos = start;
            self.err(&format!("bad integer `{text}`"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::temp_path;

    /// A .npy file built by hand: version, header text (padded as NumPy would), raw data.
    fn npy(major: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[major, 0]);
        if major == 1 {
            out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn le<T: Copy, const N: usize>(v: &[T], f: fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }

    #[test]
    fn reads_hand_built_float_arrays_in_every_version() {
        let data = le(&[1.0f32, -2.5, 3.25, 0.0, 1e-3, 7.0], f32::to_le_bytes);
        for major in [1, 2, 3] {
            let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }          \n";
            let (v, s) = decode_f32(&npy(major, h, &data), "t.npy").unwrap();
            assert_eq!(s, vec![2, 3]);
            assert_eq!(v, vec![1.0, -2.5, 3.25, 0.0, 1e-3, 7.0]);
        }
        // Keys in another order, double quotes, Python 2 long suffix, no trailing comma.
        let h = "{\"shape\": (3L,), \"fortran_order\": False, \"descr\": \"<f8\"}\n";
        let data = le(&[0.5f64, -1.0, 1e300], f64::to_le_bytes);
        let err = decode_f32(&npy(1, h, &data), "big.npy").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("big.npy") && msg.contains("1e300 at index 2 overflows float32"),
            "{msg}"
        );
        let data = le(&[0.5f64, -1.0, 0.1], f64::to_le_bytes);
        let (v, s) = decode_f32(&npy(1, h, &data), "d.npy").unwrap();
        assert_eq!(s, vec![3]);
        assert_eq!(v, vec![0.5, -1.0, 0.1f64 as f32]);
        // A 0-d array holds one value; an empty array none.
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (), }\n";
        let (v, s) = decode_f32(&npy(1, h, &le(&[4.0f32], f32::to_le_bytes)), "s").unwrap();
        assert_eq!((v, s), (vec![4.0], vec![]));
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }\n";
        let (v, s) = decode_f32(&npy(1, h, &[]), "e").unwrap();
        assert_eq!((v.len(), s), (0, vec![0, 5]));
    }

    #[test]
    fn reads_labels_of_every_integer_type_and_rejects_negatives() {
        let h = |d: &str, shape: &str| {
            format!("{{'descr': '{d}', 'fortran_order': False, 'shape': {shape}, }}\n")
        };
        let l = decode_labels(&npy(1, &h("|u1", "(4,)"), &[0, 9, 3, 255]), "u8").unwrap();
        assert_eq!(l, vec![0, 9, 3, 255]);
        let d = le(&[0i32, 7, 2], i32::to_le_bytes);
        assert_eq!(
            decode_labels(&npy(1, &h("<i4", "(3,)"), &d), "i32").unwrap(),
            vec![0, 7, 2]
        );
        let d = le(&[5i64, 1], i64::to_le_bytes);
        assert_eq!(
            decode_labels(&npy(1, &h("<i8", "(2, 1)"), &d), "i64").unwrap(),
            vec![5, 1]
        );
        let d = le(&[1i64, -1], i64::to_le_bytes);
        let err = decode_labels(&npy(1, &h("<i8", "(2,)"), &d), "neg.npy").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("neg.npy") && msg.contains("-1") && msg.contains("index 1"),
            "{msg}"
        );
        let d = le(&[1u64 << 40], u64::to_le_bytes);
        assert!(decode_labels(&npy(1, &h("<u8", "(1,)"), &d), "x").is_err());
        let d = le(&[1i32, 2, 3, 4], i32::to_le_bytes);
        let err = decode_labels(&npy(1, &h("<i4", "(2, 2)"), &d), "m").unwrap_err();
        assert!(err.to_string().contains("[n] or [n, 1]"), "{err}");
        let d = le(&[1.0f32], f32::to_le_bytes);
        let err = decode_labels(&npy(1, &h("<f4", "(1,)"), &d), "f").unwrap_err();
        assert!(err.to_string().contains("integer"), "{err}");
        let err = decode_f32(&npy(1, &h("<i4", "(1,)"), &[0; 4]), "i").unwrap_err();
        assert!(err.to_string().contains("read_npy_labels"), "{err}");
    }

    #[test]
    fn malformed_files_give_named_errors() {
        let ok_h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
        let data = [0u8; 8];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"PK\x03\x04".to_vec(), "magic"),
            (Vec::new(), "magic"),
            (MAGIC.to_vec(), "version"),
            (npy(4, ok_h, &data), "version 4"),
            (MAGIC.iter().copied().chain([1, 0, 0xff]).collect(), "header length"),
            (npy(1, ok_h, &data)[..30].to_vec(), "truncated .npy header"),
            (npy(1, ok_h, &data[..7]), "truncated"),
            (npy(1, ok_h, &[0u8; 12]), "trailing"),
            (
                npy(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", &data),
                "big-endian",
            ),
            (
                npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", &data),
                "Fortran",
            ),
            (
                npy(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", &data),
                "unsupported dtype",
            ),
            (
                npy(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", &data),
                "structured",
            ),
            (npy(1, "{'descr': '<f4', 'shape': (2,), }", &data), "fortran_order"),
            (
                npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", &data),
                "out of range",
            ),
            (
                npy(
                    1,
                    "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }",
                    &data,
                ),
                "more elements",
            ),
            (
                npy(
                    1,
                    "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,), }",
                    &data,
                ),
                "too large",
            ),
            (
                npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000,), }", &data),
                "truncated",
            ),
            (npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", &data), "malformed"),
            (npy(1, "{'descr': '<f4'} extra", &data), "after the header"),
            (npy(1, "((((((((((((((((((((1))))))))))))))))))))", &data), "nested"),
            (npy(1, "{'descr: '<f4'", &data), "malformed"),
            (npy(3, "{'descr': '<f4', 'shape': (2,), 'fortran_order': \u{1}\u{2}}", &data), "malformed"),
        ];
        for (bytes, want) in cases {
            let err = decode_f32(&bytes, "bad.npy").unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, Error::Io(_)) && msg.contains("bad.npy") && msg.contains(want),
                "expected `{want}`, got: {msg}"
            );
        }
        let mut invalid_utf8 = npy(3, ok_h, &data);
        invalid_utf8[12] = 0xff;
        assert!(decode_f32(&invalid_utf8, "u")
            .unwrap_err()
            .to_string()
            .contains("UTF-8"));
    }

    #[test]
    fn write_then_read_round_trips_and_matches_numpy_layout() {
        let p = temp_path("rt.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_npy_f32(&p, &data, &[2, 3, 4]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        // NumPy's own layout: version 1.0, data aligned to 64 bytes, header ends with '\n'.
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let hl = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + hl) % 64, 0);
        assert_eq!(bytes[10 + hl - 1], b'\n');
        assert!(std::str::from_utf8(&bytes[10..10 + hl])
            .unwrap()
            .starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }"));
        assert_eq!(read_npy_f32(&p).unwrap(), (data, vec![2, 3, 4]));

        let labels = [3i32, 0, 9, 1, 1];
        write_npy_i32(&p, &labels, &[5]).unwrap();
        assert_eq!(read_npy_labels(&p).unwrap(), vec![3, 0, 9, 1, 1]);
        write_npy_i32(&p, &[-4], &[1]).unwrap();
        assert!(read_npy_labels(&p).is_err());
        write_npy_f32(&p, &[2.0], &[]).unwrap();
        assert_eq!(read_npy_f32(&p).unwrap(), (vec![2.0], vec![]));
        std::fs::remove_file(&p).unwrap();

        assert!(matches!(
            write_npy_f32(&p, &[1.0, 2.0], &[3]),
            Err(Error::Shape { .. })
        ));
        let missing = temp_path("missing.npy");
        let err = read_npy_f32(&missing).unwrap_err().to_string();
        assert!(err.contains("missing.npy"), "{err}");
    }

    #[test]
    fn long_headers_switch_to_version_2() {
        // A 30000-dimension shape ("1, " each) needs a header longer than 65535 bytes.
        let shape = vec![1usize; 30000];
        let bytes = encode_f32(&[1.5], &shape).unwrap();
        assert_eq!(&bytes[6..8], &[2, 0]);
        let hl = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!((12 + hl) % 64, 0);
        let (h, _) = decode_header(&bytes, "v2").unwrap();
        assert_eq!((h.version, h.shape.len()), ((2, 0), 30000));
        assert_eq!(decode_f32(&bytes, "v2").unwrap().0, vec![1.5]);
    }
}
