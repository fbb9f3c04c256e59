//! Finding weights by their GGUF names and checking their shapes and types
//! once, at load, so the forward pass can index without checks.

use crate::backend::cpu::{matmul, MatJob, MatmulScratch};
use crate::gguf::GgufFile;
use crate::quant::{self, GgmlType};
use crate::{Error, Result};

/// A 2-D weight in the memory map: `n_out` rows of `n_in` elements.
#[derive(Debug, Clone)]
pub struct Weight {
    pub name: String,
    pub ty: GgmlType,
    pub n_in: usize,
    pub n_out: usize,
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

    /// `y = W x` for `x`: `n_tok × n_in`, `y`: `n_tok × n_out`.
    pub fn matmul(&self, file: &GgufFile, x: &[f32], y: &mut [f32], scratch: &mut MatmulScratch) {
        matmul(self.ty, self.data(file), self.n_in, self.n_out, x, y, scratch);
    }

    /// This weight's part of a [`matmul_many`] call writing `y`.
    pub fn job<'a>(&self, file: &'a GgufFile, y: &'a mut [f32]) -> MatJob<'a> {
        MatJob { ty: self.ty, w: self.data(file), n_out: self.n_out, y }
    }

    /// Dequantizes row `r` (e.g. one token's embedding) into `dst`.
    pub fn dequantize_row(&self, file: &GgufFile, r: usize, dst: &mut [f32]) -> Result<()> {
        let rb = self.row_bytes();
        quant::dequantize_row(self.ty, &self.data(file)[r * rb..(r + 1) * rb], dst)
    }
}

pub struct WeightLoader<'a> {
    pub file: &'a GgufFile,
}

impl<'a> WeightLoader<'a> {
    pub fn new(file: &'a GgufFile) -> Self {
        WeightLoader { file }
    }

    pub fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_some()
    }

    /// A weight of shape `{n_in, n_out}` (ggml `ne` order).
    pub fn matrix(&self, name: &str, n_in: usize, n_out: usize) -> Result<Weight> {
        self.matrix_opt(name, n_in, n_out)?.ok_or_else(|| Error::MissingTensor(name.to_string()))
    }

    pub fn matrix_opt(&self, name: &str, n_in: usize, n_out: usize) -> Result<Option<Weight>> {
        let Some(t) = self.file.tensor(name) else { return Ok(None) };
        let ok = match t.ne.as_slice() {
            [a, b] => *a == n_in as u64 && *b == n_out as u64,
            [a] => *a == n_in as u64 && n_out == 1,
            _ => false,
        };
        if !ok {
            return Err(Error::TensorShape {
                name: name.into(),
                got: t.ne.clone(),
                expected: vec![n_in as u64, n_out as u64],
            });
        }
        if !quant::is_supported(t.ty) {
            return Err(Error::UnsupportedType { ty: t.ty.name().into(), what: format!("tensor '{name}'") });
        }
        let start = (self.file.data_offset + t.offset) as usize;
        Ok(Some(Weight { name: name.into(), ty: t.ty, n_in, n_out, start, len: t.size as usize }))
    }

    /// A 1-D tensor of `n` values (norm weights, biases), dequantized to f32.
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        self.vector_opt(name, n)?.ok_or_else(|| Error::MissingTensor(name.to_string()))
    }

    pub fn vector_opt(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
        let Some(w) = self.matrix_opt(name, n, 1)? else { return Ok(None) };
        let mut v = vec![0f32; n];
        w.dequantize_row(self.file, 0, &mut v)?;
        Ok(Some(v))
    }

    /// Parameter count and bytes of all tensors.
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
