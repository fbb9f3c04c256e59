//! Quantized block formats: one file per format (struct + size assert +
//! scalar dequantization + dot product against quantized activations).

mod types;

pub use types::{GgmlType, QK_K};
