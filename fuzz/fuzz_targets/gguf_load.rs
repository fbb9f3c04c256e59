//! A GGUF through everything loading a model does (reader, tokenizer, chat
//! template, hyper-parameters and tensor table checks, one token of forward
//! pass on tiny models), with a structure-aware mutator: three times in four
//! it edits the file's records (metadata values and types, tensor records,
//! counts; `ember::fuzzing::gguf_edit`), else libFuzzer mutates the bytes.
//! Seeds: the tiny architecture fixtures (`scripts/fuzz.sh gguf_load`).
#![no_main]

use ember::fuzzing::{mutate_gguf, Rng};
use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};

fuzz_target!(|data: &[u8]| {
    ember::fuzzing::gguf_load(data);
});

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
