//! The clock: `std::time` on native targets; in the browser (wasm32-unknown-unknown, where
//! `std::time::Instant::now` panics) the same API over `performance.now()` and `Date.now()`
//! from the `web-time` crate.

#[cfg(not(target_arch = "wasm32"))]
pub use std::time::{Instant, SystemTime, UNIX_EPOCH};
#[cfg(target_arch = "wasm32")]
pub use web_time::{Instant, SystemTime, UNIX_EPOCH};
