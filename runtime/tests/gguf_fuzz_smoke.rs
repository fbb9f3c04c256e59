//! A deterministic mini fuzzer on stable Rust (CI may not have nightly for
//! cargo-fuzz): mutates the seed files and asserts the reader never panics.
//! Also writes the seed corpus for the cargo-fuzz target (see `scripts/fuzz.sh`).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{exercise, seed_files, Patch};
use ember::gguf::GgufFile;

const ITERATIONS_PER_SEED: usize = 4000;

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Values that make counts, lengths, offsets and dims absurd or off by a little.
const HUGE_U64: [u64; 9] = [0, 1, 255, 1 << 20, 1 << 27, 1 << 32, 1 << 40, i64::MAX as u64, u64::MAX];
/// Type ids (valid, removed, unknown), versions and dim counts.
const ODD_U32: [u32; 10] = [0, 2, 3, 4, 9, 13, 31, 0x0300_0000, 0x8000_0000, u32::MAX];

/// Applies one random mutation.
fn mutate(b: &mut Vec<u8>, rng: &mut Rng) {
    if b.is_empty() {
        return;
    }
    let pos = rng.below(b.len());
    match rng.below(6) {
        0 => b[pos] ^= 1 << rng.below(8),
        1 => {
            let random = rng.next() as u8;
            b[pos] = rng.pick(&[0x00, 0xFF, random]);
        }
        2 => b.truncate(pos),
        3 if b.len() >= 8 => {
            let random = rng.next();
            let v = if rng.below(4) == 0 { random } else { rng.pick(&HUGE_U64) };
            b.put_u64(rng.below(b.len() - 7), v);
        }
        4 if b.len() >= 4 => b.put_u32(rng.below(b.len() - 3), rng.pick(&ODD_U32)),
        _ => {
            // Duplicate a short run of bytes in place (shifts everything after it).
            let end = (pos + 1 + rng.below(16)).min(b.len());
            let run = b[pos..end].to_vec();
            b.splice(pos..pos, run);
        }
    }
}

/// Parses and, on success, walks everything; a panic names the input.
fn check_no_panic(input: &[u8], what: &str) {
    let result = catch_unwind(AssertUnwindSafe(|| {
        if let Ok(f) = GgufFile::from_bytes(input.to_vec()) {
            exercise(&f);
        }
    }));
    if result.is_err() {
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf_fuzz_smoke_crash.gguf");
        std::fs::write(&path, input).unwrap();
        panic!("reader panicked on {what} ({} bytes), input saved to {}", input.len(), path.display());
    }
}

#[test]
fn mutated_files_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut parsed, mut total) = (0, 0);
    for (name, seed) in seed_files() {
        check_no_panic(&seed, name);
        for i in 0..ITERATIONS_PER_SEED {
            let mut input = seed.clone();
            for _ in 0..1 + rng.below(3) {
                mutate(&mut input, &mut rng);
            }
            check_no_panic(&input, &format!("seed {name}, iteration {i}"));
            parsed += GgufFile::from_bytes(input).is_ok() as usize;
            total += 1;
        }
    }
    // Sanity: the mutations are neither all harmless nor all fatal.
    assert!(parsed > 0 && parsed < total, "{parsed} of {total} mutated files parsed");
}

/// Writes the seed corpus for cargo-fuzz:
/// `GGUF_SEED_DIR=fuzz/corpus/gguf_reader cargo test -p ember --test gguf_fuzz_smoke -- --ignored`.
#[test]
#[ignore = "writes files; run by scripts/fuzz.sh"]
fn write_fuzz_seeds() {
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/gguf_reader");
    let dir = std::env::var("GGUF_SEED_DIR").unwrap_or_else(|_| default.into());
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seed_files() {
        std::fs::write(std::path::Path::new(&dir).join(format!("seed_{name}.gguf")), bytes).unwrap();
    }
}
