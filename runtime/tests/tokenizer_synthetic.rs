//! Tokenizer behaviour on small vocabularies built in code (no model files needed).

use ember::gguf::{GgufFile, GgufWriter, Value, ValueType};
use ember::tokenizer::{StreamDecoder, Tokenizer};

const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER: i32 = 4;
const BYTE: i32 = 6;

struct Vocab {
    toks: Vec<(String, f32, i32)>,
}

impl Vocab {
    fn new() -> Vocab {
        Vocab { toks: Vec::new() }
    }
    fn add(&mut self, t: &str, score: f32, ty: i32) -> u32 {
        self.toks.push((t.to_string(), score, ty));
        self.toks.len() as u32 - 1
    }
    fn id(&self, t: &str) -> u32 {
        self.toks.iter().position(|x| x.0 == t).unwrap_or_else(|| panic!("no token {t:?}")) as u32
    }
    fn build(&self, model: &str, extra: &[(&str, Value)], merges: &[&str]) -> Tokenizer {
        let mut w = GgufWriter::new();
        w.kv("general.architecture", Value::Str("llama".into()));
        w.kv("tokenizer.ggml.model", Value::Str(model.into()));
        w.kv("tokenizer.ggml.tokens", Value::Array(ValueType::Str, self.toks.iter().map(|t| Value::Str(t.0.clone())).collect()));
        w.kv("tokenizer.ggml.scores", Value::Array(ValueType::F32, self.toks.iter().map(|t| Value::F32(t.1)).collect()));
        w.kv("tokenizer.ggml.token_type", Value::Array(ValueType::I32, self.toks.iter().map(|t| Value::I32(t.2)).collect()));
        if !merges.is_empty() {
            w.kv("tokenizer.ggml.merges", Value::Array(ValueType::Str, merges.iter().map(|m| Value::Str(m.to_string())).collect()));
        }
        for (k, v) in extra {
            w.kv(k, v.clone());
        }
        let g = GgufFile::from_bytes(w.to_bytes()).unwrap();
        Tokenizer::from_gguf(&g).unwrap()
    }
}

/// <unk> <s> </s>, 256 byte tokens, a few pieces, a user-defined and a control token.
fn spm_vocab() -> Vocab {
    let mut v = Vocab::new();
    v.add("<unk>", 0.0, UNKNOWN);
    v.add("<s>", 0.0, CONTROL);
    v.add("</s>", 0.0, CONTROL);
    for b in 0..256 {
        v.add(&format!("<0x{b:02X}>"), 0.0, BYTE);
    }
    for (t, s) in [
        ("▁", -2.0),
        ("h", -3.0),
        ("e", -3.0),
        ("l", -3.0),
        ("o", -3.0),
        ("a", -3.0),
        ("b", -3.0),
        ("▁h", -2.5),
        ("he", -1.5),
        ("ll", -1.0),
        ("llo", -0.8),
        ("hello", -0.5),
        ("▁hello", -0.2),
        ("▁a", -1.0),
        ("▁b", -1.0),
    ] {
        v.add(t, s, NORMAL);
    }
    v.add("<tool>", 0.0, USER);
    v.add("<|im_end|>", 0.0, NORMAL); // auto-detected as EOT: becomes control + EOG
    v
}

#[test]
fn spm_merges_space_prefix_and_bos() {
    let v = spm_vocab();
    let tok = v.build("llama", &[], &[]);
    assert_eq!(tok.kind(), "llama");
    assert_eq!((tok.bos(), tok.eos()), (Some(1), Some(2)));
    // add_space_prefix defaults to true for SPM; BOS added by default
    assert_eq!(tok.encode("hello", true, false).unwrap(), [1, v.id("▁hello")]);
    assert_eq!(tok.encode("hello", false, false).unwrap(), [v.id("▁hello")]);
    assert_eq!(tok.encode("", true, false).unwrap(), [1]);
    assert_eq!(tok.encode("", false, false).unwrap(), Vec::<u32>::new());
    // decode strips the prefix space from the first token only
    assert_eq!(tok.decode(&[v.id("▁hello"), v.id("▁hello")]).unwrap(), "hello hello");
    // ... and a leading BOS uses up that strip, as in llama_detokenize(remove_special=false)
    assert_eq!(tok.decode(&[1, v.id("▁hello")]).unwrap(), " hello");

    // add_space_prefix = false (Gemma style)
    let tok = v.build("llama", &[("tokenizer.ggml.add_space_prefix", Value::Bool(false))], &[]);
    assert_eq!(tok.encode("hello", false, false).unwrap(), [v.id("hello")]);
    assert_eq!(tok.decode(&[v.id("hello"), v.id("▁hello")]).unwrap(), "hello hello");
}

