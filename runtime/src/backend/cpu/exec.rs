//! The CPU executor: runs an architecture's graph ([`crate::graph`]) op by
//! op over f32 buffers (`[n, width]` each, resized per pass, never shrunk)
//! and an f16 KV cache. Products run as `matmul_many` regions on the thread
//! pool (one region per group of products of one input), norms and
//! activations of a prompt in parallel rows, one token's on a spinning team
//! ([`CpuBackend::install_forward`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::profile::{timed, OpKind, OpProfile};
use super::{attention_kvq, attention_strided, matmul_many, team, AttnShape, CpuBackend, MatJob, MatmulScratch};
use crate::graph::{Act, Attn, Buf, Dumped, Exec, Forward, Graph, HeadMatmul, Mat, Rope, Runner, Vector, View, Want};
use crate::kv_cache::{KvCache, KvType};
use crate::kv_state::{KvState, LayerKv};
use crate::ops::activation::{geglu_ggml, swiglu};
use crate::ops::rms_norm::rms_norm;
use crate::ops::rope;
use crate::{Error, Result};

/// One session on the CPU: its KV cache and the buffers of its passes.
pub struct CpuRunner {
    be: Arc<CpuBackend>,
    arch: Arc<dyn Forward>,
    s: State,
}

struct State {
    cache: KvCache,
    bufs: Vec<Vec<f32>>,
    /// cos/sin of the pass's positions, per RoPE table of the graph.
    ropes: Vec<Vec<(f32, f32)>>,
    mm: MatmulScratch,
    /// The dense weight dequantized last (MLA's kv_b, read twice per layer).
    dense: Option<(Mat, Vec<f32>)>,
    /// Copies of the named intermediates, while dumping.
    dump: Option<Vec<Dumped>>,
    /// Set: stop the pass before its next product ([`Runner::set_cancel`]).
    cancel: Option<Arc<AtomicBool>>,
}

impl CpuRunner {
    /// A session of `n_ctx` positions with an f16 KV cache.
    pub fn new(be: Arc<CpuBackend>, arch: Arc<dyn Forward>, n_ctx: usize) -> CpuRunner {
        // f16 rows of any width are valid: this cannot fail.
        Self::with_kv_types(be, arch, n_ctx, (KvType::F16, KvType::F16)).expect("an f16 KV cache")
    }

    /// A session of `n_ctx` positions whose cache stores K and V as `types`
    /// (an error when a layer's rows are not whole blocks of the type).
    pub fn with_kv_types(be: Arc<CpuBackend>, arch: Arc<dyn Forward>, n_ctx: usize, types: (KvType, KvType)) -> Result<CpuRunner> {
        let g = arch.graph();
        let s = State {
            cache: KvCache::new(n_ctx, g.kv.clone(), types.0, types.1)?.rotated(g.kv_rotation(types)),
            bufs: vec![Vec::new(); g.bufs.len()],
            ropes: vec![Vec::new(); g.ropes.len()],
            mm: MatmulScratch::default(),
            dense: None,
            dump: None,
            cancel: None,
        };
        Ok(CpuRunner { be, arch, s })
    }
}

impl Runner for CpuRunner {
    fn n_ctx(&self) -> usize {
        self.s.cache.n_ctx
    }

    fn forward(&mut self, ids: &[u32], pos0: usize, want: Want, logits: &mut Vec<f32>) -> Result<Option<u32>> {
        let n = ids.len();
        if n == 0 {
            logits.clear();
            return Ok(None);
        }
        if pos0 + n > self.s.cache.n_ctx {
            return Err(Error::ContextFull { needed: pos0 + n, n_ctx: self.s.cache.n_ctx });
        }
        let (arch, s) = (&*self.arch, &mut self.s);
        let g = arch.graph();
        s.mm.kernels = self.be.kernels();
        for (b, &(_, width)) in s.bufs.iter_mut().zip(&g.bufs) {
            b.resize(n * width, 0.0);
        }
        for (t, table) in s.ropes.iter_mut().zip(&g.ropes) {
            table.fill(s.cache.n_ctx, pos0, n, t);
        }
        self.be.install_forward(n, || {
            let mut e = CpuExec { g, s, ids, pos0 };
            arch.forward(&mut e)?;
            e.head(want, logits)
        })
    }

    fn set_cancel(&mut self, flag: Option<Arc<AtomicBool>>) {
        self.s.cancel = flag;
    }

    fn set_profiling(&mut self, on: bool) {
        self.s.mm.profile = on.then(OpProfile::default);
    }

