//! One function per kernel: its bindings, parameters and dispatch geometry.
//! Shapes are in elements; activations are row-major f32 `[n_tok, width]`.

use super::params::*;
use super::{GBuf, Recorder};
use crate::backend::wgpu::device::DeviceProfile;
use crate::backend::wgpu::shaders::{AttnCache, FusedKernel, GluOp, MatFuse, MatGroup, RowsTile, ShaderKey, TileType};
use crate::backend::wgpu::weights::{GpuDense, GpuMatrix};
use crate::kv_cache::KvType;
use crate::quant::GgmlType;
use crate::{Error, Result};

fn split(n: u32) -> [u32; 2] {
    // Flatten a large 1-D count over x and y (x ≤ 65535 everywhere).
    if n <= 65535 {
        [n, 1]
    } else {
        [65535, n.div_ceil(65535)]
    }
}

/// Which matrix kernel to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulKind {
    /// matmul.wgsl + matmul_wg.wgsl: 16 lanes per row and a workgroup-memory
    /// reduction, 8 tokens per tile (baseline tier).
    Reduce,
    /// matmul.wgsl + matmul_sg.wgsl: the same with subgroup shuffles (subgroup tier).
    ReduceSg,
    /// matmul_rows.wgsl: one invocation per tile of rows × tokens, no barriers.
    Rows(RowsTile),
    /// matmul_tiled.wgsl: a workgroup per tile of 64 rows × 32 (f32) or 64
    /// (f16) tokens, weights and x staged in workgroup memory (tiled tier).
    Tiled(TileType),
}

/// Smallest micro-batch the tiled kernel takes: below it most of a 32-token
/// tile would compute on padding, and matmul_rows' 4-token tiles fit better.
pub const TILED_MIN_TOKENS: usize = 8;

/// `y[t][y_off..] = W · x[t][x_off..]` over every row part of `w`, with the
/// kernel the device profile prefers: on GPUs with the tiled tier, `Tiled`
/// for batches of ≥ [`TILED_MIN_TOKENS`] (f16 tiles for F16 weights with the f16 tier);
/// `Rows` on software adapters (barriers are expensive there: lavapipe runs
/// a workgroup's invocations in turn between barriers) and for the other
/// batches of ≥ 4 tokens; for decode on GPUs, `ReduceSg` where subgroups
/// exist, else `Reduce`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    rec: &mut Recorder,
    w: &GpuMatrix,
    x: &GBuf,
    x_stride: usize,
    x_off: usize,
    n_tok: usize,
    y: &GBuf,
    y_stride: usize,
) -> Result<()> {
    let kind = matmul_kind(&rec.ctx.profile, w, x_stride, x_off, n_tok);
    matmul_with(rec, kind, w, x, x_stride, x_off, n_tok, y, y_stride)
}

/// The kernel [`matmul`] runs for these shapes on a device with `profile`.
pub fn matmul_kind(profile: &DeviceProfile, w: &GpuMatrix, x_stride: usize, x_off: usize, n_tok: usize) -> MatmulKind {
    let aligned = x_stride.is_multiple_of(4) && x_off.is_multiple_of(4);
    let software = profile.software;
    let tiers = profile.tiers;
    if tiers.tiled && !software && n_tok >= TILED_MIN_TOKENS {
        // f16 tiles only where they lose nothing: F16 weights are f16 values,
        // and their x was rounded to f16 (act_quant, llama.cpp's vec_dot_type).
        // For other weights they would round dequantized weights and x that
        // llama.cpp keeps exact (f16 products alone moved SmolLM2's last
        // logits past its criterion, see docs/GPU.md).
        let f16_exact = tiers.f16 && w.layout.ty() == GgmlType::F16;
        MatmulKind::Tiled(if f16_exact { TileType::F16 } else { TileType::F32 })
    } else if aligned && software {
        MatmulKind::Rows(if n_tok == 1 { RowsTile::SOFTWARE_DECODE } else { RowsTile::SOFTWARE })
    } else if aligned && n_tok >= 4 {
        MatmulKind::Rows(RowsTile::GPU)
    } else if tiers.subgroup {
        MatmulKind::ReduceSg
    } else {
        MatmulKind::Reduce
    }
}

#[allow(clippy::too_many_arguments)]
pub fn matmul_with(
    rec: &mut Recorder,
    kind: MatmulKind,
    w: &GpuMatrix,
    x: &GBuf,
    x_stride: usize,
    x_off: usize,
    n_tok: usize,
    y: &GBuf,
    y_stride: usize,
) -> Result<()> {
    matmul_dispatch(rec, kind, MatFuse::NONE, None, w, x, x_stride, x_off, n_tok, y, y_stride)
}