#[test]
fn spm_byte_fallback() {
    let v = spm_vocab();
    let tok = v.build("llama", &[], &[]);
    // "é" = C3 A9 has no piece: byte tokens <0xC3> <0xA9>
    let ids = tok.encode("hé", false, false).unwrap();
    assert_eq!(ids, [v.id("▁h"), v.id("<0xC3>"), v.id("<0xA9>")]);
    assert_eq!(tok.token_to_piece(v.id("<0xC3>")).unwrap(), [0xC3]);
    assert_eq!(tok.decode(&ids).unwrap(), "hé");
    // a 4-byte character
    let ids = tok.encode("a🚀", false, false).unwrap();
    assert_eq!(ids, [v.id("▁a"), v.id("<0xF0>"), v.id("<0x9F>"), v.id("<0x9A>"), v.id("<0x80>")]);
}

#[test]
fn special_token_partition() {
    let v = spm_vocab();
    let tok = v.build("llama", &[], &[]);
    let (s, tool) = (v.id("</s>"), v.id("<tool>"));
    // control tokens only with parse_special; the raw text after a special token gets the
    // space prefix again
    assert_eq!(tok.encode("a</s>b", false, true).unwrap(), [v.id("▁a"), s, v.id("▁b")]);
    let plain = tok.encode("a</s>b", false, false).unwrap();
    assert!(!plain.contains(&s));
    // user-defined tokens are split out even without parse_special
    assert_eq!(tok.encode("a<tool>b", false, false).unwrap(), [v.id("▁a"), tool, v.id("▁b")]);
    assert_eq!(tok.encode("<tool><tool>", false, false).unwrap(), [tool, tool]);
    // user-defined pieces detokenize to their text, control ones to nothing
    assert_eq!(tok.decode(&[v.id("▁a"), tool, s, v.id("▁b")]).unwrap(), "a<tool> b");
}

#[test]
fn eog_detection() {
    let v = spm_vocab();
    let tok = v.build("llama", &[], &[]);
    let im_end = v.id("<|im_end|>");
    assert!(tok.is_eog(2)); // eos
    assert!(tok.is_eog(im_end)); // by its text, and retyped as control
    assert!(tok.is_control(im_end));
    assert_eq!(tok.token_to_piece(im_end).unwrap(), b"");
    assert!(!tok.is_eog(1));
    // an explicit EOT key
    let tok = v.build("llama", &[("tokenizer.ggml.eot_token_id", Value::U32(v.id("<tool>")))], &[]);
    assert!(tok.is_eog(v.id("<tool>")));
}

#[test]
fn stream_decoder_waits_for_whole_characters() {
    let v = spm_vocab();
    let tok = v.build("llama", &[], &[]);
    let mut d = StreamDecoder::new();
    assert_eq!(d.push(&tok, v.id("▁a")).unwrap(), " a");
    // 🚀 = F0 9F 9A 80 over four byte tokens: nothing until the last one
    assert_eq!(d.push(&tok, v.id("<0xF0>")).unwrap(), "");
    assert_eq!(d.push(&tok, v.id("<0x9F>")).unwrap(), "");
    assert_eq!(d.push(&tok, v.id("<0x9A>")).unwrap(), "");
    assert_eq!(d.pending(), [0xF0, 0x9F, 0x9A]);
    assert_eq!(d.push(&tok, v.id("<0x80>")).unwrap(), "🚀");
    // control tokens add nothing
    assert_eq!(d.push(&tok, 2).unwrap(), "");
    // an incomplete tail is flushed lossily; an impossible byte is replaced at once
    assert_eq!(d.push(&tok, v.id("<0xE4>")).unwrap(), "");
    assert_eq!(d.flush(), "\u{FFFD}");
    assert_eq!(d.push(&tok, v.id("<0xFF>")).unwrap(), "\u{FFFD}");
    assert!(d.push(&tok, 100_000).is_err());
}

/// A byte-level BPE vocabulary: "Ġ" is the GPT-2 encoding of a space.
fn bpe_vocab() -> Vocab {
    let mut v = Vocab::new();
    v.add("<|endoftext|>", 0.0, CONTROL);
    for t in ["h", "e", "l", "o", "w", "r", "d", "Ġ", "1", "2", "3", "'", "s", "Ċ"] {
        v.add(t, 0.0, NORMAL);
    }
    for t in ["he", "ll", "llo", "hello", "Ġw", "or", "Ġwor", "ld", "Ġworld", "12", "'s", "ĠĠ"] {
        v.add(t, 0.0, NORMAL);
    }
    v
}

const BPE_MERGES: &[&str] = &["h e", "l l", "ll o", "he llo", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "1 2", "' s", "Ġ Ġ"];

