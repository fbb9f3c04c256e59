//! A structure-aware GGUF mutator: a lenient parse of the header, the
//! metadata records and the tensor records (independent of the real reader,
//! so files it rejects can still be edited), one or more edits of those
//! records, and a re-serialization that keeps the tensor data section as it
//! was. Edits target what a hostile file can lie about: metadata values
//! (boundary integers, odd floats, strings, array lengths and element types,
//! type tags), tensor records (dimension counts and sizes, type ids, data
//! offsets, names and layer numbers), duplicated or missing keys and tensors,
//! and the counts and lengths written in the file itself.

use super::Rng;

const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STR: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

/// Integers that make counts, sizes, ids and offsets absurd or off by a little.
pub const BOUNDARY_INTS: &[i128] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    16,
    31,
    32,
    64,
    255,
    256,
    4096,
    65535,
    65536,
    1 << 24,
    i32::MAX as i128,
    1 << 31,
    u32::MAX as i128,
    1 << 32,
    1 << 40,
    i64::MAX as i128,
    1 << 63,
    u64::MAX as i128,
    -1,
    -2,
    -128,
    i32::MIN as i128,
    i64::MIN as i128,
];

const ODD_FLOATS: &[f64] = &[0.0, -0.0, 1.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e-45, 1e-6, 1e38, 3.4e38, 1e300, 0.5, 1e6];

/// Per-architecture key suffixes the loaders read (added with the file's own
/// `general.architecture` prefix).
const ARCH_KEYS: &[&str] = &[
    "context_length",
    "embedding_length",
    "block_count",
    "feed_forward_length",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "attention.layer_norm_rms_epsilon",
    "attention.sliding_window",
    "attention.q_lora_rank",
    "attention.kv_lora_rank",
    "attention.scale",
    "rope.dimension_count",
    "rope.freq_base",
    "rope.scaling.type",
    "rope.scaling.factor",
    "rope.scaling.attn_factor",
    "rope.scaling.original_context_length",
    "vocab_size",
    "embedding_scale",
    "residual_scale",
    "logit_scale",
    "final_logit_softcapping",
    "attn_logit_softcapping",
];

const OTHER_KEYS: &[&str] = &[
    "general.architecture",
    "general.alignment",
    "general.name",
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.scores",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.add_bos_token",
    "tokenizer.ggml.add_eos_token",
    "tokenizer.ggml.add_space_prefix",
    "tokenizer.chat_template",
];

const ARCHS: &[&str] = &["llama", "minicpm", "minicpm3", "qwen2", "qwen3", "gemma3", "phi3", "olmo2", "gpt2", ""];

const STRINGS: &[&str] = &[
    "",
    "none",
    "linear",
    "longrope",
    "yarn",
    "llama",
    "gpt2",
    "default",
    "llama-bpe",
    "qwen2",
    "smollm",
    "gpt-2",
    "<unk>",
    "<s>",
    "</s>",
    "<0x0A>",
    "<0xZZ>",
    "<0x",
    "\u{2581}",
    "\u{120} a",
    "a b",
    "a  b",
    " ",
    "a b c",
    "{{ messages }}",
    "{% for m in messages %}{{ m.content }}{% endfor %}",
];

