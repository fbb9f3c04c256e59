//! SIMD dot kernels, chosen once at run time.
//!
//! [`CpuKernels`] is a table of function pointers: the scalar references from
//! `quant/` (always correct, always available) or, when the CPU has them,
//! AVX2+FMA+F16C kernels on x86-64 and NEON (+dotprod) kernels on aarch64.
//! [`CpuKernels::detect`] picks one table when the backend is built and logs
//! it; the kernels never test CPU features again in the hot loop.
//!
//! Every SIMD kernel computes the same integer block sums as its scalar twin
//! (the `maddubs`/`sdot` products here cannot saturate for the value ranges
//! of the formats and of our activation quantizers); only the order of the
//! final f32 accumulation differs, as it does between ggml's own kernels.
//! The parity tests in `tests.rs` hold every kernel to its scalar twin.

use half::f16;

use crate::quant::{self, GgmlType};

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(all(test, target_os = "linux"))]
mod bench;
pub mod tile;
#[cfg(test)]
mod tests;

/// `vec_dot` of one weight row (n elements) with one activation row in its `vec_dot_type`.
pub type VecDotFn = fn(usize, &[u8], &[u8]) -> f32;

/// `vec_dot` of [`tile::ROWS`] consecutive weight rows, in place in their
/// GGUF layout (`w.len() == ROWS · row_size`), with one activation row and its
/// [`tile::TileFormat`] aux: `(n, w, act, aux) -> [row dots]`. Decoding one
/// token reads each weight once; these kernels share the token's blocks and
/// the horizontal reductions among 8 rows instead of paying them per row.
pub type RowsDotFn = fn(usize, &[u8], &[u8], &[u8]) -> [f32; tile::ROWS];

/// The kernels of one instruction set. Formats without a SIMD kernel point
/// at the scalar reference.
pub struct CpuKernels {
    /// What was chosen, for the log and `ember bench` ("avx2+fma+f16c", "neon+dotprod", "scalar").
    pub isa: &'static str,
    pub q4_0: VecDotFn,
    pub q4_1: VecDotFn,
    pub q5_0: VecDotFn,
    pub q5_1: VecDotFn,
    pub q8_0: VecDotFn,
    pub q2_k: VecDotFn,
    pub q3_k: VecDotFn,
    pub q4_k: VecDotFn,
    pub q5_k: VecDotFn,
    pub q6_k: VecDotFn,
    pub f16: VecDotFn,
    pub f32: VecDotFn,
    /// The non-linear 4-bit formats (table lookup of the nibbles).
    pub iq4_nl: VecDotFn,
    pub iq4_xs: VecDotFn,
    /// Attention's scores: `out[j] = q·k_j` (f32 sums of f16 products), k_j
    /// the `q.len()` values at `k[j·stride..]`. One call per query and head,
    /// not per key: no indirect call and no set-up per key.
    pub dot_f16: fn(&[f16], &[f16], usize, &mut [f32]),
    /// Attention's `acc += Σ_j p[j] · v_j` over f16 rows v_j at `v[j·stride..]`,
    /// key by key in order (the same sums as one `acc += p·v` per key).
    pub axpy_f16: fn(&[f32], &[f16], usize, &mut [f32]),
    /// Rounds each value to the nearest f16 (ties to even), in place.
    pub round_f16: fn(&mut [f32]),
    /// Strip kernels for prompt processing (see [`tile`]); `None`: the
    /// matmul uses the row kernels above.
    pub q4_0_tile: Option<tile::TileDotFn>,
    pub q4_1_tile: Option<tile::TileDotFn>,
    pub q4_k_tile: Option<tile::TileDotFn>,
    pub q5_0_tile: Option<tile::TileDotFn>,
    pub q5_1_tile: Option<tile::TileDotFn>,
    pub q8_0_tile: Option<tile::TileDotFn>,
    pub q2_k_tile: Option<tile::TileDotFn>,
    pub q3_k_tile: Option<tile::TileDotFn>,
    pub q5_k_tile: Option<tile::TileDotFn>,
    pub q6_k_tile: Option<tile::TileDotFn>,
    pub iq4_nl_tile: Option<tile::TileDotFn>,
    pub iq4_xs_tile: Option<tile::TileDotFn>,
    /// Wide strip kernels ([`tile::Q4_0x16`], AVX-512); where one is `Some`,
    /// the matmul packs 16-row strips for its format instead of 8-row ones.
    pub q4_0_wide: Option<tile::WideDotFn>,
    pub q5_0_wide: Option<tile::WideDotFn>,
    pub q8_0_wide: Option<tile::WideDotFn>,
    pub iq4_nl_wide: Option<tile::WideDotFn>,
    /// 8-row kernels for generation (see [`RowsDotFn`]); `None`: the matmul
    /// calls the row kernels above once per row.
    pub q4_0_rows: Option<RowsDotFn>,
    pub q4_1_rows: Option<RowsDotFn>,
    pub q4_k_rows: Option<RowsDotFn>,
    pub q8_0_rows: Option<RowsDotFn>,
    pub q5_0_rows: Option<RowsDotFn>,
    pub q5_1_rows: Option<RowsDotFn>,
    pub q2_k_rows: Option<RowsDotFn>,
    pub q3_k_rows: Option<RowsDotFn>,
    pub q5_k_rows: Option<RowsDotFn>,
    pub q6_k_rows: Option<RowsDotFn>,
    /// Quantizes one activation row to a `vec_dot_type` (Q8_0, Q8_1, Q8_K,
    /// F16, …): the same bytes as [`quant::quantize_row_act`], which the
    /// formats without a SIMD quantizer fall back to.
    pub quantize_act: fn(GgmlType, &[f32], &mut [u8]),
}

