//! Hyper-parameters that a file can lie about are checked against the tensor
//! table before anything is sized by them: the tiny llama fixture rewritten
//! with one key changed must fail to load with an error naming the key, at
//! once and without allocating (a `block_count` of 2^32 − 1 once made the
//! loader allocate 16 GiB and abort). The process runs under a 4 GiB address-space
//! limit, so a regression fails instead of filling the machine.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::limit_memory;
use ember::gguf::{GgufFile, GgufWriter, Value};
use ember::{Engine, EngineConfig};

fn fixture() -> GgufFile {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/arch/llama.gguf");
    GgufFile::open(p).unwrap()
}

/// The fixture with `key` set to `value` (and `edit` applied to the tensor list).
fn rewritten(key: &str, value: Option<Value>, edit: impl Fn(&str, &[u64]) -> Vec<u64>) -> GgufFile {
    try_rewritten(key, value, edit).unwrap()
}

fn try_rewritten(key: &str, value: Option<Value>, edit: impl Fn(&str, &[u64]) -> Vec<u64>) -> Result<GgufFile, ember::gguf::GgufError> {
    let g = fixture();
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        if k != key {
            w.kv(k, v.clone());
        }
    }
    if let Some(v) = value {
        w.kv(key, v);
    }
    for t in g.tensors() {
        let ne = edit(&t.name, &t.ne);
        let data = if ne == t.ne {
            g.tensor_data(t).to_vec()
        } else {
            vec![0u8; t.ty.row_size(ne[0] as usize).unwrap() * ne[1..].iter().product::<u64>() as usize]
        };
        w.tensor(&t.name, t.ty, &ne, data);
    }
    GgufFile::from_bytes(w.to_bytes())
}

fn load_err(g: GgufFile) -> String {
    limit_memory();
    let t = Instant::now();
    let r =
        Engine::from_file(std::sync::Arc::new(g), EngineConfig { n_threads: 1, backend: ember::BackendKind::Cpu, ..Default::default() });
    let e = r.err().expect("the doctored file must not load").to_string();
    assert!(t.elapsed().as_secs() < 5, "took {:?}", t.elapsed());
    e
}

#[test]
fn the_unchanged_rewrite_loads() {
    let g = rewritten("none", None, |_, ne| ne.to_vec());
    Engine::from_file(std::sync::Arc::new(g), EngineConfig { n_threads: 1, backend: ember::BackendKind::Cpu, ..Default::default() })
        .unwrap();
}

#[test]
fn block_count_must_match_the_tensor_table() {
    for n in [u32::MAX, 1 << 20, 0] {
        let e = load_err(rewritten("llama.block_count", Some(Value::U32(n)), |_, ne| ne.to_vec()));
        assert!(e.contains("block_count") && e.contains(&n.to_string()), "{n}: {e}");
    }
}

#[test]
fn a_zero_rope_dimension_is_refused() {
    let e = load_err(rewritten("llama.rope.dimension_count", Some(Value::U32(0)), |_, ne| ne.to_vec()));
    assert!(e.contains("rope.dimension_count 0"), "{e}");
}

#[test]
fn an_empty_vocabulary_embedding_is_refused() {
    // Refused by the reader (a zero dimension) or at load; either way a clear error.
    let e = match try_rewritten("none", None, |name, ne| if name == "token_embd.weight" { vec![ne[0], 0] } else { ne.to_vec() }) {
        Ok(g) => load_err(g),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("token_embd.weight"), "{e}");
}
