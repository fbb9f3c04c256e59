//! One forward pass per architecture, run by every backend.
//!
//! An architecture (`model/<arch>.rs`) declares at load what its forward
//! pass needs — its weights ([`Weights`]), per-token activation buffers,
//! KV-cache layout, RoPE tables and output head: a [`Graph`] — and states the
//! pass once, as calls on an executor ([`Exec`]): embedding, norms, products
//! (several of one input at once), RoPE, KV store, attention, activations,
//! adds and scales. The CPU backend executes each call as it comes
//! (`backend/cpu/exec.rs`); the wgpu backend records each into one command
//! encoder (`backend/wgpu/exec.rs`). The output head (final norm, output
//! product, logit transforms, argmax) belongs to the executors, so both
//! answer [`Want::Last`], [`Want::All`] and [`Want::Argmax`] the same way.
//!
//! Layering: `model/` → `graph` ← `backend/{cpu,wgpu}`; no backend knows an
//! architecture, no architecture knows a backend.

pub mod profile;
pub mod weights;

pub use profile::OpProfile;
pub use weights::{Mat, Vector, Weight, Weights};

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::ops::rope::{RopeMode, RopeParams};
use crate::Result;

/// An activation buffer: `[n_tok, width]` f32, row-major, declared with
/// [`Graph::buf`]. Holds a micro-batch's rows; contents do not survive a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Buf(pub u16);

/// Columns `off..off + width` of every token row of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub buf: Buf,
    pub off: usize,
    pub width: usize,
}

/// A RoPE table of the graph (an index into [`Graph::ropes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RopeId(pub u8);

/// What a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Only the last token's row of logits (generation).
    Last,
    /// One row of logits per input token (perplexity, `ember logits`).
    All,
    /// Only the id of the last row's largest logit (greedy): on a GPU only
    /// the id is read back.
    Argmax,
}

/// The gated activation of an FFN: `gate = act(gate) · up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// SiLU(gate) · up.
    Silu,
    /// GELU-tanh(gate) · up, with ggml's f16 table rounding.
    Gelu,
}

/// RoPE on `n_head` heads of `head_dim` starting at column `off` of each
/// row: the first `n_rot` values of each head rotate by the token's position.
#[derive(Debug, Clone, Copy)]
pub struct Rope {
    pub table: RopeId,
    pub off: usize,
    pub n_head: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub mode: RopeMode,
}

/// Causal attention of layer `il`'s cache for the pass's queries.
#[derive(Debug, Clone, Copy)]
pub struct Attn {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
    /// `softmax(kq_scale · q·k)`.
    pub kq_scale: f32,
    /// Sliding window: key `j` is masked for query `p` when `p − j ≥ window`.
    pub window: Option<usize>,
    /// Soft-capping of the scores `cap·tanh(s/cap)`.
    pub softcap: Option<f32>,
    /// V is the first `head_dim_v` values of each K row (MLA's latent cache:
    /// the layer caches no V).
    pub v_in_k: bool,
}

/// A per-head product with a dense (f32) weight: for token `t`, head `h`,
/// output `o`: `y[t][h·y_head + o] = Σ_i w[w_off + h·w_head + o·w_o + i·w_i] · x[t][h·x_head + i]`.
#[derive(Debug, Clone, Copy)]
pub struct HeadMatmul {
    pub n_head: usize,
    pub n_out: usize,
    pub n_in: usize,
    pub x_head: usize,
    pub y_head: usize,
    pub w_off: usize,
    pub w_head: usize,
    pub w_o: usize,
    pub w_i: usize,
}

/// The calls an architecture's forward pass is made of. Shapes: every buffer
/// holds [`Exec::n_tok`] rows of its declared width; products read whole rows
/// of `x` (width = the weight's `n_in`) and write whole rows of their output.
pub trait Exec {
    /// Tokens of this pass.
    fn n_tok(&self) -> usize;
    /// Position of the first token.
    fn pos0(&self) -> usize;
    /// `out[t] = scale · table[ids[t]]`.
    fn embed(&mut self, table: Mat, out: Buf, scale: f32) -> Result<()>;
    /// `y_i = W_i · x` for each `(W_i, y_i)`: several products of one input
    /// (q, k, v; gate, up) run as one (the activations are quantized once).
    fn matmul(&mut self, x: Buf, products: &[(Mat, Buf)]) -> Result<()>;
    /// RMSNorm · w of each `w.len()`-wide group of `x`'s columns (a row, or
    /// each head), into `out` (may be `x`).
    fn rms_norm(&mut self, x: View, w: Vector, out: View, eps: f32) -> Result<()>;
    /// `x[t] += b`.
    fn add_bias(&mut self, x: Buf, b: Vector) -> Result<()>;
    fn rope(&mut self, x: Buf, r: &Rope) -> Result<()>;
    /// `x *= s`.
    fn scale(&mut self, x: Buf, s: f32) -> Result<()>;
    /// `x += s · y`.
    fn add(&mut self, x: Buf, y: Buf, s: f32) -> Result<()>;
    /// `gate = act(gate) · up`.
    fn glu(&mut self, gate: Buf, up: Buf, act: Act) -> Result<()>;
    /// `dst = src` (views of distinct buffers, equal widths), in each of
    /// `n_head` heads: head `h` of a buffer is the `h`-th of `n_head` equal
    /// parts of its row, and the views are within head 0 (MLA's q_pe parts).
    fn copy(&mut self, src: View, dst: View, n_head: usize) -> Result<()>;
    /// Writes the pass's K (and V) rows into layer `il`'s cache at `pos0..`.
    fn kv_store(&mut self, il: usize, k: Buf, v: Option<Buf>) -> Result<()>;
    /// `out = softmax(kq_scale · q·Kᵀ) · V` over layer `il`'s cache.
    fn attention(&mut self, il: usize, q: Buf, out: Buf, a: &Attn) -> Result<()>;
    /// Per-head products with a dense weight (see [`HeadMatmul`]).
    fn head_matmul(&mut self, x: Buf, w: Mat, y: Buf, a: &HeadMatmul) -> Result<()>;
    /// Names a buffer's current contents (`attn_norm-3`) for layer dumps;
    /// executors that do not dump ignore it.
    fn name(&mut self, _x: Buf, _name: &str, _il: Option<usize>) -> Result<()> {
        Ok(())
    }
}

