//! Every WGSL shader variant Ember builds: plain `.wgsl` files embedded with
//! `include_str!`, variants made by prepending a few `const` lines (the tiny
//! preprocessor), cached by [`ShaderKey`]. `all_variants` is what the CPU-only
//! naga test validates, including each variant's `Params` uniform block
//! against the Rust struct [`ShaderKey::params`] names.

use super::kernels::params::{self as kp, KernelParams, ParamsLayout};
use super::layout::{Layout, GPU_TYPES};
use crate::kv_cache::KvType;

const DEQUANT: &str = include_str!("shaders/dequant.wgsl");
const MATMUL: &str = include_str!("shaders/matmul.wgsl");
const MATMUL_WG: &str = include_str!("shaders/matmul_wg.wgsl");
const MATMUL_SG: &str = include_str!("shaders/matmul_sg.wgsl");
const MATMUL_ROWS: &str = include_str!("shaders/matmul_rows.wgsl");
const MATMUL_TILED: &str = include_str!("shaders/matmul_tiled.wgsl");
const GET_ROWS: &str = include_str!("shaders/get_rows.wgsl");
const RMS_NORM: &str = include_str!("shaders/rms_norm.wgsl");
const ROPE: &str = include_str!("shaders/rope.wgsl");
const KV_STORE: &str = include_str!("shaders/kv_store.wgsl");
const ATTENTION: &str = include_str!("shaders/attention.wgsl");
const SWIGLU: &str = include_str!("shaders/swiglu.wgsl");
const ADD: &str = include_str!("shaders/add.wgsl");
const SCALE: &str = include_str!("shaders/scale.wgsl");
const ADD_BIAS: &str = include_str!("shaders/add_bias.wgsl");
const ARGMAX: &str = include_str!("shaders/argmax.wgsl");
const ACT_QUANT: &str = include_str!("shaders/act_quant.wgsl");
const COPY: &str = include_str!("shaders/copy.wgsl");
const HEAD_MATMUL: &str = include_str!("shaders/head_matmul.wgsl");
const ACT_ROUND: &str = include_str!("shaders/act_round.wgsl");
const RMS_NORM_Q: &str = include_str!("shaders/rms_norm_q.wgsl");
const RMS_SCALE: &str = include_str!("shaders/rms_scale.wgsl");
const GLU_Q: &str = include_str!("shaders/glu_q.wgsl");
const ROPE_KV: &str = include_str!("shaders/rope_kv.wgsl");
const KV_STORE_Q: &str = include_str!("shaders/kv_store_q.wgsl");
const ATTENTION_KVQ: &str = include_str!("shaders/attention_kvq.wgsl");
const HADAMARD: &str = include_str!("shaders/hadamard.wgsl");
/// dequant.wgsl's word reader for the kernels with one weight (`wa`).
const WA_AT: &str = "fn wa_at(i: u32) -> u32 {\n    return wa[i];\n}\n";

/// A shader and its variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShaderKey {
    /// Lanes + workgroup reduction (GPU decode), baseline tier.
    Matmul(Layout),
    /// Lanes + subgroup-shuffle reduction (GPU decode) on adapters with subgroups.
    MatmulSg(Layout),
    /// One invocation per (rows, tokens) tile, no barriers (software
    /// adapters, prompts): see [`RowsTile`].
    MatmulRows(Layout, RowsTile),
    /// Workgroup-shared tiles of 64 rows × 32 or 64 tokens (prompt
    /// micro-batches on GPUs): see [`TileType`].
    MatmulTiled(Layout, TileType),
    GetRows(Layout),
    RmsNorm,
    Rope,
    KvStore,
    /// Quantizing KV store into a q8_0 or q4_0 cache (never `KvType::F16`:
    /// that is `KvStore`), ggml's reference quantizers.
    KvStoreQ(KvType),
    /// Attention over the f16 KV cache, its cache reads per tier: see [`AttnCache`].
    Attention(AttnCache),
    /// Attention over a quantized KV cache, K and V types (not both f16):
    /// llama.cpp's CPU flash-attention arithmetic (attention_kvq.wgsl).
    AttentionKvq(KvType, KvType),
    /// In-place Walsh–Hadamard rotation of pieces of a buffer (the rotation
    /// of a quantized cache's rows, queries and output: `kv_rotation.rs`).
    Hadamard,
    Swiglu,
    Add,
    Scale,
    AddBias,
    Argmax,
    ActQuant,
    /// Strided row copy (MLA's rope parts).
    Copy,
    /// Per-head products with any strides (MLA's absorbed maps), the weight
    /// (kv_b) in its file type.
    HeadMatmul(Layout),
    /// Fused tier: RMSNorm whose rows are also written rounded for the next product.
    RmsNormQ,
    /// Fused tier: SiLU/GELU·mul whose result is also written rounded for the next product.
    GluQ,
    /// Fused tier: RoPE of q and k, q scale, and the KV store of k and v.
    RopeKv,
    /// Fused tier: a decode/row product (`Matmul`, `MatmulSg` or `MatmulRows`
    /// by [`FusedKernel`]) that also rounds x and/or adds into a residual: see [`MatFuse`].
    MatmulFused(Layout, FusedKernel, MatFuse),
}

