//! x86-64 kernels: AVX2 + FMA + F16C (ggml's `__AVX2__` paths).
//!
//! The `unsafe fn`s carry `#[target_feature]`; the safe wrappers in the
//! table are sound because [`detect`] only hands the table out after
//! `is_x86_feature_detected!` saw every feature it needs.

// The block kernels index several arrays in lock-step by one counter, as
// ggml's C does; iterator chains would hide that.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use half::f16;

use super::tile::{KQuant, KStrip, Q4_0x16, Q4_0x8, Q4_1x8, Q8KAux, Q8_0Aux, Q8_1Aux, Quants, Sym32, ROWS, TOKS, WIDE_ROWS, WIDE_TOKS};
use super::{formats, slot_of, CpuKernels, FormatKernels, SCALAR_FORMATS};
use crate::quant::iq4_nl::{BlockIQ4NL, KVALUES_IQ4NL};
use crate::quant::iq4_xs::BlockIQ4XS;
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

/// Builds a kernel table: instantiates the integer kernels (written once,
/// generic over [`Isa`]) inside `#[target_feature]` wrappers, so each table's
/// copies are compiled for exactly the features its `detect` checked.
macro_rules! kernel_table {
    ($isa:literal, $feat:literal, $I:ty) => {{
        kernel_table!(@wrap $feat, $I, fn(&[u8]) -> f32,
            q4_0 => vec_dot_q4_0, q4_1 => vec_dot_q4_1, q5_0 => vec_dot_q5_0, q5_1 => vec_dot_q5_1,
            q8_0 => vec_dot_q8_0, q2_k => vec_dot_q2_k, q3_k => vec_dot_q3_k, q4_k => vec_dot_q4_k, q5_k => vec_dot_q5_k, q6_k => vec_dot_q6_k);
        kernel_table!(@tile $feat, $I,
            q4_0_tile => tile_sym32[BlockQ4_0], q4_1_tile => tile_min32[BlockQ4_1], q4_k_tile => tile_k[BlockQ4K],
            q5_0_tile => tile_sym32[BlockQ5_0], q5_1_tile => tile_min32[BlockQ5_1], q8_0_tile => tile_sym32[BlockQ8_0],
            q2_k_tile => tile_k[BlockQ2K], q3_k_tile => tile_k[BlockQ3K], q5_k_tile => tile_k[BlockQ5K],
            q6_k_tile => tile_k[BlockQ6K]);
        kernel_table!(@tile $feat, $I, iq4_nl_tile => tile_sym32[BlockIQ4NL], iq4_xs_tile => tile_k[BlockIQ4XS]);
        kernel_table!(@rows $feat, $I, q4_0_rows => rows_q4_0, q4_1_rows => rows_q4_1);
        kernel_table!(@rows $feat, $I, q8_0_rows => rows_q8_0, q5_0_rows => rows_q5_0, q5_1_rows => rows_q5_1);
        kernel_table!(@wrap $feat, $I, fn(&[u8]) -> f32, iq4_nl => vec_dot_iq4_nl, iq4_xs => vec_dot_iq4_xs);
        CpuKernels {
            isa: $isa,
            formats: formats![SCALAR_FORMATS;
                Q4_0 => FormatKernels {
                    dot: |n, w, a| unsafe { q4_0(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { q4_0_tile(n, x, y, a) }),
                    // AVX-512's 16-row strips: `wide_kernels`, set in that table only.
                    wide: None,
                    rows: Some(|n, w, y, a| unsafe { q4_0_rows(n, w, y, a) }),
                },
                Q4_1 => FormatKernels {
                    dot: |n, w, a| unsafe { q4_1(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { q4_1_tile(n, x, y, a) }),
                    wide: None,
                    rows: Some(|n, w, y, a| unsafe { q4_1_rows(n, w, y, a) }),
                },
                Q5_0 => FormatKernels {
                    dot: |n, w, a| unsafe { q5_0(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { q5_0_tile(n, x, y, a) }),
                    wide: None,
                    rows: Some(|n, w, y, a| unsafe { q5_0_rows(n, w, y, a) }),
                },
                Q5_1 => FormatKernels {
                    dot: |n, w, a| unsafe { q5_1(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { q5_1_tile(n, x, y, a) }),
                    wide: None,
                    rows: Some(|n, w, y, a| unsafe { q5_1_rows(n, w, y, a) }),
                },
                Q8_0 => FormatKernels {
                    dot: |n, w, a| unsafe { q8_0(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { q8_0_tile(n, x, y, a) }),
                    wide: None,
                    rows: Some(|n, w, y, a| unsafe { q8_0_rows(n, w, y, a) }),
                },
                // The K-quants stream one row at a time, as Q4_K: 8-row Q2_K,
                // Q3_K, Q5_K and Q6_K kernels (as NEON's) were 5-13% faster from
                // L2 but not from memory (2 threads, huge pages: 0.86-1.04× the
                // one-row kernels' time; Q6_K 0.95× on a Qwen2.5-1.5B-shaped
                // token's matmuls).
                Q2_K => FormatKernels {
                    dot: |n, w, a| unsafe { q2_k(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { q2_k_tile(n, x, y, a) }),
                    wide: None,
                    rows: None,
                },
                Q3_K => FormatKernels {
                    dot: |n, w, a| unsafe { q3_k(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { q3_k_tile(n, x, y, a) }),
                    wide: None,
                    rows: None,
                },
                Q4_K => FormatKernels {
                    dot: |n, w, a| unsafe { q4_k(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { q4_k_tile(n, x, y, a) }),
                    wide: None,
                    // An 8-row Q4_K kernel (as NEON's) measured 3–10% slower end to end than
                    // the one-row kernel, which streams each row linearly.
                    rows: None,
                },
                Q5_K => FormatKernels {
                    dot: |n, w, a| unsafe { q5_k(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { q5_k_tile(n, x, y, a) }),
                    wide: None,
                    rows: None,
                },
                Q6_K => FormatKernels {
                    dot: |n, w, a| unsafe { q6_k(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { q6_k_tile(n, x, y, a) }),
                    wide: None,
                    rows: None,
                },
                F16 => FormatKernels::dot(|n, w, a| unsafe { dot_f16_raw(w.as_ptr() as *const u16, a.as_ptr() as *const u16, n) }),
                F32 => FormatKernels::dot(|n, w, a| unsafe { vec_dot_f32(n, w, a) }),
                IQ4_NL => FormatKernels {
                    dot: |n, w, a| unsafe { iq4_nl(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { iq4_nl_tile(n, x, y, a) }),
                    wide: None,
                    rows: None,
                },
                IQ4_XS => FormatKernels {
                    dot: |n, w, a| unsafe { iq4_xs(n, w, a) },
                    tile: Some(|n, x, y, a| unsafe { iq4_xs_tile(n, x, y, a) }),
                    wide: None,
                    rows: None,
                },
            ],
            dot_f16: |q, k, stride, out| unsafe { dot_f16_rows(q, k, stride, out) },
            axpy_f16: |p, v, stride, acc| unsafe { axpy_f16_rows(p, v, stride, acc) },
            round_f16: |x| unsafe { round_f16(x) },
            // The same AVX2 quantizers in both tables: 512-bit lanes would not
            // shorten a pass over a 32-value block.
            quantize_act: |ty, x, dst| unsafe { quantize_act(ty, x, dst) },
        }
    }};
    (@wrap $feat:literal, $I:ty, fn($A:ty) -> $R:ty, $($name:ident => $kernel:ident),*) => {$(
        #[target_feature(enable = $feat)]
        unsafe fn $name(n: usize, w: &[u8], a: $A) -> $R {
            $kernel::<$I>(n, w, a)
        }
    )*};
    (@rows $feat:literal, $I:ty, $($name:ident => $kernel:ident),*) => {$(
        #[target_feature(enable = $feat)]
        unsafe fn $name(n: usize, w: &[u8], act: &[u8], aux: &[u8]) -> [f32; ROWS] {
            $kernel::<$I>(n, w, act, aux)
        }
    )*};
    (@tile $feat:literal, $I:ty, $($name:ident => $kernel:ident [$F:ty]),*) => {$(
        // One instance per token count, so the accumulators are registers.
        #[target_feature(enable = $feat)]
        unsafe fn $name(n: usize, x: &[u8], y: &[&[u8]], a: &[&[u8]]) -> [[f32; ROWS]; TOKS] {
            match y.len() {
                4 => $kernel::<$I, 4, $F>(n, x, y, a),
                3 => $kernel::<$I, 3, $F>(n, x, y, a),
                2 => $kernel::<$I, 2, $F>(n, x, y, a),
                _ => $kernel::<$I, 1, $F>(n, x, y, a),
            }
        }
    )*};
}

/// The wide strip kernels ([`tile_sym32_x16`]) in `#[target_feature]`
/// wrappers, one instance per token count (the accumulators stay registers).
macro_rules! wide_kernels {
    ($feat:literal, $($name:ident => $F:ty),*) => {$(
        #[target_feature(enable = $feat)]
        unsafe fn $name(n: usize, x: &[u8], y: &[&[u8]], a: &[&[u8]]) -> [[f32; WIDE_ROWS]; WIDE_TOKS] {
            match y.len() {
                8 => tile_sym32_x16::<8, $F>(n, x, y, a),
                7 => tile_sym32_x16::<7, $F>(n, x, y, a),
                6 => tile_sym32_x16::<6, $F>(n, x, y, a),
                5 => tile_sym32_x16::<5, $F>(n, x, y, a),
                4 => tile_sym32_x16::<4, $F>(n, x, y, a),
                3 => tile_sym32_x16::<3, $F>(n, x, y, a),
                2 => tile_sym32_x16::<2, $F>(n, x, y, a),
                _ => tile_sym32_x16::<1, $F>(n, x, y, a),
            }
        }
    )*};
}
wide_kernels!("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    q4_0_wide => BlockQ4_0, q5_0_wide => BlockQ5_0, q8_0_wide => BlockQ8_0, iq4_nl_wide => BlockIQ4NL);

// SAFETY (both tables): `detect`/`available` hand a table out only after
// `is_x86_feature_detected!` saw every feature in its `$feat` (the wide
// kernels' features are the AVX-512 table's).
static AVX2: CpuKernels = kernel_table!("avx2+fma+f16c", "avx2,fma,f16c", Avx2);
static AVX512: CpuKernels = {
    let mut k = kernel_table!("avx512vnni", "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", Vnni);
    k.formats[slot_of(quant::GgmlType::Q4_0)].wide = Some(|n, x, y, a| unsafe { q4_0_wide(n, x, y, a) });
    k.formats[slot_of(quant::GgmlType::Q5_0)].wide = Some(|n, x, y, a| unsafe { q5_0_wide(n, x, y, a) });
    k.formats[slot_of(quant::GgmlType::Q8_0)].wide = Some(|n, x, y, a| unsafe { q8_0_wide(n, x, y, a) });
    k.formats[slot_of(quant::GgmlType::IQ4_NL)].wide = Some(|n, x, y, a| unsafe { iq4_nl_wide(n, x, y, a) });
    k
};

fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

fn has_avx512vnni() -> bool {
    has_avx2()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

pub(super) fn detect() -> Option<&'static CpuKernels> {
    available().pop()
}

/// Every table this CPU runs, best last.
pub(super) fn available() -> Vec<&'static CpuKernels> {
    let mut v = Vec::new();
    if has_avx2() {
        v.push(&AVX2);
    }
    if has_avx512vnni() {
        v.push(&AVX512);
    }
    v
}

/// One fp16 → f32 with F16C's `vcvtph2ps` (ggml's `_cvtsh_ss`), exact like
/// the scalar conversion.
#[inline]
#[target_feature(enable = "f16c")]
unsafe fn fp16(h: [u8; 2]) -> f32 {
    fp16_mul(h, f16::ONE.to_le_bytes())
}

/// fp16(a) · fp16(b), both converted by one `vcvtph2ps` of a GPR-built u32.
///
/// Why not two `_cvtsh_ss`: LLVM sees that only lane 0 of such a conversion
/// is used, drops the zeroing of the other lanes and loads the half with
/// `vpinsrw` into whatever register is free, often the loop's accumulator,
/// chaining every block's scale behind the previous block's FMA (that made
/// the Q4_0 dot ~2.5× slower). Here two lanes are used and `vmovd` from a
/// general register writes the whole vector, so there is no false dependency.
#[inline]
#[target_feature(enable = "f16c")]
unsafe fn fp16_mul(a: [u8; 2], b: [u8; 2]) -> f32 {
    let ab = u16::from_le_bytes(a) as u32 | (u16::from_le_bytes(b) as u32) << 16;
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(ab as i32));
    _mm_cvtss_f32(_mm_mul_ss(v, _mm_movehdup_ps(v)))
}

// ---------------------------------------------------------------- helpers

/// Sum of the 8 f32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum_f32_8(x: __m256) -> f32 {
    let res = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    let res = _mm_add_ps(res, _mm_movehl_ps(res, res));
    let res = _mm_add_ss(res, _mm_movehdup_ps(res));
    _mm_cvtss_f32(res)
}

/// 16 bytes of packed nibbles → 32 bytes: low nibbles in lanes 0..16 (elements
/// j), high nibbles in lanes 16..32 (elements j+16), the Q4_0/Q4_1 order.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn bytes_from_nibbles_32(p: *const u8) -> __m256i {
    let tmp = _mm_loadu_si128(p as *const __m128i);
    let bytes = _mm256_insertf128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1);
    _mm256_and_si256(_mm256_set1_epi8(0xF), bytes)
}

/// The u8·i8 products, the one thing the AVX2 and AVX-512 tables do
/// differently. Partial sums stay in the ISA's natural width (AVX2's
/// `maddubs` i16 pairs, VNNI's `dpbusd` i32 quads) until `widen`, so AVX2
/// can still subtract and scale in i16 as ggml does. No i16 pair sum can
/// saturate for the formats' ranges (see the module doc of `simd`).
trait Isa {
    /// Partial sums of u8·i8 products.
    unsafe fn mul(u: __m256i, s: __m256i) -> __m256i;
    /// `acc` + `mul(u, s)`. On AVX2 the sums stay i16, so at most 8 of
    /// these for 4-bit `u` (8 · 2 · 15 · 128 < 2^15) before `widen`, 4 for
    /// 5-bit, 2 for 6-bit (`i16_steps`).
    unsafe fn mul_acc(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
    /// `mul` results → Σ of 4 adjacent products per i32 lane.
    unsafe fn widen(p: __m256i) -> __m256i;
    /// `mul` results → Σ of 4 adjacent products per i32 lane, times i16
    /// element `i` of `sc16` (16 i16 lanes, the same 8 in each half: a
    /// K-quant block's sub-block scales), picked in registers rather than
    /// broadcast from a general register.
    unsafe fn widen_by(p: __m256i, sc16: __m256i, i: usize) -> __m256i;

    /// `v` with bit 4 set in each byte i where bit i of `bits` is set (Q5
    /// quants' fifth bits; bit 4 of `v` is clear).
    unsafe fn or_bit4(v: __m256i, bits: u32) -> __m256i;

    /// Whether `mul` sums in i16 (AVX2), bounding the quants and the
    /// number of `mul_acc`s before `widen` (see `i16_steps`).
    const I16_SUMS: bool;
    /// `mul` results → Σ of 4 adjacent products per i32 lane, times that
    /// lane's scale `sc` (an i32 holding it in both i16 halves, `tile::sc_pair`).
    unsafe fn widen_mul(p: __m256i, sc: __m256i) -> __m256i;

    /// Σ of 4 adjacent u8·i8 products per i32 lane.
    #[inline(always)]
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
        Self::widen(Self::mul(u, s))
    }
}

/// AVX2: `maddubs` (i16 pairs), then `madd` to i32.
struct Avx2;
impl Isa for Avx2 {
    const I16_SUMS: bool = true;
    #[inline(always)]
    unsafe fn widen_mul(p: __m256i, sc: __m256i) -> __m256i {
        // i16 pairs (a, b) · (s, s): s·(a + b), widened and scaled in one step.
        _mm256_madd_epi16(p, sc)
    }
    #[inline(always)]
    unsafe fn mul(u: __m256i, s: __m256i) -> __m256i {
        _mm256_maddubs_epi16(u, s)
    }
    #[inline(always)]
    unsafe fn mul_acc(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_add_epi16(acc, _mm256_maddubs_epi16(u, s))
    }
    #[inline(always)]
    unsafe fn widen(p: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_set1_epi16(1), p)
    }
    #[inline(always)]
    unsafe fn widen_by(p: __m256i, sc16: __m256i, i: usize) -> __m256i {
        scale_pairs(p, sc16, i, i)
    }
    #[inline(always)]
    unsafe fn or_bit4(v: __m256i, bits: u32) -> __m256i {
        _mm256_or_si256(v, _mm256_and_si256(bytes_from_bits_32(bits.to_le_bytes()), _mm256_set1_epi8(0x10)))
    }
}

/// AVX-512 VNNI on 256-bit vectors: one `vpdpbusd` per product; scales
/// by `vpmulld`.
struct Vnni;
impl Isa for Vnni {
    const I16_SUMS: bool = false;
    #[inline(always)]
    unsafe fn widen_mul(p: __m256i, sc: __m256i) -> __m256i {
        _mm256_mullo_epi32(p, _mm256_srai_epi32(sc, 16))
    }
    #[inline(always)]
    unsafe fn mul(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    }
    #[inline(always)]
    unsafe fn mul_acc(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(acc, u, s)
    }
    #[inline(always)]
    unsafe fn widen(p: __m256i) -> __m256i {
        p
    }
    #[inline(always)]
    unsafe fn widen_by(p: __m256i, sc16: __m256i, i: usize) -> __m256i {
        // i32 lanes = element i (its high bytes zeroed by the 0x80 picks).
        let pick = (0x8080_0000u32 | ((2 * i as u32 + 1) << 8) | (2 * i as u32)) as i32;
        _mm256_mullo_epi32(p, _mm256_shuffle_epi8(sc16, _mm256_set1_epi32(pick)))
    }
    #[inline(always)]
    unsafe fn or_bit4(v: __m256i, bits: u32) -> __m256i {
        // The bits as a byte mask: one masked add.
        _mm256_mask_add_epi8(v, bits, v, _mm256_set1_epi8(0x10))
    }
}

/// `maddubs` results (i16 pairs) → Σ of 2 pairs per i32 lane, times
/// signed i16 element `lo` of `sc16` in bytes 0..16 and `hi` in 16..32
/// (`sc16`: 16 i16 lanes, the same 8 in each half), picked in registers
/// rather than broadcast from a general register: one `madd`.
#[inline(always)]
unsafe fn scale_pairs(p: __m256i, sc16: __m256i, lo: usize, hi: usize) -> __m256i {
    let pick = |i: usize| _mm_set1_epi16((((2 * i + 1) << 8) | (2 * i)) as i16);
    _mm256_madd_epi16(_mm256_shuffle_epi8(sc16, _mm256_set_m128i(pick(hi), pick(lo))), p)
}

/// Σ u·y over 32 u8·i8 pairs, 16 times scale `lo` then 16 times scale `hi`
/// of `sc16` (as [`scale_pairs`]), in i32 lanes. `maddubs` and a `madd`
/// in both tables: VNNI's i32 quads would need their signed scales
/// shifted into place and a `vpmulld` (measured 5-12% slower per row for
/// Q6_K and Q3_K).
#[inline(always)]
unsafe fn mul_by2(u: __m256i, y: __m256i, sc16: __m256i, lo: usize, hi: usize) -> __m256i {
    scale_pairs(_mm256_maddubs_epi16(u, y), sc16, lo, hi)
}

/// Σ pairs of i8·i8 → 8 i32 lanes (maddubs wants unsigned × signed: move
/// x's sign onto y). |x| ≤ 128, |y| ≤ 127 keeps the i16 pair sums exact.
#[inline(always)]
unsafe fn sum_i8<I: Isa>(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    I::dot(ax, sy)
}

// ---------------------------------------------------------------- 32-blocks

/// 8 fp16 fields → 8 f32 with one `vcvtph2ps` (all lanes used: no false
/// dependency, see [`fp16_mul`]).
#[inline(always)]
unsafe fn fp16x8(h: [i16; 8]) -> __m256 {
    _mm256_cvtph_ps(_mm_set_epi16(h[7], h[6], h[5], h[4], h[3], h[2], h[1], h[0]))
}

/// Lane b = Σ of the 8 lanes of `s[b]`: 8 horizontal sums in 9 shuffles/adds.
#[inline(always)]
unsafe fn hsum_i32_8x8(s: [__m256i; 8]) -> __m256i {
    let h = |i: usize| _mm256_hadd_epi32(s[i], s[i + 1]);
    let t = [h(0), h(2), h(4), h(6)];
    let (u0, u1) = (_mm256_hadd_epi32(t[0], t[1]), _mm256_hadd_epi32(t[2], t[3]));
    // u0 = [Σ½ s0..s3 | other ½ s0..s3], u1 likewise for s4..s7.
    _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31))
}

/// A 32-element weight block and its activation block, for [`dot_blocks32`].
/// A trait rather than closures: `#[inline(always)]` methods are inlined
/// into the `#[target_feature]` wrappers, where LLVM left closures as calls
/// compiled without the features.
/// The fp16 (m, s) pair of a block's min term.
type MinFn<X, Y> = fn(&X, &Y) -> ([u8; 2], [u8; 2]);

trait Block32: bytemuck::Pod {
    type Y: bytemuck::Pod;
    /// (dx, dy) fp16 scales.
    fn d(&self, y: &Self::Y) -> ([u8; 2], [u8; 2]);
    /// (m, s) fp16 of the min term m·s (Q4_1/Q5_1), `None` for symmetric formats.
    const MIN: Option<MinFn<Self, Self::Y>>;
    /// Σ q·y in i32 lanes.
    unsafe fn isum<I: Isa>(&self, y: &Self::Y) -> __m256i;
}

impl Block32 for BlockQ4_0 {
    type Y = BlockQ8_0;
    #[inline(always)]
    fn d(&self, y: &BlockQ8_0) -> ([u8; 2], [u8; 2]) {
        (self.d, y.d)
    }
    const MIN: Option<MinFn<Self, Self::Y>> = None;
    #[inline(always)]
    unsafe fn isum<I: Isa>(&self, y: &BlockQ8_0) -> __m256i {
        let qx = _mm256_sub_epi8(bytes_from_nibbles_32(self.qs.as_ptr()), _mm256_set1_epi8(8));
        sum_i8::<I>(qx, _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i))
    }
}

impl Block32 for BlockQ4_1 {
    type Y = BlockQ8_1;
    #[inline(always)]
    fn d(&self, y: &BlockQ8_1) -> ([u8; 2], [u8; 2]) {
        (self.d, y.d)
    }
    // The min term: m·Σy = m·s, with s precomputed by the activation quantizer.
    const MIN: Option<MinFn<Self, Self::Y>> = Some(|x, y| (x.m, y.s));
    #[inline(always)]
    unsafe fn isum<I: Isa>(&self, y: &BlockQ8_1) -> __m256i {
        let qx = bytes_from_nibbles_32(self.qs.as_ptr());
        I::dot(qx, _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i))
    }
}

impl Block32 for BlockQ5_0 {
    type Y = BlockQ8_0;
    #[inline(always)]
    fn d(&self, y: &BlockQ8_0) -> ([u8; 2], [u8; 2]) {
        (self.d, y.d)
    }
    const MIN: Option<MinFn<Self, Self::Y>> = None;
    #[inline(always)]
    unsafe fn isum<I: Isa>(&self, y: &BlockQ8_0) -> __m256i {
        // q - 16: OR 0xF0 (i.e. -16) into the bytes whose fifth bit is clear.
        let hi = _mm256_andnot_si256(bytes_from_bits_32(self.qh), _mm256_set1_epi8(0xF0u8 as i8));
        let qx = _mm256_or_si256(bytes_from_nibbles_32(self.qs.as_ptr()), hi);
        sum_i8::<I>(qx, _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i))
    }
}

impl Block32 for BlockQ5_1 {
    type Y = BlockQ8_1;
    #[inline(always)]
    fn d(&self, y: &BlockQ8_1) -> ([u8; 2], [u8; 2]) {
        (self.d, y.d)
    }
    const MIN: Option<MinFn<Self, Self::Y>> = Some(|x, y| (x.m, y.s));
    #[inline(always)]
    unsafe fn isum<I: Isa>(&self, y: &BlockQ8_1) -> __m256i {
        let hi = _mm256_and_si256(bytes_from_bits_32(self.qh), _mm256_set1_epi8(0x10));
        let qx = _mm256_or_si256(bytes_from_nibbles_32(self.qs.as_ptr()), hi);
        I::dot(qx, _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i))
    }
}

