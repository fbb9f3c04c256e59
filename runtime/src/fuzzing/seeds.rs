//! Seed inputs for each fuzz target, and the vocabularies of the tokenizer
//! target: the tiny architecture fixtures (tests/fixtures/arch, their F32
//! matrices rewritten as zero Q4_0 so a seed is 80–345 KB), vocabularies built
//! in code, and, when they are on this machine, the real models' tokenizers
//! and chat templates ($EMBER_HOME/models, default ~/.cache/ember/models).

use std::path::PathBuf;

use super::byte_char;
use crate::chat::BUILTIN_TEMPLATES;
use crate::gguf::{GgufFile, GgufWriter, Value, ValueType};
use crate::quant::GgmlType;

/// The harnesses [`super::run`] knows, by their fuzz target names.
pub const TARGETS: &[&str] = &["gguf_reader", "gguf_load", "tokenizer", "tokenizer_gguf", "chat_template"];

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/arch")
}

fn models_dir() -> PathBuf {
    match std::env::var_os("EMBER_HOME").filter(|v| !v.is_empty()) {
        Some(h) => PathBuf::from(h).join("models"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ember/models"),
    }
}

/// Real models whose tokenizers and templates are used when present.
const REAL_MODELS: &[(&str, &str)] = &[
    ("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("gemma3", "gemma-3-270m-q4_k_m.gguf"),
    ("qwen2.5", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
];

/// The architecture fixtures the `gguf_load` seeds are made from.
const FIXTURES: &[&str] =
    &["llama", "qwen2", "qwen3", "phi3", "olmo2", "minicpm", "minicpm_nokeys", "minicpm_longrope", "minicpm3", "gemma3_pattern3"];

const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER: i32 = 4;
const BYTE: i32 = 6;

fn vocab_gguf(model: &str, toks: &[(String, f32, i32)], merges: &[String], extra: &[(&str, Value)]) -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.kv("general.architecture", Value::Str("llama".into()));
    w.kv("tokenizer.ggml.model", Value::Str(model.into()));
    w.kv("tokenizer.ggml.tokens", Value::Array(ValueType::Str, toks.iter().map(|t| Value::Str(t.0.clone())).collect()));
    w.kv("tokenizer.ggml.scores", Value::Array(ValueType::F32, toks.iter().map(|t| Value::F32(t.1)).collect()));
    w.kv("tokenizer.ggml.token_type", Value::Array(ValueType::I32, toks.iter().map(|t| Value::I32(t.2)).collect()));
    if !merges.is_empty() {
        w.kv("tokenizer.ggml.merges", Value::Array(ValueType::Str, merges.iter().map(|m| Value::Str(m.clone())).collect()));
    }
    for (k, v) in extra {
        w.kv(k, v.clone());
    }
    w.to_bytes()
}

/// <unk> <s> </s>, 256 byte tokens, a few pieces, a user-defined token and
/// an `<|im_end|>` that is detected as EOT.
fn spm_vocab(extra: &[(&str, Value)]) -> Vec<u8> {
    let mut t: Vec<(String, f32, i32)> = vec![("<unk>".into(), 0.0, UNKNOWN), ("<s>".into(), 0.0, CONTROL), ("</s>".into(), 0.0, CONTROL)];
    t.extend((0..256).map(|b| (format!("<0x{b:02X}>"), 0.0, BYTE)));
    for (p, s) in [
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
        ("▁▁", -1.5),
        ("中", -2.0),
    ] {
        t.push((p.into(), s, NORMAL));
    }
    t.push(("<tool>".into(), 0.0, USER));
    t.push(("<|im_end|>".into(), 0.0, NORMAL));
    vocab_gguf("llama", &t, &[], extra)
}

/// A byte-level BPE vocabulary: special tokens, all 256 byte characters, and
/// the merges that build a few words (with and without a leading space).
fn bpe_vocab(pre: &str) -> Vec<u8> {
    let mut t: Vec<(String, f32, i32)> = vec![
        ("<|endoftext|>".into(), 0.0, CONTROL),
        ("<|im_start|>".into(), 0.0, CONTROL),
        ("<|im_end|>".into(), 0.0, CONTROL),
        ("<tool>".into(), 0.0, USER),
    ];
    t.extend((0..=255u8).map(|b| (byte_char(b).to_string(), 0.0, NORMAL)));
    let mut merges = Vec::new();
    for word in ["the", " the", "hello", " world", " a", "ing", " in", "er", "12", "123", "  ", "\n\n", "'s", " 中文", "é"] {
        let chars: Vec<String> = word.bytes().map(|b| byte_char(b).to_string()).collect();
        let mut acc = chars[0].clone();
        for c in &chars[1..] {
            let m = format!("{acc} {c}");
            acc.push_str(c);
            if !merges.contains(&m) {
                merges.push(m);
                t.push((acc.clone(), 0.0, NORMAL));
            }
        }
    }
    vocab_gguf("gpt2", &t, &merges, &[("tokenizer.ggml.pre", Value::Str(pre.into()))])
}

/// The fixtures' 512-token SPM vocabulary, without the model.
fn fixture_vocab() -> Option<Vec<u8>> {
    let g = GgufFile::open(fixture_dir().join("llama.gguf")).ok()?;
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        if k.starts_with("tokenizer.") || k == "general.architecture" {
            w.kv(k, v.clone());
        }
    }
    Some(w.to_bytes())
}

/// The tokenizer target's vocabularies, by index (`data[0]` modulo their
/// count): a file each, `None` where a real model is not on this machine.
pub fn vocabularies() -> Vec<(&'static str, Option<GgufFile>)> {
    let bytes = |b: Vec<u8>| GgufFile::from_bytes(b).ok();
    let mut v = vec![
        ("fixture-spm", fixture_vocab().and_then(bytes)),
        ("spm", bytes(spm_vocab(&[]))),
        ("spm-no-space-prefix", bytes(spm_vocab(&[("tokenizer.ggml.add_space_prefix", Value::Bool(false))]))),
        ("bpe-gpt2", bytes(bpe_vocab("gpt-2"))),
        ("bpe-llama3", bytes(bpe_vocab("llama-bpe"))),
        ("bpe-qwen2", bytes(bpe_vocab("qwen2"))),
        ("bpe-smollm", bytes(bpe_vocab("smollm"))),
        ("bpe-default", bytes(bpe_vocab(""))),
    ];
    for (name, file) in REAL_MODELS {
        v.push((name, GgufFile::open(models_dir().join(file)).ok()));
    }
    v
}

/// A fixture with every F32 matrix whose rows are whole Q4_0 blocks
/// rewritten as zero Q4_0 (1-D tensors stay F32): same keys, same shapes,
/// an eighth of the bytes.
fn shrunk_fixture(name: &str) -> Option<Vec<u8>> {
    let g = GgufFile::open(fixture_dir().join(format!("{name}.gguf"))).ok()?;
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        w.kv(k, v.clone());
    }
    for t in g.tensors() {
        if t.ne.len() == 2 && t.ne[0] % 32 == 0 && t.ty == GgmlType::F32 {
            let n = (t.ne[0] * t.ne[1] / 32 * 18) as usize;
            w.tensor(&t.name, GgmlType::Q4_0, &t.ne, vec![0; n]);
        } else {
            w.tensor(&t.name, t.ty, &t.ne, g.tensor_data(t).to_vec());
        }
    }
    Some(w.to_bytes())
}

