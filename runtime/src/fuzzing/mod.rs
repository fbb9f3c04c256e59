//! Fuzzing harnesses (feature `test-util`), shared by the cargo-fuzz targets
//! in `fuzz/` and the stable regression test `tests/fuzz_regressions.rs`,
//! which replays every input that ever failed (`fuzz/regressions/<target>/`).
//!
//! Each harness takes arbitrary bytes and panics only on a bug: a file or
//! text Ember must refuse comes back as an error, never a panic, a hang or
//! an allocation sized by a number the input made up.
//!
//! | target | input | what it checks |
//! |---|---|---|
//! | [`gguf_load`] | a GGUF (structure-aware mutations: [`gguf_edit`]) | reader, every accessor, tokenizer, model load on the CPU backend, one token of forward pass on tiny models, the model's chat template |
//! | [`tokenizer_text`] | vocabulary selector, flags, text | encode, decode round trip where promised, streaming decode = whole decode |
//! | [`tokenizer_gguf`] | a vocabulary-only GGUF (mutated metadata) | `Tokenizer::from_gguf` errors or works; the result encodes and decodes |
//! | [`chat_template`] | template source and messages | compile and render error or finish within the fuel and output limits |

pub mod gguf_edit;
mod seeds;

use std::sync::{Arc, OnceLock};

use crate::chat::{ChatMessage, ChatTemplate, MAX_RENDERED_BYTES};
use crate::gguf::{GgufFile, Value};
use crate::graph::Want;
use crate::tokenizer::{attr, StreamDecoder, Tokenizer};
use crate::{BackendKind, Engine, EngineConfig};

pub use seeds::{hostile, seeds, vocabularies, TARGETS};

/// xorshift64*: small, deterministic, good enough to pick mutations.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Runs the harness named `target` (one of [`TARGETS`]) on `data`.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "gguf_reader" => gguf_reader(data),
        "gguf_load" => {
            gguf_load(data);
        }
        "tokenizer" => tokenizer_text(data),
        "tokenizer_gguf" => tokenizer_gguf(data),
        "chat_template" => chat_template(data),
        other => panic!("unknown fuzz target '{other}' (known: {})", TARGETS.join(", ")),
    }
}

// ---- GGUF ------------------------------------------------------------------

/// Calls every accessor on every key and reads every tensor's data, checking
/// the invariants a successful parse promises. Errors from typed accessors
/// are fine (a key may have any type); panics are not.
pub fn exercise_gguf(f: &GgufFile) {
    for (key, value) in f.metadata() {
        assert!(f.contains_key(key));
        let _ = value.to_string();
        let n = value.as_array().map_or(3, <[Value]>::len);
        let results = [
            f.u32(key).err(),
            f.u32_opt(key).err(),
            f.u64(key).err(),
            f.i64_opt(key).err(),
            f.f32(key).err(),
            f.f32_opt(key).err(),
            f.bool_opt(key).err(),
            f.str(key).err(),
            f.str_opt(key).err(),
            f.str_array(key).err(),
            f.f32_array(key).err(),
            f.i64_array(key).err(),
            f.u32_or_array(key, n).err(),
        ];
        for e in results.into_iter().flatten() {
            let _ = e.to_string();
        }
    }
    let _ = f.architecture();
    assert!(f.data_offset.is_multiple_of(f.alignment));
    for t in f.tensors() {
        assert!(std::ptr::eq(f.tensor(&t.name).unwrap(), t));
        assert_eq!(t.offset % f.alignment, 0);
        let data = f.tensor_data(t);
        assert_eq!(data.len() as u64, t.size);
        let _ = (t.n_elements(), t.ne0(), t.n_rows(), t.row_bytes());
        if t.size > 0 {
            assert_eq!(t.row_bytes() * t.n_rows(), data.len());
        }
    }
}

/// Any bytes through the GGUF reader and its accessors.
pub fn gguf_reader(data: &[u8]) {
    if let Ok(f) = GgufFile::from_bytes(data.to_vec()) {
        exercise_gguf(&f);
    }
}

/// How far a GGUF got through [`gguf_load`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoadOutcome {
    pub parsed: bool,
    pub tokenizer: bool,
    pub loaded: bool,
    /// One token went through the forward pass.
    pub ran: bool,
}

/// Models up to this many weight bytes also run one token of forward pass.
const RUN_MAX_WEIGHT_BYTES: u64 = 8 << 20;