/// [`matmul_with`] for the product kernels, with the fused tier's prologue
/// and epilogue `fuse` (`res` = the residual and its scale when `fuse.add`).
#[allow(clippy::too_many_arguments)]
fn matmul_dispatch(
    rec: &mut Recorder,
    kind: MatmulKind,
    fuse: MatFuse,
    res: Option<(&GBuf, f32)>,
    w: &GpuMatrix,
    x: &GBuf,
    x_stride: usize,
    x_off: usize,
    n_tok: usize,
    y: &GBuf,
    y_stride: usize,
) -> Result<()> {
    let fused = match (fuse == MatFuse::NONE, fused_kernel(kind)) {
        (true, _) => None,
        (false, Some(k)) => Some(ShaderKey::MatmulFused(w.layout, k, fuse)),
        (false, None) => return Err(Error::Backend(format!("matmul: no fused variant of {kind:?}"))),
    };
    if fuse.add != res.is_some() || fuse.group != MatGroup::One {
        return Err(Error::Backend("matmul: a residual add needs its residual buffer; a group needs matmul_group".into()));
    }
    // One row part: rows r0..r0 + n_rows of W, written at y[t·y_stride + r0..].
    let params = |n_rows: usize, r0: usize| MatmulParams {
        n_in: w.n_in as u32,
        n_rows: n_rows as u32,
        n_tok: n_tok as u32,
        x_stride: x_stride as u32,
        x_off: x_off as u32,
        y_stride: y_stride as u32,
        y_off: r0 as u32,
        s: res.map_or(0.0, |r| r.1),
        ..Default::default()
    };
    let mut bufs: Vec<&GBuf> = vec![x, &w.parts[0].wa, y];
    bufs.extend(res.map(|r| r.0));
    if let MatmulKind::Tiled(TileType::F16) = kind {
        if !rec.ctx.profile.f16 {
            return Err(Error::Backend("matmul: f16 tiles on an adapter without SHADER_F16".into()));
        }
    }
    // Tile kernels: a workgroup per (rows, tokens) tile, row groups flattened over x and z.
    let tile = match kind {
        MatmulKind::Tiled(t) => Some((ShaderKey::MatmulTiled(w.layout, t), TileType::ROWS, t.tokens())),
        MatmulKind::Rows(t) => Some((ShaderKey::MatmulRows(w.layout, t), t.rows_per_group(), t.tokens)),
        _ => None,
    };
    if let Some((key, rows, tokens)) = tile {
        let key = fused.unwrap_or(key);
        for part in &w.parts {
            let [gx, gz] = split((part.n_rows as u32).div_ceil(rows));
            bufs[1] = &part.wa;
            rec.dispatch(key, &bufs, &params(part.n_rows, part.r0), [gx, (n_tok as u32).div_ceil(tokens), gz])?;
        }
        return Ok(());
    }
    let key = if kind == MatmulKind::ReduceSg { ShaderKey::MatmulSg(w.layout) } else { ShaderKey::Matmul(w.layout) };
    let key = fused.unwrap_or(key);
    for part in &w.parts {
        let groups = (part.n_rows as u32).div_ceil(4);
        let (gx, gy) = if groups <= 8192 { (groups, 1) } else { (8192, groups.div_ceil(8192)) };
        bufs[1] = &part.wa;
        rec.dispatch(key, &bufs, &params(part.n_rows, part.r0), [gx, gy, (n_tok as u32).div_ceil(8)])?;
    }
    Ok(())
}

/// The fused variant of a product kernel (the tiled kernel has none: its x
/// tile is staged across invocations, so a unit's rounding would need another barrier).
pub fn fused_kernel(kind: MatmulKind) -> Option<FusedKernel> {
    match kind {
        MatmulKind::Reduce => Some(FusedKernel::Reduce),
        MatmulKind::ReduceSg => Some(FusedKernel::ReduceSg),
        MatmulKind::Rows(t) => Some(FusedKernel::Rows(t)),
        MatmulKind::Tiled(_) => None,
    }
}

/// `out[t] = W[ids[t]]` (embedding lookup, dequantized).
/// `out` rows are `out_w` wide (≤ `w.n_in`): a weight uploaded with its rows
/// padded to a multiple of 32 ([`GpuMatrix::upload_padded`]) gives back only
/// its `out_w` real values per row.
pub fn get_rows(rec: &mut Recorder, w: &GpuMatrix, ids: &GBuf, n_tok: usize, out: &GBuf, out_w: usize) -> Result<()> {
    let upr = (w.n_in / 32) as u32;
    if out_w > w.n_in {
        return Err(Error::Backend(format!("get_rows: rows of {} values into rows of {out_w}", w.n_in)));
    }
    for part in &w.parts {
        let p =
            GetRowsParams { n_in: w.n_in as u32, r0: part.r0 as u32, n_rows: part.n_rows as u32, n_tok: n_tok as u32, out_w: out_w as u32 };
        rec.dispatch(ShaderKey::GetRows(w.layout), &[ids, &part.wa, out], &p, [upr.div_ceil(64), n_tok as u32, 1])?;
    }
    Ok(())
}

/// RMSNorm of `n_rows` contiguous rows of width `n`.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm(
    rec: &mut Recorder,
    x: &GBuf,
    x_off: usize,
    w: &GBuf,
    out: &GBuf,
    out_off: usize,
    n: usize,
    n_rows: usize,
    eps: f32,
) -> Result<()> {
    rms_norm_strided(rec, x, x_off, n, w, out, out_off, n, n, n_rows, eps)
}

