//! GPT-2 byte-level BPE as llama.cpp does it (`llm_tokenizer_bpe_session`): every pre-tokenizer
//! piece is byte-encoded (GPT-2 `bytes_to_unicode`), then the adjacent pair with the lowest merge
//! rank is merged (ties: leftmost) until no pair has a rank; final symbols not in the vocab fall
//! back to single-byte tokens (and are dropped where even those are missing, as in llama.cpp).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// GPT-2 `bytes_to_unicode`: the printable bytes map to themselves, the rest to U+0100...
pub(crate) fn byte_to_char_table() -> [char; 256] {
    let mut t = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        t[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            let c = char::from_u32(256 + n).unwrap();
            n += 1;
            c
        };
    }
    t
}

/// Inverse of [`byte_to_char_table`], indexed by codepoint (all codepoints are < 0x144).
pub(crate) fn char_to_byte_table() -> Vec<Option<u8>> {
    let mut inv = vec![None; 0x144];
    for (b, c) in byte_to_char_table().iter().enumerate() {
        inv[*c as usize] = Some(b as u8);
    }
    inv
}

/// The merge table: every merge part interned to an id, ranks keyed by part-id pairs.
#[derive(Default, Debug)]
pub(crate) struct Merges {
    part_ids: HashMap<String, u32>,
    ranks: HashMap<(u32, u32), u32>,
}

impl Merges {
    /// Parse `tokenizer.ggml.merges` ("left right", split at the first space after position 0;
    /// rank = index; a later duplicate does not override the first, like `emplace`).
    pub fn from_strings<S: AsRef<str>>(merges: &[S]) -> Merges {
        let mut m = Merges { part_ids: HashMap::with_capacity(merges.len()), ranks: HashMap::with_capacity(merges.len()) };
        for (rank, w) in merges.iter().enumerate() {
            let w = w.as_ref();
            let (a, b) = match w.as_bytes().iter().skip(1).position(|&c| c == b' ') {
                Some(i) => (&w[..i + 1], &w[i + 2..]),
                None => ("", ""),
            };
            let ia = m.intern(a);
            let ib = m.intern(b);
            m.ranks.entry((ia, ib)).or_insert(rank as u32);
        }
        m
    }

    fn intern(&mut self, s: &str) -> u32 {
        let n = self.part_ids.len() as u32;
        *self.part_ids.entry(s.to_string()).or_insert(n)
    }

    pub fn len(&self) -> usize {
        self.ranks.len()
    }

    #[inline]
    fn rank(&self, a: &str, b: &str) -> Option<u32> {
        let ia = *self.part_ids.get(a)?;
        let ib = *self.part_ids.get(b)?;
        self.ranks.get(&(ia, ib)).copied()
    }
}

#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

#[derive(PartialEq, Eq)]
struct Bigram {
    rank: u32,
    left: usize,
    right: usize,
    left_len: usize,
    right_len: usize,
}

impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> Ordering {
        // BinaryHeap is a max-heap: the lowest rank, then the leftmost, is the "greatest".
        o.rank.cmp(&self.rank).then(o.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Tokenize one byte-encoded word, appending ids to `out`.
pub(crate) fn bpe_word(word: &str, merges: &Merges, lookup: &dyn Fn(&str) -> Option<u32>, ignore_merges: bool, out: &mut Vec<u32>) {
    if word.is_empty() {
        return;
    }
    if ignore_merges {
        if let Some(id) = lookup(word) {
            out.push(id);
            return;
        }
    }
    let mut syms: Vec<Sym> = Vec::with_capacity(word.len());
    for (i, (off, c)) in word.char_indices().enumerate() {
        syms.push(Sym { start: off, len: c.len_utf8(), prev: i as isize - 1, next: i as isize + 1 });
    }
    let n = syms.len();
    syms[n - 1].next = -1;
    let text = |s: &Sym| &word[s.start..s.start + s.len];
    let mut heap = BinaryHeap::new();
    let try_add = |heap: &mut BinaryHeap<Bigram>, syms: &[Sym], l: isize, r: isize| {
        if l < 0 || r < 0 {
            return;
        }
        let (ls, rs) = (&syms[l as usize], &syms[r as usize]);
        if let Some(rank) = merges.rank(text(ls), text(rs)) {
            heap.push(Bigram { rank, left: l as usize, right: r as usize, left_len: ls.len, right_len: rs.len });
        }
    };
    for i in 1..n {
        try_add(&mut heap, &syms, i as isize - 1, i as isize);
    }
    while let Some(b) = heap.pop() {
        let (l, r) = (syms[b.left], syms[b.right]);
        if l.len == 0 || r.len == 0 || l.len != b.left_len || r.len != b.right_len || l.next != b.right as isize {
            continue; // stale
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
    let mut i = 0isize;
    while i >= 0 {
        let s = syms[i as usize];
        i = s.next;
        if s.len == 0 {
            continue;
        }
        let t = text(&s);
        match lookup(t) {
            Some(id) => out.push(id),
            None => {
                // one token per byte, where the single byte is itself a token (ASCII only: a
                // lone byte >= 0x80 is not a string the vocab can hold)
                for b in t.bytes() {
                    if b < 0x80 {
                        if let Some(id) = lookup(std::str::from_utf8(&[b]).unwrap()) {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_roundtrip() {
        let t = byte_to_char_table();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        let inv = char_to_byte_table();
        for b in 0..=255u8 {
            assert_eq!(inv[t[b as usize] as usize], Some(b));
        }
    }

    #[test]
    fn merge_priority_lowest_rank_first() {
        let vocab: HashMap<&str, u32> = [("a", 0), ("b", 1), ("c", 2), ("ab", 3), ("bc", 4), ("abc", 5)].into_iter().collect();
        let lookup = |s: &str| vocab.get(s).copied();
        // "b c" ranks before "a b": abc -> a + bc, and no "a bc" merge exists
        let m = Merges::from_strings(&["b c", "a b"]);
        let mut out = vec![];
        bpe_word("abc", &m, &lookup, false, &mut out);
        assert_eq!(out, [0, 4]);
        // "a b" first, then "ab c"
        let m = Merges::from_strings(&["a b", "b c", "ab c"]);
        out.clear();
        bpe_word("abc", &m, &lookup, false, &mut out);
        assert_eq!(out, [5]);
        // ties impossible in ranks; leftmost among equal pairs: "aaa" with "a a" -> "aa" + "a"
        let vocab2: HashMap<&str, u32> = [("a", 0), ("aa", 1)].into_iter().collect();
        let lookup2 = |s: &str| vocab2.get(s).copied();
        let m = Merges::from_strings(&["a a"]);
        out.clear();
        bpe_word("aaa", &m, &lookup2, false, &mut out);
        assert_eq!(out, [1, 0]);
        // ignore_merges: a whole-word vocab hit wins without merging
        out.clear();
        bpe_word("abc", &Merges::default(), &lookup, true, &mut out);
        assert_eq!(out, [5]);
        // unknown symbol falls back to byte tokens / is dropped
        out.clear();
        bpe_word("axb", &Merges::default(), &lookup, false, &mut out);
        assert_eq!(out, [0, 1]);
    }

    #[test]
    fn merge_split_at_first_space_after_start() {
        let m = Merges::from_strings(&["Ġ t", "ĠĠ ĠĠ", "x"]);
        assert_eq!(m.rank("Ġ", "t"), Some(0));
        assert_eq!(m.rank("ĠĠ", "ĠĠ"), Some(1));
        assert_eq!(m.rank("", ""), Some(2));
    }
}