/// The portable path: the scalar references of `quant/`.
pub static SCALAR: CpuKernels = CpuKernels {
    isa: "scalar",
    q4_0: quant::q4_0::vec_dot,
    q4_1: quant::q4_1::vec_dot,
    q5_0: quant::q5_0::vec_dot,
    q5_1: quant::q5_1::vec_dot,
    q8_0: quant::q8_0::vec_dot,
    q2_k: quant::q2_k::vec_dot,
    q3_k: quant::q3_k::vec_dot,
    q4_k: quant::q4_k::vec_dot,
    q5_k: quant::q5_k::vec_dot,
    q6_k: quant::q6_k::vec_dot,
    f16: quant::float::vec_dot_f16,
    f32: quant::float::vec_dot_f32,
    iq4_nl: quant::iq4_nl::vec_dot,
    iq4_xs: quant::iq4_xs::vec_dot,
    dot_f16: dot_f16_scalar,
    axpy_f16: axpy_f16_scalar,
    round_f16: round_f16_scalar,
    q4_0_tile: None,
    q4_1_tile: None,
    q4_k_tile: None,
    q5_0_tile: None,
    q5_1_tile: None,
    q8_0_tile: None,
    q2_k_tile: None,
    q3_k_tile: None,
    q5_k_tile: None,
    q6_k_tile: None,
    iq4_nl_tile: None,
    iq4_xs_tile: None,
    q4_0_wide: None,
    q5_0_wide: None,
    q8_0_wide: None,
    iq4_nl_wide: None,
    q4_0_rows: None,
    q4_1_rows: None,
    q4_k_rows: None,
    q8_0_rows: None,
    q5_0_rows: None,
    q5_1_rows: None,
    q2_k_rows: None,
    q3_k_rows: None,
    q5_k_rows: None,
    q6_k_rows: None,
    quantize_act: quant::quantize_row_act,
};

impl CpuKernels {
    /// The best table this CPU runs, or [`SCALAR`] when `force_scalar`.
    pub fn detect(force_scalar: bool) -> &'static CpuKernels {
        if force_scalar {
            return &SCALAR;
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = x86::detect() {
            return k;
        }
        #[cfg(target_arch = "aarch64")]
        if let Some(k) = aarch64::detect() {
            return k;
        }
        &SCALAR
    }

