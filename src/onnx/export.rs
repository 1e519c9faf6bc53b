//! Writing weights back into an ONNX file: the input file with only the initializers' data
//! replaced.
//!
//! The importer's message types declare only the fields gradtau reads, so decoding and
//! re-encoding would drop the rest (metadata, doc strings, value infos, functions). Instead
//! this works on the protobuf wire format: it walks `ModelProto` → `graph` → `initializer`
//! entries as tagged byte ranges, copies every field it does not change byte for byte, and
//! in each initializer it replaces only the data (`float_data`, `raw_data`,
//! `double_data`) by a `raw_data` field with the new little-endian floats (or doubles, for a
//! DOUBLE initializer). Lengths of the enclosing messages are re-encoded.

use super::proto::{self, TensorProto};
use crate::error::{Error, Result};
use prost::Message;
use std::collections::HashMap;

const MODEL_GRAPH: u32 = 7;
const GRAPH_INITIALIZER: u32 = 5;
const TENSOR_FLOAT_DATA: u32 = 4;
const TENSOR_RAW_DATA: u32 = 9;
const TENSOR_DOUBLE_DATA: u32 = 10;

/// One field on the wire: its number, wire type, and the bytes of the whole field (key
/// included) and of its payload.
struct Field<'a> {
    number: u32,
    wire_type: u8,
    whole: &'a [u8],
    payload: &'a [u8],
}

fn corrupt(what: &str) -> Error {
    Error::Spec(format!("the ONNX file is malformed: {what}"))
}

fn read_varint(b: &[u8], at: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at).ok_or_else(|| corrupt("truncated varint"))?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(corrupt("varint longer than 10 bytes"))
}

fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Splits a message into its fields.
fn fields(b: &[u8]) -> Result<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let start = at;
        let key = read_varint(b, &mut at)?;
        let number = u32::try_from(key >> 3).map_err(|_| corrupt("field number"))?;
        let wire_type = (key & 7) as u8;
        let payload_start;
        match wire_type {
            0 => {
                payload_start = at;
                read_varint(b, &mut at)?;
            }
            1 | 5 => {
                payload_start = at;
                at += if wire_type == 1 { 8 } else { 4 };
            }
            2 => {
                let len =
                    usize::try_from(read_varint(b, &mut at)?).map_err(|_| corrupt("length"))?;
                payload_start = at;
                at = at.checked_add(len).ok_or_else(|| corrupt("length"))?;
            }
            _ => return Err(corrupt(&format!("wire type {wire_type} in field {number}"))),
        }
        if at > b.len() {
            return Err(corrupt("a field runs past the end"));
        }
        out.push(Field {
            number,
            wire_type,
            whole: &b[start..at],
            payload: &b[payload_start..at],
        });
    }
    Ok(out)
}

fn put_bytes_field(number: u32, payload: &[u8], out: &mut Vec<u8>) {
    write_varint(u64::from(number) << 3 | 2, out);
    write_varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// `original` with the data of each initializer named in `values` replaced. Every name in
/// `values` must be an initializer of the graph, and every replacement the same length.
pub fn replace_initializers(original: &[u8], values: &HashMap<&str, &[f32]>) -> Result<Vec<u8>> {
    let mut replaced = 0usize;
    let mut out = Vec::with_capacity(original.len());
    for f in fields(original)? {
        if f.number == MODEL_GRAPH && f.wire_type == 2 {
            let graph = rewrite_graph(f.payload, values, &mut replaced)?;
            put_bytes_field(MODEL_GRAPH, &graph, &mut out);
        } else {
            out.extend_from_slice(f.whole);
        }
    }
    if replaced != values.len() {
        return Err(Error::Spec(format!(
            "{} of the {} weights to write have no initializer in the ONNX file",
            values.len() - replaced,
            values.len()
        )));
    }
    Ok(out)
}

fn rewrite_graph(
    graph: &[u8],
    values: &HashMap<&str, &[f32]>,
    replaced: &mut usize,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(graph.len());
    for f in fields(graph)? {
        if f.number == GRAPH_INITIALIZER && f.wire_type == 2 {
            let t = TensorProto::decode(f.payload).map_err(|e| corrupt(&e.to_string()))?;
            if let Some(v) = values.get(t.name.as_str()) {
                let tensor = rewrite_tensor(f.payload, &t, v)?;
                put_bytes_field(GRAPH_INITIALIZER, &tensor, &mut out);
                *replaced += 1;
                continue;
            }
        }
        out.extend_from_slice(f.whole);
    }
    Ok(out)
}

fn rewrite_tensor(tensor: &[u8], t: &TensorProto, v: &[f32]) -> Result<Vec<u8>> {
    let n = super::import::floats(t)?.len();
    if n != v.len() {
        return Err(Error::Spec(format!(
            "initializer `{}` holds {n} values, the weights to write {}",
            t.name,
            v.len()
        )));
    }
    let raw: Vec<u8> = match t.data_type {
        proto::data_type::DOUBLE => v.iter().flat_map(|x| f64::from(*x).to_le_bytes()).collect(),
        _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    };
    let mut out = Vec::with_capacity(tensor.len());
    for f in fields(tensor)? {
        match f.number {
            TENSOR_FLOAT_DATA | TENSOR_RAW_DATA | TENSOR_DOUBLE_DATA => {}
            _ => out.extend_from_slice(f.whole),
        }
    }
    put_bytes_field(TENSOR_RAW_DATA, &raw, &mut out);
    Ok(out)
}
