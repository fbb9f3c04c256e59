//! Row-interleaved tiles for prompt processing.
//!
//! A 1-token `vec_dot` reduces one weight row with one activation row, and in
//! prompt processing its per-block overhead (decoding nibbles and fp16
//! scales, a horizontal sum per output) dominates. A tile kernel instead
//! works on a *strip* of [`ROWS`] weight rows repacked on the fly (ggml's
//! Q4_0_8x8 repack idea, but per matmul into a small buffer, so no second
//! copy of the weights is kept): the quants are decoded to bytes and
//! interleaved 4 bytes per row, so one u8·i8 dot instruction with 4 bytes of
//! a token broadcast gives all 8 rows' partial sums, and the scales are f32
//! vectors over the 8 rows. Each strip is packed once and then dotted with
//! every token of the batch, so packing costs ~1/n_tok of the work.
//!
//! Twelve formats share four layouts, their quants always unsigned bytes
//! `0..=`[`Quants::QMAX`] (element e of row r at `qs[32·(e/4) + 4r + e%4]`):
//! - [`Q4_0x8`]: Q4_0, Q5_0, Q8_0 and IQ4_NL, symmetric 32-blocks: a quant q
//!   stands for q − [`Sym32::OFFSET`] (Q8_0's signed weights and IQ4_NL's
//!   table values are stored + 128);
//! - [`Q4_1x8`]: Q4_1 and Q5_1, 32-blocks with a min;
//! - [`Q4Kx8`]: Q4_K, Q5_K and IQ4_XS, 8 sub-blocks of 32 with scales and
//!   mins (IQ4_XS's table values are stored + 128, its "mins" 128 times the
//!   scale);
//! - [`K16x8`]: Q6_K, Q3_K and Q2_K, 16 sub-blocks of 16 with scales and
//!   mins (Q6_K's and Q3_K's "mins" are their quants' offset, 32 and 4,
//!   times the scale).
//!
//! AVX-512 packs the symmetric 32-block formats into wide strips instead
//! ([`Q4_0x16`]: 16 rows, one per i32 lane of a zmm vector, the same aux),
//! where one `vpdpbusd` per token covers 16 rows (ggml's AVX-512 Q4_0 repack
//! GEMM also runs 16 rows per zmm); [`dot_scalar_wide`] is their twin.
//!
//! Per-token side data (`aux`: the activation block's scale as f32 and its
//! integer sums) is computed once per matmul for all strips. The activations
//! stay in the formats' `vec_dot_type` (Q8_0, Q8_1, Q8_K), so the integer
//! sums are ggml's.
//!
//! [`dot_scalar`] is the scalar twin of the SIMD tile kernels (same integer
//! sums in the same packed layout); the tests also hold pack + twin to the
//! formats' `vec_dot`. For the 32-block formats the f32 steps per block and
//! token are the scalar `vec_dot`'s too, so those tiles equal it bit for bit
//! (a different order flipped a borderline top-1 token in the SmolLM2
//! reference test); the K-quants' differ from it only in the accumulation order.

use crate::quant::common::q3k_scales;
use crate::quant::iq4_nl::{BlockIQ4NL, KVALUES_IQ4NL};
use crate::quant::iq4_xs::{self, BlockIQ4XS};
use crate::quant::q2_k::BlockQ2K;
use crate::quant::q3_k::BlockQ3K;
use crate::quant::q4_0::BlockQ4_0;
use crate::quant::q4_1::BlockQ4_1;
use crate::quant::q4_k::BlockQ4K;
use crate::quant::q5_0::BlockQ5_0;
use crate::quant::q5_1::BlockQ5_1;
use crate::quant::q5_k::BlockQ5K;
use crate::quant::q6_k::BlockQ6K;
use crate::quant::q8_0::BlockQ8_0;
use crate::quant::q8_1::BlockQ8_1;
use crate::quant::q8_k::BlockQ8K;
use crate::quant::{f16_to_f32, scale_min_k4, GgmlType, QK_K};

/// Weight rows per strip (one i32 lane per row in a 256-bit vector).
pub const ROWS: usize = 8;
/// Most tokens per kernel call (the accumulators stay in registers).
pub const TOKS: usize = 4;
/// From this many tokens on, the strips (where the table has them for the
/// format, and from [`TileFormat::min_tok`]) replace the row kernels.
/// Packing a strip costs as much as 10–25 tokens of its dots, but those are
/// 3–6× faster than the row kernels (x86, `simd::bench`): at 4 tokens the
/// two are at par (Q2_K and Q3_K 10× faster; Q4_K, Q5_1, Q6_K up to a third
/// slower), from 8 on the strips are faster for every format but the IQ4s.
pub const MIN_TOK: usize = 4;

/// Weight rows per wide strip ([`Q4_0x16`]: one i32 lane per row in a
/// 512-bit vector, for AVX-512).
pub const WIDE_ROWS: usize = 16;
/// Most tokens per wide kernel call: 2 × 8 i32 accumulators and 8 f32 ones
/// stay in AVX-512's 32 registers, and each 64-byte weight load serves 8
/// tokens.
pub const WIDE_TOKS: usize = 8;

/// `[token][row]` dots of a packed strip with up to [`TOKS`] tokens:
/// `(n, packed strip, activation rows, their aux)`; `act.len() == aux.len()`.
pub type TileDotFn = fn(usize, &[u8], &[&[u8]], &[&[u8]]) -> [[f32; ROWS]; TOKS];