/// The product kernels that take the fused tier's prologue and epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FusedKernel {
    /// matmul.wgsl + matmul_wg.wgsl (as `ShaderKey::Matmul`).
    Reduce,
    /// matmul.wgsl + matmul_sg.wgsl (as `ShaderKey::MatmulSg`).
    ReduceSg,
    /// matmul_rows.wgsl (as `ShaderKey::MatmulRows`).
    Rows(RowsTile),
}

/// What a fused product does besides `y = W·x` (the prelude
/// [`matmul_fuse`] prepends; the plain products get the identity one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatFuse {
    /// Rounds each 32-value unit of x like act_quant `mode` (0 or 2: the
    /// 32-value blocks, so a unit is a whole block) before multiplying: the
    /// act_quant dispatch before the product, as its prologue.
    pub round: Option<u32>,
    /// Adds `s · y` into a residual buffer (binding 4) as it stores y: the
    /// residual add after the product, as its epilogue (add.wgsl's arithmetic).
    /// Only for a lone product ([`MatGroup::One`]).
    pub add: bool,
    /// The weights of one dispatch and where their rows go.
    pub group: MatGroup,
}

impl MatFuse {
    /// The identity: a plain product.
    pub const NONE: MatFuse = MatFuse { round: None, add: false, group: MatGroup::One };
}

/// The products of one fused dispatch, each weight in its own buffer as
/// uploaded (nothing is restacked, so every other kernel, the tiled prompt
/// kernel included, reads the same buffers). All weights of a group share a
/// layout and an input; a row's weight is chosen by `w_unit` through the
/// private `wsel` that `wa_at` reads, so each row's sum is the plain
/// product's, bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatGroup {
    /// One weight, one output.
    One,
    /// `[q, k, v] = [W_q; W_k; W_v] · x` (llama.cpp's `wqkv`): rows
    /// `0..n_a` of the group are q's, `n_a..n_a + n_b` k's, the rest v's,
    /// each stored in its own output (bindings 2, 3, 4: the weights; 5, 6, 7:
    /// q, k, v, each with rows of its own width).
    Qkv,
    /// `gate = act(W_gate · x) · (W_up · x)`, `up = W_up · x` (ggml's
    /// swiglu/geglu after the two products): bindings 2, 3 the gate and up
    /// weights, 4 up, 5 gate. The reduction kernels see the group as rows
    /// interleaved (2i = gate_i, 2i+1 = up_i, so one workgroup holds both
    /// after its last barrier); the row kernel sums the same rows of each
    /// weight in one invocation.
    Glu(GluOp),
}

/// The activation of a fused GLU (swiglu.wgsl's `op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GluOp {
    /// SiLU(gate) · up.
    Swiglu,
    /// GELU(gate) · up (tanh approximation).
    Geglu,
}