/// The 32-block dots: Σ_b fp16(dx_b)·fp16(dy_b)·Σ isum(b) (+ Σ_b
/// fp16(m_b)·fp16(s_b), the Q4_1/Q5_1 min term).
///
/// Eight blocks at a time: their integer sums are reduced horizontally
/// together and their scales converted by one `vcvtph2ps` each side, so the
/// per-block cost is the integer dot alone (converting and broadcasting one
/// scale product per block cost as much as the dot). Leftover blocks take
/// the one-block path.
#[inline(always)]
unsafe fn dot_blocks32<I: Isa, X: Block32>(w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[X], &[X::Y]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let (mut acc, mut acc_m) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (mut xc, mut yc) = (x.chunks_exact(8), y.chunks_exact(8));
    for (x, y) in (&mut xc).zip(&mut yc) {
        // Plain loops, no closures or `array::map`: LLVM left those as calls
        // compiled without this function's target features.
        let mut s = [_mm256_setzero_si256(); 8];
        let (mut dx, mut dy, mut m, mut sy) = ([0i16; 8], [0i16; 8], [0i16; 8], [0i16; 8]);
        for b in 0..8 {
            s[b] = x[b].isum::<I>(&y[b]);
            let (a, c) = x[b].d(&y[b]);
            (dx[b], dy[b]) = (i16::from_le_bytes(a), i16::from_le_bytes(c));
            if let Some(min) = X::MIN {
                let (a, c) = min(&x[b], &y[b]);
                (m[b], sy[b]) = (i16::from_le_bytes(a), i16::from_le_bytes(c));
            }
        }
        let dxy = _mm256_mul_ps(fp16x8(dx), fp16x8(dy));
        acc = _mm256_fmadd_ps(dxy, _mm256_cvtepi32_ps(hsum_i32_8x8(s)), acc);
        if X::MIN.is_some() {
            acc_m = _mm256_fmadd_ps(fp16x8(m), fp16x8(sy), acc_m);
        }
    }
    let mut acc1 = _mm256_setzero_ps();
    let mut summs = 0f32;
    for (x, y) in xc.remainder().iter().zip(yc.remainder()) {
        let (dx, dy) = x.d(y);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(fp16_mul(dx, dy)), _mm256_cvtepi32_ps(x.isum::<I>(y)), acc1);
        if let Some(min) = X::MIN {
            let (m, s) = min(x, y);
            summs += fp16_mul(m, s);
        }
    }
    hsum_f32_8(_mm256_add_ps(acc, acc1)) + hsum_f32_8(acc_m) + summs
}