/// RMSNorm of `n_rows` rows of width `n`; row `r` is read at `x_off + r·x_stride`
/// and written at `out_off + r·out_stride` (per-head q/k norms, MLA's latent).
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_strided(
    rec: &mut Recorder,
    x: &GBuf,
    x_off: usize,
    x_stride: usize,
    w: &GBuf,
    out: &GBuf,
    out_off: usize,
    out_stride: usize,
    n: usize,
    n_rows: usize,
    eps: f32,
) -> Result<()> {
    let p = RmsNormParams {
        n: n as u32,
        eps,
        x_off: x_off as u32,
        out_off: out_off as u32,
        x_stride: x_stride as u32,
        out_stride: out_stride as u32,
        n_rows: n_rows as u32,
        ..Default::default()
    };
    let [gx, gy] = split(n_rows as u32);
    rec.dispatch(ShaderKey::RmsNorm, &[x, w, out], &p, [gx, gy, 1])
}

pub struct RopeArgs {
    pub n_tok: usize,
    pub n_head: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    /// 0 = NORM, 1 = NEOX.
    pub mode: u32,
    pub pos0: usize,
    pub row_stride: usize,
    /// Where head 0 starts within a row (MLA: the rope part follows the nope part).
    pub off: usize,
}

pub fn rope(rec: &mut Recorder, table: &GBuf, x: &GBuf, a: &RopeArgs) -> Result<()> {
    let p = RopeParams {
        n_tok: a.n_tok as u32,
        n_head: a.n_head as u32,
        head_dim: a.head_dim as u32,
        n_rot: a.n_rot as u32,
        mode: a.mode,
        pos0: a.pos0 as u32,
        row_stride: a.row_stride as u32,
        off: a.off as u32,
    };
    let threads = (a.n_head * a.n_rot / 2) as u32;
    rec.dispatch(ShaderKey::Rope, &[table, x], &p, [threads.div_ceil(64), a.n_tok as u32, 1])
}

/// Writes `n_tok` rows of `width` f32 into the f16 cache at `pos0`.
pub fn kv_store(rec: &mut Recorder, src: &GBuf, cache: &GBuf, n_tok: usize, width: usize, pos0: usize) -> Result<()> {
    let p = KvStoreParams { n_tok: n_tok as u32, width: width as u32, pos0: pos0 as u32, ..Default::default() };
    rec.dispatch(ShaderKey::KvStore, &[src, cache], &p, [(width as u32 / 2).div_ceil(64), n_tok as u32, 1])
}

/// Bytes of a device KV cache of `n_ctx` rows of `width` values stored as
/// `ty`: the rows ([`KvType::row_bytes`]), rounded up for q8_0/q4_0 to a
/// whole number of pairs of blocks (68 or 36 bytes, whole u32 words), the
/// unit [`kv_store_q`] writes. `None` when a row is not whole blocks.
pub fn kv_cache_bytes(ty: KvType, width: usize, n_ctx: usize) -> Option<u64> {
    let rows = ty.row_bytes(width)?.checked_mul(n_ctx)?;
    Some(match ty {
        KvType::F16 => rows as u64,
        _ => (rows / ty.block_bytes()).next_multiple_of(2) as u64 * ty.block_bytes() as u64,
    })
}

/// Writes `n_tok` rows of `width` f32 into a cache stored as `ty` at `pos0`:
/// [`kv_store`] for f16, else quantized to q8_0/q4_0 blocks with ggml's
/// reference quantizers, byte for byte as `KvCache::write` stores them (the
/// cache sized by [`kv_cache_bytes`]).
pub fn kv_store_q(rec: &mut Recorder, src: &GBuf, cache: &GBuf, ty: KvType, n_tok: usize, width: usize, pos0: usize) -> Result<()> {
    if ty == KvType::F16 {
        return kv_store(rec, src, cache, n_tok, width, pos0);
    }
    if !width.is_multiple_of(32) {
        return Err(Error::Backend(format!("kv store: a row of {width} values is not whole {ty} blocks")));
    }
    if n_tok == 0 || width == 0 {
        return Ok(());
    }
    let bpr = width / 32;
    let (g0, g1) = (pos0 * bpr, (pos0 + n_tok) * bpr);
    let pairs = (g1 - 1) / 2 - g0 / 2 + 1;
    let p = KvStoreParams { n_tok: n_tok as u32, width: width as u32, pos0: pos0 as u32, ..Default::default() };
    let [x, y] = split((pairs as u32).div_ceil(64));
    rec.dispatch(ShaderKey::KvStoreQ(ty), &[src, cache], &p, [x, y, 1])
}

/// Attention over the f16 cache for `n_tok` queries at `pos0..`.
#[derive(Debug, Clone, Copy)]
pub struct AttnArgs {
    pub n_tok: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    pub pos0: usize,
    pub kq_scale: f32,
    pub window: Option<usize>,
    pub softcap: Option<f32>,
    /// f16 values per cache row of K and of V.
    pub k_row: usize,
    pub v_row: usize,
}

