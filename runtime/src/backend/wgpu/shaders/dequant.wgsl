// Dequantization of one 32-element unit of a repacked weight matrix.
// Appended to matmul.wgsl, matmul_rows.wgsl and get_rows.wgsl (one
// dequantization for every kernel that reads weights); the host prepends
// `const LAYOUT: u32` (0 f32, 1 f16, 2 qa4, 3 qa8) and `const SUB: u32`.
//
// Layouts (see backend/wgpu/repack.rs), unit u = row * n_in/32 + unit-of-row:
//   f32 : wa[32u + i] = bits of element i
//   f16 : wa[16u + i/2] = two f16 (element 2k in the low half)
//   qa4 : wa[2u], wa[2u+1] = (d, m) as f32 bits; wb[4u + k/4] byte k%4 =
//         q[k] | q[k+16] << 4 (k < 16); element i = d * q[i] + m
//   qa8 : wa[2(u*SUB + s)], wa[2(u*SUB + s) + 1] = (d, m) of sub-group
//         s = i*SUB/32; wb[8u + i/4] byte i%4 = q[i] as i8; element = d * q + m

fn dequant_unit(u: u32, w: ptr<function, array<f32, 32>>) {
    if LAYOUT == 0u {
        for (var i = 0u; i < 32u; i++) {
            (*w)[i] = bitcast<f32>(wa[32u * u + i]);
        }
    } else if LAYOUT == 1u {
        for (var i = 0u; i < 16u; i++) {
            let v = unpack2x16float(wa[16u * u + i]);
            (*w)[2u * i] = v.x;
            (*w)[2u * i + 1u] = v.y;
        }
    } else if LAYOUT == 2u {
        let d = bitcast<f32>(wa[2u * u]);
        let m = bitcast<f32>(wa[2u * u + 1u]);
        for (var j = 0u; j < 4u; j++) {
            let b = wb[4u * u + j];
            for (var k = 0u; k < 4u; k++) {
                let byte = (b >> (8u * k)) & 0xFFu;
                (*w)[4u * j + k] = d * f32(byte & 0xFu) + m;
                (*w)[4u * j + k + 16u] = d * f32(byte >> 4u) + m;
            }
        }
    } else {
        // SUB is 1 or 2 (repack.rs): words 0..3 take the first sub-group's
        // (d, m), words 4..7 the last one's. Fixed loop bounds: a loop over
        // sub-groups with computed bounds ran 2.6× slower on lavapipe.
        let s0 = 2u * u * SUB;
        let s1 = s0 + 2u * (SUB - 1u);
        let d0 = bitcast<f32>(wa[s0]);
        let m0 = bitcast<f32>(wa[s0 + 1u]);
        let d1 = bitcast<f32>(wa[s1]);
        let m1 = bitcast<f32>(wa[s1 + 1u]);
        for (var j = 0u; j < 8u; j++) {
            let b = bitcast<i32>(wb[8u * u + j]);
            let d = select(d0, d1, j >= 4u);
            let m = select(m0, m1, j >= 4u);
            for (var k = 0u; k < 4u; k++) {
                (*w)[4u * j + k] = d * f32(extractBits(b, 8u * k, 8u)) + m;
            }
        }
    }
}
