//! Ember in the browser: the wasm-bindgen surface the JavaScript package (`web/www/ember.js`)
//! drives from a Web Worker. Everything here is synchronous: the worker runs it, so the page's
//! main thread never waits on it; the JS side turns it into promises, progress and streaming.
//!
//! Built for `wasm32-unknown-unknown` only (scripts/build-web.sh); on other targets the crate
//! is empty.
#![cfg(target_arch = "wasm32")]

mod api;
pub use api::*;