/// The lines prepended to the product kernels (matmul.wgsl, matmul_rows.wgsl):
/// the output bindings from 3 on, and `ROUND`/`round_x` (the rounding
/// prologue), `GLU`, `wsel`/`wa_at`/`w_unit` (which weight a row reads, and
/// where its unit is), `store`/`store_glu` (the epilogue).
fn matmul_fuse(f: MatFuse, k: FusedKernel) -> String {
    let mut s = format!("const ROUND: bool = {};\n", f.round.is_some());
    match f.round {
        Some(mode) => s += &format!("fn round_x(b: ptr<function, array<f32, 32>>) {{\n    act_round32({mode}u, b);\n}}\n"),
        None => s += "fn round_x(b: ptr<function, array<f32, 32>>) {}\n",
    }
    s += &format!("const GLU: bool = {};\nvar<private> wsel: u32;\n", matches!(f.group, MatGroup::Glu(_)));
    let no_glu = "fn store_glu(t: u32, row: u32, g: f32, u: f32) {}\n";
    match f.group {
        MatGroup::One => {
            s += "fn wa_at(i: u32) -> u32 {\n    return wa[i];\n}\n";
            s += "fn w_unit(row: u32, upr: u32, u: u32) -> u32 {\n    return row * upr + u;\n}\n";
            s += "@group(0) @binding(3) var<storage, read_write> y: array<f32>;\n";
            if f.add {
                s += "@group(0) @binding(4) var<storage, read_write> res: array<f32>;\n";
                s += "fn store(t: u32, row: u32, v: f32) {\n    let i = t * p.y_stride + p.y_off + row;\n    y[i] = v;\n    res[i] += p.s * v;\n}\n";
            } else {
                s += "fn store(t: u32, row: u32, v: f32) {\n    y[t * p.y_stride + p.y_off + row] = v;\n}\n";
            }
            s += no_glu;
        }
        MatGroup::Qkv => {
            s += "@group(0) @binding(3) var<storage, read> wb: array<u32>;\n";
            s += "@group(0) @binding(4) var<storage, read> wc: array<u32>;\n";
            s += "@group(0) @binding(5) var<storage, read_write> y: array<f32>;\n";
            s += "@group(0) @binding(6) var<storage, read_write> y_k: array<f32>;\n";
            s += "@group(0) @binding(7) var<storage, read_write> y_v: array<f32>;\n";
            s += "fn wa_at(i: u32) -> u32 {\n    switch wsel {\n        case 1u: {\n            return wb[i];\n        }\n        case 2u: {\n            return wc[i];\n        }\n        default: {\n            return wa[i];\n        }\n    }\n}\n";
            s += "fn w_unit(row: u32, upr: u32, u: u32) -> u32 {\n    if row < p.n_a {\n        wsel = 0u;\n        return row * upr + u;\n    }\n    if row < p.n_a + p.n_b {\n        wsel = 1u;\n        return (row - p.n_a) * upr + u;\n    }\n    wsel = 2u;\n    return (row - p.n_a - p.n_b) * upr + u;\n}\n";
            s += "fn store(t: u32, row: u32, v: f32) {\n    if row < p.n_a {\n        y[t * p.n_a + row] = v;\n    } else if row < p.n_a + p.n_b {\n        y_k[t * p.n_b + row - p.n_a] = v;\n    } else {\n        y_v[t * (p.n_rows - p.n_a - p.n_b) + row - p.n_a - p.n_b] = v;\n    }\n}\n";
            s += no_glu;
        }
        MatGroup::Glu(op) => {
            s += "@group(0) @binding(3) var<storage, read> wb: array<u32>;\n";
            s += "@group(0) @binding(4) var<storage, read_write> y: array<f32>;\n";
            s += "@group(0) @binding(5) var<storage, read_write> gate: array<f32>;\n";
            s += "fn wa_at(i: u32) -> u32 {\n    if wsel == 1u {\n        return wb[i];\n    }\n    return wa[i];\n}\n";
            s += match k {
                // Rows interleaved: 2i = gate_i, 2i + 1 = up_i.
                FusedKernel::Reduce | FusedKernel::ReduceSg => {
                    "fn w_unit(row: u32, upr: u32, u: u32) -> u32 {\n    wsel = row & 1u;\n    return (row >> 1u) * upr + u;\n}\n"
                }
                // main sets wsel around the two passes over the same rows.
                FusedKernel::Rows(_) => "fn w_unit(row: u32, upr: u32, u: u32) -> u32 {\n    return row * upr + u;\n}\n",
            };
            s += "fn store(t: u32, row: u32, v: f32) {}\n";
            // swiglu.wgsl's arithmetic, step for step; up is stored as the
            // unfused product leaves it.
            let gelu = if op == GluOp::Geglu { "    a = 0.5 * g * (1.0 + tanh(0.7978846 * g * (1.0 + 0.044715 * g * g)));\n" } else { "" };
            s += &format!("fn store_glu(t: u32, row: u32, g: f32, u: f32) {{\n    let i = t * p.y_stride + p.y_off + row;\n    var a = g / (1.0 + exp(-g));\n{gelu}    y[i] = u;\n    gate[i] = a * u;\n}}\n");
        }
    }
    s
}