/// A GGUF through everything that loading a model does (the path of
/// `ember run` on the CPU backend): the reader, the tokenizer and the
/// model's chat template, hyper-parameters and tensor table checks. A tiny
/// model that loads also runs one token, which checks that loading refused
/// every shape the forward pass cannot handle.
pub fn gguf_load(data: &[u8]) -> LoadOutcome {
    let mut out = LoadOutcome::default();
    let Ok(file) = GgufFile::from_bytes(data.to_vec()) else { return out };
    out.parsed = true;
    exercise_gguf(&file);
    if let Ok(tok) = Tokenizer::from_gguf(&file) {
        out.tokenizer = true;
        exercise_tokenizer(&tok, "Hello, world! <s> 12345 ünï 🚀\n");
        if let Ok(t) = ChatTemplate::for_tokenizer(&tok, None) {
            let _ = t.render(&[ChatMessage::system("s"), ChatMessage::user("Hi"), ChatMessage::assistant("Yo")], true);
        }
    }
    let config = EngineConfig { n_threads: 1, backend: BackendKind::Cpu, n_ctx: Some(8), ..Default::default() };
    let Ok(engine) = Engine::from_file(Arc::new(file), config) else { return out };
    out.loaded = true;
    let info = engine.info();
    if info.weight_bytes <= RUN_MAX_WEIGHT_BYTES && info.kv_bytes_per_token <= 1 << 20 && info.n_layer <= 64 {
        let mut runner = engine.new_runner(4).expect("a runner for a loaded model");
        let mut logits = Vec::new();
        let id = engine.tokenizer().map_or(None, |t| t.bos()).filter(|&b| (b as usize) < info.n_vocab).unwrap_or(0);
        runner.forward(&[id, 0], 0, Want::Last, &mut logits).expect("one forward pass of a loaded model");
        assert_eq!(logits.len(), info.n_vocab);
        out.ran = true;
    }
    out
}

// ---- tokenizer -------------------------------------------------------------

/// Encodes `text` both ways and checks the ids (in the vocabulary, streaming
/// decode = the pieces). No round trip: the vocabulary may be a doctored one.
pub fn exercise_tokenizer(tok: &Tokenizer, text: &str) {
    for (add_special, parse_special) in [(false, false), (true, true)] {
        if let Ok(ids) = tok.encode(text, add_special, parse_special) {
            check_ids(tok, text, &ids, false);
        }
    }
}

/// Ids are in the vocabulary; streaming decode agrees with the pieces; and
/// `decode` gives the text back where the tokenizer promises it (`exact`:
/// ids from `encode(text, false, false)`).
fn check_ids(tok: &Tokenizer, text: &str, ids: &[u32], exact: bool) {
    let n = tok.n_vocab();
    assert!(ids.iter().all(|&i| (i as usize) < n), "an id out of the vocabulary of {n}");
    let mut pieces = Vec::new();
    let mut stream = StreamDecoder::new();
    let mut streamed = String::new();
    for &id in ids {
        pieces.extend(tok.token_to_piece(id).expect("the piece of an encoded id"));
        streamed.push_str(&stream.push(tok, id).expect("stream decode of an encoded id"));
    }
    streamed.push_str(&stream.flush());
    // The stream holds back incomplete characters but loses nothing.
    assert_eq!(streamed, String::from_utf8_lossy(&pieces), "streaming decode differs from the pieces");
    let whole = tok.decode_bytes(ids).expect("decode of encoded ids");
    if !tok.add_space_prefix() && !tok.clean_spaces() {
        assert_eq!(whole, pieces, "decode differs from the concatenated pieces");
    }
    if exact && promises_round_trip(tok, text, ids) {
        assert_eq!(String::from_utf8_lossy(&whole), text, "decode(encode(text)) != text; ids {ids:?}");
    }
}

/// Where `decode(encode(text))` must be `text` (for the built-in, sound
/// vocabularies): every id a normal or byte token (a special token's text may
/// be stripped or vanish), no space clean-up, and for SPM no `▁` in the text
/// (it decodes to a space).
fn promises_round_trip(tok: &Tokenizer, text: &str, ids: &[u32]) -> bool {
    let plain = |i: u32| matches!(tok.token_attr(i), Some(a) if a & (attr::NORMAL | attr::BYTE) != 0 && a & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) == 0);
    if !ids.iter().all(|&i| plain(i)) || tok.clean_spaces() {
        return false;
    }
    match tok.kind() {
        "llama" => !text.contains('\u{2581}'),
        // A byte whose GPT-2 character is not a token is dropped, as llama.cpp
        // does (SmolLM2 has no token for most control bytes).
        "gpt2" => text.bytes().all(|b| tok.token_id(byte_char(b).encode_utf8(&mut [0; 4])).is_some()),
        _ => false,
    }
}