/// Q4_0/Q5_0/Q8_0 strip, per 32-block: the 8 rows' scales and their 32
/// quants as bytes, `qs[32k + 4r + i]` = row r, element 4k + i.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Q4_0x8 {
    pub d: [f32; ROWS],
    pub qs: [u8; 32 * ROWS],
}

/// `[token][row]` dots of a packed wide strip with up to [`WIDE_TOKS`] tokens,
/// as [`TileDotFn`].
pub type WideDotFn = fn(usize, &[u8], &[&[u8]], &[&[u8]]) -> [[f32; WIDE_ROWS]; WIDE_TOKS];

/// Packs strip rows of `n` elements (`w`: the rows, one after another) into `dst`.
pub type PackFn = fn(usize, &[u8], &mut [u8]);

/// [`Q4_0x8`] over [`WIDE_ROWS`] rows (`qs[64k + 4r + i]` = row r, element
/// 4k + i): one 64-byte load gives 16 rows' 4 quants for one `vpdpbusd`
/// on zmm, so a token's broadcast 4 bytes and the f32 steps per block serve
/// twice the rows of an 8-row strip. Exactly two [`Q4_0x8`]s in size.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Q4_0x16 {
    pub d: [f32; WIDE_ROWS],
    pub qs: [u8; 32 * WIDE_ROWS],
}

/// Q4_1/Q5_1 strip: [`Q4_0x8`] plus the rows' mins.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Q4_1x8 {
    pub d: [f32; ROWS],
    pub m: [f32; ROWS],
    pub qs: [u8; 32 * ROWS],
}

/// Q4_K/Q5_K strip, per super-block: scales, the 6-bit sub-block scales as
/// [`sc_pair`]s (`sc[j][r]`), the mins as i16 pairs for `madd` (`mn[p][2r + h]`
/// = row r, sub-block 2p + h) and the quants as bytes, `qs[256j + 32k + 4r + i]`
/// = row r, element 32j + 4k + i.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Q4Kx8 {
    pub d: [f32; ROWS],
    pub dmin: [f32; ROWS],
    pub sc: [[i32; ROWS]; 8],
    pub mn: [[i16; 2 * ROWS]; 4],
    pub qs: [u8; QK_K * ROWS],
}

/// Q6_K/Q3_K/Q2_K strip: [`Q4Kx8`] with 16 sub-blocks of 16 (`qs[128j +
/// 32k + 4r + i]` = row r, element 16j + 4k + i). Q6_K and Q3_K have no
/// dmin: their `dmin` is `d`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct K16x8 {
    pub d: [f32; ROWS],
    pub dmin: [f32; ROWS],
    pub sc: [[i32; ROWS]; 16],
    pub mn: [[i16; 2 * ROWS]; 8],
    pub qs: [u8; QK_K * ROWS],
}

/// Per Q8_0 activation block: its scale and Σq (for the offsets of Q4_0, Q5_0, Q8_0).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Q8_0Aux {
    pub d: f32,
    pub sum: i32,
}

/// Per Q8_1 activation block: its scale and its s = d·Σq.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Q8_1Aux {
    pub d: f32,
    pub s: f32,
}

/// Per Q8_K activation block: its scale and the sums of its 8 sub-blocks
/// of 32 as i16 pairs (the Q4_K/Q5_K mins' partners in `madd`; the
/// [`K16x8`] kernels read the per-16 sums from the Q8_K block itself).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Q8KAux {
    pub d: f32,
    pub bsum2: [[i16; 2]; 4],
}

/// A sub-block scale (|s| < 2^15) in both i16 halves of an i32: AVX2
/// `madd`s its i16 partial sums with it, widening and scaling in one step;
/// the other kernels shift it down ([`sc_of`]).
pub const fn sc_pair(s: i32) -> i32 {
    (s << 16) | (s & 0xFFFF)
}

/// The scale of an [`sc_pair`].
pub const fn sc_of(pair: i32) -> i32 {
    pair >> 16
}

/// How a weight format's quants sit in its strip: unsigned bytes
/// `0..=QMAX` (AVX2's i16 partial sums are sized by it). QMAX > 127: the
/// bytes are signed weights + 128 (Q8_0, IQ4_NL, IQ4_XS) and the format's
/// offset term is 128·Σy ([`Sym32::OFFSET`]; IQ4_XS's mins 128·sc), so a
/// kernel whose u8·i8 products cannot take such bytes (AVX2's i16 sums,
/// NEON's signed `sdot`) flips them back to the signed weights and drops
/// the offset term instead.
pub trait Quants {
    const QMAX: u8;
}

/// A symmetric 32-block format in the [`Q4_0x8`] layout.
pub trait Sym32: Quants {
    /// A packed quant q stands for q − OFFSET: Σ(q − OFFSET)·y = Σq·y − OFFSET·Σy,
    /// Σy from the aux.
    const OFFSET: i32;
    /// The scalar `vec_dot`'s f32 steps per block: (dx·dy)·Σ, else (Σ·dx)·dy (Q4_0's).
    const DXY_FIRST: bool;
}

/// A K-quant super-block strip ([`Q4Kx8`], [`K16x8`]): `SUBS` sub-blocks
/// with a scale and a min each.
pub trait KStrip: bytemuck::Pod {
    const SUBS: usize;
    fn d(&self) -> &[f32; ROWS];
    fn dmin(&self) -> &[f32; ROWS];
    /// Sub-block j's scales of the 8 rows, as [`sc_pair`]s.
    fn sc(&self, j: usize) -> &[i32; ROWS];
    /// Sub-blocks 2p and 2p + 1's mins, `[2r + h]` = row r, sub-block 2p + h.
    fn mn(&self, p: usize) -> &[i16; 2 * ROWS];
    fn qs(&self) -> &[u8; QK_K * ROWS];
    /// Σy over sub-blocks 2p and 2p + 1 of the token's block: the mins' partners.
    fn bsum_pair(a: &Q8KAux, y: &BlockQ8K, p: usize) -> [i16; 2];
}

