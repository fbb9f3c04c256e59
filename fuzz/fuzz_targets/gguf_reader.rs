//! Any bytes: the GGUF reader returns an error or a file whose every accessor
//! and tensor slice works; it never panics, overflows or over-allocates.
//! Seeds: `scripts/fuzz.sh` writes valid files into `fuzz/corpus/gguf_reader`.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The accessor walk shared with the stable mini fuzzer (runtime/tests/gguf_fuzz_smoke.rs).
#[path = "../../runtime/tests/common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = ember::gguf::GgufFile::from_bytes(data.to_vec()) {
        common::exercise(&file);
    }
});
