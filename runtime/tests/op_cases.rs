//! One table of op cases, in the spirit of llama.cpp's `test-backend-ops`:
//! every op of [`graph::Exec`] × the weight types × a few shapes, listed once
//! in [`cases`], run on every executor this machine has — the CPU with the
//! scalar kernels, the CPU with each SIMD table of `CpuKernels::available()`,
//! and wgpu when an adapter exists (lavapipe in CI; skipped with a note
//! otherwise) — and compared with the scalar specifications of `ops/`
//! (`matmul_ref`, `rms_norm`, `rope`, `activation`, `attention`).
//!
//! Each case is a tiny in-memory GGUF (seeded random weights, and one F32
//! table per input so the inputs enter through `embed` and are random too)
//! and a small [`Forward`] that runs the op and names its output
//! ([`Exec::name`]); the executors run it through their `Runner` with
//! dumping on, so what is compared is exactly what a model's pass computes.
//! Token counts 1, 3 and 17: one token takes the CPU's generation path
//! (spinning team, 8-row kernels), 17 the prompt path (strip kernels, rayon).
//! Attention cases first fill part of the cache with a pass of their own,
//! so the case's tokens attend over earlier positions.
//!
//! Tolerances are per op and executor kind ([`tol`]), and say why there.
//! One line per case × executor (PASS/FAIL, max |Δ|, NMSE); exits non-zero
//! on any failure. `EMBER_REQUIRE_GPU=1` (or `CI`) makes a missing adapter
//! a failure.
//!
//! `cargo bench -p ember --bench ops` (benches/ops.rs, the same table) or
//! `cargo test --release -p ember --test op_cases -- --perf` instead times
//! bigger cases (2048×2048 products at 1 and 64 tokens, …) per executor:
//! the median of several whole passes (embed + op + a tiny head; on wgpu
//! including the submit and the read-back), one table row per case.
//! `--filter SUBSTR` runs only the cases whose name contains SUBSTR.

use std::sync::Arc;
use std::time::Instant;

use ember::backend::cpu::simd::{CpuKernels, SCALAR};
use ember::backend::cpu::{CpuBackend, CpuRunner};
use ember::backend::wgpu::{AdapterPolicy, GpuContext, WgpuBackend};
use ember::gguf::{GgufFile, GgufWriter};
use ember::graph::{
    Act, Attn, Buf, Dumped, Exec, Forward, Graph, GraphBuilder, Head, HeadMatmul, Mat, Rope, RopeFactors, RopeId, Runner, Vector, View,
    Want, Weights,
};
use ember::ops;
use ember::ops::rope::{RopeMode, RopeParams};
use ember::quant::{self, GgmlType};
use half::f16;

// ------------------------------------------------------------------ the table

#[derive(Debug, Clone)]
enum Op {
    /// `products` of one input of width `n_in`: (type, n_out) each.
    Matmul {
        n_in: usize,
        products: Vec<(GgmlType, usize)>,
    },
    /// RMSNorm of a `width` row in groups of `group` (whole row or per head),
    /// in place or into another buffer.
    RmsNorm {
        width: usize,
        group: usize,
        in_place: bool,
    },
    /// RoPE of `n_head` heads of `head_dim`, starting at column `off` of each head.
    Rope {
        n_head: usize,
        head_dim: usize,
        off: usize,
        n_rot: usize,
        mode: RopeMode,
    },
    Glu {
        width: usize,
        act: Act,
    },
    Add {
        width: usize,
        s: f32,
    },
    Scale {
        width: usize,
        s: f32,
    },
    AddBias {
        width: usize,
    },
    /// `width` columns at `src_off` of each of `n_head` heads of `src_head` → `dst_off` of heads of `dst_head`.
    Copy {
        n_head: usize,
        src_head: usize,
        dst_head: usize,
        src_off: usize,
        dst_off: usize,
        width: usize,
    },
    Attention {
        n_head: usize,
        n_head_kv: usize,
        hd_k: usize,
        hd_v: usize,
        window: Option<usize>,
        softcap: Option<f32>,
        v_in_k: bool,
        prefix: usize,
    },
    /// A per-head product with a dense F16 weight of `w_rows × w_cols`.
    HeadMatmul {
        a: HeadMatmul,
        x_width: usize,
        w_cols: usize,
        w_rows: usize,
    },
}

#[derive(Debug, Clone)]
struct Case {
    name: String,
    op: Op,
    n_tok: usize,
}

/// Every weight type Ember multiplies with (`simd::tests::QUANT_TYPES` and the floats).
const TYPES: [GgmlType; 14] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::F16,
    GgmlType::F32,
];

