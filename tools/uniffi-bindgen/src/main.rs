//! uniffi's bindgen CLI (the documented way: a binary in the workspace, so that
//! its version is exactly the library's). Usage:
//! `cargo run --bin uniffi-bindgen -- generate --library target/release/libember_ffi.so --language kotlin --out-dir DIR`
fn main() {
    uniffi::uniffi_bindgen_main()
}