/// One metadata value as written (integers kept as their raw bytes).
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// 1, 2, 4 or 8 little-endian bytes.
    Scalar(Vec<u8>),
    Str(Vec<u8>),
    Array {
        elem: u32,
        items: Vec<RawValue>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawKv {
    pub key: Vec<u8>,
    pub ty: u32,
    pub value: RawValue,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub name: Vec<u8>,
    pub dims: Vec<u64>,
    pub ty: u32,
    pub offset: u64,
}

/// A GGUF file as records: what [`RawGguf::parse`] read and
/// [`RawGguf::to_bytes`] writes back.
#[derive(Debug, Clone, PartialEq)]
pub struct RawGguf {
    pub version: u32,
    pub kv: Vec<RawKv>,
    pub tensors: Vec<RawTensor>,
    /// The tensor data section (from its aligned start to the end of the file).
    pub data: Vec<u8>,
}

fn scalar_size(ty: u32) -> Option<usize> {
    match ty {
        T_U8 | T_I8 | T_BOOL => Some(1),
        T_U16 | T_I16 => Some(2),
        T_U32 | T_I32 | T_F32 => Some(4),
        T_U64 | T_I64 | T_F64 => Some(8),
        _ => None,
    }
}

struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cur<'_> {
    fn take(&mut self, n: u64) -> Option<&[u8]> {
        let n = usize::try_from(n).ok()?;
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn left(&self) -> u64 {
        (self.b.len() - self.pos) as u64
    }
    fn string(&mut self) -> Option<Vec<u8>> {
        let n = self.u64()?;
        Some(self.take(n)?.to_vec())
    }
    fn value(&mut self, ty: u32, depth: u32) -> Option<RawValue> {
        if let Some(n) = scalar_size(ty) {
            return Some(RawValue::Scalar(self.take(n as u64)?.to_vec()));
        }
        match ty {
            T_STR => Some(RawValue::Str(self.string()?)),
            T_ARRAY if depth < 4 => {
                let elem = self.u32()?;
                let n = self.u64()?;
                // Every element takes at least one byte: a count past the
                // bytes left is a lie this parse does not believe.
                if n > self.left() {
                    return None;
                }
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1)?);
                }
                Some(RawValue::Array { elem, items })
            }
            _ => None,
        }
    }
}

pub fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a).saturating_mul(a)
}

/// Where a field was written, for edits that make the file lie about it.
#[derive(Debug, Clone, Copy)]
enum Field {
    U32(usize),
    U64(usize),
}

impl RawGguf {
    /// Reads the records of a (little-endian) GGUF, checking only that every
    /// count and length fits the bytes that are there.
    pub fn parse(b: &[u8]) -> Option<RawGguf> {
        let mut c = Cur { b, pos: 0 };
        if c.take(4)? != b"GGUF" {
            return None;
        }
        let version = c.u32()?;
        let n_tensors = c.u64()?;
        let n_kv = c.u64()?;
        // A key/value record takes at least 13 bytes, a tensor record at least 24.
        if n_kv > c.left() / 13 || n_tensors > c.left() / 24 {
            return None;
        }
        let mut kv = Vec::with_capacity(n_kv as usize);
        for _ in 0..n_kv {
            let key = c.string()?;
            let ty = c.u32()?;
            let value = c.value(ty, 0)?;
            kv.push(RawKv { key, ty, value });
        }
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = c.string()?;
            let n_dims = c.u32()?;
            if n_dims > 8 {
                return None;
            }
            let dims = (0..n_dims).map(|_| c.u64()).collect::<Option<Vec<_>>>()?;
            let ty = c.u32()?;
            let offset = c.u64()?;
            tensors.push(RawTensor { name, dims, ty, offset });
        }
        let mut g = RawGguf { version, kv, tensors, data: Vec::new() };
        let start = align_up(c.pos as u64, g.alignment()).min(b.len() as u64) as usize;
        g.data = b[start..].to_vec();
        Some(g)
    }

    /// `general.alignment` as the reader takes it (32 when absent or unusable).
    pub fn alignment(&self) -> u64 {
        let a = self.kv.iter().rev().find(|k| k.key == b"general.alignment").and_then(|k| match (&k.value, k.ty) {
            (RawValue::Scalar(v), T_U32) => Some(u32::from_le_bytes(v[..4].try_into().ok()?) as u64),
            _ => None,
        });
        match a {
            Some(a) if a > 0 && a % 8 == 0 && a <= 1 << 20 => a,
            _ => 32,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.write().0
    }

    fn write(&self) -> (Vec<u8>, Vec<Field>) {
        let mut out = Vec::new();
        let mut fields = Vec::new();
        out.extend_from_slice(b"GGUF");
        fields.push(Field::U32(out.len()));
        out.extend_from_slice(&self.version.to_le_bytes());
        fields.push(Field::U64(out.len()));
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        fields.push(Field::U64(out.len()));
        out.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
        for k in &self.kv {
            write_str(&mut out, &mut fields, &k.key);
            fields.push(Field::U32(out.len()));
            out.extend_from_slice(&k.ty.to_le_bytes());
            write_value(&mut out, &mut fields, &k.value);
        }
        for t in &self.tensors {
            write_str(&mut out, &mut fields, &t.name);
            fields.push(Field::U32(out.len()));
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                fields.push(Field::U64(out.len()));
                out.extend_from_slice(&d.to_le_bytes());
            }
            fields.push(Field::U32(out.len()));
            out.extend_from_slice(&t.ty.to_le_bytes());
            fields.push(Field::U64(out.len()));
            out.extend_from_slice(&t.offset.to_le_bytes());
        }
        let start = align_up(out.len() as u64, self.alignment()) as usize;
        out.resize(start, 0);
        out.extend_from_slice(&self.data);
        (out, fields)
    }

    fn arch(&self) -> String {
        self.kv
            .iter()
            .find(|k| k.key == b"general.architecture")
            .and_then(|k| match &k.value {
                RawValue::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
                _ => None,
            })
            .unwrap_or_else(|| "llama".into())
    }

    fn set_kv(&mut self, key: &str, ty: u32, value: RawValue) {
        match self.kv.iter_mut().find(|k| k.key == key.as_bytes()) {
            Some(k) => {
                k.ty = ty;
                k.value = value;
            }
            None => self.kv.push(RawKv { key: key.as_bytes().to_vec(), ty, value }),
        }
    }
}