macro_rules! k_strip_fields {
    () => {
        #[inline(always)]
        fn d(&self) -> &[f32; ROWS] {
            &self.d
        }
        #[inline(always)]
        fn dmin(&self) -> &[f32; ROWS] {
            &self.dmin
        }
        #[inline(always)]
        fn sc(&self, j: usize) -> &[i32; ROWS] {
            &self.sc[j]
        }
        #[inline(always)]
        fn mn(&self, p: usize) -> &[i16; 2 * ROWS] {
            &self.mn[p]
        }
        #[inline(always)]
        fn qs(&self) -> &[u8; QK_K * ROWS] {
            &self.qs
        }
    };
}

impl KStrip for Q4Kx8 {
    const SUBS: usize = 8;
    k_strip_fields!();
    #[inline(always)]
    fn bsum_pair(a: &Q8KAux, _: &BlockQ8K, p: usize) -> [i16; 2] {
        a.bsum2[p]
    }
}

impl KStrip for K16x8 {
    const SUBS: usize = 16;
    k_strip_fields!();
    #[inline(always)]
    fn bsum_pair(_: &Q8KAux, y: &BlockQ8K, p: usize) -> [i16; 2] {
        bytemuck::cast([y.bsums[2 * p], y.bsums[2 * p + 1]])
    }
}

/// A K-quant format: its strip layout and how its min term is scaled.
pub trait KQuant: Quants {
    type X: KStrip;
    /// The mins are the quants' offset times the sub-block scales (Q6_K,
    /// Q3_K): the min term is scaled by d like the sums, so it is subtracted
    /// from them in integers (the scalar `vec_dot` never separates the two);
    /// else it is scaled by dmin (Q4_K, Q5_K, Q2_K).
    const MIN_IS_OFFSET: bool;
}

macro_rules! quants {
    ($($B:ty => $qmax:expr),*) => {$(
        impl Quants for $B {
            const QMAX: u8 = $qmax;
        }
    )*};
}
quants!(BlockQ4_0 => 15, BlockQ5_0 => 31, BlockQ8_0 => 255, BlockQ4_1 => 15, BlockQ5_1 => 31,
    BlockQ4K => 15, BlockQ5K => 31, BlockQ6K => 63, BlockQ3K => 7, BlockQ2K => 3);

// ------------------------------------------------ IQ4_NL, IQ4_XS: table values + 128
quants!(BlockIQ4NL => IQ4_BYTES[15], BlockIQ4XS => IQ4_BYTES[15]);

impl Sym32 for BlockIQ4NL {
    const OFFSET: i32 = 128;
    const DXY_FIRST: bool = true;
}
impl KQuant for BlockIQ4XS {
    type X = Q4Kx8;
    const MIN_IS_OFFSET: bool = true;
}

/// `KVALUES_IQ4NL` + 128 (the sign bit flipped): index → strip byte, 1..=241.
const IQ4_BYTES: [u8; 16] = {
    let mut t = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = KVALUES_IQ4NL[i] as u8 ^ 0x80;
        i += 1;
    }
    t
};

impl Sym32 for BlockQ4_0 {
    const OFFSET: i32 = 8;
    const DXY_FIRST: bool = false;
}
impl Sym32 for BlockQ5_0 {
    const OFFSET: i32 = 16;
    const DXY_FIRST: bool = true;
}
impl Sym32 for BlockQ8_0 {
    const OFFSET: i32 = 128;
    const DXY_FIRST: bool = true;
}

impl KQuant for BlockQ4K {
    type X = Q4Kx8;
    const MIN_IS_OFFSET: bool = false;
}
impl KQuant for BlockQ5K {
    type X = Q4Kx8;
    const MIN_IS_OFFSET: bool = false;
}
impl KQuant for BlockQ6K {
    type X = K16x8;
    const MIN_IS_OFFSET: bool = true;
}
impl KQuant for BlockQ3K {
    type X = K16x8;
    const MIN_IS_OFFSET: bool = true;
}
impl KQuant for BlockQ2K {
    type X = K16x8;
    const MIN_IS_OFFSET: bool = false;
}

/// How one weight format is packed into strips and what its activations' aux is.
pub struct TileFormat {
    /// Bytes of one strip of `n`-element rows.
    pub packed_size: fn(usize) -> usize,
    /// [`ROWS`] consecutive weight rows → one strip.
    pub pack: fn(usize, &[u8], &mut [u8]),
    /// Bytes of one token's aux.
    pub aux_size: fn(usize) -> usize,
    /// One activation row (in `vec_dot_type`) → its aux.
    pub aux: fn(usize, &[u8], &mut [u8]),
    /// Fewest tokens for which the strips beat the row kernels: packing a
    /// strip costs about as much as dotting it with 10–25 tokens (x86,
    /// `simd::bench`), more where the pack looks every quant up in a table.
    pub min_tok: usize,
}

