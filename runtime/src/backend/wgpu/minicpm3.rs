//! `minicpm3` (model/minicpm3.rs: multi-head latent attention) on wgpu, in
//! the CPU's absorbed form so the GPU cache is the same small latent cache:
//! per layer and position only `[normed latent | roped k_pe]`
//! (`kv_lora_rank + qk_rope` f16 values), no V cache. Per head the nope part
//! of q is mapped into latent space by W_kbᵀ (qabs = `[W_kbᵀ q_nope | q_pe]`),
//! attention is multi-query over the cache rows with V = their latent part,
//! and W_vb maps each head's latent output back to a value head. W_kb and
//! W_vb are kv_b, dequantized to f32 once at upload; the per-head products
//! run in head_matmul.wgsl (any widths), the rope parts move with copy.wgsl.

use super::blocks::{self, FfnGpu, LayerBufs};
use super::device::GpuContext;
use super::kernels::{ops, GBuf, Recorder};
use super::session::{rope_mode, rope_table_for, upload, upload_padded, CoreDims, Graph, GraphSession, HeadWeights, Io, SessionCore};
use super::weights::GpuMatrix;
use crate::model::blocks::RopeFactors;
use crate::model::minicpm3::{Hparams, MiniCpm3};
use crate::ops::rope::RopeMode;
use crate::{Error, Result};

struct LayerGpu {
    attn_norm: GBuf,
    q_a: GpuMatrix,
    q_a_norm: GBuf,
    /// Input rows padded to a multiple of 32 (see [`upload_padded`]).
    q_b: GpuMatrix,
    kv_a_mqa: GpuMatrix,
    kv_a_norm: GBuf,
    /// kv_b as f32, row-major: per head `qk_nope` rows of W_kb, then `hd_v`
    /// rows of W_vb, each `kv_lora_rank` wide (the CPU's `wkv`).
    wkv: GBuf,
    wo: GpuMatrix,
    ffn_norm: GBuf,
    ffn: FfnGpu,
}

pub struct MiniCpm3Gpu {
    hp: Hparams,
    rope_factors: RopeFactors,
    io: Io,
    layers: Vec<LayerGpu>,
}

impl MiniCpm3Gpu {
    pub fn upload(ctx: &GpuContext, m: &MiniCpm3) -> Result<MiniCpm3Gpu> {
        let f = &*m.file;
        let hp = m.hp.clone();
        let b = &hp.base;
        let (row, lat) = (hp.cache_row(), hp.kv_lora_rank);
        // Attention takes K rows of ≤ 576 and V heads of ≤ 512 even widths.
        if row % 2 != 0 || row > ops::ATTN_MAX_HDK || lat > ops::ATTN_MAX_HDV {
            return Err(Error::Backend(format!(
                "minicpm3 with kv_lora_rank {lat} and qk_rope {} is not supported on wgpu (cache rows of ≤ {} even values)",
                hp.qk_rope,
                ops::ATTN_MAX_HDK
            )));
        }
        let io = Io::upload(ctx, f, &m.tok_embd, &m.output, &m.output_norm)?;
        let vec = |label: &str, v: &[f32]| GBuf::from_f32(ctx, label, v);
        let mut layers = Vec::with_capacity(m.layers.len());
        for l in &m.layers {
            let mut wkv = vec![0f32; l.kv_b.n_out * lat];
            l.kv_b_f32(f, &mut wkv)?;
            layers.push(LayerGpu {
                attn_norm: vec("attn_norm", &l.attn_norm),
                q_a: upload(ctx, f, &l.q_a)?,
                q_a_norm: vec("q_a_norm", &l.q_a_norm),
                q_b: upload_padded(ctx, f, &l.q_b)?,
                kv_a_mqa: upload(ctx, f, &l.kv_a_mqa)?,
                kv_a_norm: vec("kv_a_norm", &l.kv_a_norm),
                wkv: vec("kv_b f32", &wkv),
                wo: upload(ctx, f, &l.wo)?,
                ffn_norm: vec("ffn_norm", &l.ffn_norm),
                ffn: FfnGpu::upload(ctx, f, &l.ffn, b.n_ff)?,
            });
        }
        ctx.queue.submit(None);
        super::kernels::wait(ctx)?;
        Ok(MiniCpm3Gpu { hp, rope_factors: m.rope_factors.clone(), io, layers })
    }