    /// Every table this CPU can run (scalar first); for parity tests and benchmarks.
    pub fn available() -> Vec<&'static CpuKernels> {
        let mut v = vec![&SCALAR];
        #[cfg(target_arch = "x86_64")]
        v.extend(x86::available());
        #[cfg(target_arch = "aarch64")]
        v.extend(aarch64::available());
        v
    }

    /// Dot of a weight row with an activation row already in `vec_dot_type(ty)`.
    #[inline]
    pub fn vec_dot(&self, ty: GgmlType, n: usize, w: &[u8], act: &[u8]) -> f32 {
        use GgmlType::*;
        debug_assert_eq!(ty.row_size(n), Some(w.len()));
        debug_assert_eq!(quant::vec_dot_type(ty).row_size(n), Some(act.len()));
        let f = match ty {
            Q4_0 => self.q4_0,
            Q4_1 => self.q4_1,
            Q5_0 => self.q5_0,
            Q5_1 => self.q5_1,
            Q8_0 => self.q8_0,
            Q2_K => self.q2_k,
            Q3_K => self.q3_k,
            Q4_K => self.q4_k,
            Q5_K => self.q5_k,
            Q6_K => self.q6_k,
            F16 => self.f16,
            F32 => self.f32,
            IQ4_NL => self.iq4_nl,
            IQ4_XS => self.iq4_xs,
            _ => return quant::vec_dot(ty, n, w, act),
        };
        f(n, w, act)
    }
}

impl CpuKernels {
    /// The strip layout and kernel for `ty`, if this table has one.
    #[inline]
    pub fn tile(&self, ty: GgmlType) -> Option<(&'static tile::TileFormat, tile::TileDotFn)> {
        use GgmlType::*;
        let f = match ty {
            Q4_0 => self.q4_0_tile,
            Q4_1 => self.q4_1_tile,
            Q4_K => self.q4_k_tile,
            Q5_0 => self.q5_0_tile,
            Q5_1 => self.q5_1_tile,
            Q8_0 => self.q8_0_tile,
            Q2_K => self.q2_k_tile,
            Q3_K => self.q3_k_tile,
            Q5_K => self.q5_k_tile,
            Q6_K => self.q6_k_tile,
            IQ4_NL => self.iq4_nl_tile,
            IQ4_XS => self.iq4_xs_tile,
            _ => None,
        }?;
        Some((tile::format(ty)?, f))
    }
}

impl CpuKernels {
    /// The wide strip pack and kernel for `ty`, if this table has one (its
    /// aux is the [`tile::format`]'s).
    #[inline]
    pub fn wide(&self, ty: GgmlType) -> Option<(tile::PackFn, tile::WideDotFn)> {
        use GgmlType::*;
        let f = match ty {
            Q4_0 => self.q4_0_wide,
            Q5_0 => self.q5_0_wide,
            Q8_0 => self.q8_0_wide,
            IQ4_NL => self.iq4_nl_wide,
            _ => None,
        }?;
        Some((tile::pack_wide(ty)?, f))
    }
}

impl CpuKernels {
    /// The 8-row kernel for `ty` and the aux layout it reads, if this table has one.
    #[inline]
    pub fn rows(&self, ty: GgmlType) -> Option<(&'static tile::TileFormat, RowsDotFn)> {
        use GgmlType::*;
        let f = match ty {
            Q4_0 => self.q4_0_rows,
            Q4_1 => self.q4_1_rows,
            Q4_K => self.q4_k_rows,
            Q8_0 => self.q8_0_rows,
            Q5_0 => self.q5_0_rows,
            Q5_1 => self.q5_1_rows,
            Q2_K => self.q2_k_rows,
            Q3_K => self.q3_k_rows,
            Q5_K => self.q5_k_rows,
            Q6_K => self.q6_k_rows,
            _ => None,
        }?;
        Some((rows_aux(ty)?, f))
    }
}

/// The aux an 8-row kernel for `ty` reads: the one of its activations'
/// `vec_dot_type` ([`tile::Q8_0Aux`], [`tile::Q8_1Aux`] or [`tile::Q8KAux`]),
/// whichever weight format it is for. The Q4 strip layouts carry exactly
/// these (the 8-row kernels use only a layout's `aux_size` and `aux`), and
/// one shared layout per activation type lets products of different formats
/// in one generation region share one aux.
fn rows_aux(ty: GgmlType) -> Option<&'static tile::TileFormat> {
    use GgmlType::*;
    match quant::vec_dot_type(ty) {
        Q8_0 => tile::format(Q4_0),
        Q8_1 => tile::format(Q4_1),
        Q8_K => tile::format(Q4_K),
        _ => None,
    }
}

