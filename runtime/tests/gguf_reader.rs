//! The GGUF reader: valid files round-trip through the writer; every kind of
//! malformed file yields its own `GgufError` (never a panic).

mod common;

use common::*;
use ember::gguf::{GgufError, GgufFile, GgufWriter, Value, ValueType};
use ember::quant::GgmlType;

fn parse(bytes: Vec<u8>) -> GgufFile {
    GgufFile::from_bytes(bytes).expect("valid file")
}

fn parse_err(bytes: Vec<u8>) -> GgufError {
    GgufFile::from_bytes(bytes).expect_err("malformed file must not parse")
}

/// A file with one metadata entry.
fn one_kv(key: &str, value: Value) -> GgufWriter {
    let mut w = GgufWriter::new();
    w.kv(key, value);
    w
}

fn one_kv_file(key: &str, value: Value) -> GgufFile {
    parse(one_kv(key, value).to_bytes())
}

/// A file with one tensor (raw type id, no consistency check by the writer).
fn one_tensor_err(ty: u32, ne: &[u64], data: Vec<u8>) -> GgufError {
    let mut w = GgufWriter::new();
    w.tensor_raw("t", ty, ne, data);
    parse_err(w.to_bytes())
}

/// `small_file()` with a patch applied.
fn patched(patch: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = small_file();
    patch(&mut b);
    b
}

// ---- valid files ------------------------------------------------------------

#[test]
fn every_value_type_round_trips() {
    let kvs = every_value_type();
    let mut w = GgufWriter::new();
    for (k, v) in &kvs {
        w.kv(k, v.clone());
    }
    let f = parse(w.to_bytes());
    assert_eq!(f.metadata(), &kvs[..]);
    for (k, v) in &kvs {
        assert_eq!(f.get(k), Some(v), "{k}");
    }
    assert!(f.tensors().is_empty());
    exercise(&f);
}

#[test]
fn u32_accepts_every_integer_type_that_fits() {
    for v in [Value::U8(7), Value::I8(7), Value::U16(7), Value::I16(7), Value::U32(7), Value::I32(7), Value::U64(7), Value::I64(7)] {
        let f = one_kv_file("k", v.clone());
        assert_eq!(f.u32("k"), Ok(7), "{v:?}");
        assert_eq!(f.u32_opt("k"), Ok(Some(7)), "{v:?}");
        assert_eq!(f.u64("k"), Ok(7), "{v:?}");
        assert_eq!(f.i64_opt("k"), Ok(Some(7)), "{v:?}");
    }
}

#[test]
fn u32_out_of_range() {
    for v in [Value::I8(-1), Value::I32(-5), Value::I64(-1), Value::U64(1 << 32)] {
        let f = one_kv_file("k", v.clone());
        assert!(matches!(f.u32("k"), Err(GgufError::OutOfRange { .. })), "{v:?}");
        assert!(matches!(f.u32_opt("k"), Err(GgufError::OutOfRange { .. })), "{v:?}");
    }
    let f = one_kv_file("k", Value::U64(u64::MAX));
    assert!(matches!(f.i64_opt("k"), Err(GgufError::OutOfRange { .. })));
    assert_eq!(f.u64("k"), Ok(u64::MAX));
}

#[test]
fn wrong_type() {
    let f = one_kv_file("k", Value::Str("x".into()));
    assert!(matches!(f.u32("k"), Err(GgufError::WrongType { .. })));
    assert!(matches!(f.u32_opt("k"), Err(GgufError::WrongType { .. })));
    assert!(matches!(f.f32("k"), Err(GgufError::WrongType { .. })));
    assert!(matches!(f.bool_opt("k"), Err(GgufError::WrongType { .. })));
    assert!(matches!(f.str_array("k"), Err(GgufError::WrongType { .. })));
    assert!(matches!(f.f32_array("k"), Err(GgufError::WrongType { .. })));
    let f = one_kv_file("k", Value::U32(1));
    assert!(matches!(f.str("k"), Err(GgufError::WrongType { .. })));
    assert!(matches!(f.str_opt("k"), Err(GgufError::WrongType { .. })));
    assert!(matches!(f.i64_array("k"), Err(GgufError::WrongType { .. })));
    // Arrays whose elements have the wrong type.
    let f = one_kv_file("k", Value::Array(ValueType::U32, vec![Value::U32(1)]));
    assert!(matches!(f.str_array("k"), Err(GgufError::WrongType { .. })));
    let f = one_kv_file("k", str_array(&["a"]));
    assert!(matches!(f.f32_array("k"), Err(GgufError::WrongType { .. })));
    assert!(matches!(f.i64_array("k"), Err(GgufError::WrongType { .. })));
    assert!(matches!(f.u32_or_array("k", 1), Err(GgufError::WrongType { .. })));
}

