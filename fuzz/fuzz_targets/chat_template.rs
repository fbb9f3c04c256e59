//! Template source and messages through `ChatTemplate` (what the CLI and the
//! server render prompts with): compile and render fail with an error or
//! finish within the fuel and output limits; never a panic, hang or blow-up.
//! The mutator edits Jinja tags (snippets inserted, tags replaced, duplicated,
//! removed, numbers changed) half the time, else libFuzzer mutates the bytes.
#![no_main]

use ember::fuzzing::{mutate_template, Rng};
use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};

fuzz_target!(|data: &[u8]| ember::fuzzing::chat_template(data));

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let mut rng = Rng::new(seed as u64);
    if rng.below(2) == 0 {
        if let Some(m) = mutate_template(&data[..size], &mut rng) {
            if m.len() <= max_size {
                data[..m.len()].copy_from_slice(&m);
                return m.len();
            }
        }
    }
    fuzzer_mutate(data, size, max_size)
});
