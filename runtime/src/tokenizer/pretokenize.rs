//! BPE pre-tokenizers: hand-written equivalents of the regex lists llama.cpp picks by
//! `tokenizer.ggml.pre` (src/llama-vocab.cpp, `llm_tokenizer_bpe`), with the splitting semantics
//! of src/unicode.cpp (`unicode_regex_split`): the regexes run one after the other, each
//! splitting every piece the previous one produced; text a regex does not match stays a piece of
//! its own. The GPT-2 and LLaMA-3 patterns follow llama.cpp's hand-coded splitters
//! (`unicode_regex_split_custom_gpt2` / `_llama3`); the others follow std::regex semantics
//! (leftmost-first alternation, greedy, with backtracking where it matters).

use super::unicode::{flags, Flags};

/// The split recipe behind a `tokenizer.ggml.pre` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreKind {
    /// `[\p{P}\$\+<=>\^~\|]+`, GPT-2 pattern, `\p{N}+`, `[0-9][0-9][0-9]` (unknown names too).
    Default,
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`.
    Gpt2,
    /// `\p{N}` (every digit alone), then the GPT-2 pattern (smollm, starcoder, refact, ...).
    StarCoder,
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
    Llama3,
    /// As LLaMA-3 but `\p{N}` (single digits).
    Qwen2,
    /// As Qwen2 but marks join letters: `[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+` and `[^\s\p{L}\p{M}\p{N}]+`.
    Qwen35,
    /// `[\p{P}\$\+<=>\^~\|`]+`, GPT-2 pattern, `[0-9][0-9][0-9]`.
    Falcon,
}

/// What a pre-tokenizer name implies besides the split recipe (llama.cpp `impl::load`).
#[derive(Clone, Copy, Debug)]
pub struct PreInfo {
    pub kind: PreKind,
    pub ignore_merges: bool,
    /// `Some(true)` where the name turns add_bos on (llama3, tekken, chameleon).
    pub add_bos: Option<bool>,
    pub clean_spaces: bool,
    /// chatglm: no BOS token by default.
    pub no_bos: bool,
    /// false for names llama.cpp knows but this crate does not implement (falls back to default).
    pub known: bool,
}

/// Map a `tokenizer.ggml.pre` value to its recipe and flags.
pub fn pre_info(name: &str) -> PreInfo {
    let mut p = PreInfo { kind: PreKind::Default, ignore_merges: false, add_bos: None, clean_spaces: true, no_bos: false, known: true };
    match name {
        "" | "default" => {}
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" | "jina-v5-nano" => {
            p.kind = PreKind::Llama3;
            p.ignore_merges = true;
            p.add_bos = Some(true);
        }
        "dbrx" | "smaug-bpe" => p.kind = PreKind::Llama3,
        "glm4" | "chatglm-bpe" => {
            p.kind = PreKind::Llama3;
            p.no_bos = true;
        }
        "falcon" => p.kind = PreKind::Falcon,
        // ("gpt2" is not a llama.cpp name -- it rejects it -- accepted here as an alias)
        "gpt-2" | "gpt2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0" | "mellum"
        | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" | "mpt" | "olmo" | "jais" | "exaone4" => p.kind = PreKind::Gpt2,
        "trillion" | "granite-docling" => {
            p.kind = PreKind::Gpt2;
            p.clean_spaces = false;
        }
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => p.kind = PreKind::StarCoder,
        "smollm" | "command-r" => {
            p.kind = PreKind::StarCoder;
            p.clean_spaces = false;
        }
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" => {
            p.kind = PreKind::Qwen2;
            p.clean_spaces = false;
        }
        "stablelm2" | "megrez" => p.kind = PreKind::Qwen2,
        "qwen35" => {
            p.kind = PreKind::Qwen35;
            p.clean_spaces = false;
        }
        _ => p.known = false,
    }
    p
}