#[test]
fn missing_key() {
    let f = one_kv_file("k", Value::U32(1));
    assert_eq!(f.u32("nope"), Err(GgufError::MissingKey("nope".into())));
    assert!(matches!(f.u64("nope"), Err(GgufError::MissingKey(_))));
    assert!(matches!(f.f32("nope"), Err(GgufError::MissingKey(_))));
    assert!(matches!(f.str("nope"), Err(GgufError::MissingKey(_))));
    assert!(matches!(f.architecture(), Err(GgufError::MissingKey(_))));
    // The `_opt` and array accessors say "absent" instead.
    assert_eq!(f.u32_opt("nope"), Ok(None));
    assert_eq!(f.i64_opt("nope"), Ok(None));
    assert_eq!(f.f32_opt("nope"), Ok(None));
    assert_eq!(f.bool_opt("nope"), Ok(None));
    assert_eq!(f.str_opt("nope"), Ok(None));
    assert_eq!(f.str_array("nope"), Ok(None));
    assert_eq!(f.f32_array("nope"), Ok(None));
    assert_eq!(f.i64_array("nope"), Ok(None));
    assert_eq!(f.u32_or_array("nope", 2), Ok(None));
    assert_eq!(f.get("nope"), None);
    assert!(!f.contains_key("nope"));
}

#[test]
fn scalar_accessors() {
    let mut w = GgufWriter::new();
    w.kv("general.architecture", Value::Str("llama".into()))
        .kv("f", Value::F64(0.5))
        .kv("int_as_f32", Value::I32(-3))
        .kv("b", Value::Bool(false));
    let f = parse(w.to_bytes());
    assert_eq!(f.architecture(), Ok("llama"));
    assert_eq!(f.str_opt("general.architecture"), Ok(Some("llama")));
    assert_eq!(f.f32("f"), Ok(0.5));
    assert_eq!(f.f32_opt("int_as_f32"), Ok(Some(-3.0)));
    assert_eq!(f.bool_opt("b"), Ok(Some(false)));
}

#[test]
fn array_accessors() {
    let mut w = GgufWriter::new();
    w.kv("strs", str_array(&["a", "", "ü"]))
        .kv("floats", Value::Array(ValueType::F32, vec![Value::F32(0.5), Value::F32(-1.0)]))
        .kv("ints_as_floats", Value::Array(ValueType::U8, vec![Value::U8(3)]))
        .kv("ints", Value::Array(ValueType::I32, vec![Value::I32(-1), Value::I32(5)]))
        .kv("u64s", Value::Array(ValueType::U64, vec![Value::U64(u64::MAX)]))
        .kv("empty", Value::Array(ValueType::F32, vec![]));
    let f = parse(w.to_bytes());
    assert_eq!(f.str_array("strs"), Ok(Some(vec!["a", "", "ü"])));
    assert_eq!(f.f32_array("floats"), Ok(Some(vec![0.5, -1.0])));
    assert_eq!(f.f32_array("ints_as_floats"), Ok(Some(vec![3.0])));
    assert_eq!(f.i64_array("ints"), Ok(Some(vec![-1, 5])));
    assert!(matches!(f.i64_array("u64s"), Err(GgufError::OutOfRange { .. })));
    assert_eq!(f.f32_array("empty"), Ok(Some(vec![])));
    assert_eq!(f.str_array("empty"), Ok(Some(vec![])), "an empty array has no wrong elements");
    assert_eq!(f.i64_array("empty"), Ok(Some(vec![])));
}

#[test]
fn u32_or_array() {
    let mut w = GgufWriter::new();
    w.kv("scalar", Value::U16(8))
        .kv("arr", Value::Array(ValueType::I32, vec![Value::I32(1), Value::I32(2), Value::I32(3)]))
        .kv("negative", Value::Array(ValueType::I32, vec![Value::I32(-1)]))
        .kv("negative_scalar", Value::I8(-1));
    let f = parse(w.to_bytes());
    assert_eq!(f.u32_or_array("scalar", 3), Ok(Some(vec![8, 8, 8])));
    assert_eq!(f.u32_or_array("arr", 3), Ok(Some(vec![1, 2, 3])));
    assert!(matches!(f.u32_or_array("arr", 4), Err(GgufError::OutOfRange { .. })), "length mismatch");
    assert!(matches!(f.u32_or_array("negative", 1), Err(GgufError::OutOfRange { .. })));
    assert!(matches!(f.u32_or_array("negative_scalar", 1), Err(GgufError::OutOfRange { .. })));
}