/// The cache lines an 8-row kernel prefetches while it dots block `b` (of
/// `block` bytes per row) of its group `w`, and whether into L1 (else L2).
/// They are the next group's (the next call's, as the matmul walks its rows
/// in order), in lock-step: the same share of its bytes as this step
/// consumes, so they are cached when its call starts. Eight interleaved row
/// streams restart every call, too short for the hardware prefetchers to
/// learn (measured on x86: without this, generation ran below the one-row
/// kernels from memory). Into L1 when two groups fit there and each step
/// asks for a few lines, else into L2: a 5760-wide group is 26 KiB, and a
/// K-quant step's 18-line burst into L1 fills its miss buffers and stalls
/// the loads of the block being dotted (an x86 8-row Q4_K kernel from memory,
/// 2 threads: 17 GB/s into L1, 31 into L2). Past the last group the lines lie outside the
/// weights: only prefetch them, which never faults.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
fn next_rows_lines(w: &[u8], b: usize, block: usize) -> (impl Iterator<Item = *const u8>, bool) {
    const LINE: usize = 64;
    const L1_GROUP_MAX: usize = 12 << 10;
    const L1_STEP_MAX: usize = 4 * LINE;
    let step = tile::ROWS * block;
    let next = w.as_ptr().wrapping_add(w.len() + b * step);
    let l1 = w.len() <= L1_GROUP_MAX && step <= L1_STEP_MAX;
    ((0..step.div_ceil(LINE)).map(move |l| next.wrapping_add(LINE * l)), l1)
}

/// `w`'s row length in bytes for 8 rows of `nb` blocks of `B`: asserted,
/// as the 8-row kernels read the rows through raw pointers.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
fn rows_len<B>(w: &[u8], nb: usize) -> usize {
    let row = nb * std::mem::size_of::<B>();
    assert_eq!(w.len(), tile::ROWS * row, "8-row kernel: w is not 8 rows of {nb} blocks");
    row
}

/// Q3_K's 16 sub-block scales as their unsigned 6-bit values (scale + 32),
/// unpacked from the 12 packed bytes with word operations (ggml's
/// `kmask1`/`kmask2` form of `quant::q3k_scales`, without its per-element
/// loop); the kernels subtract the 32 in SIMD.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[inline(always)]
fn k3_scales(q: &[u8; 12]) -> [u8; 16] {
    const M4: u32 = 0x0F0F_0F0F;
    const M2: u32 = 0x0303_0303;
    let w = |k: usize| u32::from_le_bytes([q[4 * k], q[4 * k + 1], q[4 * k + 2], q[4 * k + 3]]);
    let (w0, w1, hi) = (w(0), w(1), w(2));
    // Scales 0..8: low nibbles of bytes 0..8; 8..16: their high nibbles. The
    // top 2 bits of scale j are bits 2(j / 4).. of byte 8 + j % 4.
    let s = [
        (w0 & M4) | ((hi & M2) << 4),
        (w1 & M4) | (((hi >> 2) & M2) << 4),
        ((w0 >> 4) & M4) | (((hi >> 4) & M2) << 4),
        ((w1 >> 4) & M4) | (((hi >> 6) & M2) << 4),
    ];
    bytemuck::cast(s.map(u32::to_le_bytes))
}

impl std::fmt::Debug for CpuKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.isa)
    }
}

fn dot_f16_scalar(q: &[f16], k: &[f16], stride: usize, out: &mut [f32]) {
    for (j, o) in out.iter_mut().enumerate() {
        let mut d = 0f32;
        for (a, b) in q.iter().zip(&k[j * stride..]) {
            d += a.to_f32() * b.to_f32();
        }
        *o = d;
    }
}

fn axpy_f16_scalar(p: &[f32], v: &[f16], stride: usize, acc: &mut [f32]) {
    for (j, &p) in p.iter().enumerate() {
        for (a, b) in acc.iter_mut().zip(&v[j * stride..]) {
            *a += p * b.to_f32();
        }
    }
}

fn round_f16_scalar(x: &mut [f32]) {
    for v in x {
        *v = f16::from_f32(*v).to_f32();
    }
}
