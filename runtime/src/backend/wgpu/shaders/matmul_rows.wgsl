// y[t][y_off + r] = sum_k W[r][k] * x[t][x_off + k], one invocation per
// (row, group of 4 tokens): no workgroup memory, no barriers, weights
// dequantized into registers 4 at a time (wvec) and reused for 4 tokens.
// The tier for software adapters (lavapipe, where barriers are costly) and
// for prompt batches; matmul.wgsl (lanes + reduction) serves GPU decode.
// x_stride, x_off and n_in are multiples of 4 (x is read as vec4).
// Bindings: 0 params, 1 x (vec4<f32>), 2 wa, 3 wb (layouts: dequant.wgsl), 4 y.

struct Params {
    n_in: u32,
    n_rows: u32,
    n_tok: u32,
    x_stride: u32,
    x_off: u32,
    y_stride: u32,
    y_off: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> wa: array<u32>;
@group(0) @binding(3) var<storage, read> wb: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn bytes4(b: u32) -> vec4<f32> {
    let i = bitcast<i32>(b);
    return vec4<f32>(f32(extractBits(i, 0u, 8u)), f32(extractBits(i, 8u, 8u)), f32(extractBits(i, 16u, 8u)), f32(extractBits(i, 24u, 8u)));
}

// Elements 4j..4j+3 of unit u.
fn wvec(u: u32, j: u32) -> vec4<f32> {
    if LAYOUT == 0u {
        let b = 32u * u + 4u * j;
        return vec4<f32>(bitcast<f32>(wa[b]), bitcast<f32>(wa[b + 1u]), bitcast<f32>(wa[b + 2u]), bitcast<f32>(wa[b + 3u]));
    } else if LAYOUT == 1u {
        let b = 16u * u + 2u * j;
        return vec4<f32>(unpack2x16float(wa[b]), unpack2x16float(wa[b + 1u]));
    } else if LAYOUT == 2u {
        let d = bitcast<f32>(wa[2u * u]);
        let m = bitcast<f32>(wa[2u * u + 1u]);
        let w = wb[4u * u + (j & 3u)] >> (4u * (j >> 2u));
        let q = vec4<f32>(f32(w & 0xFu), f32((w >> 8u) & 0xFu), f32((w >> 16u) & 0xFu), f32((w >> 24u) & 0xFu));
        return d * q + m;
    } else {
        let s = 2u * (u * SUB + (j * SUB) / 8u);
        let d = bitcast<f32>(wa[s]);
        let m = bitcast<f32>(wa[s + 1u]);
        return d * bytes4(wb[8u * u + j]) + m;
    }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x + gid.z * 65535u * 64u;
    let t0 = gid.y * 4u;
    if row >= p.n_rows {
        return;
    }
    let last = p.n_tok - 1u;
    let s4 = p.x_stride / 4u;
    let o4 = p.x_off / 4u;
    let xb0 = min(t0, last) * s4 + o4;
    let xb1 = min(t0 + 1u, last) * s4 + o4;
    let xb2 = min(t0 + 2u, last) * s4 + o4;
    let xb3 = min(t0 + 3u, last) * s4 + o4;
    let upr = p.n_in / 32u;
    var acc = vec4<f32>(0.0);
    for (var u = 0u; u < upr; u++) {
        let gu = row * upr + u;
        for (var j = 0u; j < 8u; j++) {
            let w = wvec(gu, j);
            let k = u * 8u + j;
            acc += vec4<f32>(dot(w, x[xb0 + k]), dot(w, x[xb1 + k]), dot(w, x[xb2 + k]), dot(w, x[xb3 + k]));
        }
    }
    let yi = p.y_off + row;
    y[t0 * p.y_stride + yi] = acc.x;
    if t0 + 1u < p.n_tok {
        y[(t0 + 1u) * p.y_stride + yi] = acc.y;
    }
    if t0 + 2u < p.n_tok {
        y[(t0 + 2u) * p.y_stride + yi] = acc.z;
    }
    if t0 + 3u < p.n_tok {
        y[(t0 + 3u) * p.y_stride + yi] = acc.w;
    }
}
