//! GGUF: the model file format. A zero-copy reader over a memory map (tensor
//! data is never copied; metadata is parsed once into owned values), and a
//! writer for tests, synthetic models and the GPU self-test's golden model
//! (always built: the self-test runs in release builds).
//!
//! Every count, length and offset read from the file is checked against the
//! bytes that are actually there before anything is allocated or sliced, so a
//! truncated or hostile file yields a [`GgufError`] naming what is wrong and
//! where, never a panic.

mod backing;
mod reader;
mod value;
mod writer;

pub use reader::{GgufFile, Limits, TensorInfo};
pub use value::{Value, ValueType};
pub use writer::GgufWriter;

/// `"GGUF"` read as a little-endian u32.
pub const GGUF_MAGIC: u32 = 0x4655_4747;
pub const GGUF_DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: usize = 4;

/// What is wrong with a GGUF file. Offsets are byte offsets into the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file: it starts with \"{}\" (bytes {}), not the magic \"GGUF\"", found.escape_ascii(), found.map(|b| format!("{b:#04x}")).join(" "))]
    BadMagic { found: [u8; 4] },
    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    UnsupportedVersion(u32),
    #[error("big-endian GGUF files are not supported")]
    BigEndian,
    #[error("file truncated while reading {what} at offset {offset} (need {need} bytes, {left} left)")]
    Truncated { what: String, offset: u64, need: u64, left: u64 },
    #[error("{what} = {value} at offset {offset} exceeds the limit {limit}")]
    TooLarge { what: String, value: u64, limit: u64, offset: u64 },
    #[error("{what} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { what: String, offset: u64 },
    #[error("unknown metadata value type {ty} for key '{key}' at offset {offset}")]
    UnknownValueType { key: String, ty: u32, offset: u64 },
    #[error("arrays nested too deeply for key '{key}' at offset {offset}")]
    NestingTooDeep { key: String, offset: u64 },
    #[error("duplicate metadata key '{0}'")]
    DuplicateKey(String),
    #[error("duplicate tensor name '{0}'")]
    DuplicateTensor(String),
    #[error("invalid general.alignment {0} (must be a non-zero multiple of 8, at most 1 MiB)")]
    BadAlignment(u64),
    #[error("tensor '{tensor}': unknown ggml type id {ty}")]
    UnknownTensorType { tensor: String, ty: u32 },
    #[error("tensor '{tensor}': {n_dims} dimensions (at most {max})", max = MAX_DIMS)]
    BadDims { tensor: String, n_dims: u32 },
    #[error("tensor '{tensor}': dimensions {dims:?} overflow")]
    DimsOverflow { tensor: String, dims: Vec<u64> },
    #[error("tensor '{tensor}': row of {ne0} elements is not a whole number of {ty} blocks")]
    RowNotBlockMultiple { tensor: String, ne0: u64, ty: String },
    #[error("tensor '{tensor}': data offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned { tensor: String, offset: u64, alignment: u64 },
    #[error("tensor '{tensor}': data [{start}, {end}) lies outside the tensor data section ({len} bytes; file truncated?)")]
    TensorOutOfBounds { tensor: String, start: u64, end: u64, len: u64 },
    #[error("tensors '{a}' and '{b}' overlap in the data section")]
    TensorOverlap { a: String, b: String },
    #[error("missing metadata key '{0}'")]
    MissingKey(String),
    #[error("metadata key '{key}' has type {found}, expected {expected}")]
    WrongType { key: String, expected: String, found: String },
    #[error("metadata key '{key}': value {value} does not fit in {expected}")]
    OutOfRange { key: String, value: String, expected: String },
}
