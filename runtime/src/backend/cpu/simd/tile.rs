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
//! Per-token side data (`aux`: the activation block's scale as f32 and its
//! integer sums) is computed once per matmul for all strips.
//!
//! [`dot_scalar`] is the scalar twin of the SIMD tile kernels (same integer
//! sums in the same packed layout); the tests also hold pack + twin to the
//! formats' `vec_dot`. For Q4_0 and Q4_1 the f32 steps per block and token
//! are the scalar `vec_dot`'s too, so those tiles equal it bit for bit (a
//! different order flipped a borderline top-1 token in the SmolLM2
//! reference test); Q4_K's differ from it only in the accumulation order.

use crate::quant::q4_0::BlockQ4_0;
use crate::quant::q4_1::BlockQ4_1;
use crate::quant::q4_k::BlockQ4K;
use crate::quant::q8_0::BlockQ8_0;
use crate::quant::q8_1::BlockQ8_1;
use crate::quant::q8_k::BlockQ8K;
use crate::quant::{f16_to_f32, scale_min_k4, GgmlType, QK_K};

/// Weight rows per strip (one i32 lane per row in a 256-bit vector).
pub const ROWS: usize = 8;
/// Most tokens per kernel call (the accumulators stay in registers).
pub const TOKS: usize = 4;

/// `[token][row]` dots of a packed strip with up to [`TOKS`] tokens:
/// `(n, packed strip, activation rows, their aux)`; `act.len() == aux.len()`.
pub type TileDotFn = fn(usize, &[u8], &[&[u8]], &[&[u8]]) -> [[f32; ROWS]; TOKS];

/// Q4_0 strip, per 32-block: the 8 rows' scales and their 32 quants (0..16)
/// as bytes, `qs[32k + 4r + i]` = row r, element 4k + i.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Q4_0x8 {
    pub d: [f32; ROWS],
    pub qs: [u8; 32 * ROWS],
}

/// Q4_1 strip: [`Q4_0x8`] plus the rows' mins.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Q4_1x8 {
    pub d: [f32; ROWS],
    pub m: [f32; ROWS],
    pub qs: [u8; 32 * ROWS],
}

/// Q4_K strip, per super-block: scales, the 6-bit sub-block scales as i32
/// (`sc[j][r]`), the mins as i16 pairs for `madd` (`mn[p][2r + h]` = row r,
/// sub-block 2p + h) and the quants as bytes, `qs[256j + 32k + 4r + i]` =
/// row r, element 32j + 4k + i.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Q4Kx8 {
    pub d: [f32; ROWS],
    pub dmin: [f32; ROWS],
    pub sc: [[i32; ROWS]; 8],
    pub mn: [[i16; 2 * ROWS]; 4],
    pub qs: [u8; QK_K * ROWS],
}

/// Per Q8_0 activation block: its scale and Σq (for Q4_0's −8 offset).
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
/// of 32 as i16 pairs (the mins' partners in `madd`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Q8KAux {
    pub d: f32,
    pub bsum2: [[i16; 2]; 4],
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
}

/// The tile layout of `ty`, if it has one.
pub fn format(ty: GgmlType) -> Option<&'static TileFormat> {
    match ty {
        GgmlType::Q4_0 => Some(&Q4_0_TILE),
        GgmlType::Q4_1 => Some(&Q4_1_TILE),
        GgmlType::Q4_K => Some(&Q4_K_TILE),
        _ => None,
    }
}

static Q4_0_TILE: TileFormat = TileFormat {
    packed_size: |n| n / 32 * std::mem::size_of::<Q4_0x8>(),
    pack: pack_q4_0,
    aux_size: |n| n / 32 * std::mem::size_of::<Q8_0Aux>(),
    aux: |_, act, dst| {
        let y: &[BlockQ8_0] = bytemuck::cast_slice(act);
        for (a, y) in bytemuck::cast_slice_mut::<u8, Q8_0Aux>(dst).iter_mut().zip(y) {
            *a = Q8_0Aux { d: f16_to_f32(y.d), sum: y.qs.iter().map(|&q| q as i32).sum() };
        }
    },
};

