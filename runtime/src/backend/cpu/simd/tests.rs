//! Parity of every SIMD kernel with its scalar twin, for each table this CPU
//! runs (`CpuKernels::available`), on seeded random data.
//!
//! Two checks per format:
//! - **exact**: all block scales 1.0 (weights and activations), so each
//!   kernel's result is a sum of integers below 2^24, exact in f32 in any
//!   order: the SIMD and scalar integer block sums must agree bit for bit;
//! - **random scales**: real activations from the scalar quantizers and
//!   random fp16 scales; only the f32 accumulation order differs, so the
//!   tolerance is 1e-5 × Σ|wᵢ·aᵢ| (+ the min terms), i.e. a few ulps of the
//!   magnitudes summed.

use half::f16;

use super::sample::{act_row, aux_rows, unit_act, weight_row, Rng, QUANT_TYPES};
use super::{CpuKernels, SCALAR};
use crate::quant::{self, GgmlType, QK_K};

/// The one-row kernels' formats: the quantized ones and the floats.
fn types() -> impl Iterator<Item = GgmlType> {
    QUANT_TYPES.into_iter().chain([GgmlType::F16, GgmlType::F32])
}

/// Σ|wᵢ·aᵢ| + Σ|aᵢ|·max|wᵢ|: the magnitude the f32 sums run through.
fn magnitude(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> f32 {
    let (mut wf, mut af) = (vec![0f32; n], vec![0f32; n]);
    quant::dequantize_row(ty, w, &mut wf).unwrap();
    quant::dequantize_row(quant::vec_dot_type(ty), a, &mut af).unwrap();
    let wmax = wf.iter().fold(0f32, |m, v| m.max(v.abs()));
    wf.iter().zip(&af).map(|(w, a)| (w * a).abs() + a.abs() * wmax).sum()
}

fn check(k: &CpuKernels, unit: bool) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for ty in types() {
        for n in [QK_K, 4 * QK_K, 11 * QK_K] {
            for rep in 0..20 {
                let w = weight_row(&mut rng, ty, n, unit);
                let a = act_row(&mut rng, ty, n, unit);
                let want = SCALAR.vec_dot(ty, n, &w, &a);
                let got = k.vec_dot(ty, n, &w, &a);
                if unit && !matches!(ty, GgmlType::F16 | GgmlType::F32) {
                    assert_eq!(got, want, "{} {ty} n={n} rep={rep}: integer sums differ", k.isa);
                } else {
                    let tol = 1e-5 * magnitude(ty, &w, &a, n) + 1e-6;
                    assert!((got - want).abs() <= tol, "{} {ty} n={n} rep={rep}: {got} vs {want} (tol {tol})", k.isa);
                }
            }
        }
    }
}

#[test]
fn simd_vec_dot_matches_scalar_exact_integer_sums() {
    for k in CpuKernels::available() {
        eprintln!("checking {}", k.isa);
        check(k, true);
    }
}

#[test]
fn simd_vec_dot_matches_scalar_random_scales() {
    for k in CpuKernels::available() {
        check(k, false);
    }
}