/// The tile of matmul_rows.wgsl: `rows` weight rows × `tokens` tokens per
/// invocation, `rows_per_group` rows per workgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowsTile {
    pub rows: u32,
    pub tokens: u32,
}

impl RowsTile {
    /// Software adapters (lavapipe), batches: each x value loaded once serves
    /// 16 rows (every per-invocation load is a gather there, and x's dominated).
    pub const SOFTWARE: RowsTile = RowsTile { rows: 16, tokens: 4 };
    /// Software adapters, one token (decode).
    pub const SOFTWARE_DECODE: RowsTile = RowsTile { rows: 16, tokens: 1 };
    /// GPUs, prompt batches: one row per invocation, many invocations.
    pub const GPU: RowsTile = RowsTile { rows: 1, tokens: 4 };
    pub const ALL: [RowsTile; 3] = [RowsTile::SOFTWARE, RowsTile::SOFTWARE_DECODE, RowsTile::GPU];

    /// Invocations per workgroup.
    pub fn workgroup(&self) -> u32 {
        if self.rows == 1 {
            64
        } else {
            16
        }
    }

    /// Weight rows per workgroup.
    pub fn rows_per_group(&self) -> u32 {
        self.rows * self.workgroup()
    }
}

/// What matmul_tiled.wgsl keeps in its workgroup tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileType {
    /// f32 tiles, 64 rows × 32 tokens (baseline tier).
    F32,
    /// f16 tiles, 64 rows × 64 tokens in less memory (f16 tier, `SHADER_F16`):
    /// weights and x rounded to f16, products and sums in f32.
    F16,
}

impl TileType {
    pub const ALL: [TileType; 2] = [TileType::F32, TileType::F16];

    /// Tokens per workgroup tile.
    pub fn tokens(&self) -> u32 {
        match self {
            TileType::F32 => 32,
            TileType::F16 => 64,
        }
    }

    /// Weight rows per workgroup tile.
    pub const ROWS: u32 = 64;

    /// The lines the host prepends to matmul_tiled.wgsl (`enable f16;` must
    /// come before every declaration, so these go first).
    fn header(&self) -> String {
        match self {
            TileType::F32 => format!("alias tile = f32;\nconst BN: u32 = {}u;\n", self.tokens()),
            TileType::F16 => format!("enable f16;\nalias tile = f16;\nconst BN: u32 = {}u;\n", self.tokens()),
        }
    }
}

/// How attention.wgsl reads the f16 KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttnCache {
    /// u32 words through `unpack2x16float`, f32 products (baseline tier).
    Packed,
    /// `vec2<f16>` reads, products and sums in f32 (f16 tier, `SHADER_F16`):
    /// the same values as `Packed` without unpacking words by hand.
    F16,
}

impl AttnCache {
    pub const ALL: [AttnCache; 2] = [AttnCache::Packed, AttnCache::F16];

    /// The cache bindings and readers prepended to attention.wgsl (its header
    /// comment says what they compute).
    fn header(&self) -> &'static str {
        match self {
            AttnCache::Packed => {
                "@group(0) @binding(2) var<storage, read> kc: array<u32>;
@group(0) @binding(3) var<storage, read> vc: array<u32>;
fn k_pair(i: u32) -> vec2<f32> {
    return unpack2x16float(kc[i]);
}
fn pv(pj: f32, i: u32, odd: bool) -> f32 {
    let v = unpack2x16float(vc[i]);
    return pj * select(v.x, v.y, odd);
}
"
            }
            AttnCache::F16 => {
                "enable f16;
@group(0) @binding(2) var<storage, read> kc: array<vec2<f16>>;
@group(0) @binding(3) var<storage, read> vc: array<vec2<f16>>;
fn k_pair(i: u32) -> vec2<f32> {
    return vec2<f32>(kc[i]);
}
fn pv(pj: f32, i: u32, odd: bool) -> f32 {
    let v = vc[i];
    return pj * f32(select(v.x, v.y, odd));
}
"
            }
        }
    }
}

