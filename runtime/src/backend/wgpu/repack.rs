//! Quant blocks repacked at upload into aligned GPU arrays.
//!
//! ggml blocks are byte-packed (a 20-byte Q4_1 block puts an f16 at offset 0
//! and 16 nibble bytes at offset 4), which WGSL cannot read without f16 and
//! byte addressing. At upload every weight matrix is rewritten into one of
//! four layouts, each made of 32-element *units* (row `r`, unit `u` of a row
//! of `n_in` elements has global index `r·n_in/32 + u`):
//!
//! | layout | `wa: array<u32>` | `wb: array<u32>` | element `i` of a unit |
//! |---|---|---|---|
//! | `F32`  | 32 f32 bits per unit | unused | `wa[32u+i]` |
//! | `F16`  | 16 u32 per unit, two f16 each (low half first) | unused | `unpack2x16float` |
//! | `QA4`  | `(d, m)` f32 pair per unit | 4 u32 per unit: byte `k` = `q[k] \| q[k+16] << 4` | `d·q + m` |
//! | `QA8{sub}` | `(d, m)` f32 pair per `32/sub` elements | 8 u32 per unit, byte `k` = `q[k]` as i8 | `d·q + m` |
//!
//! Mapping from ggml (all products are exact in f32, so the GPU values equal
//! the scalar `dequantize_row` bit for bit):
//! Q4_0 → QA4 `(d, −8d)`; Q4_1 → QA4 `(d, m)`; Q4_K → QA4 `(d·sc, −dmin·mn)` per
//! 32-element sub-block; Q8_0 → QA8{1} `(d, 0)`; Q5_K → QA8{1} like Q4_K;
//! Q6_K → QA8{2} `(d·sc, 0)` per 16 elements with `q − 32`; IQ4_NL → QA8{1}
//! `(d, 0)` and IQ4_XS → QA8{1} `(d·(ls − 32), 0)` per 32-element sub-block,
//! both with the table values `kvalues_iq4nl[q]` as the i8 quants; F32 → F32;
//! F16 → F16; every other type → F32 through the scalar dequantizer
//! (correct, not compact: a faster layout for it is future work).

use crate::quant::common::{f16_to_f32, scale_min_k4};
use crate::quant::{self, GgmlType};
use crate::{Error, Result};

/// How a matrix sits in GPU memory (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    F32,
    F16,
    Qa4,
    /// Scale groups per 32-element unit (1 or 2).
    Qa8 {
        sub: u32,
    },
}

impl Layout {
    pub fn for_type(ty: GgmlType) -> Layout {
        match ty {
            GgmlType::F16 => Layout::F16,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4_K => Layout::Qa4,
            GgmlType::Q8_0 | GgmlType::Q5_K => Layout::Qa8 { sub: 1 },
            GgmlType::IQ4_NL | GgmlType::IQ4_XS => Layout::Qa8 { sub: 1 },
            GgmlType::Q6_K => Layout::Qa8 { sub: 2 },
            _ => Layout::F32,
        }
    }

    /// u32 words of `wa` and `wb` per 32-element unit.
    pub fn words_per_unit(self) -> (usize, usize) {
        match self {
            Layout::F32 => (32, 0),
            Layout::F16 => (16, 0),
            Layout::Qa4 => (2, 4),
            Layout::Qa8 { sub } => (2 * sub as usize, 8),
        }
    }

    /// Shader variant name of this layout.
    pub fn name(self) -> &'static str {
        match self {
            Layout::F32 => "f32",
            Layout::F16 => "f16",
            Layout::Qa4 => "qa4",
            Layout::Qa8 { sub: 1 } => "qa8s1",
            Layout::Qa8 { .. } => "qa8s2",
        }
    }
}

/// A matrix (or a band of its rows) in a GPU layout, still on the CPU.
#[derive(Debug, Clone)]
pub struct Repacked {
    pub layout: Layout,
    pub n_in: usize,
    pub n_rows: usize,
    pub wa: Vec<u32>,
    pub wb: Vec<u32>,
}