#[inline(always)]
unsafe fn vec_dot_q4_0<I: Isa>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    dot_blocks32::<I, BlockQ4_0>(w, act)
}

#[inline(always)]
unsafe fn vec_dot_q4_1<I: Isa>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    dot_blocks32::<I, BlockQ4_1>(w, act)
}

#[inline(always)]
unsafe fn vec_dot_q5_0<I: Isa>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    dot_blocks32::<I, BlockQ5_0>(w, act)
}

#[inline(always)]
unsafe fn vec_dot_q5_1<I: Isa>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    dot_blocks32::<I, BlockQ5_1>(w, act)
}

/// 32 bits → 32 bytes, 0xFF where the bit is set (byte i ↔ bit i).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn bytes_from_bits_32(x: [u8; 4]) -> __m256i {
    let shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(i32::from_le_bytes(x)), shuf);
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
}

#[inline(always)]
unsafe fn vec_dot_q8_0<I: Isa>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[BlockQ8_0], &[BlockQ8_0]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let mut acc = _mm256_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        let d = _mm256_set1_ps(fp16_mul(x.d, y.d));
        let qx = _mm256_loadu_si256(x.qs.as_ptr() as *const __m256i);
        let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
        let q = _mm256_cvtepi32_ps(sum_i8::<I>(qx, qy));
        acc = _mm256_fmadd_ps(d, q, acc);
    }
    hsum_f32_8(acc)
}

// ------------------------------------------------ strips × tokens (tile.rs)
//
// Lane r of every vector is weight row r of the strip; the token's 4 bytes
// are broadcast. No horizontal sums: the accumulators are the outputs. One
// kernel per layout, generic over the formats sharing it (their quant range,
// offset and rounding are `tile`'s trait constants).

/// 4 bytes of `p` broadcast to every i32 lane.
#[inline(always)]
unsafe fn bcast4(p: *const i8) -> __m256i {
    _mm256_set1_epi32((p as *const i32).read_unaligned())
}

#[inline(always)]
unsafe fn store_tokens<const NT: usize>(acc: [__m256; NT]) -> [[f32; ROWS]; TOKS] {
    let mut out = [[0f32; ROWS]; TOKS];
    for t in 0..NT {
        _mm256_storeu_ps(out[t].as_mut_ptr(), acc[t]);
    }
    out
}

/// Steps of 4 quants ≤ `qmax` (one `mul_acc` each, adding a pair of
/// products ≤ 2·qmax·128 to each i16 lane) that AVX2's i16 sums hold
/// before they must be widened: 8 for 4 bits, 4 for 5, 2 for 6; 0 for the
/// bytes of signed weights + 128 (Q8_0, IQ4_NL, IQ4_XS), whose single pair
/// can overflow: those take [`tile_isum_i8`].
const fn i16_steps(qmax: u8) -> usize {
    i16::MAX as usize / (2 * 128 * qmax as usize)
}

/// Σ q·y per row (lane) over `steps` steps of 4 quants ≤ `qmax` (32 bytes
/// each at `qs`), for NT tokens' quants `y[t]`; widened plainly, or times
/// the rows' scales `sc` (`tile::sc_pair`s, [`Isa::widen_mul`]). Reads
/// 32·steps bytes at `qs` and 4·steps at each `y[t]`: the callers' strip
/// and activation blocks hold them.
#[inline(always)]
unsafe fn tile_isum<I: Isa, const NT: usize>(
    qs: *const u8,
    y: [*const i8; NT],
    steps: usize,
    qmax: u8,
    sc: Option<__m256i>,
) -> [__m256i; NT] {
    let mut isum = [_mm256_setzero_si256(); NT];
    if !I::I16_SUMS {
        // i32 sums: two chains per token (even and odd steps), as one
        // chain of dependent `vpdpbusd`s is bound by its latency.
        let mut acc = [[_mm256_setzero_si256(); NT]; 2];
        for k in 0..steps {
            let w = _mm256_loadu_si256(qs.add(32 * k) as *const __m256i);
            for t in 0..NT {
                acc[k % 2][t] = I::mul_acc(acc[k % 2][t], w, bcast4(y[t].add(4 * k)));
            }
        }
        for t in 0..NT {
            let p = _mm256_add_epi32(acc[0][t], acc[1][t]);
            isum[t] = match sc {
                Some(sc) => I::widen_mul(p, sc),
                None => I::widen(p),
            };
        }
        return isum;
    }
    let span = i16_steps(qmax);
    debug_assert!(span > 0);
    for k0 in (0..steps).step_by(span) {
        let mut acc = [_mm256_setzero_si256(); NT];
        for k in k0..(k0 + span).min(steps) {
            let w = _mm256_loadu_si256(qs.add(32 * k) as *const __m256i);
            for t in 0..NT {
                acc[t] = I::mul_acc(acc[t], w, bcast4(y[t].add(4 * k)));
            }
        }
        for t in 0..NT {
            let v = match sc {
                Some(sc) => I::widen_mul(acc[t], sc),
                None => I::widen(acc[t]),
            };
            isum[t] = if k0 == 0 { v } else { _mm256_add_epi32(isum[t], v) };
        }
    }
    isum
}

/// Σ w·y per row over `steps` steps of 4 quants stored as w + 128 (Q8_0,
/// IQ4_NL, IQ4_XS), where `maddubs` would overflow (AVX2): the signed w,
/// `maddubs(|w|, sign(y, w))` (pairs ≤ 2·128·127, exact) widened at every
/// step, plainly or times the rows' scales `sc` (`tile::sc_pair`s). Reads
/// 32·steps bytes at `qs` and 4·steps at each `y[t]`.
#[inline(always)]
unsafe fn tile_isum_i8<I: Isa, const NT: usize>(qs: *const u8, y: [*const i8; NT], steps: usize, sc: Option<__m256i>) -> [__m256i; NT] {
    let mut isum = [_mm256_setzero_si256(); NT];
    for k in 0..steps {
        let w = _mm256_xor_si256(_mm256_loadu_si256(qs.add(32 * k) as *const __m256i), _mm256_set1_epi8(-128));
        let aw = _mm256_sign_epi8(w, w);
        for t in 0..NT {
            let p = I::mul(aw, _mm256_sign_epi8(bcast4(y[t].add(4 * k)), w));
            let v = match sc {
                Some(sc) => I::widen_mul(p, sc),
                None => I::widen(p),
            };
            isum[t] = _mm256_add_epi32(isum[t], v);
        }
    }
    isum
}

