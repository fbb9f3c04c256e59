//! Compute backends. The CPU backend always exists; the wgpu backend runs the
//! graph on a GPU. Which one runs is decided once, from [`crate::config::BackendKind`].

pub mod cpu;
pub mod wgpu;