/// The llama fixture's keys and vocabulary with smaller dimensions (n_embd
/// 32, 2 heads of 16, 1 KV head, n_ff 32, 2 layers, untied), zero Q4_0
/// matrices: a whole model in 39 KB.
pub fn tiny_llama() -> Option<Vec<u8>> {
    let g = GgufFile::open(fixture_dir().join("llama.gguf")).ok()?;
    let mut w = GgufWriter::new();
    let (e, ff, kv, vocab) = (32u64, 32u64, 16u64, 512u64);
    for (k, v) in g.metadata() {
        let v = match k.as_str() {
            "llama.embedding_length" => Value::U32(e as u32),
            "llama.feed_forward_length" => Value::U32(ff as u32),
            "llama.attention.head_count" => Value::U32(2),
            "llama.attention.head_count_kv" => Value::U32(1),
            _ => v.clone(),
        };
        w.kv(k, v);
    }
    let q4 = |w: &mut GgufWriter, name: &str, ne: [u64; 2]| {
        w.tensor(name, GgmlType::Q4_0, &ne, vec![0; (ne[0] * ne[1] / 32 * 18) as usize]);
    };
    q4(&mut w, "token_embd.weight", [e, vocab]);
    w.tensor_f32("output_norm.weight", &[e], &vec![1.0; e as usize]);
    q4(&mut w, "output.weight", [e, vocab]);
    for il in 0..2 {
        let n = |s: &str| format!("blk.{il}.{s}.weight");
        w.tensor_f32(&n("attn_norm"), &[e], &vec![1.0; e as usize]);
        q4(&mut w, &n("attn_q"), [e, e]);
        q4(&mut w, &n("attn_k"), [e, kv]);
        q4(&mut w, &n("attn_v"), [e, kv]);
        q4(&mut w, &n("attn_output"), [e, e]);
        w.tensor_f32(&n("ffn_norm"), &[e], &vec![1.0; e as usize]);
        q4(&mut w, &n("ffn_gate"), [e, ff]);
        q4(&mut w, &n("ffn_up"), [e, ff]);
        q4(&mut w, &n("ffn_down"), [ff, e]);
    }
    Some(w.to_bytes())
}