/// Q4_0, Q5_0, Q8_0, IQ4_NL ([`Q4_0x8`]): Σ(q − OFFSET)·y = Σq·y − OFFSET·Σy
/// per block (AVX2 with bytes w + 128: Σw·y directly), then its f32 steps as
/// the scalar `vec_dot`'s (equal bit for bit).
#[inline(always)]
unsafe fn tile_sym32<I: Isa, const NT: usize, F: Sym32>(n: usize, packed: &[u8], act: &[&[u8]], aux: &[&[u8]]) -> [[f32; ROWS]; TOKS] {
    let nb = n / 32;
    let x: &[Q4_0x8] = &bytemuck::cast_slice(packed)[..nb];
    let y: [&[BlockQ8_0]; NT] = std::array::from_fn(|t| &bytemuck::cast_slice(act[t])[..nb]);
    let a: [&[Q8_0Aux]; NT] = std::array::from_fn(|t| &bytemuck::cast_slice(aux[t])[..nb]);
    let mut acc = [_mm256_setzero_ps(); NT];
    for (b, x) in x.iter().enumerate() {
        let yq = std::array::from_fn(|t| y[t][b].qs.as_ptr());
        let mut isum = [_mm256_setzero_si256(); NT];
        if I::I16_SUMS && i16_steps(F::QMAX) == 0 {
            isum = tile_isum_i8::<I, NT>(x.qs.as_ptr(), yq, 8, None);
        } else {
            let s = tile_isum::<I, NT>(x.qs.as_ptr(), yq, 8, F::QMAX, None);
            for t in 0..NT {
                isum[t] = _mm256_sub_epi32(s[t], _mm256_set1_epi32(F::OFFSET * a[t][b].sum));
            }
        }
        let dx = _mm256_loadu_ps(x.d.as_ptr());
        for t in 0..NT {
            let (s, dy) = (_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(a[t][b].d));
            let blk = if F::DXY_FIRST { _mm256_mul_ps(_mm256_mul_ps(dx, dy), s) } else { _mm256_mul_ps(_mm256_mul_ps(s, dx), dy) };
            acc[t] = _mm256_add_ps(acc[t], blk);
        }
    }
    store_tokens(acc)
}

/// [`tile_sym32`] on a wide strip ([`Q4_0x16`]) with zmm vectors (AVX-512
/// VNNI only: lane r is row r of 16): per step of 4 quants one 64-byte
/// weight load serves NT tokens, and per token one `vpdpbusd` with its 4
/// bytes broadcast covers 16 rows, as do the f32 steps per block: half the
/// broadcasts, integer-to-float steps and f32 rounding steps per row of the
/// 8-row kernel (ggml's AVX-512 Q4_0 repack GEMM also runs 16 rows per zmm).
/// The even-step chain starts at −OFFSET·Σy, so no subtraction is left per
/// block; its f32 steps are the scalar `vec_dot`'s (equal bit for bit).
#[inline(always)]
unsafe fn tile_sym32_x16<const NT: usize, F: Sym32>(
    n: usize,
    packed: &[u8],
    act: &[&[u8]],
    aux: &[&[u8]],
) -> [[f32; WIDE_ROWS]; WIDE_TOKS] {
    let nb = n / 32;
    let x: &[Q4_0x16] = &bytemuck::cast_slice(packed)[..nb];
    let y: [&[BlockQ8_0]; NT] = std::array::from_fn(|t| &bytemuck::cast_slice(act[t])[..nb]);
    let a: [&[Q8_0Aux]; NT] = std::array::from_fn(|t| &bytemuck::cast_slice(aux[t])[..nb]);
    let mut acc = [_mm512_setzero_ps(); NT];
    for (b, x) in x.iter().enumerate() {
        // Two chains per token (even and odd steps): one chain of dependent
        // `vpdpbusd`s would be bound by its latency.
        let mut s = [[_mm512_setzero_si512(); NT]; 2];
        for t in 0..NT {
            s[0][t] = _mm512_set1_epi32(-F::OFFSET * a[t][b].sum);
        }
        for k in 0..8 {
            let w = _mm512_loadu_si512(x.qs.as_ptr().add(64 * k) as *const _);
            for t in 0..NT {
                let yk = _mm512_set1_epi32((y[t][b].qs.as_ptr().add(4 * k) as *const i32).read_unaligned());
                s[k % 2][t] = _mm512_dpbusd_epi32(s[k % 2][t], w, yk);
            }
        }
        let dx = _mm512_loadu_ps(x.d.as_ptr());
        for t in 0..NT {
            let (sf, dy) = (_mm512_cvtepi32_ps(_mm512_add_epi32(s[0][t], s[1][t])), _mm512_set1_ps(a[t][b].d));
            let blk = if F::DXY_FIRST { _mm512_mul_ps(_mm512_mul_ps(dx, dy), sf) } else { _mm512_mul_ps(_mm512_mul_ps(sf, dx), dy) };
            acc[t] = _mm512_add_ps(acc[t], blk);
        }
    }
    let mut out = [[0f32; WIDE_ROWS]; WIDE_TOKS];
    for t in 0..NT {
        _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t]);
    }
    out
}

/// Q4_1, Q5_1 ([`Q4_1x8`]): (dx·dy)·Σq·y + m·s per block, the min term
/// m·Σy = m·s with s from the activation quantizer; rounded step by step
/// like the scalar `vec_dot`, whose results these equal bit for bit.
#[inline(always)]
unsafe fn tile_min32<I: Isa, const NT: usize, F: Quants>(n: usize, packed: &[u8], act: &[&[u8]], aux: &[&[u8]]) -> [[f32; ROWS]; TOKS] {
    let nb = n / 32;
    let x: &[Q4_1x8] = &bytemuck::cast_slice(packed)[..nb];
    let y: [&[BlockQ8_1]; NT] = std::array::from_fn(|t| &bytemuck::cast_slice(act[t])[..nb]);
    let a: [&[Q8_1Aux]; NT] = std::array::from_fn(|t| &bytemuck::cast_slice(aux[t])[..nb]);
    let mut acc = [_mm256_setzero_ps(); NT];
    for (b, x) in x.iter().enumerate() {
        let yq = std::array::from_fn(|t| y[t][b].qs.as_ptr());
        let isum = tile_isum::<I, NT>(x.qs.as_ptr(), yq, 8, F::QMAX, None);
        let (dx, mx) = (_mm256_loadu_ps(x.d.as_ptr()), _mm256_loadu_ps(x.m.as_ptr()));
        for t in 0..NT {
            let a = &a[t][b];
            let d = _mm256_mul_ps(dx, _mm256_set1_ps(a.d));
            let blk = _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[t])), _mm256_mul_ps(mx, _mm256_set1_ps(a.s)));
            acc[t] = _mm256_add_ps(acc[t], blk);
        }
    }
    store_tokens(acc)
}

/// The K-quants ([`Q4Kx8`]: Q4_K, Q5_K, IQ4_XS; [`K16x8`]: Q6_K, Q3_K,
/// Q2_K): per super-block Σ_j sc_j·(q·y)_j and the min term Σ_j mn_j·Σy_j,
/// two sub-blocks per `madd`; then d·dy·Σ − dmin·dy·mins, or d·dy·(Σ − mins)
/// where the mins are the quants' offset (AVX2 with bytes w + 128: Σ_j
/// sc_j·(w·y)_j directly, no min term).
#[inline(always)]
unsafe fn tile_k<I: Isa, const NT: usize, F: KQuant>(n: usize, packed: &[u8], act: &[&[u8]], aux: &[&[u8]]) -> [[f32; ROWS]; TOKS] {
    let nb = n / QK_K;
    let subs = F::X::SUBS;
    let steps = QK_K / 4 / subs;
    let x: &[F::X] = &bytemuck::cast_slice(packed)[..nb];
    let y: [&[BlockQ8K]; NT] = std::array::from_fn(|t| &bytemuck::cast_slice(act[t])[..nb]);
    let a: [&[Q8KAux]; NT] = std::array::from_fn(|t| &bytemuck::cast_slice(aux[t])[..nb]);
    // The bytes are w + 128 and the mins 128·sc (`tile::Quants`).
    let signed = I::I16_SUMS && i16_steps(F::QMAX) == 0;
    debug_assert!(!signed || F::MIN_IS_OFFSET);
    let mut acc = [_mm256_setzero_ps(); NT];
    for (b, x) in x.iter().enumerate() {
        let mut sumi = [_mm256_setzero_si256(); NT];
        for j in 0..subs {
            let sc = _mm256_loadu_si256(x.sc(j).as_ptr() as *const __m256i);
            let yq = std::array::from_fn(|t| y[t][b].qs.as_ptr().add(4 * steps * j));
            let qs = x.qs().as_ptr().add(32 * steps * j);
            let isum =
                if signed { tile_isum_i8::<I, NT>(qs, yq, steps, Some(sc)) } else { tile_isum::<I, NT>(qs, yq, steps, F::QMAX, Some(sc)) };
            for t in 0..NT {
                sumi[t] = _mm256_add_epi32(sumi[t], isum[t]);
            }
        }
        let (dx, dmin) = (_mm256_loadu_ps(x.d().as_ptr()), _mm256_loadu_ps(x.dmin().as_ptr()));
        for t in 0..NT {
            let mut summ = _mm256_setzero_si256();
            // Signed weights: no offset to take off.
            let pairs = if signed { 0 } else { subs / 2 };
            for p in 0..pairs {
                let mn = _mm256_loadu_si256(x.mn(p).as_ptr() as *const __m256i);
                let bs = F::X::bsum_pair(&a[t][b], &y[t][b], p);
                summ = _mm256_add_epi32(summ, _mm256_madd_epi16(mn, _mm256_set1_epi32(bytemuck::cast(bs))));
            }
            let dy = _mm256_set1_ps(a[t][b].d);
            if F::MIN_IS_OFFSET {
                let s = _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi[t], summ));
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dx, dy), s, acc[t]);
            } else {
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dx, dy), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
                acc[t] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin, dy), _mm256_cvtepi32_ps(summ), acc[t]);
            }
        }
    }
    store_tokens(acc)
}

// ------------------------------------------------ 8 rows × 1 token (rows.rs)
//
// Generation dots every weight row with one token, 8 consecutive rows per
// call, read in place (no repacking: the weights stay memory-mapped).
// Q4_1 reduces the 8 rows together: the token's block is loaded once for the
// 8 rows, two rows share each 256-bit vector, one horizontal-add tree per
// block gives the 8 rows' sums as one vector (lanes in [`PAIR_ORDER`]), and
// the 8 rows' scales are converted by one `vcvtph2ps`; its f32 steps are the
// scalar `vec_dot`'s, bit for bit. Q4_0 takes the rows one after another
// instead (one linear memory stream): on the 2B-shaped model that was ~6%
// faster end to end than the interleaved form (6 alternated runs), though
// slower from L2; it uses the aux to skip the sign tricks.

/// The row held by each lane after [`rows_isum32`]'s reduction.
const PAIR_ORDER: [usize; ROWS] = [0, 2, 4, 6, 1, 3, 5, 7];