/// Binding signature: binding 0 is the params uniform (dynamic offset), then
/// `n_read` read-only storage buffers, then `n_rw` read-write ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature {
    pub n_read: u32,
    pub n_rw: u32,
}

fn layout_consts(l: Layout) -> String {
    format!("const LAYOUT: u32 = {}u;\n", l.id())
}

/// A product kernel's source with the prelude of `f` (the binding
/// declarations come first in the body; dequant_unit uses them).
fn matmul_source(l: Layout, k: FusedKernel, f: MatFuse) -> String {
    let head = format!("{}{}", layout_consts(l), matmul_fuse(f, k));
    let round = if f.round.is_some() { ACT_ROUND } else { "" };
    match k {
        FusedKernel::Reduce => format!("{head}{MATMUL}\n{MATMUL_WG}\n{DEQUANT}\n{round}"),
        FusedKernel::ReduceSg => format!("{head}{MATMUL}\n{MATMUL_SG}\n{DEQUANT}\n{round}"),
        FusedKernel::Rows(t) => format!(
            "{head}const R: u32 = {}u;\nconst T: u32 = {}u;\nconst WG: u32 = {}u;\n{MATMUL_ROWS}\n{DEQUANT}\n{round}",
            t.rows,
            t.tokens,
            t.workgroup()
        ),
    }
}

impl ShaderKey {
    pub fn label(&self) -> String {
        match self {
            ShaderKey::Matmul(l) => format!("matmul_{}", l.name()),
            ShaderKey::MatmulSg(l) => format!("matmul_sg_{}", l.name()),
            ShaderKey::MatmulRows(l, t) => format!("matmul_rows_r{}t{}_{}", t.rows, t.tokens, l.name()),
            ShaderKey::MatmulTiled(l, t) => format!("matmul_tiled_{}_{}", format!("{t:?}").to_lowercase(), l.name()),
            ShaderKey::GetRows(l) => format!("get_rows_{}", l.name()),
            ShaderKey::HeadMatmul(l) => format!("head_matmul_{}", l.name()),
            ShaderKey::Attention(c) => format!("attention_{}", format!("{c:?}").to_lowercase()),
            ShaderKey::KvStoreQ(t) => format!("kv_store_{t}"),
            ShaderKey::AttentionKvq(k, v) => format!("attention_kvq_{k}_{v}"),
            ShaderKey::MatmulFused(l, k, f) => {
                let k = match k {
                    FusedKernel::Reduce => "wg".to_string(),
                    FusedKernel::ReduceSg => "sg".to_string(),
                    FusedKernel::Rows(t) => format!("rows_r{}t{}", t.rows, t.tokens),
                };
                let round = f.round.map(|m| format!("_round{m}")).unwrap_or_default();
                let group = match f.group {
                    MatGroup::One => "",
                    MatGroup::Qkv => "_qkv",
                    MatGroup::Glu(GluOp::Swiglu) => "_swiglu",
                    MatGroup::Glu(GluOp::Geglu) => "_geglu",
                };
                format!("matmul_fused_{k}{round}{}{group}_{}", if f.add { "_add" } else { "" }, l.name())
            }
            other => format!("{other:?}").to_lowercase(),
        }
    }

