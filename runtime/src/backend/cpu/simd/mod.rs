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
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm32;
#[cfg(target_arch = "x86_64")]
mod x86;

/// The kernel microbenchmarks, run by `cargo bench -p ember --bench kernels`
/// (`runtime/benches/kernels.rs`); public only for that target.
#[cfg(target_os = "linux")]
#[doc(hidden)]
pub mod bench;
#[cfg(any(test, target_os = "linux"))]
mod sample;
#[cfg(test)]
mod tests;
pub mod tile;

/// `vec_dot` of one weight row (n elements) with one activation row in its `vec_dot_type`.
pub type VecDotFn = fn(usize, &[u8], &[u8]) -> f32;

/// `vec_dot` of [`tile::ROWS`] consecutive weight rows, in place in their
/// GGUF layout (`w.len() == ROWS · row_size`), with one activation row and its
/// [`tile::TileFormat`] aux: `(n, w, act, aux) -> [row dots]`. Decoding one
/// token reads each weight once; these kernels share the token's blocks and
/// the horizontal reductions among 8 rows instead of paying them per row.
pub type RowsDotFn = fn(usize, &[u8], &[u8], &[u8]) -> [f32; tile::ROWS];

/// One weight format's kernels in a table.
#[derive(Clone, Copy)]
pub struct FormatKernels {
    /// `vec_dot` of one weight row with one activation row.
    pub dot: VecDotFn,
    /// Strip kernel for prompt processing (see [`tile`]); `None`: the
    /// matmul uses `dot`.
    pub tile: Option<tile::TileDotFn>,
    /// Wide strip kernel ([`tile::Q4_0x16`], AVX-512); where `Some`, the
    /// matmul packs 16-row strips for the format instead of 8-row ones.
    pub wide: Option<tile::WideDotFn>,
    /// 8-row kernel for generation (see [`RowsDotFn`]); `None`: the matmul
    /// calls `dot` once per row.
    pub rows: Option<RowsDotFn>,
}

impl FormatKernels {
    /// An entry with only a one-row kernel.
    pub const fn dot(dot: VecDotFn) -> Self {
        FormatKernels { dot, tile: None, wide: None, rows: None }
    }
}

/// How many weight formats have an entry in a [`CpuKernels`].
pub const N_FORMATS: usize = 14;

/// The entry of `ty` in [`CpuKernels`]' formats: the one mapping from
/// [`GgmlType`] to a table entry. `None`: no kernel in any table (the
/// scalar `quant::vec_dot` serves it).
pub const fn slot(ty: GgmlType) -> Option<usize> {
    use GgmlType::*;
    Some(match ty {
        Q4_0 => 0,
        Q4_1 => 1,
        Q5_0 => 2,
        Q5_1 => 3,
        Q8_0 => 4,
        Q2_K => 5,
        Q3_K => 6,
        Q4_K => 7,
        Q5_K => 8,
        Q6_K => 9,
        F16 => 10,
        F32 => 11,
        IQ4_NL => 12,
        IQ4_XS => 13,
        _ => return None,
    })
}

/// [`slot`] of a format that has one (tables are built in const context,
/// where this fails the build).
const fn slot_of(ty: GgmlType) -> usize {
    match slot(ty) {
        Some(i) => i,
        None => panic!("no kernel table entry for this format"),
    }
}

/// Builds a table's formats: `formats![base; Q4_0 => FormatKernels { … }, …]`
/// replaces the listed formats' entries of `base` (an array of
/// [`N_FORMATS`] entries); the others keep `base`'s.
macro_rules! formats {
    ($base:expr; $($ty:ident => $k:expr),* $(,)?) => {{
        let mut f: [$crate::backend::cpu::simd::FormatKernels; $crate::backend::cpu::simd::N_FORMATS] = $base;
        $( f[$crate::backend::cpu::simd::slot_of($crate::quant::GgmlType::$ty)] = $k; )*
        f
    }};
}
#[allow(unused_imports)]
use formats;

/// The kernels of one instruction set: one [`FormatKernels`] per weight
/// format (those without a SIMD kernel point at the scalar reference), and
/// the kernels of attention and activation quantization.
#[derive(Clone, Copy)]
pub struct CpuKernels {
    /// What was chosen, for the log and `ember bench` ("avx2+fma+f16c", "neon+dotprod", "scalar").
    pub isa: &'static str,
    /// Indexed by [`slot`].
    formats: [FormatKernels; N_FORMATS],
    /// Attention's scores: `out[j] = q·k_j` (f32 sums of f16 products), k_j
    /// the `q.len()` values at `k[j·stride..]`. One call per query and head,
    /// not per key: no indirect call and no set-up per key.
    pub dot_f16: fn(&[f16], &[f16], usize, &mut [f32]),
    /// Attention's `acc += Σ_j p[j] · v_j` over f16 rows v_j at `v[j·stride..]`,
    /// key by key in order (the same sums as one `acc += p·v` per key).
    pub axpy_f16: fn(&[f32], &[f16], usize, &mut [f32]),
    /// Rounds each value to the nearest f16 (ties to even), in place.
    pub round_f16: fn(&mut [f32]),
    /// Quantizes one activation row to a `vec_dot_type` (Q8_0, Q8_1, Q8_K,
    /// F16, …): the same bytes as [`quant::quantize_row_act`], which the
    /// formats without a SIMD quantizer fall back to.
    pub quantize_act: fn(GgmlType, &[f32], &mut [u8]),
}