    /// Width of the normed q_a rows q_b reads (q_lora_rank padded to 32).
    fn qa_width(&self) -> usize {
        self.layers.first().map_or(self.hp.q_lora_rank, |l| l.q_b.n_in)
    }


    /// `cur = wo · mla(cur)` for `cur` holding the normed input `[n, n_embd]`;
    /// writes `[normed latent | roped k_pe]` into layer `il`'s cache at `pos0`.
    #[allow(clippy::too_many_arguments)]
    fn mla(&self, r: &mut Recorder, core: &SessionCore, s: &MlaBufs, l: &LayerGpu, il: usize, n: usize, pos0: usize) -> Result<()> {
        let (hp, b) = (&self.hp, &self.hp.base);
        let (n_head, hdk, hdv, nope, nrot, lat) = (b.n_head, b.head_dim_k, b.head_dim_v, hp.qk_nope, hp.qk_rope, hp.kv_lora_rank);
        let (row, q_dim, qa_w, lb) = (hp.cache_row(), b.q_dim(), self.qa_width(), &s.layer);
        let mode = rope_mode(RopeMode::Neox);

        // q = q_b(rms_norm(q_a(h)) · q_a_norm)      [n, n_head·(nope + rope)]
        // (the norm is out of place; its rows take q_b's padded stride, the tail stays 0)
        core.mm(r, &l.q_a, &lb.cur, 0, n, &lb.tmp, hp.q_lora_rank)?;
        ops::rms_norm_strided(r, &lb.tmp, 0, hp.q_lora_rank, &l.q_a_norm, &s.qa, 0, qa_w, hp.q_lora_rank, n, b.rms_eps)?;
        core.mm(r, &l.q_b, &s.qa, 0, n, &lb.q, q_dim)?;
        let rope_q = ops::RopeArgs { n_tok: n, n_head, head_dim: hdk, n_rot: nrot, mode, pos0, row_stride: q_dim, off: nope };
        ops::rope(r, &s.rope_table, &lb.q, &rope_q)?;

        // kva = kv_a_mqa(h)   [n, lat + rope]; the cache row = [rms_norm(latent) · kv_a_norm | rope(k_pe)]
        core.mm(r, &l.kv_a_mqa, &lb.cur, 0, n, &lb.k, row)?;
        ops::rms_norm_strided(r, &lb.k, 0, row, &l.kv_a_norm, &lb.v, 0, row, lat, n, b.rms_eps)?;
        ops::copy_rows(r, &lb.k, lat, row, &lb.v, lat, row, nrot, n)?;
        let rope_k = ops::RopeArgs { n_head: 1, head_dim: nrot, row_stride: row, off: lat, ..rope_q };
        ops::rope(r, &s.rope_table, &lb.v, &rope_k)?;
        ops::kv_store(r, &lb.v, &core.kc[il], n, row, pos0)?;

        // Absorbed q per head: [W_kbᵀ q_nope (lat) | q_pe (rope)]      [n, n_head·row]
        let per_head = (nope + hdv) * lat;
        let absorb = ops::HeadMatmulArgs {
            n_tok: n,
            n_head,
            n_out: lat,
            n_in: nope,
            x_stride: q_dim,
            x_head: hdk,
            y_stride: n_head * row,
            y_head: row,
            w_off: 0,
            w_head: per_head,
            w_o: 1,
            w_i: lat,
        };
        ops::head_matmul(r, &lb.q, &l.wkv, &s.qabs, &absorb)?;
        ops::copy_rows(r, &lb.q, nope, hdk, &s.qabs, lat, row, nrot, n * n_head)?;

        // olat [n, n_head·lat] = softmax(qabs·[latent | k_pe] / √key_length) · latent
        let args = ops::AttnArgs { k_row: row, v_row: row, ..ops::AttnArgs::standard(n, n_head, 1, row, lat, pos0, 1.0 / (hdk as f32).sqrt()) };
        ops::attention(r, &s.qabs, &core.kc[il], &core.kc[il], &s.olat, &args)?;

        // attn[t, h] = W_vb[h] · olat[t, h]      [n, n_head·hd_v]; cur = wo · attn
        let unabsorb = ops::HeadMatmulArgs {
            n_out: hdv,
            n_in: lat,
            x_stride: n_head * lat,
            x_head: lat,
            y_stride: n_head * hdv,
            y_head: hdv,
            w_off: nope * lat,
            w_o: lat,
            w_i: 1,
            ..absorb
        };
        ops::head_matmul(r, &s.olat, &l.wkv, &lb.attn, &unabsorb)?;
        core.mm(r, &l.wo, &lb.attn, 0, n, &lb.cur, b.n_embd)
    }
}

