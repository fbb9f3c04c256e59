// Dequantization of one 32-element unit of a repacked weight matrix.
// Prepended to matmul.wgsl and get_rows.wgsl; the host prepends
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
        for (var s = 0u; s < SUB; s++) {
            let d = bitcast<f32>(wa[2u * (u * SUB + s)]);
            let m = bitcast<f32>(wa[2u * (u * SUB + s) + 1u]);
            let per = 32u / SUB;
            for (var j = s * per / 4u; j < (s + 1u) * per / 4u; j++) {
                let b = bitcast<i32>(wb[8u * u + j]);
                for (var k = 0u; k < 4u; k++) {
                    (*w)[4u * j + k] = d * f32(extractBits(b, 8u * k, 8u)) + m;
                }
            }
        }
    }
}