/// The tile layout of `ty`, if it has one.
pub fn format(ty: GgmlType) -> Option<&'static TileFormat> {
    use GgmlType::*;
    match ty {
        Q4_0 => Some(&Q4_0_TILE),
        Q4_1 => Some(&Q4_1_TILE),
        Q4_K => Some(&Q4_K_TILE),
        Q5_0 => Some(&Q5_0_TILE),
        Q5_1 => Some(&Q5_1_TILE),
        Q8_0 => Some(&Q8_0_TILE),
        Q5_K => Some(&Q5_K_TILE),
        Q6_K => Some(&Q6_K_TILE),
        Q3_K => Some(&Q3_K_TILE),
        Q2_K => Some(&Q2_K_TILE),
        IQ4_NL => Some(&IQ4_NL_TILE),
        IQ4_XS => Some(&IQ4_XS_TILE),
        _ => None,
    }
}

/// The wide ([`Q4_0x16`]) pack of `ty`, if it has one: the symmetric
/// 32-block formats. A wide strip of `n`-element rows takes
/// 2 · [`TileFormat::packed_size`] bytes; the aux is the format's.
pub fn pack_wide(ty: GgmlType) -> Option<PackFn> {
    use GgmlType::*;
    match ty {
        Q4_0 => Some(pack_q4_0::<Q4_0x16, WIDE_ROWS>),
        Q5_0 => Some(pack_q5_0::<Q4_0x16, WIDE_ROWS>),
        Q8_0 => Some(pack_q8_0::<Q4_0x16, WIDE_ROWS>),
        IQ4_NL => Some(pack_iq4_nl::<Q4_0x16, WIDE_ROWS>),
        _ => None,
    }
}

/// Bytes of `n` elements as `X`s of `QB` elements each (a strip's or a token's aux).
fn size_of_blocks<X, const QB: usize>(n: usize) -> usize {
    n / QB * std::mem::size_of::<X>()
}

static Q4_0_TILE: TileFormat = TileFormat {
    packed_size: size_of_blocks::<Q4_0x8, 32>,
    pack: pack_q4_0::<Q4_0x8, ROWS>,
    aux_size: size_of_blocks::<Q8_0Aux, 32>,
    aux: aux_q8_0,
    min_tok: MIN_TOK,
};

static Q4_1_TILE: TileFormat = TileFormat {
    packed_size: size_of_blocks::<Q4_1x8, 32>,
    pack: pack_q4_1,
    aux_size: size_of_blocks::<Q8_1Aux, 32>,
    aux: aux_q8_1,
    min_tok: MIN_TOK,
};

static Q4_K_TILE: TileFormat = TileFormat {
    packed_size: size_of_blocks::<Q4Kx8, QK_K>,
    pack: pack_q4_k,
    aux_size: size_of_blocks::<Q8KAux, QK_K>,
    aux: aux_q8_k,
    min_tok: MIN_TOK,
};

// ------------------------------------------------ formats sharing the layouts above

static Q5_0_TILE: TileFormat = TileFormat { pack: pack_q5_0::<Q4_0x8, ROWS>, ..Q4_0_TILE };
static Q8_0_TILE: TileFormat = TileFormat { pack: pack_q8_0::<Q4_0x8, ROWS>, ..Q4_0_TILE };
static Q5_1_TILE: TileFormat = TileFormat { pack: pack_q5_1, ..Q4_1_TILE };
static Q5_K_TILE: TileFormat = TileFormat { pack: pack_q5_k, ..Q4_K_TILE };

static Q6_K_TILE: TileFormat = TileFormat {
    packed_size: size_of_blocks::<K16x8, QK_K>,
    pack: pack_q6_k,
    aux_size: size_of_blocks::<Q8KAux, QK_K>,
    aux: aux_q8_k,
    min_tok: MIN_TOK,
};
static Q3_K_TILE: TileFormat = TileFormat { pack: pack_q3_k, ..Q6_K_TILE };
static Q2_K_TILE: TileFormat = TileFormat { pack: pack_q2_k, ..Q6_K_TILE };
// The IQ4 packs look each quant up in the non-linear table: ~5× Q8_0's
// pack, so their strips win from ~16 tokens on (4 tokens: 2.5× slower
// than the row kernels, 16: par-to-faster; x86 `bench_prompt_matmul`).
static IQ4_NL_TILE: TileFormat = TileFormat { pack: pack_iq4_nl::<Q4_0x8, ROWS>, min_tok: 16, ..Q4_0_TILE };
static IQ4_XS_TILE: TileFormat = TileFormat { pack: pack_iq4_xs, min_tok: 16, ..Q4_K_TILE };

fn aux_q8_0(_: usize, act: &[u8], dst: &mut [u8]) {
    let y: &[BlockQ8_0] = bytemuck::cast_slice(act);
    for (a, y) in bytemuck::cast_slice_mut::<u8, Q8_0Aux>(dst).iter_mut().zip(y) {
        *a = Q8_0Aux { d: f16_to_f32(y.d), sum: y.qs.iter().map(|&q| q as i32).sum() };
    }
}

fn aux_q8_1(_: usize, act: &[u8], dst: &mut [u8]) {
    let y: &[BlockQ8_1] = bytemuck::cast_slice(act);
    for (a, y) in bytemuck::cast_slice_mut::<u8, Q8_1Aux>(dst).iter_mut().zip(y) {
        *a = Q8_1Aux { d: f16_to_f32(y.d), s: f16_to_f32(y.s) };
    }
}

fn aux_q8_k(_: usize, act: &[u8], dst: &mut [u8]) {
    let y: &[BlockQ8K] = bytemuck::cast_slice(act);
    for (a, y) in bytemuck::cast_slice_mut::<u8, Q8KAux>(dst).iter_mut().zip(y) {
        let b = |j: usize| (y.bsum(2 * j) + y.bsum(2 * j + 1)) as i16;
        *a = Q8KAux { d: y.d(), bsum2: std::array::from_fn(|p| [b(2 * p), b(2 * p + 1)]) };
    }
}

