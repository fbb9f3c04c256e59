//! Streaming detokenization: token pieces arrive one at a time and may end in the middle of a
//! UTF-8 character (byte tokens, byte-level BPE); only complete text is ever emitted.

use super::Tokenizer;

/// Turns a stream of token ids into text, holding back an incomplete UTF-8 tail.
///
/// Pieces are `Tokenizer::token_to_piece` (control tokens give nothing). Unlike
/// [`Tokenizer::decode`], no leading space is stripped and no space clean-up is applied: the
/// stream usually continues a prompt, as llama.cpp's per-token `token_to_piece` does.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Add one token; returns the text that became complete (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> crate::Result<String> {
        let piece = tok.token_to_piece(id)?;
        self.pending.extend_from_slice(&piece);
        Ok(self.take_complete())
    }

    /// Bytes held back waiting for the rest of a character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Everything still held back, invalid bytes replaced by U+FFFD.
    pub fn flush(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }

    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&rest[..good]).unwrap());
                    match e.error_len() {
                        // a byte sequence that can never become valid: replace it, go on
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &rest[good + n..];
                        }
                        // an incomplete character at the end: keep it for later
                        None => {
                            rest = &rest[good..];
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }
}
