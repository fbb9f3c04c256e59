//! Prompt lookup (n-gram) drafting: the continuation of the latest earlier
//! occurrence of the context's last n-gram is proposed as the draft, as in
//! llama.cpp's prompt lookup. Costs nothing but a scan of the context; pays
//! off when the output repeats the input (summaries, code edits, quotes).

/// The longest n-gram tried first: a longer match predicts better.
pub const NGRAM_MAX: usize = 3;
/// The shortest n-gram looked up (a single token matches too often to be
/// worth a verification row).
pub const NGRAM_MIN: usize = 2;

/// Up to `max` tokens that followed the latest earlier occurrence of the
/// last `n` tokens of `context`, for `n` from [`NGRAM_MAX`] down to
/// [`NGRAM_MIN`]; empty when none occurs.
pub fn lookup(context: &[u32], max: usize, out: &mut Vec<u32>) {
    out.clear();
    if max == 0 {
        return;
    }
    let len = context.len();
    for n in (NGRAM_MIN..=NGRAM_MAX).rev() {
        if len <= n {
            continue;
        }
        let key = &context[len - n..];
        // Starts before `len - n`: the key itself is not an earlier occurrence.
        if let Some(s) = (0..len - n).rev().find(|&s| &context[s..s + n] == key) {
            let from = s + n;
            out.extend_from_slice(&context[from..len.min(from + max)]);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(context: &[u32], max: usize) -> Vec<u32> {
        let mut out = Vec::new();
        lookup(context, max, &mut out);
        out
    }

    #[test]
    fn proposes_what_followed_the_latest_match() {
        // "7 2 3" never occurred before; "2 3" did, at 1 and 6: the latest (6) is followed by 9 8.
        assert_eq!(draft(&[1, 2, 3, 4, 5, 1, 2, 3, 9, 8, 7, 2, 3], 2), vec![9, 8]);
        assert_eq!(draft(&[1, 2, 3, 4, 5, 1, 2, 3, 9, 8, 7, 2, 3], 10), vec![9, 8, 7, 2, 3]);
        // The longest n-gram wins over a later shorter one: "7 1 2" at 3 beats "1 2" at 6.
        assert_eq!(draft(&[0, 0, 0, 7, 1, 2, 5, 1, 2, 6, 7, 1, 2], 3), vec![5, 1, 2]);
        // The draft stops at the end of the context.
        assert_eq!(draft(&[4, 5, 4, 5], 8), vec![4, 5]);
    }

    #[test]
    fn nothing_without_a_match() {
        assert!(draft(&[1, 2, 3, 4, 5], 4).is_empty());
        assert!(draft(&[1, 2], 4).is_empty());
        assert!(draft(&[], 4).is_empty());
        // A single repeated token is below NGRAM_MIN.
        assert!(draft(&[1, 9, 2, 9], 4).is_empty());
        assert!(draft(&[1, 2, 1, 2], 0).is_empty());
    }
}
