//! `gemma3` on wgpu (see model/gemma3.rs): embedding × √n_embd; per layer the
//! standard attention block (per-head q/k norms, NEOX RoPE, q pre-scale) and a
//! GELU-gated FFN, each followed by its extra RMSNorm before the residual add;
//! sliding-window layers use their own RoPE table and the window in attention.
//! Tied head with optional final soft-capping.

use super::blocks::{self, AttnGpu, FfnGpu, LayerBufs};
use super::device::GpuContext;
use super::kernels::{ops, GBuf, Recorder};
use super::session::{rope_table, CoreDims, Graph, GraphSession, HeadWeights, Io, SessionCore};
use crate::model::gemma3::{Gemma3, Hparams};
use crate::Result;

struct LayerGpu {
    attn_norm: GBuf,
    attn: AttnGpu,
    post_attention_norm: GBuf,
    ffn_norm: GBuf,
    ffn: FfnGpu,
    post_ffw_norm: GBuf,
}

pub struct Gemma3Gpu {
    hp: Hparams,
    io: Io,
    layers: Vec<LayerGpu>,
}

impl Gemma3Gpu {
    pub fn upload(ctx: &GpuContext, m: &Gemma3) -> Result<Gemma3Gpu> {
        let f = &*m.file;
        let b = &m.hp.base;
        let v = |label: &str, w: &[f32]| GBuf::from_f32(ctx, label, w);
        let io = Io::upload(ctx, f, &m.tok_embd, &m.output, &m.output_norm)?;
        let mut layers = Vec::with_capacity(m.layers.len());
        for l in &m.layers {
            layers.push(LayerGpu {
                attn_norm: v("attn_norm", &l.attn_norm),
                attn: AttnGpu::upload(ctx, f, &l.attn, b)?,
                post_attention_norm: v("post_attention_norm", &l.post_attention_norm),
                ffn_norm: v("ffn_norm", &l.ffn_norm),
                ffn: FfnGpu::upload(ctx, f, &l.ffn, b.n_ff)?,
                post_ffw_norm: v("post_ffw_norm", &l.post_ffw_norm),
            });
        }
        ctx.queue.submit(None);
        super::kernels::wait(ctx)?;
        Ok(Gemma3Gpu { hp: m.hp.clone(), io, layers })
    }
}

impl Graph for Gemma3Gpu {
    type Bufs = Gemma3Bufs;

    fn dims(&self) -> CoreDims {
        let per_layer: usize = self.layers.iter().map(|l| 10 + l.attn.dispatches() + l.ffn.dispatches()).sum();
        CoreDims::standard(&self.hp.base, per_layer + self.io.dispatches())
    }

    fn head(&self) -> HeadWeights<'_> {
        self.io.head(self.hp.base.rms_eps, 1.0, self.hp.final_softcap)
    }

    fn new_bufs(&self, ctx: &GpuContext, core: &SessionCore, n_ctx: usize) -> Result<Gemma3Bufs> {
        Ok(Gemma3Bufs {
            layer: LayerBufs::new(ctx, core, &self.hp.base),
            rope: rope_table(ctx, &self.hp.base.rope, None, n_ctx),
            rope_swa: rope_table(ctx, &self.hp.rope_swa, None, n_ctx),
        })
    }

    fn record(&self, r: &mut Recorder, core: &SessionCore, s: &Gemma3Bufs, n: usize, pos0: usize) -> Result<()> {
        let (hp, b) = (&self.hp.base, &s.layer);
        let n_embd = hp.n_embd;
        let (global, swa) = self.hp.attn_calls();
        // x = √n_embd · token_embd[ids]        [n, n_embd]
        self.io.embed(r, core, n, (n_embd as f32).sqrt())?;
        for (il, l) in self.layers.iter().enumerate() {
            let (call, table) = if self.hp.is_swa(il) { (&swa, &s.rope_swa) } else { (&global, &s.rope) };
            // x += post_attention_norm(attn(rms_norm(x) · attn_norm))
            ops::rms_norm(r, &core.x, 0, &l.attn_norm, &b.cur, 0, n_embd, n, hp.rms_eps)?;
            blocks::attention(r, core, b, &l.attn, hp, call, table, il, n, pos0)?;
            ops::rms_norm(r, &b.cur, 0, &l.post_attention_norm, &b.tmp, 0, n_embd, n, hp.rms_eps)?;
            ops::add(r, &b.tmp, &core.x, n * n_embd)?;
            // x += post_ffw_norm(down(gelu(gate(h)) · up(h))),  h = rms_norm(x) · ffn_norm
            ops::rms_norm(r, &core.x, 0, &l.ffn_norm, &b.cur, 0, n_embd, n, hp.rms_eps)?;
            blocks::ffn(r, core, b, &l.ffn, hp.n_ff, n_embd, true, n)?;
            ops::rms_norm(r, &b.cur, 0, &l.post_ffw_norm, &b.tmp, 0, n_embd, n, hp.rms_eps)?;
            ops::add(r, &b.tmp, &core.x, n * n_embd)?;
        }
        Ok(())
    }
}

pub struct Gemma3Bufs {
    layer: LayerBufs,
    /// RoPE tables of the global and of the sliding-window layers.
    rope: GBuf,
    rope_swa: GBuf,
}

pub type Gemma3Session = GraphSession<Gemma3Gpu>;