impl AttnArgs {
    /// The uniform block of attention.wgsl and attention_kvq.wgsl.
    fn params(&self) -> AttentionParams {
        AttentionParams {
            n_head: self.n_head as u32,
            n_head_kv: self.n_head_kv as u32,
            head_dim_k: self.head_dim_k as u32,
            head_dim_v: self.head_dim_v as u32,
            pos0: self.pos0 as u32,
            kq_scale: self.kq_scale,
            window: self.window.unwrap_or(0) as u32,
            softcap: self.softcap.unwrap_or(0.0),
            q_stride: (self.n_head * self.head_dim_k) as u32,
            out_stride: (self.n_head * self.head_dim_v) as u32,
            k_row: self.k_row as u32,
            v_row: self.v_row as u32,
        }
    }

    /// Standard attention: K and V rows hold `n_head_kv` heads each.
    pub fn standard(
        n_tok: usize,
        n_head: usize,
        n_head_kv: usize,
        head_dim_k: usize,
        head_dim_v: usize,
        pos0: usize,
        kq_scale: f32,
    ) -> AttnArgs {
        AttnArgs {
            n_tok,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            pos0,
            kq_scale,
            window: None,
            softcap: None,
            k_row: n_head_kv * head_dim_k,
            v_row: n_head_kv * head_dim_v,
        }
    }
}

/// Largest K head (f32 values in workgroup memory) and V head (8 per thread × 64) attention.wgsl takes.
pub const ATTN_MAX_HDK: usize = 576;
pub const ATTN_MAX_HDV: usize = 512;

/// `out [n_tok, n_head·head_dim_v] = softmax(kq_scale · q·Kᵀ) · V`, q `[n_tok, n_head·head_dim_k]`,
/// reading the cache as the f16 tier says ([`AttnCache::F16`] when `tiers.f16`).
pub fn attention(rec: &mut Recorder, q: &GBuf, kc: &GBuf, vc: &GBuf, out: &GBuf, a: &AttnArgs) -> Result<()> {
    let cache = if rec.ctx.profile.tiers.f16 { AttnCache::F16 } else { AttnCache::Packed };
    attention_with(rec, cache, q, kc, vc, out, a)
}

/// [`attention`] with the cache reads forced (tests run both tiers).
pub fn attention_with(rec: &mut Recorder, cache: AttnCache, q: &GBuf, kc: &GBuf, vc: &GBuf, out: &GBuf, a: &AttnArgs) -> Result<()> {
    if cache == AttnCache::F16 && !rec.ctx.profile.f16 {
        return Err(Error::Backend("attention: f16 cache reads on an adapter without SHADER_F16".into()));
    }
    let even = [a.head_dim_k, a.head_dim_v, a.k_row, a.v_row].iter().all(|v| v % 2 == 0);
    if !even || a.head_dim_k > ATTN_MAX_HDK || a.head_dim_v > ATTN_MAX_HDV || !a.n_head.is_multiple_of(a.n_head_kv) {
        return Err(crate::Error::Backend(format!(
            "attention with K head {} / V head {} / {} heads over {} KV heads is not supported on wgpu",
            a.head_dim_k, a.head_dim_v, a.n_head, a.n_head_kv
        )));
    }
    rec.dispatch(ShaderKey::Attention(cache), &[q, kc, vc, out], &a.params(), [a.n_head as u32, a.n_tok as u32, 1])
}

/// [`attention`] over a cache whose K and V rows are stored as `types`:
/// the f16 cache as [`attention`] (bit for bit), a quantized side through
/// attention_kvq.wgsl (llama.cpp's CPU flash-attention arithmetic, as
/// `backend::cpu::attention_kvq`). `k_row`/`v_row` count values.
pub fn attention_typed(
    rec: &mut Recorder,
    types: (KvType, KvType),
    q: &GBuf,
    kc: &GBuf,
    vc: &GBuf,
    out: &GBuf,
    a: &AttnArgs,
) -> Result<()> {
    if types == (KvType::F16, KvType::F16) {
        return attention(rec, q, kc, vc, out, a);
    }
    let whole = |ty: KvType, hd: usize, row: usize| hd.is_multiple_of(ty.block_len().max(2)) && row.is_multiple_of(ty.block_len().max(2));
    if !whole(types.0, a.head_dim_k, a.k_row)
        || !whole(types.1, a.head_dim_v, a.v_row)
        || a.head_dim_k > ATTN_MAX_HDK
        || a.head_dim_v > ATTN_MAX_HDV
        || a.n_head_kv == 0
        || !a.n_head.is_multiple_of(a.n_head_kv)
    {
        return Err(crate::Error::Backend(format!(
            "attention over a {}/{} cache with K head {} / V head {} / {} heads over {} KV heads is not supported on wgpu",
            types.0, types.1, a.head_dim_k, a.head_dim_v, a.n_head, a.n_head_kv
        )));
    }
    rec.dispatch(ShaderKey::AttentionKvq(types.0, types.1), &[q, kc, vc, out], &a.params(), [a.n_head as u32, a.n_tok as u32, 1])
}