/// The op cases: ops × types × shapes, each at 1, 3 and 17 tokens.
fn cases() -> Vec<Case> {
    let mut ops: Vec<(String, Op)> = Vec::new();
    for ty in TYPES {
        ops.push((format!("matmul {ty} 256x72"), Op::Matmul { n_in: 256, products: vec![(ty, 72)] }));
    }
    ops.push((
        "matmul Q4_0+Q8_0+Q6_K 512x(64,32,40)".into(),
        Op::Matmul { n_in: 512, products: vec![(GgmlType::Q4_0, 64), (GgmlType::Q8_0, 32), (GgmlType::Q6_K, 40)] },
    ));
    ops.push(("rms_norm row 96".into(), Op::RmsNorm { width: 96, group: 96, in_place: true }));
    ops.push(("rms_norm heads 4x32".into(), Op::RmsNorm { width: 128, group: 32, in_place: false }));
    ops.push(("rope norm 4x32".into(), Op::Rope { n_head: 4, head_dim: 32, off: 0, n_rot: 32, mode: RopeMode::Norm }));
    ops.push(("rope neox 2x64 n_rot 32".into(), Op::Rope { n_head: 2, head_dim: 64, off: 0, n_rot: 32, mode: RopeMode::Neox }));
    ops.push(("rope neox mla 4x(16+8)".into(), Op::Rope { n_head: 4, head_dim: 24, off: 16, n_rot: 8, mode: RopeMode::Neox }));
    ops.push(("glu silu 160".into(), Op::Glu { width: 160, act: Act::Silu }));
    ops.push(("glu gelu 160".into(), Op::Glu { width: 160, act: Act::Gelu }));
    ops.push(("add 96 s=1".into(), Op::Add { width: 96, s: 1.0 }));
    ops.push(("add 96 s=0.37".into(), Op::Add { width: 96, s: 0.37 }));
    ops.push(("scale 96".into(), Op::Scale { width: 96, s: -1.7 }));
    ops.push(("scale 40".into(), Op::Scale { width: 40, s: 0.5 }));
    ops.push(("add_bias 96".into(), Op::AddBias { width: 96 }));
    ops.push((
        "copy heads 4x(16+8)->4x(8+8)".into(),
        Op::Copy { n_head: 4, src_head: 24, dst_head: 16, src_off: 16, dst_off: 8, width: 8 },
    ));
    let attn = |n_head, n_head_kv, hd_k, hd_v, window, softcap, v_in_k| Op::Attention {
        n_head,
        n_head_kv,
        hd_k,
        hd_v,
        window,
        softcap,
        v_in_k,
        prefix: 0,
    };
    ops.push(("attention 4/4 hd64".into(), attn(4, 4, 64, 64, None, None, false)));
    ops.push(("attention gqa 8/2 hd32".into(), attn(8, 2, 32, 32, None, None, false)));
    ops.push(("attention gqa 4/2 hd64 window 5".into(), attn(4, 2, 64, 64, Some(5), None, false)));
    ops.push(("attention 2/1 hd32/48 softcap 20".into(), attn(2, 1, 32, 48, None, Some(20.0), false)));
    ops.push(("attention mla 4/1 hd 80/64 v in k".into(), attn(4, 1, 80, 64, None, None, true)));
    // y[h·16 + o] = Σ_i w[h·16 + o][i] · x[h·8 + i]   (rows per output)
    ops.push((
        "head_matmul 4x(8->16) rows".into(),
        Op::HeadMatmul {
            a: HeadMatmul { n_head: 4, n_out: 16, n_in: 8, x_head: 8, y_head: 16, w_off: 0, w_head: 128, w_o: 8, w_i: 1 },
            x_width: 32,
            w_cols: 8,
            w_rows: 64,
        },
    ));
    // y[h·12 + o] = Σ_i w[h·8 + i][o] · x[h·10 + i], o < 12 of 16 columns, x heads 10 wide (rows per input, MLA's absorbed k)
    ops.push((
        "head_matmul 4x(8->12) cols".into(),
        Op::HeadMatmul {
            a: HeadMatmul { n_head: 4, n_out: 12, n_in: 8, x_head: 10, y_head: 12, w_off: 0, w_head: 128, w_o: 1, w_i: 16 },
            x_width: 40,
            w_cols: 16,
            w_rows: 32,
        },
    ));
    let mut v = Vec::new();
    for (name, op) in ops {
        for n_tok in [1, 3, 17] {
            let mut op = op.clone();
            if let Op::Attention { prefix, .. } = &mut op {
                // The case's tokens attend over earlier positions too.
                *prefix = match n_tok {
                    1 => 12,
                    3 => 6,
                    _ => 0,
                };
            }
            v.push(Case { name: format!("{name} n={n_tok}"), op, n_tok });
        }
    }
    v
}

/// Bigger cases for `--perf`.
fn perf_cases() -> Vec<Case> {
    let mut ops: Vec<(String, Op, Vec<usize>)> = Vec::new();
    for ty in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::IQ4_XS, GgmlType::F16] {
        ops.push((format!("matmul {ty} 2048x2048"), Op::Matmul { n_in: 2048, products: vec![(ty, 2048)] }, vec![1, 64]));
    }
    ops.push(("rms_norm row 2048".into(), Op::RmsNorm { width: 2048, group: 2048, in_place: false }, vec![1, 64]));
    ops.push(("rope neox 32x128".into(), Op::Rope { n_head: 32, head_dim: 128, off: 0, n_rot: 128, mode: RopeMode::Neox }, vec![1, 64]));
    ops.push(("glu silu 8192".into(), Op::Glu { width: 8192, act: Act::Silu }, vec![1, 64]));
    ops.push(("glu gelu 8192".into(), Op::Glu { width: 8192, act: Act::Gelu }, vec![1, 64]));
    ops.push(("add 2048".into(), Op::Add { width: 2048, s: 1.0 }, vec![1, 64]));
    let a = |window| Op::Attention { n_head: 32, n_head_kv: 8, hd_k: 128, hd_v: 128, window, softcap: None, v_in_k: false, prefix: 511 };
    ops.push(("attention gqa 32/8 hd128 @512".into(), a(None), vec![1]));
    ops.push(("attention gqa 32/8 hd128 @512 window 128".into(), a(Some(128)), vec![1]));
    let mut v = Vec::new();
    for (name, op, toks) in ops {
        for n_tok in toks {
            let mut op = op.clone();
            if let Op::Attention { prefix, .. } = &mut op {
                *prefix = 512 - n_tok;
            }
            v.push(Case { name: format!("{name} n={n_tok}"), op, n_tok });
        }
    }
    v
}