fn write_str(out: &mut Vec<u8>, fields: &mut Vec<Field>, s: &[u8]) {
    fields.push(Field::U64(out.len()));
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
}

fn write_value(out: &mut Vec<u8>, fields: &mut Vec<Field>, v: &RawValue) {
    match v {
        RawValue::Scalar(b) => out.extend_from_slice(b),
        RawValue::Str(s) => write_str(out, fields, s),
        RawValue::Array { elem, items } => {
            fields.push(Field::U32(out.len()));
            out.extend_from_slice(&elem.to_le_bytes());
            fields.push(Field::U64(out.len()));
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                write_value(out, fields, it);
            }
        }
    }
}

fn boundary(rng: &mut Rng) -> i128 {
    BOUNDARY_INTS[rng.below(BOUNDARY_INTS.len())]
}

/// An integer near `old` or at a boundary.
fn int_near(rng: &mut Rng, old: i128) -> i128 {
    match rng.below(6) {
        0 => old + 1,
        1 => old - 1,
        2 => old.saturating_mul(2),
        3 => old / 2,
        _ => boundary(rng),
    }
}

/// The integer in `b` (1–8 bytes; a tag swapped over other bytes may not
/// match their count, so only the sign comes from `ty`).
fn read_int(ty: u32, b: &[u8]) -> i128 {
    let n = b.len().min(8);
    let mut le = [0u8; 8];
    le[..n].copy_from_slice(&b[..n]);
    let u = u64::from_le_bytes(le);
    let signed = matches!(ty, T_I8 | T_I16 | T_I32 | T_I64);
    if signed && n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
        (u as i128) - (1i128 << (8 * n))
    } else if signed && n == 8 {
        u as i64 as i128
    } else {
        u as i128
    }
}

/// A fresh value of type `ty` (boundary numbers, odd strings).
fn fresh(rng: &mut Rng, ty: u32, like: Option<&RawValue>) -> RawValue {
    match ty {
        T_F32 => RawValue::Scalar((ODD_FLOATS[rng.below(ODD_FLOATS.len())] as f32).to_le_bytes().to_vec()),
        T_F64 => RawValue::Scalar(ODD_FLOATS[rng.below(ODD_FLOATS.len())].to_le_bytes().to_vec()),
        T_BOOL => RawValue::Scalar(vec![[0u8, 1, 2, 255][rng.below(4)]]),
        T_STR => RawValue::Str(fresh_string(rng, like)),
        T_ARRAY => {
            let elem = [T_U32, T_I32, T_STR, T_F32, T_U8, T_ARRAY][rng.below(6)];
            let n = [0usize, 1, 2, 3, 8][rng.below(5)];
            let items = (0..n).map(|_| fresh(rng, if elem == T_ARRAY { T_I32 } else { elem }, None)).collect();
            RawValue::Array { elem: if elem == T_ARRAY { T_I32 } else { elem }, items }
        }
        t => {
            let n = scalar_size(t).unwrap_or(4);
            let v = boundary(rng) as u128 as u64;
            RawValue::Scalar(v.to_le_bytes()[..n].to_vec())
        }
    }
}

