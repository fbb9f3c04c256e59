// Dequantization of one 32-element unit of a weight matrix held on the GPU in
// its GGUF bytes (backend/wgpu/layout.rs). Appended to matmul.wgsl,
// matmul_rows.wgsl, get_rows.wgsl and head_matmul.wgsl (one decode for every
// kernel that reads weights); the host prepends `const LAYOUT: u32` = the ggml
// type id (ggml.h: 0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 6 Q5_0, 7 Q5_1, 8 Q8_0,
// 10 Q2_K, 11 Q3_K, 12 Q4_K, 13 Q5_K, 14 Q6_K, 20 IQ4_NL, 23 IQ4_XS, 30 BF16).
//
// `wa: array<u32>` is the tensor's bytes exactly as in the file (rows
// contiguous, little-endian), zero-padded to a whole word at the end. Words
// are read through `wa_at(i)`, which the host prepends: `wa[i]`, or for the
// fused products over several weights (shaders.rs, matmul_fuse) the word of
// the weight the current row belongs to. Unit u
// is elements [32u, 32u + 32) of the tensor (rows are whole units or blocks,
// so unit u of a 32-element block type is block u, and of a 256-element
// K-quant block, sub-block u % 8 of block u / 8). Each element is computed
// with the same f32 operations, in the same order, as the scalar
// `dequantize_row` (runtime/src/quant), so the values are bit-identical.
//
// Blocks of 18, 22, 34, 110 and 210 bytes start at even but not always
// 4-byte-aligned offsets: every multi-byte field of every ggml block is at an
// even offset, so `u32_at` reads any field with at most two word loads, and
// `words4_at` / `words8_at` a run of 16 / 32 bytes with 5 / 9.
// f16 scales go through `unpack2x16float` (no f16 shader feature needed).

// Byte `o` of the tensor.
fn byte_at(o: u32) -> u32 {
    return (wa_at(o >> 2u) >> (8u * (o & 3u))) & 0xFFu;
}

// The little-endian u32 at byte offset `o` (o even).
fn u32_at(o: u32) -> u32 {
    let i = o >> 2u;
    let lo = wa_at(i);
    // Unaligned: the high half of word i, then the low half of word i + 1.
    // select, not a branch: both loads run, which lavapipe vectorizes better.
    return select(lo, (lo >> 16u) | (wa_at(i + 1u) << 16u), (o & 2u) != 0u);
}

// The 4 / 8 little-endian words at byte offset `b` (b even): 5 / 9 word
// loads, each loaded once (a field-by-field u32_at would load most twice).
fn words4_at(b: u32) -> array<u32, 4> {
    let i = b >> 2u;
    var r: array<u32, 5>;
    for (var k = 0u; k < 5u; k++) {
        r[k] = wa_at(i + k);
    }
    var q: array<u32, 4>;
    for (var k = 0u; k < 4u; k++) {
        q[k] = select(r[k], (r[k] >> 16u) | (r[k + 1u] << 16u), (b & 2u) != 0u);
    }
    return q;
}

fn words8_at(b: u32) -> array<u32, 8> {
    let i = b >> 2u;
    var r: array<u32, 9>;
    for (var k = 0u; k < 9u; k++) {
        r[k] = wa_at(i + k);
    }
    var q: array<u32, 8>;
    for (var k = 0u; k < 8u; k++) {
        q[k] = select(r[k], (r[k] >> 16u) | (r[k + 1u] << 16u), (b & 2u) != 0u);
    }
    return q;
}

// The f16 at byte offset `o` (o even), as f32.
fn f16_at(o: u32) -> f32 {
    return unpack2x16float(wa_at(o >> 2u) >> (8u * (o & 2u))).x;
}

// Byte k (0..3) of word v.
fn byte_of(v: u32, k: u32) -> u32 {
    return (v >> (8u * k)) & 0xFFu;
}