    fn take_profile(&mut self) -> OpProfile {
        self.s.mm.profile.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn kv_bytes(&self) -> usize {
        self.s.cache.bytes()
    }

    fn set_dump(&mut self, on: bool) -> Result<()> {
        self.s.dump = on.then(Vec::new);
        Ok(())
    }

    fn take_dump(&mut self) -> Vec<Dumped> {
        self.s.dump.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn kv_read(&mut self, n_tokens: usize) -> Result<KvState> {
        let c = &self.s.cache;
        if n_tokens > c.n_ctx {
            return Err(Error::ContextFull { needed: n_tokens, n_ctx: c.n_ctx });
        }
        let layers = (0..c.dims().len()).map(|il| c.rows_bytes(il, n_tokens)).map(|(k, v)| LayerKv { k, v }).collect();
        let (type_k, type_v) = c.types();
        Ok(KvState { type_k, type_v, n_tokens, layers })
    }

    fn kv_write(&mut self, state: &KvState) -> Result<()> {
        let c = &mut self.s.cache;
        let (type_k, type_v) = c.types();
        state.check(c.dims(), c.n_ctx, type_k, type_v)?;
        for (il, l) in state.layers.iter().enumerate() {
            c.set_rows_bytes(il, &l.k, &l.v);
        }
        Ok(())
    }
}

/// `f(t, row t)` for each `row`-long row of `x`, in parallel tasks of
/// whole rows (≥ 16 Ki values each, so a task outweighs its hand-off): a
/// prompt's norms and activations are as many values as its products'
/// outputs, and on one thread they took nearly half of Gemma-3-270M's
/// pp512 once the products were fast. One token's rows stay on this thread.
pub(crate) fn par_rows(x: &mut [f32], row: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let per = (16 << 10) / row.max(1) + 1;
    team::for_each_chunk_mut(x, per * row.max(1), |c, chunk| {
        for (i, r) in chunk.chunks_mut(row.max(1)).enumerate() {
            f(c * per + i, r);
        }
    });
}

/// One pass's executor.
struct CpuExec<'a> {
    g: &'a Graph,
    s: &'a mut State,
    ids: &'a [u32],
    pos0: usize,
}

impl CpuExec<'_> {
    fn n(&self) -> usize {
        self.ids.len()
    }

    fn width(&self, b: Buf) -> usize {
        self.g.width(b)
    }

    /// Moves buffer `b` out (to use it next to another one mutably); see [`Self::put`].
    fn take(&mut self, b: Buf) -> Vec<f32> {
        std::mem::take(&mut self.s.bufs[b.0 as usize])
    }

    fn put(&mut self, b: Buf, v: Vec<f32>) {
        self.s.bufs[b.0 as usize] = v;
    }

    fn buf(&mut self, b: Buf) -> &mut [f32] {
        &mut self.s.bufs[b.0 as usize]
    }

    /// The output head over the wanted rows of the hidden state.
    fn head(&mut self, want: Want, logits: &mut Vec<f32>) -> Result<Option<u32>> {
        let (h, n) = (self.g.head, self.n());
        let n_embd = self.width(self.g.hidden);
        let norm = self.g.weights.vector(h.norm);
        let mut x = self.take(self.g.hidden);
        let rows = match want {
            Want::All => &mut x[..n * n_embd],
            Want::Last | Want::Argmax => &mut x[(n - 1) * n_embd..n * n_embd],
        };
        par_rows(rows, n_embd, |_, r| rms_norm(r, norm, h.eps));
        let w = self.g.weights.mat(h.output);
        logits.resize(rows.len() / n_embd * w.n_out, 0.0);
        let file = &*self.g.weights.file;
        matmul_many(n_embd, rows, &mut [MatJob { ty: w.ty, w: w.data(file), n_out: w.n_out, y: logits }], &mut self.s.mm);
        self.put(self.g.hidden, x);
        if h.logit_mul != 1.0 {
            logits.iter_mut().for_each(|v| *v *= h.logit_mul);
        }
        if let Some(cap) = h.softcap {
            logits.iter_mut().for_each(|v| *v = cap * (*v / cap).tanh());
        }
        Ok((want == Want::Argmax).then(|| crate::sampling::argmax(logits)))
    }
}