    /// The full WGSL source of this variant.
    pub fn source(&self) -> String {
        match self {
            // The binding declarations come first in the body; dequant_unit uses them.
            ShaderKey::Matmul(l) => matmul_source(*l, FusedKernel::Reduce, MatFuse::NONE),
            ShaderKey::MatmulSg(l) => matmul_source(*l, FusedKernel::ReduceSg, MatFuse::NONE),
            ShaderKey::MatmulRows(l, t) => matmul_source(*l, FusedKernel::Rows(*t), MatFuse::NONE),
            ShaderKey::MatmulFused(l, k, f) => matmul_source(*l, *k, *f),
            ShaderKey::MatmulTiled(l, t) => format!("{}{}{}\n{}{}", t.header(), layout_consts(*l), MATMUL_TILED, DEQUANT, WA_AT),
            ShaderKey::GetRows(l) => format!("{}{}\n{}{}", layout_consts(*l), GET_ROWS, DEQUANT, WA_AT),
            ShaderKey::RmsNorm => format!("{RMS_NORM}\n{RMS_SCALE}"),
            ShaderKey::Rope => ROPE.into(),
            ShaderKey::KvStore => KV_STORE.into(),
            ShaderKey::Attention(c) => format!("{}{}", c.header(), ATTENTION),
            ShaderKey::KvStoreQ(t) => {
                let qt = kv_type_id(*t);
                let bb = t.block_bytes();
                format!("const QT: u32 = {qt}u;\nconst BB: u32 = {bb}u;\nconst PW: u32 = {}u;\n{KV_STORE_Q}", 2 * bb / 4)
            }
            ShaderKey::AttentionKvq(k, v) => {
                format!("const KT: u32 = {}u;\nconst VT: u32 = {}u;\n{ATTENTION_KVQ}", kv_type_id(*k), kv_type_id(*v))
            }
            ShaderKey::Swiglu => SWIGLU.into(),
            ShaderKey::Add => ADD.into(),
            ShaderKey::Scale => SCALE.into(),
            ShaderKey::Hadamard => HADAMARD.into(),
            ShaderKey::AddBias => ADD_BIAS.into(),
            ShaderKey::Argmax => ARGMAX.into(),
            ShaderKey::ActQuant => ACT_QUANT.into(),
            ShaderKey::Copy => COPY.into(),
            ShaderKey::HeadMatmul(l) => format!("{}{}\n{}{}", layout_consts(*l), HEAD_MATMUL, DEQUANT, WA_AT),
            ShaderKey::RmsNormQ => format!("{RMS_NORM_Q}\n{RMS_SCALE}\n{ACT_ROUND}"),
            ShaderKey::GluQ => format!("{GLU_Q}\n{ACT_ROUND}"),
            ShaderKey::RopeKv => ROPE_KV.into(),
        }
    }

    /// Layout of the Rust struct for this variant's `Params` uniform block
    /// (what `Recorder::dispatch` must be given; checked against the WGSL
    /// struct by the naga test).
    pub fn params(&self) -> ParamsLayout {
        match self {
            ShaderKey::Matmul(_)
            | ShaderKey::MatmulSg(_)
            | ShaderKey::MatmulRows(..)
            | ShaderKey::MatmulTiled(..)
            | ShaderKey::MatmulFused(..) => kp::MatmulParams::LAYOUT,
            ShaderKey::GetRows(_) => kp::GetRowsParams::LAYOUT,
            ShaderKey::RmsNorm => kp::RmsNormParams::LAYOUT,
            ShaderKey::Rope => kp::RopeParams::LAYOUT,
            ShaderKey::KvStore | ShaderKey::KvStoreQ(_) => kp::KvStoreParams::LAYOUT,
            ShaderKey::Attention(_) | ShaderKey::AttentionKvq(..) => kp::AttentionParams::LAYOUT,
            ShaderKey::Swiglu => kp::SwigluParams::LAYOUT,
            ShaderKey::Add => kp::AddParams::LAYOUT,
            ShaderKey::Scale => kp::ScaleParams::LAYOUT,
            ShaderKey::Hadamard => kp::HadamardParams::LAYOUT,
            ShaderKey::AddBias => kp::AddBiasParams::LAYOUT,
            ShaderKey::Argmax => kp::ArgmaxParams::LAYOUT,
            ShaderKey::ActQuant => kp::ActQuantParams::LAYOUT,
            ShaderKey::Copy => kp::CopyParams::LAYOUT,
            ShaderKey::HeadMatmul(_) => kp::HeadMatmulParams::LAYOUT,
            ShaderKey::RmsNormQ => kp::RmsNormQParams::LAYOUT,
            ShaderKey::GluQ => kp::GluQParams::LAYOUT,
            ShaderKey::RopeKv => kp::RopeKvParams::LAYOUT,
        }
    }

