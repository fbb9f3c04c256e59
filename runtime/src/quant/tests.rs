//! Cross-format tests: block sizes, per-element reference dequantization
//! written from the layout tables (raw byte offsets, independent of the
//! structs), integer-dot parity with float math, activation quantizers.

use super::*;
use std::mem::size_of;

/// xorshift64*: deterministic test data without the rand crate.
struct Rng(u64);
impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

fn h(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_bits().to_le_bytes()
}
fn rd16(b: &[u8], o: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[o], b[o + 1]])).to_f32()
}

const WEIGHT_TYPES: [GgmlType; 15] = {
    use GgmlType::*;
    [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS]
};

#[test]
fn block_structs_match_type_table() {
    use GgmlType::*;
    let sizes = [
        (Q4_0, size_of::<q4_0::BlockQ4_0>()),
        (Q4_1, size_of::<q4_1::BlockQ4_1>()),
        (Q5_0, size_of::<q5_0::BlockQ5_0>()),
        (Q5_1, size_of::<q5_1::BlockQ5_1>()),
        (Q8_0, size_of::<q8_0::BlockQ8_0>()),
        (Q8_1, size_of::<q8_1::BlockQ8_1>()),
        (Q2_K, size_of::<q2_k::BlockQ2K>()),
        (Q3_K, size_of::<q3_k::BlockQ3K>()),
        (Q4_K, size_of::<q4_k::BlockQ4K>()),
        (Q5_K, size_of::<q5_k::BlockQ5K>()),
        (Q6_K, size_of::<q6_k::BlockQ6K>()),
        (Q8_K, size_of::<q8_k::BlockQ8K>()),
        (IQ4_NL, size_of::<iq4_nl::BlockIQ4NL>()),
        (IQ4_XS, size_of::<iq4_xs::BlockIQ4XS>()),
    ];
    for (ty, size) in sizes {
        assert_eq!(size, ty.type_size(), "{ty}");
    }
    assert_eq!(std::mem::align_of::<q4_k::BlockQ4K>(), 1);
    assert_eq!(std::mem::align_of::<q8_k::BlockQ8K>(), 1);
    for ty in WEIGHT_TYPES {
        assert!(is_supported(ty));
    }
    assert!(!is_supported(GgmlType::Q8_K) && !is_supported(GgmlType::IQ2_XXS));
}