impl Graph for MiniCpm3Gpu {
    type Bufs = MlaBufs;

    fn dims(&self) -> CoreDims {
        let (hp, b) = (&self.hp, &self.hp.base);
        let p = |w: &GpuMatrix| 2 * w.parts.len();
        let per_layer: usize = self.layers.iter().map(|l| 20 + p(&l.q_a) + p(&l.q_b) + p(&l.kv_a_mqa) + p(&l.wo) + l.ffn.dispatches()).sum();
        let n_attn = b.n_head * b.head_dim_v;
        let widest_in = b.n_embd.max(self.qa_width()).max(n_attn).max(b.n_ff);
        CoreDims {
            n_vocab: b.n_vocab,
            n_embd: b.n_embd,
            widest_in,
            widest: widest_in.max(b.q_dim()).max(b.n_head * hp.cache_row()),
            kv: vec![(hp.cache_row(), 0); b.n_layer],
            dispatches: per_layer + self.io.dispatches(),
        }
    }

    fn head(&self) -> HeadWeights<'_> {
        // llama.cpp's minicpm3 graph scales the final norm's output by 256/n_embd.
        self.io.head(self.hp.base.rms_eps, 256.0 / self.hp.base.n_embd as f32, None)
    }

    fn new_bufs(&self, ctx: &GpuContext, core: &SessionCore, n_ctx: usize) -> Result<MlaBufs> {
        let (hp, b) = (&self.hp, &self.hp.base);
        let a = |label: &str, n: usize| core.act(ctx, label, n);
        let layer = LayerBufs {
            cur: a("cur", b.n_embd),
            tmp: a("q_a out", hp.q_lora_rank),
            q: a("q", b.q_dim()),
            k: a("kva", hp.cache_row()),
            v: a("kv row", hp.cache_row()),
            attn: a("attn", b.n_head * b.head_dim_v),
            gate: a("gate", b.n_ff),
            up: a("up", b.n_ff),
        };
        Ok(MlaBufs {
            layer,
            qa: a("qa", self.qa_width()),
            qabs: a("qabs", b.n_head * hp.cache_row()),
            olat: a("olat", b.n_head * hp.kv_lora_rank),
            rope_table: rope_table_for(ctx, &b.rope, &self.rope_factors, n_ctx),
        })
    }

    /// Embedding and every layer: the final hidden state ends in `core.x`.
    fn record(&self, r: &mut Recorder, core: &SessionCore, s: &MlaBufs, n: usize, pos0: usize) -> Result<()> {
        let hp = &self.hp.base;
        let n_embd = hp.n_embd;
        let rs = 1.4 / (hp.n_layer as f32).sqrt();
        // x = 12 · token_embd[ids]      [n, n_embd]
        self.io.embed(r, core, n, 12.0)?;
        for (il, l) in self.layers.iter().enumerate() {
            // x += rs · mla(rms_norm(x) · attn_norm)
            ops::rms_norm(r, &core.x, 0, &l.attn_norm, &s.layer.cur, 0, n_embd, n, hp.rms_eps)?;
            self.mla(r, core, s, l, il, n, pos0)?;
            ops::add_scaled(r, &s.layer.cur, &core.x, n * n_embd, rs)?;
            // x += rs · down(silu(gate(h)) · up(h)),  h = rms_norm(x) · ffn_norm
            ops::rms_norm(r, &core.x, 0, &l.ffn_norm, &s.layer.cur, 0, n_embd, n, hp.rms_eps)?;
            blocks::ffn(r, core, &s.layer, &l.ffn, hp.n_ff, n_embd, false, n)?;
            ops::add_scaled(r, &s.layer.cur, &core.x, n * n_embd, rs)?;
        }
        Ok(())
    }
}

/// A session's activations `[ubatch, width]` and RoPE table.
pub struct MlaBufs {
    /// The FFN's buffers and, for MLA: `tmp` = q_a's output, `k` =
    /// kv_a_mqa's `[latent | k_pe]`, `v` = the cache row being built.
    layer: LayerBufs,
    /// Normed q_a rows at q_b's padded stride.
    qa: GBuf,
    qabs: GBuf,
    olat: GBuf,
    rope_table: GBuf,
}

pub type MiniCpm3Session = GraphSession<MiniCpm3Gpu>;