/// Repacks `n_rows` rows of `n_in` elements of `ty` (`src` = those rows' bytes).
pub fn repack(ty: GgmlType, src: &[u8], n_in: usize, n_rows: usize) -> Result<Repacked> {
    let layout = Layout::for_type(ty);
    if !n_in.is_multiple_of(32) {
        return Err(Error::UnsupportedType { ty: ty.name().into(), what: format!("wgpu rows of {n_in} elements (need a multiple of 32)") });
    }
    let row_bytes = ty.row_size(n_in).ok_or_else(|| Error::InvalidParam(format!("{n_in} is not a whole number of {ty} blocks")))?;
    if src.len() != row_bytes * n_rows {
        return Err(Error::InvalidParam(format!("repack: {} bytes for {n_rows} rows of {row_bytes}", src.len())));
    }
    let units = n_in / 32 * n_rows;
    let (wa_n, wb_n) = layout.words_per_unit();
    let mut wa = Vec::with_capacity(units * wa_n);
    let mut wb = Vec::with_capacity(units * wb_n);
    let pack4 = |wb: &mut Vec<u32>, q: &[u8]| {
        for w in 0..4 {
            let mut v = 0u32;
            for k in 0..4 {
                let i = 4 * w + k;
                v |= ((q[i] as u32 & 0xF) | ((q[i + 16] as u32 & 0xF) << 4)) << (8 * k);
            }
            wb.push(v);
        }
    };
    let pack8 = |wb: &mut Vec<u32>, q: &[i8]| {
        for c in q.chunks_exact(4) {
            wb.push(u32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8]));
        }
    };
    let dm = |wa: &mut Vec<u32>, d: f32, m: f32| {
        wa.push(d.to_bits());
        wa.push(m.to_bits());
    };
    match ty {
        GgmlType::F32 => wa.extend(src.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        GgmlType::F16 => wa.extend(src.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        GgmlType::Q4_0 => {
            for b in quant::common::blocks::<quant::q4_0::BlockQ4_0>(src) {
                let d = f16_to_f32(b.d);
                dm(&mut wa, d, -8.0 * d);
                let q: Vec<u8> = (0..32).map(|i| if i < 16 { b.qs[i] & 0xF } else { b.qs[i - 16] >> 4 }).collect();
                pack4(&mut wb, &q);
            }
        }
        GgmlType::Q4_1 => {
            for b in quant::common::blocks::<quant::q4_1::BlockQ4_1>(src) {
                dm(&mut wa, f16_to_f32(b.d), f16_to_f32(b.m));
                let q: Vec<u8> = (0..32).map(|i| if i < 16 { b.qs[i] & 0xF } else { b.qs[i - 16] >> 4 }).collect();
                pack4(&mut wb, &q);
            }
        }
        GgmlType::Q8_0 => {
            for b in quant::common::blocks::<quant::q8_0::BlockQ8_0>(src) {
                dm(&mut wa, f16_to_f32(b.d), 0.0);
                pack8(&mut wb, &b.qs);
            }
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let one = |d: f32, dmin: f32, scales: &[u8; 12], a: &[i8; 256], wa: &mut Vec<u32>, wb: &mut Vec<u32>| {
                let (sc, mn) = scale_min_k4(scales);
                for j in 0..8 {
                    dm(wa, d * sc[j] as f32, -(dmin * mn[j] as f32));
                    let q = &a[32 * j..32 * j + 32];
                    if ty == GgmlType::Q4_K {
                        let qu: Vec<u8> = q.iter().map(|&v| v as u8).collect();
                        pack4(wb, &qu);
                    } else {
                        pack8(wb, q);
                    }
                }
            };
            if ty == GgmlType::Q4_K {
                for b in quant::common::blocks::<quant::q4_k::BlockQ4K>(src) {
                    one(f16_to_f32(b.d), f16_to_f32(b.dmin), &b.scales, &quant::q4_k::unpack(b), &mut wa, &mut wb);
                }
            } else {
                for b in quant::common::blocks::<quant::q5_k::BlockQ5K>(src) {
                    one(f16_to_f32(b.d), f16_to_f32(b.dmin), &b.scales, &quant::q5_k::unpack(b), &mut wa, &mut wb);
                }
            }
        }
        GgmlType::Q6_K => {
            for b in quant::common::blocks::<quant::q6_k::BlockQ6K>(src) {
                let d = f16_to_f32(b.d);
                let a = quant::q6_k::unpack(b);
                for j in 0..16 {
                    dm(&mut wa, d * b.scales[j] as f32, 0.0);
                }
                pack8(&mut wb, &a);
            }
        }
        GgmlType::IQ4_NL => {
            for b in quant::common::blocks::<quant::iq4_nl::BlockIQ4NL>(src) {
                dm(&mut wa, f16_to_f32(b.d), 0.0);
                pack8(&mut wb, &iq4nl_values(&b.qs));
            }
        }
        GgmlType::IQ4_XS => {
            for b in quant::common::blocks::<quant::iq4_xs::BlockIQ4XS>(src) {
                let d = f16_to_f32(b.d);
                for (qs, ls) in b.qs.iter().zip(quant::iq4_xs::scales(b)) {
                    // The f32 product the scalar dequantizer scales the sub-block by.
                    dm(&mut wa, d * ls as f32, 0.0);
                    pack8(&mut wb, &iq4nl_values(qs));
                }
            }
        }
        _ => {
            let mut row = vec![0f32; n_in];
            for r in 0..n_rows {
                quant::dequantize_row(ty, &src[r * row_bytes..(r + 1) * row_bytes], &mut row)?;
                wa.extend(row.iter().map(|v| v.to_bits()));
            }
        }
    }
    debug_assert_eq!(wa.len(), units * wa_n);
    debug_assert_eq!(wb.len(), units * wb_n);
    Ok(Repacked { layout, n_in, n_rows, wa, wb })
}

/// The 32 table values of 16 IQ4_NL/IQ4_XS index bytes, in element order.
fn iq4nl_values(qs: &[u8; 16]) -> [i8; 32] {
    let kv = |q: u8| quant::iq4_nl::KVALUES_IQ4NL[q as usize];
    std::array::from_fn(|i| if i < 16 { kv(qs[i] & 0xF) } else { kv(qs[i - 16] >> 4) })
}

impl Repacked {
    /// Element `i` of unit `u`, computed exactly as the shaders do (the
    /// round-trip test holds this to the scalar `dequantize_row`).
    pub fn get(&self, u: usize, i: usize) -> f32 {
        match self.layout {
            Layout::F32 => f32::from_bits(self.wa[32 * u + i]),
            Layout::F16 => {
                let w = self.wa[16 * u + i / 2];
                let h = if i.is_multiple_of(2) { w & 0xFFFF } else { w >> 16 } as u16;
                half::f16::from_bits(h).to_f32()
            }
            Layout::Qa4 => {
                let (d, m) = (f32::from_bits(self.wa[2 * u]), f32::from_bits(self.wa[2 * u + 1]));
                let byte = (self.wb[4 * u + (i % 16) / 4] >> (8 * (i % 4))) & 0xFF;
                let q = if i < 16 { byte & 0xF } else { byte >> 4 };
                d * q as f32 + m
            }
            Layout::Qa8 { sub } => {
                let s = 2 * (u * sub as usize + i * sub as usize / 32);
                let (d, m) = (f32::from_bits(self.wa[s]), f32::from_bits(self.wa[s + 1]));
                let q = (self.wb[8 * u + i / 4] >> (8 * (i % 4))) as u8 as i8;
                d * q as f32 + m
            }
        }
    }

    /// Row `r` dequantized from the repacked arrays.
    pub fn dequantize_row(&self, r: usize, dst: &mut [f32]) {
        let upr = self.n_in / 32;
        for (k, v) in dst.iter_mut().enumerate().take(self.n_in) {
            *v = self.get(r * upr + k / 32, k % 32);
        }
    }
}
