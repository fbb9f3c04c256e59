//! Op specifications and their scalar reference implementations: the truth
//! every backend kernel is held to by the parity tests. Plain loops, f32 in,
//! f32 out, no threads, written for clarity over speed.

pub mod activation;
pub mod attention;
pub mod matmul;
pub mod rms_norm;
pub mod rope;
pub mod softmax;