fn fresh_string(rng: &mut Rng, like: Option<&RawValue>) -> Vec<u8> {
    let old = match like {
        Some(RawValue::Str(s)) => s.clone(),
        _ => Vec::new(),
    };
    match rng.below(8) {
        0 => Vec::new(),
        1 if !old.is_empty() => {
            let mut s = old.clone();
            s.truncate(rng.below(old.len()));
            s
        }
        2 => {
            let mut s = old.clone();
            s.extend_from_slice(&old);
            s.truncate(4096);
            s
        }
        3 => {
            // invalid UTF-8 in the middle
            let mut s = old.clone();
            let at = if s.is_empty() { 0 } else { rng.below(s.len() + 1) };
            s.insert(at, [0xFF, 0xC3, 0x80, 0xED][rng.below(4)]);
            s
        }
        4 => {
            let mut s = old.clone();
            let at = if s.is_empty() { 0 } else { rng.below(s.len() + 1) };
            let ins = [" ", "\0", "\u{2581}", "\u{120}", "<", ">", "%}", "{{"][rng.below(8)];
            s.splice(at..at, ins.bytes());
            s
        }
        5 => vec![b'a'; [255, 256, 1024, 4096][rng.below(4)]],
        _ => STRINGS[rng.below(STRINGS.len())].as_bytes().to_vec(),
    }
}

/// Edits one value in place (descending into arrays); `ty` is its type tag.
fn edit_value(rng: &mut Rng, ty: &mut u32, v: &mut RawValue, depth: u32) {
    match v {
        RawValue::Scalar(b) => match *ty {
            T_F32 | T_F64 | T_BOOL => *v = fresh(rng, *ty, None),
            t => {
                let n = b.len();
                let x = int_near(rng, read_int(t, b)) as u128 as u64;
                b.copy_from_slice(&x.to_le_bytes()[..n]);
            }
        },
        RawValue::Str(_) => *v = RawValue::Str(fresh_string(rng, Some(v))),
        RawValue::Array { elem, items } => match rng.below(8) {
            // one element (the common case: a token, a merge, a type, a score)
            0..=2 if !items.is_empty() && depth < 4 => {
                let i = rng.below(items.len());
                let mut et = *elem;
                edit_value(rng, &mut et, &mut items[i], depth + 1);
            }
            3 if !items.is_empty() => {
                let n = rng.below(items.len());
                items.truncate(n);
            }
            4 if !items.is_empty() && items.len() < 100_000 => {
                let i = rng.below(items.len());
                let dup = items[i].clone();
                items.insert(rng.below(items.len() + 1), dup);
            }
            5 if !items.is_empty() => {
                let (i, j) = (rng.below(items.len()), rng.below(items.len()));
                items.swap(i, j);
            }
            6 => {
                // another element type; each element rewritten in it
                let new = [T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_U64, T_I64, T_F64][rng.below(12)];
                let n = items.len().min(4096);
                *items = (0..n).map(|_| fresh(rng, new, None)).collect();
                *elem = new;
            }
            _ => {
                // a wrong element type tag over the same bytes
                *elem = rng.below(14) as u32;
            }
        },
    }
}

/// Applies 1–3 random edits and serializes; `None` when `data` is not GGUF.
pub fn mutate(data: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let mut g = RawGguf::parse(data)?;
    let mut lies = 0usize;
    for _ in 0..1 + rng.below(3) {
        edit(&mut g, rng, &mut lies);
    }
    let (mut out, fields) = g.write();
    for _ in 0..lies {
        lie(&mut out, &fields, rng);
    }
    Some(out)
}

/// Overwrites one count, length, type tag, dimension or offset field of the
/// serialized file with a boundary value (the file now lies about it).
fn lie(out: &mut [u8], fields: &[Field], rng: &mut Rng) {
    if fields.is_empty() {
        return;
    }
    let v = boundary(rng) as u128 as u64;
    match fields[rng.below(fields.len())] {
        Field::U32(at) => out[at..at + 4].copy_from_slice(&(v as u32).to_le_bytes()),
        Field::U64(at) => out[at..at + 8].copy_from_slice(&v.to_le_bytes()),
    }
}

fn tensor_layer(name: &[u8]) -> Option<(usize, usize)> {
    // "blk.N." → the byte range of N
    let rest = name.strip_prefix(b"blk.")?;
    let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    (n > 0).then_some((4, 4 + n))
}

