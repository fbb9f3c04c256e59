//! aarch64 kernels: NEON, and the dot-product extension (`sdot`) where the
//! CPU has it (ggml's `__ARM_NEON` / `__ARM_FEATURE_DOTPROD` paths).
//!
//! Each kernel is written once over a [`Dot`] strategy: `Sdot` (one `sdot`
//! per 16 byte pairs) or `Mull` (`smull` + pairwise adds, plain NEON). Both
//! give the same integer sums; the lanes they land in differ, so the kernels
//! only ever use the horizontal sum of a block's lanes. `vdotq_s32` is still
//! unstable in Rust, so `sdot` is one line of inline asm in a function that
//! enables `dotprod`.

use std::arch::aarch64::*;

use super::tile::{KQuant, KStrip, Q4_0x8, Q4_1x8, Q8KAux, Q8_0Aux, Q8_1Aux, Quants, Sym32, ROWS, TOKS};
use super::{formats, rows_len, CpuKernels, FormatKernels, SCALAR_FORMATS};
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
use crate::quant::{self, QK_K};

/// Strip-kernel entry points of one table (inside its module): one
/// instance per token count, so the accumulators are registers.
macro_rules! tile_fns {
    ($feat:literal, $d:ty, $($name:ident => $kernel:ident [$F:ty]),*) => {$(
        #[target_feature(enable = $feat)]
        pub unsafe fn $name(n: usize, x: &[u8], y: &[&[u8]], a: &[&[u8]]) -> [[f32; ROWS]; TOKS] {
            match y.len() {
                4 => $kernel::<$d, 4, $F>(n, x, y, a),
                3 => $kernel::<$d, 3, $F>(n, x, y, a),
                2 => $kernel::<$d, 2, $F>(n, x, y, a),
                _ => $kernel::<$d, 1, $F>(n, x, y, a),
            }
        }
    )*};
}

