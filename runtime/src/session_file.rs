//! The saved-session file ([`crate::Session::save`] / [`crate::Session::load`]):
//! a session's tokens and its KV rows in their stored type, behind a header
//! that names what they are only valid for (the model, its architecture,
//! the context size and the cache types).
//!
//! Layout (little-endian):
//!
//! ```text
//! magic "EMBERSES" | version u32 | body_len u64 | sha256(body) [32] | body
//! body: model_hash [32] | arch_len u16, arch | n_ctx u64
//!       | type_k u32, type_v u32 (ggml type ids) | n_layer u32, (k_width u32, v_width u32) × n_layer
//!       | n_tokens u64 | tokens u32 × n_tokens | per layer: K rows, V rows
//! ```
//!
//! Reading trusts nothing: the body length must be the file's, the checksum
//! must match before anything is parsed (a flipped byte is caught there),
//! and every count is checked against the bytes left before it is used, so a
//! hostile file costs at most its own size in memory and never panics.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::gguf::GgufFile;
use crate::kv_cache::KvType;
use crate::kv_state::{rows_len, KvState, LayerKv};
use crate::{Error, Result};

pub const MAGIC: &[u8; 8] = b"EMBERSES";
/// 2: quantized rows are stored rotated as llama.cpp stores them
/// ([`crate::kv_rotation`]); a version-1 file is read only when its cache is
/// f16 (its quantized rows were stored unrotated: they would give wrong answers).
pub const VERSION: u32 = 2;
/// Bytes before the body: magic, version, body length, checksum.
pub const PREFIX_LEN: usize = 8 + 4 + 8 + 32;

/// Why a session file cannot be restored into this session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionFileError {
    #[error("not an Ember session file")]
    NotASessionFile,
    #[error("session file version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u32),
    #[error("truncated: {got} bytes, the header says {expected}")]
    Truncated { got: u64, expected: u64 },
    #[error("corrupt: the checksum does not match the contents")]
    Checksum,
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("saved with another model (model hash differs)")]
    ModelMismatch,
    #[error("saved with architecture '{saved}', this model is '{this}'")]
    ArchMismatch { saved: String, this: String },
    #[error("saved with a context of {saved}, this session has {this} (use the same --ctx)")]
    ContextMismatch { saved: usize, this: usize },
    #[error("saved with KV cache types {saved}, this engine stores {this} (use the same --cache-type-k/-v)")]
    CacheTypeMismatch { saved: String, this: String },
    #[error("saved with another KV layout (layers or row widths differ)")]
    LayoutMismatch,
}

/// What a session file is valid for: written into it, and compared with the
/// restoring session's before its rows are used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHeader {
    pub model_hash: [u8; 32],
    pub arch: String,
    pub n_ctx: usize,
    pub type_k: KvType,
    pub type_v: KvType,
    /// Per layer: K and V values per row.
    pub dims: Vec<(usize, usize)>,
}

/// A session file's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSession {
    pub tokens: Vec<u32>,
    pub kv: KvState,
}

/// The model's identity in a session file: SHA-256 of the file's length, its
/// whole header (metadata and tensor infos: architecture, hyperparameters,
/// vocabulary, shapes and types) and a sample of every tensor's data (its
/// first and last 4 KiB). Hashing every weight byte would cost seconds for
/// a 1.5B model at each save and load; the sample tells apart any two files
/// that differ in metadata or in a tensor's edges (two fine-tunes of one
/// base), at a few milliseconds.
pub fn model_hash(file: &GgufFile) -> [u8; 32] {
    const SAMPLE: u64 = 4096;
    let bytes = file.bytes();
    let mut h = Sha256::new();
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(&bytes[..(file.data_offset as usize).min(bytes.len())]);
    for t in file.tensors() {
        let data = file.tensor_data(t);
        let n = (data.len() as u64).min(SAMPLE) as usize;
        h.update(&data[..n]);
        h.update(&data[data.len() - n..]);
    }
    h.finalize().into()
}

impl SessionHeader {
    /// The header of a session of `n_ctx` positions on `engine`.
    pub fn for_engine(engine: &crate::Engine, n_ctx: usize) -> Result<SessionHeader> {
        Ok(SessionHeader {
            model_hash: model_hash(engine.gguf()?),
            arch: engine.info().arch.clone(),
            n_ctx,
            type_k: engine.config().cache_type_k,
            type_v: engine.config().cache_type_v,
            dims: engine.model()?.forward().graph().kv.clone(),
        })
    }
}

fn type_id(t: KvType) -> u32 {
    t.ggml_type() as u32
}

