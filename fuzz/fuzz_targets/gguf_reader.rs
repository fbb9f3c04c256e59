//! Any bytes: the GGUF reader returns an error or a file whose every accessor
//! and tensor slice works; it never panics, overflows or over-allocates.
//! Seeds: `scripts/fuzz.sh gguf_reader` writes valid files into `fuzz/corpus/gguf_reader`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ember::fuzzing::gguf_reader(data));