// Each table gets a module of `#[target_feature]` entry points; the kernels
// below are `#[inline(always)]` generics, so they are compiled inside those
// entry points with the table's features (and `sdot` inlines into them).
macro_rules! table {
    ($m:ident, $name:ident, $isa:literal, $feat:literal, $d:ty) => {
        mod $m {
            use super::*;
            #[target_feature(enable = $feat)]
            pub unsafe fn q4_0(n: usize, w: &[u8], a: &[u8]) -> f32 { vec_dot_q4_0::<$d>(n, w, a) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q4_1(n: usize, w: &[u8], a: &[u8]) -> f32 { vec_dot_q4_1::<$d>(n, w, a) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 { vec_dot_q8_0::<$d>(n, w, a) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q4_k(n: usize, w: &[u8], a: &[u8]) -> f32 { vec_dot_q4_k::<$d>(n, w, a) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q5_k(n: usize, w: &[u8], a: &[u8]) -> f32 { vec_dot_q5_k::<$d>(n, w, a) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q6_k(n: usize, w: &[u8], a: &[u8]) -> f32 { vec_dot_q6_k::<$d>(n, w, a) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q4_0_rows(n: usize, w: &[u8], a: &[u8], x: &[u8]) -> [f32; ROWS] { rows_q4_0::<$d>(n, w, a, x) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q4_1_rows(n: usize, w: &[u8], a: &[u8], x: &[u8]) -> [f32; ROWS] { rows_q4_1::<$d>(n, w, a, x) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q4_k_rows(n: usize, w: &[u8], a: &[u8], x: &[u8]) -> [f32; ROWS] { rows_q4_k::<$d>(n, w, a, x) }
            #[target_feature(enable = $feat)]
            pub unsafe fn iq4_nl(n: usize, w: &[u8], a: &[u8]) -> f32 { vec_dot_iq4_nl::<$d>(n, w, a) }
            #[target_feature(enable = $feat)]
            pub unsafe fn iq4_xs(n: usize, w: &[u8], a: &[u8]) -> f32 { vec_dot_iq4_xs::<$d>(n, w, a) }
            tile_fns!($feat, $d,
                q4_0_tile => tile_sym32[BlockQ4_0], q4_1_tile => tile_min32[BlockQ4_1], q4_k_tile => tile_k[BlockQ4K],
                q5_0_tile => tile_sym32[BlockQ5_0], q5_1_tile => tile_min32[BlockQ5_1], q8_0_tile => tile_sym32[BlockQ8_0],
                q2_k_tile => tile_k[BlockQ2K], q3_k_tile => tile_k[BlockQ3K], q5_k_tile => tile_k[BlockQ5K],
                q6_k_tile => tile_k[BlockQ6K]);
            pub unsafe fn q5_0(n: usize, w: &[u8], a: &[u8]) -> f32 { vec_dot_q5_0::<$d>(n, w, a) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q5_1(n: usize, w: &[u8], a: &[u8]) -> f32 { vec_dot_q5_1::<$d>(n, w, a) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q2_k(_n: usize, w: &[u8], a: &[u8]) -> f32 { vec_dot_k::<$d, BlockQ2K>(w, a) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q3_k(_n: usize, w: &[u8], a: &[u8]) -> f32 { vec_dot_k::<$d, BlockQ3K>(w, a) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q8_0_rows(n: usize, w: &[u8], a: &[u8], x: &[u8]) -> [f32; ROWS] { rows_q8_0::<$d>(n, w, a, x) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q5_0_rows(n: usize, w: &[u8], a: &[u8], x: &[u8]) -> [f32; ROWS] { rows_q5_0::<$d>(n, w, a, x) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q5_1_rows(n: usize, w: &[u8], a: &[u8], x: &[u8]) -> [f32; ROWS] { rows_q5_1::<$d>(n, w, a, x) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q2_k_rows(n: usize, w: &[u8], a: &[u8], _x: &[u8]) -> [f32; ROWS] { rows_k::<$d, BlockQ2K>(n, w, a) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q3_k_rows(n: usize, w: &[u8], a: &[u8], _x: &[u8]) -> [f32; ROWS] { rows_k::<$d, BlockQ3K>(n, w, a) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q5_k_rows(n: usize, w: &[u8], a: &[u8], _x: &[u8]) -> [f32; ROWS] { rows_k::<$d, BlockQ5K>(n, w, a) }
            #[target_feature(enable = $feat)]
            pub unsafe fn q6_k_rows(n: usize, w: &[u8], a: &[u8], _x: &[u8]) -> [f32; ROWS] { rows_k::<$d, BlockQ6K>(n, w, a) }
            tile_fns!($feat, $d, iq4_nl_tile => tile_sym32[BlockIQ4NL], iq4_xs_tile => tile_k[BlockIQ4XS]);
        }
        static $name: CpuKernels = CpuKernels {
            isa: $isa,
            formats: formats![SCALAR_FORMATS;
                Q4_0 => FormatKernels {
                    dot: |n, w, a| unsafe { $m::q4_0(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { $m::q4_0_tile(n, x, y, a) }),
                    wide: None,
                    rows: Some(|n, w, a, x| unsafe { $m::q4_0_rows(n, w, a, x) }),
                },
                Q4_1 => FormatKernels {
                    dot: |n, w, a| unsafe { $m::q4_1(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { $m::q4_1_tile(n, x, y, a) }),
                    wide: None,
                    rows: Some(|n, w, a, x| unsafe { $m::q4_1_rows(n, w, a, x) }),
                },
                Q5_0 => FormatKernels {
                    dot: |n, w, a| unsafe { $m::q5_0(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { $m::q5_0_tile(n, x, y, a) }),
                    wide: None,
                    rows: Some(|n, w, a, x| unsafe { $m::q5_0_rows(n, w, a, x) }),
                },
                Q5_1 => FormatKernels {
                    dot: |n, w, a| unsafe { $m::q5_1(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { $m::q5_1_tile(n, x, y, a) }),
                    wide: None,
                    rows: Some(|n, w, a, x| unsafe { $m::q5_1_rows(n, w, a, x) }),
                },
                Q8_0 => FormatKernels {
                    dot: |n, w, a| unsafe { $m::q8_0(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { $m::q8_0_tile(n, x, y, a) }),
                    wide: None,
                    rows: Some(|n, w, a, x| unsafe { $m::q8_0_rows(n, w, a, x) }),
                },
                Q2_K => FormatKernels {
                    dot: |n, w, a| unsafe { $m::q2_k(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { $m::q2_k_tile(n, x, y, a) }),
                    wide: None,
                    rows: Some(|n, w, a, x| unsafe { $m::q2_k_rows(n, w, a, x) }),
                },
                Q3_K => FormatKernels {
                    dot: |n, w, a| unsafe { $m::q3_k(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { $m::q3_k_tile(n, x, y, a) }),
                    wide: None,
                    rows: Some(|n, w, a, x| unsafe { $m::q3_k_rows(n, w, a, x) }),
                },
                Q4_K => FormatKernels {
                    dot: |n, w, a| unsafe { $m::q4_k(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { $m::q4_k_tile(n, x, y, a) }),
                    wide: None,
                    rows: Some(|n, w, a, x| unsafe { $m::q4_k_rows(n, w, a, x) }),
                },
                Q5_K => FormatKernels {
                    dot: |n, w, a| unsafe { $m::q5_k(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { $m::q5_k_tile(n, x, y, a) }),
                    wide: None,
                    rows: Some(|n, w, a, x| unsafe { $m::q5_k_rows(n, w, a, x) }),
                },
                Q6_K => FormatKernels {
                    dot: |n, w, a| unsafe { $m::q6_k(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { $m::q6_k_tile(n, x, y, a) }),
                    wide: None,
                    rows: Some(|n, w, a, x| unsafe { $m::q6_k_rows(n, w, a, x) }),
                },
                // f16 needs the unstable float16x4_t; the scalar path converts
                // through `half` (which uses NEON's fcvt itself).
                F16 => FormatKernels::dot(quant::float::vec_dot_f16),
                F32 => FormatKernels::dot(|n, w, a| unsafe { vec_dot_f32(n, w, a) }),
                IQ4_NL => FormatKernels {
                    dot: |n, w, a| unsafe { $m::iq4_nl(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { $m::iq4_nl_tile(n, x, y, a) }),
                    wide: None,
                    rows: None,
                },
                IQ4_XS => FormatKernels {
                    dot: |n, w, a| unsafe { $m::iq4_xs(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { $m::iq4_xs_tile(n, x, y, a) }),
                    wide: None,
                    rows: None,
                },
            ],
            dot_f16: super::SCALAR.dot_f16,
            axpy_f16: super::SCALAR.axpy_f16,
            round_f16: super::SCALAR.round_f16,
            quantize_act: |ty, x, dst| unsafe { quantize_act(ty, x, dst) },
        };
    };
}

// SAFETY (both tables): `detect`/`available` hand a table out only after
// `is_aarch64_feature_detected!` saw every feature in its `$feat`.
table!(neon_plain, NEON, "neon", "neon", Mull);
table!(neon_dotprod, NEON_DOTPROD, "neon+dotprod", "neon,dotprod", Sdot);

pub(super) fn detect() -> Option<&'static CpuKernels> {
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        Some(&NEON_DOTPROD)
    } else if std::arch::is_aarch64_feature_detected!("neon") {
        Some(&NEON)
    } else {
        None
    }
}

pub(super) fn available() -> Vec<&'static CpuKernels> {
    let mut v = Vec::new();
    if std::arch::is_aarch64_feature_detected!("neon") {
        v.push(&NEON);
    }
    if std::arch::is_aarch64_feature_detected!("dotprod") {
        v.push(&NEON_DOTPROD);
    }
    v
}

/// `acc + Σ a·b` over 16 i8 pairs, into 4 i32 lanes.
pub(super) trait Dot {
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

pub(super) struct Sdot;
pub(super) struct Mull;

impl Dot for Sdot {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        sdot(acc, a, b)
    }
}

#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    std::arch::asm!(
        "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
        acc = inout(vreg) acc,
        a = in(vreg) a,
        b = in(vreg) b,
        options(pure, nomem, nostack, preserves_flags)
    );
    acc
}

impl Dot for Mull {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let p1 = vmull_s8(vget_high_s8(a), vget_high_s8(b));
        vaddq_s32(acc, vaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)))
    }
}

#[inline(always)]
fn fp16(h: [u8; 2]) -> f32 {
    quant::f16_to_f32(h)
}

/// 16 bytes of nibble pairs → (low nibbles, high nibbles) as i8 0..16.
#[inline(always)]
unsafe fn nibbles(v: uint8x16_t) -> (int8x16_t, int8x16_t) {
    let m4 = vdupq_n_u8(0xF);
    (vreinterpretq_s8_u8(vandq_u8(v, m4)), vreinterpretq_s8_u8(vshrq_n_u8(v, 4)))
}

/// Σ over 32 elements of q·y (two 16-byte halves), in 4 lanes.
#[inline(always)]
unsafe fn dot32v<D: Dot>(q0: int8x16_t, q1: int8x16_t, y0: int8x16_t, y1: int8x16_t) -> int32x4_t {
    D::dot(D::dot(vdupq_n_s32(0), q0, y0), q1, y1)
}

// ---------------------------------------------------------------- 32-blocks

#[inline(always)]
unsafe fn vec_dot_q4_0<D: Dot>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[BlockQ4_0], &[BlockQ8_0]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let s8 = vdupq_n_s8(8);
    let mut sumv = vdupq_n_f32(0.0);
    for (x, y) in x.iter().zip(y) {
        let (lo, hi) = nibbles(vld1q_u8(x.qs.as_ptr()));
        let (y0, y1) = (vld1q_s8(y.qs.as_ptr()), vld1q_s8(y.qs.as_ptr().add(16)));
        let p = dot32v::<D>(vsubq_s8(lo, s8), vsubq_s8(hi, s8), y0, y1);
        sumv = vmlaq_n_f32(sumv, vcvtq_f32_s32(p), fp16(x.d) * fp16(y.d));
    }
    vaddvq_f32(sumv)
}

#[inline(always)]
unsafe fn vec_dot_q4_1<D: Dot>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[BlockQ4_1], &[BlockQ8_1]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let mut sumv = vdupq_n_f32(0.0);
    let mut summs = 0f32;
    for (x, y) in x.iter().zip(y) {
        // The min term m·Σy uses s = d·Σq from the activation quantizer.
        summs += fp16(x.m) * fp16(y.s);
        let (lo, hi) = nibbles(vld1q_u8(x.qs.as_ptr()));
        let (y0, y1) = (vld1q_s8(y.qs.as_ptr()), vld1q_s8(y.qs.as_ptr().add(16)));
        let p = dot32v::<D>(lo, hi, y0, y1);
        sumv = vmlaq_n_f32(sumv, vcvtq_f32_s32(p), fp16(x.d) * fp16(y.d));
    }
    vaddvq_f32(sumv) + summs
}

/// 16 bits (the low 16 of `bits`) → 16 bytes, 16 where bit i is set: a
/// Q5 quant's fifth bit for 16 elements.
#[inline(always)]
unsafe fn fifth_bits(bits: u32) -> uint8x16_t {
    const SEL: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let b = vcombine_u8(vdup_n_u8(bits as u8), vdup_n_u8((bits >> 8) as u8));
    vandq_u8(vtstq_u8(b, vld1q_u8(SEL.as_ptr())), vdupq_n_u8(16))
}

/// A Q5 block's 32 quants (0..32) as (elements 0..16, 16..32): nibbles of
/// `qs` and fifth bits of `qh` (bit j for element j).
#[inline(always)]
unsafe fn q5_quants(qs: &[u8; 16], qh: [u8; 4]) -> (uint8x16_t, uint8x16_t) {
    let qh = u32::from_le_bytes(qh);
    let m4 = vdupq_n_u8(0xF);
    let v = vld1q_u8(qs.as_ptr());
    (vorrq_u8(vandq_u8(v, m4), fifth_bits(qh)), vorrq_u8(vshrq_n_u8(v, 4), fifth_bits(qh >> 16)))
}

#[inline(always)]
unsafe fn vec_dot_q5_0<D: Dot>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[BlockQ5_0], &[BlockQ8_0]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let s16 = vdupq_n_s8(16);
    let mut sumv = vdupq_n_f32(0.0);
    for (x, y) in x.iter().zip(y) {
        let (lo, hi) = q5_quants(&x.qs, x.qh);
        let (lo, hi) = (vsubq_s8(vreinterpretq_s8_u8(lo), s16), vsubq_s8(vreinterpretq_s8_u8(hi), s16));
        let (y0, y1) = (vld1q_s8(y.qs.as_ptr()), vld1q_s8(y.qs.as_ptr().add(16)));
        let p = dot32v::<D>(lo, hi, y0, y1);
        sumv = vmlaq_n_f32(sumv, vcvtq_f32_s32(p), fp16(x.d) * fp16(y.d));
    }
    vaddvq_f32(sumv)
}

#[inline(always)]
unsafe fn vec_dot_q5_1<D: Dot>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[BlockQ5_1], &[BlockQ8_1]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let mut sumv = vdupq_n_f32(0.0);
    let mut summs = 0f32;
    for (x, y) in x.iter().zip(y) {
        // The min term m·Σy uses s = d·Σq from the activation quantizer.
        summs += fp16(x.m) * fp16(y.s);
        let (lo, hi) = q5_quants(&x.qs, x.qh);
        let (y0, y1) = (vld1q_s8(y.qs.as_ptr()), vld1q_s8(y.qs.as_ptr().add(16)));
        let p = dot32v::<D>(vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi), y0, y1);
        sumv = vmlaq_n_f32(sumv, vcvtq_f32_s32(p), fp16(x.d) * fp16(y.d));
    }
    vaddvq_f32(sumv) + summs
}

#[inline(always)]
unsafe fn vec_dot_q8_0<D: Dot>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[BlockQ8_0], &[BlockQ8_0]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let mut sumv = vdupq_n_f32(0.0);
    for (x, y) in x.iter().zip(y) {
        let (x0, x1) = (vld1q_s8(x.qs.as_ptr()), vld1q_s8(x.qs.as_ptr().add(16)));
        let (y0, y1) = (vld1q_s8(y.qs.as_ptr()), vld1q_s8(y.qs.as_ptr().add(16)));
        let p = dot32v::<D>(x0, x1, y0, y1);
        sumv = vmlaq_n_f32(sumv, vcvtq_f32_s32(p), fp16(x.d) * fp16(y.d));
    }
    vaddvq_f32(sumv)
}

// ---------------------------------------------------------------- K-quants

/// Σ_j bsum_j · min_{j/2}: the K-quant min term, in integers.
#[inline(always)]
fn kmin_sum(y: &BlockQ8K, mn: &[u8; 8]) -> i32 {
    (0..16).map(|j| y.bsum(j) * mn[j / 2] as i32).sum()
}

/// Σ over 32 elements of q·y, y read from memory.
#[inline(always)]
unsafe fn dot32<D: Dot>(q0: int8x16_t, q1: int8x16_t, y: *const i8) -> i32 {
    vaddvq_s32(dot32v::<D>(q0, q1, vld1q_s8(y), vld1q_s8(y.add(16))))
}

#[inline(always)]
unsafe fn vec_dot_q4_k<D: Dot>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[BlockQ4K], &[BlockQ8K]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (sc, mn) = quant::scale_min_k4(&x.scales);
        sumf -= fp16(x.dmin) * y.d() * kmin_sum(y, &mn) as f32;
        let mut sumi = 0i32;
        for j in 0..QK_K / 64 {
            let q4 = x.qs.as_ptr().add(32 * j);
            let ((l0, h0), (l1, h1)) = (nibbles(vld1q_u8(q4)), nibbles(vld1q_u8(q4.add(16))));
            let q8 = y.qs.as_ptr().add(64 * j);
            let lo = dot32::<D>(l0, l1, q8);
            let hi = dot32::<D>(h0, h1, q8.add(32));
            sumi += lo * sc[2 * j] as i32 + hi * sc[2 * j + 1] as i32;
        }
        sumf += fp16(x.d) * y.d() * sumi as f32;
    }
    sumf
}

#[inline(always)]
unsafe fn vec_dot_q5_k<D: Dot>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[BlockQ5K], &[BlockQ8K]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let m4 = vdupq_n_u8(0xF);
    let m16 = vdupq_n_u8(16);
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (sc, mn) = quant::scale_min_k4(&x.scales);
        sumf -= fp16(x.dmin) * y.d() * kmin_sum(y, &mn) as f32;
        let (qh0, qh1) = (vld1q_u8(x.qh.as_ptr()), vld1q_u8(x.qh.as_ptr().add(16)));
        let mut sumi = 0i32;
        for j in 0..QK_K / 64 {
            let q5 = x.qs.as_ptr().add(32 * j);
            let (b0, b1) = (vld1q_u8(q5), vld1q_u8(q5.add(16)));
            // Fifth bit (+16): bit 2j of qh[l] for the low nibbles, 2j+1 for the high.
            let (u1, u2) = (vdupq_n_u8(1 << (2 * j)), vdupq_n_u8(2 << (2 * j)));
            let h = |qh: uint8x16_t, u: uint8x16_t| vandq_u8(vtstq_u8(qh, u), m16);
            let l0 = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(b0, m4), h(qh0, u1)));
            let l1 = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(b1, m4), h(qh1, u1)));
            let h0 = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(b0, 4), h(qh0, u2)));
            let h1 = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(b1, 4), h(qh1, u2)));
            let q8 = y.qs.as_ptr().add(64 * j);
            sumi += dot32::<D>(l0, l1, q8) * sc[2 * j] as i32 + dot32::<D>(h0, h1, q8.add(32)) * sc[2 * j + 1] as i32;
        }
        sumf += fp16(x.d) * y.d() * sumi as f32;
    }
    sumf
}

/// The 8 groups of 16 quants of half `h` of a Q6_K block (elements 128h +
/// 16g..), as signed -32..32.
#[inline(always)]
unsafe fn q6_k_quants(x: &BlockQ6K, h: usize) -> [int8x16_t; 8] {
    let (m4, m3) = (vdupq_n_u8(0xF), vdupq_n_u8(3));
    let ql = x.ql.as_ptr().add(64 * h);
    let qh = x.qh.as_ptr().add(32 * h);
    let (l0, l1, l2, l3) = (vld1q_u8(ql), vld1q_u8(ql.add(16)), vld1q_u8(ql.add(32)), vld1q_u8(ql.add(48)));
    let (h0, h1) = (vld1q_u8(qh), vld1q_u8(qh.add(16)));
    let hb = |v: uint8x16_t, s: i32| -> uint8x16_t {
        let v = match s {
            0 => v,
            2 => vshrq_n_u8(v, 2),
            4 => vshrq_n_u8(v, 4),
            _ => vshrq_n_u8(v, 6),
        };
        vshlq_n_u8(vandq_u8(v, m3), 4)
    };
    let q = [
        vorrq_u8(vandq_u8(l0, m4), hb(h0, 0)),
        vorrq_u8(vandq_u8(l1, m4), hb(h1, 0)),
        vorrq_u8(vandq_u8(l2, m4), hb(h0, 2)),
        vorrq_u8(vandq_u8(l3, m4), hb(h1, 2)),
        vorrq_u8(vshrq_n_u8(l0, 4), hb(h0, 4)),
        vorrq_u8(vshrq_n_u8(l1, 4), hb(h1, 4)),
        vorrq_u8(vshrq_n_u8(l2, 4), hb(h0, 6)),
        vorrq_u8(vshrq_n_u8(l3, 4), hb(h1, 6)),
    ];
    let s32 = vdupq_n_s8(32);
    let mut out = [vdupq_n_s8(0); 8];
    for (o, q) in out.iter_mut().zip(q) {
        *o = vsubq_s8(vreinterpretq_s8_u8(q), s32);
    }
    out
}

#[inline(always)]
unsafe fn vec_dot_q6_k<D: Dot>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[BlockQ6K], &[BlockQ8K]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for h in 0..QK_K / 128 {
            let q8 = y.qs.as_ptr().add(128 * h);
            for (g, q) in q6_k_quants(x, h).into_iter().enumerate() {
                let p = vaddvq_s32(D::dot(vdupq_n_s32(0), q, vld1q_s8(q8.add(16 * g))));
                sumi += p * x.scales[8 * h + g] as i32;
            }
        }
        sumf += fp16(x.d) * y.d() * sumi as f32;
    }
    sumf
}

// ------------------------------------------------ 8 rows × 1 token
//
// Generation dots every weight row with one token (see `RowsDotFn`). Here 8
// consecutive rows are read in place (the weights stay memory-mapped) and
// reduced together: the token's block is loaded once for the 8 rows, one
// pairwise-add tree ([`hsum8`]) turns the 8 rows' lane sums into two
// vectors of rows 0..4 and 4..8 (6 `addp` where one-row kernels pay an
// `addv` and a move to a general register per row), and the 8 rows' fp16
// scales are converted by two `fcvtl` ([`rows_f16`]). Q4_0/Q4_1 round each
// block's float steps like the scalar `vec_dot` (equal bit for bit); Q4_K
// differs from it only in the order of the f32 sums.

/// The horizontal sums of 8 vectors' lanes, in order: `[Σv0, Σv1, Σv2, Σv3]`, `[Σv4, .., Σv7]`.
#[inline(always)]
unsafe fn hsum8(v: [int32x4_t; 8]) -> [int32x4_t; 2] {
    let h = |a, b, c, d| vpaddq_s32(vpaddq_s32(a, b), vpaddq_s32(c, d));
    [h(v[0], v[1], v[2], v[3]), h(v[4], v[5], v[6], v[7])]
}

/// The 8 rows' 32-element integer dots of one Q4_0/Q4_1/Q5_0/Q5_1 block
/// (unsigned quants): `q[r]` points at row r's 16 nibble bytes (low nibbles
/// elements 0..16, high 16..32), `qh[r]` holds its fifth bits (Q5: bit j
/// for element j), `y` points at the token's 32 quants.
#[inline(always)]
unsafe fn rows_isum32<D: Dot>(q: [*const u8; ROWS], qh: Option<[u32; ROWS]>, y: *const i8) -> [int32x4_t; 2] {
    let (y0, y1) = (vld1q_s8(y), vld1q_s8(y.add(16)));
    let mut p = [vdupq_n_s32(0); ROWS];
    for (r, p) in p.iter_mut().enumerate() {
        let (mut lo, mut hi) = nibbles(vld1q_u8(q[r]));
        if let Some(qh) = qh {
            lo = vorrq_s8(lo, vreinterpretq_s8_u8(fifth_bits(qh[r])));
            hi = vorrq_s8(hi, vreinterpretq_s8_u8(fifth_bits(qh[r] >> 16)));
        }
        *p = dot32v::<D>(lo, hi, y0, y1);
    }
    hsum8(p)
}

/// The 8 rows' fp16 field at byte `off` of their block at `blk` (rows `row`
/// bytes apart), as f32: rows 0..4, 4..8. `fcvtl` is exact like [`fp16`]
/// (every finite f16 is an f32), so the scales equal the scalar kernels'.
#[inline(always)]
unsafe fn rows_f16(blk: *const u8, row: usize, off: usize) -> [float32x4_t; 2] {
    let h: [u16; ROWS] = std::array::from_fn(|r| (blk.add(r * row + off) as *const u16).read_unaligned());
    let h = vld1q_u16(h.as_ptr());
    // `vcvt_f32_f16` needs the unstable float16x4_t: the two `fcvtl` by hand.
    // `out` (not `lateout`): `lo` is written before `h` is read again.
    let (lo, hi): (float32x4_t, float32x4_t);
    std::arch::asm!(
        "fcvtl {lo:v}.4s, {h:v}.4h",
        "fcvtl2 {hi:v}.4s, {h:v}.8h",
        h = in(vreg) h,
        lo = out(vreg) lo,
        hi = out(vreg) hi,
        options(pure, nomem, nostack, preserves_flags)
    );
    [lo, hi]
}

/// Prefetches [`super::next_rows_lines`] for block `b` of `w`'s 8 rows.
#[inline(always)]
fn prefetch_next_rows(w: &[u8], b: usize, block: usize) {
    let (lines, l1) = super::next_rows_lines(w, b, block);
    for p in lines {
        // SAFETY: `prfm` is a hint: it accesses no memory architecturally and
        // never faults, whatever the address. (`_prefetch` is unstable.)
        unsafe {
            if l1 {
                std::arch::asm!("prfm pldl1keep, [{p}]", p = in(reg) p, options(readonly, nostack, preserves_flags));
            } else {
                std::arch::asm!("prfm pldl2keep, [{p}]", p = in(reg) p, options(readonly, nostack, preserves_flags));
            }
        }
    }
}

/// Rows 0..4, 4..8 → `[f32; ROWS]`.
#[inline(always)]
unsafe fn rows_out(v: [float32x4_t; 2]) -> [f32; ROWS] {
    let mut out = [0f32; ROWS];
    vst1q_f32(out.as_mut_ptr(), v[0]);
    vst1q_f32(out.as_mut_ptr().add(4), v[1]);
    out
}

#[inline(always)]
unsafe fn rows_q4_0<D: Dot>(n: usize, w: &[u8], act: &[u8], aux: &[u8]) -> [f32; ROWS] {
    const BLOCK: usize = std::mem::size_of::<BlockQ4_0>();
    let nb = n / 32;
    let row = rows_len::<BlockQ4_0>(w, nb);
    let y: &[BlockQ8_0] = &bytemuck::cast_slice(act)[..nb];
    let a: &[Q8_0Aux] = &bytemuck::cast_slice(aux)[..nb];
    let mut acc = [vdupq_n_f32(0.0); 2];
    for b in 0..nb {
        prefetch_next_rows(w, b, BLOCK);
        // SAFETY: block b of row r is w[r·row + b·BLOCK..][..BLOCK], inside w (rows_len).
        let blk = w.as_ptr().add(b * BLOCK);
        let qs = std::mem::offset_of!(BlockQ4_0, qs);
        let isum = rows_isum32::<D>(std::array::from_fn(|r| blk.add(r * row + qs)), None, y[b].qs.as_ptr());
        let dx = rows_f16(blk, row, std::mem::offset_of!(BlockQ4_0, d));
        let (sum8, dy) = (vdupq_n_s32(8 * a[b].sum), vdupq_n_f32(a[b].d));
        for h in 0..2 {
            // Σ(q − 8)·y = Σq·y − 8·Σy; then (Σ·dx)·dy, added, each step
            // rounded like the scalar `vec_dot`'s (which this equals bit for bit).
            let s = vcvtq_f32_s32(vsubq_s32(isum[h], sum8));
            acc[h] = vaddq_f32(acc[h], vmulq_f32(vmulq_f32(s, dx[h]), dy));
        }
    }
    rows_out(acc)
}

#[inline(always)]
unsafe fn rows_q4_1<D: Dot>(n: usize, w: &[u8], act: &[u8], aux: &[u8]) -> [f32; ROWS] {
    const BLOCK: usize = std::mem::size_of::<BlockQ4_1>();
    let nb = n / 32;
    let row = rows_len::<BlockQ4_1>(w, nb);
    let y: &[BlockQ8_1] = &bytemuck::cast_slice(act)[..nb];
    let a: &[Q8_1Aux] = &bytemuck::cast_slice(aux)[..nb];
    let mut acc = [vdupq_n_f32(0.0); 2];
    for b in 0..nb {
        prefetch_next_rows(w, b, BLOCK);
        // SAFETY: block b of row r is w[r·row + b·BLOCK..][..BLOCK], inside w (rows_len).
        let blk = w.as_ptr().add(b * BLOCK);
        let qs = std::mem::offset_of!(BlockQ4_1, qs);
        let isum = rows_isum32::<D>(std::array::from_fn(|r| blk.add(r * row + qs)), None, y[b].qs.as_ptr());
        let dx = rows_f16(blk, row, std::mem::offset_of!(BlockQ4_1, d));
        let mx = rows_f16(blk, row, std::mem::offset_of!(BlockQ4_1, m));
        let (dy, sy) = (vdupq_n_f32(a[b].d), vdupq_n_f32(a[b].s));
        for h in 0..2 {
            // (dx·dy)·Σq·y + m·s, then added, rounded like the scalar `vec_dot`.
            let v = vaddq_f32(vmulq_f32(vmulq_f32(dx[h], dy), vcvtq_f32_s32(isum[h])), vmulq_f32(mx[h], sy));
            acc[h] = vaddq_f32(acc[h], v);
        }
    }
    rows_out(acc)
}

/// One row's Q4_K super-block `x` against the token's 256 quants `y` and
/// its 8 sub-block sums `bsum`: (lanes summing to Σ_j sc_j·(q·y)_j, lanes
/// summing to the min term Σ_j mn_j·Σy_j).
#[inline(always)]
unsafe fn row_q4_k<D: Dot>(x: &BlockQ4K, y: &[int8x16_t; 16], bsum: int16x8_t) -> (int32x4_t, int32x4_t) {
    let mut p = [vdupq_n_s32(0); 8];
    for j in 0..QK_K / 64 {
        // 64 elements: 32 low nibbles (sub-block 2j), 32 high (2j + 1).
        let q4 = x.qs.as_ptr().add(32 * j);
        let ((l0, h0), (l1, h1)) = (nibbles(vld1q_u8(q4)), nibbles(vld1q_u8(q4.add(16))));
        p[2 * j] = dot32v::<D>(l0, l1, y[4 * j], y[4 * j + 1]);
        p[2 * j + 1] = dot32v::<D>(h0, h1, y[4 * j + 2], y[4 * j + 3]);
    }
    k4_sums(p, &x.scales, bsum)
}

/// A Q4_K/Q5_K row block's sums from its 8 sub-blocks' dot lanes `p`, its
/// packed scales and the token's 8 sub-block sums `bsum`: (lanes summing
/// to Σ_j sc_j·p_j, lanes summing to the min term Σ_j mn_j·Σy_j).
#[inline(always)]
unsafe fn k4_sums(p: [int32x4_t; 8], scales: &[u8; 12], bsum: int16x8_t) -> (int32x4_t, int32x4_t) {
    // One tree reduces the 8 sub-blocks' lanes (not an `addv` each); their
    // 6-bit scales then apply to 4 sub-block sums per vector.
    let [s0, s1] = hsum8(p);
    let (sc, mn) = quant::scale_min_k4(scales);
    let sc = vmovl_u8(vld1_u8(sc.as_ptr()));
    let (sc0, sc1) = (vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(sc))), vreinterpretq_s32_u32(vmovl_high_u16(sc)));
    let isum = vmlaq_s32(vmulq_s32(s0, sc0), s1, sc1);
    let mn = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(mn.as_ptr())));
    let msum = vmlal_high_s16(vmull_s16(vget_low_s16(mn), vget_low_s16(bsum)), mn, bsum);
    (isum, msum)
}

