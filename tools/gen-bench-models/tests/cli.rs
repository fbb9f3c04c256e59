//! The generator's command line. (Also why `cargo test --workspace` builds the
//! binary itself, which `scripts/test.sh` then runs to write the synthetic 2B
//! model that `tests/gpu_weight_bytes.rs` holds to the 1.02× bound.)

use std::process::Command;

fn gen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gen-bench-models")).args(args).output().expect("cannot start gen-bench-models")
}

#[test]
fn usage_and_unknown_names_are_errors() {
    let out = gen(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: gen-bench-models OUT_DIR"));
    let dir = std::env::temp_dir().join(format!("gen-bench-cli-{}", std::process::id()));
    let out = gen(&[dir.to_str().unwrap(), "no-such-model"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model 'no-such-model'"), "{}", String::from_utf8_lossy(&out.stderr));
}