    pub fn signature(&self) -> Signature {
        let s = |n_read, n_rw| Signature { n_read, n_rw };
        match self {
            // x (or ids), the weight's bytes (wa); y (or out).
            ShaderKey::Matmul(_)
            | ShaderKey::MatmulSg(_)
            | ShaderKey::MatmulRows(..)
            | ShaderKey::MatmulTiled(..)
            | ShaderKey::GetRows(_) => s(2, 1),
            ShaderKey::RmsNorm => s(2, 1),
            ShaderKey::Rope
            | ShaderKey::KvStore
            | ShaderKey::KvStoreQ(_)
            | ShaderKey::Swiglu
            | ShaderKey::Add
            | ShaderKey::AddBias
            | ShaderKey::Argmax
            | ShaderKey::ActQuant
            | ShaderKey::Copy => s(1, 1),
            ShaderKey::Scale | ShaderKey::Hadamard => s(0, 1),
            ShaderKey::Attention(_) | ShaderKey::AttentionKvq(..) => s(3, 1),
            ShaderKey::HeadMatmul(_) => s(2, 1),
            ShaderKey::RmsNormQ => s(2, 2),
            ShaderKey::GluQ => s(1, 2),
            ShaderKey::RopeKv => s(2, 4),
            // and the residual; or a group's weights and outputs (MatGroup).
            ShaderKey::MatmulFused(_, _, f) => match f.group {
                MatGroup::One => s(2, 1 + f.add as u32),
                MatGroup::Qkv => s(4, 3),
                MatGroup::Glu(_) => s(3, 2),
            },
        }
    }
}

/// Every variant that can be built.
pub fn all_variants() -> Vec<ShaderKey> {
    let mut v = Vec::new();
    for ty in GPU_TYPES {
        let Ok(l) = Layout::for_type(ty) else { continue };
        v.push(ShaderKey::Matmul(l));
        v.push(ShaderKey::MatmulSg(l));
        v.extend(RowsTile::ALL.map(|t| ShaderKey::MatmulRows(l, t)));
        v.extend(TileType::ALL.map(|t| ShaderKey::MatmulTiled(l, t)));
        v.push(ShaderKey::GetRows(l));
        v.push(ShaderKey::HeadMatmul(l));
        let kernels = [FusedKernel::Reduce, FusedKernel::ReduceSg].into_iter().chain(RowsTile::ALL.map(FusedKernel::Rows));
        for k in kernels {
            for round in [None, Some(0), Some(2)] {
                for add in [false, true] {
                    if round.is_some() || add {
                        v.push(ShaderKey::MatmulFused(l, k, MatFuse { round, add, group: MatGroup::One }));
                    }
                }
                for group in [MatGroup::Qkv, MatGroup::Glu(GluOp::Swiglu), MatGroup::Glu(GluOp::Geglu)] {
                    v.push(ShaderKey::MatmulFused(l, k, MatFuse { round, add: false, group }));
                }
            }
        }
    }
    v.extend([
        ShaderKey::RmsNorm,
        ShaderKey::Rope,
        ShaderKey::KvStore,
        ShaderKey::Attention(AttnCache::Packed),
        ShaderKey::Attention(AttnCache::F16),
        ShaderKey::Swiglu,
        ShaderKey::Add,
        ShaderKey::Scale,
        ShaderKey::AddBias,
        ShaderKey::Argmax,
        ShaderKey::ActQuant,
        ShaderKey::Copy,
        ShaderKey::RmsNormQ,
        ShaderKey::GluQ,
        ShaderKey::RopeKv,
        ShaderKey::KvStoreQ(KvType::Q8_0),
        ShaderKey::KvStoreQ(KvType::Q4_0),
        ShaderKey::Hadamard,
    ]);
    for k in KvType::ALL {
        for t in KvType::ALL {
            if (k, t) != (KvType::F16, KvType::F16) {
                v.push(ShaderKey::AttentionKvq(k, t));
            }
        }
    }
    v
}