fn kv_type(id: u32) -> Option<KvType> {
    [KvType::F16, KvType::Q8_0, KvType::Q4_0].into_iter().find(|&t| type_id(t) == id)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

fn file_err(path: &Path, source: SessionFileError) -> Error {
    Error::SessionFile { path: path.to_path_buf(), source }
}

/// The file's bytes for `header`, `tokens` and `kv` (`kv` must fit `header`:
/// a runner's own export always does).
pub fn encode(header: &SessionHeader, tokens: &[u32], kv: &KvState) -> Result<Vec<u8>> {
    kv.check(&header.dims, header.n_ctx, header.type_k, header.type_v)?;
    if tokens.len() != kv.n_tokens {
        return Err(Error::InvalidParam(format!("{} tokens but KV rows for {}", tokens.len(), kv.n_tokens)));
    }
    let mut body = Vec::new();
    body.extend_from_slice(&header.model_hash);
    let arch = header.arch.as_bytes();
    let arch_len = u16::try_from(arch.len()).map_err(|_| Error::InvalidParam("architecture name too long".into()))?;
    body.extend_from_slice(&arch_len.to_le_bytes());
    body.extend_from_slice(arch);
    body.extend_from_slice(&(header.n_ctx as u64).to_le_bytes());
    body.extend_from_slice(&type_id(header.type_k).to_le_bytes());
    body.extend_from_slice(&type_id(header.type_v).to_le_bytes());
    body.extend_from_slice(&(header.dims.len() as u32).to_le_bytes());
    for &(k, v) in &header.dims {
        body.extend_from_slice(&(k as u32).to_le_bytes());
        body.extend_from_slice(&(v as u32).to_le_bytes());
    }
    body.extend_from_slice(&(tokens.len() as u64).to_le_bytes());
    for t in tokens {
        body.extend_from_slice(&t.to_le_bytes());
    }
    for l in &kv.layers {
        body.extend_from_slice(&l.k);
        body.extend_from_slice(&l.v);
    }
    let mut out = Vec::with_capacity(PREFIX_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&body));
    out.extend_from_slice(&body);
    Ok(out)
}