static Q4_1_TILE: TileFormat = TileFormat {
    packed_size: |n| n / 32 * std::mem::size_of::<Q4_1x8>(),
    pack: pack_q4_1,
    aux_size: |n| n / 32 * std::mem::size_of::<Q8_1Aux>(),
    aux: |_, act, dst| {
        let y: &[BlockQ8_1] = bytemuck::cast_slice(act);
        for (a, y) in bytemuck::cast_slice_mut::<u8, Q8_1Aux>(dst).iter_mut().zip(y) {
            *a = Q8_1Aux { d: f16_to_f32(y.d), s: f16_to_f32(y.s) };
        }
    },
};

static Q4_K_TILE: TileFormat = TileFormat {
    packed_size: |n| n / QK_K * std::mem::size_of::<Q4Kx8>(),
    pack: pack_q4_k,
    aux_size: |n| n / QK_K * std::mem::size_of::<Q8KAux>(),
    aux: |_, act, dst| {
        let y: &[BlockQ8K] = bytemuck::cast_slice(act);
        for (a, y) in bytemuck::cast_slice_mut::<u8, Q8KAux>(dst).iter_mut().zip(y) {
            let b = |j: usize| (y.bsum(2 * j) + y.bsum(2 * j + 1)) as i16;
            *a = Q8KAux { d: y.d(), bsum2: std::array::from_fn(|p| [b(2 * p), b(2 * p + 1)]) };
        }
    },
};

/// 4W bytes of nibbles → (low nibbles, high nibbles) as W little-endian
/// words of 4 quant bytes each.
#[inline(always)]
fn nibble_words<const W: usize>(q: &[u8]) -> ([u32; W], [u32; W]) {
    const M: u32 = 0x0F0F_0F0F;
    let v = |k: usize| u32::from_le_bytes(q[4 * k..4 * k + 4].try_into().unwrap());
    (std::array::from_fn(|k| v(k) & M), std::array::from_fn(|k| (v(k) >> 4) & M))
}

/// Writes quant word k (elements 4k..4k+4) of row r into an interleaved group.
#[inline(always)]
fn put(qs: &mut [u8], k: usize, r: usize, word: u32) {
    qs[32 * k + 4 * r..32 * k + 4 * r + 4].copy_from_slice(&word.to_le_bytes());
}

/// Row r's 16 bytes of Q4_0/Q4_1 nibbles into a strip block's `qs`.
#[inline(always)]
fn put_q4(qs: &mut [u8], r: usize, nibbles: &[u8; 16]) {
    // Low nibbles are elements 0..16, high ones 16..32.
    let (lo, hi) = nibble_words::<4>(nibbles);
    for k in 0..4 {
        put(qs, k, r, lo[k]);
        put(qs, k + 4, r, hi[k]);
    }
}

/// The strip's [`ROWS`] rows of `w`, as blocks.
fn strip_rows<B: bytemuck::Pod>(w: &[u8]) -> [&[B]; ROWS] {
    let len = w.len() / ROWS;
    std::array::from_fn(|r| bytemuck::cast_slice(&w[r * len..(r + 1) * len]))
}

fn pack_q4_0(n: usize, w: &[u8], dst: &mut [u8]) {
    let rows = strip_rows::<BlockQ4_0>(w);
    let out: &mut [Q4_0x8] = bytemuck::cast_slice_mut(dst);
    for (b, o) in out.iter_mut().enumerate().take(n / 32) {
        for (r, row) in rows.iter().enumerate() {
            o.d[r] = f16_to_f32(row[b].d);
            put_q4(&mut o.qs, r, &row[b].qs);
        }
    }
}

fn pack_q4_1(n: usize, w: &[u8], dst: &mut [u8]) {
    let rows = strip_rows::<BlockQ4_1>(w);
    let out: &mut [Q4_1x8] = bytemuck::cast_slice_mut(dst);
    for (b, o) in out.iter_mut().enumerate().take(n / 32) {
        for (r, row) in rows.iter().enumerate() {
            (o.d[r], o.m[r]) = (f16_to_f32(row[b].d), f16_to_f32(row[b].m));
            put_q4(&mut o.qs, r, &row[b].qs);
        }
    }
}