// ---------------------------------------------------------------- packing
//
// Each format decodes a row's block to its quants in element order, as
// words of 4 quant bytes (word operations, no per-element branches or
// shifts), then [`put_words`] writes them into the strip layout.

/// Packs `nb` blocks of the strip's `R` rows of `w` into `dst`'s strip
/// blocks: `put(block, strip block, row)`.
#[inline(always)]
fn pack_strip<B: bytemuck::Pod, X: bytemuck::Pod, const R: usize>(nb: usize, w: &[u8], dst: &mut [u8], put: impl Fn(&B, &mut X, usize)) {
    let len = w.len() / R;
    let rows: [&[B]; R] = std::array::from_fn(|r| bytemuck::cast_slice(&w[r * len..(r + 1) * len]));
    let out: &mut [X] = bytemuck::cast_slice_mut(dst);
    for (b, o) in out.iter_mut().enumerate().take(nb) {
        for (r, row) in rows.iter().enumerate() {
            put(&row[b], o, r);
        }
    }
}

/// Little-endian word k (bytes 4k..4k + 4) of `q`.
#[inline(always)]
fn word(q: &[u8], k: usize) -> u32 {
    u32::from_le_bytes(q[4 * k..4 * k + 4].try_into().unwrap())
}

/// Row r's quants, as words of 4 in element order, into a strip block's
/// `qs` (element e of row r at 32·(e/4) + 4r + e%4).
#[inline(always)]
fn put_words<const W: usize>(qs: &mut [u8], r: usize, q: [u32; W]) {
    put_words_n::<W, ROWS>(qs, r, q)
}

/// [`put_words`] for a strip of `R` rows (element e of row r at 4R·(e/4) + 4r + e%4).
#[inline(always)]
fn put_words_n<const W: usize, const R: usize>(qs: &mut [u8], r: usize, q: [u32; W]) {
    for (k, q) in q.into_iter().enumerate() {
        qs[4 * R * k + 4 * r..4 * R * k + 4 * r + 4].copy_from_slice(&q.to_le_bytes());
    }
}

/// A [`Q4_0x8`] (R = [`ROWS`]) or [`Q4_0x16`] (R = [`WIDE_ROWS`]) block:
/// its rows' scales and quants.
trait Sym32Block: bytemuck::Pod {
    fn parts(&mut self) -> (&mut [f32], &mut [u8]);
}
impl Sym32Block for Q4_0x8 {
    #[inline(always)]
    fn parts(&mut self) -> (&mut [f32], &mut [u8]) {
        (&mut self.d, &mut self.qs)
    }
}
impl Sym32Block for Q4_0x16 {
    #[inline(always)]
    fn parts(&mut self) -> (&mut [f32], &mut [u8]) {
        (&mut self.d, &mut self.qs)
    }
}

/// Packs a symmetric 32-block format into strips of `R` rows, blocks `X`
/// ([`Q4_0x8`] with [`ROWS`], [`Q4_0x16`] with [`WIDE_ROWS`]): `words(block)`
/// gives a row's scale and its 32 quants as 8 words.
#[inline(always)]
fn pack_sym32<B: bytemuck::Pod, X: Sym32Block, const R: usize>(n: usize, w: &[u8], dst: &mut [u8], words: impl Fn(&B) -> (f32, [u32; 8])) {
    debug_assert_eq!(std::mem::size_of::<X>(), R * (4 + 32));
    pack_strip::<B, X, R>(n / 32, w, dst, |x, o, r| {
        let (d, q) = words(x);
        let (od, oq) = o.parts();
        od[r] = d;
        put_words_n::<8, R>(oq, r, q);
    });
}

const M4: u32 = 0x0F0F_0F0F;
const M2: u32 = 0x0303_0303;
const M1: u32 = 0x0101_0101;

/// 4W bytes of nibbles → (low nibbles, high nibbles) as W words of 4 quants.
#[inline(always)]
fn nibble_words<const W: usize>(q: &[u8]) -> ([u32; W], [u32; W]) {
    (std::array::from_fn(|k| word(q, k) & M4), std::array::from_fn(|k| (word(q, k) >> 4) & M4))
}

/// Bits 0..4 of `bits` → bit 4 of bytes 0..4: four quants' fifth bits
/// (the multiply moves bit i to bit 8i; the shifted copies do not overlap).
#[inline(always)]
fn fifth_bits(bits: u32) -> u32 {
    (((bits & 0xF) * 0x0020_4081) & M1) << 4
}

/// A Q4_0/Q4_1 block's quants: low nibbles are elements 0..16, high ones 16..32.
#[inline(always)]
fn q4_words(qs: &[u8; 16]) -> [u32; 8] {
    let (lo, hi) = nibble_words::<4>(qs);
    std::array::from_fn(|k| if k < 4 { lo[k] } else { hi[k - 4] })
}

/// A Q5_0/Q5_1 block's quants: its nibbles plus the fifth bits of `qh` (bit e: element e).
#[inline(always)]
fn q5_words(qs: &[u8; 16], qh: [u8; 4]) -> [u32; 8] {
    let (q4, qh) = (q4_words(qs), u32::from_le_bytes(qh));
    std::array::from_fn(|k| q4[k] | fifth_bits(qh >> (4 * k)))
}