/// Writes the file through a temporary sibling renamed into place: a crash
/// mid-write leaves the previous file (or none), never a torn one.
pub fn write(path: &Path, header: &SessionHeader, tokens: &[u32], kv: &KvState) -> Result<()> {
    let bytes = encode(header, tokens, kv)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // The file is closed (dropped at the closure's end) before the rename. Not `drop(f)`:
    // on wasm32 `File` is a stub without `Drop`, and clippy rejects the call there.
    std::fs::File::create(&tmp).and_then(|mut f| f.write_all(&bytes).and_then(|_| f.sync_all())).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Reads `path` and checks it against `expect` (the restoring session's
/// header); `n_vocab` bounds the token ids.
pub fn read(path: &Path, expect: &SessionHeader, n_vocab: usize) -> Result<SavedSession> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let file_len = f.metadata().map_err(io_err(path))?.len();
    let mut prefix = [0u8; PREFIX_LEN];
    let got = (&mut f).take(PREFIX_LEN as u64).read(&mut prefix).map_err(io_err(path))?;
    if got >= 8 && &prefix[..8] != MAGIC {
        return Err(file_err(path, SessionFileError::NotASessionFile));
    }
    if (file_len as usize) < PREFIX_LEN || got < PREFIX_LEN {
        return Err(file_err(path, SessionFileError::Truncated { got: file_len, expected: PREFIX_LEN as u64 }));
    }
    let body_len = u64::from_le_bytes(prefix[12..20].try_into().unwrap_or_default());
    // The length is checked against the file before the body is allocated.
    let expected = (PREFIX_LEN as u64).saturating_add(body_len);
    if file_len != expected {
        let e = if file_len < expected {
            SessionFileError::Truncated { got: file_len, expected }
        } else {
            SessionFileError::Malformed(format!("{} bytes after the body", file_len - expected))
        };
        return Err(file_err(path, e));
    }
    let mut body = vec![0u8; body_len as usize];
    f.read_exact(&mut body).map_err(io_err(path))?;
    decode(&prefix, &body, expect, n_vocab).map_err(|e| file_err(path, e))
}

/// Checks and parses a whole file already in memory (`read` without the
/// file system: tests and fuzzing).
pub fn decode_bytes(bytes: &[u8], expect: &SessionHeader, n_vocab: usize) -> Result<SavedSession, SessionFileError> {
    if bytes.len() >= 8 && &bytes[..8] != MAGIC {
        return Err(SessionFileError::NotASessionFile);
    }
    let Some((prefix, body)) = bytes.split_first_chunk::<PREFIX_LEN>() else {
        return Err(SessionFileError::Truncated { got: bytes.len() as u64, expected: PREFIX_LEN as u64 });
    };
    let body_len = u64::from_le_bytes(prefix[12..20].try_into().unwrap_or_default());
    if body.len() as u64 != body_len {
        let (got, expected) = (bytes.len() as u64, (PREFIX_LEN as u64).saturating_add(body_len));
        return Err(if got < expected {
            SessionFileError::Truncated { got, expected }
        } else {
            SessionFileError::Malformed(format!("{} bytes after the body", got - expected))
        });
    }
    decode(prefix, body, expect, n_vocab)
}

fn decode(prefix: &[u8; PREFIX_LEN], body: &[u8], expect: &SessionHeader, n_vocab: usize) -> Result<SavedSession, SessionFileError> {
    use SessionFileError as E;
    if &prefix[..8] != MAGIC {
        return Err(E::NotASessionFile);
    }
    let version = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
    if version != VERSION && version != 1 {
        return Err(E::UnsupportedVersion(version));
    }
    if Sha256::digest(body).as_slice() != &prefix[20..52] {
        return Err(E::Checksum);
    }
    let mut c = Cursor { b: body };
    if c.take(32)? != expect.model_hash {
        return Err(E::ModelMismatch);
    }
    let arch_len = c.u16()? as usize;
    let arch = String::from_utf8_lossy(c.take(arch_len)?).into_owned();
    if arch != expect.arch {
        return Err(E::ArchMismatch { saved: arch, this: expect.arch.clone() });
    }
    let n_ctx = c.u64()?;
    if n_ctx != expect.n_ctx as u64 {
        return Err(E::ContextMismatch { saved: usize::try_from(n_ctx).unwrap_or(usize::MAX), this: expect.n_ctx });
    }
    let (tk, tv) = (c.u32()?, c.u32()?);
    let name = |id| kv_type(id).map_or_else(|| format!("type {id}"), |t| t.to_string());
    if (kv_type(tk), kv_type(tv)) != (Some(expect.type_k), Some(expect.type_v)) {
        return Err(E::CacheTypeMismatch {
            saved: format!("{}/{}", name(tk), name(tv)),
            this: format!("{}/{}", expect.type_k, expect.type_v),
        });
    }
    if version == 1 && (expect.type_k, expect.type_v) != (KvType::F16, KvType::F16) {
        return Err(E::UnsupportedVersion(version));
    }
    let n_layer = c.u32()? as usize;
    if n_layer != expect.dims.len() {
        return Err(E::LayoutMismatch);
    }
    for &(k, v) in &expect.dims {
        if (c.u32()? as usize, c.u32()? as usize) != (k, v) {
            return Err(E::LayoutMismatch);
        }
    }
    let n_tokens = c.u64()?;
    if n_tokens > expect.n_ctx as u64 {
        return Err(E::Malformed(format!("{n_tokens} tokens in a context of {}", expect.n_ctx)));
    }
    let n_tokens = n_tokens as usize;
    // Sized by the bytes present, not by the count: `take` fails first.
    let tokens: Vec<u32> =
        c.take(n_tokens.saturating_mul(4))?.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    if let Some(&id) = tokens.iter().find(|&&id| id as usize >= n_vocab) {
        return Err(E::Malformed(format!("token id {id} is out of the vocabulary ({n_vocab})")));
    }
    let bad_row = |_| E::LayoutMismatch;
    let mut layers = Vec::with_capacity(n_layer);
    for &(kw, vw) in &expect.dims {
        let k = c.take(rows_len(expect.type_k, kw, n_tokens).map_err(bad_row)?)?.to_vec();
        let v = c.take(rows_len(expect.type_v, vw, n_tokens).map_err(bad_row)?)?.to_vec();
        layers.push(LayerKv { k, v });
    }
    if !c.b.is_empty() {
        return Err(E::Malformed(format!("{} bytes after the KV rows", c.b.len())));
    }
    Ok(SavedSession { tokens, kv: KvState { type_k: expect.type_k, type_v: expect.type_v, n_tokens, layers } })
}

/// Reads the body front to back; running out is [`SessionFileError::Malformed`]
/// (the checksum matched, so the writer wrote it short).
struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SessionFileError> {
        if n > self.b.len() {
            return Err(SessionFileError::Malformed(format!("{n} bytes wanted, {} left", self.b.len())));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, SessionFileError> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, SessionFileError> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, SessionFileError> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SessionHeader {
        SessionHeader {
            model_hash: [7; 32],
            arch: "llama".into(),
            n_ctx: 8,
            type_k: KvType::F16,
            type_v: KvType::F16,
            dims: vec![(4, 4), (4, 0)],
        }
    }

    fn state(n: usize) -> KvState {
        let rows = |w: usize, seed: u8| (0..n * w * 2).map(|i| seed.wrapping_add(i as u8)).collect();
        KvState {
            type_k: KvType::F16,
            type_v: KvType::F16,
            n_tokens: n,
            layers: vec![LayerKv { k: rows(4, 1), v: rows(4, 2) }, LayerKv { k: rows(4, 3), v: vec![] }],
        }
    }

    #[test]
    fn round_trips_and_rejects_every_damage() {
        let h = header();
        let bytes = encode(&h, &[1, 2, 3], &state(3)).unwrap();
        let back = decode_bytes(&bytes, &h, 10).unwrap();
        assert_eq!(back, SavedSession { tokens: vec![1, 2, 3], kv: state(3) });

        // Every truncation and every flipped byte is an error, never a panic.
        for n in 0..bytes.len() {
            assert!(decode_bytes(&bytes[..n], &h, 10).is_err(), "truncated to {n}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode_bytes(&b, &h, 10).is_err(), "byte {i} flipped");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode_bytes(&longer, &h, 10), Err(SessionFileError::Malformed(_))));

        // Mismatches name what differs.
        let other = |f: &dyn Fn(&mut SessionHeader)| {
            let mut e = h.clone();
            f(&mut e);
            decode_bytes(&bytes, &e, 10).unwrap_err()
        };
        assert_eq!(other(&|e| e.model_hash[0] = 0), SessionFileError::ModelMismatch);
        assert!(matches!(other(&|e| e.arch = "qwen2".into()), SessionFileError::ArchMismatch { .. }));
        assert_eq!(other(&|e| e.n_ctx = 16), SessionFileError::ContextMismatch { saved: 8, this: 16 });
        assert!(matches!(other(&|e| e.type_k = KvType::Q8_0), SessionFileError::CacheTypeMismatch { .. }));
        assert_eq!(other(&|e| e.dims[1].1 = 4), SessionFileError::LayoutMismatch);
        assert!(matches!(decode_bytes(&bytes, &h, 3), Err(SessionFileError::Malformed(_))), "token 3 outside a vocabulary of 3");
    }

    #[test]
    fn version_1_files_are_read_only_with_an_f16_cache() {
        // Version 1 stored quantized rows unrotated: reading them into a
        // rotating cache would answer wrongly, so only f16 ones are taken.
        let as_v1 = |mut b: Vec<u8>| {
            b[8..12].copy_from_slice(&1u32.to_le_bytes());
            b
        };
        let h = header();
        let v1 = as_v1(encode(&h, &[1, 2], &state(2)).unwrap());
        assert_eq!(decode_bytes(&v1, &h, 10).unwrap().tokens, vec![1, 2]);
        // The same layout with q8_0 K: rows of 4 values are not blocks, so a
        // one-block layout (32 values, 34 bytes a row).
        let q = SessionHeader { type_k: KvType::Q8_0, dims: vec![(32, 4)], ..header() };
        let kv =
            KvState { type_k: KvType::Q8_0, type_v: KvType::F16, n_tokens: 1, layers: vec![LayerKv { k: vec![0; 34], v: vec![0; 8] }] };
        let v2 = encode(&q, &[1], &kv).unwrap();
        assert!(decode_bytes(&v2, &q, 10).is_ok());
        assert_eq!(decode_bytes(&as_v1(v2), &q, 10), Err(SessionFileError::UnsupportedVersion(1)));
        let mut v3 = encode(&h, &[1], &state(1)).unwrap();
        v3[8..12].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(decode_bytes(&v3, &h, 10), Err(SessionFileError::UnsupportedVersion(3)));
    }

    #[test]
    fn a_huge_count_in_a_valid_checksum_is_refused_without_allocating() {
        // A hostile writer can make the checksum match: the counts are still
        // checked against the bytes present.
        let h = header();
        let mut bytes = encode(&h, &[1], &state(1)).unwrap();
        let at = PREFIX_LEN + 32 + 2 + 5 + 8 + 8 + 4 + 16;
        bytes[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let sum = Sha256::digest(&bytes[PREFIX_LEN..]);
        bytes[20..52].copy_from_slice(&sum);
        assert!(matches!(decode_bytes(&bytes, &h, 10), Err(SessionFileError::Malformed(_))));
        // A count the context allows but the bytes do not hold.
        bytes[at..at + 8].copy_from_slice(&8u64.to_le_bytes());
        let sum = Sha256::digest(&bytes[PREFIX_LEN..]);
        bytes[20..52].copy_from_slice(&sum);
        assert!(matches!(decode_bytes(&bytes, &h, 10), Err(SessionFileError::Malformed(_))));
    }
}