#[inline(always)]
unsafe fn rows_q4_k<D: Dot>(n: usize, w: &[u8], act: &[u8], aux: &[u8]) -> [f32; ROWS] {
    const BLOCK: usize = std::mem::size_of::<BlockQ4K>();
    let nb = n / QK_K;
    let row = rows_len::<BlockQ4K>(w, nb);
    let x: &[BlockQ4K] = bytemuck::cast_slice(w);
    let y: &[BlockQ8K] = &bytemuck::cast_slice(act)[..nb];
    let a: &[Q8KAux] = &bytemuck::cast_slice(aux)[..nb];
    let (mut acc, mut acc_m) = ([vdupq_n_f32(0.0); 2], [vdupq_n_f32(0.0); 2]);
    for b in 0..nb {
        prefetch_next_rows(w, b, BLOCK);
        let yq = y[b].qs.as_ptr();
        let yv: [int8x16_t; 16] = std::array::from_fn(|i| vld1q_s8(yq.add(16 * i)));
        // Σy of sub-block j at lane j (bsum2[j / 2][j % 2]).
        let bsum = vld1q_s16(a[b].bsum2.as_ptr() as *const i16);
        let (mut is, mut ms) = ([vdupq_n_s32(0); ROWS], [vdupq_n_s32(0); ROWS]);
        for r in 0..ROWS {
            (is[r], ms[r]) = row_q4_k::<D>(&x[r * nb + b], &yv, bsum);
        }
        let (is, ms) = (hsum8(is), hsum8(ms));
        // SAFETY: block b of row r is w[r·row + b·BLOCK..][..BLOCK], inside w (rows_len).
        let blk = w.as_ptr().add(b * BLOCK);
        let dx = rows_f16(blk, row, std::mem::offset_of!(BlockQ4K, d));
        let mx = rows_f16(blk, row, std::mem::offset_of!(BlockQ4K, dmin));
        let dy = vdupq_n_f32(a[b].d);
        // (dx·dy)·Σ and (dmin·dy)·min term, the mins subtracted at the end.
        for h in 0..2 {
            acc[h] = vfmaq_f32(acc[h], vmulq_f32(dx[h], dy), vcvtq_f32_s32(is[h]));
            acc_m[h] = vfmaq_f32(acc_m[h], vmulq_f32(mx[h], dy), vcvtq_f32_s32(ms[h]));
        }
    }
    rows_out([vsubq_f32(acc[0], acc_m[0]), vsubq_f32(acc[1], acc_m[1])])
}

