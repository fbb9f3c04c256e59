//! The weights of a graph: every tensor an architecture uses, found by its
//! GGUF name and checked (shape, type) once at load, then referred to by a
//! small handle ([`Mat`], [`Vector`]) in the forward pass. Matrices stay
//! where they are in the file (offsets into the memory map, zero-copy);
//! 1-D tensors (norms, biases) are dequantized to f32 once. Each executor
//! maps the handles to its own copy: the CPU reads the map, wgpu uploads.

use std::sync::Arc;

use crate::gguf::GgufFile;
use crate::quant::{self, GgmlType};
use crate::{Error, Result};

/// A 2-D weight of the graph (an index into [`Weights::mats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mat(pub u32);

/// A 1-D f32 weight of the graph (an index into [`Weights::vectors`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vector(pub u32);

/// A 2-D weight in the file: `n_out` rows of `n_in` elements.
#[derive(Debug, Clone)]
pub struct Weight {
    pub name: String,
    pub ty: GgmlType,
    pub n_in: usize,
    pub n_out: usize,
    /// Read whole as f32 by per-head products ([`super::Exec::head_matmul`]),
    /// not by the quantized matrix kernels (wgpu uploads it dequantized).
    pub dense: bool,
    /// Byte range in the file.
    start: usize,
    len: usize,
}

impl Weight {
    /// The weight's bytes (zero-copy from the map).
    pub fn data<'a>(&self, file: &'a GgufFile) -> &'a [u8] {
        &file.bytes()[self.start..self.start + self.len]
    }

    pub fn row_bytes(&self) -> usize {
        self.len / self.n_out.max(1)
    }

    /// Dequantizes row `r` (e.g. one token's embedding) into `dst`.
    pub fn dequantize_row(&self, file: &GgufFile, r: usize, dst: &mut [f32]) -> Result<()> {
        let rb = self.row_bytes();
        quant::dequantize_row(self.ty, &self.data(file)[r * rb..(r + 1) * rb], dst)
    }

    /// Rows `r0..r0 + n` as a weight of their own (a band of a fused tensor).
    fn rows(&self, r0: usize, n: usize) -> Weight {
        let rb = self.row_bytes();
        Weight { n_out: n, start: self.start + r0 * rb, len: n * rb, ..self.clone() }
    }
}

/// Every weight of one model, by handle.
pub struct Weights {
    pub file: Arc<GgufFile>,
    pub mats: Vec<Weight>,
    pub vectors: Vec<Vec<f32>>,
    /// Names of the vectors (for uploads and dumps).
    pub vector_names: Vec<String>,
}

impl Weights {
    pub fn new(file: Arc<GgufFile>) -> Weights {
        Weights { file, mats: Vec::new(), vectors: Vec::new(), vector_names: Vec::new() }
    }

    pub fn mat(&self, m: Mat) -> &Weight {
        &self.mats[m.0 as usize]
    }

    pub fn vector(&self, v: Vector) -> &[f32] {
        &self.vectors[v.0 as usize]
    }