#[test]
fn simd_attention_f16_kernels_match_scalar() {
    let mut rng = Rng(42);
    for k in CpuKernels::available() {
        for n in [1, 7, 16, 64, 80, 128, 131] {
            for (rows, stride) in [(1, n), (5, n), (9, n + 3)] {
                let q: Vec<f16> = (0..n).map(|_| f16::from_f32(rng.f())).collect();
                let kv: Vec<f16> = (0..rows * stride).map(|_| f16::from_f32(rng.f())).collect();
                let (mut got, mut want) = (vec![0f32; rows], vec![0f32; rows]);
                (k.dot_f16)(&q, &kv, stride, &mut got);
                (SCALAR.dot_f16)(&q, &kv, stride, &mut want);
                for j in 0..rows {
                    let mag: f32 = q.iter().zip(&kv[j * stride..]).map(|(a, b)| (a.to_f32() * b.to_f32()).abs()).sum();
                    assert!((got[j] - want[j]).abs() <= 1e-5 * mag + 1e-7, "{} dot_f16 n={n} row {j}: {} vs {}", k.isa, got[j], want[j]);
                }
                let p: Vec<f32> = (0..rows).map(|_| rng.f()).collect();
                let mut acc1: Vec<f32> = (0..n).map(|_| rng.f()).collect();
                let mut acc2 = acc1.clone();
                (k.axpy_f16)(&p, &kv, stride, &mut acc1);
                (SCALAR.axpy_f16)(&p, &kv, stride, &mut acc2);
                for (x, y) in acc1.iter().zip(&acc2) {
                    // FMA rounds once where the scalar `a += p*v` rounds twice.
                    assert!((x - y).abs() <= 1e-6 * rows as f32 * (1.0 + y.abs()), "{} axpy_f16 n={n}: {x} vs {y}", k.isa);
                }
            }
            let mut x: Vec<f32> = (0..n).map(|i| rng.f() * [1.0, 1e-6, 7e4, 1e-9][i % 4]).collect();
            x.extend([0.0, -0.0, 65520.0, 6.1e-5, 2.9e-8, f32::INFINITY]);
            let mut y = x.clone();
            (k.round_f16)(&mut x);
            (SCALAR.round_f16)(&mut y);
            assert_eq!(
                x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{} round_f16",
                k.isa
            );
        }
    }
}

/// The attention kernels of every table give each key the same per-key
/// arithmetic as one call per key (the multi-row form only batches calls).
#[test]
fn simd_attention_rows_equal_per_key_calls() {
    let mut rng = Rng(43);
    for k in CpuKernels::available() {
        let (n, rows, stride) = (64, 7, 80);
        let q: Vec<f16> = (0..n).map(|_| f16::from_f32(rng.f())).collect();
        let kv: Vec<f16> = (0..rows * stride).map(|_| f16::from_f32(rng.f())).collect();
        let mut all = vec![0f32; rows];
        (k.dot_f16)(&q, &kv, stride, &mut all);
        let p: Vec<f32> = (0..rows).map(|_| rng.f()).collect();
        let mut acc1: Vec<f32> = (0..n).map(|_| rng.f()).collect();
        let mut acc2 = acc1.clone();
        (k.axpy_f16)(&p, &kv, stride, &mut acc1);
        for j in 0..rows {
            let mut one = [0f32];
            (k.dot_f16)(&q, &kv[j * stride..], stride, &mut one);
            assert_eq!(one[0].to_bits(), all[j].to_bits(), "{} dot_f16 row {j}", k.isa);
            (k.axpy_f16)(&p[j..j + 1], &kv[j * stride..], stride, &mut acc2);
        }
        assert_eq!(acc1, acc2, "{} axpy_f16", k.isa);
    }
}

/// The word-operation unpacking of Q3_K's scales equals the per-element one.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[test]
fn k3_scales_match_the_scalar_unpacking() {
    let mut rng = Rng(14);
    for _ in 0..1000 {
        let q: [u8; 12] = std::array::from_fn(|_| rng.byte());
        let want = quant::common::q3k_scales(&q).map(|s| (s as i32 + 32) as u8);
        assert_eq!(super::k3_scales(&q), want, "{q:?}");
    }
}

#[test]
fn detect_respects_force_scalar() {
    assert_eq!(CpuKernels::detect(true).isa, "scalar");
    let best = CpuKernels::detect(false);
    assert!(CpuKernels::available().iter().any(|k| std::ptr::eq(*k, best)));
}