// ------------------------------------------------ strips × tokens (tile.rs)
//
// Lane i of a vector is row i (rows 0..4 in one vector, 4..8 in the next);
// the token's 4 bytes are broadcast, so one `sdot` gives 4 rows' partial
// sums and the accumulators are the outputs. One kernel per strip layout,
// generic over the formats sharing it (their quant range, offset and
// rounding are `tile`'s trait constants). `sdot` sums in i32 and the quants
// are below 128 (Q8_0's, IQ4_NL's and IQ4_XS's w + 128 flipped back to the
// signed w, their offset term dropped): no bounds to mind.

/// `acc` + Σ of the 4 products of bytes 4i..4i + 4 in lane i: a strip step
/// of 4 rows (4 quants each) against a token's 4 quants broadcast.
pub(super) trait Dot4: Dot {
    unsafe fn dot4(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

impl Dot4 for Sdot {
    #[inline(always)]
    unsafe fn dot4(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // `sdot`'s lanes are exactly these groups.
        sdot(acc, a, b)
    }
}

impl Dot4 for Mull {
    #[inline(always)]
    unsafe fn dot4(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // i16 products, pairs → i32, then pairs of pairs: [Σ0..4, Σ4..8, Σ8..12, Σ12..16].
        let p0 = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
        let p1 = vpaddlq_s16(vmull_high_s8(a, b));
        vaddq_s32(acc, vpaddq_s32(p0, p1))
    }
}

/// 8 f32 of `p`: rows 0..4, 4..8.
#[inline(always)]
unsafe fn load_rows(p: &[f32; ROWS]) -> [float32x4_t; 2] {
    [vld1q_f32(p.as_ptr()), vld1q_f32(p.as_ptr().add(4))]
}

#[inline(always)]
unsafe fn store_tokens<const NT: usize>(acc: [[float32x4_t; 2]; NT]) -> [[f32; ROWS]; TOKS] {
    let mut out = [[0f32; ROWS]; TOKS];
    for t in 0..NT {
        out[t] = rows_out(acc[t]);
    }
    out
}

/// Σ q·y per row (rows 0..4, 4..8) over `steps` steps of 4 quants (32
/// bytes each at `qs`) for NT tokens' quants `y[t]`; `flip`: the bytes are
/// w + 128 (`tile::Quants`), flipped back to the signed w. Reads 32·steps bytes at
/// `qs` and 4·steps at each `y[t]`: the callers' strip and activation
/// blocks hold them.
#[inline(always)]
unsafe fn tile_isum<D: Dot4, const NT: usize>(qs: *const u8, y: [*const i8; NT], steps: usize, flip: bool) -> [[int32x4_t; 2]; NT] {
    let mut acc = [[vdupq_n_s32(0); 2]; NT];
    for k in 0..steps {
        let (mut w0, mut w1) = (vld1q_u8(qs.add(32 * k)), vld1q_u8(qs.add(32 * k + 16)));
        if flip {
            (w0, w1) = (veorq_u8(w0, vdupq_n_u8(0x80)), veorq_u8(w1, vdupq_n_u8(0x80)));
        }
        let (w0, w1) = (vreinterpretq_s8_u8(w0), vreinterpretq_s8_u8(w1));
        for t in 0..NT {
            let yb = vreinterpretq_s8_s32(vdupq_n_s32((y[t].add(4 * k) as *const i32).read_unaligned()));
            acc[t][0] = D::dot4(acc[t][0], w0, yb);
            acc[t][1] = D::dot4(acc[t][1], w1, yb);
        }
    }
    acc
}

/// Q4_0, Q5_0, Q8_0, IQ4_NL ([`Q4_0x8`]): Σ(q − OFFSET)·y = Σq·y − OFFSET·Σy
/// per block (bytes w + 128: Σw·y directly), then its f32 steps as the scalar
/// `vec_dot`'s (equal bit for bit).
#[inline(always)]
unsafe fn tile_sym32<D: Dot4, const NT: usize, F: Sym32>(n: usize, packed: &[u8], act: &[&[u8]], aux: &[&[u8]]) -> [[f32; ROWS]; TOKS] {
    let nb = n / 32;
    let flip = F::QMAX > i8::MAX as u8;
    let x: &[Q4_0x8] = &bytemuck::cast_slice(packed)[..nb];
    let y: [&[BlockQ8_0]; NT] = std::array::from_fn(|t| &bytemuck::cast_slice(act[t])[..nb]);
    let a: [&[Q8_0Aux]; NT] = std::array::from_fn(|t| &bytemuck::cast_slice(aux[t])[..nb]);
    let mut acc = [[vdupq_n_f32(0.0); 2]; NT];
    for (b, x) in x.iter().enumerate() {
        let isum = tile_isum::<D, NT>(x.qs.as_ptr(), std::array::from_fn(|t| y[t][b].qs.as_ptr()), 8, flip);
        let dx = load_rows(&x.d);
        for t in 0..NT {
            let off = vdupq_n_s32(if flip { 0 } else { F::OFFSET * a[t][b].sum });
            let dy = vdupq_n_f32(a[t][b].d);
            for h in 0..2 {
                let s = vcvtq_f32_s32(vsubq_s32(isum[t][h], off));
                let blk = if F::DXY_FIRST { vmulq_f32(vmulq_f32(dx[h], dy), s) } else { vmulq_f32(vmulq_f32(s, dx[h]), dy) };
                acc[t][h] = vaddq_f32(acc[t][h], blk);
            }
        }
    }
    store_tokens(acc)
}

/// Q4_1, Q5_1 ([`Q4_1x8`]): (dx·dy)·Σq·y + m·s per block, rounded like the
/// scalar `vec_dot` (equal bit for bit).
#[inline(always)]
unsafe fn tile_min32<D: Dot4, const NT: usize, F: Quants>(n: usize, packed: &[u8], act: &[&[u8]], aux: &[&[u8]]) -> [[f32; ROWS]; TOKS] {
    let nb = n / 32;
    debug_assert!(F::QMAX <= i8::MAX as u8);
    let x: &[Q4_1x8] = &bytemuck::cast_slice(packed)[..nb];
    let y: [&[BlockQ8_1]; NT] = std::array::from_fn(|t| &bytemuck::cast_slice(act[t])[..nb]);
    let a: [&[Q8_1Aux]; NT] = std::array::from_fn(|t| &bytemuck::cast_slice(aux[t])[..nb]);
    let mut acc = [[vdupq_n_f32(0.0); 2]; NT];
    for (b, x) in x.iter().enumerate() {
        let isum = tile_isum::<D, NT>(x.qs.as_ptr(), std::array::from_fn(|t| y[t][b].qs.as_ptr()), 8, false);
        let (dx, mx) = (load_rows(&x.d), load_rows(&x.m));
        for t in 0..NT {
            let (dy, sy) = (vdupq_n_f32(a[t][b].d), vdupq_n_f32(a[t][b].s));
            for h in 0..2 {
                let blk = vaddq_f32(vmulq_f32(vmulq_f32(dx[h], dy), vcvtq_f32_s32(isum[t][h])), vmulq_f32(mx[h], sy));
                acc[t][h] = vaddq_f32(acc[t][h], blk);
            }
        }
    }
    store_tokens(acc)
}

/// The K-quants ([`Q4Kx8`]: Q4_K, Q5_K, IQ4_XS; [`K16x8`]: Q6_K, Q3_K,
/// Q2_K): per super-block Σ_j sc_j·(q·y)_j and the min term Σ_j mn_j·Σy_j;
/// then d·dy·Σ − dmin·dy·mins, or d·dy·(Σ − mins) where the mins are the
/// quants' offset (bytes w + 128: Σ_j sc_j·(w·y)_j directly, no min term).
#[inline(always)]
unsafe fn tile_k<D: Dot4, const NT: usize, F: KQuant>(n: usize, packed: &[u8], act: &[&[u8]], aux: &[&[u8]]) -> [[f32; ROWS]; TOKS] {
    let nb = n / QK_K;
    let subs = F::X::SUBS;
    let steps = QK_K / 4 / subs;
    // The bytes are w + 128 and the mins 128·sc (`tile::Quants`).
    let flip = F::QMAX > i8::MAX as u8;
    debug_assert!(!flip || F::MIN_IS_OFFSET);
    let x: &[F::X] = &bytemuck::cast_slice(packed)[..nb];
    let y: [&[BlockQ8K]; NT] = std::array::from_fn(|t| &bytemuck::cast_slice(act[t])[..nb]);
    let a: [&[Q8KAux]; NT] = std::array::from_fn(|t| &bytemuck::cast_slice(aux[t])[..nb]);
    let mut acc = [[vdupq_n_f32(0.0); 2]; NT];
    for (b, x) in x.iter().enumerate() {
        let mut sumi = [[vdupq_n_s32(0); 2]; NT];
        for j in 0..subs {
            // The scales sit in both i16 halves (`tile::sc_pair`).
            let sc = x.sc(j).as_ptr();
            let sc = [vshrq_n_s32::<16>(vld1q_s32(sc)), vshrq_n_s32::<16>(vld1q_s32(sc.add(4)))];
            let yq = std::array::from_fn(|t| y[t][b].qs.as_ptr().add(4 * steps * j));
            let isum = tile_isum::<D, NT>(x.qs().as_ptr().add(32 * steps * j), yq, steps, flip);
            for t in 0..NT {
                for h in 0..2 {
                    sumi[t][h] = vmlaq_s32(sumi[t][h], isum[t][h], sc[h]);
                }
            }
        }
        let (dx, dmin) = (load_rows(x.d()), load_rows(x.dmin()));
        for t in 0..NT {
            // Half h (rows 4h..4h + 4): m[h][0] sums rows 4h and 4h + 1's
            // mins times their sub-blocks' Σy (lanes: row, sub-block 2p + 0/1),
            // m[h][1] rows 4h + 2 and 4h + 3's; a pairwise add gives the 4 rows.
            let mut m = [[vdupq_n_s32(0); 2]; 2];
            // Signed weights: no offset to take off.
            let pairs = if flip { 0 } else { subs / 2 };
            for p in 0..pairs {
                let bs = vreinterpretq_s16_s32(vdupq_n_s32(bytemuck::cast(F::X::bsum_pair(&a[t][b], &y[t][b], p))));
                let mn = x.mn(p).as_ptr();
                for (h, m) in m.iter_mut().enumerate() {
                    let mn = vld1q_s16(mn.add(8 * h));
                    m[0] = vmlal_s16(m[0], vget_low_s16(mn), vget_low_s16(bs));
                    m[1] = vmlal_high_s16(m[1], mn, bs);
                }
            }
            let dy = vdupq_n_f32(a[t][b].d);
            for h in 0..2 {
                let summ = vpaddq_s32(m[h][0], m[h][1]);
                if F::MIN_IS_OFFSET {
                    let s = vcvtq_f32_s32(vsubq_s32(sumi[t][h], summ));
                    acc[t][h] = vfmaq_f32(acc[t][h], vmulq_f32(dx[h], dy), s);
                } else {
                    acc[t][h] = vfmaq_f32(acc[t][h], vmulq_f32(dx[h], dy), vcvtq_f32_s32(sumi[t][h]));
                    acc[t][h] = vfmsq_f32(acc[t][h], vmulq_f32(dmin[h], dy), vcvtq_f32_s32(summ));
                }
            }
        }
    }
    store_tokens(acc)
}

// ------------------------- 8 rows × 1 token: Q8_0, Q5_0, Q5_1 and K-quants
//
// As above: the 32-block formats as Q4_0/Q4_1 (their f32 steps the scalar
// `vec_dot`'s, bit for bit), the K-quants as Q4_K, each row's super-block
// summed by [`BlockK::isum`], which the one-row Q2_K/Q3_K kernels share.

#[inline(always)]
unsafe fn rows_q8_0<D: Dot>(n: usize, w: &[u8], act: &[u8], aux: &[u8]) -> [f32; ROWS] {
    const BLOCK: usize = std::mem::size_of::<BlockQ8_0>();
    let nb = n / 32;
    let row = rows_len::<BlockQ8_0>(w, nb);
    let y: &[BlockQ8_0] = &bytemuck::cast_slice(act)[..nb];
    let a: &[Q8_0Aux] = &bytemuck::cast_slice(aux)[..nb];
    let mut acc = [vdupq_n_f32(0.0); 2];
    for b in 0..nb {
        prefetch_next_rows(w, b, BLOCK);
        // SAFETY: block b of row r is w[r·row + b·BLOCK..][..BLOCK], inside w (rows_len).
        let blk = w.as_ptr().add(b * BLOCK);
        let yq = y[b].qs.as_ptr();
        let (y0, y1) = (vld1q_s8(yq), vld1q_s8(yq.add(16)));
        let mut p = [vdupq_n_s32(0); ROWS];
        for (r, p) in p.iter_mut().enumerate() {
            let q = blk.add(r * row + std::mem::offset_of!(BlockQ8_0, qs)) as *const i8;
            *p = dot32v::<D>(vld1q_s8(q), vld1q_s8(q.add(16)), y0, y1);
        }
        let isum = hsum8(p);
        let dx = rows_f16(blk, row, std::mem::offset_of!(BlockQ8_0, d));
        let dy = vdupq_n_f32(a[b].d);
        for h in 0..2 {
            // Σ·(dx·dy), added, rounded like the scalar `vec_dot`.
            acc[h] = vaddq_f32(acc[h], vmulq_f32(vcvtq_f32_s32(isum[h]), vmulq_f32(dx[h], dy)));
        }
    }
    rows_out(acc)
}

/// The 8 rows' fifth bits of a Q5 block at `blk` (rows `row` bytes apart).
#[inline(always)]
unsafe fn rows_qh(blk: *const u8, row: usize, off: usize) -> [u32; ROWS] {
    std::array::from_fn(|r| (blk.add(r * row + off) as *const u32).read_unaligned())
}

#[inline(always)]
unsafe fn rows_q5_0<D: Dot>(n: usize, w: &[u8], act: &[u8], aux: &[u8]) -> [f32; ROWS] {
    const BLOCK: usize = std::mem::size_of::<BlockQ5_0>();
    let nb = n / 32;
    let row = rows_len::<BlockQ5_0>(w, nb);
    let y: &[BlockQ8_0] = &bytemuck::cast_slice(act)[..nb];
    let a: &[Q8_0Aux] = &bytemuck::cast_slice(aux)[..nb];
    let mut acc = [vdupq_n_f32(0.0); 2];
    for b in 0..nb {
        prefetch_next_rows(w, b, BLOCK);
        // SAFETY: block b of row r is w[r·row + b·BLOCK..][..BLOCK], inside w (rows_len).
        let blk = w.as_ptr().add(b * BLOCK);
        let q = std::array::from_fn(|r| blk.add(r * row + std::mem::offset_of!(BlockQ5_0, qs)));
        let qh = rows_qh(blk, row, std::mem::offset_of!(BlockQ5_0, qh));
        let isum = rows_isum32::<D>(q, Some(qh), y[b].qs.as_ptr());
        let dx = rows_f16(blk, row, std::mem::offset_of!(BlockQ5_0, d));
        let (sum16, dy) = (vdupq_n_s32(16 * a[b].sum), vdupq_n_f32(a[b].d));
        for h in 0..2 {
            // Σ(q − 16)·y = Σq·y − 16·Σy; then (dx·dy)·Σ, added, rounded like the scalar `vec_dot`.
            let s = vcvtq_f32_s32(vsubq_s32(isum[h], sum16));
            acc[h] = vaddq_f32(acc[h], vmulq_f32(vmulq_f32(dx[h], dy), s));
        }
    }
    rows_out(acc)
}

#[inline(always)]
unsafe fn rows_q5_1<D: Dot>(n: usize, w: &[u8], act: &[u8], aux: &[u8]) -> [f32; ROWS] {
    const BLOCK: usize = std::mem::size_of::<BlockQ5_1>();
    let nb = n / 32;
    let row = rows_len::<BlockQ5_1>(w, nb);
    let y: &[BlockQ8_1] = &bytemuck::cast_slice(act)[..nb];
    let a: &[Q8_1Aux] = &bytemuck::cast_slice(aux)[..nb];
    let mut acc = [vdupq_n_f32(0.0); 2];
    for b in 0..nb {
        prefetch_next_rows(w, b, BLOCK);
        // SAFETY: block b of row r is w[r·row + b·BLOCK..][..BLOCK], inside w (rows_len).
        let blk = w.as_ptr().add(b * BLOCK);
        let q = std::array::from_fn(|r| blk.add(r * row + std::mem::offset_of!(BlockQ5_1, qs)));
        let qh = rows_qh(blk, row, std::mem::offset_of!(BlockQ5_1, qh));
        let isum = rows_isum32::<D>(q, Some(qh), y[b].qs.as_ptr());
        let dx = rows_f16(blk, row, std::mem::offset_of!(BlockQ5_1, d));
        let mx = rows_f16(blk, row, std::mem::offset_of!(BlockQ5_1, m));
        let (dy, sy) = (vdupq_n_f32(a[b].d), vdupq_n_f32(a[b].s));
        for h in 0..2 {
            // (dx·dy)·Σq·y + m·s, then added, rounded like the scalar `vec_dot`.
            let v = vaddq_f32(vmulq_f32(vmulq_f32(dx[h], dy), vcvtq_f32_s32(isum[h])), vmulq_f32(mx[h], sy));
            acc[h] = vaddq_f32(acc[h], v);
        }
    }
    rows_out(acc)
}

/// A K-quant super-block against a Q8_K block, for the kernels generic
/// over the format: one row ([`vec_dot_k`]) and 8 rows ([`rows_k`]).
trait BlockK: bytemuck::Pod {
    /// Byte offset of the fp16 super-block scale `d`.
    const D: usize;
    /// Byte offset of the fp16 `dmin`, for the formats with a min term.
    const DMIN: Option<usize>;
    /// Against the token's block `y`: (lanes summing to Σ sc·q·y, lanes
    /// summing to the min term Σ mn·Σy; zero without mins).
    unsafe fn isum<D: Dot>(&self, y: &Q8KRegs) -> (int32x4_t, int32x4_t);
}

/// A Q8_K block in registers, loaded once per block for all the rows that
/// dot it: its 256 quants, its 16-element sums (groups 0..8, 8..16) and
/// the 8 sub-block sums of 32.
struct Q8KRegs {
    qs: [int8x16_t; 16],
    bsums: [int16x8_t; 2],
    bsums32: int16x8_t,
}

#[inline(always)]
unsafe fn q8k_regs(y: &BlockQ8K) -> Q8KRegs {
    // Byte loads: the block has alignment 1.
    let p = y.bsums.as_ptr() as *const u8;
    let bsums = [vreinterpretq_s16_u8(vld1q_u8(p)), vreinterpretq_s16_u8(vld1q_u8(p.add(16)))];
    Q8KRegs { qs: std::array::from_fn(|i| vld1q_s8(y.qs.as_ptr().add(16 * i))), bsums, bsums32: vpaddq_s16(bsums[0], bsums[1]) }
}

/// The fp16 field at byte `off` of `x`.
#[inline(always)]
fn f16_at<X: bytemuck::Pod>(x: &X, off: usize) -> [u8; 2] {
    let b = bytemuck::bytes_of(x);
    [b[off], b[off + 1]]
}

/// Lanes summing to Σ_g sc_g·p_g for 16 groups' dot lanes `p` and their i8
/// scales `sc`: two trees reduce the groups' lanes, then the scales apply
/// to 4 group sums per vector.
#[inline(always)]
unsafe fn scale16(p: [int32x4_t; 16], sc: int8x16_t) -> int32x4_t {
    let [a, b] = hsum8(std::array::from_fn(|g| p[g]));
    let [c, d] = hsum8(std::array::from_fn(|g| p[8 + g]));
    let (lo, hi) = (vmovl_s8(vget_low_s8(sc)), vmovl_high_s8(sc));
    let acc = vmulq_s32(a, vmovl_s16(vget_low_s16(lo)));
    let acc = vmlaq_s32(acc, b, vmovl_high_s16(lo));
    let acc = vmlaq_s32(acc, c, vmovl_s16(vget_low_s16(hi)));
    vmlaq_s32(acc, d, vmovl_high_s16(hi))
}

/// `v >> s` for the even shifts 0..8 of the 2-bit fields.
#[inline(always)]
unsafe fn shr2(v: uint8x16_t, s: usize) -> uint8x16_t {
    match s {
        0 => v,
        2 => vshrq_n_u8(v, 2),
        4 => vshrq_n_u8(v, 4),
        _ => vshrq_n_u8(v, 6),
    }
}

/// Q2_K/Q3_K's low 2 bits of the 16 groups: group g = 8n + 2j + h (elements
/// 16g..) is bits 2j.. of qs[32n + 16h..][..16].
#[inline(always)]
unsafe fn low2_groups(qs: &[u8; 64]) -> [uint8x16_t; 16] {
    let m3 = vdupq_n_u8(3);
    let mut q = [vdupq_n_u8(0); 16];
    for n in 0..2 {
        for h in 0..2 {
            let bits = vld1q_u8(qs.as_ptr().add(32 * n + 16 * h));
            for j in 0..4 {
                q[8 * n + 2 * j + h] = vandq_u8(shr2(bits, 2 * j), m3);
            }
        }
    }
    q
}

impl BlockK for BlockQ2K {
    const D: usize = std::mem::offset_of!(BlockQ2K, d);
    const DMIN: Option<usize> = Some(std::mem::offset_of!(BlockQ2K, dmin));
    #[inline(always)]
    unsafe fn isum<D: Dot>(&self, y: &Q8KRegs) -> (int32x4_t, int32x4_t) {
        // scales[g]: the group's scale in the low nibble, its min in the high one.
        let raw = vld1q_u8(self.scales.as_ptr());
        let sc = vreinterpretq_s8_u8(vandq_u8(raw, vdupq_n_u8(0xF)));
        let mn = vshrq_n_u8(raw, 4);
        let mut p = [vdupq_n_s32(0); 16];
        for (g, q) in low2_groups(&self.qs).into_iter().enumerate() {
            p[g] = D::dot(vdupq_n_s32(0), vreinterpretq_s8_u8(q), y.qs[g]);
        }
        let [b0, b1] = y.bsums;
        let (m0, m1) = (vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mn))), vreinterpretq_s16_u16(vmovl_high_u8(mn)));
        let msum = vmlal_high_s16(vmull_s16(vget_low_s16(m0), vget_low_s16(b0)), m0, b0);
        let msum = vmlal_high_s16(vmlal_s16(msum, vget_low_s16(m1), vget_low_s16(b1)), m1, b1);
        (scale16(p, sc), msum)
    }
}

