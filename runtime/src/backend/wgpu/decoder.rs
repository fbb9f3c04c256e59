//! The standard decoder (`model/decoder.rs`: llama, qwen2, qwen3, phi3,
//! minicpm) on wgpu: weights uploaded once ([`DecoderGpu`]), per-session
//! state ([`DecoderSession`]: the shared [`SessionCore`], layer activations,
//! the RoPE table). The spec's differences — biases, q/k norms, fused
//! weights, RoPE pairing, q and branch scales, logit scale — are the same
//! switches as on the CPU.

use super::blocks::{self, AttnGpu, FfnGpu, LayerBufs};
use super::device::GpuContext;
use super::kernels::{ops, GBuf, Recorder};
use super::session::{rope_table_for, CoreDims, Graph, GraphSession, HeadWeights, Io, SessionCore};
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
    io: Io,
    layers: Vec<LayerGpu>,
}

impl DecoderGpu {
    pub fn upload(ctx: &GpuContext, m: &Decoder) -> Result<DecoderGpu> {
        let f = &*m.file;
        let hp = m.hp.clone();
        let io = Io::upload(ctx, f, &m.tok_embd, &m.output, &m.output_norm)?;
        let mut layers = Vec::with_capacity(m.layers.len());
        for l in &m.layers {
            layers.push(LayerGpu {
                attn_norm: GBuf::from_f32(ctx, "attn_norm", &l.attn_norm),
                attn: AttnGpu::upload(ctx, f, &l.attn, &hp)?,
                ffn_norm: GBuf::from_f32(ctx, "ffn_norm", &l.ffn_norm),
                ffn: FfnGpu::upload(ctx, f, &l.ffn, hp.n_ff)?,
            });
        }
        ctx.queue.submit(None);
        super::kernels::wait(ctx)?;
        Ok(DecoderGpu { hp, spec: m.spec, rope_factors: m.rope_factors.clone(), io, layers })
    }
}

impl Graph for DecoderGpu {
    type Bufs = DecoderBufs;

    fn dims(&self) -> CoreDims {
        let hp = &self.hp;
        let per_layer: usize = self.layers.iter().map(|l| 6 + l.attn.dispatches() + l.ffn.dispatches()).sum();
        CoreDims::standard(hp, per_layer + self.io.dispatches())
    }

    fn head(&self) -> HeadWeights<'_> {
        self.io.head(self.hp.rms_eps, self.spec.logit_mul, None)
    }

    fn new_bufs(&self, ctx: &GpuContext, core: &SessionCore, n_ctx: usize) -> Result<DecoderBufs> {
        Ok(DecoderBufs {
            layer: LayerBufs::new(ctx, core, &self.hp),
            rope_table: rope_table_for(ctx, &self.hp.rope, &self.rope_factors, n_ctx),
        })
    }

    fn record(&self, r: &mut Recorder, core: &SessionCore, s: &DecoderBufs, n: usize, pos0: usize) -> Result<()> {
        let (hp, sp, b) = (&self.hp, &self.spec, &s.layer);
        let n_embd = hp.n_embd;
        // x = embedding_scale · token_embd[ids]      [n, n_embd]
        self.io.embed(r, core, n, sp.embedding_scale)?;
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

pub struct DecoderBufs {
    layer: LayerBufs,
    rope_table: GBuf,
}

pub type DecoderSession = GraphSession<DecoderGpu>;