/// ggml's `kvalues_iq4nl`, written out again (not the module's constant).
const KV: [i32; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// Element `e` of one block, straight from the layout table (FORMATS §2.2),
/// by byte offset.
fn ref_elem(ty: GgmlType, b: &[u8], e: usize) -> f32 {
    use GgmlType::*;
    let nib = |qs: &[u8], e: usize| if e < 16 { qs[e] & 0xF } else { qs[e - 16] >> 4 } as i32;
    match ty {
        Q4_0 => (nib(&b[2..18], e) - 8) as f32 * rd16(b, 0),
        Q4_1 => nib(&b[4..20], e) as f32 * rd16(b, 0) + rd16(b, 2),
        Q5_0 | Q5_1 => {
            let o = if ty == Q5_0 { 2 } else { 4 };
            let qh = u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
            let q = nib(&b[o + 4..o + 20], e) | (((qh >> e) & 1) << 4) as i32;
            if ty == Q5_0 {
                (q - 16) as f32 * rd16(b, 0)
            } else {
                q as f32 * rd16(b, 0) + rd16(b, 2)
            }
        }
        Q8_0 => b[2 + e] as i8 as f32 * rd16(b, 0),
        Q2_K => {
            let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
            let q = (b[16 + 32 * n + l] >> (2 * j)) & 3;
            let sc = b[e / 16];
            rd16(b, 80) * (sc & 0xF) as f32 * q as f32 - rd16(b, 82) * (sc >> 4) as f32
        }
        Q3_K => {
            let (n, j, l) = (e / 128, (e % 128) / 32, e % 32);
            let low = ((b[32 + 32 * n + l] >> (2 * j)) & 3) as i32;
            let high = (b[l] >> (e / 32)) & 1;
            let sb = e / 16;
            let sc = &b[96..108];
            let lo = if sb < 8 { sc[sb] & 0xF } else { sc[sb - 8] >> 4 };
            let hi = (sc[8 + sb % 4] >> (2 * (sb / 4))) & 3;
            let s = (lo | (hi << 4)) as i32 - 32;
            rd16(b, 108) * s as f32 * (low - if high == 1 { 0 } else { 4 }) as f32
        }
        Q4_K | Q5_K => {
            let sc = &b[4..16];
            let j = e / 32;
            let (s, m) = if j < 4 {
                (sc[j] & 63, sc[j + 4] & 63)
            } else {
                ((sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4), (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4))
            };
            let qs = if ty == Q4_K { &b[16..144] } else { &b[48..176] };
            let byte = qs[32 * (e / 64) + e % 32];
            let mut q = if (e % 64) < 32 { byte & 0xF } else { byte >> 4 } as i32;
            if ty == Q5_K {
                q += (((b[16 + e % 32] >> (e / 32)) & 1) as i32) << 4;
            }
            rd16(b, 0) * s as f32 * q as f32 - rd16(b, 2) * m as f32
        }
        Q6_K => {
            let (hf, k, l) = (e / 128, (e % 128) / 32, e % 32);
            let ql = b[64 * hf + l + if k % 2 == 1 { 32 } else { 0 }];
            let low = if k < 2 { ql & 0xF } else { ql >> 4 };
            let high = (b[128 + 32 * hf + l] >> (2 * k)) & 3;
            let q = (low | (high << 4)) as i32 - 32;
            rd16(b, 208) * b[192 + e / 16] as i8 as f32 * q as f32
        }
        IQ4_NL => rd16(b, 0) * KV[nib(&b[2..18], e) as usize] as f32,
        IQ4_XS => {
            let ib = e / 32;
            let lo = (b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF;
            let hi = (u16::from_le_bytes([b[2], b[3]]) >> (2 * ib)) & 3;
            let ls = (lo as i32 | (hi as i32) << 4) - 32;
            (rd16(b, 0) * ls as f32) * KV[nib(&b[8 + 16 * ib..8 + 16 * ib + 16], e % 32) as usize] as f32
        }
        _ => unreachable!(),
    }
}

/// Random blocks with sane f16 scale fields (at the offsets of the layout table).
fn random_row(ty: GgmlType, n: usize, rng: &mut Rng) -> Vec<u8> {
    use GgmlType::*;
    let mut w = rng.bytes(ty.row_size(n).unwrap());
    let scale_fields: &[(usize, f32)] = match ty {
        F32 => {
            return (0..n).flat_map(|_| rng.f32().to_le_bytes()).collect();
        }
        F16 => return (0..n).flat_map(|_| h(rng.f32())).collect(),
        BF16 => return (0..n).flat_map(|_| half::bf16::from_f32(rng.f32()).to_bits().to_le_bytes()).collect(),
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL => &[(0, 0.01)],
        IQ4_XS => &[(0, 0.001)],
        Q4_1 | Q5_1 => &[(0, 0.01), (2, 0.1)],
        Q2_K => &[(80, 0.01), (82, 0.01)],
        Q3_K => &[(108, 0.001)],
        Q4_K | Q5_K => &[(0, 0.001), (2, 0.001)],
        Q6_K => &[(208, 0.0001)],
        _ => unreachable!(),
    };
    for b in w.chunks_exact_mut(ty.type_size()) {
        for &(o, mag) in scale_fields {
            b[o..o + 2].copy_from_slice(&h(mag * rng.f32()));
        }
    }
    w
}

fn dequant(ty: GgmlType, src: &[u8], n: usize) -> Vec<f32> {
    let mut y = vec![0f32; n];
    dequantize_row(ty, src, &mut y).unwrap();
    y
}

#[test]
fn dequantize_matches_layout_table() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for ty in WEIGHT_TYPES.into_iter().filter(|t| t.block_size() > 1) {
        let n = 2 * ty.block_size();
        let w = random_row(ty, n, &mut rng);
        let y = dequant(ty, &w, n);
        for (e, &y) in y.iter().enumerate() {
            let b = &w[(e / ty.block_size()) * ty.type_size()..][..ty.type_size()];
            let r = ref_elem(ty, b, e % ty.block_size());
            assert_eq!(y.to_bits(), r.to_bits(), "{ty} element {e}: {y} vs table {r}");
        }
    }
}

#[test]
fn dequantize_hand_built_blocks() {
    // Q4_0: d = 0.5, qs[j] = j | (15 - j) << 4.
    let mut b = h(0.5).to_vec();
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = dequant(GgmlType::Q4_0, &b, 32);
    assert_eq!(y[0], -4.0);
    assert_eq!(y[15], 3.5);
    assert_eq!(y[16], 3.5);
    assert_eq!(y[31], -4.0);
    // Q8_0: d = 0.25, qs = -128, 127, 0...
    let mut b = h(0.25).to_vec();
    b.extend([0x80u8, 127].iter().chain(&[0u8; 30]));
    assert_eq!(dequant(GgmlType::Q8_0, &b, 32)[..3], [-32.0, 31.75, 0.0]);
    // Q5_1: d = 1, m = -16, qs all 0x21, qh = only bit 31 set -> y[0] = 1-16, y[31] = 2+16-16.
    let mut b = [h(1.0), h(-16.0)].concat();
    b.extend([0, 0, 0, 0x80]);
    b.extend([0x21u8; 16]);
    let y = dequant(GgmlType::Q5_1, &b, 32);
    assert_eq!((y[0], y[16], y[31]), (-15.0, -14.0, 2.0));
    // Q6_K: all quants 32 + 1 (ql nibbles 1, qh bits 2), scale 3 in sub-block 5, d = 0.5.
    let mut b = vec![0x11u8; 128];
    b.extend([0xAAu8; 64]);
    b.extend((0..16).map(|j| if j == 5 { 3u8 } else { 1 }));
    b.extend(h(0.5));
    let y = dequant(GgmlType::Q6_K, &b, 256);
    assert_eq!((y[0], y[80], y[255]), (0.5, 1.5, 0.5));
    // Q4_K: sub-block 5 has scale (0x0F | 2<<4) = 47 and min (0x0 | 1<<4) = 16; d = 1, dmin = 0.5.
    let mut b = [h(1.0), h(0.5)].concat();
    let mut sc = [0u8; 12];
    sc[1] = 2 << 6; // high bits of scale 5
    sc[5] = 1 << 6; // high bits of min 5
    sc[9] = 0x0F; // low nibbles of scale/min 5
    b.extend(sc);
    b.extend([0x32u8; 128]);
    let y = dequant(GgmlType::Q4_K, &b, 256);
    // Sub-block 5 = elements 160..192 = high nibbles (3) of qs[64..96].
    assert_eq!(y[160], 47.0 * 3.0 - 0.5 * 16.0);
    assert_eq!(y[128], 0.0); // sub-block 4: low nibbles (2), scale 0, min 0
    assert_eq!(y[0], 0.0); // scale 0, min 0
                           // IQ4_NL: d = 0.5, qs[j] = j | (15 - j) << 4: the table in order, then reversed.
    let mut b = h(0.5).to_vec();
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = dequant(GgmlType::IQ4_NL, &b, 32);
    assert_eq!((y[0], y[8], y[15], y[16], y[31]), (-63.5, 0.5, 56.5, 56.5, -63.5));
    // IQ4_XS: d = 0.25; sub-block 5's scale ls = 0x3 | 0b10 << 4 = 35 (ls - 32 = 3),
    // every other ls = 0 (-32); all indices 8 (value 1) except qs of sub-block 5 = 0xF0.
    let mut b = h(0.25).to_vec();
    b.extend((0b10u16 << 10).to_le_bytes());
    b.extend([0, 0, 0x30, 0]);
    b.extend((0..8).flat_map(|ib| [if ib == 5 { 0xF0u8 } else { 0x88 }; 16]));
    let y = dequant(GgmlType::IQ4_XS, &b, 256);
    assert_eq!((y[0], y[160], y[176], y[255]), (-8.0, 0.75 * -127.0, 0.75 * 113.0, -8.0));
}

#[test]
fn dequantize_rejects_bad_input() {
    let mut y = vec![0f32; 32];
    assert!(matches!(dequantize_row(GgmlType::IQ2_XXS, &[0; 66], &mut vec![0f32; 256]), Err(crate::Error::UnsupportedType { .. })));
    assert!(dequantize_row(GgmlType::Q4_0, &[0; 17], &mut y).is_err());
    assert!(dequantize_row(GgmlType::Q4_0, &[0; 18], &mut y[..16]).is_err());
    assert!(dequantize_row(GgmlType::Q4_0, &[0; 18], &mut y).is_ok());
}

/// vec_dot(w, quantize(x)) against float math on the dequantized rows:
/// (1) against Σ deq(w)·deq(act): only f32 rounding apart (plus the f16 `s`
///     of Q8_1), so any bit-layout slip in a dot kernel fails here;
/// (2) against Σ deq(w)·x: apart by at most the activation quantization error.
#[test]
fn vec_dot_parity_with_float_math() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for ty in WEIGHT_TYPES {
        let act_ty = vec_dot_type(ty);
        for (case, n) in [256usize, 1024, 4096].into_iter().enumerate() {
            let w = random_row(ty, n, &mut rng);
            let x: Vec<f32> = (0..n).map(|i| rng.f32() * if i % 97 == 0 { 8.0 } else { 1.0 }).collect();
            let mut act = vec![0u8; act_ty.row_size(n).unwrap()];
            quantize_row_act(act_ty, &x, &mut act);
            let wf = dequant(ty, &w, n);
            let xq = dequant(act_ty, &act, n);

            let got = vec_dot(ty, n, &w, &act) as f64;
            let exact_q: f64 = wf.iter().zip(&xq).map(|(&a, &b)| a as f64 * b as f64).sum();
            let abs_q: f64 = wf.iter().zip(&xq).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
            let mut tol_q = 2e-6 * abs_q + 1e-12;
            if act_ty == GgmlType::Q8_1 {
                // The min term uses s = f16(d·Σq) instead of f16(d)·Σq.
                for (wb, ab) in w.chunks_exact(ty.type_size()).zip(act.chunks_exact(36)) {
                    let sq: i32 = ab[4..].iter().map(|&q| q as i8 as i32).sum();
                    let (m, d, s) = (rd16(wb, 2) as f64, rd16(ab, 0) as f64, rd16(ab, 2) as f64);
                    tol_q += m.abs() * ((s - d * sq as f64).abs() + 1e-3 * s.abs());
                }
            }
            assert!((got - exact_q).abs() <= tol_q, "{ty} n={n}: vec_dot {got} vs Σ deq(w)·deq(act) {exact_q} (tol {tol_q})");

            let exact: f64 = wf.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
            let qerr: f64 = wf.iter().zip(x.iter().zip(&xq)).map(|(&a, (&b, &c))| (a as f64 * (b - c) as f64).abs()).sum();
            let tol = qerr + tol_q;
            assert!((got - exact).abs() <= tol, "{ty} n={n}: vec_dot {got} vs Σ deq(w)·x {exact} (tol {tol})");
            if case == 2 && !matches!(ty, GgmlType::F32) {
                // The bound is not vacuous: quantization error is far below the dot's scale.
                assert!(qerr < 0.05 * wf.iter().zip(&x).map(|(&a, &b)| (a * b).abs() as f64).sum::<f64>(), "{ty}");
            }
        }
    }
}