/// The scalar references of `quant/`, every table's base: an entry with no
/// `dot` until listed (every format is, in [`SCALAR_FORMATS`]).
const SCALAR_FORMATS: [FormatKernels; N_FORMATS] = formats![[FormatKernels::dot(no_dot); N_FORMATS];
    Q4_0 => FormatKernels::dot(quant::q4_0::vec_dot),
    Q4_1 => FormatKernels::dot(quant::q4_1::vec_dot),
    Q5_0 => FormatKernels::dot(quant::q5_0::vec_dot),
    Q5_1 => FormatKernels::dot(quant::q5_1::vec_dot),
    Q8_0 => FormatKernels::dot(quant::q8_0::vec_dot),
    Q2_K => FormatKernels::dot(quant::q2_k::vec_dot),
    Q3_K => FormatKernels::dot(quant::q3_k::vec_dot),
    Q4_K => FormatKernels::dot(quant::q4_k::vec_dot),
    Q5_K => FormatKernels::dot(quant::q5_k::vec_dot),
    Q6_K => FormatKernels::dot(quant::q6_k::vec_dot),
    F16 => FormatKernels::dot(quant::float::vec_dot_f16),
    F32 => FormatKernels::dot(quant::float::vec_dot_f32),
    IQ4_NL => FormatKernels::dot(quant::iq4_nl::vec_dot),
    IQ4_XS => FormatKernels::dot(quant::iq4_xs::vec_dot),
];

/// [`SCALAR_FORMATS`]' placeholder before its entries are listed.
fn no_dot(_: usize, _: &[u8], _: &[u8]) -> f32 {
    unreachable!("a format slot without a kernel")
}

/// The portable path: the scalar references of `quant/`.
pub static SCALAR: CpuKernels = CpuKernels {
    isa: "scalar",
    formats: SCALAR_FORMATS,
    dot_f16: dot_f16_scalar,
    axpy_f16: axpy_f16_scalar,
    round_f16: round_f16_scalar,
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
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        let best = &wasm32::SIMD128;
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        let best = &SCALAR;
        best
    }

    /// Every table this CPU can run (scalar first); for parity tests and benchmarks.
    #[cfg_attr(all(target_arch = "wasm32", not(target_feature = "simd128")), allow(unused_mut))]
    pub fn available() -> Vec<&'static CpuKernels> {
        let mut v = vec![&SCALAR];
        #[cfg(target_arch = "x86_64")]
        v.extend(x86::available());
        #[cfg(target_arch = "aarch64")]
        v.extend(aarch64::available());
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        v.push(&wasm32::SIMD128);
        v
    }

    /// `ty`'s kernels, if it has an entry (see [`slot`]).
    #[inline]
    pub fn format(&self, ty: GgmlType) -> Option<&FormatKernels> {
        Some(&self.formats[slot(ty)?])
    }

    /// Dot of a weight row with an activation row already in `vec_dot_type(ty)`.
    #[inline]
    pub fn vec_dot(&self, ty: GgmlType, n: usize, w: &[u8], act: &[u8]) -> f32 {
        debug_assert_eq!(ty.row_size(n), Some(w.len()));
        debug_assert_eq!(quant::vec_dot_type(ty).row_size(n), Some(act.len()));
        match self.format(ty) {
            Some(f) => (f.dot)(n, w, act),
            None => quant::vec_dot(ty, n, w, act),
        }
    }

    /// The strip layout and kernel for `ty`, if this table has one.
    #[inline]
    pub fn tile(&self, ty: GgmlType) -> Option<(&'static tile::TileFormat, tile::TileDotFn)> {
        let f = self.format(ty)?.tile?;
        Some((tile::format(ty)?, f))
    }

    /// The wide strip pack and kernel for `ty`, if this table has one (its
    /// aux is the [`tile::format`]'s).
    #[inline]
    pub fn wide(&self, ty: GgmlType) -> Option<(tile::PackFn, tile::WideDotFn)> {
        let f = self.format(ty)?.wide?;
        Some((tile::pack_wide(ty)?, f))
    }

    /// The 8-row kernel for `ty` and the aux layout it reads, if this table has one.
    #[inline]
    pub fn rows(&self, ty: GgmlType) -> Option<(&'static tile::TileFormat, RowsDotFn)> {
        let f = self.format(ty)?.rows?;
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