/// `gate = silu(gate) · up` (`gelu` = false) or `gelu(gate) · up`.
pub fn glu(rec: &mut Recorder, up: &GBuf, gate: &GBuf, n: usize, gelu: bool) -> Result<()> {
    let [x, y] = split((n as u32).div_ceil(64));
    rec.dispatch(ShaderKey::Swiglu, &[up, gate], &SwigluParams { n: n as u32, op: gelu as u32, ..Default::default() }, [x, y, 1])
}

/// `x += y` over `n` elements.
pub fn add(rec: &mut Recorder, y: &GBuf, x: &GBuf, n: usize) -> Result<()> {
    add_scaled(rec, y, x, n, 1.0)
}

/// `x += s · y` over `n` elements (a residual branch with MiniCPM's scale).
pub fn add_scaled(rec: &mut Recorder, y: &GBuf, x: &GBuf, n: usize, s: f32) -> Result<()> {
    let [gx, gy] = split((n as u32).div_ceil(64));
    rec.dispatch(ShaderKey::Add, &[y, x], &AddParams { n: n as u32, s, ..Default::default() }, [gx, gy, 1])
}

/// `x[off..off + n] *= s`.
pub fn scale(rec: &mut Recorder, x: &GBuf, off: usize, n: usize, s: f32) -> Result<()> {
    let [gx, gy] = split((n as u32).div_ceil(64));
    rec.dispatch(ShaderKey::Scale, &[x], &ScaleParams { n: n as u32, off: off as u32, op: 0, s }, [gx, gy, 1])
}

/// `x[..n]`, a whole number of `piece`-value pieces, each rotated in place by
/// the `piece × piece` Walsh–Hadamard matrix (`piece` a power of two ≤ 256):
/// the rotation of a quantized KV cache (`kv_rotation.rs`), bit for bit the CPU's.
pub fn hadamard(rec: &mut Recorder, x: &GBuf, n: usize, piece: usize) -> Result<()> {
    if !piece.is_power_of_two() || piece > 256 || !n.is_multiple_of(piece) {
        return Err(Error::Backend(format!("hadamard: {n} values in pieces of {piece} are not supported on wgpu")));
    }
    let n_pieces = (n / piece) as u32;
    let [gx, gy] = split(n_pieces);
    let s = 1.0 / (piece as f32).sqrt();
    rec.dispatch(ShaderKey::Hadamard, &[x], &HadamardParams { n: piece as u32, n_pieces, off: 0, s }, [gx, gy, 1])
}

/// `x[off..off + n] = cap · tanh(x / cap)` (final logit soft-capping).
pub fn softcap(rec: &mut Recorder, x: &GBuf, off: usize, n: usize, cap: f32) -> Result<()> {
    let [gx, gy] = split((n as u32).div_ceil(64));
    rec.dispatch(ShaderKey::Scale, &[x], &ScaleParams { n: n as u32, off: off as u32, op: 1, s: cap }, [gx, gy, 1])
}

/// `x[t·stride + off + i] += b[i]` for `i < width`, `t < n_tok` (q/k/v biases).
pub fn add_bias(rec: &mut Recorder, b: &GBuf, x: &GBuf, n_tok: usize, width: usize, stride: usize, off: usize) -> Result<()> {
    let p = AddBiasParams { n_tok: n_tok as u32, width: width as u32, stride: stride as u32, off: off as u32 };
    rec.dispatch(ShaderKey::AddBias, &[b, x], &p, [(width as u32).div_ceil(64), n_tok as u32, 1])
}

/// `out[0] = argmax(v[off..off + n])`.
pub fn argmax(rec: &mut Recorder, v: &GBuf, off: usize, n: usize, out: &GBuf) -> Result<()> {
    rec.dispatch(ShaderKey::Argmax, &[v, out], &ArgmaxParams { n: n as u32, off: off as u32, ..Default::default() }, [1, 1, 1])
}

/// The activation rounding llama.cpp's CPU product applies for weights of
/// type `ty` (its `vec_dot_type`): Some(mode) for act_quant.wgsl, None = none.
pub fn act_mode(ty: crate::quant::GgmlType) -> Option<u32> {
    use crate::quant::GgmlType::*;
    match crate::quant::vec_dot_type(ty) {
        Q8_0 | Q8_1 => Some(0),
        Q8_K => Some(1),
        F16 => Some(2),
        _ => None,
    }
}

/// `out = dequant(quant(x))` over `n` values (rows of a multiple of 256 for mode 1, of 32 otherwise).
pub fn act_quant(rec: &mut Recorder, x: &GBuf, out: &GBuf, n: usize, mode: u32) -> Result<()> {
    let bs = if mode == 1 { 256 } else { 32 };
    let [gx, gy] = split((n.div_ceil(bs) as u32).div_ceil(64));
    rec.dispatch(ShaderKey::ActQuant, &[x, out], &ActQuantParams { n: n as u32, mode, ..Default::default() }, [gx, gy, 1])
}