/// Split `text` into pre-tokenizer pieces (substrings, in order, covering the text).
pub fn split(kind: PreKind, text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let cps: Vec<u32> = text.chars().map(|c| c as u32).collect();
    // byte offset of every codepoint (plus the end)
    let mut offs: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    offs.push(text.len());
    let all = vec![(0usize, cps.len())];
    let pieces = match kind {
        PreKind::Default => {
            let p = pass(&cps, &all, |c, s, e, o| regex_pass(c, s, e, o, punct_run));
            let p = pass(&cps, &p, split_gpt2);
            let p = pass(&cps, &p, |c, s, e, o| regex_pass(c, s, e, o, number_run));
            pass(&cps, &p, |c, s, e, o| regex_pass(c, s, e, o, ascii_digits3))
        }
        PreKind::Falcon => {
            let p = pass(&cps, &all, |c, s, e, o| regex_pass(c, s, e, o, punct_run_falcon));
            let p = pass(&cps, &p, split_gpt2);
            pass(&cps, &p, |c, s, e, o| regex_pass(c, s, e, o, ascii_digits3))
        }
        PreKind::Gpt2 => pass(&cps, &all, split_gpt2),
        PreKind::StarCoder => {
            let p = pass(&cps, &all, |c, s, e, o| regex_pass(c, s, e, o, single_number));
            pass(&cps, &p, split_gpt2)
        }
        PreKind::Llama3 => pass(&cps, &all, |c, s, e, o| split_llama3(c, s, e, 3, false, o)),
        PreKind::Qwen2 => pass(&cps, &all, |c, s, e, o| split_llama3(c, s, e, 1, false, o)),
        PreKind::Qwen35 => pass(&cps, &all, |c, s, e, o| split_llama3(c, s, e, 1, true, o)),
    };
    pieces.into_iter().map(|(s, e)| &text[offs[s]..offs[e]]).collect()
}

type Ranges = Vec<(usize, usize)>;

fn pass(cps: &[u32], pieces: &[(usize, usize)], f: impl Fn(&[u32], usize, usize, &mut Ranges)) -> Ranges {
    let mut out = Vec::with_capacity(pieces.len() * 2);
    for &(s, e) in pieces {
        f(cps, s, e, &mut out);
    }
    out
}

/// A regex without custom splitter: every match is a piece, and so is each run of unmatched
/// text between matches (std::regex_iterator as llama.cpp uses it). `m(cps, pos, end)` returns
/// the length of the match starting at `pos`, if any.
fn regex_pass(cps: &[u32], start: usize, end: usize, out: &mut Ranges, m: fn(&[u32], usize, usize) -> usize) {
    let mut gap = start;
    let mut pos = start;
    while pos < end {
        let n = m(cps, pos, end);
        if n > 0 {
            if gap < pos {
                out.push((gap, pos));
            }
            out.push((pos, pos + n));
            pos += n;
            gap = pos;
        } else {
            pos += 1;
        }
    }
    if gap < end {
        out.push((gap, end));
    }
}

fn single_number(cps: &[u32], pos: usize, _end: usize) -> usize {
    flags(cps[pos]).is_number() as usize
}

fn number_run(cps: &[u32], pos: usize, end: usize) -> usize {
    cps[pos..end].iter().take_while(|&&c| flags(c).is_number()).count()
}

fn is_default_punct(c: u32) -> bool {
    flags(c).is_punctuation() || matches!(c, 0x24 | 0x2B | 0x3C | 0x3D | 0x3E | 0x5E | 0x7E | 0x7C)
    // $ + < = > ^ ~ |
}

fn punct_run(cps: &[u32], pos: usize, end: usize) -> usize {
    cps[pos..end].iter().take_while(|&&c| is_default_punct(c)).count()
}

fn punct_run_falcon(cps: &[u32], pos: usize, end: usize) -> usize {
    cps[pos..end].iter().take_while(|&&c| is_default_punct(c) || c == 0x60).count()
}

fn ascii_digits3(cps: &[u32], pos: usize, end: usize) -> usize {
    if pos + 3 <= end && cps[pos..pos + 3].iter().all(|&c| (0x30..=0x39).contains(&c)) {
        3
    } else {
        0
    }
}