#[test]
fn versions_2_and_3_are_accepted() {
    for version in [2, 3] {
        let mut w = small_writer();
        w.version = version;
        let f = parse(w.to_bytes());
        assert_eq!(f.version, version);
        assert_eq!(f.u32("llama.block_count"), Ok(2));
        exercise(&f);
    }
}

#[test]
fn default_alignment_is_32() {
    let f = parse(small_file());
    assert_eq!(f.alignment, 32);
    assert_eq!(f.data_offset % 32, 0);
}

#[test]
fn custom_alignment_64_is_honored() {
    let mut w = small_writer();
    w.alignment = 64;
    w.kv("general.alignment", Value::U32(64));
    let f = parse(w.to_bytes());
    assert_eq!(f.alignment, 64);
    assert_eq!(f.data_offset % 64, 0);
    let offsets: Vec<u64> = f.tensors().iter().map(|t| t.offset).collect();
    assert_eq!(offsets, [0, 64], "second tensor starts at the next multiple of 64");
    assert_eq!(f.tensor_data(f.tensor("output").unwrap()), bytemuck::cast_slice::<f32, u8>(&ramp(3)));
}

#[test]
fn tensor_info_and_data_are_exact() {
    let f = parse(small_file());
    let names: Vec<&str> = f.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["tok_embd", "output"]);
    let t = f.tensor("tok_embd").unwrap();
    assert_eq!((t.ne.as_slice(), t.ty, t.size), (&[4u64, 2][..], GgmlType::F32, 32));
    assert_eq!((t.n_elements(), t.ne0(), t.n_rows(), t.row_bytes()), (8, 4, 2, 16));
    assert_eq!(f.tensor_data(t), bytemuck::cast_slice::<f32, u8>(&ramp(8)));
    assert!(f.tensor("missing").is_none());
}

#[test]
fn quantized_tensor_data_is_exact() {
    let q4: Vec<u8> = (0..4 * 18).map(|i| i as u8).collect();
    let mut w = GgufWriter::new();
    w.tensor("q4", GgmlType::Q4_0, &[64, 2], q4.clone()).tensor_f32("empty", &[0, 4], &[]);
    let f = parse(w.to_bytes());
    let t = f.tensor("q4").unwrap();
    assert_eq!((t.size, t.row_bytes(), t.n_rows()), (72, 36, 2));
    assert_eq!(f.tensor_data(t), &q4[..]);
    assert!(f.tensor_data(f.tensor("empty").unwrap()).is_empty());
    exercise(&f);
}

#[test]
fn open_memory_maps_a_file() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf_reader_open.gguf");
    small_writer().write_to(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.bytes(), &small_file()[..]);
    assert_eq!(f.architecture(), Ok("llama"));
    assert_eq!(f.tensor_data(f.tensor("output").unwrap()), bytemuck::cast_slice::<f32, u8>(&ramp(3)));
    exercise(&f);
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(GgufFile::open(&path), Err(ember::Error::Io { .. })));
}

#[test]
fn open_reports_gguf_errors() {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf_reader_bad.gguf");
    std::fs::write(&path, b"GGML\x03\0\0\0").unwrap();
    let r = GgufFile::open(&path);
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(r, Err(ember::Error::Gguf(GgufError::BadMagic { .. }))));
}

// ---- malformed files: header ------------------------------------------------

#[test]
fn bad_magic() {
    let e = parse_err(patched(|b| b[..4].copy_from_slice(b"GGML")));
    assert_eq!(e, GgufError::BadMagic { found: *b"GGML" });
}

#[test]
fn unsupported_versions() {
    for version in [0, 1, 4, u32::MAX] {
        let mut w = small_writer();
        w.version = version;
        assert_eq!(parse_err(w.to_bytes()), GgufError::UnsupportedVersion(version));
    }
}

#[test]
fn big_endian_version() {
    for version in [2u32, 3] {
        let mut w = small_writer();
        w.version = version.swap_bytes();
        assert_eq!(parse_err(w.to_bytes()), GgufError::BigEndian);
    }
}