/// `out[dst_off + r·dst_stride + i] = x[src_off + r·src_stride + i]` for
/// `i < width`, `r < n_rows` (`x` and `out` distinct buffers).
#[allow(clippy::too_many_arguments)]
pub fn copy_rows(
    rec: &mut Recorder,
    x: &GBuf,
    src_off: usize,
    src_stride: usize,
    out: &GBuf,
    dst_off: usize,
    dst_stride: usize,
    width: usize,
    n_rows: usize,
) -> Result<()> {
    let p = CopyParams {
        width: width as u32,
        n_rows: n_rows as u32,
        src_off: src_off as u32,
        src_stride: src_stride as u32,
        dst_off: dst_off as u32,
        dst_stride: dst_stride as u32,
        ..Default::default()
    };
    let [gy, gz] = split(n_rows as u32);
    rec.dispatch(ShaderKey::Copy, &[x, out], &p, [(width as u32).div_ceil(64), gy, gz])
}

/// Shape of a per-head product (head_matmul.wgsl): for token `t`, head `h`,
/// output `o`: `y[t·y_stride + h·y_head + o] = Σ_i w[w_off + h·w_head + o·w_o + i·w_i] · x[t·x_stride + h·x_head + i]`.
#[derive(Debug, Clone, Copy)]
pub struct HeadMatmulArgs {
    pub n_tok: usize,
    pub n_head: usize,
    pub n_out: usize,
    pub n_in: usize,
    pub x_stride: usize,
    pub x_head: usize,
    pub y_stride: usize,
    pub y_head: usize,
    pub w_off: usize,
    pub w_head: usize,
    pub w_o: usize,
    pub w_i: usize,
}

/// Per-head products with a weight `w` in its file type (see [`HeadMatmulArgs`]).
pub fn head_matmul(rec: &mut Recorder, x: &GBuf, w: &GpuDense, y: &GBuf, a: &HeadMatmulArgs) -> Result<()> {
    let p = HeadMatmulParams {
        n_tok: a.n_tok as u32,
        n_head: a.n_head as u32,
        n_out: a.n_out as u32,
        n_in: a.n_in as u32,
        x_stride: a.x_stride as u32,
        x_head: a.x_head as u32,
        y_stride: a.y_stride as u32,
        y_head: a.y_head as u32,
        w_off: a.w_off as u32,
        w_head: a.w_head as u32,
        w_o: a.w_o as u32,
        w_i: a.w_i as u32,
    };
    rec.dispatch(ShaderKey::HeadMatmul(w.layout), &[x, &w.wa, y], &p, [(a.n_out as u32).div_ceil(64), a.n_head as u32, a.n_tok as u32])
}

// ------------------------------------------------------------- fused tier
// Several graph ops in one dispatch (`DeviceProfile.tiers.fused`); each is
// bit-exact with the unfused sequence it replaces (runtime/tests/wgpu_kernels.rs).

/// Elements per rounding block of act_quant `mode`.
pub fn act_block(mode: u32) -> usize {
    if mode == 1 {
        256
    } else {
        32
    }
}

/// [`rms_norm_strided`] into `out`, and the same rows rounded like
/// [`act_quant`] `mode` into `xq` as contiguous rows of `n`: the norm and the
/// rounding of the product that reads it, in one dispatch.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_q(
    rec: &mut Recorder,
    x: &GBuf,
    x_off: usize,
    x_stride: usize,
    w: &GBuf,
    out: &GBuf,
    out_off: usize,
    out_stride: usize,
    n: usize,
    n_rows: usize,
    eps: f32,
    xq: &GBuf,
    mode: u32,
) -> Result<()> {
    if !n.is_multiple_of(act_block(mode)) || mode > 2 {
        return Err(Error::Backend(format!("rms_norm_q: rows of {n} in rounding mode {mode}")));
    }
    let p = RmsNormQParams {
        n: n as u32,
        eps,
        x_off: x_off as u32,
        out_off: out_off as u32,
        x_stride: x_stride as u32,
        out_stride: out_stride as u32,
        n_rows: n_rows as u32,
        mode,
    };
    let [gx, gy] = split(n_rows as u32);
    rec.dispatch(ShaderKey::RmsNormQ, &[x, w, out, xq], &p, [gx, gy, 1])
}

/// [`glu`] over `n` values, and the result rounded like [`act_quant`] `mode` into `xq`.
pub fn glu_q(rec: &mut Recorder, up: &GBuf, gate: &GBuf, n: usize, gelu: bool, xq: &GBuf, mode: u32) -> Result<()> {
    let bs = act_block(mode);
    if !n.is_multiple_of(bs) || mode > 2 {
        return Err(Error::Backend(format!("glu_q: {n} values in rounding mode {mode}")));
    }
    let [x, y] = split(((n / bs) as u32).div_ceil(64));
    let p = GluQParams { n: n as u32, op: gelu as u32, mode, ..Default::default() };
    rec.dispatch(ShaderKey::GluQ, &[up, gate, xq], &p, [x, y, 1])
}

