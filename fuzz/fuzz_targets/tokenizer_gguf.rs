//! A vocabulary-only GGUF (tokens, scores, token types, merges, special ids,
//! flags) through `Tokenizer::from_gguf`: an error or a tokenizer that
//! encodes and decodes; never a panic. Same structure-aware mutator as gguf_load.
#![no_main]

use ember::fuzzing::{mutate_gguf, Rng};
use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};

fuzz_target!(|data: &[u8]| ember::fuzzing::tokenizer_gguf(data));

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let mut rng = Rng::new(seed as u64);
    if rng.below(4) != 0 {
        if let Some(m) = mutate_gguf(&data[..size], &mut rng) {
            if m.len() <= max_size {
                data[..m.len()].copy_from_slice(&m);
                return m.len();
            }
        }
    }
    fuzzer_mutate(data, size, max_size)
});