#[test]
fn empty_and_tiny_files_are_truncated() {
    for len in 0..4 {
        assert!(matches!(parse_err(vec![b'G'; len]), GgufError::Truncated { .. }), "len {len}");
    }
}

/// Every prefix of a valid file with tensors is an error: `Truncated` while
/// the cut is in the header, metadata or tensor table, `TensorOutOfBounds`
/// after it. (A file without tensors may legally end right after its metadata.)
#[test]
fn truncated_at_every_length() {
    for (name, bytes) in seed_files() {
        let f = parse(bytes.clone());
        let Some(last) = f.tensors().last() else { continue };
        let table_end = tensor_at(&bytes, &last.name).end;
        for len in 0..bytes.len() {
            let e = parse_err(bytes[..len].to_vec());
            if len < table_end {
                assert!(matches!(e, GgufError::Truncated { .. }), "{name}: cut at {len}: {e:?}");
            } else {
                assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{name}: cut at {len}: {e:?}");
            }
        }
    }
}

#[test]
fn absurd_kv_count() {
    for n in [u64::MAX, 1 << 40] {
        let e = parse_err(patched(|b| b.put_u64(N_KV_OFF, n)));
        assert!(matches!(e, GgufError::TooLarge { value, .. } if value == n), "{e:?}");
    }
    // Within the limit but more than the file could hold.
    let e = parse_err(patched(|b| b.put_u64(N_KV_OFF, 1000)));
    assert!(matches!(e, GgufError::Truncated { .. }), "{e:?}");
}

#[test]
fn absurd_tensor_count() {
    for n in [u64::MAX, 1 << 40] {
        let e = parse_err(patched(|b| b.put_u64(N_TENSORS_OFF, n)));
        assert!(matches!(e, GgufError::TooLarge { value, .. } if value == n), "{e:?}");
    }
    let e = parse_err(patched(|b| b.put_u64(N_TENSORS_OFF, 1000)));
    assert!(matches!(e, GgufError::Truncated { .. }), "{e:?}");
}

// ---- malformed files: metadata ------------------------------------------------

#[test]
fn absurd_key_length() {
    let e = parse_err(patched(|b| b.put_u64(kv_at(b, "llama.block_count").key_len, u64::MAX)));
    assert!(matches!(e, GgufError::TooLarge { value: u64::MAX, .. }), "{e:?}");
    let e = parse_err(patched(|b| b.put_u64(kv_at(b, "llama.block_count").key_len, 60_000)));
    assert!(matches!(e, GgufError::Truncated { .. }), "{e:?}");
}

#[test]
fn absurd_string_value_length() {
    let e = parse_err(patched(|b| b.put_u64(kv_at(b, "general.architecture").value, u64::MAX)));
    assert!(matches!(e, GgufError::TooLarge { value: u64::MAX, .. }), "{e:?}");
    let e = parse_err(patched(|b| b.put_u64(kv_at(b, "general.architecture").value, 1 << 20)));
    assert!(matches!(e, GgufError::Truncated { .. }), "{e:?}");
}

#[test]
fn absurd_tensor_name_length() {
    let e = parse_err(patched(|b| b.put_u64(tensor_at(b, "output").name_len, u64::MAX)));
    assert!(matches!(e, GgufError::TooLarge { value: u64::MAX, .. }), "{e:?}");
}

#[test]
fn absurd_array_length_does_not_allocate() {
    // Counts over the limit, and counts within it that the file cannot hold,
    // fail before the element vector is allocated (1 << 40 elements would be
    // tens of TiB; 1 << 27 Values would be GiBs).
    let count_at = |b: &[u8]| kv_at(b, "llama.rope.dims").value + 4;
    let start = std::time::Instant::now();
    for n in [u64::MAX, 1 << 40] {
        let e = parse_err(patched(|b| b.put_u64(count_at(b), n)));
        assert!(matches!(e, GgufError::TooLarge { value, .. } if value == n), "{e:?}");
    }
    let e = parse_err(patched(|b| b.put_u64(count_at(b), 1 << 27)));
    assert!(matches!(e, GgufError::Truncated { .. }), "{e:?}");
    assert!(start.elapsed().as_secs() < 1);
}

#[test]
fn unknown_value_type() {
    for ty in [13, 255, u32::MAX] {
        let e = parse_err(patched(|b| b.put_u32(kv_at(b, "llama.block_count").ty, ty)));
        assert!(matches!(e, GgufError::UnknownValueType { ty: t, ref key, .. } if t == ty && key == "llama.block_count"), "{e:?}");
    }
}