/// RoPE frequency factors: `rope_freqs.weight` (always used), or LongRoPE's
/// `rope_factors_long/short.weight`, chosen once per session as llama.cpp
/// does: long when the session's n_ctx exceeds the original context length.
#[derive(Debug, Clone, Default)]
pub struct RopeFactors {
    fixed: Option<Vec<f32>>,
    long: Option<Vec<f32>>,
    short: Option<Vec<f32>>,
    n_ctx_orig: usize,
}

impl RopeFactors {
    pub fn load(w: &Weights, n_rot: usize, n_ctx_orig: usize) -> Result<RopeFactors> {
        let n = n_rot / 2;
        Ok(RopeFactors {
            fixed: w.values_opt("rope_freqs.weight", n)?,
            long: w.values_opt("rope_factors_long.weight", n)?,
            short: w.values_opt("rope_factors_short.weight", n)?,
            n_ctx_orig,
        })
    }

    /// The factors for a session of `n_ctx` positions.
    pub fn for_ctx(&self, n_ctx: usize) -> Option<&[f32]> {
        if let Some(f) = &self.fixed {
            return Some(f);
        }
        if n_ctx > self.n_ctx_orig {
            self.long.as_deref()
        } else {
            self.short.as_deref()
        }
    }
}

/// A RoPE table the graph uses: its parameters and frequency factors.
#[derive(Debug, Clone)]
pub struct RopeTable {
    pub params: RopeParams,
    pub factors: RopeFactors,
}

impl RopeTable {
    /// cos/sin of positions `pos0..pos0 + n` for a session of `n_ctx`: `n × n_rot/2` pairs.
    pub fn fill(&self, n_ctx: usize, pos0: usize, n: usize, out: &mut Vec<(f32, f32)>) {
        let h = self.params.n_rot / 2;
        let ff = self.factors.for_ctx(n_ctx);
        out.resize(n * h, (0.0, 0.0));
        for t in 0..n {
            self.params.cache(pos0 + t, ff, &mut out[t * h..(t + 1) * h]);
        }
    }
}

/// The output head: `logits = logit_mul · output(rms_norm(hidden) · norm)`,
/// then optional soft-capping `cap·tanh(logits/cap)`.
#[derive(Debug, Clone, Copy)]
pub struct Head {
    pub norm: Vector,
    pub output: Mat,
    pub eps: f32,
    pub logit_mul: f32,
    pub softcap: Option<f32>,
}

/// What an architecture's forward pass needs, declared once at load.
pub struct Graph {
    pub weights: Weights,
    /// Activation buffers: (name, width).
    pub bufs: Vec<(&'static str, usize)>,
    /// Per layer: f16 values cached per position for K and for V (0 = none).
    pub kv: Vec<(usize, usize)>,
    /// The attention heads' K and V widths shared by every layer (llama.cpp's
    /// `n_embd_head_k/v`; 0 when the cache holds something else, MLA's
    /// latent rows): what the rotation of a quantized cache is sized by
    /// ([`crate::kv_rotation::KvRotation::new`]).
    pub kv_head_dims: (usize, usize),
    pub ropes: Vec<RopeTable>,
    /// The buffer holding the final hidden state `[n, n_embd]` the head reads.
    pub hidden: Buf,
    pub head: Head,
    pub n_vocab: usize,
}

/// Builds a [`Graph`]: the architecture registers weights and declares
/// buffers and tables while loading.
pub struct GraphBuilder {
    pub weights: Weights,
    bufs: Vec<(&'static str, usize)>,
    ropes: Vec<RopeTable>,
}

impl GraphBuilder {
    pub fn new(weights: Weights) -> GraphBuilder {
        GraphBuilder { weights, bufs: Vec::new(), ropes: Vec::new() }
    }

    /// Declares an activation buffer of `width` values per token.
    pub fn buf(&mut self, name: &'static str, width: usize) -> Buf {
        self.bufs.push((name, width));
        Buf(self.bufs.len() as u16 - 1)
    }