/// A template input (see [`super::chat_template`]).
fn chat_input(flags: u8, src: &str, msgs: &[(&str, &str)]) -> Vec<u8> {
    let mut b = vec![flags];
    b.extend_from_slice(src.as_bytes());
    for (r, c) in msgs {
        b.push(0);
        b.extend_from_slice(format!("{r}\u{1}{c}").as_bytes());
    }
    b
}

/// LLaMA-3's chat template (Meta-Llama-3-8B-Instruct).
const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/// Gemma-style: system folded into the first user turn, alternation enforced.
const GEMMA_LIKE: &str = "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'].strip() + '\n\n' -%}{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = \"\" -%}{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}{{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}{%- endif -%}{%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}{%- else -%}{%- set role = message['role'] -%}{%- endif -%}{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}{{- message['content'] | trim -}}{{ '<end_of_turn>\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{'<start_of_turn>model\n'}}{%- endif -%}";

/// Seed inputs of one target, by name.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    match target {
        "gguf_reader" | "gguf_load" => {
            for name in FIXTURES {
                if let Some(b) = shrunk_fixture(name) {
                    out.push((format!("{name}.gguf"), b));
                }
            }
            if let Some(b) = tiny_llama() {
                out.push(("tiny_llama.gguf".into(), b));
            }
            out.push(("vocab_spm.gguf".into(), spm_vocab(&[])));
        }
        "tokenizer_gguf" => {
            out.push(("spm.gguf".into(), spm_vocab(&[])));
            out.push(("spm_no_prefix.gguf".into(), spm_vocab(&[("tokenizer.ggml.add_space_prefix", Value::Bool(false))])));
            for pre in ["gpt-2", "llama-bpe", "qwen2", "smollm", ""] {
                out.push((format!("bpe_{pre}.gguf"), bpe_vocab(pre)));
            }
            if let Some(b) = fixture_vocab() {
                out.push(("fixture_spm.gguf".into(), b));
            }
        }
        "tokenizer" => {
            let texts = [
                "Hello world",
                " hello  world\n\n the 123 12345 it's",
                "<s>hello</s><tool> a<|im_end|><|endoftext|>",
                "ünïcödé 中文 🚀 é\t\r\n",
                "\u{2581}▁ x",
            ];
            for v in 0..vocabularies().len() as u8 {
                for (i, t) in texts.iter().enumerate() {
                    let mut b = vec![v, i as u8 % 4];
                    b.extend_from_slice(t.as_bytes());
                    out.push((format!("v{v}_t{i}"), b));
                }
            }
        }
        "chat_template" => {
            let msgs = [("system", "Be brief. "), ("user", " Hi!"), ("assistant", "Hello."), ("user", "2+2?")];
            let mut templates: Vec<(String, String)> = BUILTIN_TEMPLATES.iter().map(|(n, s)| (n.to_string(), s.to_string())).collect();
            templates.push(("llama3".into(), LLAMA3.into()));
            templates.push(("gemma_like".into(), GEMMA_LIKE.into()));
            for (name, file) in REAL_MODELS {
                let Ok(g) = GgufFile::open(models_dir().join(file)) else { continue };
                if let Ok(Some(s)) = g.str_opt("tokenizer.chat_template") {
                    templates.push((name.to_string(), s.to_string()));
                }
            }
            for (name, src) in templates {
                out.push((format!("{name}_gen"), chat_input(1, &src, &msgs)));
                out.push((format!("{name}_user"), chat_input(2, &src, &msgs[1..2])));
            }
        }
        other => panic!("unknown fuzz target '{other}'"),
    }
    out
}