impl BlockK for BlockQ3K {
    const D: usize = std::mem::offset_of!(BlockQ3K, d);
    const DMIN: Option<usize> = None;
    #[inline(always)]
    unsafe fn isum<D: Dot>(&self, y: &Q8KRegs) -> (int32x4_t, int32x4_t) {
        let sc = vsubq_s8(vreinterpretq_s8_u8(vld1q_u8(super::k3_scales(&self.scales).as_ptr())), vdupq_n_s8(32));
        let hm = [vld1q_u8(self.hmask.as_ptr()), vld1q_u8(self.hmask.as_ptr().add(16))];
        let mut p = [vdupq_n_s32(0); 16];
        for (g, lo) in low2_groups(&self.qs).into_iter().enumerate() {
            // q = low 2 bits − 4 where the high bit is clear: bit 4n + j of
            // hmask[16h + l] for group g = 8n + 2j + h.
            let bit = 4 * (g / 8) + g % 8 / 2;
            let clear = vbicq_u8(vdupq_n_u8(4), vtstq_u8(hm[g % 2], vdupq_n_u8(1 << bit)));
            let q = vsubq_s8(vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(clear));
            p[g] = D::dot(vdupq_n_s32(0), q, y.qs[g]);
        }
        (scale16(p, sc), vdupq_n_s32(0))
    }
}