/// GPT-2's byte → printable character map (byte-level BPE vocabularies).
pub(crate) fn byte_char(b: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).unwrap()
}

/// `data[0]` picks a vocabulary (see [`vocabularies`]), `data[1]` the
/// encode flags; the rest is the text (invalid UTF-8 replaced).
pub fn tokenizer_text(data: &[u8]) {
    let [v, flags, rest @ ..] = data else { return };
    let vocabs = built_vocabularies();
    let Some(tok) = vocabs[*v as usize % vocabs.len()].as_ref() else { return };
    let text = String::from_utf8_lossy(rest);
    let (add_special, parse_special) = (flags & 1 != 0, flags & 2 != 0);
    if let Ok(ids) = tok.encode(&text, add_special, parse_special) {
        check_ids(tok, &text, &ids, !add_special && !parse_special);
    }
    if add_special || parse_special {
        if let Ok(ids) = tok.encode(&text, false, false) {
            check_ids(tok, &text, &ids, true);
        }
    }
    // Ids straight from the input: decode errors on unknown ids, never panics.
    let ids: Vec<u32> = rest.chunks(2).map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32).collect();
    let _ = tok.decode(&ids);
    let mut s = StreamDecoder::new();
    for id in ids {
        let _ = s.push(tok, id);
    }
}

fn built_vocabularies() -> &'static [Option<Tokenizer>] {
    static V: OnceLock<Vec<Option<Tokenizer>>> = OnceLock::new();
    V.get_or_init(|| {
        vocabularies()
            .into_iter()
            .map(|(name, file)| Some(Tokenizer::from_gguf(&file?).unwrap_or_else(|e| panic!("vocabulary {name}: {e}"))))
            .collect()
    })
}

/// A vocabulary-only GGUF through `Tokenizer::from_gguf`; what loads must
/// encode and decode a few texts like any tokenizer.
pub fn tokenizer_gguf(data: &[u8]) {
    let Ok(g) = GgufFile::from_bytes(data.to_vec()) else { return };
    let Ok(tok) = Tokenizer::from_gguf(&g) else { return };
    for text in ["", " ", "Hello world", "  a\n\tb 12345 <s></s><unk> <|im_end|>", "ünïcödé 中文 🚀 \u{2581}x"] {
        exercise_tokenizer(&tok, text);
    }
    for id in [0, 1, 2, tok.n_vocab() as u32 - 1, tok.n_vocab() as u32, u32::MAX] {
        let _ = tok.token_to_piece(id);
        let _ = (tok.token_text(id), tok.token_attr(id), tok.token_score(id), tok.is_eog(id), tok.is_control(id));
    }
    let _ = crate::chat::ChatTemplate::for_tokenizer(&tok, None);
}

// ---- chat templates --------------------------------------------------------

const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// `data[0]`: bit 0 add_generation_prompt, bit 1 empty BOS/EOS texts; then
/// the template source, and after each NUL byte one message (`role\x01content`,
/// or only content with roles taken in turn).
pub fn chat_template(data: &[u8]) {
    if let Ok(out) = render_chat_input(data) {
        assert!(out.len() <= MAX_RENDERED_BYTES, "rendered {} bytes, past the limit", out.len());
    }
}

/// Compiles and renders a [`chat_template`] input.
pub fn render_chat_input(data: &[u8]) -> crate::Result<String> {
    let [flags, rest @ ..] = data else { return Err(crate::Error::ChatTemplate("empty input".into())) };
    let mut parts = rest.split(|&b| b == 0);
    let src = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let msgs: Vec<ChatMessage> = parts
        .take(16)
        .enumerate()
        .map(|(i, p)| {
            let p = String::from_utf8_lossy(p);
            match p.split_once('\u{1}') {
                Some((r, c)) => ChatMessage::new(r, c),
                None => ChatMessage::new(ROLES[i % 4], p.as_ref()),
            }
        })
        .collect();
    let (bos, eos) = if flags & 2 != 0 { ("", "") } else { ("<s>", "</s>") };
    ChatTemplate::new("fuzz", &src, bos, eos)?.render(&msgs, flags & 1 != 0)
}