#[test]
fn q8_0_and_q8_1_quantize_round_half_away() {
    // amax = 127 -> d = 1, id = 1: qs = roundf(x).
    let mut x = [0f32; 32];
    x[..6].copy_from_slice(&[127.0, 0.5, 2.5, -0.5, -2.5, 1.49]);
    let mut b = [0u8; 34];
    quantize_row_act(GgmlType::Q8_0, &x, &mut b);
    assert_eq!(rd16(&b, 0), 1.0);
    assert_eq!(b[2..8].iter().map(|&q| q as i8).collect::<Vec<_>>(), [127, 1, 3, -1, -3, 1]);
    let mut b1 = [0u8; 36];
    quantize_row_act(GgmlType::Q8_1, &x, &mut b1);
    assert_eq!(b1[4..], b[2..]);
    assert_eq!(rd16(&b1, 2), (127 + 1 + 3 - 1 - 3 + 1) as f32);
}

#[test]
fn q8_k_quantize_rounds_half_even_and_sums() {
    // max = -127 (sign kept) -> iscale = 1, d = 1: qs = nearest_int(x), ties to even.
    let mut x = [0f32; 256];
    x[..7].copy_from_slice(&[-127.0, 0.5, 1.5, 2.5, -0.5, -1.5, 126.5]);
    let mut b = vec![0u8; 292];
    quantize_row_act(GgmlType::Q8_K, &x, &mut b);
    let blk: &q8_k::BlockQ8K = bytemuck::from_bytes(&b);
    assert_eq!(blk.d(), 1.0);
    assert_eq!(blk.qs[..7], [-127, 0, 2, 2, 0, -2, 126]);
    // Positive max: iscale = -127/max flips signs, d < 0.
    let x2: Vec<f32> = (0..256).map(|i| if i == 3 { 10.0 } else { 0.01 * i as f32 - 1.0 }).collect();
    quantize_row_act(GgmlType::Q8_K, &x2, &mut b);
    let blk: &q8_k::BlockQ8K = bytemuck::from_bytes(&b);
    assert_eq!(blk.qs[3], -127);
    assert!(blk.d() < 0.0);
}