impl BlockK for BlockQ5K {
    const D: usize = std::mem::offset_of!(BlockQ5K, d);
    const DMIN: Option<usize> = Some(std::mem::offset_of!(BlockQ5K, dmin));
    #[inline(always)]
    unsafe fn isum<D: Dot>(&self, y: &Q8KRegs) -> (int32x4_t, int32x4_t) {
        let (m4, m16) = (vdupq_n_u8(0xF), vdupq_n_u8(16));
        let (qh0, qh1) = (vld1q_u8(self.qh.as_ptr()), vld1q_u8(self.qh.as_ptr().add(16)));
        let mut p = [vdupq_n_s32(0); 8];
        for j in 0..QK_K / 64 {
            let q5 = self.qs.as_ptr().add(32 * j);
            let (b0, b1) = (vld1q_u8(q5), vld1q_u8(q5.add(16)));
            // Fifth bit (+16): bit 2j of qh[l] for the low nibbles, 2j+1 for the high.
            let (u1, u2) = (vdupq_n_u8(1 << (2 * j)), vdupq_n_u8(2 << (2 * j)));
            let h = |qh: uint8x16_t, u: uint8x16_t| vandq_u8(vtstq_u8(qh, u), m16);
            let l0 = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(b0, m4), h(qh0, u1)));
            let l1 = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(b1, m4), h(qh1, u1)));
            let h0 = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(b0, 4), h(qh0, u2)));
            let h1 = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(b1, 4), h(qh1, u2)));
            p[2 * j] = dot32v::<D>(l0, l1, y.qs[4 * j], y.qs[4 * j + 1]);
            p[2 * j + 1] = dot32v::<D>(h0, h1, y.qs[4 * j + 2], y.qs[4 * j + 3]);
        }
        k4_sums(p, &self.scales, y.bsums32)
    }
}