/// The 8 rows' 32-element integer dots of one block: `q[r]` points at row
/// r's 16 nibble bytes (low nibbles elements 0..16, high 16..32), `qh[r]`
/// holds its fifth bits (Q5_0/Q5_1: bit j for element j), `y` points at the
/// token's 32 quants. Lane i holds row `PAIR_ORDER[i]`.
#[inline(always)]
unsafe fn rows_isum32<I: Isa>(q: [*const u8; ROWS], qh: Option<[u32; ROWS]>, y: *const i8) -> __m256i {
    let m4 = _mm256_set1_epi8(0xF);
    let ylo = _mm256_broadcastsi128_si256(_mm_loadu_si128(y as *const __m128i));
    let yhi = _mm256_broadcastsi128_si256(_mm_loadu_si128(y.add(16) as *const __m128i));
    let mut s = [_mm256_setzero_si256(); 4];
    for p in 0..4 {
        // Row 2p in bytes 0..16, row 2p+1 in 16..32.
        let lo = _mm_loadu_si128(q[2 * p] as *const __m128i);
        let v = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), _mm_loadu_si128(q[2 * p + 1] as *const __m128i), 1);
        let (mut l, mut h) = (_mm256_and_si256(v, m4), _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
        if let Some(qh) = qh {
            // Bytes 0..16: row 2p's elements 0..16 (l) or 16..32 (h); 16..32: row 2p+1's.
            let (a, b) = (qh[2 * p], qh[2 * p + 1]);
            l = I::or_bit4(l, (a & 0xFFFF) | (b << 16));
            h = I::or_bit4(h, (a >> 16) | (b & 0xFFFF_0000));
        }
        // Lanes 0..4: row 2p's partial sums, 4..8: row 2p+1's.
        s[p] = I::widen(I::mul_acc(I::mul(l, ylo), h, yhi));
    }
    // [r0 r0 r2 r2 | r1 r1 r3 r3], [r4 r4 r6 r6 | r5 r5 r7 r7] → [r0 r2 r4 r6 | r1 r3 r5 r7].
    _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]))
}

/// The 8 rows' fp16 field at byte `off` of block `b` (`row` bytes apart),
/// as f32 in [`PAIR_ORDER`].
#[inline(always)]
unsafe fn rows_f16(w: *const u8, row: usize, off: usize) -> __m256 {
    let h = |i: usize| (w.add(PAIR_ORDER[i] * row + off) as *const i16).read_unaligned();
    _mm256_cvtph_ps(_mm_set_epi16(h(7), h(6), h(5), h(4), h(3), h(2), h(1), h(0)))
}

/// Prefetches [`super::next_rows_lines`] for block `b` of `w`'s 8 rows.
#[inline(always)]
unsafe fn prefetch_next_rows(w: &[u8], b: usize, block: usize) {
    let (lines, l1) = super::next_rows_lines(w, b, block);
    for p in lines {
        if l1 {
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
        } else {
            _mm_prefetch::<_MM_HINT_T1>(p as *const i8);
        }
    }
}

/// Lanes in [`PAIR_ORDER`] → `[f32; ROWS]` by row.
#[inline(always)]
unsafe fn rows_out(acc: __m256) -> [f32; ROWS] {
    let mut lanes = [0f32; ROWS];
    _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
    let mut out = [0f32; ROWS];
    for (i, &r) in PAIR_ORDER.iter().enumerate() {
        out[r] = lanes[i];
    }
    out
}

/// The 8 rows together, block by block, as [`rows_q4_1`]: the token's
/// quants loaded once per block for all rows, the next 8 rows prefetched in
/// lock-step (8 interleaved streams defeat the hardware prefetcher; 1.6×
/// faster per row from cache than one row after another, and ~10% more
/// tokens/s on the 2B model). Unsigned nibbles, `Σ(q − 8)·y = Σq·y − 8·Σy`
/// with Σy from the aux; rounded like the scalar `vec_dot`, so bit-exact.
#[inline(always)]
unsafe fn rows_q4_0<I: Isa>(n: usize, w: &[u8], act: &[u8], aux: &[u8]) -> [f32; ROWS] {
    let nb = n / 32;
    let row = super::rows_len::<BlockQ4_0>(w, nb);
    let y: &[BlockQ8_0] = &bytemuck::cast_slice(act)[..nb];
    let a: &[Q8_0Aux] = &bytemuck::cast_slice(aux)[..nb];
    let mut acc = _mm256_setzero_ps();
    for b in 0..nb {
        let blk = w.as_ptr().add(b * std::mem::size_of::<BlockQ4_0>());
        prefetch_next_rows(w, b, std::mem::size_of::<BlockQ4_0>());
        let isum = rows_isum32::<I>(std::array::from_fn(|r| blk.add(r * row + 2)), None, y[b].qs.as_ptr());
        let isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(8 * a[b].sum));
        // (Σ·dx)·dy, as the scalar `vec_dot` rounds it.
        let v = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum), rows_f16(blk, row, 0)), _mm256_set1_ps(a[b].d));
        acc = _mm256_add_ps(acc, v);
    }
    rows_out(acc)
}

#[inline(always)]
unsafe fn rows_q4_1<I: Isa>(n: usize, w: &[u8], act: &[u8], aux: &[u8]) -> [f32; ROWS] {
    let nb = n / 32;
    let row = super::rows_len::<BlockQ4_1>(w, nb);
    let y: &[BlockQ8_1] = &bytemuck::cast_slice(act)[..nb];
    let a: &[Q8_1Aux] = &bytemuck::cast_slice(aux)[..nb];
    let mut acc = _mm256_setzero_ps();
    for b in 0..nb {
        let blk = w.as_ptr().add(b * std::mem::size_of::<BlockQ4_1>());
        prefetch_next_rows(w, b, std::mem::size_of::<BlockQ4_1>());
        let isum = rows_isum32::<I>(std::array::from_fn(|r| blk.add(r * row + 4)), None, y[b].qs.as_ptr());
        let (dx, mx) = (rows_f16(blk, row, 0), rows_f16(blk, row, 2));
        // (dx·dy)·Σq·y + m·s, rounded like the scalar `vec_dot`.
        let d = _mm256_mul_ps(dx, _mm256_set1_ps(a[b].d));
        let v = _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(isum)), _mm256_mul_ps(mx, _mm256_set1_ps(a[b].s)));
        acc = _mm256_add_ps(acc, v);
    }
    rows_out(acc)
}

// ------------------------------------- 8 rows × 1 token: Q8_0, Q5_0, Q5_1
//
// The 32-block formats as [`rows_q4_1`]: the token's block loaded once for
// the 8 rows, one reduction tree per block, the 8 rows' scales by one
// `vcvtph2ps`, the next 8 rows prefetched in lock-step; their f32 steps are
// the scalar `vec_dot`'s, so they equal it bit for bit.

#[inline(always)]
unsafe fn rows_q8_0<I: Isa>(n: usize, w: &[u8], act: &[u8], aux: &[u8]) -> [f32; ROWS] {
    const BLOCK: usize = std::mem::size_of::<BlockQ8_0>();
    let nb = n / 32;
    let row = super::rows_len::<BlockQ8_0>(w, nb);
    let y: &[BlockQ8_0] = &bytemuck::cast_slice(act)[..nb];
    let a: &[Q8_0Aux] = &bytemuck::cast_slice(aux)[..nb];
    let qs = std::mem::offset_of!(BlockQ8_0, qs);
    let mut acc = _mm256_setzero_ps();
    for b in 0..nb {
        // SAFETY: block b of row r is w[r·row + b·BLOCK..][..BLOCK], inside w (rows_len).
        let blk = w.as_ptr().add(b * BLOCK);
        prefetch_next_rows(w, b, BLOCK);
        let yq = _mm256_loadu_si256(y[b].qs.as_ptr() as *const __m256i);
        let mut s = [_mm256_setzero_si256(); ROWS];
        for (i, s) in s.iter_mut().enumerate() {
            *s = sum_i8::<I>(_mm256_loadu_si256(blk.add(PAIR_ORDER[i] * row + qs) as *const __m256i), yq);
        }
        // Σ·(dx·dy), as the scalar `vec_dot` rounds it.
        let d = _mm256_mul_ps(rows_f16(blk, row, std::mem::offset_of!(BlockQ8_0, d)), _mm256_set1_ps(a[b].d));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(hsum_i32_8x8(s)), d));
    }
    rows_out(acc)
}

/// The 8 rows' fifth bits of Q5 block `b` at `blk` (rows `row` bytes apart).
#[inline(always)]
unsafe fn rows_qh(blk: *const u8, row: usize, off: usize) -> [u32; ROWS] {
    std::array::from_fn(|r| (blk.add(r * row + off) as *const u32).read_unaligned())
}

#[inline(always)]
unsafe fn rows_q5_0<I: Isa>(n: usize, w: &[u8], act: &[u8], aux: &[u8]) -> [f32; ROWS] {
    const BLOCK: usize = std::mem::size_of::<BlockQ5_0>();
    let nb = n / 32;
    let row = super::rows_len::<BlockQ5_0>(w, nb);
    let y: &[BlockQ8_0] = &bytemuck::cast_slice(act)[..nb];
    let a: &[Q8_0Aux] = &bytemuck::cast_slice(aux)[..nb];
    let mut acc = _mm256_setzero_ps();
    for b in 0..nb {
        // SAFETY: block b of row r is w[r·row + b·BLOCK..][..BLOCK], inside w (rows_len).
        let blk = w.as_ptr().add(b * BLOCK);
        prefetch_next_rows(w, b, BLOCK);
        let q = std::array::from_fn(|r| blk.add(r * row + std::mem::offset_of!(BlockQ5_0, qs)));
        let qh = rows_qh(blk, row, std::mem::offset_of!(BlockQ5_0, qh));
        // Unsigned 5-bit quants: Σ(q − 16)·y = Σq·y − 16·Σy.
        let isum = rows_isum32::<I>(q, Some(qh), y[b].qs.as_ptr());
        let isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(16 * a[b].sum));
        // (dx·dy)·Σ, as the scalar `vec_dot` rounds it.
        let d = _mm256_mul_ps(rows_f16(blk, row, std::mem::offset_of!(BlockQ5_0, d)), _mm256_set1_ps(a[b].d));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum)));
    }
    rows_out(acc)
}

#[inline(always)]
unsafe fn rows_q5_1<I: Isa>(n: usize, w: &[u8], act: &[u8], aux: &[u8]) -> [f32; ROWS] {
    const BLOCK: usize = std::mem::size_of::<BlockQ5_1>();
    let nb = n / 32;
    let row = super::rows_len::<BlockQ5_1>(w, nb);
    let y: &[BlockQ8_1] = &bytemuck::cast_slice(act)[..nb];
    let a: &[Q8_1Aux] = &bytemuck::cast_slice(aux)[..nb];
    let mut acc = _mm256_setzero_ps();
    for b in 0..nb {
        // SAFETY: block b of row r is w[r·row + b·BLOCK..][..BLOCK], inside w (rows_len).
        let blk = w.as_ptr().add(b * BLOCK);
        prefetch_next_rows(w, b, BLOCK);
        let q = std::array::from_fn(|r| blk.add(r * row + std::mem::offset_of!(BlockQ5_1, qs)));
        let qh = rows_qh(blk, row, std::mem::offset_of!(BlockQ5_1, qh));
        let isum = rows_isum32::<I>(q, Some(qh), y[b].qs.as_ptr());
        let dx = rows_f16(blk, row, std::mem::offset_of!(BlockQ5_1, d));
        let mx = rows_f16(blk, row, std::mem::offset_of!(BlockQ5_1, m));
        // (dx·dy)·Σq·y + m·s, rounded like the scalar `vec_dot`.
        let d = _mm256_mul_ps(dx, _mm256_set1_ps(a[b].d));
        let v = _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(isum)), _mm256_mul_ps(mx, _mm256_set1_ps(a[b].s)));
        acc = _mm256_add_ps(acc, v);
    }
    rows_out(acc)
}