#[test]
fn bpe_merges_and_pretokenizer() {
    let v = bpe_vocab();
    let tok = v.build("gpt2", &[("tokenizer.ggml.pre", Value::Str("gpt-2".into()))], BPE_MERGES);
    assert_eq!(tok.kind(), "gpt2");
    assert_eq!(tok.pre(), "gpt-2");
    assert_eq!(tok.encode("hello world", false, false).unwrap(), [v.id("hello"), v.id("Ġworld")]);
    // BPE: no BOS unless the GGUF or the pre-tokenizer asks for it
    assert_eq!(tok.encode("hello", true, false).unwrap(), [v.id("hello")]);
    // gpt2 pre: " 123" is one piece -> "Ġ" + "12" + "3"
    assert_eq!(tok.encode("hello 123", false, false).unwrap(), [v.id("hello"), v.id("Ġ"), v.id("12"), v.id("3")]);
    // contraction piece
    assert_eq!(tok.encode("he's", false, false).unwrap(), [v.id("he"), v.id("'s")]);
    // whitespace run before a word: "ĠĠ" piece then "Ġworld"
    assert_eq!(tok.encode("hello   world", false, false).unwrap(), [v.id("hello"), v.id("ĠĠ"), v.id("Ġworld")]);
    // the default recipe (unknown / missing pre) splits punctuation first: no "'s" piece
    let dflt = v.build("gpt2", &[], BPE_MERGES);
    assert_eq!(dflt.encode("he's", false, false).unwrap(), [v.id("he"), v.id("'"), v.id("s")]);
    // parse_special
    assert_eq!(tok.encode("hello<|endoftext|>", false, true).unwrap(), [v.id("hello"), 0]);
    // byte-level decode round trip
    let ids = tok.encode("hello world\n", false, false).unwrap();
    assert_eq!(tok.decode(&ids).unwrap(), "hello world\n");
    // clean_spaces (gpt2 default): " 's" loses its space in decode
    assert_eq!(tok.decode(&[v.id("hello"), v.id("Ġ"), v.id("'s")]).unwrap(), "hello's");
}

#[test]
fn bpe_smollm_digits_and_llama3_flags() {
    let v = bpe_vocab();
    // smollm: every digit alone, no space cleanup
    let tok = v.build("gpt2", &[("tokenizer.ggml.pre", Value::Str("smollm".into()))], BPE_MERGES);
    assert_eq!(tok.encode("12", false, false).unwrap(), [v.id("1"), v.id("2")]);
    assert_eq!(tok.decode(&[v.id("hello"), v.id("Ġ"), v.id("'s")]).unwrap(), "hello 's");
    // llama-bpe: add_bos on by default, digits in threes, whole-word vocab hits skip merges
    let tok = v.build(
        "gpt2",
        &[("tokenizer.ggml.pre", Value::Str("llama-bpe".into())), ("tokenizer.ggml.bos_token_id", Value::U32(0))],
        BPE_MERGES,
    );
    assert_eq!(tok.encode("12", true, false).unwrap(), [0, v.id("12")]);
    assert_eq!(tok.encode("123", false, false).unwrap(), [v.id("12"), v.id("3")]);
    // an explicit add_bos_token = false wins
    let tok = v.build(
        "gpt2",
        &[
            ("tokenizer.ggml.pre", Value::Str("llama-bpe".into())),
            ("tokenizer.ggml.bos_token_id", Value::U32(0)),
            ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        ],
        BPE_MERGES,
    );
    assert_eq!(tok.encode("12", true, false).unwrap(), [v.id("12")]);
}

#[test]
fn bad_ids_are_errors() {
    let v = bpe_vocab();
    let tok = v.build("gpt2", &[("tokenizer.ggml.pre", Value::Str("gpt2".into()))], BPE_MERGES);
    let n = tok.n_vocab() as u32;
    assert!(matches!(tok.token_to_piece(n), Err(ember::Error::TokenOutOfVocab { .. })));
    assert!(tok.decode(&[0, n]).is_err());
    assert!(tok.token_text(n).is_none());
}

/// The 512-token SPM vocabulary of the architecture fixtures tokenizes and round-trips.
#[test]
fn arch_fixture_vocab_roundtrip() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/arch/llama.gguf");
    let g = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&g).unwrap();
    let text = "Hello world! The quick brown fox, 12345 — ünïcödé 中文 🚀\n\tend";
    let ids = tok.encode(text, true, false).unwrap();
    assert!(ids.iter().all(|&i| (i as usize) < tok.n_vocab()));
    let no_bos: Vec<u32> = ids.iter().copied().filter(|&i| Some(i) != tok.bos()).collect();
    assert_eq!(tok.decode(&no_bos).unwrap(), text);
}
