//! How a weight matrix sits in GPU memory: its GGUF bytes, unchanged.
//!
//! Every supported ggml type is uploaded as the file stores it (rows
//! contiguous, blocks byte-packed with f16 scales), in one `array<u32>`
//! binding zero-padded to a whole word, and decoded in the shaders by
//! `shaders/dequant.wgsl` (one branch per type, chosen by the host-prepended
//! `const LAYOUT` = the ggml type id). So the device holds exactly the file's
//! bytes per weight (≤ 3 bytes of word padding per binding part, and buffers
//! of at least 16 bytes), stacking matrices of one type is concatenating
//! their bytes, and the values the kernels compute equal the scalar
//! `dequantize_row` bit for bit (the same f32 operations in the same order;
//! `wgpu_kernels` checks every type through `get_rows`).
//!
//! Before this, matrices were repacked at upload into aligned f32-scale
//! layouts (QA4 6.0 bits per weight for Q4_K's 4.5, Q6_K as 12 for 6.56,
//! Q5_0/Q5_1/Q2_K/Q3_K/BF16 expanded to f32): docs/GPU.md has the table.

use crate::quant::GgmlType;
use crate::{Error, Result};

/// The ggml types the shaders decode.
pub const GPU_TYPES: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
];

/// How a matrix sits in GPU memory: the file's blocks of this ggml type
/// (the shader variant decodes that type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout(GgmlType);

impl Layout {
    /// The layout of a type, or a typed error for a type the shaders can't decode.
    pub fn for_type(ty: GgmlType) -> Result<Layout> {
        if GPU_TYPES.contains(&ty) {
            Ok(Layout(ty))
        } else {
            Err(Error::UnsupportedType { ty: ty.name().into(), what: "wgpu weights".into() })
        }
    }

    pub fn ty(self) -> GgmlType {
        self.0
    }

    /// `const LAYOUT` of dequant.wgsl: the ggml type id.
    pub fn id(self) -> u32 {
        self.0 as u32
    }

    /// Shader variant name of this layout.
    pub fn name(self) -> String {
        self.0.name().to_lowercase()
    }

    /// Bytes of `n_rows` rows of `n_in` elements on the device: the file's
    /// bytes rounded up to a whole u32 word (the binding's element).
    pub fn bytes(self, n_in: usize, n_rows: usize) -> Result<u64> {
        let row = self.0.row_size(n_in).ok_or_else(|| Error::InvalidParam(format!("{n_in} is not a whole number of {} blocks", self.0)))?;
        Ok(((row * n_rows) as u64).next_multiple_of(4))
    }
}