impl BlockK for BlockQ6K {
    const D: usize = std::mem::offset_of!(BlockQ6K, d);
    const DMIN: Option<usize> = None;
    #[inline(always)]
    unsafe fn isum<D: Dot>(&self, y: &Q8KRegs) -> (int32x4_t, int32x4_t) {
        let mut p = [vdupq_n_s32(0); 16];
        for h in 0..QK_K / 128 {
            for (g, q) in q6_k_quants(self, h).into_iter().enumerate() {
                p[8 * h + g] = D::dot(vdupq_n_s32(0), q, y.qs[8 * h + g]);
            }
        }
        (scale16(p, vld1q_s8(self.scales.as_ptr())), vdupq_n_s32(0))
    }
}

/// One row of a K-quant: Σ_b d_b·dy_b·Σ isum (− dmin_b·dy_b·min term).
#[inline(always)]
unsafe fn vec_dot_k<D: Dot, X: BlockK>(w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[X], &[BlockQ8K]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let (s, m) = x.isum::<D>(&q8k_regs(y));
        if let Some(o) = X::DMIN {
            sumf -= fp16(f16_at(x, o)) * y.d() * vaddvq_s32(m) as f32;
        }
        sumf += fp16(f16_at(x, X::D)) * y.d() * vaddvq_s32(s) as f32;
    }
    sumf
}