// ------------------------------------------------------------- tolerances

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Scalar,
    Simd,
    Gpu,
}

/// Bounds on max |Δ| / max(1, max |want|) (absolute for the O(1) outputs,
/// relative to the output scale for products) and on NMSE against the spec.
#[derive(Debug, Clone, Copy)]
struct Tol {
    max_abs: f64,
    nmse: f64,
}

const EXACT: Tol = Tol { max_abs: 0.0, nmse: 0.0 };

fn tol(op: &Op, kind: Kind) -> Tol {
    match op {
        // The reference multiplies the activations as the kernels see them:
        // rounded through the weight's vec_dot_type (Q8_0, Q8_1, Q8_K; F16
        // for F16 weights), as llama.cpp does; what is left is the f32 sums'
        // order (and Q8_1's f16 block sums): a few ulps of the output scale.
        // (Against f32 activations the Q8 rounding alone is an NMSE ≈ 1.5e-5.)
        // Q4_1 and Q5_1 add their min term with Q8_1's block sum `s`, which is
        // d·Σq stored as f16 on the CPU (as in ggml): 2⁻¹¹ relative on that term.
        Op::Matmul { products, .. } if kind != Kind::Gpu && products.iter().any(|(t, _)| matches!(t, GgmlType::Q4_1 | GgmlType::Q5_1)) => {
            Tol { max_abs: 1e-4, nmse: 1e-8 }
        }
        Op::Matmul { .. } => Tol { max_abs: 1e-5, nmse: 1e-12 },
        // The CPU runs the spec's own functions (ops::rms_norm, ops::rope::apply
        // with RopeParams::cache, swiglu / geglu_ggml, plain adds) on every
        // table — none of them is in a SIMD table — so it is exact.
        Op::RmsNorm { .. } | Op::Rope { .. } | Op::Glu { .. } | Op::Add { .. } | Op::Scale { .. } | Op::AddBias { .. }
            if kind != Kind::Gpu =>
        {
            EXACT
        }
        // Copies move values: exact everywhere.
        Op::Copy { .. } => EXACT,
        // Adds and scales: one f32 op per value; a GPU may fuse s·y + x into an fma (½ ulp).
        Op::Add { .. } | Op::Scale { .. } | Op::AddBias { .. } => Tol { max_abs: 1e-6, nmse: 1e-12 },
        // GPU sqrt / reduction order, and cos/sin of the same tables: a few ulps.
        Op::RmsNorm { .. } | Op::Rope { .. } => Tol { max_abs: 1e-5, nmse: 1e-10 },
        // GPU exp/tanh differ by ulps; GELU goes through f16 (ggml's table)
        // on both, where an ulp can move the rounding by one f16 step (2⁻¹¹ relative).
        Op::Glu { act: Act::Silu, .. } => Tol { max_abs: 1e-5, nmse: 1e-10 },
        Op::Glu { act: Act::Gelu, .. } => Tol { max_abs: 4e-3, nmse: 1e-6 },
        // Scalar kernels sum exactly as the spec; a SIMD table sums q·k in
        // lanes, so a probability may round to the neighbouring f16 (see
        // backend/cpu/attention.rs's test); a GPU also differs in exp.
        Op::Attention { .. } => match kind {
            Kind::Scalar => EXACT,
            Kind::Simd => Tol { max_abs: 1e-4, nmse: 1e-8 },
            Kind::Gpu => Tol { max_abs: 2e-3, nmse: 1e-6 },
        },
        // The spec sums in f64; the executors in f32 in their own orders
        // over 8 products of O(1): a few ulps.
        Op::HeadMatmul { .. } => Tol { max_abs: 1e-5, nmse: 1e-10 },
    }
}

// --------------------------------------------------------- building a case

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    fn f(&mut self) -> f32 {
        (self.next() >> 29) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
    fn byte(&mut self) -> u8 {
        (self.next() >> 40) as u8
    }
}