fn pack_q4_0<X: Sym32Block, const R: usize>(n: usize, w: &[u8], dst: &mut [u8]) {
    pack_sym32::<BlockQ4_0, X, R>(n, w, dst, |x| (f16_to_f32(x.d), q4_words(&x.qs)));
}

fn pack_q4_1(n: usize, w: &[u8], dst: &mut [u8]) {
    pack_strip::<_, _, ROWS>(n / 32, w, dst, |x: &BlockQ4_1, o: &mut Q4_1x8, r| {
        (o.d[r], o.m[r]) = (f16_to_f32(x.d), f16_to_f32(x.m));
        put_words(&mut o.qs, r, q4_words(&x.qs));
    });
}

fn pack_q5_0<X: Sym32Block, const R: usize>(n: usize, w: &[u8], dst: &mut [u8]) {
    pack_sym32::<BlockQ5_0, X, R>(n, w, dst, |x| (f16_to_f32(x.d), q5_words(&x.qs, x.qh)));
}

fn pack_q5_1(n: usize, w: &[u8], dst: &mut [u8]) {
    pack_strip::<_, _, ROWS>(n / 32, w, dst, |x: &BlockQ5_1, o: &mut Q4_1x8, r| {
        (o.d[r], o.m[r]) = (f16_to_f32(x.d), f16_to_f32(x.m));
        put_words(&mut o.qs, r, q5_words(&x.qs, x.qh));
    });
}

fn pack_q8_0<X: Sym32Block, const R: usize>(n: usize, w: &[u8], dst: &mut [u8]) {
    pack_sym32::<BlockQ8_0, X, R>(n, w, dst, |x| {
        // w + 128 (the sign bit flipped): unsigned, see `Sym32::OFFSET`.
        let qs: &[u8] = bytemuck::cast_slice(&x.qs);
        (f16_to_f32(x.d), std::array::from_fn(|k| word(qs, k) ^ 0x8080_8080))
    });
}

/// Row r's sub-block scales and mins into a K strip block's `sc` and `mn`.
#[inline(always)]
fn put_scales<const S: usize, const P: usize>(
    sc: &mut [[i32; ROWS]; S],
    mn: &mut [[i16; 2 * ROWS]; P],
    r: usize,
    scale: impl Fn(usize) -> i32,
    min: impl Fn(usize) -> i32,
) {
    for j in 0..S {
        sc[j][r] = sc_pair(scale(j));
        mn[j / 2][2 * r + j % 2] = min(j) as i16;
    }
}

/// A Q4_K/Q5_K block's quants: 32 bytes of `qs` per pair of sub-blocks
/// (low nibbles sub-block 2c, high nibbles 2c + 1), or'ed with `high(c, m)`,
/// the fifth bits of word m of both.
#[inline(always)]
fn k4_words(qs: &[u8; QK_K / 2], high: impl Fn(usize, usize) -> (u32, u32)) -> [u32; QK_K / 4] {
    let mut q = [0u32; QK_K / 4];
    for c in 0..4 {
        let (lo, hi) = nibble_words::<8>(&qs[32 * c..32 * c + 32]);
        for m in 0..8 {
            let (h0, h1) = high(c, m);
            (q[16 * c + m], q[16 * c + 8 + m]) = (lo[m] | h0, hi[m] | h1);
        }
    }
    q
}

fn pack_q4_k(n: usize, w: &[u8], dst: &mut [u8]) {
    pack_strip::<_, _, ROWS>(n / QK_K, w, dst, |x: &BlockQ4K, o: &mut Q4Kx8, r| {
        (o.d[r], o.dmin[r]) = (f16_to_f32(x.d), f16_to_f32(x.dmin));
        let (sc, mn) = scale_min_k4(&x.scales);
        put_scales(&mut o.sc, &mut o.mn, r, |j| sc[j] as i32, |j| mn[j] as i32);
        put_words(&mut o.qs, r, k4_words(&x.qs, |_, _| (0, 0)));
    });
}

fn pack_q5_k(n: usize, w: &[u8], dst: &mut [u8]) {
    pack_strip::<_, _, ROWS>(n / QK_K, w, dst, |x: &BlockQ5K, o: &mut Q4Kx8, r| {
        (o.d[r], o.dmin[r]) = (f16_to_f32(x.d), f16_to_f32(x.dmin));
        let (sc, mn) = scale_min_k4(&x.scales);
        put_scales(&mut o.sc, &mut o.mn, r, |j| sc[j] as i32, |j| mn[j] as i32);
        // Bit 2c of qh[l] is element 64c + l's fifth bit, bit 2c + 1 element 64c + 32 + l's.
        let q = k4_words(&x.qs, |c, m| {
            let h = word(&x.qh, m);
            (((h >> (2 * c)) & M1) << 4, ((h >> (2 * c + 1)) & M1) << 4)
        });
        put_words(&mut o.qs, r, q);
    });
}

fn pack_q6_k(n: usize, w: &[u8], dst: &mut [u8]) {
    pack_strip::<_, _, ROWS>(n / QK_K, w, dst, |x: &BlockQ6K, o: &mut K16x8, r| {
        o.d[r] = f16_to_f32(x.d);
        o.dmin[r] = o.d[r];
        // q − 32 = q with the min 32·sc.
        put_scales(&mut o.sc, &mut o.mn, r, |j| x.scales[j] as i32, |j| 32 * x.scales[j] as i32);
        put_words(&mut o.qs, r, q6_k_words(x));
    });
}