/// K-quants, the 8 rows block by block (as [`rows_q4_k`]).
#[inline(always)]
unsafe fn rows_k<D: Dot, X: BlockK>(n: usize, w: &[u8], act: &[u8]) -> [f32; ROWS] {
    let block = std::mem::size_of::<X>();
    let nb = n / QK_K;
    let row = rows_len::<X>(w, nb);
    let x: &[X] = bytemuck::cast_slice(w);
    let y: &[BlockQ8K] = &bytemuck::cast_slice(act)[..nb];
    let (mut acc, mut acc_m) = ([vdupq_n_f32(0.0); 2], [vdupq_n_f32(0.0); 2]);
    for b in 0..nb {
        prefetch_next_rows(w, b, block);
        let yr = q8k_regs(&y[b]);
        let (mut is, mut ms) = ([vdupq_n_s32(0); ROWS], [vdupq_n_s32(0); ROWS]);
        for r in 0..ROWS {
            (is[r], ms[r]) = x[r * nb + b].isum::<D>(&yr);
        }
        // SAFETY: block b of row r is w[r·row + b·block..][..block], inside w (rows_len).
        let blk = w.as_ptr().add(b * block);
        let dx = rows_f16(blk, row, X::D);
        let dy = vdupq_n_f32(y[b].d());
        let is = hsum8(is);
        for h in 0..2 {
            acc[h] = vfmaq_f32(acc[h], vmulq_f32(dx[h], dy), vcvtq_f32_s32(is[h]));
        }
        if let Some(o) = X::DMIN {
            let (mx, ms) = (rows_f16(blk, row, o), hsum8(ms));
            for h in 0..2 {
                acc_m[h] = vfmaq_f32(acc_m[h], vmulq_f32(mx[h], dy), vcvtq_f32_s32(ms[h]));
            }
        }
    }
    rows_out([vsubq_f32(acc[0], acc_m[0]), vsubq_f32(acc[1], acc_m[1])])
}

// ---------------------------------------------------------------- floats

#[target_feature(enable = "neon")]
unsafe fn vec_dot_f32(n: usize, w: &[u8], act: &[u8]) -> f32 {
    // Byte slices at any offset: vld1q_f32 only needs element alignment on
    // aarch64 for performance, not correctness, but read via u8 to be safe.
    let (x, y) = (w.as_ptr(), act.as_ptr());
    let mut acc = vdupq_n_f32(0.0);
    let mut i = 0;
    while i + 4 <= n {
        let a = vreinterpretq_f32_u8(vld1q_u8(x.add(4 * i)));
        let b = vreinterpretq_f32_u8(vld1q_u8(y.add(4 * i)));
        acc = vfmaq_f32(acc, a, b);
        i += 4;
    }
    let mut s = vaddvq_f32(acc);
    while i < n {
        let a = (x.add(4 * i) as *const f32).read_unaligned();
        let b = (y.add(4 * i) as *const f32).read_unaligned();
        s += a * b;
        i += 1;
    }
    s
}

// ---------------------------------------------------------------- IQ4_NL / IQ4_XS
//
// 4-bit indices into `kvalues_iq4nl`: one `tbl` (`vqtbl1q_s8`) per 16
// elements gives the signed values (|v| ≤ 127), then Q8_0's / Q6_K's dots.

/// The table values of 16 index bytes: (elements 0..16, elements 16..32).
#[inline(always)]
unsafe fn iq4nl_values(qs: &[u8; 16]) -> (int8x16_t, int8x16_t) {
    let table = vld1q_s8(KVALUES_IQ4NL.as_ptr());
    let v = vld1q_u8(qs.as_ptr());
    (vqtbl1q_s8(table, vandq_u8(v, vdupq_n_u8(0xF))), vqtbl1q_s8(table, vshrq_n_u8(v, 4)))
}

#[inline(always)]
unsafe fn vec_dot_iq4_nl<D: Dot>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[BlockIQ4NL], &[BlockQ8_0]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let mut sumv = vdupq_n_f32(0.0);
    for (x, y) in x.iter().zip(y) {
        let (q0, q1) = iq4nl_values(&x.qs);
        let p = dot32v::<D>(q0, q1, vld1q_s8(y.qs.as_ptr()), vld1q_s8(y.qs.as_ptr().add(16)));
        sumv = vmlaq_n_f32(sumv, vcvtq_f32_s32(p), fp16(y.d) * fp16(x.d));
    }
    vaddvq_f32(sumv)
}

#[inline(always)]
unsafe fn vec_dot_iq4_xs<D: Dot>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[BlockIQ4XS], &[BlockQ8K]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let ls = iq4_xs::scales(x);
        let mut sumi = 0i32;
        for ib in 0..QK_K / 32 {
            let (q0, q1) = iq4nl_values(&x.qs[ib]);
            sumi += dot32::<D>(q0, q1, y.qs.as_ptr().add(32 * ib)) * ls[ib] as i32;
        }
        sumf += fp16(x.d) * y.d() * sumi as f32;
    }
    sumf
}

// ---- Activation quantizers (ggml's `quantize_row_q8_*_ref`, byte for byte) ----

/// One activation row to `ty` (as [`quant::quantize_row_act`]): Q8_0, Q8_1
/// and Q8_K here; F16 (the unstable float16x4_t) and the other formats
/// through the scalar path.
#[target_feature(enable = "neon")]
unsafe fn quantize_act(ty: quant::GgmlType, x: &[f32], dst: &mut [u8]) {
    use quant::GgmlType::*;
    assert_eq!(ty.row_size(x.len()), Some(dst.len()), "quantize_act {ty}");
    match ty {
        Q8_0 => {
            for (x, b) in x.chunks_exact(32).zip(bytemuck::cast_slice_mut::<_, BlockQ8_0>(dst)) {
                b.d = quant::common::f32_to_f16(q8_block32(x, &mut b.qs));
            }
        }
        Q8_1 => {
            for (x, b) in x.chunks_exact(32).zip(bytemuck::cast_slice_mut::<_, BlockQ8_1>(dst)) {
                let d = q8_block32(x, &mut b.qs);
                b.d = quant::common::f32_to_f16(d);
                let qs = b.qs.as_ptr();
                let sum = vaddlvq_s8(vld1q_s8(qs)) as i32 + vaddlvq_s8(vld1q_s8(qs.add(16))) as i32;
                b.s = quant::common::f32_to_f16(sum as f32 * d);
            }
        }
        Q8_K => {
            for (x, b) in x.chunks_exact(QK_K).zip(bytemuck::cast_slice_mut::<_, BlockQ8K>(dst)) {
                q8_k_block(x, b);
            }
        }
        _ => quant::quantize_row_act(ty, x, dst),
    }
}

/// max |x| of 4k values; `fmaxnm` skips NaNs as `f32::max` does (`fmax` would keep them).
#[inline(always)]
unsafe fn amax_f32(x: &[f32]) -> f32 {
    let mut m = vdupq_n_f32(0.0);
    for c in x.chunks_exact(4) {
        m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(c.as_ptr())));
    }
    vmaxnmvq_f32(m)
}

/// Q8_0/Q8_1's block: d = amax/127, qs = round_i8(x·id), the scalar's
/// operations in its order; returns d. `fcvtas` is `roundf` (half away from
/// zero, saturating, NaN → 0) and the saturating narrows clamp to i8, as
/// `common::round_i8` does.
#[inline(always)]
unsafe fn q8_block32(x: &[f32], qs: &mut [i8; 32]) -> f32 {
    let d = amax_f32(x) / 127.0;
    let id = vdupq_n_f32(if d != 0.0 { 1.0 / d } else { 0.0 });
    for (x, qs) in x.chunks_exact(8).zip(qs.chunks_exact_mut(8)) {
        let lo = vcvtaq_s32_f32(vmulq_f32(vld1q_f32(x.as_ptr()), id));
        let hi = vcvtaq_s32_f32(vmulq_f32(vld1q_f32(x.as_ptr().add(4)), id));
        vst1_s8(qs.as_mut_ptr(), vqmovn_s16(vcombine_s16(vqmovn_s32(lo), vqmovn_s32(hi))));
    }
    d
}

/// Q8_K's block (`q8_k::quantize_row`): `max` is the first value of largest
/// magnitude; qs = nearest_int(iscale·x).min(127) as i8: `fcvtns` rounds
/// half to even and saturates like the scalar's casts (NaN → 0), the
/// narrows keep the low byte like `as i8`; bsums from qs.
#[inline(always)]
unsafe fn q8_k_block(x: &[f32], b: &mut BlockQ8K) {
    let amax = amax_f32(x);
    if amax == 0.0 {
        *b = bytemuck::Zeroable::zeroed();
        return;
    }
    let vamax = vdupq_n_f32(amax);
    let mut first = 0;
    for (i, c) in x.chunks_exact(4).enumerate() {
        if vmaxvq_u32(vceqq_f32(vabsq_f32(vld1q_f32(c.as_ptr())), vamax)) != 0 {
            first = 4 * i + c.iter().position(|v| v.abs() == amax).unwrap_or(0);
            break;
        }
    }
    let iscale = -127.0 / x[first];
    let vis = vdupq_n_f32(iscale);
    let cap = vdupq_n_s32(127);
    for (x, qs) in x.chunks_exact(8).zip(b.qs.chunks_exact_mut(8)) {
        let lo = vminq_s32(vcvtnq_s32_f32(vmulq_f32(vis, vld1q_f32(x.as_ptr()))), cap);
        let hi = vminq_s32(vcvtnq_s32_f32(vmulq_f32(vis, vld1q_f32(x.as_ptr().add(4)))), cap);
        vst1_s8(qs.as_mut_ptr(), vmovn_s16(vcombine_s16(vmovn_s32(lo), vmovn_s32(hi))));
    }
    for (qs, s) in b.qs.chunks_exact(16).zip(b.bsums.iter_mut()) {
        *s = vaddlvq_s8(vld1q_s8(qs.as_ptr())).to_le_bytes();
    }
    b.d = (1.0 / iscale).to_le_bytes();
}
