//! Every input that ever made a fuzz target fail (`fuzz/regressions/<target>/`,
//! minimized, each under 100 KB) replayed through the same harness the
//! cargo-fuzz target runs (`ember::fuzzing`), on stable Rust: a fixed bug that
//! comes back fails here. Each input runs on its own thread with a time bound,
//! and the process under a 4 GiB address-space limit, so a hang or an
//! allocation sized by a doctored number fails instead of stalling CI or
//! filling the machine (an allocation failure aborts the whole binary; the
//! input it was running is printed first).
//!
//! Also: every target's seeds pass their harness (the fixtures load and run),
//! and a short deterministic run of the structure-aware GGUF mutator.

mod common;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::limit_memory;
use ember::fuzzing::{self, Rng};

/// What is allowed per input (debug builds are slower: the bound is generous,
/// a hang is not).
const TIME_LIMIT: Duration = Duration::from_secs(20);

fn regressions_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions").join(target)
}

/// Runs `target` on `data` on a thread of its own (a 2 MiB stack, like a
/// server worker); `Err` says how it failed.
fn run_bounded(target: &'static str, data: Vec<u8>) -> Result<Duration, String> {
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let r = std::panic::catch_unwind(|| fuzzing::run(target, &data));
            let _ = tx.send(r.map_err(|e| {
                e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
            }));
        })
        .unwrap();
    match rx.recv_timeout(TIME_LIMIT) {
        Ok(Ok(())) => Ok(t0.elapsed()),
        Ok(Err(msg)) => Err(format!("panicked: {msg}")),
        Err(_) => Err(format!("still running after {TIME_LIMIT:?}")),
    }
}

fn replay(target: &'static str) {
    limit_memory();
    let dir = regressions_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no regression inputs in {}", dir.display());
    let mut failed = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        assert!(data.len() <= 100 << 10, "{}: regression inputs stay under 100 KB", f.display());
        eprintln!("{target}: {} ({} bytes)", name(f), data.len());
        match run_bounded(target, data) {
            Ok(t) => eprintln!("  ok in {t:?}"),
            Err(e) => {
                eprintln!("  FAILED: {e}");
                failed.push(format!("{}: {e}", name(f)));
            }
        }
    }
    assert!(failed.is_empty(), "{target}: {} of {} saved inputs fail:\n{}", failed.len(), files.len(), failed.join("\n"));
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn gguf_reader_regressions() {
    replay("gguf_reader");
}

#[test]
fn gguf_load_regressions() {
    replay("gguf_load");
}

#[test]
fn tokenizer_regressions() {
    replay("tokenizer");
}

#[test]
fn tokenizer_gguf_regressions() {
    replay("tokenizer_gguf");
}

#[test]
fn chat_template_regressions() {
    replay("chat_template");
}

/// The seeds are what the fuzzers start from: each passes its harness, and
/// the architecture fixtures load and run a token.
#[test]
fn seeds_pass_their_harness() {
    limit_memory();
    for target in fuzzing::TARGETS {
        let seeds = fuzzing::seeds(target);
        assert!(!seeds.is_empty(), "{target}: no seeds");
        for (name, data) in seeds {
            if *target == "gguf_load" && name != "vocab_spm.gguf" {
                let o = fuzzing::gguf_load(&data);
                assert!(o.tokenizer && o.loaded && o.ran, "{name}: {o:?}");
            } else if *target == "chat_template" {
                // Real templates render within the fuel, output and recursion limits.
                let out = fuzzing::render_chat_input(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(out.contains("Hi!"), "{name}: {out}");
            } else {
                fuzzing::run(target, &data);
            }
        }
    }
}

/// A short run of the structure-aware mutator over the fixture seeds through
/// the load harness (the cargo-fuzz target does this for hours; CI for a moment).
#[test]
fn structure_aware_mutations_load_or_fail_cleanly() {
    limit_memory();
    let seeds = fuzzing::seeds("gguf_load");
    let mut rng = Rng::new(0x5EED);
    let (mut loaded, mut total) = (0, 0);
    for (name, seed) in &seeds {
        for i in 0..60 {
            let m = fuzzing::mutate_gguf(seed, &mut rng).expect("seeds are GGUF");
            let o = std::panic::catch_unwind(|| fuzzing::gguf_load(&m)).unwrap_or_else(|_| {
                let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gguf_load_crash.gguf");
                std::fs::write(&p, &m).unwrap();
                panic!("{name}, mutation {i}: the load harness panicked; input saved to {}", p.display())
            });
            loaded += o.loaded as usize;
            total += 1;
        }
    }
    assert!(loaded > 0 && loaded < total, "{loaded} of {total} mutated models loaded");
}

/// Writes every target's seed corpus:
/// `FUZZ_SEED_DIR=fuzz/corpus cargo test -p ember --test fuzz_regressions -- --ignored write_fuzz_seeds`
/// makes `fuzz/corpus/<target>/` (what `scripts/fuzz.sh` runs).
#[test]
#[ignore = "writes files; run by scripts/fuzz.sh"]
fn write_fuzz_seeds() {
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus");
    let root = PathBuf::from(std::env::var("FUZZ_SEED_DIR").unwrap_or_else(|_| default.into()));
    let only = std::env::var("FUZZ_TARGET").ok();
    for target in fuzzing::TARGETS.iter().filter(|t| only.as_deref().is_none_or(|o| o == **t)) {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in fuzzing::seeds(target) {
            std::fs::write(dir.join(format!("seed_{name}")), data).unwrap();
        }
    }
}

/// Writes the hand-made hostile inputs into `fuzz/regressions/<target>/`
/// (`ember::fuzzing::hostile`); inputs found by the fuzzers are saved there by hand.
#[test]
#[ignore = "writes files into fuzz/regressions"]
fn write_hostile_inputs() {
    for target in fuzzing::TARGETS {
        let dir = regressions_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in fuzzing::hostile(target) {
            assert!(data.len() <= 100 << 10, "{name}: {} bytes", data.len());
            std::fs::write(dir.join(name), data).unwrap();
        }
    }
}