/// A Q6_K block's quants (0..64): per half h, element 128h + 32s + l takes
/// the low (s < 2) or high nibble of ql[64h + 32(s % 2) + l] and bits
/// 2s..2s + 2 of qh[32h + l].
#[inline(always)]
fn q6_k_words(x: &BlockQ6K) -> [u32; QK_K / 4] {
    let mut q = [0u32; QK_K / 4];
    for h in 0..2 {
        let (ql, qh) = (&x.ql[64 * h..64 * h + 64], &x.qh[32 * h..32 * h + 32]);
        for m in 0..8 {
            let (l0, l1, hb) = (word(ql, m), word(ql, 8 + m), word(qh, m));
            let k = 32 * h + m;
            q[k] = (l0 & M4) | ((hb & M2) << 4);
            q[k + 8] = (l1 & M4) | (((hb >> 2) & M2) << 4);
            q[k + 16] = ((l0 >> 4) & M4) | (((hb >> 4) & M2) << 4);
            q[k + 24] = ((l1 >> 4) & M4) | (((hb >> 6) & M2) << 4);
        }
    }
    q
}

/// A Q3_K/Q2_K block's 2-bit quants, or'ed with `high(n, j, m)`: element
/// 128n + 32j + l is bits 2j..2j + 2 of qs[32n + l].
#[inline(always)]
fn two_bit_words(qs: &[u8; QK_K / 4], high: impl Fn(usize, usize, usize) -> u32) -> [u32; QK_K / 4] {
    let mut q = [0u32; QK_K / 4];
    for n in 0..2 {
        for j in 0..4 {
            for m in 0..8 {
                q[32 * n + 8 * j + m] = ((word(&qs[32 * n..], m) >> (2 * j)) & M2) | high(n, j, m);
            }
        }
    }
    q
}

fn pack_q3_k(n: usize, w: &[u8], dst: &mut [u8]) {
    pack_strip::<_, _, ROWS>(n / QK_K, w, dst, |x: &BlockQ3K, o: &mut K16x8, r| {
        o.d[r] = f16_to_f32(x.d);
        o.dmin[r] = o.d[r];
        // The quant is (2 bits + 4·hmask bit) − 4: stored 0..8 with the min 4·sc.
        let sc = q3k_scales(&x.scales);
        put_scales(&mut o.sc, &mut o.mn, r, |j| sc[j] as i32, |j| 4 * sc[j] as i32);
        put_words(&mut o.qs, r, two_bit_words(&x.qs, |n, j, m| ((word(&x.hmask, m) >> (4 * n + j)) & M1) << 2));
    });
}

fn pack_q2_k(n: usize, w: &[u8], dst: &mut [u8]) {
    pack_strip::<_, _, ROWS>(n / QK_K, w, dst, |x: &BlockQ2K, o: &mut K16x8, r| {
        (o.d[r], o.dmin[r]) = (f16_to_f32(x.d), f16_to_f32(x.dmin));
        put_scales(&mut o.sc, &mut o.mn, r, |j| (x.scales[j] & 0xF) as i32, |j| (x.scales[j] >> 4) as i32);
        put_words(&mut o.qs, r, two_bit_words(&x.qs, |_, _, _| 0));
    });
}

/// An IQ4_NL block's (or IQ4_XS sub-block's) 16 index bytes (Q4_0's nibble
/// order) → its 32 quants as their table values + 128.
#[inline(always)]
fn iq4_words(qs: &[u8; 16]) -> [u32; 8] {
    q4_words(qs).map(|w| u32::from_le_bytes(w.to_le_bytes().map(|i| IQ4_BYTES[i as usize])))
}

fn pack_iq4_nl<X: Sym32Block, const R: usize>(n: usize, w: &[u8], dst: &mut [u8]) {
    pack_sym32::<BlockIQ4NL, X, R>(n, w, dst, |x| (f16_to_f32(x.d), iq4_words(&x.qs)));
}

fn pack_iq4_xs(n: usize, w: &[u8], dst: &mut [u8]) {
    pack_strip::<_, _, ROWS>(n / QK_K, w, dst, |x: &BlockIQ4XS, o: &mut Q4Kx8, r| {
        o.d[r] = f16_to_f32(x.d);
        o.dmin[r] = o.d[r];
        // kvalue = byte − 128: the min 128·sc, with the scales ls − 32 (signed).
        let sc = iq4_xs::scales(x);
        put_scales(&mut o.sc, &mut o.mn, r, |j| sc[j] as i32, |j| 128 * sc[j] as i32);
        let mut q = [0u32; QK_K / 4];
        for (j, qs) in x.qs.iter().enumerate() {
            q[8 * j..8 * j + 8].copy_from_slice(&iq4_words(qs));
        }
        put_words(&mut o.qs, r, q);
    });
}

// ---------------------------------------------------------------- scalar twin

/// The scalar twin of the SIMD tile kernels: the same integer sums from the
/// same packed layout, accumulated in f32 per row and token.
pub fn dot_scalar(ty: GgmlType, n: usize, packed: &[u8], act: &[&[u8]], aux: &[&[u8]]) -> [[f32; ROWS]; TOKS] {
    use GgmlType::*;
    let dot: TwinFn = match ty {
        Q4_0 => twin_sym32::<BlockQ4_0>,
        Q5_0 => twin_sym32::<BlockQ5_0>,
        Q8_0 => twin_sym32::<BlockQ8_0>,
        Q4_1 | Q5_1 => twin_min32,
        Q4_K => twin_k::<BlockQ4K>,
        Q5_K => twin_k::<BlockQ5K>,
        Q6_K => twin_k::<BlockQ6K>,
        Q3_K => twin_k::<BlockQ3K>,
        Q2_K => twin_k::<BlockQ2K>,
        IQ4_NL => twin_sym32::<BlockIQ4NL>,
        IQ4_XS => twin_k::<BlockIQ4XS>,
        _ => unreachable!("no tile layout for {ty}"),
    };
    let mut out = [[0f32; ROWS]; TOKS];
    for (t, (act, aux)) in act.iter().zip(aux).enumerate() {
        for (r, o) in out[t].iter_mut().enumerate() {
            *o = dot(n, packed, act, aux, r);
        }
    }
    out
}