fn edit(g: &mut RawGguf, rng: &mut Rng, lies: &mut usize) {
    let nk = g.kv.len();
    let nt = g.tensors.len();
    match rng.below(20) {
        // a metadata value
        0..=4 if nk > 0 => {
            let k = &mut g.kv[rng.below(nk)];
            edit_value(rng, &mut k.ty, &mut k.value, 0);
        }
        // a metadata value of another type (converted), or a wrong type tag
        5 if nk > 0 => {
            let k = &mut g.kv[rng.below(nk)];
            if rng.below(3) == 0 {
                k.ty = rng.below(14) as u32;
            } else {
                let ty = rng.below(13) as u32;
                k.value = fresh(rng, ty, Some(&k.value));
                k.ty = ty;
            }
        }
        // a key the loaders read, set or added
        6 => {
            let arch = g.arch();
            let key = if rng.below(3) > 0 {
                format!("{arch}.{}", ARCH_KEYS[rng.below(ARCH_KEYS.len())])
            } else {
                OTHER_KEYS[rng.below(OTHER_KEYS.len())].to_string()
            };
            let ty = [T_U32, T_U32, T_U32, T_I32, T_U64, T_F32, T_STR, T_ARRAY, T_BOOL][rng.below(9)];
            let v = fresh(rng, ty, None);
            g.set_kv(&key, ty, v);
        }
        // another architecture over the same tensors and keys
        7 => {
            let a = ARCHS[rng.below(ARCHS.len())];
            if rng.below(2) == 0 {
                let old = g.arch();
                for k in &mut g.kv {
                    if let Some(rest) = k.key.strip_prefix(old.as_bytes()) {
                        k.key = [a.as_bytes(), rest].concat();
                    }
                }
            }
            g.set_kv("general.architecture", T_STR, RawValue::Str(a.as_bytes().to_vec()));
        }
        // remove or duplicate a key
        8 if nk > 0 => {
            let i = rng.below(nk);
            if rng.below(2) == 0 {
                g.kv.remove(i);
            } else {
                let d = g.kv[i].clone();
                g.kv.insert(rng.below(nk + 1), d);
            }
        }
        // a tensor's dimensions
        9 | 10 if nt > 0 => {
            let t = &mut g.tensors[rng.below(nt)];
            match rng.below(5) {
                0 => t.dims.push([1, 0, 2, u32::MAX as u64][rng.below(4)]),
                1 => {
                    t.dims.pop();
                }
                2 if t.dims.len() >= 2 => t.dims.swap(0, 1),
                _ if !t.dims.is_empty() => {
                    let i = rng.below(t.dims.len());
                    t.dims[i] = int_near(rng, t.dims[i] as i128) as u128 as u64;
                }
                _ => t.dims.push(1),
            }
        }
        // a tensor's type id
        11 if nt > 0 => {
            let t = &mut g.tensors[rng.below(nt)];
            t.ty = match rng.below(3) {
                0 => rng.below(42) as u32,
                1 => boundary(rng) as u32,
                _ => [0, 1, 2, 8, 12, 14, 20, 23, 30][rng.below(9)],
            };
        }
        // a tensor's data offset
        12 if nt > 0 => {
            let other = g.tensors[rng.below(nt)].offset;
            let len = g.data.len() as u64;
            let t = &mut g.tensors[rng.below(nt)];
            t.offset = match rng.below(7) {
                0 => t.offset.wrapping_add(1),
                1 => t.offset.wrapping_add(32),
                2 => t.offset.wrapping_sub(32),
                3 => other,
                4 => len,
                5 => align_up(len, 32),
                _ => boundary(rng) as u128 as u64,
            };
        }
        // a tensor's name: another tensor's, another layer, cut short
        13 if nt > 0 => {
            let other = g.tensors[rng.below(nt)].name.clone();
            let t = &mut g.tensors[rng.below(nt)];
            match rng.below(4) {
                0 => t.name = other,
                1 => {
                    if let Some((a, b)) = tensor_layer(&t.name) {
                        let n = [0u64, 1, 2, 7, 99, 1000, 65535, u32::MAX as u64 - 1, u32::MAX as u64, 1 << 32, u64::MAX][rng.below(11)];
                        t.name.splice(a..b, n.to_string().bytes());
                    }
                }
                2 => {
                    let n = rng.below(t.name.len() + 1);
                    t.name.truncate(n);
                }
                _ => t.name = fresh_string(rng, Some(&RawValue::Str(t.name.clone()))),
            }
        }
        // make block_count agree with the highest blk.N (after a rename above)
        14 => {
            let max = g.tensors.iter().filter_map(|t| {
                let (a, b) = tensor_layer(&t.name)?;
                std::str::from_utf8(&t.name[a..b]).ok()?.parse::<u64>().ok()
            });
            if let Some(n) = max.max() {
                let key = format!("{}.block_count", g.arch());
                let v = n.saturating_add(1);
                match u32::try_from(v) {
                    Ok(v) => g.set_kv(&key, T_U32, RawValue::Scalar(v.to_le_bytes().to_vec())),
                    Err(_) => g.set_kv(&key, T_U64, RawValue::Scalar(v.to_le_bytes().to_vec())),
                }
            }
        }
        // remove or duplicate a tensor
        15 if nt > 0 => {
            let i = rng.below(nt);
            if rng.below(2) == 0 {
                g.tensors.remove(i);
            } else {
                let d = g.tensors[i].clone();
                g.tensors.insert(rng.below(nt + 1), d);
            }
        }
        // the version
        16 => g.version = [1, 2, 3, 4, 0, u32::MAX, 0x0300_0000][rng.below(7)],
        // the data section: cut, grown, or a few bytes changed
        17 if !g.data.is_empty() => match rng.below(3) {
            0 => {
                let n = rng.below(g.data.len());
                g.data.truncate(n);
            }
            1 => {
                for _ in 0..8 {
                    let i = rng.below(g.data.len());
                    g.data[i] = [0, 0xFF, 0x7F, 0x80][rng.below(4)];
                }
            }
            _ => g.data.extend(std::iter::repeat_n(0, [1, 31, 32, 4096][rng.below(4)])),
        },
        // a count, length, tag, dimension or offset the file lies about
        _ => *lies += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{GgufWriter, Value, ValueType};

    fn sample() -> Vec<u8> {
        let mut w = GgufWriter::new();
        w.kv("general.architecture", Value::Str("llama".into()))
            .kv("llama.block_count", Value::U32(2))
            .kv("t.i16", Value::I16(-3))
            .kv("t.arr", Value::Array(ValueType::Array, vec![Value::Array(ValueType::F64, vec![Value::F64(1.0)])]))
            .kv("tokenizer.ggml.tokens", Value::Array(ValueType::Str, vec![Value::Str("a".into()), Value::Str("b".into())]))
            .tensor_f32("blk.0.x", &[4, 2], &[0.5; 8])
            .tensor_f32("blk.1.x", &[3], &[1.0; 3]);
        w.to_bytes()
    }

    #[test]
    fn read_int_takes_any_width() {
        assert_eq!(read_int(T_I16, &[0xFE, 0xFF]), -2);
        assert_eq!(read_int(T_I16, &[0xFE]), -2);
        assert_eq!(read_int(T_U32, &[0xFE]), 254);
        assert_eq!(read_int(T_I64, &u64::MAX.to_le_bytes()), -1);
        assert_eq!(read_int(T_U64, &u64::MAX.to_le_bytes()), u64::MAX as i128);
        assert_eq!(read_int(T_U8, &[]), 0);
    }

    #[test]
    fn parse_and_write_round_trip() {
        let b = sample();
        let g = RawGguf::parse(&b).unwrap();
        assert_eq!(g.kv.len(), 5);
        assert_eq!(g.tensors.len(), 2);
        assert_eq!(g.to_bytes(), b);
    }

    #[test]
    fn mutations_change_files_and_often_still_parse() {
        let b = sample();
        let mut rng = Rng(7);
        let (mut changed, mut parsed) = (0, 0);
        for _ in 0..2000 {
            let m = mutate(&b, &mut rng).unwrap();
            changed += (m != b) as usize;
            parsed += crate::gguf::GgufFile::from_bytes(m).is_ok() as usize;
        }
        assert!(changed > 1500, "{changed}");
        assert!(parsed > 100 && parsed < 2000, "{parsed}");
    }

    /// Mutations of mutations (what a long fuzzing run does): the mutator
    /// itself never panics, whatever tags and widths earlier edits left.
    #[test]
    fn chained_mutations_never_panic() {
        let mut cur = sample();
        let mut rng = Rng(11);
        for _ in 0..20_000 {
            cur = match mutate(&cur, &mut rng) {
                Some(m) if m.len() < 1 << 20 => m,
                _ => sample(),
            };
        }
    }
}