fn pack_q4_k(n: usize, w: &[u8], dst: &mut [u8]) {
    let rows = strip_rows::<BlockQ4K>(w);
    let out: &mut [Q4Kx8] = bytemuck::cast_slice_mut(dst);
    for (b, o) in out.iter_mut().enumerate().take(n / QK_K) {
        for (r, row) in rows.iter().enumerate() {
            let x = &row[b];
            o.d[r] = f16_to_f32(x.d);
            o.dmin[r] = f16_to_f32(x.dmin);
            let (sc, mn) = scale_min_k4(&x.scales);
            for j in 0..8 {
                o.sc[j][r] = sc[j] as i32;
                o.mn[j / 2][2 * r + j % 2] = mn[j] as i16;
            }
            // 32 bytes of qs per pair of sub-blocks: low nibbles are
            // sub-block 2c, high nibbles 2c + 1.
            for c in 0..4 {
                let (lo, hi) = nibble_words::<8>(&x.qs[32 * c..32 * c + 32]);
                for (j, words) in [(2 * c, lo), (2 * c + 1, hi)] {
                    for (k, word) in words.into_iter().enumerate() {
                        put(&mut o.qs[256 * j..256 * j + 256], k, r, word);
                    }
                }
            }
        }
    }
}

/// The scalar twin of the SIMD tile kernels: the same integer sums from the
/// same packed layout, accumulated in f32 per row and token.
pub fn dot_scalar(ty: GgmlType, n: usize, packed: &[u8], act: &[&[u8]], aux: &[&[u8]]) -> [[f32; ROWS]; TOKS] {
    let mut out = [[0f32; ROWS]; TOKS];
    for (t, (act, aux)) in act.iter().zip(aux).enumerate() {
        for (r, o) in out[t].iter_mut().enumerate() {
            *o = match ty {
                GgmlType::Q4_0 => {
                    let (x, y, a): (&[Q4_0x8], &[BlockQ8_0], &[Q8_0Aux]) =
                        (bytemuck::cast_slice(packed), bytemuck::cast_slice(act), bytemuck::cast_slice(aux));
                    let mut s = 0f32;
                    for b in 0..n / 32 {
                        let mut sumi = -8 * a[b].sum;
                        for e in 0..32 {
                            sumi += x[b].qs[32 * (e / 4) + 4 * r + e % 4] as i32 * y[b].qs[e] as i32;
                        }
                        s += sumi as f32 * x[b].d[r] * a[b].d;
                    }
                    s
                }
                GgmlType::Q4_1 => {
                    let (x, y, a): (&[Q4_1x8], &[BlockQ8_1], &[Q8_1Aux]) =
                        (bytemuck::cast_slice(packed), bytemuck::cast_slice(act), bytemuck::cast_slice(aux));
                    let mut s = 0f32;
                    for b in 0..n / 32 {
                        let mut sumi = 0;
                        for e in 0..32 {
                            sumi += x[b].qs[32 * (e / 4) + 4 * r + e % 4] as i32 * y[b].qs[e] as i32;
                        }
                        s += (x[b].d[r] * a[b].d) * sumi as f32 + x[b].m[r] * a[b].s;
                    }
                    s
                }
                GgmlType::Q4_K => {
                    let (x, y, a): (&[Q4Kx8], &[BlockQ8K], &[Q8KAux]) =
                        (bytemuck::cast_slice(packed), bytemuck::cast_slice(act), bytemuck::cast_slice(aux));
                    let mut s = 0f32;
                    for b in 0..n / QK_K {
                        let (mut sumi, mut summ) = (0i32, 0i32);
                        for j in 0..8 {
                            let mut isum = 0i32;
                            for e in 0..32 {
                                let q = x[b].qs[256 * j + 32 * (e / 4) + 4 * r + e % 4] as i32;
                                isum += q * y[b].qs[32 * j + e] as i32;
                            }
                            sumi += x[b].sc[j][r] * isum;
                            summ += x[b].mn[j / 2][2 * r + j % 2] as i32 * a[b].bsum2[j / 2][j % 2] as i32;
                        }
                        s += x[b].d[r] * a[b].d * sumi as f32 - x[b].dmin[r] * a[b].d * summ as f32;
                    }
                    s
                }
                _ => unreachable!("no tile layout for {ty}"),
            };
        }
    }
    out
}