#[test]
fn activation_quantization_round_trips_within_half_step() {
    let mut rng = Rng(42);
    let n = 1024;
    let x: Vec<f32> = (0..n).map(|i| rng.f32() * (1.0 + (i / 256) as f32 * 10.0)).collect();

    let mut a = vec![0u8; GgmlType::Q8_0.row_size(n).unwrap()];
    quantize_row_act(GgmlType::Q8_0, &x, &mut a);
    let xq = dequant(GgmlType::Q8_0, &a, n);
    for (i, (blk, x)) in a.chunks_exact(34).zip(x.chunks_exact(32)).enumerate() {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d32 = amax / 127.0;
        let d16 = rd16(blk, 0);
        for (j, &v) in x.iter().enumerate() {
            let q = blk[2 + j] as i8 as f32;
            assert!((v - q * d32).abs() <= d32 / 2.0 * (1.0 + 1e-5), "Q8_0 block {i}[{j}]");
            // Dequantized with the stored f16 d: half a step plus the f16 rounding of d.
            assert!((v - xq[32 * i + j]).abs() <= d32 / 2.0 + 127.0 * (d32 - d16).abs() + 1e-6);
        }
    }

    let mut a = vec![0u8; GgmlType::Q8_K.row_size(n).unwrap()];
    quantize_row_act(GgmlType::Q8_K, &x, &mut a);
    let xq = dequant(GgmlType::Q8_K, &a, n);
    for (i, (blk, x)) in a.chunks_exact(292).zip(x.chunks_exact(256)).enumerate() {
        let blk: &q8_k::BlockQ8K = bytemuck::from_bytes(blk);
        let d = blk.d().abs();
        for (j, &v) in x.iter().enumerate() {
            assert!((v - xq[256 * i + j]).abs() <= d / 2.0 * (1.0 + 1e-5), "Q8_K block {i}[{j}]");
        }
        for j in 0..16 {
            let s: i32 = blk.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
            assert_eq!(blk.bsum(j), s, "bsums[{j}]");
        }
    }

    // An all-zero block: d = 0, qs = 0, bsums = 0 (even over stale bytes).
    let mut a = vec![0xFFu8; 292];
    quantize_row_act(GgmlType::Q8_K, &[0f32; 256], &mut a);
    assert!(a.iter().all(|&b| b == 0));
}