/// Shape of [`rope_kv`]: q `[n_tok, q_stride]` with `n_head` heads, k
/// `[n_tok, k_stride]` and v `[n_tok, v_stride]` with `n_head_kv` heads each
/// (heads start at 0; the cache rows are `k_stride` and `v_stride` wide).
#[derive(Debug, Clone, Copy)]
pub struct RopeKvArgs {
    pub n_tok: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub head_dim_v: usize,
    pub n_rot: usize,
    /// 0 = NORM, 1 = NEOX.
    pub mode: u32,
    pub pos0: usize,
    pub q_stride: usize,
    pub k_stride: usize,
    pub v_stride: usize,
    /// Multiplies q after RoPE (1.0 = none).
    pub q_scale: f32,
}

/// [`rope`] of q and of k, `q *= q_scale`, and [`kv_store`] of k and v at
/// `pos0`, in one dispatch.
#[allow(clippy::too_many_arguments)]
pub fn rope_kv(rec: &mut Recorder, table: &GBuf, q: &GBuf, k: &GBuf, v: &GBuf, kc: &GBuf, vc: &GBuf, a: &RopeKvArgs) -> Result<()> {
    let fits = a.n_rot.is_multiple_of(2)
        && a.n_rot <= a.head_dim
        && a.head_dim.is_multiple_of(2)
        && a.head_dim_v.is_multiple_of(2)
        && a.n_head * a.head_dim <= a.q_stride
        && a.n_head_kv * a.head_dim == a.k_stride
        && a.n_head_kv * a.head_dim_v == a.v_stride;
    if !fits {
        return Err(Error::Backend(format!("rope_kv: unsupported shape {a:?}")));
    }
    let p = RopeKvParams {
        n_tok: a.n_tok as u32,
        n_head: a.n_head as u32,
        n_head_kv: a.n_head_kv as u32,
        head_dim: a.head_dim as u32,
        n_rot: a.n_rot as u32,
        mode: a.mode,
        pos0: a.pos0 as u32,
        q_stride: a.q_stride as u32,
        k_stride: a.k_stride as u32,
        v_stride: a.v_stride as u32,
        head_dim_v: a.head_dim_v as u32,
        q_scale: a.q_scale,
    };
    rec.dispatch(ShaderKey::RopeKv, &[table, v, q, k, kc, vc], &p, [(a.n_head + a.n_head_kv) as u32, a.n_tok as u32, 1])
}

/// `y = W · x` as [`matmul`] runs it on this device, with the fused tier's
/// prologue and epilogue: x's 32-value units rounded like [`act_quant`]
/// `fuse.round` (0 or 2) as they are read, and `res += s · y` as y is stored
/// (`res` = (the residual, s) when `fuse.add`), in one dispatch per row
/// part. `y_stride` must be `w.n_out` when adding (res has y's layout).
/// Fails where the device runs the tiled kernel (check [`fused_matmul_fits`]).
#[allow(clippy::too_many_arguments)]
pub fn matmul_fused(
    rec: &mut Recorder,
    fuse: MatFuse,
    w: &GpuMatrix,
    x: &GBuf,
    x_stride: usize,
    n_tok: usize,
    y: &GBuf,
    y_stride: usize,
    res: Option<(&GBuf, f32)>,
) -> Result<()> {
    let kind = matmul_kind(&rec.ctx.profile, w, x_stride, 0, n_tok);
    matmul_fused_with(rec, kind, fuse, w, x, x_stride, n_tok, y, y_stride, res)
}

/// [`matmul_fused`] with the kernel forced (tests run each).
#[allow(clippy::too_many_arguments)]
pub fn matmul_fused_with(
    rec: &mut Recorder,
    kind: MatmulKind,
    fuse: MatFuse,
    w: &GpuMatrix,
    x: &GBuf,
    x_stride: usize,
    n_tok: usize,
    y: &GBuf,
    y_stride: usize,
    res: Option<(&GBuf, f32)>,
) -> Result<()> {
    if fuse.round.is_some_and(|m| m > 2 || act_block(m) != 32) || (fuse.add && y_stride != w.n_out) {
        return Err(Error::Backend(format!("matmul_fused: {fuse:?} with rows of {y_stride} for {} outputs", w.n_out)));
    }
    matmul_dispatch(rec, kind, fuse, res, w, x, x_stride, 0, n_tok, y, y_stride)
}

/// Whether [`matmul_fused`] has a kernel for this product on this device.
pub fn fused_matmul_fits(profile: &DeviceProfile, w: &GpuMatrix, x_stride: usize, n_tok: usize) -> bool {
    fused_kernel(matmul_kind(profile, w, x_stride, 0, n_tok)).is_some()
}

