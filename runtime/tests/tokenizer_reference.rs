//! Tokenization must match llama.cpp exactly: every case in
//! tests/fixtures/tokenizer/<model>.jsonl holds llama.cpp's ids for a text.
//! The model files come from `scripts/fetch-models.sh` (CI runs it first); a missing model is a
//! failure, never a skip.

use std::path::PathBuf;

use ember::gguf::GgufFile;
use ember::tokenizer::Tokenizer;

fn models_dir() -> PathBuf {
    match std::env::var_os("EMBER_HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h).join("models"),
        _ => {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
            home.join(".cache").join("ember").join("models")
        }
    }
}

fn load(file: &str) -> Tokenizer {
    let path = models_dir().join(file);
    assert!(
        path.exists(),
        "model file {} is missing: run scripts/fetch-models.sh first (it downloads the reference models into $EMBER_HOME/models, default ~/.cache/ember/models)",
        path.display()
    );
    let g = GgufFile::open(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let t0 = std::time::Instant::now();
    let tok = Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("cannot load tokenizer of {}: {e}", path.display()));
    eprintln!("{file}: tokenizer loaded in {:?} ({} tokens)", t0.elapsed(), tok.n_vocab());
    tok
}

struct Case {
    text: String,
    add_special: bool,
    parse_special: bool,
    ids: Vec<u32>,
}

fn cases(name: &str) -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tokenizer").join(format!("{name}.jsonl"));
    let body = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Case {
                text: v["text"].as_str().unwrap().to_string(),
                add_special: v["add_special"].as_bool().unwrap(),
                parse_special: v["parse_special"].as_bool().unwrap(),
                ids: v["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect(),
            }
        })
        .collect()
}

fn check_model(fixture: &str, file: &str) {
    let tok = load(file);
    let cases = cases(fixture);
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    let mut matched = 0;
    for c in &cases {
        match tok.encode(&c.text, c.add_special, c.parse_special) {
            Ok(ids) if ids == c.ids => matched += 1,
            Ok(ids) => failures.push(format!(
                "encode({:?}, add_special={}, parse_special={}):\n   got       {:?}\n   llama.cpp {:?}",
                c.text, c.add_special, c.parse_special, ids, c.ids
            )),
            Err(e) => failures.push(format!("encode({:?}): error {e}", c.text)),
        }
        // Detokenizing llama.cpp's ids gives the text back whenever no control token is involved
        // (control tokens detokenize to nothing).
        if !c.ids.iter().any(|&id| tok.is_control(id)) {
            let back = tok.decode(&c.ids).unwrap();
            if back != c.text {
                failures.push(format!("decode({:?}) = {:?}, expected the text {:?}", c.ids, back, c.text));
            }
        }
    }
    eprintln!("{fixture}: {matched}/{} cases match llama.cpp", cases.len());
    assert!(failures.is_empty(), "{fixture}: {} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_model("smollm2-135m-instruct-q4_1", "SmolLM2-135M-Instruct.Q4_1.gguf");
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_model("gemma-3-270m-q4_k_m", "gemma-3-270m-q4_k_m.gguf");
}

#[test]
fn qwen25_coder_matches_llama_cpp() {
    // The 0.5B and 1.5B share one vocabulary; llama.cpp's ids are the same for both.
    check_model("qwen2.5-coder-0.5b-q4_k_m", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
}

#[test]
fn special_tokens_and_eog() {
    let smol = load("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(smol.kind(), "gpt2");
    assert_eq!(smol.pre(), "smollm");
    assert_eq!(smol.bos(), Some(1));
    assert_eq!(smol.eos(), Some(2));
    assert!(smol.is_eog(2)); // <|im_end|>
    assert!(smol.is_eog(0)); // <|endoftext|>
    assert!(!smol.is_eog(1));
    assert!(smol.chat_template().is_some());
    // control tokens only with parse_special; they detokenize to nothing
    assert_eq!(smol.encode("<|im_end|>", false, true).unwrap(), [2]);
    assert_ne!(smol.encode("<|im_end|>", false, false).unwrap(), [2]);
    assert_eq!(smol.token_to_piece(2).unwrap(), b"");
    assert!(matches!(smol.token_to_piece(49152), Err(ember::Error::TokenOutOfVocab { id: 49152, .. })));

    let gemma = load("gemma-3-270m-q4_k_m.gguf");
    assert_eq!(gemma.kind(), "llama");
    assert_eq!(gemma.bos(), Some(2));
    assert_eq!(gemma.eos(), Some(1));
    let eot = gemma.token_id("<end_of_turn>").unwrap();
    assert!(gemma.is_eog(eot));
    assert!(gemma.is_eog(1));
    let sot = gemma.token_id("<start_of_turn>").unwrap();
    assert_eq!(gemma.encode("<start_of_turn>user\nHi<end_of_turn>\n", true, true).unwrap()[..2], [2, sot]);
}

/// Streaming the ids of a text with emoji and CJK gives the text back, chunk by chunk, never
/// emitting half a character.
#[test]
fn stream_decoder_on_real_vocabs() {
    let text = "Emoji: 🚀🔥👍🏽 and flags 🇨🇳 — 大模型 ok";
    for file in ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"] {
        let tok = load(file);
        let ids = tok.encode(text, false, false).unwrap();
        let mut dec = ember::tokenizer::StreamDecoder::new();
        let mut out = String::new();
        for &id in &ids {
            let chunk = dec.push(&tok, id).unwrap();
            assert!(!chunk.contains('\u{FFFD}'), "{file}: half a character emitted");
            out.push_str(&chunk);
        }
        out.push_str(&dec.flush());
        assert_eq!(out, text, "{file}");
    }
}

/// Encoding a long text is fast enough for perplexity runs, and round-trips.
#[test]
fn encode_long_text() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tokenizer/smollm2-135m-instruct-q4_1.jsonl");
    let base: String = cases("smollm2-135m-instruct-q4_1").iter().map(|c| c.text.clone() + "\n").collect();
    let text = base.repeat(20);
    let _ = path;
    for file in ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"] {
        let tok = load(file);
        let t0 = std::time::Instant::now();
        let ids = tok.encode(&text, false, false).unwrap();
        eprintln!("{file}: {} bytes -> {} tokens in {:?}", text.len(), ids.len(), t0.elapsed());
        assert_eq!(tok.decode(&ids).unwrap(), text);
    }
}