// ---------------------------------------------------------------- K-quants

/// The 8 sub-block scales and 8 mins of a Q4_K/Q5_K block as 16 bytes
/// (sc0..8, mn0..8), unpacked from their 12 bytes with word operations
/// (`quant::scale_min_k4` bit for bit, without its per-element branches).
#[inline(always)]
unsafe fn scales_mins_k4(q: &[u8; 12]) -> __m128i {
    const M6: u32 = 0x3F3F_3F3F;
    const M4: u32 = 0x0F0F_0F0F;
    const M2: u32 = 0x0303_0303;
    let w = |k: usize| u32::from_le_bytes(q[4 * k..4 * k + 4].try_into().unwrap());
    let (w0, w1, w2) = (w(0), w(1), w(2));
    // Sub-blocks 0..4: the low 6 bits of bytes 0..4 (scales) and 4..8 (mins);
    // 4..8: a nibble of bytes 8..12 and the top 2 bits of bytes 0..4 / 4..8.
    let sc_hi = (w2 & M4) | (((w0 >> 6) & M2) << 4);
    let mn_hi = ((w2 >> 4) & M4) | (((w1 >> 6) & M2) << 4);
    _mm_set_epi32(mn_hi as i32, (w1 & M6) as i32, sc_hi as i32, (w0 & M6) as i32)
}

/// The scales of [`scales_mins_k4`]'s `v` as 16 i16, both halves sc0..8 (for `Isa::widen_by`).
#[inline(always)]
unsafe fn scales16_k4(v: __m128i) -> __m256i {
    _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(v))
}

/// Σ_j mn_j · Σ_{32 elements of j} y, as 4 i32 lanes to add up: the min
/// term of a block (mins in [`scales_mins_k4`]'s `v`) against its Q8_K activations.
#[inline(always)]
unsafe fn min_term_k4(v: __m128i, y: &BlockQ8K) -> __m128i {
    let mn = _mm_cvtepu8_epi16(_mm_srli_si128(v, 8));
    let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
    // Sums of 32 (pairs of the 16-element bsums): ≤ 32·127, fits i16.
    let bs32 = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    _mm_madd_epi16(mn, bs32)
}

/// Σ of 4 f32 lanes.
#[inline(always)]
unsafe fn hsum_f32_4(x: __m128) -> f32 {
    let m = _mm_add_ps(x, _mm_movehl_ps(x, x));
    _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)))
}

#[inline(always)]
unsafe fn vec_dot_q4_k<I: Isa>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[BlockQ4K], &[BlockQ8K]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        let v = scales_mins_k4(&x.scales);
        let sc16 = scales16_k4(v);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(fp16(x.dmin) * y.d()), _mm_cvtepi32_ps(min_term_k4(v, y)), acc_m);
        let mut sumi = _mm256_setzero_si256();
        let (q4, q8) = (x.qs.as_ptr(), y.qs.as_ptr());
        for j in 0..QK_K / 64 {
            // 64 elements: 32 low nibbles (sub-block 2j), 32 high (2j+1).
            let q4bits = _mm256_loadu_si256(q4.add(32 * j) as *const __m256i);
            let q4l = _mm256_and_si256(q4bits, m4);
            let q4h = _mm256_and_si256(_mm256_srli_epi16(q4bits, 4), m4);
            let q8l = _mm256_loadu_si256(q8.add(64 * j) as *const __m256i);
            let q8h = _mm256_loadu_si256(q8.add(64 * j + 32) as *const __m256i);
            let pl = I::widen_by(I::mul(q4l, q8l), sc16, 2 * j);
            let ph = I::widen_by(I::mul(q4h, q8h), sc16, 2 * j + 1);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        let d = _mm256_set1_ps(fp16(x.d) * y.d());
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32_8(acc) - hsum_f32_4(acc_m)
}

// ------------------------------------------------- K-quants, one body each
//
// Q2_K, Q3_K, Q5_K and Q6_K are written once as a block's integer sums
// ([`BlockK::isum`]) and dotted by one generic driver ([`vec_dot_k`]).

/// A K-quant super-block against a Q8_K block.
trait BlockK: bytemuck::Pod {
    /// Byte offset of the fp16 super-block scale `d`.
    const D: usize;
    /// Byte offset of the fp16 `dmin`, for the formats with a min term.
    const DMIN: Option<usize>;
    /// (i32 lanes summing to Σ sc·q·y, lanes summing to the min term
    /// Σ mn·Σy; zero for formats without mins). Each lane is converted to
    /// f32 on its own, so it must stay within f32's exact integers as the
    /// scalar reference's lanes do.
    unsafe fn isum<I: Isa>(&self, y: &BlockQ8K) -> (__m256i, __m256i);
}

/// The fp16 field at byte `off` of `x`.
#[inline(always)]
fn f16_at<X: bytemuck::Pod>(x: &X, off: usize) -> [u8; 2] {
    let b = bytemuck::bytes_of(x);
    [b[off], b[off + 1]]
}

/// The 16 signed i8 sub-block scales `sc` as i16 in the layouts the sums
/// need: 0..8 and 8..16 each in both 128-bit halves (for [`mul_by2`],
/// one per half-block of 128 elements), and all 16 in order (for a `madd`
/// against the activations' 16-element sums).
#[inline(always)]
unsafe fn scales16_k16(sc: __m128i) -> ([__m256i; 2], __m256i) {
    let lo = _mm_cvtepi8_epi16(sc);
    let hi = _mm_cvtepi8_epi16(_mm_srli_si128::<8>(sc));
    ([_mm256_broadcastsi128_si256(lo), _mm256_broadcastsi128_si256(hi)], _mm256_set_m128i(hi, lo))
}

/// −`k`·Σ_j sc_j·Σy_j (as lanes), for formats whose quants are stored
/// with an offset `k` (q = u − k): Σ sc·q·y = Σ sc·u·y − k·Σ_j sc_j·Σy_j,
/// so the kernels multiply the unsigned u and take the offset once per
/// block from the activations' 16-element sums (`sc16`: the 16 scales in
/// order). The lanes' partial sums then differ from the scalar
/// reference's by their share of the offset: only for small quants and
/// scales (Q3_K), where that stays far inside f32's exact integers.
#[inline(always)]
unsafe fn offset_k16(sc16: __m256i, y: &BlockQ8K, k: i32) -> __m256i {
    let bs = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
    _mm256_mullo_epi32(_mm256_madd_epi16(sc16, bs), _mm256_set1_epi32(-k))
}

/// The token's 32 quants from element `i`.
#[inline(always)]
unsafe fn q8k(y: &BlockQ8K, i: usize) -> __m256i {
    _mm256_loadu_si256(y.qs.as_ptr().add(i) as *const __m256i)
}

/// Bits `from..from + width` of every byte of `v` moved to `to..to + width`,
/// the others cleared (16-bit shifts: what they carry over from the
/// neighbouring byte lands outside the field and is masked off).
#[inline(always)]
unsafe fn move_bits(v: __m256i, from: usize, to: usize, width: usize) -> __m256i {
    let v = if from >= to {
        _mm256_srl_epi16(v, _mm_cvtsi32_si128((from - to) as i32))
    } else {
        _mm256_sll_epi16(v, _mm_cvtsi32_si128((to - from) as i32))
    };
    _mm256_and_si256(v, _mm256_set1_epi8((((1 << width) - 1) << to) as i8))
}

impl BlockK for BlockQ2K {
    const D: usize = std::mem::offset_of!(BlockQ2K, d);
    const DMIN: Option<usize> = Some(std::mem::offset_of!(BlockQ2K, dmin));
    #[inline(always)]
    unsafe fn isum<I: Isa>(&self, y: &BlockQ8K) -> (__m256i, __m256i) {
        // scales[j]: scale in the low nibble, min in the high one.
        let raw = _mm_loadu_si128(self.scales.as_ptr() as *const __m128i);
        let m4 = _mm_set1_epi8(0xF);
        let (sc, _) = scales16_k16(_mm_and_si128(raw, m4));
        let (_, mn) = scales16_k16(_mm_and_si128(_mm_srli_epi16::<4>(raw), m4));
        let summ = _mm256_madd_epi16(mn, _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i));
        let mut sumi = _mm256_setzero_si256();
        for n in 0..QK_K / 128 {
            // Element 128n + 32j + l: bits 2j.. of qs[32n + l]; sub-blocks 2j, 2j + 1 of this half.
            let bits = _mm256_loadu_si256(self.qs.as_ptr().add(32 * n) as *const __m256i);
            for j in 0..4 {
                let q = move_bits(bits, 2 * j, 0, 2);
                sumi = _mm256_add_epi32(sumi, mul_by2(q, q8k(y, 128 * n + 32 * j), sc[n], 2 * j, 2 * j + 1));
            }
        }
        (sumi, summ)
    }
}

impl BlockK for BlockQ3K {
    const D: usize = std::mem::offset_of!(BlockQ3K, d);
    const DMIN: Option<usize> = None;
    #[inline(always)]
    unsafe fn isum<I: Isa>(&self, y: &BlockQ8K) -> (__m256i, __m256i) {
        let sc = _mm_sub_epi8(_mm_loadu_si128(super::k3_scales(&self.scales).as_ptr() as *const __m128i), _mm_set1_epi8(32));
        let (sc, sc_all) = scales16_k16(sc);
        // q = u − 4 with u = the low 2 bits + 4·(high bit), 0..8.
        let mut sumi = offset_k16(sc_all, y, 4);
        let hbits = _mm256_loadu_si256(self.hmask.as_ptr() as *const __m256i);
        for n in 0..QK_K / 128 {
            // Element 128n + 32j + l: low bits as Q2_K's, high bit = bit 4n + j of hmask[l].
            let bits = _mm256_loadu_si256(self.qs.as_ptr().add(32 * n) as *const __m256i);
            for j in 0..4 {
                let lo = move_bits(bits, 2 * j, 0, 2);
                let u = _mm256_or_si256(lo, move_bits(hbits, 4 * n + j, 2, 1));
                sumi = _mm256_add_epi32(sumi, mul_by2(u, q8k(y, 128 * n + 32 * j), sc[n], 2 * j, 2 * j + 1));
            }
        }
        (sumi, _mm256_setzero_si256())
    }
}