/// Accessors that return "nothing" outside the current piece, like llama.cpp's `_get_cpt` /
/// `_get_flags` lambdas.
struct Piece<'a> {
    cps: &'a [u32],
    start: usize,
    end: usize,
}

const OUT_OF_RANGE: u32 = 0xFFFF_FFFF;

impl Piece<'_> {
    #[inline]
    fn cpt(&self, pos: usize) -> u32 {
        if pos >= self.start && pos < self.end {
            self.cps[pos]
        } else {
            OUT_OF_RANGE
        }
    }
    #[inline]
    fn flags(&self, pos: usize) -> Flags {
        if pos >= self.start && pos < self.end {
            flags(self.cps[pos])
        } else {
            Flags(0)
        }
    }
    fn whitespace_run(&self, pos: usize) -> usize {
        let mut n = 0;
        while self.flags(pos + n).is_whitespace() {
            n += 1;
        }
        n
    }
}

/// Length of a contraction `'s|'t|'re|'ve|'m|'ll|'d` at `pos` (0 if none); `fold` = case-insensitive.
fn contraction(p: &Piece, pos: usize, fold: bool) -> usize {
    if p.cpt(pos) != '\'' as u32 || pos + 1 >= p.end {
        return 0;
    }
    let low = |c: u32| if fold && (0x41..=0x5A).contains(&c) { c + 0x20 } else { c };
    let c1 = low(p.cpt(pos + 1));
    if [b's', b't', b'm', b'd'].iter().any(|&x| c1 == x as u32) {
        return 2;
    }
    if pos + 2 < p.end {
        let c2 = low(p.cpt(pos + 2));
        let pair = |a: u8, b: u8| c1 == a as u32 && c2 == b as u32;
        if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
            return 3;
        }
    }
    0
}

/// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)` (an
/// unmatched single whitespace becomes its own piece).
pub(crate) fn split_gpt2(cps: &[u32], start: usize, end: usize, out: &mut Ranges) {
    let p = Piece { cps, start, end };
    let mut prev = start;
    let mut add = |to: usize, out: &mut Ranges| {
        if to > prev {
            out.push((prev, to));
        }
        prev = to;
    };
    let mut pos = start;
    while pos < end {
        let cpt = p.cpt(pos);
        let n = contraction(&p, pos, false);
        if n > 0 {
            pos += n;
            add(pos, out);
            continue;
        }
        let sp = cpt == ' ' as u32;
        let f2 = if sp { p.flags(pos + 1) } else { p.flags(pos) };
        let other = |f: Flags| !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.any();
        if f2.is_letter() || f2.is_number() || other(f2) {
            let class: fn(Flags) -> bool = if f2.is_letter() {
                |f| f.is_letter()
            } else if f2.is_number() {
                |f| f.is_number()
            } else {
                |f| !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.any()
            };
            pos += sp as usize;
            while class(p.flags(pos)) {
                pos += 1;
            }
            add(pos, out);
            continue;
        }
        let nws = p.whitespace_run(pos);
        if nws > 1 && p.cpt(pos + nws) != OUT_OF_RANGE {
            pos += nws - 1; // \s+(?!\S): leave the last space for the next word
            add(pos, out);
            continue;
        }
        if nws > 0 {
            pos += nws;
            add(pos, out);
            continue;
        }
        pos += 1; // no match
        add(pos, out);
    }
}