// IQ4_NL / IQ4_XS: ggml's kvalues_iq4nl.
const KVALUES_IQ4NL = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0, 1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);

// Q4_K / Q5_K: scale and min of sub-block j (ggml's get_scale_min_k4) from
// the 12 scale bytes at byte offset `o` (4-aligned).
fn scale_min_k4(o: u32, j: u32) -> vec2<u32> {
    let q_j = byte_at(o + j);
    let q_j4 = byte_at(o + j + 4u);
    let q_jm4 = byte_at(o + (j & 3u)); // q[j - 4] when j >= 4
    let lo = vec2<u32>(q_j & 63u, q_j4 & 63u);
    let hi = vec2<u32>((q_j4 & 0xFu) | ((q_jm4 >> 6u) << 4u), (q_j4 >> 4u) | ((q_j >> 6u) << 4u));
    return select(hi, lo, j < 4u);
}

fn dequant_unit(u: u32, w: ptr<function, array<f32, 32>>) {
    if LAYOUT == 0u {
        // F32
        for (var i = 0u; i < 32u; i++) {
            (*w)[i] = bitcast<f32>(wa_at(32u * u + i));
        }
    } else if LAYOUT == 1u {
        // F16: two per word, element 2k in the low half.
        for (var i = 0u; i < 16u; i++) {
            let v = unpack2x16float(wa_at(16u * u + i));
            (*w)[2u * i] = v.x;
            (*w)[2u * i + 1u] = v.y;
        }
    } else if LAYOUT == 30u {
        // BF16: the f32's high half.
        for (var i = 0u; i < 16u; i++) {
            let v = wa_at(16u * u + i);
            (*w)[2u * i] = bitcast<f32>(v << 16u);
            (*w)[2u * i + 1u] = bitcast<f32>(v & 0xFFFF0000u);
        }
    } else if LAYOUT == 2u || LAYOUT == 20u {
        // Q4_0 / IQ4_NL (18 bytes): d, then 16 bytes q[k] | q[k + 16] << 4.
        let o = 18u * u;
        let d = f16_at(o);
        let qs = words4_at(o + 2u);
        for (var j = 0u; j < 4u; j++) {
            let q = qs[j];
            for (var k = 0u; k < 4u; k++) {
                let b = byte_of(q, k);
                if LAYOUT == 2u {
                    (*w)[4u * j + k] = f32(i32(b & 0xFu) - 8) * d;
                    (*w)[4u * j + k + 16u] = f32(i32(b >> 4u) - 8) * d;
                } else {
                    (*w)[4u * j + k] = d * KVALUES_IQ4NL[b & 0xFu];
                    (*w)[4u * j + k + 16u] = d * KVALUES_IQ4NL[b >> 4u];
                }
            }
        }
    } else if LAYOUT == 3u {
        // Q4_1 (20 bytes, 5 words): (d, m), then the nibbles as Q4_0.
        let dm = unpack2x16float(wa_at(5u * u));
        for (var j = 0u; j < 4u; j++) {
            let q = wa_at(5u * u + 1u + j);
            for (var k = 0u; k < 4u; k++) {
                let b = byte_of(q, k);
                (*w)[4u * j + k] = f32(b & 0xFu) * dm.x + dm.y;
                (*w)[4u * j + k + 16u] = f32(b >> 4u) * dm.x + dm.y;
            }
        }
    } else if LAYOUT == 6u || LAYOUT == 7u {
        // Q5_0 (22 bytes: d, qh, qs) / Q5_1 (24 bytes: d, m, qh, qs): bit j of
        // qh is the fifth bit of element j.
        var o = 22u * u;
        var d = 0.0;
        var m = 0.0;
        if LAYOUT == 6u {
            d = f16_at(o);
            o += 2u;
        } else {
            o = 24u * u;
            let dm = unpack2x16float(wa_at(6u * u));
            d = dm.x;
            m = dm.y;
            o += 4u;
        }
        let qh = u32_at(o);
        let qs = words4_at(o + 4u);
        for (var j = 0u; j < 4u; j++) {
            let q = qs[j];
            for (var k = 0u; k < 4u; k++) {
                let e = 4u * j + k;
                let b = byte_of(q, k);
                let q0 = (b & 0xFu) | (((qh >> e) & 1u) << 4u);
                let q1 = (b >> 4u) | (((qh >> (e + 16u)) & 1u) << 4u);
                if LAYOUT == 6u {
                    (*w)[e] = f32(i32(q0) - 16) * d;
                    (*w)[e + 16u] = f32(i32(q1) - 16) * d;
                } else {
                    (*w)[e] = f32(q0) * d + m;
                    (*w)[e + 16u] = f32(q1) * d + m;
                }
            }
        }
    } else if LAYOUT == 8u {
        // Q8_0 (34 bytes): d, then 32 i8.
        let o = 34u * u;
        let d = f16_at(o);
        let qs = words8_at(o + 2u);
        for (var j = 0u; j < 8u; j++) {
            let q = bitcast<i32>(qs[j]);
            for (var k = 0u; k < 4u; k++) {
                (*w)[4u * j + k] = f32(extractBits(q, 8u * k, 8u)) * d;
            }
        }
    } else if LAYOUT == 10u {
        // Q2_K (84 bytes): scales[16] (low nibble scale, high nibble min per
        // 16 elements), qs[64], d, dmin. Sub-block j: 2-bit field j % 4 of
        // qs[32 (j / 4) + l].
        let j = u % 8u;
        let o = 84u * (u / 8u);
        let dd = unpack2x16float(wa_at(o / 4u + 20u));
        for (var g = 0u; g < 2u; g++) {
            let sc = byte_at(o + 2u * j + g);
            let dl = dd.x * f32(sc & 0xFu);
            let ml = dd.y * f32(sc >> 4u);
            for (var i = 0u; i < 4u; i++) {
                let q = wa_at(o / 4u + 4u + 8u * (j / 4u) + 4u * g + i);
                for (var k = 0u; k < 4u; k++) {
                    (*w)[16u * g + 4u * i + k] = dl * f32((byte_of(q, k) >> (2u * (j % 4u))) & 3u) - ml;
                }
            }
        }
    } else if LAYOUT == 11u {
        // Q3_K (110 bytes): hmask[32], qs[64], scales[12], d. Sub-block j:
        // low 2 bits as Q2_K, minus 4 where bit j of hmask[l] is clear;
        // 6-bit signed scales per 16 (ggml's q3k scale unpacking).
        let j = u % 8u;
        let o = 110u * (u / 8u);
        let d_all = f16_at(o + 108u);
        let qs = words8_at(o + 32u + 32u * (j / 4u));
        let hm = words8_at(o);
        for (var g = 0u; g < 2u; g++) {
            let s = 2u * j + g;
            let lo = select(byte_at(o + 96u + s - 8u) >> 4u, byte_at(o + 96u + s) & 0xFu, s < 8u);
            let hi = (byte_at(o + 96u + 8u + s % 4u) >> (2u * (s / 4u))) & 3u;
            let dl = d_all * f32(i32(lo | (hi << 4u)) - 32);
            for (var i = 0u; i < 4u; i++) {
                let q = qs[4u * g + i];
                let h8 = hm[4u * g + i];
                for (var k = 0u; k < 4u; k++) {
                    let lq = i32((byte_of(q, k) >> (2u * (j % 4u))) & 3u);
                    let h = select(4, 0, ((byte_of(h8, k) >> j) & 1u) != 0u);
                    (*w)[16u * g + 4u * i + k] = dl * f32(lq - h);
                }
            }
        }
    } else if LAYOUT == 12u || LAYOUT == 13u {
        // Q4_K (144 bytes) / Q5_K (176 bytes): d, dmin, scales[12], [qh[32]
        // for Q5_K], qs[128]. Sub-block j: nibble j % 2 of qs[32 (j / 2) + l]
        // (+16 where bit j of qh[l] is set, Q5_K), scale and min by
        // get_scale_min_k4; element = d·sc·q − dmin·mn.
        let j = u % 8u;
        var bw = 36u * (u / 8u); // block start, in words
        if LAYOUT == 13u {
            bw = 44u * (u / 8u);
        }
        let dd = unpack2x16float(wa_at(bw));
        let sm = scale_min_k4(4u * bw + 4u, j);
        let d1 = dd.x * f32(sm.x);
        let m1 = dd.y * f32(sm.y);
        var qw = bw + 4u;
        if LAYOUT == 13u {
            qw = bw + 12u;
        }
        for (var i = 0u; i < 8u; i++) {
            let q = wa_at(qw + 8u * (j / 2u) + i);
            var h = 0u;
            if LAYOUT == 13u {
                h = wa_at(bw + 4u + i);
            }
            for (var k = 0u; k < 4u; k++) {
                var v = (byte_of(q, k) >> (4u * (j % 2u))) & 0xFu;
                if LAYOUT == 13u {
                    v |= ((byte_of(h, k) >> j) & 1u) << 4u;
                }
                (*w)[4u * i + k] = d1 * f32(v) - m1;
            }
        }
    } else if LAYOUT == 14u {
        // Q6_K (210 bytes): ql[128], qh[64], scales[16] (i8 per 16), d.
        // Sub-block j = 4h + t: low nibble (t < 2) or high nibble of
        // ql[64h + 32 (t % 2) + l], 2-bit field t of qh[32h + l]; q − 32.
        let j = u % 8u;
        let o = 210u * (u / 8u);
        let d = f16_at(o + 208u);
        let h = j / 4u;
        let t = j % 4u;
        let qls = words8_at(o + 64u * h + 32u * (t % 2u));
        let qhs = words8_at(o + 128u + 32u * h);
        for (var g = 0u; g < 2u; g++) {
            let sc = bitcast<i32>(byte_at(o + 192u + 2u * j + g) << 24u) >> 24u;
            let dl = d * f32(sc);
            for (var i = 0u; i < 4u; i++) {
                let l = 16u * g + 4u * i;
                let ql = qls[4u * g + i];
                let qh = qhs[4u * g + i];
                for (var k = 0u; k < 4u; k++) {
                    let lo = (byte_of(ql, k) >> (4u * (t / 2u))) & 0xFu;
                    let hi = (byte_of(qh, k) >> (2u * t)) & 3u;
                    (*w)[l + k] = dl * f32(i32(lo | (hi << 4u)) - 32);
                }
            }
        }
    } else {
        // IQ4_XS (136 bytes): d, scales_h (u16), scales_l[4], qs[8][16].
        // Sub-block j: 6-bit scale ls (low 4 bits from scales_l, high 2 from
        // scales_h) − 32, then the 16 bytes as IQ4_NL with d·ls.
        let j = u % 8u;
        let bw = 34u * (u / 8u);
        let w0 = wa_at(bw);
        let d = unpack2x16float(w0).x;
        let sl = (byte_of(wa_at(bw + 1u), j / 2u) >> (4u * (j % 2u))) & 0xFu;
        let sh = ((w0 >> 16u) >> (2u * j)) & 3u;
        let dl = d * f32(i32(sl | (sh << 4u)) - 32);
        for (var i = 0u; i < 4u; i++) {
            let q = wa_at(bw + 2u + 4u * j + i);
            for (var k = 0u; k < 4u; k++) {
                let b = byte_of(q, k);
                (*w)[4u * i + k] = dl * KVALUES_IQ4NL[b & 0xFu];
                (*w)[4u * i + k + 16u] = dl * KVALUES_IQ4NL[b >> 4u];
            }
        }
    }
}