impl BlockK for BlockQ5K {
    const D: usize = std::mem::offset_of!(BlockQ5K, d);
    const DMIN: Option<usize> = Some(std::mem::offset_of!(BlockQ5K, dmin));
    #[inline(always)]
    unsafe fn isum<I: Isa>(&self, y: &BlockQ8K) -> (__m256i, __m256i) {
        let m4 = _mm256_set1_epi8(0xF);
        let v = scales_mins_k4(&self.scales);
        let sc16 = scales16_k4(v);
        let summ = _mm256_set_m128i(_mm_setzero_si128(), min_term_k4(v, y));
        let mut sumi = _mm256_setzero_si256();
        let hbits = _mm256_loadu_si256(self.qh.as_ptr() as *const __m256i);
        for j in 0..QK_K / 64 {
            let q5bits = _mm256_loadu_si256(self.qs.as_ptr().add(32 * j) as *const __m256i);
            // Fifth bits: bit 2j of qh[l] for the low nibbles, bit 2j+1 for
            // the high ones, moved to bit 4 (+16).
            let q5l = _mm256_add_epi8(_mm256_and_si256(q5bits, m4), move_bits(hbits, 2 * j, 4, 1));
            let q5h = _mm256_add_epi8(_mm256_and_si256(_mm256_srli_epi16::<4>(q5bits), m4), move_bits(hbits, 2 * j + 1, 4, 1));
            let pl = I::widen_by(I::mul(q5l, q8k(y, 64 * j)), sc16, 2 * j);
            let ph = I::widen_by(I::mul(q5h, q8k(y, 64 * j + 32)), sc16, 2 * j + 1);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(pl, ph));
        }
        (sumi, summ)
    }
}

impl BlockK for BlockQ6K {
    const D: usize = std::mem::offset_of!(BlockQ6K, d);
    const DMIN: Option<usize> = None;
    #[inline(always)]
    unsafe fn isum<I: Isa>(&self, y: &BlockQ8K) -> (__m256i, __m256i) {
        let (sc, _) = scales16_k16(_mm_loadu_si128(self.scales.as_ptr() as *const __m128i));
        // q = u − 32 with u the stored 6 bits, 0..64. The offset is taken
        // per pair of products (Σ(u − 32)·y = Σu·y − Σ32·y, exact in i16),
        // not once per block from the activations' 16-element sums: that
        // would leave each lane biased by its share of the offset, past
        // f32's exact integers.
        let m32 = _mm256_set1_epi8(32);
        let mut sumi = _mm256_setzero_si256();
        let m4 = _mm256_set1_epi8(0xF);
        for h in 0..QK_K / 128 {
            let ql = self.ql.as_ptr().add(64 * h);
            let bits1 = _mm256_loadu_si256(ql as *const __m256i);
            let bits2 = _mm256_loadu_si256(ql.add(32) as *const __m256i);
            let bitsh = _mm256_loadu_si256(self.qh.as_ptr().add(32 * h) as *const __m256i);
            // Element 128h + 32k + l: a nibble of ql (bits1/bits2 low, then
            // high) and bits 2k, 2k+1 of qh[l] as bits 4, 5; sub-blocks 2k, 2k + 1 of this half.
            let lo = [
                _mm256_and_si256(bits1, m4),
                _mm256_and_si256(bits2, m4),
                _mm256_and_si256(_mm256_srli_epi16::<4>(bits1), m4),
                _mm256_and_si256(_mm256_srli_epi16::<4>(bits2), m4),
            ];
            for k in 0..4 {
                let u = _mm256_or_si256(lo[k], move_bits(bitsh, 2 * k, 4, 2));
                let y8 = q8k(y, 128 * h + 32 * k);
                let p = _mm256_sub_epi16(_mm256_maddubs_epi16(u, y8), _mm256_maddubs_epi16(m32, y8));
                sumi = _mm256_add_epi32(sumi, scale_pairs(p, sc[h], 2 * k, 2 * k + 1));
            }
        }
        (sumi, _mm256_setzero_si256())
    }
}

/// One row of a K-quant: Σ_b d_b·dy_b·Σ isum (− dmin_b·dy_b·min term).
#[inline(always)]
unsafe fn vec_dot_k<I: Isa, X: BlockK>(w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[X], &[BlockQ8K]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let (mut acc, mut acc_m) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for (x, y) in x.iter().zip(y) {
        let (s, m) = x.isum::<I>(y);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(f16_at(x, X::D)) * y.d()), _mm256_cvtepi32_ps(s), acc);
        if let Some(o) = X::DMIN {
            acc_m = _mm256_fmadd_ps(_mm256_set1_ps(fp16(f16_at(x, o)) * y.d()), _mm256_cvtepi32_ps(m), acc_m);
        }
    }
    match X::DMIN {
        Some(_) => hsum_f32_8(acc) - hsum_f32_8(acc_m),
        None => hsum_f32_8(acc),
    }
}

#[inline(always)]
unsafe fn vec_dot_q2_k<I: Isa>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    vec_dot_k::<I, BlockQ2K>(w, act)
}

#[inline(always)]
unsafe fn vec_dot_q3_k<I: Isa>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    vec_dot_k::<I, BlockQ3K>(w, act)
}

#[inline(always)]
unsafe fn vec_dot_q5_k<I: Isa>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    vec_dot_k::<I, BlockQ5K>(w, act)
}

#[inline(always)]
unsafe fn vec_dot_q6_k<I: Isa>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    vec_dot_k::<I, BlockQ6K>(w, act)
}

// ---------------------------------------------------------------- floats

/// f16 dot over raw (possibly unaligned) pointers: weight rows sit at any
/// byte offset of the map and activation rows in a `Vec<u8>`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_raw(pa: *const u16, pb: *const u16, n: usize) -> f32 {
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        let a0 = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i) as *const __m128i));
        let b0 = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i) as *const __m128i));
        let a1 = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i + 8) as *const __m128i));
        let b1 = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i + 8) as *const __m128i));
        acc0 = _mm256_fmadd_ps(a0, b0, acc0);
        acc1 = _mm256_fmadd_ps(a1, b1, acc1);
        i += 16;
    }
    let mut s = hsum_f32_8(_mm256_add_ps(acc0, acc1));
    while i < n {
        let a = f16::from_bits(pa.add(i).read_unaligned()).to_f32();
        let b = f16::from_bits(pb.add(i).read_unaligned()).to_f32();
        s += a * b;
        i += 1;
    }
    s
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_rows(q: &[f16], k: &[f16], stride: usize, out: &mut [f32]) {
    let n = q.len();
    if let Some(last) = out.len().checked_sub(1) {
        assert!(k.len() >= last * stride + n, "dot_f16: k too short");
    }
    if !n.is_multiple_of(16) || n > QF_MAX {
        for (j, o) in out.iter_mut().enumerate() {
            *o = dot_f16_raw(q.as_ptr() as *const u16, k.as_ptr().add(j * stride) as *const u16, n);
        }
        return;
    }
    // The query converted once, not once per key; then exactly
    // `dot_f16_raw`'s sums (even and odd 8-lane chunks, one horizontal sum).
    let mut qf = [0f32; QF_MAX];
    for i in (0..n).step_by(8) {
        _mm256_storeu_ps(qf.as_mut_ptr().add(i), _mm256_cvtph_ps(_mm_loadu_si128(q.as_ptr().add(i) as *const __m128i)));
    }
    for (j, o) in out.iter_mut().enumerate() {
        let kp = k.as_ptr().add(j * stride) as *const u16;
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in (0..n).step_by(16) {
            let k0 = _mm256_cvtph_ps(_mm_loadu_si128(kp.add(i) as *const __m128i));
            let k1 = _mm256_cvtph_ps(_mm_loadu_si128(kp.add(i + 8) as *const __m128i));
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(qf.as_ptr().add(i)), k0, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(qf.as_ptr().add(i + 8)), k1, acc1);
        }
        *o = hsum_f32_8(_mm256_add_ps(acc0, acc1));
    }
}

/// Widest head [`dot_f16_rows`] converts up front (MLA's 576 included).
const QF_MAX: usize = 576;

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_f16_rows(p: &[f32], v: &[f16], stride: usize, acc: &mut [f32]) {
    let n = acc.len();
    if let Some(last) = p.len().checked_sub(1) {
        assert!(v.len() >= last * stride + n, "axpy_f16: v too short");
    }
    let (src, dst) = (v.as_ptr() as *const u16, acc.as_mut_ptr());
    // 32 outputs at a time stay in registers across all keys; each output
    // still gets its fmas key by key, in order.
    let mut i = 0;
    while i + 32 <= n {
        let mut a: [__m256; 4] = std::array::from_fn(|c| _mm256_loadu_ps(dst.add(i + 8 * c)));
        for (j, &pj) in p.iter().enumerate() {
            let pv = _mm256_set1_ps(pj);
            for (c, a) in a.iter_mut().enumerate() {
                let x = _mm256_cvtph_ps(_mm_loadu_si128(src.add(j * stride + i + 8 * c) as *const __m128i));
                *a = _mm256_fmadd_ps(pv, x, *a);
            }
        }
        for (c, a) in a.into_iter().enumerate() {
            _mm256_storeu_ps(dst.add(i + 8 * c), a);
        }
        i += 32;
    }
    while i + 8 <= n {
        let mut a = _mm256_loadu_ps(dst.add(i));
        for (j, &pj) in p.iter().enumerate() {
            let x = _mm256_cvtph_ps(_mm_loadu_si128(src.add(j * stride + i) as *const __m128i));
            a = _mm256_fmadd_ps(_mm256_set1_ps(pj), x, a);
        }
        _mm256_storeu_ps(dst.add(i), a);
        i += 8;
    }
    for i in i..n {
        for (j, &pj) in p.iter().enumerate() {
            acc[i] += pj * v[j * stride + i].to_f32();
        }
    }
}

/// f32 → f16 → f32 with F16C (round to nearest even, like `f16::from_f32`).
#[target_feature(enable = "avx2,f16c")]
unsafe fn round_f16(x: &mut [f32]) {
    let mut c = x.chunks_exact_mut(8);
    for c in &mut c {
        let v = _mm256_loadu_ps(c.as_ptr());
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
        _mm256_storeu_ps(c.as_mut_ptr(), _mm256_cvtph_ps(h));
    }
    for v in c.into_remainder() {
        *v = f16::from_f32(*v).to_f32();
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn vec_dot_f32(n: usize, w: &[u8], act: &[u8]) -> f32 {
    // Unaligned loads: the rows are byte slices at any offset.
    let (x, y) = (w.as_ptr() as *const f32, act.as_ptr() as *const f32);
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(i)), _mm256_loadu_ps(y.add(i)), acc);
        i += 8;
    }
    let mut s = hsum_f32_8(acc);
    while i < n {
        s += x.add(i).read_unaligned() * y.add(i).read_unaligned();
        i += 1;
    }
    s
}

// ---------------------------------------------------------------- IQ4_NL / IQ4_XS
//
// The non-linear formats store 4-bit indices into `kvalues_iq4nl`; one
// `vpshufb` per 32 elements turns them into the signed values (the table
// fits one 128-bit lane, repeated in both), ggml's AVX2 way. From there the
// dots are Q8_0's (`sum_i8`, as |value| ≤ 127) and, for IQ4_XS, the
// K-quants' scaled lanes.

/// The 32 table values of one block's 16 index bytes at `p`, in Q4_0's
/// element order (low nibbles 0..16, high nibbles 16..32).
#[inline(always)]
unsafe fn iq4nl_values_32(p: *const u8) -> __m256i {
    let table = _mm256_broadcastsi128_si256(_mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i));
    _mm256_shuffle_epi8(table, bytes_from_nibbles_32(p))
}

