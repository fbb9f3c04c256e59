//! `gemma3` on wgpu (see model/gemma3.rs): embedding × √n_embd; per layer the
//! standard attention block (per-head q/k norms, NEOX RoPE, q pre-scale) and a
//! GELU-gated FFN, each followed by its extra RMSNorm before the residual add;
//! sliding-window layers use their own RoPE table and the window in attention.
//! Tied head with optional final soft-capping.

use super::blocks::{self, AttnGpu, FfnGpu, LayerBufs};
use super::device::GpuContext;
use super::kernels::{ops, GBuf, Kernels, Recorder};
use super::session::{rope_table, upload, CoreDims, HeadWeights, SessionCore, Want};
use super::weights::GpuMatrix;
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
    tok_embd: GpuMatrix,
    output: Option<GpuMatrix>,
    output_norm: GBuf,
    layers: Vec<LayerGpu>,
}

impl Gemma3Gpu {
    pub fn upload(ctx: &GpuContext, m: &Gemma3) -> Result<Gemma3Gpu> {
        let f = &*m.file;
        let b = &m.hp.base;
        let v = |label: &str, w: &[f32]| GBuf::from_f32(ctx, label, w);
        let tok_embd = upload(ctx, f, &m.tok_embd)?;
        let output = if m.output.name == m.tok_embd.name { None } else { Some(upload(ctx, f, &m.output)?) };
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
        let output_norm = v("output_norm", &m.output_norm);
        ctx.queue.submit(None);
        super::kernels::wait(ctx)?;
        Ok(Gemma3Gpu { hp: m.hp.clone(), tok_embd, output, output_norm, layers })
    }

    fn dims(&self) -> CoreDims {
        let hp = &self.hp.base;
        let per_layer: usize = self.layers.iter().map(|l| 10 + l.attn.dispatches() + l.ffn.dispatches()).sum();
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
            rms_eps: self.hp.base.rms_eps,
            logit_mul: 1.0,
            softcap: self.hp.final_softcap,
        }
    }

    fn record(&self, r: &mut Recorder, core: &SessionCore, s: &Gemma3Bufs, n: usize, pos0: usize) -> Result<()> {
        let (hp, b) = (&self.hp.base, &s.layer);
        let n_embd = hp.n_embd;
        let (global, swa) = self.hp.attn_calls();
        // x = √n_embd · token_embd[ids]        [n, n_embd]
        ops::get_rows(r, &self.tok_embd, &core.ids, n, &core.x)?;
        ops::scale(r, &core.x, 0, n * n_embd, (n_embd as f32).sqrt())?;
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

struct Gemma3Bufs {
    layer: LayerBufs,
    /// RoPE tables of the global and of the sliding-window layers.
    rope: GBuf,
    rope_swa: GBuf,
}

pub struct Gemma3Session {
    core: SessionCore,
    bufs: Gemma3Bufs,
}

impl Gemma3Session {
    pub fn new(ctx: &GpuContext, m: &Gemma3Gpu, n_ctx: usize) -> Result<Gemma3Session> {
        let core = SessionCore::new(ctx, &m.dims(), n_ctx)?;
        let bufs = Gemma3Bufs {
            layer: LayerBufs::new(ctx, &core, &m.hp.base),
            rope: rope_table(ctx, &m.hp.base.rope, None, n_ctx),
            rope_swa: rope_table(ctx, &m.hp.rope_swa, None, n_ctx),
        };
        Ok(Gemma3Session { core, bufs })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &mut self,
        ctx: &GpuContext,
        kernels: &Kernels,
        m: &Gemma3Gpu,
        ids: &[u32],
        pos0: usize,
        want: Want,
        logits: &mut Vec<f32>,
    ) -> Result<Option<u32>> {
        let bufs = &self.bufs;
        self.core.forward(ctx, kernels, &m.head(), ids, pos0, want, logits, |r, core, n, pos0| m.record(r, core, bufs, n, pos0))
    }
}