/// [`dot_scalar`] for a wide ([`Q4_0x16`]) strip: the same integer sums
/// and f32 steps per row as the 8-row twin.
pub fn dot_scalar_wide(ty: GgmlType, n: usize, packed: &[u8], act: &[&[u8]], aux: &[&[u8]]) -> [[f32; WIDE_ROWS]; WIDE_TOKS] {
    use GgmlType::*;
    let dot = match ty {
        Q4_0 => twin_sym32_n::<BlockQ4_0, Q4_0x16>,
        Q5_0 => twin_sym32_n::<BlockQ5_0, Q4_0x16>,
        Q8_0 => twin_sym32_n::<BlockQ8_0, Q4_0x16>,
        IQ4_NL => twin_sym32_n::<BlockIQ4NL, Q4_0x16>,
        _ => unreachable!("no wide tile layout for {ty}"),
    };
    let mut out = [[0f32; WIDE_ROWS]; WIDE_TOKS];
    for (t, (act, aux)) in act.iter().zip(aux).enumerate() {
        for (r, o) in out[t].iter_mut().enumerate() {
            *o = dot(n, packed, act, aux, r);
        }
    }
    out
}

/// One row's dot in the twin: `(n, packed strip, activation row, its aux, row) -> dot`.
type TwinFn = fn(usize, &[u8], &[u8], &[u8], usize) -> f32;

/// Row r's quant of element e in a strip block's `qs`.
fn q_at(qs: &[u8], r: usize, e: usize) -> i32 {
    qs[32 * (e / 4) + 4 * r + e % 4] as i32
}

fn twin_sym32<F: Sym32>(n: usize, packed: &[u8], act: &[u8], aux: &[u8], r: usize) -> f32 {
    twin_sym32_n::<F, Q4_0x8>(n, packed, act, aux, r)
}

/// [`twin_sym32`] over strips of `X` ([`Q4_0x8`] or [`Q4_0x16`]).
fn twin_sym32_n<F: Sym32, X: Sym32Block>(n: usize, packed: &[u8], act: &[u8], aux: &[u8], r: usize) -> f32 {
    let (x, y, a): (&[X], &[BlockQ8_0], &[Q8_0Aux]) = (bytemuck::cast_slice(packed), bytemuck::cast_slice(act), bytemuck::cast_slice(aux));
    let mut s = 0f32;
    for b in 0..n / 32 {
        let mut xb = x[b];
        let (d, qs) = xb.parts();
        let rows = d.len();
        let q = |e: usize| qs[4 * rows * (e / 4) + 4 * r + e % 4] as i32;
        let sumi = (0..32).map(|e| q(e) * y[b].qs[e] as i32).sum::<i32>() - F::OFFSET * a[b].sum;
        let (dx, dy, sumi) = (d[r], a[b].d, sumi as f32);
        s += if F::DXY_FIRST { (dx * dy) * sumi } else { sumi * dx * dy };
    }
    s
}

fn twin_min32(n: usize, packed: &[u8], act: &[u8], aux: &[u8], r: usize) -> f32 {
    let (x, y, a): (&[Q4_1x8], &[BlockQ8_1], &[Q8_1Aux]) =
        (bytemuck::cast_slice(packed), bytemuck::cast_slice(act), bytemuck::cast_slice(aux));
    let mut s = 0f32;
    for b in 0..n / 32 {
        let sumi: i32 = (0..32).map(|e| q_at(&x[b].qs, r, e) * y[b].qs[e] as i32).sum();
        s += (x[b].d[r] * a[b].d) * sumi as f32 + x[b].m[r] * a[b].s;
    }
    s
}

fn twin_k<F: KQuant>(n: usize, packed: &[u8], act: &[u8], aux: &[u8], r: usize) -> f32 {
    let (x, y, a): (&[F::X], &[BlockQ8K], &[Q8KAux]) = (bytemuck::cast_slice(packed), bytemuck::cast_slice(act), bytemuck::cast_slice(aux));
    let len = QK_K / F::X::SUBS;
    let mut s = 0f32;
    for b in 0..n / QK_K {
        let (mut sumi, mut summ) = (0i32, 0i32);
        for j in 0..F::X::SUBS {
            let isum: i32 = (len * j..len * (j + 1)).map(|e| q_at(x[b].qs(), r, e) * y[b].qs[e] as i32).sum();
            sumi += sc_of(x[b].sc(j)[r]) * isum;
            let bsum = F::X::bsum_pair(&a[b], &y[b], j / 2)[j % 2] as i32;
            summ += x[b].mn(j / 2)[2 * r + j % 2] as i32 * bsum;
        }
        let (d, dy) = (x[b].d()[r], a[b].d);
        s += if F::MIN_IS_OFFSET { d * dy * (sumi - summ) as f32 } else { d * dy * sumi as f32 - x[b].dmin()[r] * dy * summ as f32 };
    }
    s
}