/// Tile kernels (strip of 8 rows × up to 4 tokens): packing + the scalar
/// twin reproduce `vec_dot` per row and token, and every table's SIMD tile
/// kernel reproduces the scalar twin: bit for bit on integer sums, and for
/// the 32-block formats bit for bit with any scales (they round like
/// `vec_dot`); the K-quants within the f32-order tolerance.
#[test]
fn simd_tile_kernels_match_scalar() {
    use super::tile::{self, ROWS};
    let mut rng = Rng(11);
    let mut checked = 0;
    for ty in QUANT_TYPES {
        let fmt = tile::format(ty).unwrap();
        for n in [QK_K, 9 * QK_K] {
            for unit in [true, false] {
                let w = weight_row(&mut rng, ty, n * ROWS, unit);
                let mut packed = vec![0u32; (fmt.packed_size)(n) / 4];
                (fmt.pack)(n, &w, bytemuck::cast_slice_mut(&mut packed));
                let packed: &[u8] = bytemuck::cast_slice(&packed);
                let act: Vec<Vec<u8>> = (0..4).map(|_| act_row(&mut rng, ty, n, unit)).collect();
                let aux = aux_rows(fmt, n, &act);
                let act: Vec<&[u8]> = act.iter().map(|a| &a[..]).collect();
                let aux: Vec<&[u8]> = aux.iter().map(|a| bytemuck::cast_slice(a)).collect();
                let rs = w.len() / ROWS;
                // 32-block strips round each block like `vec_dot`; K-quant strips sum in another order.
                let exact = unit || ty.block_size() == 32;
                let tol: Vec<[f32; ROWS]> = act
                    .iter()
                    .map(|a| std::array::from_fn(|r| if exact { 0.0 } else { 1e-5 * magnitude(ty, &w[r * rs..(r + 1) * rs], a, n) + 1e-6 }))
                    .collect();
                for nt in 1..=4 {
                    let twin = tile::dot_scalar(ty, n, packed, &act[..nt], &aux[..nt]);
                    for t in 0..nt {
                        for r in 0..ROWS {
                            let want = SCALAR.vec_dot(ty, n, &w[r * rs..(r + 1) * rs], act[t]);
                            let (got, tol) = (twin[t][r], tol[t][r]);
                            assert!((got - want).abs() <= tol, "{ty} n={n} unit={unit} twin t{t} r{r}: {got} vs {want}");
                        }
                    }
                    for k in CpuKernels::available() {
                        let Some((_, f)) = k.tile(ty) else { continue };
                        let got = f(n, packed, &act[..nt], &aux[..nt]);
                        for t in 0..4 {
                            for r in 0..ROWS {
                                let (g, w) = (got[t][r], if t < nt { twin[t][r] } else { 0.0 });
                                let tol = if t < nt { tol[t][r] } else { 0.0 };
                                assert!((g - w).abs() <= tol, "{} {ty} n={n} unit={unit} tile nt={nt} t{t} r{r}: {g} vs {w}", k.isa);
                            }
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    eprintln!("{checked} tile-kernel cases");
}

/// Wide strip kernels (16 rows × up to 8 tokens, [`super::tile::Q4_0x16`]):
/// the wide pack + its scalar twin reproduce `vec_dot` bit for bit (the
/// symmetric 32-block formats round like it), and every table's wide
/// kernel reproduces the twin bit for bit, also at the extreme quants
/// (each packed quant at its maximum, activations at ±127).
#[test]
fn simd_wide_tile_kernels_match_scalar() {
    use super::tile::{self, WIDE_ROWS, WIDE_TOKS};
    let mut rng = Rng(17);
    let mut checked = 0;
    for ty in QUANT_TYPES {
        let Some(pack) = tile::pack_wide(ty) else { continue };
        let fmt = tile::format(ty).unwrap();
        for (n, unit, extreme) in [(QK_K, true, false), (QK_K, false, false), (9 * QK_K, false, false), (9 * QK_K, true, true)] {
            let w = weight_row(&mut rng, ty, n * WIDE_ROWS, unit);
            let mut packed = vec![0u32; 2 * (fmt.packed_size)(n) / 4];
            pack(n, &w, bytemuck::cast_slice_mut(&mut packed));
            let act: Vec<Vec<u8>> = if extreme {
                // Each wide block ends with its quants, 16 rows × 32.
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut packed);
                let (blk, qs) = (2 * (fmt.packed_size)(32), 32 * WIDE_ROWS);
                let top = bytes.chunks(blk).flat_map(|b| &b[blk - qs..]).copied().max().unwrap();
                for b in bytes.chunks_mut(blk) {
                    b[blk - qs..].fill(top);
                }
                (0..WIDE_TOKS).map(|t| unit_act(quant::vec_dot_type(ty), n, || if t % 2 == 0 { 127 } else { -127i8 as u8 })).collect()
            } else {
                (0..WIDE_TOKS).map(|_| act_row(&mut rng, ty, n, unit)).collect()
            };
            let packed: &[u8] = bytemuck::cast_slice(&packed);
            let aux = aux_rows(fmt, n, &act);
            let act: Vec<&[u8]> = act.iter().map(|a| &a[..]).collect();
            let aux: Vec<&[u8]> = aux.iter().map(|a| bytemuck::cast_slice(a)).collect();
            let rs = w.len() / WIDE_ROWS;
            for nt in 1..=WIDE_TOKS {
                let twin = tile::dot_scalar_wide(ty, n, packed, &act[..nt], &aux[..nt]);
                if !extreme {
                    for t in 0..nt {
                        for r in 0..WIDE_ROWS {
                            let want = SCALAR.vec_dot(ty, n, &w[r * rs..(r + 1) * rs], act[t]);
                            assert_eq!(twin[t][r], want, "{ty} n={n} unit={unit} wide twin t{t} r{r}");
                        }
                    }
                }
                for k in CpuKernels::available() {
                    let Some((_, f)) = k.wide(ty) else { continue };
                    let got = f(n, packed, &act[..nt], &aux[..nt]);
                    for t in 0..WIDE_TOKS {
                        for r in 0..WIDE_ROWS {
                            let want = if t < nt { twin[t][r] } else { 0.0 };
                            assert_eq!(got[t][r], want, "{} {ty} n={n} unit={unit} extreme={extreme} wide nt={nt} t{t} r{r}", k.isa);
                        }
                    }
                    checked += 1;
                }
            }
        }
    }
    eprintln!("{checked} wide tile-kernel cases");
}

/// Tile kernels at the extremes their integer sums are sized for: every
/// packed quant at `QMAX` and the activations at ±127 (AVX2's i16 partial
/// sums would overflow by 2^16 past the bounds): each table's SIMD kernel
/// against the scalar twin.
#[test]
fn simd_tile_kernels_exact_at_extreme_quants() {
    use super::tile::{self, ROWS};
    let mut rng = Rng(15);
    for ty in QUANT_TYPES {
        let fmt = tile::format(ty).unwrap();
        let n = 9 * QK_K;
        let w = weight_row(&mut rng, ty, n * ROWS, true);
        let mut packed = vec![0u32; (fmt.packed_size)(n) / 4];
        (fmt.pack)(n, &w, bytemuck::cast_slice_mut(&mut packed));
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut packed);
        // Each strip block ends with its quants, 8 rows × its elements.
        let (blk, qs) = ((fmt.packed_size)(ty.block_size()), ty.block_size() * ROWS);
        let top = bytes.chunks(blk).flat_map(|b| &b[blk - qs..]).copied().max().unwrap();
        for b in bytes.chunks_mut(blk) {
            b[blk - qs..].fill(top);
        }
        let packed: &[u8] = bytemuck::cast_slice(&packed);
        let act: Vec<Vec<u8>> = [127i8, -127, 127, -127].iter().map(|&q| unit_act(quant::vec_dot_type(ty), n, || q as u8)).collect();
        let aux = aux_rows(fmt, n, &act);
        let act: Vec<&[u8]> = act.iter().map(|a| &a[..]).collect();
        let aux: Vec<&[u8]> = aux.iter().map(|a| bytemuck::cast_slice(a)).collect();
        let twin = tile::dot_scalar(ty, n, packed, &act, &aux);
        for k in CpuKernels::available() {
            let Some((_, f)) = k.tile(ty) else { continue };
            let got = f(n, packed, &act, &aux);
            for t in 0..4 {
                for r in 0..ROWS {
                    // Sums of integers (unit d); only K-quant sums past 2^24 may round differently.
                    let (g, w) = (got[t][r], twin[t][r]);
                    assert!((g - w).abs() <= 1e-6 * w.abs(), "{} {ty} extreme t{t} r{r}: {g} vs {w}", k.isa);
                }
            }
        }
    }
}

/// The strips' quants stay within the bounds the kernels are sized for
/// (`tile::Quants::QMAX`: AVX2's i16 sums rely on it) and reach them: on
/// random bytes and on the extreme ones (all bits set; 0x7F, Q8_0's 127).
#[test]
fn tile_packs_respect_qmax() {
    use super::tile::{self, Quants, ROWS};
    use crate::quant::{iq4_nl, iq4_xs, q2_k, q3_k, q4_0, q4_1, q4_k, q5_0, q5_1, q5_k, q6_k, q8_0};
    let qmax = |ty: GgmlType| match ty {
        GgmlType::Q4_0 => q4_0::BlockQ4_0::QMAX,
        GgmlType::Q4_1 => q4_1::BlockQ4_1::QMAX,
        GgmlType::Q5_0 => q5_0::BlockQ5_0::QMAX,
        GgmlType::Q5_1 => q5_1::BlockQ5_1::QMAX,
        GgmlType::Q8_0 => q8_0::BlockQ8_0::QMAX,
        GgmlType::Q2_K => q2_k::BlockQ2K::QMAX,
        GgmlType::Q3_K => q3_k::BlockQ3K::QMAX,
        GgmlType::Q4_K => q4_k::BlockQ4K::QMAX,
        GgmlType::Q5_K => q5_k::BlockQ5K::QMAX,
        GgmlType::Q6_K => q6_k::BlockQ6K::QMAX,
        GgmlType::IQ4_NL => iq4_nl::BlockIQ4NL::QMAX,
        GgmlType::IQ4_XS => iq4_xs::BlockIQ4XS::QMAX,
        _ => unreachable!(),
    };
    let mut rng = Rng(14);
    for ty in QUANT_TYPES {
        let fmt = tile::format(ty).unwrap();
        let n = 2 * QK_K;
        let mut top = 0;
        for fill in [None, Some(0xFF), Some(0x7F)] {
            let w: Vec<u8> = match fill {
                Some(b) => vec![b; ty.row_size(n).unwrap() * ROWS],
                None => weight_row(&mut rng, ty, n * ROWS, false),
            };
            let mut packed = vec![0u32; (fmt.packed_size)(n) / 4];
            (fmt.pack)(n, &w, bytemuck::cast_slice_mut(&mut packed));
            // Each strip block ends with its quants, 8 rows × its elements.
            let (blk, qs) = ((fmt.packed_size)(ty.block_size()), ty.block_size() * ROWS);
            let bytes: &[u8] = bytemuck::cast_slice(&packed);
            top = top.max(bytes.chunks(blk).flat_map(|b| &b[blk - qs..]).copied().max().unwrap());
        }
        assert_eq!(top, qmax(ty), "{ty}");
    }
}

/// 8-row generation kernels: every table's kernel reproduces the scalar
/// `vec_dot` of each row: bit for bit on integer sums, and for the 32-block
/// formats bit for bit with any scales (they round per block like
/// `vec_dot`); the K-quants within the f32-order tolerance.
#[test]
fn simd_rows_kernels_match_scalar() {
    use super::tile::ROWS;
    use GgmlType::*;
    let mut rng = Rng(12);
    let mut checked = 0;
    for ty in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K] {
        // 32-block formats also at widths that are not whole groups of 8 blocks (5760: ffn_down).
        let kquant = ty.block_size() == QK_K;
        let widths: &[usize] = if kquant { &[QK_K, 6 * QK_K, 9 * QK_K, 23 * QK_K] } else { &[96, QK_K, 9 * QK_K, 5760] };
        for &n in widths {
            for unit in [true, false] {
                let w = weight_row(&mut rng, ty, n * ROWS, unit);
                let act = act_row(&mut rng, ty, n, unit);
                let rs = w.len() / ROWS;
                for k in CpuKernels::available() {
                    let Some((fmt, f)) = k.rows(ty) else { continue };
                    let mut aux = vec![0u32; (fmt.aux_size)(n) / 4];
                    (fmt.aux)(n, &act, bytemuck::cast_slice_mut(&mut aux));
                    let got = f(n, &w, &act, bytemuck::cast_slice(&aux));
                    for (r, &g) in got.iter().enumerate() {
                        let wr = &w[r * rs..(r + 1) * rs];
                        let want = SCALAR.vec_dot(ty, n, wr, &act);
                        let exact = unit || !kquant;
                        let tol = if exact { 0.0 } else { 1e-5 * magnitude(ty, wr, &act, n) + 1e-6 };
                        assert!((g - want).abs() <= tol, "{} {ty} rows n={n} unit={unit} r{r}: {g} vs {want}", k.isa);
                    }
                    checked += 1;
                }
            }
        }
    }
    eprintln!("{checked} row-kernel cases");
}

/// A prompt product split over wide strips, an 8-row strip and single rows
/// (n_out = 3·16 + 8 + 3; 19 tokens: two full wide calls of 8 and one of 3,
/// past every format's `min_tok`)
/// equals the scalar table's `vec_dot` per row and token: bit for bit in
/// the strips (the symmetric 32-block formats round like `vec_dot`), within
/// the f32-order tolerance in the single rows.
#[test]
fn prompt_matmul_with_wide_strips_matches_scalar() {
    use super::tile::WIDE_ROWS;
    use crate::backend::cpu::{matmul, MatmulScratch};
    use GgmlType::*;
    let (n_in, n_out, n_tok) = (2 * QK_K, 3 * WIDE_ROWS + 8 + 3, 19);
    let mut rng = Rng(19);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for ty in [Q4_0, Q5_0, Q8_0, IQ4_NL] {
        let w = weight_row(&mut rng, ty, n_in * n_out, false);
        let x: Vec<f32> = (0..n_tok * n_in).map(|_| rng.f()).collect();
        let mut want = vec![0f32; n_tok * n_out];
        let mut mm = MatmulScratch::default();
        pool.install(|| matmul(ty, &w, n_in, n_out, &x, &mut want, &mut mm));
        for k in CpuKernels::available() {
            let mut got = vec![0f32; n_tok * n_out];
            mm.kernels = k;
            pool.install(|| matmul(ty, &w, n_in, n_out, &x, &mut got, &mut mm));
            for t in 0..n_tok {
                for o in 0..n_out {
                    let (g, w) = (got[t * n_out + o], want[t * n_out + o]);
                    let tol = if o < n_out / 8 * 8 { 0.0 } else { 1e-4 * w.abs().max(1.0) };
                    assert!((g - w).abs() <= tol, "{} {ty} t{t} row {o}: {g} vs {w}", k.isa);
                }
            }
        }
    }
}

/// `matmul_many` (one region, activations and aux shared by products of the
/// same `vec_dot_type` / aux layout, more products than one region holds)
/// gives each product exactly what a `matmul` of it alone gives, for every
/// table, in generation (1–3 tokens) and prompt (5 tokens) shapes.
#[test]
fn matmul_many_equals_one_matmul_per_product() {
    use crate::backend::cpu::{matmul, matmul_many, MatJob, MatmulScratch};
    let n_in = 2 * QK_K;
    use GgmlType::*;
    // Q4_0, Q5_0 and Q8_0 share their activations and aux, as do the K-quants.
    let types = [Q4_0, Q4_K, Q4_1, Q6_K, Q4_0, Q5_0, Q8_0, Q2_K, Q5_1, Q5_K, Q3_K];
    let n_outs = [24, 19, 40, 8, 13, 16, 17, 9, 24, 8, 32];
    let mut rng = Rng(13);
    let ws: Vec<Vec<u8>> = types.iter().zip(n_outs).map(|(&ty, n)| weight_row(&mut rng, ty, n_in * n, false)).collect();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for k in CpuKernels::available() {
        for n_tok in [1, 2, 3, 5] {
            let x: Vec<f32> = (0..n_tok * n_in).map(|_| rng.f()).collect();
            let mut mm = MatmulScratch::default();
            mm.kernels = k;
            let mut want: Vec<Vec<f32>> = n_outs.iter().map(|&n| vec![0f32; n_tok * n]).collect();
            let mut got = want.clone();
            pool.install(|| {
                for (i, w) in want.iter_mut().enumerate() {
                    matmul(types[i], &ws[i], n_in, n_outs[i], &x, w, &mut mm);
                }
                let mut jobs: Vec<MatJob> =
                    got.iter_mut().enumerate().map(|(i, y)| MatJob { ty: types[i], w: &ws[i], n_out: n_outs[i], y }).collect();
                matmul_many(n_in, &x, &mut jobs, &mut mm);
            });
            assert_eq!(got, want, "{} n_tok {n_tok}", k.isa);
        }
    }
}

/// Rows for the activation quantizers: random values with zeros, all-zero
/// blocks, exact ties after scaling, huge, tiny and subnormal magnitudes,
/// ±inf and NaN; `n` values each (a multiple of 256).
fn act_test_rows(rng: &mut Rng, n: usize) -> Vec<Vec<f32>> {
    let mut rows = Vec::new();
    // Random, about one value in eight zero.
    rows.push((0..n).map(|_| if rng.byte() < 32 { 0.0 } else { rng.f() }).collect());
    rows.push(vec![0.0; n]);
    // Ties: each 32-block holds ±127 (so d = 1, id = 1; Q8_K: iscale = ∓1)
    // and k + 0.5 elsewhere, which the scalar rounds half away (Q8_0/Q8_1)
    // or half to even (Q8_K); some blocks hold +127 and -127 (Q8_K keeps the first).
    rows.push(
        (0..n)
            .map(|i| match i % 32 {
                0 => {
                    if (i / 32) % 2 == 0 {
                        127.0
                    } else {
                        -127.0
                    }
                }
                7 if (i / 32) % 3 == 0 => {
                    if (i / 32) % 2 == 0 {
                        -127.0
                    } else {
                        127.0
                    }
                }
                _ => (rng.byte() % 254) as f32 - 127.0 + 0.5,
            })
            .collect(),
    );
    // Every block its own magnitude, 2^-149 (subnormal, where 1/d is inf) to 2^127.
    let mut r = Vec::with_capacity(n);
    for _ in 0..n / 32 {
        let e = (rng.byte() as i32 % 277) - 149;
        let s = 2f32.powi(e.clamp(-126, 127)) * if e < -126 { 2f32.powi(e + 126) } else { 1.0 };
        r.extend((0..32).map(|_| if rng.byte() < 16 { 0.0 } else { rng.f() * s }));
    }
    rows.push(r);
    for s in [1e38f32, 1e-36, 1e-38, 1e-40, 1e-44] {
        rows.push((0..n).map(|_| rng.f() * s).collect());
    }
    // One value in 64 is ±inf or NaN.
    rows.push(
        (0..n)
            .map(|_| match rng.byte() {
                0..=1 => f32::INFINITY,
                2..=3 => f32::NEG_INFINITY,
                4..=5 => f32::NAN,
                _ => rng.f(),
            })
            .collect(),
    );
    rows
}

#[test]
fn simd_activation_quantizers_match_scalar_bytes() {
    let mut rng = Rng(47);
    let (n, at) = (4 * QK_K, [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K, GgmlType::F16, GgmlType::F32, GgmlType::BF16]);
    let rows = act_test_rows(&mut rng, n);
    for k in CpuKernels::available() {
        for &ty in &at {
            for (r, x) in rows.iter().enumerate() {
                // Also a shorter row of 7 blocks for the 32-value formats.
                let lens: &[usize] = if ty == GgmlType::Q8_K { &[n, QK_K] } else { &[n, 7 * 32 + 8 * (ty.block_size() == 1) as usize] };
                for &len in lens {
                    let x = &x[..len];
                    let mut want = vec![0u8; ty.row_size(len).unwrap()];
                    let mut got = vec![0xAAu8; want.len()];
                    quant::quantize_row_act(ty, x, &mut want);
                    (k.quantize_act)(ty, x, &mut got);
                    if let Some(i) = want.iter().zip(&got).position(|(a, b)| a != b) {
                        let bs = ty.type_size();
                        panic!("{k:?} {ty} row {r} len {len}: byte {i} (block {}) {} != scalar {}", i / bs, got[i], want[i]);
                    }
                }
            }
        }
    }
}
