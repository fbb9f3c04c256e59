//! IQ4_XS: 256 weights per 136-byte super-block, 8 sub-blocks of 32 with
//! IQ4_NL's non-linear 4-bit values and a 6-bit scale each.
//!
//! ```text
//! f16 d            super-block scale
//! u16 scales_h     high 2 bits of sub-block ib's scale: bits 2ib, 2ib+1
//! u8  scales_l[4]  low 4 bits: nibble ib % 2 of byte ib / 2
//! u8  qs[128]      sub-block ib: qs[16ib..16ib+16], in IQ4_NL's nibble order
//! y = d * (ls_ib - 32) * kvalues_iq4nl[q]        (ib = element / 32)
//! ```
//! Dotted against Q8_K activations (ggml `vec_dot_type`).

use super::common::{blocks, f16_to_f32, F16};
use super::iq4_nl::{dequantize_32, isum_32};
use super::q8_k::BlockQ8K;
use super::QK_K;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIQ4XS {
    pub d: F16,
    /// Little-endian u16 (alignment 1, like the other fields).
    pub scales_h: [u8; 2],
    pub scales_l: [u8; QK_K / 64],
    /// Sub-block ib's 16 index bytes (ggml's flat `qs[128]`).
    pub qs: [[u8; 16]; QK_K / 32],
}
const _: () = assert!(std::mem::size_of::<BlockIQ4XS>() == 136);

/// The 8 sub-block scales `ls - 32` (-32..32).
#[inline(always)]
pub fn scales(b: &BlockIQ4XS) -> [i8; 8] {
    let h = u16::from_le_bytes(b.scales_h);
    std::array::from_fn(|ib| {
        let ls = ((b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | ((((h >> (2 * ib)) & 3) as u8) << 4);
        ls as i8 - 32
    })
}

pub fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks::<BlockIQ4XS>(src).iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_to_f32(b.d);
        for (ib, (&ls, y)) in scales(b).iter().zip(y.chunks_exact_mut(32)).enumerate() {
            dequantize_32(d * ls as f32, &b.qs[ib], y);
        }
    }
}

/// IQ4_XS weights · Q8_K activations (ggml `ggml_vec_dot_iq4_xs_q8_K_generic`:
/// d4d8 = d·dy, then sumf += (d4d8·(ls - 32))·sumi per sub-block).
pub fn vec_dot(n: usize, w: &[u8], act: &[u8]) -> f32 {
    let (x, y) = (blocks::<BlockIQ4XS>(w), blocks::<BlockQ8K>(act));
    debug_assert!(x.len() == n / QK_K && y.len() == x.len());
    let mut sumf = 0f32;
    for (x, y) in x.iter().zip(y) {
        let d4d8 = f16_to_f32(x.d) * y.d();
        for (ib, &ls) in scales(x).iter().enumerate() {
            let dl = d4d8 * ls as f32;
            sumf += dl * isum_32(&x.qs[ib], &y.qs[32 * ib..32 * ib + 32]) as f32;
        }
    }
    sumf
}
