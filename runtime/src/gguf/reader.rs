//! Parsing of the GGUF header, metadata and tensor table, and typed access
//! to them ([`GgufFile`]). Where the bytes live is `backing.rs`'s business.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use super::backing::Backing;
use super::value::{Value, ValueType};
use super::{GgufError, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};
use crate::error::Result;
use crate::quant::GgmlType;

/// Caps on sizes a file may claim. Counts are also bounded by the bytes left
/// in the file, so these only matter for files that are themselves huge.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_kv: u64,
    pub max_tensors: u64,
    pub max_key_len: u64,
    pub max_string_len: u64,
    pub max_array_len: u64,
    pub max_array_depth: u32,
    pub max_tensor_name_len: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_kv: 1 << 16,
            max_tensors: 1 << 20,
            max_key_len: 65_535,
            max_string_len: 64 << 20,
            max_array_len: 1 << 28,
            max_array_depth: 4,
            max_tensor_name_len: 1024,
        }
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml's `ne`: `ne[0]` is the contiguous (row) dimension.
    pub ne: Vec<u64>,
    pub ty: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.ne.iter().product()
    }
    /// Elements per row (`ne[0]`).
    pub fn ne0(&self) -> usize {
        self.ne.first().copied().unwrap_or(1) as usize
    }
    /// Number of rows: the product of all dimensions but the first.
    pub fn n_rows(&self) -> usize {
        self.ne.iter().skip(1).product::<u64>() as usize
    }
    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        // Validated at parse time: ne0 is a whole number of blocks.
        self.ty.row_size(self.ne0()).unwrap_or(0)
    }
}

/// A parsed GGUF file. Tensor data stays in the memory map.
pub struct GgufFile {
    backing: Backing,
    pub version: u32,
    pub alignment: u64,
    /// Byte offset of the tensor data section in the file.
    pub data_offset: u64,
    kv: Vec<(String, Value)>,
    kv_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("n_kv", &self.kv.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses a file.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        Ok(Self::parse(Backing::map_file(path.as_ref())?, &Limits::default())?)
    }

    /// Memory-maps and parses `len` bytes of an open file starting at byte
    /// `offset` (a GGUF stored inside a larger file: an uncompressed Android
    /// asset, a content-URI descriptor). `len == 0` means "to the end of the
    /// file". `what` names the source in error messages.
    pub fn open_file_range(file: &File, offset: u64, len: u64, what: &str) -> Result<GgufFile> {
        Ok(Self::parse(Backing::map_file_range(file, offset, len, what)?, &Limits::default())?)
    }

    /// Whether the bytes are a file mapping (rather than memory of our own).
    pub fn is_mapped(&self) -> bool {
        self.backing.is_mapped()
    }

    /// The same file with its bytes copied into anonymous memory, backed by
    /// transparent huge pages when `huge` and the OS offers them (Linux); the
    /// parsed tables are cloned, not re-parsed. Why and how: see
    /// [`Backing::copy_to_anon`].
    pub fn copy_to_memory(&self, huge: bool) -> std::io::Result<GgufFile> {
        Ok(GgufFile {
            backing: self.backing.copy_to_anon(huge)?,
            version: self.version,
            alignment: self.alignment,
            data_offset: self.data_offset,
            kv: self.kv.clone(),
            kv_index: self.kv_index.clone(),
            tensors: self.tensors.clone(),
            tensor_index: self.tensor_index.clone(),
        })
    }