impl Exec for CpuExec<'_> {
    fn n_tok(&self) -> usize {
        self.n()
    }

    fn pos0(&self) -> usize {
        self.pos0
    }

    fn embed(&mut self, table: Mat, out: Buf, scale: f32) -> Result<()> {
        let (w, file, ids) = (self.g.weights.mat(table), &*self.g.weights.file, self.ids);
        let x = &mut self.s.bufs[out.0 as usize];
        for (t, &id) in ids.iter().enumerate() {
            w.dequantize_row(file, id as usize, &mut x[t * w.n_in..(t + 1) * w.n_in])?;
        }
        if scale != 1.0 {
            x.iter_mut().for_each(|v| *v *= scale);
        }
        Ok(())
    }

    fn matmul(&mut self, x: Buf, products: &[(Mat, Buf)]) -> Result<()> {
        if self.s.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(Error::Cancelled);
        }
        let n_in = self.width(x);
        let xb = self.take(x);
        let mut outs: Vec<Vec<f32>> = products.iter().map(|&(_, y)| self.take(y)).collect();
        let file = &*self.g.weights.file;
        let mut jobs: Vec<MatJob> = products
            .iter()
            .zip(outs.iter_mut())
            .map(|(&(m, _), y)| {
                let w = self.g.weights.mat(m);
                MatJob { ty: w.ty, w: w.data(file), n_out: w.n_out, y }
            })
            .collect();
        let ok = jobs
            .iter()
            .zip(products)
            .all(|(j, &(m, y))| self.g.weights.mat(m).n_in == n_in && j.y.len() == xb.len() / n_in * self.g.width(y));
        if ok {
            matmul_many(n_in, &xb, &mut jobs, &mut self.s.mm);
        }
        drop(jobs);
        for (&(_, y), v) in products.iter().zip(outs) {
            self.put(y, v);
        }
        self.put(x, xb);
        if !ok {
            return Err(Error::Model("graph: a product's shapes do not match its buffers".into()));
        }
        Ok(())
    }

    fn rms_norm(&mut self, x: View, w: Vector, out: View, eps: f32) -> Result<()> {
        let wv = self.g.weights.vector(w);
        let group = wv.len();
        let (xs, os) = (self.width(x.buf), self.width(out.buf));
        if x.width != out.width || group == 0 || !x.width.is_multiple_of(group) {
            return Err(Error::Model(format!("graph: rms_norm of {} values with a weight of {group}", x.width)));
        }
        if x.buf == out.buf {
            if x != out {
                return Err(Error::Model("graph: rms_norm between overlapping views".into()));
            }
            par_rows(self.buf(x.buf), xs, |_, r| r[x.off..x.off + x.width].chunks_mut(group).for_each(|c| rms_norm(c, wv, eps)));
            return Ok(());
        }
        let src = self.take(x.buf);
        par_rows(self.buf(out.buf), os, |t, r| {
            let d = &mut r[out.off..out.off + out.width];
            d.copy_from_slice(&src[t * xs + x.off..][..x.width]);
            d.chunks_mut(group).for_each(|c| rms_norm(c, wv, eps));
        });
        self.put(x.buf, src);
        Ok(())
    }

    fn add_bias(&mut self, x: Buf, b: Vector) -> Result<()> {
        let bias = self.g.weights.vector(b);
        self.buf(x).chunks_mut(bias.len()).for_each(|r| r.iter_mut().zip(bias).for_each(|(a, b)| *a += b));
        Ok(())
    }

    fn rope(&mut self, x: Buf, r: &Rope) -> Result<()> {
        let width = self.width(x);
        let h = r.n_rot / 2;
        if r.n_head == 0 || r.off + (r.n_head - 1) * r.head_dim + r.n_rot > width || r.n_rot > r.head_dim {
            return Err(Error::Model("graph: RoPE heads exceed their buffer".into()));
        }
        let table = &self.s.ropes[r.table.0 as usize];
        let xb = &mut self.s.bufs[x.0 as usize];
        for (t, row) in xb.chunks_mut(width).enumerate() {
            let c = &table[t * h..(t + 1) * h];
            for h in 0..r.n_head {
                rope::apply(&mut row[r.off + h * r.head_dim..][..r.n_rot], c, r.mode);
            }
        }
        Ok(())
    }

    fn scale(&mut self, x: Buf, s: f32) -> Result<()> {
        self.buf(x).iter_mut().for_each(|v| *v *= s);
        Ok(())
    }

    fn add(&mut self, x: Buf, y: Buf, s: f32) -> Result<()> {
        let yb = self.take(y);
        let xb = self.buf(x);
        if s == 1.0 {
            xb.iter_mut().zip(&yb).for_each(|(a, b)| *a += b);
        } else {
            xb.iter_mut().zip(&yb).for_each(|(a, b)| *a += s * b);
        }
        self.put(y, yb);
        Ok(())
    }

    fn glu(&mut self, gate: Buf, up: Buf, act: Act) -> Result<()> {
        let n_ff = self.width(gate);
        let u = self.take(up);
        par_rows(self.buf(gate), n_ff, |t, g| {
            let u = &u[t * n_ff..(t + 1) * n_ff];
            match act {
                Act::Silu => swiglu(g, u),
                Act::Gelu => geglu_ggml(g, u),
            }
        });
        self.put(up, u);
        Ok(())
    }

    fn copy(&mut self, src: View, dst: View, n_head: usize) -> Result<()> {
        let (sw, dw) = (self.width(src.buf), self.width(dst.buf));
        if src.buf == dst.buf || src.width != dst.width || n_head == 0 || sw % n_head != 0 || dw % n_head != 0 {
            return Err(Error::Model("graph: copy between mismatched views".into()));
        }
        let (sh, dh) = (sw / n_head, dw / n_head);
        let s = self.take(src.buf);
        for (t, row) in self.buf(dst.buf).chunks_mut(dw).enumerate() {
            for h in 0..n_head {
                row[h * dh + dst.off..][..dst.width].copy_from_slice(&s[t * sw + h * sh + src.off..][..src.width]);
            }
        }
        self.put(src.buf, s);
        Ok(())
    }

    fn kv_store(&mut self, il: usize, k: Buf, v: Option<Buf>) -> Result<()> {
        let s = &mut *self.s;
        let v = v.map_or(&[][..], |v| &s.bufs[v.0 as usize][..]);
        s.cache.write(il, self.pos0, &s.bufs[k.0 as usize], v);
        Ok(())
    }

    fn attention(&mut self, il: usize, q: Buf, out: Buf, a: &Attn) -> Result<()> {
        let (k_row, v_row) = self.g.kv[il];
        let v_row = if a.v_in_k { k_row } else { v_row };
        let shape = AttnShape {
            n_head: a.n_head,
            n_head_kv: a.n_head_kv,
            head_dim_k: a.head_dim_k,
            head_dim_v: a.head_dim_v,
            pos0: self.pos0,
            kq_scale: a.kq_scale,
            window: a.window,
            softcap: a.softcap,
        };
        let mut o = self.take(out);
        let s = &mut *self.s;
        let (kc, vc) = s.cache.layer(il);
        let vc = if a.v_in_k { kc } else { vc };
        let kernels = s.mm.kernels;
        let qb = &s.bufs[q.0 as usize];
        let r = timed(&mut s.mm.profile, &[(OpKind::Attention, 0)], || match (kc.as_f16(), vc.as_f16()) {
            (Some(kc), Some(vc)) => {
                attention_strided(kernels, &shape, qb, kc, k_row, vc, v_row, &mut o);
                Ok(())
            }
            // A quantized side: llama.cpp's flash-attention arithmetic.
            _ => attention_kvq(kernels, &shape, qb, kc, vc, &mut o),
        });
        self.put(out, o);
        r
    }

    fn name(&mut self, x: Buf, name: &str, il: Option<usize>) -> Result<()> {
        let width = self.width(x);
        let s = &mut *self.s;
        if let Some(d) = &mut s.dump {
            Dumped::push(d, Dumped::key(name, il), width, &s.bufs[x.0 as usize]);
        }
        Ok(())
    }

    fn head_matmul(&mut self, x: Buf, w: Mat, y: Buf, a: &HeadMatmul) -> Result<()> {
        let (xw, yw) = (self.width(x), self.width(y));
        if yw != a.n_head * a.y_head || a.n_out > a.y_head {
            return Err(Error::Model("graph: per-head product rows do not split into heads".into()));
        }
        let s = &mut *self.s;
        if s.dense.as_ref().map(|d| d.0) != Some(w) {
            // kv_b as f32: dequantized once per layer and pass, not kept for
            // every layer (MiniCPM3-4B's would be 300+ MiB of f32).
            let wt = self.g.weights.mat(w);
            let mut d = s.dense.take().map(|d| d.1).unwrap_or_default();
            d.resize(wt.n_out * wt.n_in, 0.0);
            for (r, row) in d.chunks_mut(wt.n_in).enumerate() {
                wt.dequantize_row(&self.g.weights.file, r, row)?;
            }
            s.dense = Some((w, d));
        }
        let wd = &s.dense.as_ref().map(|d| &d.1[..]).unwrap_or_default();
        let mut yb = std::mem::take(&mut s.bufs[y.0 as usize]);
        let xb = &s.bufs[x.0 as usize];
        team::for_each_chunk_mut(&mut yb, a.y_head, |th, dst| {
            let (t, h) = (th / a.n_head, th % a.n_head);
            let xh = &xb[t * xw + h * a.x_head..][..a.n_in];
            let wh = &wd[a.w_off + h * a.w_head..];
            let dst = &mut dst[..a.n_out];
            if a.w_o == 1 {
                // Rows of w per input: y += x_i · w_i (contiguous rows).
                dst.iter_mut().for_each(|v| *v = 0.0);
                for (i, &xi) in xh.iter().enumerate() {
                    dst.iter_mut().zip(&wh[i * a.w_i..][..a.n_out]).for_each(|(d, &w)| *d += xi * w);
                }
            } else {
                for (o, d) in dst.iter_mut().enumerate() {
                    *d = (0..a.n_in).map(|i| wh[o * a.w_o + i * a.w_i] * xh[i]).sum();
                }
            }
        });
        s.bufs[y.0 as usize] = yb;
        Ok(())
    }
}