/// Random rows of `ty` with sane scales (random quant bytes, the f16 scale fields patched).
fn random_weights(ty: GgmlType, n_in: usize, n_out: usize, rng: &mut Rng) -> Vec<u8> {
    let f16b = |v: f32| f16::from_f32(v).to_bits().to_le_bytes();
    match ty {
        GgmlType::F32 => return rng.vec(n_in * n_out).iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => return rng.vec(n_in * n_out).iter().flat_map(|&v| f16b(v)).collect(),
        _ => {}
    }
    let mut w: Vec<u8> = (0..ty.row_size(n_in).unwrap() * n_out).map(|_| rng.byte()).collect();
    let fields: &[usize] = match ty {
        GgmlType::Q4_0 | GgmlType::Q8_0 | GgmlType::Q5_0 | GgmlType::IQ4_NL | GgmlType::IQ4_XS => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        _ => panic!("no generator for {ty}"),
    };
    for b in w.chunks_exact_mut(ty.type_size()) {
        for &o in fields {
            b[o..o + 2].copy_from_slice(&f16b(0.002 + 0.02 * rng.f().abs()));
        }
    }
    w
}

const N_CTX: usize = 544;
const HEAD_W: usize = 32;
const HEAD_VOCAB: usize = 8;

/// One case built: its model (graph + forward), the input rows, and the
/// expected named outputs.
struct Built {
    model: Arc<OpModel>,
    /// Token ids of the (optional) prefix pass and the case's pass.
    prefix: Vec<u32>,
    ids: Vec<u32>,
    want: Vec<(String, usize, Vec<f32>)>,
}

struct OpModel {
    graph: Graph,
    op: Op,
    /// Inputs: embed table → buffer.
    inputs: Vec<(Mat, Buf)>,
    mats: Vec<Mat>,
    vecs: Vec<Vector>,
    /// Output buffers.
    outs: Vec<Buf>,
    rope: Option<RopeId>,
}

impl Forward for OpModel {
    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn forward(&self, e: &mut dyn Exec) -> ember::Result<()> {
        for &(t, b) in &self.inputs {
            e.embed(t, b, 1.0)?;
        }
        let x = self.inputs[0].1;
        let all = |b: Buf| View { buf: b, off: 0, width: self.graph.width(b) };
        match &self.op {
            Op::Matmul { .. } => {
                let p: Vec<(Mat, Buf)> = self.mats.iter().copied().zip(self.outs.iter().copied()).collect();
                e.matmul(x, &p)?;
            }
            Op::RmsNorm { in_place, .. } => {
                let out = if *in_place { x } else { self.outs[0] };
                e.rms_norm(all(x), self.vecs[0], all(out), 1e-5)?;
            }
            Op::Rope { n_head, head_dim, off, n_rot, mode } => {
                let r = Rope { table: self.rope.unwrap(), off: *off, n_head: *n_head, head_dim: *head_dim, n_rot: *n_rot, mode: *mode };
                e.rope(x, &r)?;
            }
            Op::Glu { act, .. } => e.glu(x, self.inputs[1].1, *act)?,
            Op::Add { s, .. } => e.add(x, self.inputs[1].1, *s)?,
            Op::Scale { s, .. } => e.scale(x, *s)?,
            Op::AddBias { .. } => e.add_bias(x, self.vecs[0])?,
            Op::Copy { n_head, src_off, dst_off, width, .. } => {
                let dst = self.inputs[1].1;
                e.copy(View { buf: x, off: *src_off, width: *width }, View { buf: dst, off: *dst_off, width: *width }, *n_head)?;
            }
            Op::Attention { n_head, n_head_kv, hd_k, hd_v, window, softcap, v_in_k, .. } => {
                let (k, v) = (self.inputs[1].1, self.inputs.get(2).map(|i| i.1));
                e.kv_store(0, k, v)?;
                let a = Attn {
                    n_head: *n_head,
                    n_head_kv: *n_head_kv,
                    head_dim_k: *hd_k,
                    head_dim_v: *hd_v,
                    kq_scale: 1.0 / (*hd_k as f32).sqrt(),
                    window: *window,
                    softcap: *softcap,
                    v_in_k: *v_in_k,
                };
                e.attention(0, x, self.outs[0], &a)?;
            }
            Op::HeadMatmul { a, .. } => e.head_matmul(x, self.mats[0], self.outs[0], a)?,
        }
        for (i, &o) in self.outs.iter().enumerate() {
            e.name(o, &format!("out{i}"), None)?;
        }
        Ok(())
    }
}