#[test]
fn float_dots_handle_any_length() {
    let mut rng = Rng(7);
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        for n in [1usize, 7, 37, 100] {
            let w = random_row(ty, n, &mut rng);
            let x: Vec<f32> = (0..n).map(|_| rng.f32()).collect();
            let mut act = vec![0u8; ty.row_size(n).unwrap()];
            quantize_row_act(ty, &x, &mut act);
            let (wf, xq) = (dequant(ty, &w, n), dequant(ty, &act, n));
            let want: f32 = wf.iter().zip(&xq).map(|(a, b)| a * b).sum();
            let got = vec_dot(ty, n, &w, &act);
            assert!((got - want).abs() <= 1e-5 * n as f32, "{ty} n={n}: {got} vs {want}");
        }
    }
}

/// Weight quantizers (for synthetic models): dequantize(quantize(x)) is
/// within the format's step of x.
#[test]
fn weight_quantizers_round_trip() {
    let mut s = 0x1234_5678u64;
    let mut rnd = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let n = 8 * QK_K;
    let x: Vec<f32> = (0..n).map(|_| rnd() * 0.05).collect();
    for (ty, quantize) in
        [(GgmlType::Q4_0, super::q4_0::quantize_row as fn(&[f32], &mut [u8])), (GgmlType::Q4_K, super::q4_k::quantize_row)]
    {
        let mut q = vec![0u8; ty.row_size(n).unwrap()];
        quantize(&x, &mut q);
        let mut y = vec![0f32; n];
        dequantize_row(ty, &q, &mut y).unwrap();
        let bs = ty.block_size().min(32);
        for (i, (xc, yc)) in x.chunks(bs).zip(y.chunks(bs)).enumerate() {
            let range = xc.iter().fold(0f32, |m, v| m.max(v.abs())) * 2.0;
            // Q4_0: d = amax/8 and the side opposite max clamps at 7d, so up to d = range/16;
            // Q4_K: half a step of (range/15) plus the 6-bit scale/min rounding.
            let tol = range / 15.0 * if ty == GgmlType::Q4_K { 1.2 } else { 1.0 } + 1e-6;
            for (a, b) in xc.iter().zip(yc) {
                assert!((a - b).abs() <= tol, "{ty} block {i}: {a} vs {b} (tol {tol})");
            }
        }
        let rmse = (x.iter().zip(&y).map(|(a, b)| (a - b).powi(2)).sum::<f32>() / n as f32).sqrt();
        assert!(rmse < 0.05 * 0.1, "{ty} rmse {rmse}");
    }
}