/// LLaMA-3 family: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
/// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`. With `marks`, `\p{M}` joins `\p{L}`
/// in the letter runs and leaves the "other" class (qwen35).
pub(crate) fn split_llama3(cps: &[u32], start: usize, end: usize, max_digits: usize, marks: bool, out: &mut Ranges) {
    let p = Piece { cps, start, end };
    let mut prev = start;
    let mut add = |to: usize, out: &mut Ranges| {
        if to > prev {
            out.push((prev, to));
        }
        prev = to;
    };
    let is_word = |f: Flags| f.is_letter() || (marks && f.is_mark());
    let other = |f: Flags| !(f.is_whitespace() || f.is_letter() || f.is_number() || (marks && f.is_mark())) && f.any();
    let is_crlf = |c: u32| c == '\r' as u32 || c == '\n' as u32;
    let mut pos = start;
    while pos < end {
        let cpt = p.cpt(pos);
        let fl = p.flags(pos);
        let n = contraction(&p, pos, true);
        if n > 0 {
            pos += n;
            add(pos, out);
            continue;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(is_crlf(cpt) || fl.is_number()) && (is_word(fl) || is_word(p.flags(pos + 1))) {
            pos += 1;
            while is_word(p.flags(pos)) {
                pos += 1;
            }
            add(pos, out);
            continue;
        }
        // \p{N}{1,max}
        if fl.is_number() {
            let mut ini = pos;
            while p.flags(pos).is_number() {
                pos += 1;
                if pos - ini >= max_digits {
                    add(pos, out);
                    ini = pos;
                }
            }
            add(pos, out);
            continue;
        }
        // ' '?[^\s\p{L}\p{N}]+[\r\n]*
        let f2 = if cpt == ' ' as u32 { p.flags(pos + 1) } else { fl };
        if other(f2) {
            pos += (cpt == ' ' as u32) as usize;
            while other(p.flags(pos)) {
                pos += 1;
            }
            while is_crlf(p.cpt(pos)) {
                pos += 1;
            }
            add(pos, out);
            continue;
        }
        let mut nws = 0;
        let mut last_crlf_end = 0;
        while p.flags(pos + nws).is_whitespace() {
            if is_crlf(p.cpt(pos + nws)) {
                last_crlf_end = pos + nws + 1;
            }
            nws += 1;
        }
        // \s*[\r\n]+
        if last_crlf_end > 0 {
            pos = last_crlf_end;
            add(pos, out);
            continue;
        }
        // \s+(?!\S)
        if nws > 1 && p.cpt(pos + nws) != OUT_OF_RANGE {
            pos += nws - 1;
            add(pos, out);
            continue;
        }
        // \s+
        if nws > 0 {
            pos += nws;
            add(pos, out);
            continue;
        }
        pos += 1;
        add(pos, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(kind: PreKind, t: &str) -> Vec<&str> {
        split(kind, t)
    }

    #[test]
    fn gpt2_contractions_words_numbers() {
        assert_eq!(sp(PreKind::Gpt2, "I'm sure you'll"), ["I", "'m", " sure", " you", "'ll"]);
        assert_eq!(sp(PreKind::Gpt2, "don't DON'T"), ["don", "'t", " DON", "'", "T"]); // case-sensitive
        assert_eq!(sp(PreKind::Gpt2, "abc 12345 x"), ["abc", " 12345", " x"]);
        assert_eq!(sp(PreKind::Gpt2, "a, b!!"), ["a", ",", " b", "!!"]);
        assert_eq!(sp(PreKind::Gpt2, "caf\u{e9} \u{4e2d}\u{6587}"), ["caf\u{e9}", " \u{4e2d}\u{6587}"]);
    }

    #[test]
    fn gpt2_whitespace() {
        // \s+(?!\S): a run of spaces before a word keeps its last space for the word
        assert_eq!(sp(PreKind::Gpt2, "a   b"), ["a", "  ", " b"]);
        // trailing whitespace is one piece
        assert_eq!(sp(PreKind::Gpt2, "a  "), ["a", "  "]);
        // a lone newline before a word is its own piece; newline runs keep the last one apart
        assert_eq!(sp(PreKind::Gpt2, "a\nb"), ["a", "\n", "b"]);
        assert_eq!(sp(PreKind::Gpt2, "a\n\n\nb"), ["a", "\n\n", "\n", "b"]);
        assert_eq!(sp(PreKind::Gpt2, "  x"), [" ", " x"]);
        assert_eq!(sp(PreKind::Gpt2, " \tx"), [" ", "\t", "x"]);
    }

    #[test]
    fn starcoder_digits_alone() {
        assert_eq!(sp(PreKind::StarCoder, "abc 123"), ["abc", " ", "1", "2", "3"]);
        assert_eq!(sp(PreKind::StarCoder, "x2y"), ["x", "2", "y"]);
        assert_eq!(sp(PreKind::StarCoder, "I'm 3.5"), ["I", "'m", " ", "3", ".", "5"]);
    }

    #[test]
    fn llama3_rules() {
        // case-insensitive contractions
        assert_eq!(sp(PreKind::Llama3, "DON'T we'LL"), ["DON", "'T", " we", "'LL"]);
        // digits in groups of up to 3, never with a leading space
        assert_eq!(sp(PreKind::Llama3, "1234567 x"), ["123", "456", "7", " x"]);
        assert_eq!(sp(PreKind::Llama3, "a 12"), ["a", " ", "12"]);
        // one non-letter, non-digit char (not CR/LF) may lead a word
        assert_eq!(sp(PreKind::Llama3, "(hello) $x"), ["(hello", ")", " $", "x"]);
        assert_eq!(sp(PreKind::Llama3, "\"quote\""), ["\"quote", "\""]);
        // punctuation swallows following newlines
        assert_eq!(sp(PreKind::Llama3, "end.\n\nNext"), ["end", ".\n\n", "Next"]);
        // \s*[\r\n]+ : whitespace up to the last newline of the run
        assert_eq!(sp(PreKind::Llama3, "a \n  b"), ["a", " \n", " ", " b"]);
        assert_eq!(sp(PreKind::Llama3, "a\r\n\r\nb"), ["a", "\r\n\r\n", "b"]);
        // \s+(?!\S) and trailing \s+
        assert_eq!(sp(PreKind::Llama3, "a   b  "), ["a", "  ", " b", "  "]);
        assert_eq!(sp(PreKind::Llama3, "\tb"), ["\tb"]);
    }

    #[test]
    fn qwen2_single_digits() {
        assert_eq!(sp(PreKind::Qwen2, "x 2025 ok"), ["x", " ", "2", "0", "2", "5", " ok"]);
        assert_eq!(sp(PreKind::Qwen2, "It's 10%"), ["It", "'s", " ", "1", "0", "%"]);
        assert_eq!(sp(PreKind::Qwen2, "hi!\nyo"), ["hi", "!\n", "yo"]);
    }

    #[test]
    fn qwen35_marks_join_letters() {
        // e + combining acute stays one word (in qwen2 the mark splits off)
        assert_eq!(sp(PreKind::Qwen35, "cafe\u{301} x"), ["cafe\u{301}", " x"]);
        assert_eq!(sp(PreKind::Qwen2, "cafe\u{301} x"), ["cafe", "\u{301}", " x"]);
    }

    #[test]
    fn default_recipe() {
        // punctuation runs split first (and do not take the space), digits in runs, then
        // ASCII digits in threes
        assert_eq!(sp(PreKind::Default, "hello, world"), ["hello", ",", " world"]);
        assert_eq!(sp(PreKind::Default, "a+=b"), ["a", "+=", "b"]);
        assert_eq!(sp(PreKind::Default, "x 12345"), ["x", " ", "123", "45"]);
        assert_eq!(sp(PreKind::Default, "don't"), ["don", "'", "t"]);
    }

    #[test]
    fn pieces_cover_text() {
        let t = "Mixed 中文 and English 混合 text 123\n\n  x\t\ty  🚀🔥 ok!!";
        for k in [PreKind::Default, PreKind::Gpt2, PreKind::StarCoder, PreKind::Llama3, PreKind::Qwen2, PreKind::Qwen35, PreKind::Falcon] {
            let p = split(k, t);
            assert_eq!(p.concat(), t, "{k:?}");
            assert!(p.iter().all(|s| !s.is_empty()));
        }
    }
}