#[test]
fn unknown_array_element_type() {
    let e = parse_err(patched(|b| b.put_u32(kv_at(b, "llama.rope.dims").value, 13)));
    assert!(matches!(e, GgufError::UnknownValueType { ty: 13, .. }), "{e:?}");
}

/// `depth` arrays nested inside each other, the innermost empty.
fn nested_arrays(depth: usize) -> Value {
    let mut v = Value::Array(ValueType::U8, vec![]);
    for _ in 1..depth {
        v = Value::Array(ValueType::Array, vec![v]);
    }
    v
}

#[test]
fn nesting_depth() {
    assert_eq!(one_kv_file("deep", nested_arrays(4)).get("deep"), Some(&nested_arrays(4)));
    let e = parse_err(one_kv("deep", nested_arrays(5)).to_bytes());
    assert!(matches!(e, GgufError::NestingTooDeep { ref key, .. } if key == "deep"), "{e:?}");
}

#[test]
fn invalid_utf8() {
    let e = parse_err(patched(|b| b.put_u8(kv_at(b, "llama.block_count").key, 0xFF)));
    assert!(matches!(e, GgufError::InvalidUtf8 { ref what, .. } if what == "metadata key"), "{e:?}");
    let e = parse_err(patched(|b| b.put_u8(kv_at(b, "general.architecture").value + 8, 0xC3)));
    assert!(matches!(e, GgufError::InvalidUtf8 { .. }), "{e:?}");
    let e = parse_err(patched(|b| b.put_u8(tensor_at(b, "output").name_len + 8, 0x80)));
    assert!(matches!(e, GgufError::InvalidUtf8 { ref what, .. } if what == "tensor name"), "{e:?}");
}

#[test]
fn duplicate_key() {
    let mut w = small_writer();
    w.kv("llama.block_count", Value::U32(3));
    assert_eq!(parse_err(w.to_bytes()), GgufError::DuplicateKey("llama.block_count".into()));
}

#[test]
fn bool_out_of_range() {
    for b in [2u8, 0xFF] {
        let mut bytes = one_kv("flag", Value::Bool(true)).to_bytes();
        bytes.put_u8(kv_at(&bytes, "flag").value, b);
        assert!(matches!(parse_err(bytes), GgufError::OutOfRange { ref key, .. } if key == "flag"));
    }
}

#[test]
fn bad_alignment() {
    for a in [Value::U32(0), Value::U32(7), Value::U32(3), Value::U64(12), Value::U32(2 << 20)] {
        let e = parse_err(one_kv("general.alignment", a.clone()).to_bytes());
        assert!(matches!(e, GgufError::BadAlignment(_)), "{a:?}: {e:?}");
    }
    let e = parse_err(one_kv("general.alignment", Value::I32(-32)).to_bytes());
    assert_eq!(e, GgufError::BadAlignment(0));
    for a in [Value::Str("32".into()), Value::F32(32.0), Value::Bool(true)] {
        let e = parse_err(one_kv("general.alignment", a.clone()).to_bytes());
        assert!(matches!(e, GgufError::WrongType { ref key, .. } if key == "general.alignment"), "{a:?}: {e:?}");
    }
}

// ---- malformed files: tensor table and data ------------------------------------------------

#[test]
fn duplicate_tensor() {
    let mut w = small_writer();
    w.tensor_f32("output", &[1], &[1.0]);
    assert_eq!(parse_err(w.to_bytes()), GgufError::DuplicateTensor("output".into()));
}

#[test]
fn unknown_tensor_type() {
    for ty in [4, 5, 31, 36, 1000, u32::MAX] {
        let e = one_tensor_err(ty, &[32], vec![0; 128]);
        assert!(matches!(e, GgufError::UnknownTensorType { ty: t, .. } if t == ty), "{e:?}");
    }
}

#[test]
fn too_many_dims() {
    let e = one_tensor_err(0, &[1, 1, 1, 1, 1], vec![0; 4]);
    assert_eq!(e, GgufError::BadDims { tensor: "t".into(), n_dims: 5 });
    let e = parse_err(patched(|b| b.put_u32(tensor_at(b, "output").n_dims, u32::MAX)));
    assert!(matches!(e, GgufError::BadDims { n_dims: u32::MAX, .. }), "{e:?}");
}