/// Jinja pieces a template mutation inserts (also the fuzz dictionary's).
pub const JINJA_SNIPPETS: &[&str] = &[
    "{{ messages }}",
    "{{ message['content'] }}",
    "{{ message.content }}",
    "{{ bos_token }}",
    "{{ eos_token }}",
    "{% for message in messages %}",
    "{% endfor %}",
    "{% if add_generation_prompt %}",
    "{% if loop.first %}",
    "{% else %}",
    "{% elif message['role'] == 'user' %}",
    "{% endif %}",
    "{% set ns = namespace(x=0) %}",
    "{% set ns.x = ns.x + 1 %}",
    "{% set x = messages[0]['content'] %}",
    "{% for i in range(100000) %}",
    "{% for i in range(1000) %}{% for j in range(1000) %}",
    "{% endfor %}{% endfor %}",
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "{% macro g(s) %}{{ g(s ~ s) }}{% endmacro %}",
    "{{ g('ab') }}",
    "{{ 'a' * 100000 }}",
    "{{ raise_exception('x') }}",
    "{{ strftime_now('%Y') }}",
    "{{ message['content'].strip() }}",
    "{{ message['content'] | trim }}",
    "{{ messages | tojson }}",
    "{{ messages[1:] }}",
    "{{ messages[-1] }}",
    "{{ loop.index0 % 2 }}",
    "{%- if x is defined -%}",
    "{{ x.split(' ') }}",
    "{{ (messages | length) * 2 }}",
    "{{ range(10) | list }}",
    "{{ 'x' | replace('x', 'xx') }}",
    "{{ message['content'].replace('a', 'aa') }}",
    "{{ tools }}",
    "{% include 'chat' %}",
    "{% extends 'chat' %}",
    "{% block b %}{% endblock %}",
    "{% raw %}",
    "{% endraw %}",
    "{#",
    "#}",
    "{{",
    "}}",
    "{%",
    "%}",
    "<|im_start|>",
    "<start_of_turn>",
];

/// One edit of a chat-template input (a snippet inserted, a tag replaced,
/// duplicated or removed, a number changed); `None` leaves it to libFuzzer.
pub fn mutate_template(data: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    if data.is_empty() {
        return Some(vec![1]);
    }
    let (flags, rest) = data.split_first()?;
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let mut src = rest[..end].to_vec();
    let tail = &rest[end..];
    // The tags of the template: byte ranges of `{{ … }}` / `{% … %}`.
    let mut tags = Vec::new();
    let mut i = 0;
    while i + 1 < src.len() {
        if src[i] == b'{' && (src[i + 1] == b'{' || src[i + 1] == b'%') {
            let close = if src[i + 1] == b'{' { b"}}" } else { b"%}" };
            if let Some(j) = src[i + 2..].windows(2).position(|w| w == close) {
                tags.push(i..i + 2 + j + 2);
                i += 2 + j + 2;
                continue;
            }
        }
        i += 1;
    }
    let snippet = JINJA_SNIPPETS[rng.below(JINJA_SNIPPETS.len())].as_bytes();
    match rng.below(6) {
        0 | 1 => {
            let at = rng.below(src.len() + 1);
            src.splice(at..at, snippet.iter().copied());
        }
        2 if !tags.is_empty() => {
            let t = tags[rng.below(tags.len())].clone();
            src.splice(t, snippet.iter().copied());
        }
        3 if !tags.is_empty() => {
            let t = tags[rng.below(tags.len())].clone();
            let copy = src[t.clone()].to_vec();
            let at = tags[rng.below(tags.len())].start;
            src.splice(at..at, copy);
        }
        4 if !tags.is_empty() => {
            let t = tags[rng.below(tags.len())].clone();
            src.drain(t);
        }
        _ => {
            // a number in the template to a boundary value
            let digits: Vec<usize> = (0..src.len()).filter(|&k| src[k].is_ascii_digit()).collect();
            if digits.is_empty() {
                return None;
            }
            let s = digits[rng.below(digits.len())];
            let e = (s..src.len()).find(|&k| !src[k].is_ascii_digit()).unwrap_or(src.len());
            let v = ["0", "1", "-1", "100000", "99999999999", "9223372036854775807", "18446744073709551616"][rng.below(7)];
            src.splice(s..e, v.bytes());
        }
    }
    src.truncate(1 << 16);
    let mut out = vec![*flags];
    out.extend_from_slice(&src);
    out.extend_from_slice(tail);
    Some(out)
}

/// One structure-aware edit of a GGUF input ([`gguf_edit::mutate`]).
pub fn mutate_gguf(data: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    gguf_edit::mutate(data, rng)
}
