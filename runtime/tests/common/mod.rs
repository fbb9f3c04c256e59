//! Shared by the GGUF tests: sample files (also the seeds of the
//! `gguf_reader` fuzz target, see gguf_fuzz_smoke.rs), byte-patching helpers,
//! and `exercise`, which walks every accessor of a parsed file.
#![allow(dead_code)]

use ember::gguf::{GgufFile, GgufWriter, Value, ValueType};
use ember::quant::GgmlType;

/// Offset of the tensor count in the header (after magic and version).
pub const N_TENSORS_OFF: usize = 8;
/// Offset of the metadata key/value count in the header.
pub const N_KV_OFF: usize = 16;

/// A small valid file: a few kinds of metadata and two F32 tensors.
pub fn small_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.kv("general.architecture", Value::Str("llama".into()))
        .kv("llama.block_count", Value::U32(2))
        .kv("tokenizer.ggml.tokens", str_array(&["<s>", "</s>", "a"]))
        .kv("llama.rope.dims", Value::Array(ValueType::U32, vec![Value::U32(1), Value::U32(2)]))
        .tensor_f32("tok_embd", &[4, 2], &ramp(8))
        .tensor_f32("output", &[3], &ramp(3));
    w
}

pub fn small_file() -> Vec<u8> {
    small_writer().to_bytes()
}

/// Inputs the fuzzers start from: each one a valid file; all but "empty" have tensors.
pub fn seed_files() -> Vec<(&'static str, Vec<u8>)> {
    let mut every_type = GgufWriter::new();
    for (k, v) in every_value_type() {
        every_type.kv(&k, v);
    }
    every_type.tensor_f32("weights", &[2], &[1.0, 2.0]);
    let mut v2 = small_writer();
    v2.version = 2;
    let mut aligned = small_writer();
    aligned.alignment = 64;
    aligned.kv("general.alignment", Value::U32(64));
    let mut quant = GgufWriter::new();
    quant.tensor("q4", GgmlType::Q4_0, &[64, 2], vec![0x11; 4 * 18]).tensor("q8", GgmlType::Q8_0, &[32], vec![0x22; 34]).tensor_f32(
        "empty",
        &[0, 4],
        &[],
    );
    let mut only_empty = GgufWriter::new();
    only_empty.kv("general.architecture", Value::Str("x".into())).tensor_f32("only_empty", &[0], &[]);
    vec![
        ("small", small_file()),
        ("only_empty_tensor", only_empty.to_bytes()),
        ("every_type", every_type.to_bytes()),
        ("v2", v2.to_bytes()),
        ("align64", aligned.to_bytes()),
        ("quant", quant.to_bytes()),
        ("empty", GgufWriter::new().to_bytes()),
    ]
}

/// One key per metadata value type (arrays: typed, empty, nested).
pub fn every_value_type() -> Vec<(String, Value)> {
    let nested = Value::Array(
        ValueType::Array,
        vec![Value::Array(ValueType::I16, vec![Value::I16(-1), Value::I16(2)]), Value::Array(ValueType::I16, vec![])],
    );
    [
        ("t.u8", Value::U8(200)),
        ("t.i8", Value::I8(-100)),
        ("t.u16", Value::U16(60_000)),
        ("t.i16", Value::I16(-30_000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.f32", Value::F32(1.5)),
        ("t.bool", Value::Bool(true)),
        ("t.str", Value::Str("héllo wörld".into())),
        ("t.array", Value::Array(ValueType::F64, vec![Value::F64(0.25), Value::F64(-2.0)])),
        ("t.array_empty", Value::Array(ValueType::Str, vec![])),
        ("t.array_nested", nested),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f64", Value::F64(std::f64::consts::PI)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub fn str_array(items: &[&str]) -> Value {
    Value::Array(ValueType::Str, items.iter().map(|s| Value::Str(s.to_string())).collect())
}

pub fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32 * 0.5 - 1.0).collect()
}

// ---- byte patching -------------------------------------------------------

/// The offset of `needle`, which must occur exactly once (so a name found by
/// it is never a prefix or piece of another string in the file).
pub fn find(bytes: &[u8], needle: &[u8]) -> usize {
    let mut hits = bytes.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle);
    let name = String::from_utf8_lossy(needle);
    let (at, _) = hits.next().unwrap_or_else(|| panic!("{name:?} not in file"));
    assert!(hits.next().is_none(), "{name:?} occurs more than once in the file");
    at
}

/// Little-endian overwrites in place (a method, so that the offset argument
/// may itself be computed from the bytes: `b.put_u64(kv_at(b, "k").value, 0)`).
pub trait Patch {
    fn put_u8(&mut self, off: usize, v: u8);
    fn put_u32(&mut self, off: usize, v: u32);
    fn put_u64(&mut self, off: usize, v: u64);
}

impl Patch for Vec<u8> {
    fn put_u8(&mut self, off: usize, v: u8) {
        self[off] = v;
    }
    fn put_u32(&mut self, off: usize, v: u32) {
        self[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, off: usize, v: u64) {
        self[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
}

/// Where a metadata entry's fields are in a file (found by its unique key).
pub struct KvAt {
    pub key_len: usize,
    pub key: usize,
    pub ty: usize,
    /// The value; for arrays, the element type (u32) followed by the count (u64).
    pub value: usize,
}

pub fn kv_at(bytes: &[u8], key: &str) -> KvAt {
    let k = find(bytes, key.as_bytes());
    let ty = k + key.len();
    KvAt { key_len: k - 8, key: k, ty, value: ty + 4 }
}

/// Where a tensor info's fields are in a file (found by its unique name).
pub struct TensorAt {
    pub name_len: usize,
    pub n_dims: usize,
    pub dims: usize,
    pub ty: usize,
    pub offset: usize,
    /// First byte after this tensor info.
    pub end: usize,
}

pub fn tensor_at(bytes: &[u8], name: &str) -> TensorAt {
    let n = find(bytes, name.as_bytes());
    let n_dims = n + name.len();
    let dims = n_dims + 4;
    let nd = u32::from_le_bytes(bytes[n_dims..dims].try_into().unwrap()) as usize;
    let ty = dims + 8 * nd;
    TensorAt { name_len: n - 8, n_dims, dims, ty, offset: ty + 4, end: ty + 12 }
}

// ---- walking a parsed file ------------------------------------------------

/// Calls every accessor on every key and reads every tensor's data (the
/// walk the fuzz targets share: `ember::fuzzing::exercise_gguf`).
pub fn exercise(f: &GgufFile) {
    ember::fuzzing::exercise_gguf(f);
}

/// Caps this test process's address space at 4 GiB (Linux), so a regression
/// that sizes an allocation from a doctored value fails here instead of
/// filling the machine.
pub fn limit_memory() {
    #[cfg(target_os = "linux")]
    {
        #[repr(C)]
        struct Rlimit {
            cur: u64,
            max: u64,
        }
        extern "C" {
            fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
        }
        const RLIMIT_AS: i32 = 9;
        let lim = Rlimit { cur: 4 << 30, max: 4 << 30 };
        // SAFETY: setrlimit reads one struct rlimit (two u64 on 64-bit Linux).
        assert_eq!(unsafe { setrlimit(RLIMIT_AS, &lim) }, 0);
    }
}
