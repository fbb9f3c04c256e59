//! Text through built-in vocabularies (`data[0]` picks one: the fixtures'
//! SPM, SPM and byte-level BPE vocabularies built in code with several
//! pre-tokenizers, and the real models' when they are on this machine;
//! `data[1]` the encode flags): encode never panics or hangs, ids stay in the
//! vocabulary, streaming decode agrees with the pieces, and decode(encode(text))
//! is the text wherever the tokenizer promises it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ember::fuzzing::tokenizer_text(data));