    pub fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_some()
    }

    /// A weight of shape `{n_in, n_out}` (ggml `ne` order).
    pub fn matrix(&mut self, name: &str, n_in: usize, n_out: usize) -> Result<Mat> {
        self.matrix_opt(name, n_in, n_out)?.ok_or_else(|| Error::MissingTensor(name.to_string()))
    }

    pub fn matrix_opt(&mut self, name: &str, n_in: usize, n_out: usize) -> Result<Option<Mat>> {
        Ok(self.find(name, n_in, n_out)?.map(|w| self.push(w)))
    }

    /// A matrix read whole as f32 by per-head products (MLA's kv_b).
    pub fn dense(&mut self, name: &str, n_in: usize, n_out: usize) -> Result<Mat> {
        let mut w = self.find(name, n_in, n_out)?.ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        w.dense = true;
        Ok(self.push(w))
    }

    /// A fused tensor `{n_in, Σ parts}` as one matrix per band of rows, in
    /// order (phi3's `attn_qkv` → q, k, v): each band is a weight of its
    /// own, so products of one input run as one [`super::Exec::matmul`].
    pub fn bands<const N: usize>(&mut self, name: &str, n_in: usize, parts: [usize; N]) -> Result<[Mat; N]> {
        let total = parts.iter().sum();
        let w = self.find(name, n_in, total)?.ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        let mut r0 = 0;
        Ok(parts.map(|n| {
            let band = w.rows(r0, n);
            r0 += n;
            self.push(band)
        }))
    }

    /// The output head: `output.weight`, or `token_embd`'s handle when tied.
    /// Returns (head, tied).
    pub fn output(&mut self, tok_embd: Mat, n_embd: usize, n_vocab: usize) -> Result<(Mat, bool)> {
        Ok(match self.matrix_opt("output.weight", n_embd, n_vocab)? {
            Some(o) => (o, false),
            None => (tok_embd, true),
        })
    }

    /// A 1-D tensor of `n` values (norm weights, biases), dequantized to f32.
    pub fn vec(&mut self, name: &str, n: usize) -> Result<Vector> {
        self.vec_opt(name, n)?.ok_or_else(|| Error::MissingTensor(name.to_string()))
    }

    pub fn vec_opt(&mut self, name: &str, n: usize) -> Result<Option<Vector>> {
        Ok(self.values_opt(name, n)?.map(|v| {
            self.vectors.push(v);
            self.vector_names.push(name.to_string());
            Vector(self.vectors.len() as u32 - 1)
        }))
    }

    /// A 1-D tensor's values without registering them (RoPE factors).
    pub fn values_opt(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
        let Some(w) = self.find(name, n, 1)? else { return Ok(None) };
        let mut v = vec![0f32; n];
        w.dequantize_row(&self.file, 0, &mut v)?;
        Ok(Some(v))
    }

    fn push(&mut self, w: Weight) -> Mat {
        self.mats.push(w);
        Mat(self.mats.len() as u32 - 1)
    }

    fn find(&self, name: &str, n_in: usize, n_out: usize) -> Result<Option<Weight>> {
        let Some(t) = self.file.tensor(name) else { return Ok(None) };
        let ok = match t.ne.as_slice() {
            [a, b] => *a == n_in as u64 && *b == n_out as u64,
            [a] => *a == n_in as u64 && n_out == 1,
            _ => false,
        };
        if !ok {
            return Err(Error::TensorShape { name: name.into(), got: t.ne.clone(), expected: vec![n_in as u64, n_out as u64] });
        }
        if !quant::is_supported(t.ty) {
            return Err(Error::UnsupportedType { ty: t.ty.name().into(), what: format!("tensor '{name}'") });
        }
        let start = (self.file.data_offset + t.offset) as usize;
        Ok(Some(Weight { name: name.into(), ty: t.ty, n_in, n_out, dense: false, start, len: t.size as usize }))
    }

    /// Parameter count and bytes of all tensors in the file.
    pub fn totals(&self) -> (u64, u64) {
        self.file.tensors().iter().fold((0, 0), |(p, b), t| (p + t.n_elements(), b + t.size))
    }

    /// The most common type among 2-D tensors, by bytes.
    pub fn dominant_type(&self) -> String {
        let mut by: Vec<(GgmlType, u64)> = Vec::new();
        for t in self.file.tensors().iter().filter(|t| t.ne.len() >= 2) {
            match by.iter_mut().find(|(ty, _)| *ty == t.ty) {
                Some((_, b)) => *b += t.size,
                None => by.push((t.ty, t.size)),
            }
        }
        by.iter().max_by_key(|(_, b)| *b).map(|(t, _)| t.name().to_string()).unwrap_or_else(|| "F32".into())
    }
}