    /// Parses a file already in memory (tests, fuzzing, embedded assets).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        Self::parse(Backing::Owned(bytes), &Limits::default())
    }

    /// Parses with explicit limits.
    pub fn from_bytes_with_limits(bytes: Vec<u8>, limits: &Limits) -> Result<GgufFile, GgufError> {
        Self::parse(Backing::Owned(bytes), limits)
    }

    fn parse(backing: Backing, limits: &Limits) -> Result<GgufFile, GgufError> {
        let bytes = backing.bytes();
        let mut c = Cursor { buf: bytes, pos: 0 };

        let magic_bytes = c.take(4, "magic")?;
        let magic = u32::from_le_bytes(magic_bytes.try_into().unwrap_or([0; 4]));
        if magic != GGUF_MAGIC {
            let mut found = [0u8; 4];
            found.copy_from_slice(magic_bytes);
            return Err(GgufError::BadMagic { found });
        }
        let version = c.u32("version")?;
        if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
            return Err(GgufError::BigEndian);
        }
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors_off = c.pos;
        let n_tensors = c.u64("tensor count")?;
        let n_kv_off = c.pos;
        let n_kv = c.u64("metadata key/value count")?;
        // Each kv takes at least 8 (key len) + 4 (type) + 1 bytes; each tensor
        // info at least 8 + 4 + 4 + 8 bytes.
        check_count("metadata key/value count", n_kv, limits.max_kv, 13, &c, n_kv_off)?;
        check_count("tensor count", n_tensors, limits.max_tensors, 24, &c, n_tensors_off)?;

        let mut kv = Vec::with_capacity(n_kv as usize);
        let mut kv_index = HashMap::with_capacity(n_kv as usize);
        for _ in 0..n_kv {
            let key = c.string("metadata key", limits.max_key_len)?;
            let ty_off = c.pos;
            let ty = c.u32("value type")?;
            let ty = ValueType::from_u32(ty).ok_or_else(|| GgufError::UnknownValueType { key: key.clone(), ty, offset: ty_off as u64 })?;
            let value = c.value(ty, &key, limits, 0)?;
            if kv_index.insert(key.clone(), kv.len()).is_some() {
                return Err(GgufError::DuplicateKey(key));
            }
            kv.push((key, value));
        }

        let alignment = match kv_index.get("general.alignment").map(|&i| &kv[i].1) {
            None => GGUF_DEFAULT_ALIGNMENT,
            Some(v) => {
                let a = v.as_int().ok_or_else(|| GgufError::WrongType {
                    key: "general.alignment".into(),
                    expected: "integer".into(),
                    found: format!("{:?}", v.value_type()),
                })?;
                if a <= 0 || a % 8 != 0 || a > (1 << 20) {
                    return Err(GgufError::BadAlignment(a.clamp(0, u64::MAX as i128) as u64));
                }
                a as u64
            }
        };

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = c.string("tensor name", limits.max_tensor_name_len)?;
            let n_dims = c.u32("tensor n_dims")?;
            if n_dims as usize > MAX_DIMS {
                return Err(GgufError::BadDims { tensor: name, n_dims });
            }
            let mut ne = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                ne.push(c.u64("tensor dimension")?);
            }
            let ty_raw = c.u32("tensor type")?;
            let offset = c.u64("tensor data offset")?;
            let ty = GgmlType::from_u32(ty_raw).ok_or_else(|| GgufError::UnknownTensorType { tensor: name.clone(), ty: ty_raw })?;
            let size = tensor_size(&name, &ne, ty)?;
            if offset % alignment != 0 {
                return Err(GgufError::Misaligned { tensor: name, offset, alignment });
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(GgufError::DuplicateTensor(name));
            }
            tensors.push(TensorInfo { name, ne, ty, offset, size });
        }

        let data_offset = align_up(c.pos as u64, alignment);
        // `None` when the file ends before the (aligned) data section starts:
        // then no tensor, not even an empty one, has its data in the file.
        let data_len = (bytes.len() as u64).checked_sub(data_offset);
        for t in &tensors {
            let end = t.offset.checked_add(t.size);
            match (end, data_len) {
                (Some(end), Some(len)) if end <= len => {}
                _ => {
                    return Err(GgufError::TensorOutOfBounds {
                        tensor: t.name.clone(),
                        start: t.offset,
                        end: end.unwrap_or(u64::MAX),
                        len: data_len.unwrap_or(0),
                    })
                }
            }
        }
        // Overlap check: sort by offset, each tensor must end before the next starts.
        let mut order: Vec<usize> = (0..tensors.len()).filter(|&i| tensors[i].size > 0).collect();
        order.sort_by_key(|&i| tensors[i].offset);
        for w in order.windows(2) {
            let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
            if a.offset + a.size > b.offset {
                return Err(GgufError::TensorOverlap { a: a.name.clone(), b: b.name.clone() });
            }
        }

        Ok(GgufFile { backing, version, alignment, data_offset, kv, kv_index, tensors, tensor_index })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.kv
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.kv_index.get(key).map(|&i| &self.kv[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.kv_index.contains_key(key)
    }

    fn required(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }

    fn int_as<T: TryFrom<i128>>(&self, key: &str, v: &Value, expected: &str) -> Result<T, GgufError> {
        let i = v.as_int().ok_or_else(|| wrong_type(key, expected, v))?;
        T::try_from(i).map_err(|_| GgufError::OutOfRange { key: key.into(), value: i.to_string(), expected: expected.into() })
    }

    /// An integer key as u32 (any integer type whose value fits is accepted).
    pub fn u32(&self, key: &str) -> Result<u32, GgufError> {
        let v = self.required(key)?;
        self.int_as(key, v, "u32")
    }
    pub fn u32_opt(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.get(key).map(|v| self.int_as(key, v, "u32")).transpose()
    }
    pub fn u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.required(key)?;
        self.int_as(key, v, "u64")
    }
    pub fn i64_opt(&self, key: &str) -> Result<Option<i64>, GgufError> {
        self.get(key).map(|v| self.int_as(key, v, "i64")).transpose()
    }
    pub fn f32(&self, key: &str) -> Result<f32, GgufError> {
        let v = self.required(key)?;
        v.as_f64().map(|x| x as f32).ok_or_else(|| wrong_type(key, "f32", v))
    }
    pub fn f32_opt(&self, key: &str) -> Result<Option<f32>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_f64().map(|x| Some(x as f32)).ok_or_else(|| wrong_type(key, "f32", v)),
        }
    }
    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| wrong_type(key, "bool", v)),
        }
    }
    pub fn str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.required(key)?;
        v.as_str().ok_or_else(|| wrong_type(key, "string", v))
    }
    pub fn str_opt(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| wrong_type(key, "string", v)),
        }
    }
    fn array(&self, key: &str) -> Result<Option<&[Value]>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_array().map(Some).ok_or_else(|| wrong_type(key, "array", v)),
        }
    }
    /// A string array, or `None` if the key is absent.
    pub fn str_array(&self, key: &str) -> Result<Option<Vec<&str>>, GgufError> {
        let Some(a) = self.array(key)? else { return Ok(None) };
        a.iter().map(|v| v.as_str().ok_or_else(|| wrong_type(key, "array of strings", v))).collect::<Result<Vec<_>, _>>().map(Some)
    }
    /// A numeric array as f32, or `None` if the key is absent.
    pub fn f32_array(&self, key: &str) -> Result<Option<Vec<f32>>, GgufError> {
        let Some(a) = self.array(key)? else { return Ok(None) };
        a.iter()
            .map(|v| v.as_f64().map(|x| x as f32).ok_or_else(|| wrong_type(key, "array of numbers", v)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
    /// An integer array as i64, or `None` if the key is absent.
    pub fn i64_array(&self, key: &str) -> Result<Option<Vec<i64>>, GgufError> {
        let Some(a) = self.array(key)? else { return Ok(None) };
        a.iter().map(|v| self.int_as::<i64>(key, v, "i64")).collect::<Result<Vec<_>, _>>().map(Some)
    }
    /// A per-layer value that may be a single integer or an array of `n` integers
    /// (llama.cpp's `get_key_or_arr`).
    pub fn u32_or_array(&self, key: &str, n: usize) -> Result<Option<Vec<u32>>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(..)) => {
                let a = self.i64_array(key)?.unwrap_or_default();
                if a.len() != n {
                    return Err(GgufError::OutOfRange {
                        key: key.into(),
                        value: format!("array of {}", a.len()),
                        expected: format!("array of {n}"),
                    });
                }
                a.into_iter()
                    .map(|x| {
                        u32::try_from(x).map_err(|_| GgufError::OutOfRange {
                            key: key.into(),
                            value: x.to_string(),
                            expected: "u32".into(),
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            }
            Some(_) => Ok(Some(vec![self.u32(key)?; n])),
        }
    }

    /// The architecture name (`general.architecture`).
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.str("general.architecture")
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor, straight from the map (bounds checked at parse time).
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let start = (self.data_offset + t.offset) as usize;
        &self.bytes()[start..start + t.size as usize]
    }
}

fn wrong_type(key: &str, expected: &str, v: &Value) -> GgufError {
    GgufError::WrongType { key: key.into(), expected: expected.into(), found: format!("{:?}", v.value_type()) }
}

pub(crate) fn align_up(o: u64, a: u64) -> u64 {
    o + (a - o % a) % a
}

/// Checks a count read at `offset`: above `limit` it is `TooLarge`; if its
/// items (at least `min_size` bytes each) cannot fit in the bytes left after
/// the cursor, the file is `Truncated`. Either way nothing is allocated.
fn check_count(what: &str, n: u64, limit: u64, min_size: usize, c: &Cursor<'_>, offset: usize) -> Result<(), GgufError> {
    if n > limit {
        return Err(GgufError::TooLarge { what: what.into(), value: n, limit, offset: offset as u64 });
    }
    let need = n.saturating_mul(min_size as u64);
    if need > c.left() as u64 {
        return Err(GgufError::Truncated { what: format!("{n} items of {what}"), offset: c.pos as u64, need, left: c.left() as u64 });
    }
    Ok(())
}

fn tensor_size(name: &str, ne: &[u64], ty: GgmlType) -> Result<u64, GgufError> {
    let overflow = || GgufError::DimsOverflow { tensor: name.into(), dims: ne.to_vec() };
    // ggml stores ne as int64: every dim and every product of dims must fit
    // (`n_rows` multiplies all but the first), so a zero dim must not hide an
    // overflow of the others: bound the product of the non-zero dims.
    let mut nonzero: u64 = 1;
    for &d in ne {
        if d > i64::MAX as u64 {
            return Err(overflow());
        }
        nonzero = nonzero.checked_mul(d.max(1)).ok_or_else(overflow)?;
    }
    if nonzero > i64::MAX as u64 {
        return Err(overflow());
    }
    let n = if ne.contains(&0) { 0 } else { nonzero };
    let ne0 = ne.first().copied().unwrap_or(1);
    let bs = ty.block_size() as u64;
    if ne0 % bs != 0 {
        return Err(GgufError::RowNotBlockMultiple { tensor: name.into(), ne0, ty: ty.name().into() });
    }
    (n / bs).checked_mul(ty.type_size() as u64).ok_or_else(overflow)
}

/// A bounds-checked little-endian reader.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], GgufError> {
        if n > self.left() {
            return Err(GgufError::Truncated { what: what.into(), offset: self.pos as u64, need: n as u64, left: self.left() as u64 });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }

    fn string(&mut self, what: &str, max: u64) -> Result<String, GgufError> {
        let off = self.pos;
        let len = self.u64(what)?;
        if len > max {
            return Err(GgufError::TooLarge { what: format!("{what} length"), value: len, limit: max, offset: off as u64 });
        }
        let s = self.take(len as usize, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| GgufError::InvalidUtf8 { what: what.into(), offset: off as u64 + 8 })
    }

    fn value(&mut self, ty: ValueType, key: &str, limits: &Limits, depth: u32) -> Result<Value, GgufError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.arr::<1>(key)?[0]),
            ValueType::I8 => Value::I8(self.arr::<1>(key)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.arr(key)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.arr(key)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.arr(key)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.arr(key)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.arr(key)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.arr(key)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.arr(key)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.arr(key)?)),
            ValueType::Bool => {
                let off = self.pos;
                match self.arr::<1>(key)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => {
                        return Err(GgufError::OutOfRange {
                            key: key.into(),
                            value: format!("{b} at offset {off}"),
                            expected: "bool (0 or 1)".into(),
                        })
                    }
                }
            }
            ValueType::Str => Value::Str(self.string(key, limits.max_string_len)?),
            ValueType::Array => {
                if depth >= limits.max_array_depth {
                    return Err(GgufError::NestingTooDeep { key: key.into(), offset: self.pos as u64 });
                }
                let ty_off = self.pos;
                let et = self.u32(key)?;
                let et = ValueType::from_u32(et).ok_or_else(|| GgufError::UnknownValueType {
                    key: key.into(),
                    ty: et,
                    offset: ty_off as u64,
                })?;
                let n_off = self.pos;
                let n = self.u64(key)?;
                let what = format!("array length of '{key}'");
                check_count(&what, n, limits.max_array_len, et.min_encoded_size(), self, n_off)?;
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(et, key, limits, depth + 1)?);
                }
                Value::Array(et, v)
            }
        })
    }
}
