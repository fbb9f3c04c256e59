//! A small GGUF writer (feature `test-util`): builds valid files for tests,
//! fuzz seeds and synthetic benchmark models. Hostile files are made by
//! writing a valid one and patching bytes, or with the raw knobs below.

use std::io::Write;
use std::path::Path;

use super::reader::align_up;
use super::value::Value;
use super::GGUF_MAGIC;
use crate::quant::GgmlType;

struct PendingTensor {
    name: String,
    ne: Vec<u64>,
    /// Raw ggml type id, so tests can write ids the reader must reject.
    ty: u32,
    data: Vec<u8>,
}

pub struct GgufWriter {
    pub version: u32,
    pub alignment: u64,
    kv: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter { version: 3, alignment: 32, kv: Vec::new(), tensors: Vec::new() }
    }

    pub fn kv(&mut self, key: &str, value: Value) -> &mut Self {
        self.kv.push((key.to_string(), value));
        self
    }

    /// Adds a tensor; `data` must hold the encoded blocks of `ty`.
    pub fn tensor(&mut self, name: &str, ty: GgmlType, ne: &[u64], data: Vec<u8>) -> &mut Self {
        self.tensor_raw(name, ty as u32, ne, data)
    }

    /// Adds an F32 tensor.
    pub fn tensor_f32(&mut self, name: &str, ne: &[u64], values: &[f32]) -> &mut Self {
        self.tensor(name, GgmlType::F32, ne, bytemuck::cast_slice(values).to_vec())
    }

    /// Adds a tensor with an arbitrary type id (no consistency check).
    pub fn tensor_raw(&mut self, name: &str, ty: u32, ne: &[u64], data: Vec<u8>) -> &mut Self {
        self.tensors.push(PendingTensor { name: name.to_string(), ne: ne.to_vec(), ty, data });
        self
    }

    /// Serializes the file. Tensor offsets are laid out in order, aligned.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            write_str(&mut out, k);
            out.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            write_value(&mut out, v);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            write_str(&mut out, &t.name);
            out.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
            for &d in &t.ne {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = align_up(offset + t.data.len() as u64, self.alignment);
        }
        let data_start = align_up(out.len() as u64, self.alignment);
        out.resize(data_start as usize, 0);
        for (t, off) in self.tensors.iter().zip(offsets) {
            out.resize((data_start + off) as usize, 0);
            out.extend_from_slice(&t.data);
        }
        out
    }

    pub fn write_to(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        f.write_all(&self.to_bytes())
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::Str(s) => write_str(out, s),
        Value::Array(t, items) => {
            out.extend_from_slice(&(*t as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                write_value(out, it);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}