impl Block32 for BlockIQ4NL {
    type Y = BlockQ8_0;
    #[inline(always)]
    fn d(&self, y: &BlockQ8_0) -> ([u8; 2], [u8; 2]) {
        (self.d, y.d)
    }
    const MIN: Option<MinFn<Self, Self::Y>> = None;
    #[inline(always)]
    unsafe fn isum<I: Isa>(&self, y: &BlockQ8_0) -> __m256i {
        sum_i8::<I>(iq4nl_values_32(self.qs.as_ptr()), _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i))
    }
}

#[inline(always)]
unsafe fn vec_dot_iq4_nl<I: Isa>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    dot_blocks32::<I, BlockIQ4NL>(w, act)
}

/// IQ4_XS's 8 sub-block scales `ls − 32` as 16 i16 (ls0..8 in both halves,
/// for [`mul_by2`]), from word operations (`quant::iq4_xs::scales` bit
/// for bit, without its per-element shifts).
#[inline(always)]
unsafe fn scales16_iq4_xs(x: &BlockIQ4XS) -> __m256i {
    // Low 4 bits: byte k of scales_l to byte 2k, its nibbles to bytes 2k, 2k+1.
    let l = u32::from_le_bytes(x.scales_l) as u64;
    let l = (l | l << 16) & 0x0000_FFFF_0000_FFFF;
    let l = (l | l << 8) & 0x00FF_00FF_00FF_00FF;
    let lo = (l & 0x000F_000F_000F_000F) | ((l << 4) & 0x0F00_0F00_0F00_0F00);
    // High 2 bits: bits 2ib, 2ib+1 of scales_h to byte ib (bytes, nibbles, pairs).
    let h = u16::from_le_bytes(x.scales_h) as u64;
    let h = (h | h << 24) & 0x0000_00FF_0000_00FF;
    let h = (h | h << 12) & 0x000F_000F_000F_000F;
    let h = (h | h << 6) & 0x0303_0303_0303_0303;
    let ls = _mm_sub_epi8(_mm_cvtsi64_si128((lo | h << 4) as i64), _mm_set1_epi8(32));
    _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(ls))
}

#[inline(always)]
unsafe fn vec_dot_iq4_xs<I: Isa>(_n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y): (&[BlockIQ4XS], &[BlockQ8K]) = (bytemuck::cast_slice(w), bytemuck::cast_slice(act));
    let mut acc = _mm256_setzero_ps();
    for (x, y) in x.iter().zip(y) {
        let sc16 = scales16_iq4_xs(x);
        let mut sumi = _mm256_setzero_si256();
        for ib in 0..QK_K / 32 {
            let qx = iq4nl_values_32(x.qs[ib].as_ptr());
            let qy = _mm256_loadu_si256(y.qs.as_ptr().add(32 * ib) as *const __m256i);
            // Signed × signed as `sum_i8` does (x's sign moved onto y; the
            // i16 pair sums stay below 2·127·127), then the sub-block's signed scale.
            sumi = _mm256_add_epi32(sumi, mul_by2(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx), sc16, ib, ib));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x.d) * y.d()), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_f32_8(acc)
}

// ---- Activation quantizers (ggml's `quantize_row_q8_*_ref`, byte for byte) ----

/// One activation row to `ty` (as [`quant::quantize_row_act`]): Q8_0, Q8_1,
/// Q8_K and F16 here, the other formats through the scalar path.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_act(ty: quant::GgmlType, x: &[f32], dst: &mut [u8]) {
    use quant::GgmlType::*;
    assert_eq!(ty.row_size(x.len()), Some(dst.len()), "quantize_act {ty}");
    match ty {
        Q8_0 => {
            for (x, b) in x.chunks_exact(32).zip(bytemuck::cast_slice_mut::<_, BlockQ8_0>(dst)) {
                let (d, q) = q8_block32(x);
                b.d = f16_bytes(d);
                _mm256_storeu_si256(b.qs.as_mut_ptr() as *mut __m256i, pack_i8::<true>(q));
            }
        }
        Q8_1 => {
            for (x, b) in x.chunks_exact(32).zip(bytemuck::cast_slice_mut::<_, BlockQ8_1>(dst)) {
                let (d, q) = q8_block32(x);
                b.d = f16_bytes(d);
                _mm256_storeu_si256(b.qs.as_mut_ptr() as *mut __m256i, pack_i8::<true>(q));
                // The lanes are the stored quants (already within i8), so their sum is Σqs.
                let sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
                b.s = f16_bytes(sum as f32 * d);
            }
        }
        Q8_K => {
            for (x, b) in x.chunks_exact(QK_K).zip(bytemuck::cast_slice_mut::<_, BlockQ8K>(dst)) {
                q8_k_block(x, b);
            }
        }
        F16 => {
            let mut c = x.chunks_exact(8);
            let mut o = dst.chunks_exact_mut(16);
            for (x, o) in (&mut c).zip(&mut o) {
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(x.as_ptr()));
                _mm_storeu_si128(o.as_mut_ptr() as *mut __m128i, h);
            }
            quant::quantize_row_act(F16, c.remainder(), o.into_remainder());
        }
        _ => quant::quantize_row_act(ty, x, dst),
    }
}

/// f32 → the f16 bytes of a block scale (F16C rounds to nearest even, like `f32_to_f16`).
#[inline(always)]
unsafe fn f16_bytes(d: f32) -> [u8; 2] {
    (_mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(d))) as u16).to_le_bytes()
}

#[inline(always)]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<1>(s)))
}

/// The largest lane. `max_ps` returns its second operand when one is NaN,
/// so with the running max second a NaN is skipped, as by `f32::max`.
#[inline(always)]
unsafe fn hmax_f32_8(m: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
}

/// max |x| of 8k values (NaNs skipped).
#[inline(always)]
unsafe fn amax_f32(x: &[f32]) -> f32 {
    let sign = _mm256_set1_ps(-0.0);
    let mut m = _mm256_setzero_ps();
    for c in x.chunks_exact(8) {
        m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(c.as_ptr())), m);
    }
    hmax_f32_8(m)
}

/// Q8_0/Q8_1's block: d = amax/127 and the lanes of `round_i8(x·id)`, the
/// scalar's operations in its order.
#[inline(always)]
unsafe fn q8_block32(x: &[f32]) -> (f32, [__m256i; 4]) {
    let d = amax_f32(x) / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    let mut q = [_mm256_setzero_si256(); 4];
    for (i, q) in q.iter_mut().enumerate() {
        *q = _mm256_cvttps_epi32(round_i8(_mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(8 * i)), id)));
    }
    (d, q)
}

/// `common::round_i8` (C's `roundf`, half away from zero, into [-128, 127],
/// NaN → 0) as exact f32 integers. `_mm256_round_ps` only has ties to even,
/// so: trunc(v), plus ±1 when the dropped part is ≥ 0.5 (v − trunc(v) is exact).
#[inline(always)]
unsafe fn round_i8(v: __m256) -> __m256 {
    let sign = _mm256_set1_ps(-0.0);
    let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
    let frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    let half = _mm256_cmp_ps::<_CMP_GE_OQ>(frac, _mm256_set1_ps(0.5));
    let one = _mm256_or_ps(_mm256_set1_ps(1.0), _mm256_and_ps(v, sign));
    let r = _mm256_add_ps(t, _mm256_and_ps(half, one));
    // ±inf (from an id of inf) clamps like the scalar's saturating casts; NaN → 0.
    let r = _mm256_max_ps(_mm256_min_ps(r, _mm256_set1_ps(127.0)), _mm256_set1_ps(-128.0));
    _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(v, v))
}

/// 32 i32 lanes to 32 bytes in order: saturating (`SAT`) or keeping the low
/// byte (Q8_K's `as i8` after `min(127)`).
#[inline(always)]
unsafe fn pack_i8<const SAT: bool>(q: [__m256i; 4]) -> __m256i {
    let c = if SAT {
        _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]))
    } else {
        let m = _mm256_set1_epi32(0xff);
        let (q0, q1) = (_mm256_and_si256(q[0], m), _mm256_and_si256(q[1], m));
        let (q2, q3) = (_mm256_and_si256(q[2], m), _mm256_and_si256(q[3], m));
        _mm256_packus_epi16(_mm256_packus_epi32(q0, q1), _mm256_packus_epi32(q2, q3))
    };
    // The packs work per 128-bit lane: dwords q0lo q1lo q2lo q3lo q0hi q1hi q2hi q3hi.
    _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Q8_K's block (`q8_k::quantize_row`): `max` is the first value of largest
/// magnitude, qs = nearest_int(iscale·x).min(127) as i8 (`cvtps` rounds
/// half to even as `nearest_int`; out-of-range and NaN give i32::MIN, whose
/// low byte 0 is what the scalar's saturating casts give too), bsums from qs.
#[inline(always)]
unsafe fn q8_k_block(x: &[f32], b: &mut BlockQ8K) {
    let amax = amax_f32(x);
    if amax == 0.0 {
        *b = bytemuck::Zeroable::zeroed();
        return;
    }
    let sign = _mm256_set1_ps(-0.0);
    let vamax = _mm256_set1_ps(amax);
    let mut first = 0;
    for (i, c) in x.chunks_exact(8).enumerate() {
        let eq = _mm256_cmp_ps::<_CMP_EQ_OQ>(_mm256_andnot_ps(sign, _mm256_loadu_ps(c.as_ptr())), vamax);
        let m = _mm256_movemask_ps(eq);
        if m != 0 {
            first = 8 * i + m.trailing_zeros() as usize;
            break;
        }
    }
    let max = x[first];
    let iscale = -127.0 / max;
    let vis = _mm256_set1_ps(iscale);
    // `min` returns its second operand for a NaN: the product, so NaN stays NaN (→ 0).
    let cap = _mm256_set1_ps(127.0);
    for (x, qs) in x.chunks_exact(32).zip(b.qs.chunks_exact_mut(32)) {
        let mut q = [_mm256_setzero_si256(); 4];
        for (i, q) in q.iter_mut().enumerate() {
            *q = _mm256_cvtps_epi32(_mm256_min_ps(cap, _mm256_mul_ps(vis, _mm256_loadu_ps(x.as_ptr().add(8 * i)))));
        }
        _mm256_storeu_si256(qs.as_mut_ptr() as *mut __m256i, pack_i8::<false>(q));
    }
    // bsums: sad against 0 of qs ^ 0x80 sums 8 biased bytes per u64 lane.
    let bias = _mm256_set1_epi8(-128);
    for (qs, s) in b.qs.chunks_exact(32).zip(b.bsums.chunks_exact_mut(2)) {
        let v = _mm256_xor_si256(_mm256_loadu_si256(qs.as_ptr() as *const __m256i), bias);
        let t = _mm256_sad_epu8(v, _mm256_setzero_si256());
        let t = _mm256_add_epi64(t, _mm256_shuffle_epi32::<0x4E>(t));
        let lo = _mm256_extract_epi32::<0>(t) - 16 * 128;
        let hi = _mm256_extract_epi32::<4>(t) - 16 * 128;
        s[0] = (lo as i16).to_le_bytes();
        s[1] = (hi as i16).to_le_bytes();
    }
    b.d = (1.0 / iscale).to_le_bytes();
}