#[test]
fn dims_overflow() {
    let cases: [&[u64]; 7] = [
        &[u64::MAX / 2, 4],
        &[i64::MAX as u64 + 1],
        &[1, u64::MAX],
        &[1 << 32, 1 << 32],
        &[1 << 31, 1 << 31],
        // A zero dim makes the tensor empty but must not hide the overflow
        // of the others (found by cargo-fuzz: `n_rows` overflowed).
        &[0, 1 << 40, 1 << 40],
        &[1 << 40, 0, 1 << 40],
    ];
    for ne in cases {
        let e = one_tensor_err(GgmlType::F32 as u32, ne, vec![]);
        assert!(matches!(e, GgufError::DimsOverflow { .. }), "{ne:?}: {e:?}");
    }
}

#[test]
fn row_not_block_multiple() {
    let e = one_tensor_err(GgmlType::Q4_0 as u32, &[33], vec![0; 36]);
    assert!(matches!(e, GgufError::RowNotBlockMultiple { ne0: 33, .. }), "{e:?}");
    let e = one_tensor_err(GgmlType::Q4_K as u32, &[128, 2], vec![0; 288]);
    assert!(matches!(e, GgufError::RowNotBlockMultiple { ne0: 128, .. }), "{e:?}");
}

#[test]
fn misaligned_tensor_offset() {
    for off in [4, 16, 33] {
        let e = parse_err(patched(|b| b.put_u64(tensor_at(b, "output").offset, off)));
        assert!(matches!(e, GgufError::Misaligned { offset, alignment: 32, .. } if offset == off), "{e:?}");
    }
}

#[test]
fn tensor_data_out_of_bounds() {
    for off in [64, 1 << 20, u64::MAX - 31] {
        let e = parse_err(patched(|b| b.put_u64(tensor_at(b, "output").offset, off)));
        assert!(matches!(e, GgufError::TensorOutOfBounds { start, .. } if start == off), "{e:?}");
    }
    // A dimension that makes the tensor bigger than the file.
    let e = parse_err(patched(|b| b.put_u64(tensor_at(b, "output").dims, 1 << 30)));
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e:?}");
}

/// An empty tensor in a file that ends inside the padding before the data
/// section: there is no data section, so even [0, 0) is out of bounds (this
/// used to parse, and `tensor_data` then sliced past the end and panicked).
#[test]
fn empty_tensor_in_file_without_data_section() {
    let mut w = GgufWriter::new();
    w.tensor_f32("empty", &[0], &[]);
    let bytes = w.to_bytes();
    let table_end = tensor_at(&bytes, "empty").end;
    assert!(bytes.len() > table_end, "the writer pads to the data section");
    let e = parse_err(bytes[..table_end].to_vec());
    assert!(matches!(e, GgufError::TensorOutOfBounds { start: 0, end: 0, .. }), "{e:?}");
    let f = parse(bytes);
    assert!(f.tensor_data(&f.tensors()[0]).is_empty());
}

#[test]
fn overlapping_tensors() {
    let e = parse_err(patched(|b| b.put_u64(tensor_at(b, "output").offset, 0)));
    assert!(matches!(e, GgufError::TensorOverlap { .. }), "{e:?}");
    // Empty tensors overlap nothing.
    let mut w = small_writer();
    w.tensor_f32("empty", &[0], &[]);
    let mut bytes = w.to_bytes();
    bytes.put_u64(tensor_at(&bytes, "empty").offset, 0);
    parse(bytes);
}

/// The in-memory copy the CPU backend reads (huge pages or not) holds the
/// same metadata and every tensor's bytes, and is no longer a file mapping.
#[test]
fn copy_to_memory_keeps_every_byte() {
    let path = std::env::temp_dir().join(format!("ember-copy-{}.gguf", std::process::id()));
    std::fs::write(&path, small_file()).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert!(f.is_mapped());
    for huge in [false, true] {
        let c = f.copy_to_memory(huge).unwrap();
        assert!(!c.is_mapped());
        assert_eq!(c.bytes(), &std::fs::read(&path).unwrap()[..]);
        assert_eq!(c.metadata(), f.metadata());
        assert_eq!(c.tensors().len(), f.tensors().len());
        for t in f.tensors() {
            assert_eq!(c.tensor_data(c.tensor(&t.name).unwrap()), f.tensor_data(t), "{}", t.name);
        }
    }
    std::fs::remove_file(&path).ok();
}
