//! `EMBER_GPU_FAULT=<kernel>`: fault injection for tests (documented in
//! docs/GPU.md). The named kernel's output buffer is scaled by [`FACTOR`]
//! right after each of its dispatches (`Recorder::dispatch` adds one `scale`
//! dispatch), so the kernel effectively writes wrong values; the self-test
//! must catch it and `backend auto` must then answer like the CPU.
//! `device_lost` instead makes a session's GPU runner report a lost device
//! on its first decode step (the mid-session fallback).
//!
//! Release builds honour it too (CI tests the release CLI); it costs one
//! `Option` check per dispatch when unset.

use crate::backend::wgpu::shaders::{MatFuse, MatGroup, ShaderKey};
use crate::{Error, Result};

/// What a faulty kernel's output is multiplied by: not a sign flip (RoPE on
/// both q and k would cancel it), large enough to move any logit.
pub const FACTOR: f32 = 4.0;

/// Every name `EMBER_GPU_FAULT` accepts (also in `ember gpu-check --json`).
pub const FAULT_NAMES: &[&str] =
    &["matmul", "rms_norm", "rope", "attention", "glu", "add", "get_rows", "kv_store", "act_quant", "device_lost"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    name: &'static str,
}

impl Fault {
    /// `None` for an empty value; an unknown name is an error listing the known ones.
    pub fn parse(s: &str) -> Result<Option<Fault>> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        match FAULT_NAMES.iter().find(|&&n| n == s) {
            Some(&name) => Ok(Some(Fault { name })),
            None => Err(Error::InvalidParam(format!("EMBER_GPU_FAULT: unknown kernel '{s}' (expected one of {})", FAULT_NAMES.join(", ")))),
        }
    }

    /// From `EMBER_GPU_FAULT` (unset or empty: none).
    pub fn from_env() -> Result<Option<Fault>> {
        Fault::parse(&std::env::var("EMBER_GPU_FAULT").unwrap_or_default())
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The runner reports a lost device instead of corrupting a kernel.
    pub fn is_device_lost(&self) -> bool {
        self.name == "device_lost"
    }

    /// Whether dispatches of `key` get their output corrupted.
    pub fn hits(&self, key: ShaderKey) -> bool {
        use ShaderKey as K;
        match self.name {
            // Each name covers every tier's kernel for that op (tiled products,
            // the fused norm/GLU/RoPE kernels), so a fault hits whichever runs.
            // A fused product is hit by each op it merges (its rounding, its
            // residual add): the fault scales its last output, the residual.
            "matmul" => matches!(key, K::Matmul(_) | K::MatmulSg(_) | K::MatmulRows(..) | K::MatmulTiled(..) | K::MatmulFused(..)),
            "rms_norm" => matches!(key, K::RmsNorm | K::RmsNormQ),
            "rope" => matches!(key, K::Rope | K::RopeKv),
            "attention" => matches!(key, K::Attention(_) | K::AttentionKvq(..) | K::Hadamard),
            "glu" => matches!(key, K::Swiglu | K::GluQ | K::MatmulFused(_, _, MatFuse { group: MatGroup::Glu(_), .. })),
            "add" => matches!(key, K::Add | K::MatmulFused(_, _, MatFuse { add: true, .. })),
            "get_rows" => matches!(key, K::GetRows(_)),
            "kv_store" => matches!(key, K::KvStore | K::KvStoreQ(_)),
            "act_quant" => matches!(key, K::ActQuant | K::MatmulFused(_, _, MatFuse { round: Some(_), .. })),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_names_are_errors() {
        for n in FAULT_NAMES {
            assert_eq!(Fault::parse(n).unwrap().unwrap().name(), *n);
        }
        assert_eq!(Fault::parse(" ").unwrap(), None);
        let e = Fault::parse("softmax").unwrap_err().to_string();
        assert!(e.contains("matmul") && e.contains("softmax"), "{e}");
        // Scale is what the fault dispatches: it must never be a target itself.
        for n in FAULT_NAMES {
            assert!(!Fault::parse(n).unwrap().unwrap().hits(ShaderKey::Scale), "{n}");
        }
        assert!(Fault::parse("rope").unwrap().unwrap().hits(ShaderKey::Rope));
        assert!(!Fault::parse("rope").unwrap().unwrap().hits(ShaderKey::Attention(crate::backend::wgpu::shaders::AttnCache::Packed)));
        // A fused product is hit by each op it merges.
        use crate::backend::wgpu::layout::Layout;
        use crate::backend::wgpu::shaders::FusedKernel;
        let l = Layout::for_type(crate::quant::GgmlType::Q4_1).unwrap();
        use crate::backend::wgpu::shaders::{GluOp, MatGroup};
        let fused = |round, add| ShaderKey::MatmulFused(l, FusedKernel::Reduce, MatFuse { round, add, group: MatGroup::One });
        let hits = |n: &str, k| Fault::parse(n).unwrap().unwrap().hits(k);
        assert!(hits("matmul", fused(None, true)) && hits("add", fused(None, true)) && !hits("act_quant", fused(None, true)));
        assert!(hits("act_quant", fused(Some(0), false)) && !hits("add", fused(Some(0), false)));
        // The gate/up group with its GLU: matmul and glu; the q/k/v group: matmul.
        let group = |group| ShaderKey::MatmulFused(l, FusedKernel::Reduce, MatFuse { round: None, add: false, group });
        let (glu, qkv) = (group(MatGroup::Glu(GluOp::Geglu)), group(MatGroup::Qkv));
        assert!(hits("matmul", glu) && hits("glu", glu) && !hits("add", glu));
        assert!(hits("matmul", qkv) && !hits("glu", qkv) && !hits("act_quant", qkv));
    }
}
