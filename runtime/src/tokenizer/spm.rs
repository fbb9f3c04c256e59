//! SentencePiece-style tokenization as llama.cpp implements it (`llm_tokenizer_spm_session`):
//! not unigram Viterbi but a bigram merge driven by token scores. Start from UTF-8 characters,
//! repeatedly merge the adjacent pair whose concatenation is a vocab token with the highest score
//! (ties: leftmost), then emit each final symbol as its token or, failing that, as byte tokens
//! `<0xXX>` (byte fallback).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> Ordering {
        // max-heap: highest score first, then the leftmost
        self.score.total_cmp(&o.score).then(o.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Tokenize already-escaped text (spaces replaced by `▁`). `lookup` maps a piece to its id,
/// `score` gives a token's score, `byte_token` the fallback for one byte (`None`: use `unk`).
pub(crate) fn spm_tokenize(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<u32>,
    score: &dyn Fn(u32) -> f32,
    byte_token: &dyn Fn(u8) -> Option<u32>,
    out: &mut Vec<u32>,
) -> Result<(), u8> {
    if text.is_empty() {
        return Ok(());
    }
    let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
    for (i, (off, c)) in text.char_indices().enumerate() {
        syms.push(Sym { start: off, len: c.len_utf8(), prev: i as isize - 1, next: i as isize + 1 });
    }
    let n = syms.len();
    syms[n - 1].next = -1;
    let mut heap = BinaryHeap::new();
    let try_add = |heap: &mut BinaryHeap<Bigram>, syms: &[Sym], l: isize, r: isize| {
        if l < 0 || r < 0 {
            return;
        }
        let (ls, rs) = (&syms[l as usize], &syms[r as usize]);
        let piece = &text[ls.start..rs.start + rs.len];
        if let Some(id) = lookup(piece) {
            heap.push(Bigram { score: score(id), left: l as usize, right: r as usize, size: piece.len() });
        }
    };
    for i in 1..n {
        try_add(&mut heap, &syms, i as isize - 1, i as isize);
    }
    while let Some(b) = heap.pop() {
        let (l, r) = (syms[b.left], syms[b.right]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        syms[b.left].len += r.len;
        syms[b.right].len = 0;
        syms[b.left].next = r.next;
        if r.next >= 0 {
            syms[r.next as usize].prev = b.left as isize;
        }
        let (lp, ln) = (syms[b.left].prev, syms[b.left].next);
        try_add(&mut heap, &syms, lp, b.left as isize);
        try_add(&mut heap, &syms, b.left as isize, ln);
    }
    // Every merged symbol is a token by construction, so llama.cpp's `resegment` reduces to:
    // token, or byte fallback.
    let mut i = 0isize;
    while i >= 0 {
        let s = syms[i as usize];
        i = s.next;
        let piece = &text[s.start..s.start + s.len];
        match lookup(piece) {
            Some(id) => out.push(id),
            None => {
                for b in piece.bytes() {
                    out.push(byte_token(b).ok_or(b)?);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(vocab: &[(&str, f32)], text: &str) -> Vec<u32> {
        let map: HashMap<&str, u32> = vocab.iter().enumerate().map(|(i, (t, _))| (*t, i as u32)).collect();
        let lookup = |s: &str| map.get(s).copied();
        let score = |id: u32| vocab[id as usize].1;
        let byte = |b: u8| map.get(format!("<0x{b:02X}>").as_str()).copied();
        let mut out = vec![];
        spm_tokenize(text, &lookup, &score, &byte, &mut out).unwrap();
        out
    }

    #[test]
    fn score_priority() {
        // "ab" (score -1) beats "bc" (-2): abc -> ab + c
        let v = [("a", -5.0), ("b", -5.0), ("c", -5.0), ("ab", -1.0), ("bc", -2.0)];
        assert_eq!(run(&v, "abc"), [3, 2]);
        let v = [("a", -5.0), ("b", -5.0), ("c", -5.0), ("ab", -3.0), ("bc", -2.0)];
        assert_eq!(run(&v, "abc"), [0, 4]);
        // equal scores: leftmost pair first
        let v = [("a", -5.0), ("aa", -1.0)];
        assert_eq!(run(&v, "aaa"), [1, 0]);
    }

    #[test]
    fn byte_fallback() {
        let mut v: Vec<(String, f32)> = (0..256).map(|b| (format!("<0x{b:02X}>"), 0.0)).collect();
        v.push(("▁".into(), -1.0));
        v.push(("h".into(), -1.0));
        v.push(("▁h".into(), -0.5));
        let vr: Vec<(&str, f32)> = v.iter().map(|(s, f)| (s.as_str(), *f)).collect();
        // "é" (C3 A9) is not in the vocab: two byte tokens
        assert_eq!(run(&vr, "▁hé"), [258, 0xC3, 0xA9]);
    }
}
