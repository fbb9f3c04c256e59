//! Seeded sample data for the kernels' parity tests (`tests.rs`) and
//! microbenchmarks (`bench.rs`): random weight rows with controlled fp16
//! scales, activation rows in each format's `vec_dot_type`, strip aux rows.
//! Compiled with either (the benchmarks are part of the library, for
//! `cargo bench -p ember --bench kernels`).

use half::f16;

use super::tile::TileFormat;
use crate::quant::{self, GgmlType};

/// xorshift64* generator: the same seed gives the same data on every run.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
    pub(crate) fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    /// i8 in -127..=127 (what our activation quantizers produce).
    pub(crate) fn q8(&mut self) -> u8 {
        ((self.byte() % 255) as i32 - 127) as i8 as u8
    }
}

/// Every quantized weight format Ember computes with; each has SIMD
/// one-row kernels and a strip layout (`tile::format`), which the tile
/// tests check. The benchmarks (`bench.rs`) share this list.
pub(crate) const QUANT_TYPES: [GgmlType; 12] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
];

/// Byte offsets of the fp16 scale fields inside one block of `ty`.
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL | IQ4_XS => &[0],
        Q4_1 | Q5_1 => &[0, 2],
        Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        _ => &[],
    }
}

/// A random weight row; `unit` puts 1.0 in every fp16 scale.
pub(crate) fn weight_row(rng: &mut Rng, ty: GgmlType, n: usize, unit: bool) -> Vec<u8> {
    match ty {
        GgmlType::F32 => {
            return (0..n).flat_map(|_| rng.f().to_le_bytes()).collect();
        }
        GgmlType::F16 => {
            return (0..n).flat_map(|_| f16::from_f32(rng.f()).to_bits().to_le_bytes()).collect();
        }
        _ => {}
    }
    let mut w: Vec<u8> = (0..ty.row_size(n).unwrap()).map(|_| rng.byte()).collect();
    for b in w.chunks_exact_mut(ty.type_size()) {
        for &o in f16_fields(ty) {
            let v = if unit { 1.0 } else { rng.f() * 0.01 };
            b[o..o + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
        }
    }
    w
}

/// Activations in `vec_dot_type(ty)`: from the scalar quantizer, or built
/// by hand with d = 1 for the exact check.
pub(crate) fn act_row(rng: &mut Rng, ty: GgmlType, n: usize, unit: bool) -> Vec<u8> {
    let at = quant::vec_dot_type(ty);
    if !unit || matches!(at, GgmlType::F16 | GgmlType::F32) {
        let x: Vec<f32> = (0..n).map(|_| rng.f()).collect();
        let mut a = vec![0u8; at.row_size(n).unwrap()];
        quant::quantize_row_act(at, &x, &mut a);
        return a;
    }
    unit_act(at, n, || rng.q8())
}

/// Activations of type `at` (Q8_0, Q8_1, Q8_K) with d = 1 and the quants `q()`.
pub(crate) fn unit_act(at: GgmlType, n: usize, mut q: impl FnMut() -> u8) -> Vec<u8> {
    let one = f16::from_f32(1.0).to_bits().to_le_bytes();
    let mut a = Vec::new();
    for _ in 0..n / at.block_size() {
        let qs: Vec<u8> = (0..at.block_size()).map(|_| q()).collect();
        let sum: i32 = qs.iter().map(|&q| q as i8 as i32).sum();
        match at {
            GgmlType::Q8_0 => a.extend(one),
            GgmlType::Q8_1 => {
                a.extend(one);
                a.extend(f16::from_f32(sum as f32).to_bits().to_le_bytes());
            }
            GgmlType::Q8_K => a.extend(1f32.to_le_bytes()),
            _ => unreachable!(),
        }
        a.extend(&qs);
        if at == GgmlType::Q8_K {
            for c in qs.chunks(16) {
                let s: i32 = c.iter().map(|&q| q as i8 as i32).sum();
                a.extend((s as i16).to_le_bytes());
            }
        }
    }
    a
}

/// Each activation row's aux in `fmt`'s layout (u32 storage: its structs hold f32/i32).
pub(crate) fn aux_rows(fmt: &TileFormat, n: usize, act: &[Vec<u8>]) -> Vec<Vec<u32>> {
    act.iter()
        .map(|a| {
            let mut x = vec![0u32; (fmt.aux_size)(n) / 4];
            (fmt.aux)(n, a, bytemuck::cast_slice_mut(&mut x));
            x
        })
        .collect()
}
