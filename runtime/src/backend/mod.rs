//! Compute backends. The CPU backend always exists; the wgpu backend comes
//! with the GPU issue. Which one runs is decided once, from [`crate::config::BackendKind`].

pub mod cpu;