/// The in-memory GGUF, the model and the expected outputs of a case.
fn build(case: &Case, seed: u64) -> Built {
    let mut rng = Rng(seed);
    let n_tok = case.n_tok;
    let prefix = match case.op {
        Op::Attention { prefix, .. } => prefix,
        _ => 0,
    };
    let total = prefix + n_tok;
    // Tables of inputs: (name, width); row t = token t's input.
    let mut inputs: Vec<(&'static str, usize)> = Vec::new();
    let mut mats: Vec<(String, GgmlType, usize, usize)> = Vec::new();
    let mut vecs: Vec<(String, usize)> = Vec::new();
    let mut outs: Vec<(&'static str, usize)> = Vec::new();
    match &case.op {
        Op::Matmul { n_in, products } => {
            inputs.push(("x", *n_in));
            for (i, &(ty, n_out)) in products.iter().enumerate() {
                mats.push((format!("w{i}"), ty, *n_in, n_out));
                outs.push((["y0", "y1", "y2", "y3"][i], n_out));
            }
        }
        Op::RmsNorm { width, group, in_place } => {
            inputs.push(("x", *width));
            vecs.push(("norm".into(), *group));
            if !*in_place {
                outs.push(("y", *width));
            }
        }
        Op::Rope { n_head, head_dim, .. } => inputs.push(("x", n_head * head_dim)),
        Op::Glu { width, .. } | Op::Add { width, .. } => {
            inputs.push(("x", *width));
            inputs.push(("y", *width));
        }
        Op::Scale { width, .. } => inputs.push(("x", *width)),
        Op::AddBias { width } => {
            inputs.push(("x", *width));
            vecs.push(("bias".into(), *width));
        }
        Op::Copy { n_head, src_head, dst_head, .. } => {
            inputs.push(("x", n_head * src_head));
            inputs.push(("y", n_head * dst_head));
        }
        Op::Attention { n_head, n_head_kv, hd_k, hd_v, v_in_k, .. } => {
            inputs.push(("q", n_head * hd_k));
            inputs.push(("k", n_head_kv * hd_k));
            if !*v_in_k {
                inputs.push(("v", n_head_kv * hd_v));
            }
            outs.push(("o", n_head * hd_v));
        }
        Op::HeadMatmul { a, x_width, w_cols, w_rows } => {
            inputs.push(("x", *x_width));
            mats.push(("kv_b".into(), GgmlType::F16, *w_cols, *w_rows));
            outs.push(("y", a.n_head * a.y_head));
        }
    }
    // Ops in place name their input buffer.
    let in_place_out = outs.is_empty();

    let mut w = GgufWriter::new();
    let mut input_rows: Vec<Vec<f32>> = Vec::new();
    for (name, width) in &inputs {
        let rows = rng.vec(total * width);
        w.tensor_f32(&format!("in.{name}"), &[*width as u64, total as u64], &rows);
        input_rows.push(rows);
    }
    let mut mat_bytes: Vec<Vec<u8>> = Vec::new();
    for (name, ty, n_in, n_out) in &mats {
        let b = random_weights(*ty, *n_in, *n_out, &mut rng);
        w.tensor(name, *ty, &[*n_in as u64, *n_out as u64], b.clone());
        mat_bytes.push(b);
    }
    let mut vec_vals: Vec<Vec<f32>> = Vec::new();
    for (name, n) in &vecs {
        let v: Vec<f32> = (0..*n).map(|_| 0.5 + rng.f()).collect();
        w.tensor_f32(name, &[*n as u64], &v);
        vec_vals.push(v);
    }
    w.tensor_f32("head.norm", &[HEAD_W as u64], &[1.0; HEAD_W]);
    w.tensor_f32("head.out", &[HEAD_W as u64, HEAD_VOCAB as u64], &rng.vec(HEAD_W * HEAD_VOCAB));
    let file = Arc::new(GgufFile::from_bytes(w.to_bytes()).expect("parse case gguf"));

    let mut wt = Weights::new(file);
    let in_mats: Vec<Mat> = inputs.iter().map(|(n, width)| wt.matrix(&format!("in.{n}"), *width, total).unwrap()).collect();
    let m_handles: Vec<Mat> = mats
        .iter()
        .map(|(n, _, n_in, n_out)| {
            if matches!(case.op, Op::HeadMatmul { .. }) {
                wt.dense(n, *n_in, *n_out).unwrap()
            } else {
                wt.matrix(n, *n_in, *n_out).unwrap()
            }
        })
        .collect();
    let v_handles: Vec<Vector> = vecs.iter().map(|(n, len)| wt.vec(n, *len).unwrap()).collect();
    let head_norm = wt.vec("head.norm", HEAD_W).unwrap();
    let head_out = wt.matrix("head.out", HEAD_W, HEAD_VOCAB).unwrap();
    let mut g = GraphBuilder::new(wt);
    let in_bufs: Vec<Buf> = inputs.iter().map(|(n, width)| g.buf(n, *width)).collect();
    let out_bufs: Vec<Buf> = outs.iter().map(|(n, width)| g.buf(n, *width)).collect();
    let hidden = g.buf("hidden", HEAD_W);
    let mut rope = None;
    let (mut kv, mut head_dims) = (Vec::new(), (0, 0));
    match &case.op {
        Op::Rope { n_rot, mode, .. } => rope = Some(g.rope(RopeParams::plain(*n_rot, *mode, 10000.0), RopeFactors::default())),
        Op::Attention { n_head_kv, hd_k, hd_v, v_in_k, .. } => {
            kv.push((n_head_kv * hd_k, if *v_in_k { 0 } else { n_head_kv * hd_v }));
            head_dims = if *v_in_k { (0, 0) } else { (*hd_k, *hd_v) };
        }
        _ => {}
    }
    let head = Head { norm: head_norm, output: head_out, eps: 1e-5, logit_mul: 1.0, softcap: None };
    let graph = g.finish(kv, head_dims, hidden, head, HEAD_VOCAB);
    let model = Arc::new(OpModel {
        graph,
        op: case.op.clone(),
        inputs: in_mats.into_iter().zip(in_bufs.iter().copied()).collect(),
        mats: m_handles,
        vecs: v_handles,
        outs: if in_place_out { vec![in_bufs[0]] } else { out_bufs },
        rope,
    });

    // The expected outputs, from the specs of ops/ over all `total` rows.
    let x = &input_rows[0];
    let mut want: Vec<(String, usize, Vec<f32>)> = Vec::new();
    match &case.op {
        Op::Matmul { n_in, products } => {
            for (i, (&(ty, n_out), wb)) in products.iter().zip(&mat_bytes).enumerate() {
                // x as the kernels see it: through the weight's vec_dot_type.
                let at = quant::vec_dot_type(ty);
                let mut xq = vec![0f32; x.len()];
                let mut buf = vec![0u8; at.row_size(*n_in).unwrap()];
                for (src, dst) in x.chunks(*n_in).zip(xq.chunks_mut(*n_in)) {
                    quant::quantize_row_act(at, src, &mut buf);
                    quant::dequantize_row(at, &buf, dst).unwrap();
                }
                let mut y = vec![0f32; total * n_out];
                ops::matmul::matmul_ref(ty, wb, *n_in, n_out, &xq, &mut y).unwrap();
                want.push((format!("out{i}"), n_out, y));
            }
        }
        Op::RmsNorm { width, group, .. } => {
            let mut y = x.clone();
            y.chunks_mut(*group).for_each(|c| ops::rms_norm::rms_norm(c, &vec_vals[0], 1e-5));
            want.push(("out0".into(), *width, y));
        }
        Op::Rope { n_head, head_dim, off, n_rot, mode } => {
            let p = RopeParams::plain(*n_rot, *mode, 10000.0);
            let width = n_head * head_dim;
            let mut y = x.clone();
            let mut c = vec![(0f32, 0f32); n_rot / 2];
            for (t, row) in y.chunks_mut(width).enumerate() {
                p.cache(t, None, &mut c);
                for h in 0..*n_head {
                    ops::rope::apply(&mut row[h * head_dim + off..][..*n_rot], &c, *mode);
                }
            }
            want.push(("out0".into(), width, y));
        }
        Op::Glu { width, act } => {
            let mut y = x.clone();
            match act {
                Act::Silu => ops::activation::swiglu(&mut y, &input_rows[1]),
                Act::Gelu => ops::activation::geglu_ggml(&mut y, &input_rows[1]),
            }
            want.push(("out0".into(), *width, y));
        }
        Op::Add { width, s } => {
            let y: Vec<f32> = x.iter().zip(&input_rows[1]).map(|(a, b)| if *s == 1.0 { a + b } else { a + s * b }).collect();
            want.push(("out0".into(), *width, y));
        }
        Op::Scale { width, s } => want.push(("out0".into(), *width, x.iter().map(|a| a * s).collect())),
        Op::AddBias { width } => {
            let y: Vec<f32> = x.chunks(*width).flat_map(|r| r.iter().zip(&vec_vals[0]).map(|(a, b)| a + b).collect::<Vec<_>>()).collect();
            want.push(("out0".into(), *width, y));
        }
        Op::Copy { n_head, src_head, dst_head, src_off, dst_off, width } => {
            let mut y = input_rows[1].clone();
            let (sw, dw) = (n_head * src_head, n_head * dst_head);
            for t in 0..total {
                for h in 0..*n_head {
                    for i in 0..*width {
                        y[t * dw + h * dst_head + dst_off + i] = x[t * sw + h * src_head + src_off + i];
                    }
                }
            }
            // The copy's output is the destination buffer, named as out0.
            want.push(("out0".into(), dw, y));
        }
        Op::Attention { n_head, n_head_kv, hd_k, hd_v, window, softcap, v_in_k, .. } => {
            let k16: Vec<f16> = input_rows[1].iter().map(|&v| f16::from_f32(v)).collect();
            let k_row = n_head_kv * hd_k;
            let (v16, v_row) =
                if *v_in_k { (k16.clone(), k_row) } else { (input_rows[2].iter().map(|&v| f16::from_f32(v)).collect(), n_head_kv * hd_v) };
            let s = ops::attention::AttnSpec {
                n_head: *n_head,
                n_head_kv: *n_head_kv,
                head_dim_k: *hd_k,
                head_dim_v: *hd_v,
                pos0: 0,
                kq_scale: 1.0 / (*hd_k as f32).sqrt(),
                window: *window,
                softcap: *softcap,
            };
            let mut y = vec![0f32; total * n_head * hd_v];
            ops::attention::attention(&s, x, &k16, k_row, &v16, v_row, &mut y);
            want.push(("out0".into(), n_head * hd_v, y));
        }
        Op::HeadMatmul { a, x_width, .. } => {
            let wd: Vec<f32> = mat_bytes[0].chunks(2).map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()).collect();
            let yw = a.n_head * a.y_head;
            let mut y = vec![0f32; total * yw];
            for t in 0..total {
                for h in 0..a.n_head {
                    for o in 0..a.n_out {
                        let s: f64 = (0..a.n_in)
                            .map(|i| wd[a.w_off + h * a.w_head + o * a.w_o + i * a.w_i] as f64 * x[t * x_width + h * a.x_head + i] as f64)
                            .sum();
                        y[t * yw + h * a.y_head + o] = s as f32;
                    }
                }
            }
            want.push(("out0".into(), yw, y));
        }
    }
    // For Copy the named buffer is the destination: point out0 at it.
    let model = if let Op::Copy { .. } = case.op {
        let mut m = Arc::try_unwrap(model).ok().unwrap();
        m.outs = vec![m.inputs[1].1];
        Arc::new(m)
    } else {
        model
    };
    let ids: Vec<u32> = (0..total as u32).collect();
    Built { model, prefix: ids[..prefix].to_vec(), ids: ids[prefix..].to_vec(), want }
}

// ------------------------------------------------------------- executors

enum Exe {
    Cpu(&'static CpuKernels),
    Gpu,
}

struct Executors {
    cpus: Vec<(&'static CpuKernels, Arc<CpuBackend>)>,
}

fn gpu_ctx() -> Option<GpuContext> {
    let ctx = match GpuContext::new(AdapterPolicy::AllowSoftware) {
        Ok(c) => c,
        Err(e) => {
            println!("wgpu: cannot create a device: {e}");
            None
        }
    };
    if ctx.is_none() {
        let required = std::env::var_os("CI").is_some() || std::env::var("EMBER_REQUIRE_GPU").as_deref() == Ok("1");
        assert!(!required, "no wgpu adapter found, and CI / EMBER_REQUIRE_GPU=1 requires one");
        println!("SKIPPED wgpu: no adapter found (install mesa-vulkan-drivers for lavapipe)");
    }
    ctx
}

/// A runner of `model` on `exe`; on wgpu the backend takes the one device
/// context, which [`done`] takes back from it for the next case.
type Made = (Box<dyn Runner>, Option<Arc<WgpuBackend>>);

fn make_runner(ex: &Executors, exe: &Exe, model: &Arc<OpModel>, gpu_ctx: &mut Option<GpuContext>) -> ember::Result<Made> {
    match exe {
        Exe::Cpu(k) => {
            let be = ex.cpus.iter().find(|(t, _)| std::ptr::eq(*t, *k)).unwrap().1.clone();
            Ok((Box::new(CpuRunner::new(be, model.clone(), N_CTX)), None))
        }
        Exe::Gpu => {
            // The backend takes the context; a failed build drops it, so make a new one then.
            let ctx = gpu_ctx.take().or_else(|| GpuContext::new(AdapterPolicy::AllowSoftware).ok().flatten()).expect("gpu context");
            let be = Arc::new(WgpuBackend::new(ctx, model.clone())?);
            Ok((Box::new(be.new_runner(N_CTX)?), Some(be)))
        }
    }
}

/// Cases an executor is known not to run, and why: reported as XFAIL, not
/// counted as failures (and as XPASS should they start to pass).
fn known_gap(case: &Case, exe: &Exe) -> Option<&'static str> {
    match (&case.op, exe) {
        (Op::RmsNorm { in_place: true, .. }, Exe::Gpu) => Some("wgpu refuses rms_norm in place (no architecture uses it)"),
        _ => None,
    }
}

/// Drops a runner and hands the wgpu device context back for the next case.
fn done(r: Box<dyn Runner>, be: Option<Arc<WgpuBackend>>, gpu_ctx: &mut Option<GpuContext>) {
    drop(r);
    if let Some(be) = be {
        if let Ok(be) = Arc::try_unwrap(be) {
            *gpu_ctx = Some(be.ctx);
        }
    }
}

fn exe_name(exe: &Exe) -> String {
    match exe {
        Exe::Cpu(k) => format!("cpu-{}", k.isa),
        Exe::Gpu => "wgpu".into(),
    }
}

fn kind(exe: &Exe) -> Kind {
    match exe {
        Exe::Cpu(k) if std::ptr::eq(*k, &SCALAR) => Kind::Scalar,
        Exe::Cpu(_) => Kind::Simd,
        Exe::Gpu => Kind::Gpu,
    }
}

/// Runs a built case with dumping; returns the named outputs.
fn run_case(r: &mut dyn Runner, b: &Built) -> Vec<Dumped> {
    let mut logits = Vec::new();
    r.set_dump(true).unwrap();
    if !b.prefix.is_empty() {
        r.forward(&b.prefix, 0, Want::Last, &mut logits).unwrap();
    }
    r.forward(&b.ids, b.prefix.len(), Want::Last, &mut logits).unwrap();
    r.take_dump()
}

fn compare(got: &[Dumped], want: &[(String, usize, Vec<f32>)]) -> Result<(f64, f64), String> {
    let (mut max_abs, mut err, mut norm) = (0f64, 0f64, 0f64);
    for (name, width, w) in want {
        let Some(d) = got.iter().find(|d| &d.name == name) else { return Err(format!("{name} not dumped")) };
        if d.width != *width || d.data.len() != w.len() {
            return Err(format!("{name}: {}×{} dumped, {}×{width} expected", d.data.len() / d.width.max(1), d.width, w.len() / width));
        }
        let scale = w.iter().fold(1f64, |m, &v| m.max(v.abs() as f64));
        for (&g, &w) in d.data.iter().zip(w) {
            if !g.is_finite() {
                return Err(format!("{name}: non-finite output"));
            }
            let diff = (g as f64 - w as f64).abs();
            max_abs = max_abs.max(diff / scale);
            err += diff * diff;
            norm += w as f64 * w as f64;
        }
    }
    Ok((max_abs, if norm > 0.0 { err / norm } else { err }))
}

fn main() {
    run(std::env::args().any(|a| a == "--perf"));
}

/// Checks every case on every executor (exits non-zero on a failure), or
/// with `perf` times the bigger cases (also `cargo bench -p ember --bench ops`).
pub fn run(perf: bool) {
    let args: Vec<String> = std::env::args().collect();
    let filter = args.iter().position(|a| a == "--filter").and_then(|i| args.get(i + 1)).cloned();
    // libtest-style flags `cargo test` may pass (--nocapture, --test-threads …) are ignored.
    let threads = if perf { 0 } else { 2 };
    let cpus: Vec<(&'static CpuKernels, Arc<CpuBackend>)> =
        CpuKernels::available().into_iter().map(|k| (k, Arc::new(CpuBackend::with_table(threads, k).unwrap()))).collect();
    let mut gpu = gpu_ctx();
    if let Some(c) = &gpu {
        println!("wgpu adapter: {} ({})", c.profile.adapter_name, c.profile.device_type);
    }
    let has_gpu = gpu.is_some();
    let ex = Executors { cpus };
    let mut exes: Vec<Exe> = ex.cpus.iter().map(|&(k, _)| Exe::Cpu(k)).collect();
    if has_gpu {
        exes.push(Exe::Gpu);
    }
    let list: Vec<Case> = if perf { perf_cases() } else { cases() };
    let list: Vec<Case> = list.into_iter().filter(|c| filter.as_deref().is_none_or(|f| c.name.contains(f))).collect();
    let t0 = Instant::now();
    if perf {
        run_perf(&ex, &exes, &list, &mut gpu);
        println!("{} cases in {:.1} s", list.len(), t0.elapsed().as_secs_f64());
        return;
    }
    let mut failures = 0;
    let mut n = 0;
    for (ci, case) in list.iter().enumerate() {
        let b = build(case, 1000 + ci as u64);
        for exe in &exes {
            let t = tol(&case.op, kind(exe));
            let gap = known_gap(case, exe);
            n += 1;
            let res = make_runner(&ex, exe, &b.model, &mut gpu).map_err(|e| e.to_string()).and_then(|(mut r, be)| {
                let got = run_case(&mut *r, &b);
                done(r, be, &mut gpu);
                compare(&got, &b.want)
            });
            let (ok, detail) = match res {
                Ok((max_abs, nmse)) => {
                    let ok = max_abs <= t.max_abs && nmse <= t.nmse;
                    (ok, format!("max|Δ| {max_abs:.2e} (≤ {:.0e})  NMSE {nmse:.2e} (≤ {:.0e})", t.max_abs, t.nmse))
                }
                Err(e) => (false, e),
            };
            let tag = match (ok, gap) {
                (true, None) => "PASS",
                (true, Some(_)) => "XPASS",
                (false, Some(_)) => "XFAIL",
                (false, None) => {
                    failures += 1;
                    "FAIL"
                }
            };
            let why = gap.map(|g| format!("  [{g}]")).unwrap_or_default();
            println!("{tag:<5} {:<48} {:<20} {detail}{why}", case.name, exe_name(exe));
        }
    }
    println!(
        "op_cases: {n} runs ({} cases × {} executors{}), {failures} failed, {:.1} s",
        list.len(),
        exes.len(),
        if has_gpu { "" } else { "; wgpu skipped" },
        t0.elapsed().as_secs_f64()
    );
    if failures > 0 {
        std::process::exit(1);
    }
}

fn run_perf(ex: &Executors, exes: &[Exe], list: &[Case], gpu: &mut Option<GpuContext>) {
    const REPS: usize = 7;
    print!("{:<48}", "case (median of 7 passes, µs)");
    for exe in exes {
        print!(" {:>22}", exe_name(exe));
    }
    println!();
    for (ci, case) in list.iter().enumerate() {
        let b = build(case, 5000 + ci as u64);
        print!("{:<48}", case.name);
        for exe in exes {
            if known_gap(case, exe).is_some() {
                print!(" {:>22}", "-");
                continue;
            }
            let (mut r, be) = make_runner(ex, exe, &b.model, gpu).expect("runner");
            let mut logits = Vec::new();
            let pos0 = b.prefix.len();
            if !b.prefix.is_empty() {
                r.forward(&b.prefix, 0, Want::Last, &mut logits).unwrap();
            }
            // One warm-up pass (pipelines, scratch), then REPS timed ones at the same positions.
            r.forward(&b.ids, pos0, Want::Last, &mut logits).unwrap();
            let mut ts: Vec<f64> = (0..REPS)
                .map(|_| {
                    let t = Instant::now();
                    r.forward(&b.ids, pos0, Want::Last, &mut logits).unwrap();
                    t.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
            done(r, be, gpu);
            print!(" {:>22.0}", ts[REPS / 2]);
        }
        println!();
    }
}