    pub fn rope(&mut self, params: RopeParams, factors: RopeFactors) -> RopeId {
        self.ropes.push(RopeTable { params, factors });
        RopeId(self.ropes.len() as u8 - 1)
    }

    pub fn finish(self, kv: Vec<(usize, usize)>, kv_head_dims: (usize, usize), hidden: Buf, head: Head, n_vocab: usize) -> Graph {
        Graph { weights: self.weights, bufs: self.bufs, kv, kv_head_dims, ropes: self.ropes, hidden, head, n_vocab }
    }
}

impl Graph {
    /// How a cache of `types` for this graph is rotated (llama.cpp's rule,
    /// [`crate::kv_rotation::KvRotation::new`] on the graph's head widths):
    /// what every backend's session stores and attends with.
    pub fn kv_rotation(&self, types: (crate::kv_cache::KvType, crate::kv_cache::KvType)) -> crate::kv_rotation::KvRotation {
        crate::kv_rotation::KvRotation::new(self.kv_head_dims.0, self.kv_head_dims.1, types)
    }

    /// Width of a buffer.
    pub fn width(&self, b: Buf) -> usize {
        self.bufs[b.0 as usize].1
    }
}

/// An architecture: its graph and its forward pass over an executor.
pub trait Forward: Send + Sync {
    fn graph(&self) -> &Graph;
    /// Embedding and every layer for [`Exec::n_tok`] tokens at [`Exec::pos0`]:
    /// the final hidden state ends in [`Graph::hidden`].
    fn forward(&self, e: &mut dyn Exec) -> Result<()>;
}

/// One session on a backend — its KV cache, buffers and executor — as
/// [`crate::Session`] uses it, whichever backend runs it.
pub trait Runner: Send {
    /// Positions the session's cache holds.
    fn n_ctx(&self) -> usize;
    /// Runs `ids` at positions `pos0..`, writing their K/V into the cache.
    /// Fills `logits` (`n_vocab` per row) for [`Want::Last`] and [`Want::All`];
    /// returns the id for [`Want::Argmax`].
    fn forward(&mut self, ids: &[u32], pos0: usize, want: Want, logits: &mut Vec<f32>) -> Result<Option<u32>>;
    /// Whether [`Want::Argmax`] saves work over [`Want::Last`] (the id is
    /// picked where the logits are, and only it comes back).
    fn argmax_on_device(&self) -> bool {
        false
    }
    /// A flag that, once set, makes the running and later passes stop early
    /// with [`crate::Error::Cancelled`] (the CPU checks it before every
    /// product, the GPU before every micro-batch): cancel takes effect inside
    /// a long prompt, not after it. The cache positions of a cancelled pass
    /// are simply overwritten by the next one.
    fn set_cancel(&mut self, flag: Option<Arc<AtomicBool>>);
    /// Starts (or stops) timing each product per weight type and attention.
    fn set_profiling(&mut self, _on: bool) {}
    /// What was timed since profiling started or the last call.
    fn take_profile(&mut self) -> OpProfile {
        OpProfile::default()
    }
    /// Bytes of the KV cache.
    fn kv_bytes(&self) -> usize;
    /// Keeps a copy of every named intermediate ([`Exec::name`]) of the
    /// following passes (`ember logits --dump-layers`).
    fn set_dump(&mut self, on: bool) -> Result<()>;
    /// The named intermediates kept since dumping started, in pass order.
    fn take_dump(&mut self) -> Vec<Dumped>;
    /// The K/V rows of positions `0..n_tokens` of every layer, in the
    /// cache's stored type (a saved session, see [`crate::session_file`]).
    fn kv_read(&mut self, n_tokens: usize) -> Result<crate::kv_state::KvState>;
    /// Writes `state`'s rows into positions `0..state.n_tokens` of the cache
    /// (checked with [`crate::kv_state::KvState::check`] first: a state of
    /// another layout or type is an error, nothing is written).
    fn kv_write(&mut self, state: &crate::kv_state::KvState) -> Result<()>;
}

/// A named intermediate of a pass: `rows × width` f32 values, its rows the
/// pass's tokens (a later pass appends its rows).
#[derive(Debug, Clone, PartialEq)]
pub struct Dumped {
    /// `attn_norm-3`, `ffn_out-3`, `l_out-3` … (the layer after the dash).
    pub name: String,
    pub width: usize,
    pub data: Vec<f32>,
}

impl Dumped {
    /// `name-il`, or `name` for tensors outside the layers.
    pub fn key(name: &str, il: Option<usize>) -> String {
        match il {
            Some(il) => format!("{name}-{il}"),
            None => name.to_string(),
        }
    }

    /// Appends `rows` (a multiple of `width`) under `name`, in first-seen order.
    pub fn push(list: &mut Vec<Dumped>, name: String, width: usize, rows: &[f32]) {
        match list.iter_mut().find(|d| d.name == name) {
            Some(d) => d.data.extend_from_slice(rows),
            None => list.push(Dumped { name, width, data: rows.to_vec() }),
        }
    }
}
