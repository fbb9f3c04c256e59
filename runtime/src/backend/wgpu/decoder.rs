//! The standard decoder (`model/decoder.rs`: llama, qwen2, qwen3, phi3,
//! minicpm) on wgpu: weights uploaded once ([`DecoderGpu`]), per-session
//! state ([`DecoderSession`]: the shared [`SessionCore`], layer activations,
//! the RoPE table). The spec's differences — biases, q/k norms, fused
//! weights, RoPE pairing, q and branch scales, logit scale — are the same
//! switches as on the CPU.

use super::blocks::{self, AttnGpu, FfnGpu, LayerBufs};
use super::device::GpuContext;
use super::kernels::{ops, GBuf, Kernels, Recorder};
use super::session::{rope_table_for, upload, CoreDims, HeadWeights, SessionCore, Want};
use super::weights::GpuMatrix;
use crate::model::blocks::{BaseHparams, RopeFactors};
use crate::model::decoder::{Decoder, DecoderSpec};
use crate::Result;

struct LayerGpu {
    attn_norm: GBuf,
    attn: AttnGpu,
    ffn_norm: GBuf,
    ffn: FfnGpu,
}

pub struct DecoderGpu {
    hp: BaseHparams,
    spec: DecoderSpec,
    rope_factors: RopeFactors,
    tok_embd: GpuMatrix,
    /// `None` when tied to `tok_embd`.
    output: Option<GpuMatrix>,
    output_norm: GBuf,
    layers: Vec<LayerGpu>,
}

impl DecoderGpu {
    pub fn upload(ctx: &GpuContext, m: &Decoder) -> Result<DecoderGpu> {
        let f = &*m.file;
        let hp = m.hp.clone();
        let tok_embd = upload(ctx, f, &m.tok_embd)?;
        let output = if m.output.name == m.tok_embd.name { None } else { Some(upload(ctx, f, &m.output)?) };
        let mut layers = Vec::with_capacity(m.layers.len());
        for l in &m.layers {
            layers.push(LayerGpu {
                attn_norm: GBuf::from_f32(ctx, "attn_norm", &l.attn_norm),
                attn: AttnGpu::upload(ctx, f, &l.attn, &hp)?,
                ffn_norm: GBuf::from_f32(ctx, "ffn_norm", &l.ffn_norm),
                ffn: FfnGpu::upload(ctx, f, &l.ffn, hp.n_ff)?,
            });
        }
        let output_norm = GBuf::from_f32(ctx, "output_norm", &m.output_norm);
        ctx.queue.submit(None);
        super::kernels::wait(ctx)?;
        Ok(DecoderGpu { hp, spec: m.spec, rope_factors: m.rope_factors.clone(), tok_embd, output, output_norm, layers })
    }

    fn dims(&self) -> CoreDims {
        let hp = &self.hp;
        let per_layer: usize = self.layers.iter().map(|l| 6 + l.attn.dispatches() + l.ffn.dispatches()).sum();
        let head = 2 * self.output.as_ref().unwrap_or(&self.tok_embd).parts.len();
        CoreDims {
            n_vocab: hp.n_vocab,
            n_embd: hp.n_embd,
            widest_in: LayerBufs::widest(hp),
            widest: LayerBufs::widest(hp),
            kv: vec![(hp.k_dim(), hp.v_dim()); hp.n_layer],
            dispatches: per_layer + 2 * self.tok_embd.parts.len() + head + 8,
        }
    }

    fn head(&self) -> HeadWeights<'_> {
        HeadWeights {
            norm: &self.output_norm,
            output: self.output.as_ref().unwrap_or(&self.tok_embd),
            rms_eps: self.hp.rms_eps,
            logit_mul: self.spec.logit_mul,
            softcap: None,
        }
    }

    /// Embedding and every layer: the final hidden state ends in `core.x`.
    fn record(&self, r: &mut Recorder, core: &SessionCore, s: &DecoderBufs, n: usize, pos0: usize) -> Result<()> {
        let (hp, sp, b) = (&self.hp, &self.spec, &s.layer);
        let n_embd = hp.n_embd;
        // x = embedding_scale · token_embd[ids]      [n, n_embd]
        ops::get_rows(r, &self.tok_embd, &core.ids, n, &core.x)?;
        if sp.embedding_scale != 1.0 {
            ops::scale(r, &core.x, 0, n * n_embd, sp.embedding_scale)?;
        }
        for (il, l) in self.layers.iter().enumerate() {
            // x += residual_scale · attn(rms_norm(x) · attn_norm)
            ops::rms_norm(r, &core.x, 0, &l.attn_norm, &b.cur, 0, n_embd, n, hp.rms_eps)?;
            blocks::attention(r, core, b, &l.attn, hp, &sp.call, &s.rope_table, il, n, pos0)?;
            ops::add_scaled(r, &b.cur, &core.x, n * n_embd, sp.residual_scale)?;
            // x += residual_scale · down(silu(gate(h)) · up(h)),  h = rms_norm(x) · ffn_norm
            ops::rms_norm(r, &core.x, 0, &l.ffn_norm, &b.cur, 0, n_embd, n, hp.rms_eps)?;
            blocks::ffn(r, core, b, &l.ffn, hp.n_ff, n_embd, false, n)?;
            ops::add_scaled(r, &b.cur, &core.x, n * n_embd, sp.residual_scale)?;
        }
        Ok(())
    }
}

struct DecoderBufs {
    layer: LayerBufs,
    rope_table: GBuf,
}

pub struct DecoderSession {
    core: SessionCore,
    bufs: DecoderBufs,
}

impl DecoderSession {
    pub fn new(ctx: &GpuContext, m: &DecoderGpu, n_ctx: usize) -> Result<DecoderSession> {
        let core = SessionCore::new(ctx, &m.dims(), n_ctx)?;
        let bufs = DecoderBufs {
            layer: LayerBufs::new(ctx, &core, &m.hp),
            rope_table: rope_table_for(ctx, &m.hp.rope, &m.rope_factors, n_ctx),
        };
        Ok(DecoderSession { core, bufs })
    }

    /// Runs `ids` at `pos0..`. Fills `logits` for `Last`/`All`; returns the id for `Argmax`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        ctx: &GpuContext,
        kernels: &Kernels,
        m: &DecoderGpu,
        ids: &[u32],
        pos0: usize,
        want: Want,
        logits: &mut Vec<f32>,
    ) -> Result<Option<u32>> {
        let bufs = &self.bufs;
        self.core.forward(ctx, kernels, &m.head(), ids, pos0, want, logits, |r, core, n, pos0| m.record(r, core, bufs, n, pos0))
    }
}