/// Hand-made hostile inputs per target (what `fuzz/regressions/` started
/// with, before any fuzzer ran): written by
/// `cargo test -p ember --test fuzz_regressions -- --ignored write_hostile_inputs`.
pub fn hostile(target: &str) -> Vec<(String, Vec<u8>)> {
    use super::gguf_edit::{RawGguf, RawValue};
    let mut out = Vec::new();
    match target {
        "gguf_reader" => {
            // A small file with metadata and two tensors, lying about its counts and records.
            let mut w = GgufWriter::new();
            w.kv("general.architecture", Value::Str("llama".into()))
                .kv("llama.block_count", Value::U32(1))
                .kv("tokenizer.ggml.tokens", Value::Array(ValueType::Str, vec![Value::Str("a".into()); 3]))
                .tensor_f32("blk.0.a", &[4, 2], &[0.5; 8])
                .tensor_f32("b", &[3], &[1.0; 3]);
            let base = w.to_bytes();
            let patch = |at: usize, v: &[u8]| {
                let mut b = base.clone();
                b[at..at + v.len()].copy_from_slice(v);
                b
            };
            let g = RawGguf::parse(&base).unwrap();
            out.push(("n_kv_2p63.gguf".into(), patch(16, &(1u64 << 63).to_le_bytes())));
            out.push(("n_tensors_u64_max.gguf".into(), patch(8, &u64::MAX.to_le_bytes())));
            out.push(("version_1.gguf".into(), patch(4, &1u32.to_le_bytes())));
            for (name, edit) in [
                ("dim_huge", 0usize),
                ("dim_zero", 1),
                ("type_unknown", 2),
                ("offset_past_end", 3),
                ("offset_misaligned", 4),
                ("five_dims", 5),
            ] {
                let mut g = g.clone();
                let t = &mut g.tensors[0];
                match edit {
                    0 => t.dims[1] = 1 << 40,
                    1 => t.dims[1] = 0,
                    2 => t.ty = 1000,
                    3 => t.offset = 1 << 40,
                    4 => t.offset += 1,
                    _ => t.dims = vec![4, 2, 1, 1, 1],
                }
                out.push((format!("tensor_{name}.gguf"), g.to_bytes()));
            }
            let mut g2 = g.clone();
            g2.kv[2].value = RawValue::Array { elem: 8, items: vec![RawValue::Str(vec![0xFF, 0xFE]); 2] };
            out.push(("string_invalid_utf8.gguf".into(), g2.to_bytes()));
            let mut g3 = g.clone();
            g3.kv.push(g3.kv[0].clone());
            out.push(("duplicate_key.gguf".into(), g3.to_bytes()));
        }
        "gguf_load" => {
            let Some(base) = tiny_llama() else { return out };
            let base = RawGguf::parse(&base).unwrap();
            let set = |g: &mut RawGguf, key: &str, ty: u32, v: RawValue| {
                g.kv.retain(|k| k.key != key.as_bytes());
                g.kv.push(super::gguf_edit::RawKv { key: key.as_bytes().to_vec(), ty, value: v });
            };
            let u32v = |x: u32| RawValue::Scalar(x.to_le_bytes().to_vec());
            for (name, key, v) in [
                ("block_count_u32_max", "llama.block_count", u32::MAX),
                ("block_count_2p20", "llama.block_count", 1 << 20),
                ("block_count_0", "llama.block_count", 0),
                ("embedding_length_u32_max", "llama.embedding_length", u32::MAX),
                ("head_count_u32_max", "llama.attention.head_count", u32::MAX),
                ("head_count_kv_0", "llama.attention.head_count_kv", 0),
                ("ffn_length_u32_max", "llama.feed_forward_length", u32::MAX),
                ("rope_dims_0", "llama.rope.dimension_count", 0),
                ("rope_dims_odd", "llama.rope.dimension_count", 15),
                ("context_length_u32_max", "llama.context_length", u32::MAX),
                ("key_length_u32_max", "llama.attention.key_length", u32::MAX),
                ("bos_id_u32_max", "tokenizer.ggml.bos_token_id", u32::MAX),
            ] {
                let mut g = base.clone();
                set(&mut g, key, 4, u32v(v));
                out.push((format!("llama_{name}.gguf"), g.to_bytes()));
            }
            // A tensor of layer 4e9 and a block count that agrees with it:
            // a per-layer scalar key must not be expanded to 4e9 values.
            let mut g = base.clone();
            g.tensors[3].name = b"blk.3999999999.attn_norm.weight".to_vec();
            set(&mut g, "llama.block_count", 4, u32v(4_000_000_000));
            out.push(("llama_layer_4e9.gguf".into(), g.to_bytes()));
            // head_count as an array of the wrong length, and of 2^20 elements claimed.
            let mut g = base.clone();
            set(&mut g, "llama.attention.head_count", 9, RawValue::Array { elem: 4, items: vec![u32v(4); 3] });
            out.push(("llama_head_count_array_3.gguf".into(), g.to_bytes()));
        }
        "tokenizer" => {
            let t = |v: u8, f: u8, s: &str| [&[v, f][..], s.as_bytes()].concat();
            out.push(("spaces_4k".into(), t(0, 0, &" ".repeat(4096))));
            out.push(("sp_marks_4k".into(), t(1, 3, &"\u{2581}".repeat(1300))));
            out.push(("bpe_newlines".into(), t(3, 0, &"\r\n".repeat(2000))));
            out.push(("bpe_digits".into(), t(4, 0, &"9".repeat(4000))));
            out.push(("specials_glued".into(), t(1, 3, &"<s></s><tool><|im_end|><unk>".repeat(100))));
            out.push(("bpe_specials".into(), t(5, 3, &"<|im_start|><|endoftext|><tool>".repeat(100))));
            out.push(("combining_marks".into(), t(5, 0, &"a\u{301}\u{302}\u{303}".repeat(500))));
            out.push(("invalid_utf8".into(), [&[6u8, 0][..], &[0xFF, 0xC3, 0xED, 0xA0, 0x80, 0xF4, 0x90]].concat()));
        }
        "tokenizer_gguf" => {
            let spm = RawGguf::parse(&spm_vocab(&[])).unwrap();
            let bpe = RawGguf::parse(&bpe_vocab("gpt-2")).unwrap();
            let with = |g: &RawGguf, key: &str, ty: u32, v: RawValue| {
                let mut g = g.clone();
                g.kv.retain(|k| k.key != key.as_bytes());
                g.kv.push(super::gguf_edit::RawKv { key: key.as_bytes().to_vec(), ty, value: v });
                g.to_bytes()
            };
            let strs = |v: &[&str]| RawValue::Array { elem: 8, items: v.iter().map(|s| RawValue::Str(s.as_bytes().to_vec())).collect() };
            let i32s =
                |v: &[i32]| RawValue::Array { elem: 5, items: v.iter().map(|x| RawValue::Scalar(x.to_le_bytes().to_vec())).collect() };
            out.push(("spm_no_tokens.gguf".into(), with(&spm, "tokenizer.ggml.tokens", 9, strs(&[]))));
            out.push(("spm_one_token.gguf".into(), with(&spm, "tokenizer.ggml.tokens", 9, strs(&["<unk>"]))));
            out.push(("spm_types_short.gguf".into(), with(&spm, "tokenizer.ggml.token_type", 9, i32s(&[1, 2]))));
            out.push(("spm_types_odd.gguf".into(), with(&spm, "tokenizer.ggml.token_type", 9, i32s(&[-1; 280]))));
            out.push((
                "spm_bos_u32_max.gguf".into(),
                with(&spm, "tokenizer.ggml.bos_token_id", 4, RawValue::Scalar(u32::MAX.to_le_bytes().to_vec())),
            ));
            out.push((
                "spm_scores_nan.gguf".into(),
                with(
                    &spm,
                    "tokenizer.ggml.scores",
                    9,
                    RawValue::Array { elem: 6, items: vec![RawValue::Scalar(f32::NAN.to_le_bytes().to_vec()); 280] },
                ),
            ));
            out.push((
                "bpe_merges_odd.gguf".into(),
                with(&bpe, "tokenizer.ggml.merges", 9, strs(&["", " ", "a", "a b c", "Ġ Ġ", "zz yy", "  "])),
            ));
            out.push(("bpe_tokens_empty_strings.gguf".into(), with(&bpe, "tokenizer.ggml.tokens", 9, strs(&[""; 300]))));
            out.push(("bpe_unknown_model.gguf".into(), with(&bpe, "tokenizer.ggml.model", 8, RawValue::Str(b"bert".to_vec()))));
        }
        "chat_template" => {
            let c = |src: &str| chat_input(1, src, &[("user", "Hi")]);
            out.push((
                "nested_ranges.jinja".into(),
                c("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"),
            ));
            out.push(("range_huge.jinja".into(), c("{% for i in range(999999999) %}{{ i }}{% endfor %}")));
            out.push(("output_blowup.jinja".into(), c("{% set s = 'a' * 10000000 %}{% for i in range(100000) %}{{ s }}{% endfor %}")));
            out.push(("macro_recursion.jinja".into(), c("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")));
            out.push(("deep_nesting.jinja".into(), c(&format!("{}1{}", "{{ (".repeat(400), ") }}".repeat(400)))));
            out.push(("deep_ifs.jinja".into(), c(&format!("{}x{}", "{% if true %}".repeat(300), "{% endif %}".repeat(300)))));
            out.push(("self_include.jinja".into(), c("{% include 'chat' %}")));
            out.push(("self_extends.jinja".into(), c("{% extends 'chat' %}")));
            out.push(("raise.jinja".into(), c("{{ raise_exception('no') }}")));
        }
        _ => {}
    }
    out
}