/// Several products of one input in one dispatch ([`MatGroup`]), as
/// [`matmul`] would run each on this device, x's units rounded like
/// [`act_quant`] `round` (0 or 2) as they are read, or not:
/// - `Qkv`: `ys[i] = ws[i] · x` for the three weights (q, k, v), each output
///   with rows of its weight's `n_out`;
/// - `Glu(op)`: `ys[0] = ws[1] · x` (up) and `ys[1] = op(ws[0] · x) · ys[0]`
///   (gate), swiglu.wgsl's arithmetic.
///
/// Each weight must be one row part of the same layout and input width (x
/// rows of `n_in`); fails where the device runs the tiled kernel (check
/// [`matmul_group_fits`]).
pub fn matmul_group(
    rec: &mut Recorder,
    group: MatGroup,
    round: Option<u32>,
    ws: &[&GpuMatrix],
    x: &GBuf,
    n_tok: usize,
    ys: &[&GBuf],
) -> Result<()> {
    let Some(w0) = ws.first() else { return Err(Error::Backend("matmul_group: no weights".into())) };
    let kind = matmul_kind(&rec.ctx.profile, w0, w0.n_in, 0, n_tok);
    matmul_group_with(rec, kind, group, round, ws, x, n_tok, ys)
}

/// [`matmul_group`] with the kernel forced (tests run each).
#[allow(clippy::too_many_arguments)]
pub fn matmul_group_with(
    rec: &mut Recorder,
    kind: MatmulKind,
    group: MatGroup,
    round: Option<u32>,
    ws: &[&GpuMatrix],
    x: &GBuf,
    n_tok: usize,
    ys: &[&GBuf],
) -> Result<()> {
    let n = match group {
        MatGroup::One => 0,
        MatGroup::Qkv => 3,
        MatGroup::Glu(_) => 2,
    };
    let ok = n > 0
        && ws.len() == n
        && ys.len() == n
        && group_fits(ws)
        && round.is_none_or(|m| m <= 2 && act_block(m) == 32)
        && (!matches!(group, MatGroup::Glu(_)) || ws[0].n_out == ws[1].n_out);
    let Some(k) = fused_kernel(kind).filter(|_| ok) else {
        return Err(Error::Backend(format!("matmul_group: {group:?} of {} weights, {kind:?}, rounding {round:?}", ws.len())));
    };
    let w0 = ws[0];
    let rows: usize = ws.iter().map(|w| w.n_out).sum();
    // Glu on the reduction kernels: 2·n_ff interleaved rows; on the row kernel,
    // n_ff rows each summed with both weights.
    let n_rows = match (group, k) {
        (MatGroup::Glu(_), FusedKernel::Rows(_)) => w0.n_out,
        _ => rows,
    };
    let p = MatmulParams {
        n_in: w0.n_in as u32,
        n_rows: n_rows as u32,
        n_tok: n_tok as u32,
        x_stride: w0.n_in as u32,
        x_off: 0,
        y_stride: w0.n_out as u32,
        y_off: 0,
        s: 0.0,
        n_a: if group == MatGroup::Qkv { w0.n_out as u32 } else { 0 },
        n_b: if group == MatGroup::Qkv { ws[1].n_out as u32 } else { 0 },
        ..Default::default()
    };
    let mut bufs: Vec<&GBuf> = vec![x];
    bufs.extend(ws.iter().map(|w| &w.parts[0].wa));
    bufs.extend(ys.iter().copied());
    let key = ShaderKey::MatmulFused(w0.layout, k, MatFuse { round, add: false, group });
    match k {
        FusedKernel::Rows(t) => {
            let [gx, gz] = split((n_rows as u32).div_ceil(t.rows_per_group()));
            rec.dispatch(key, &bufs, &p, [gx, (n_tok as u32).div_ceil(t.tokens), gz])
        }
        FusedKernel::Reduce | FusedKernel::ReduceSg => {
            let groups = (n_rows as u32).div_ceil(4);
            let (gx, gy) = if groups <= 8192 { (groups, 1) } else { (8192, groups.div_ceil(8192)) };
            rec.dispatch(key, &bufs, &p, [gx, gy, (n_tok as u32).div_ceil(8)])
        }
    }
}

/// Whether the weights can be one [`matmul_group`]: each one row part, one
/// layout, one input width (a multiple of 4: the row kernel reads x as vec4).
fn group_fits(ws: &[&GpuMatrix]) -> bool {
    let Some(w0) = ws.first() else { return false };
    ws.iter().all(|w| w.parts.len() == 1 && w.layout == w0.layout && w.n_in == w0.n_in && w.n_out > 0) && w0.n_in.is_multiple_of(4)
}

/// Whether [`matmul_group`] has a kernel for these weights on this device
/// (one row part each, one layout and input width, not the tiled kernel).
pub fn matmul_group_fits(profile: &DeviceProfile, ws: &[&GpuMatrix], n_tok: usize) -> bool {
    // x, the weights and one output per weight (WebGPU guarantees 8).
    let bindings = 1 + 2 * ws.len() as u32;
    group_fits(ws)
        && bindings <= profile.max_storage_buffers_per_shader_stage
        && fused_kernel(matmul_kind(profile, ws[0], ws[0].n_in, 0, n_tok)).is_some()
}

/// The fused GLU op of an activation (`gelu`: GELU, else SiLU).
pub fn glu_op(gelu: bool) -> GluOp {
    if gelu {
        GluOp::Geglu
    } else {
        GluOp::Swiglu
    }
}