/// The shaders' id of a KV type (`QT`, `KT`, `VT`): 0 = f16, 1 = q8_0, 2 = q4_0.
fn kv_type_id(t: KvType) -> u32 {
    match t {
        KvType::F16 => 0,
        KvType::Q8_0 => 1,
        KvType::Q4_0 => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses and validates every variant with naga: WGSL errors fail CI without a GPU.
    #[test]
    fn every_shader_variant_validates_with_naga() {
        for key in all_variants() {
            let src = key.source();
            let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| panic!("{}: {}", key.label(), e.emit_to_string(&src)));
            // The baseline tier needs only what every WebGPU device has
            // (naga 27 names pack/unpack2x16float SHADER_FLOAT16_IN_FLOAT32;
            // wgpu grants it on every adapter); the subgroup tier adds only
            // SUBGROUP, the f16 tier only SHADER_FLOAT16.
            use naga::valid::Capabilities as C;
            let caps = C::SHADER_FLOAT16_IN_FLOAT32
                | match key {
                    ShaderKey::MatmulSg(_) | ShaderKey::MatmulFused(_, FusedKernel::ReduceSg, _) => C::SUBGROUP,
                    ShaderKey::MatmulTiled(_, TileType::F16) | ShaderKey::Attention(AttnCache::F16) => C::SHADER_FLOAT16,
                    _ => C::empty(),
                };
            let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
            v.subgroup_stages(naga::valid::ShaderStages::COMPUTE).subgroup_operations(naga::valid::SubgroupOperationSet::all());
            v.validate(&module).unwrap_or_else(|e| panic!("{}: {}", key.label(), e.emit_to_string(&src)));
            // The binding signature the host declares matches the shader's globals.
            let sig = key.signature();
            let n_bindings = module.global_variables.iter().filter(|(_, g)| g.binding.is_some()).count() as u32;
            assert_eq!(n_bindings, 1 + sig.n_read + sig.n_rw, "{}: binding count", key.label());
            check_params(key, &module);
        }
    }

    /// The variant's uniform global (binding 0) is a struct whose span,
    /// member names, offsets and scalar types are those of the Rust struct
    /// `key.params()` (so `Recorder::dispatch` writes what the shader reads).
    fn check_params(key: ShaderKey, module: &naga::Module) {
        use kp::ParamScalar;
        use naga::{AddressSpace, Scalar, TypeInner};
        let label = key.label();
        let rust = key.params();
        let uniforms: Vec<_> = module.global_variables.iter().filter(|(_, g)| g.space == AddressSpace::Uniform).collect();
        assert_eq!(uniforms.len(), 1, "{label}: one uniform block");
        let (_, g) = uniforms[0];
        let binding = g.binding.as_ref().expect("uniform has a binding");
        assert_eq!((binding.group, binding.binding), (0, 0), "{label}: params at group 0 binding 0");
        let ty = &module.types[g.ty];
        let TypeInner::Struct { members, span } = &ty.inner else { panic!("{label}: uniform is not a struct: {:?}", ty.inner) };
        let wgsl: Vec<(String, usize, Option<ParamScalar>)> = members
            .iter()
            .map(|m| {
                let scalar = match module.types[m.ty].inner {
                    TypeInner::Scalar(Scalar::U32) => Some(ParamScalar::U32),
                    TypeInner::Scalar(Scalar::I32) => Some(ParamScalar::I32),
                    TypeInner::Scalar(Scalar::F32) => Some(ParamScalar::F32),
                    _ => None,
                };
                (m.name.clone().unwrap_or_default(), m.offset as usize, scalar)
            })
            .collect();
        let ours: Vec<(String, usize, Option<ParamScalar>)> =
            rust.fields.iter().map(|f| (f.name.to_string(), f.offset, Some(f.scalar))).collect();
        assert_eq!(wgsl, ours, "{label}: WGSL `{}` members (name, offset, type) vs Rust {}", ty.name.as_deref().unwrap_or("?"), rust.name);
        assert_eq!(*span as usize, rust.size, "{label}: WGSL struct span vs size_of::<{}>()", rust.name);
        assert!(rust.size as u64 <= super::super::kernels::SLOT, "{label}: {} larger than a parameter slot", rust.name);
    }
}
