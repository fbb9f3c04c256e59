// y[t][y_off + r] = sum_k W[r][k] * x[t][x_off + k], one invocation per
// (R rows, T tokens): no workgroup memory, no barriers, weights
// dequantized into registers a unit (32) at a time and reused for T tokens.
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

// The 32 elements of unit u as 8 vec4s (elements 4j..4j+3 in w[j]), each
// word of the unit loaded once: on software adapters every per-invocation
// load is a gather, and the loads, not the arithmetic, set the speed.
fn unit_w(u: u32) -> array<vec4<f32>, 8> {
    var w: array<vec4<f32>, 8>;
    if LAYOUT == 0u {
        for (var j = 0u; j < 8u; j++) {
            let b = 32u * u + 4u * j;
            w[j] = vec4<f32>(bitcast<f32>(wa[b]), bitcast<f32>(wa[b + 1u]), bitcast<f32>(wa[b + 2u]), bitcast<f32>(wa[b + 3u]));
        }
    } else if LAYOUT == 1u {
        for (var j = 0u; j < 8u; j++) {
            let b = 16u * u + 2u * j;
            w[j] = vec4<f32>(unpack2x16float(wa[b]), unpack2x16float(wa[b + 1u]));
        }
    } else if LAYOUT == 2u {
        let d = bitcast<f32>(wa[2u * u]);
        let m = bitcast<f32>(wa[2u * u + 1u]);
        for (var i = 0u; i < 4u; i++) {
            // Word i: elements 4i..4i+3 in its low nibbles, 16+4i.. in its high.
            let lo = wb[4u * u + i];
            let hi = lo >> 4u;
            w[i] = d * vec4<f32>(f32(lo & 0xFu), f32((lo >> 8u) & 0xFu), f32((lo >> 16u) & 0xFu), f32((lo >> 24u) & 0xFu)) + m;
            w[i + 4u] = d * vec4<f32>(f32(hi & 0xFu), f32((hi >> 8u) & 0xFu), f32((hi >> 16u) & 0xFu), f32((hi >> 24u) & 0xFu)) + m;
        }
    } else {
        // SUB is 1 or 2: elements 0..31 (or 0..15 and 16..31) share a (d, m).
        let s0 = 2u * u * SUB;
        let s1 = s0 + 2u * (SUB - 1u);
        let d0 = bitcast<f32>(wa[s0]);
        let m0 = bitcast<f32>(wa[s0 + 1u]);
        let d1 = bitcast<f32>(wa[s1]);
        let m1 = bitcast<f32>(wa[s1 + 1u]);
        for (var j = 0u; j < 4u; j++) {
            w[j] = d0 * bytes4(wb[8u * u + j]) + m0;
            w[j + 4u] = d1 * bytes4(wb[8u * u + j + 4u]) + m1;
        }
    }
    return w;
}

// The host prepends the tile (shaders.rs, RowsTile): R rows per invocation
// (16 on software adapters, where the x values of a unit, loaded once, then
// serve 16 rows; 1 on GPUs), T tokens per invocation (4, or 1 for decode) and
// WG invocations per workgroup.

// Sums of R rows for tokens t0..t0+3 (vec4 lanes; tokens past the end read the last).
fn rows4(row0: u32, t0: u32) -> array<vec4<f32>, R> {
    var xb: array<u32, 4>;
    for (var t = 0u; t < 4u; t++) {
        xb[t] = min(t0 + t, p.n_tok - 1u) * (p.x_stride / 4u) + p.x_off / 4u;
    }
    let upr = p.n_in / 32u;
    var acc: array<vec4<f32>, R>;
    for (var u = 0u; u < upr; u++) {
        var xs: array<array<vec4<f32>, 4>, 8>;
        for (var j = 0u; j < 8u; j++) {
            let k = u * 8u + j;
            xs[j] = array<vec4<f32>, 4>(x[xb[0] + k], x[xb[1] + k], x[xb[2] + k], x[xb[3] + k]);
        }
        for (var r = 0u; r < R; r++) {
            // Rows past the end compute on the last row; their sums are not stored.
            let w = unit_w(min(row0 + r, p.n_rows - 1u) * upr + u);
            var a = acc[r];
            for (var j = 0u; j < 8u; j++) {
                let xj = xs[j];
                a += vec4<f32>(dot(w[j], xj[0]), dot(w[j], xj[1]), dot(w[j], xj[2]), dot(w[j], xj[3]));
            }
            acc[r] = a;
        }
    }
    return acc;
}

// Sums of R rows for token t0 alone (in .x).
fn rows1(row0: u32, t0: u32) -> array<vec4<f32>, R> {
    let xb = t0 * (p.x_stride / 4u) + p.x_off / 4u;
    let upr = p.n_in / 32u;
    var acc: array<f32, R>;
    for (var u = 0u; u < upr; u++) {
        var xs: array<vec4<f32>, 8>;
        for (var j = 0u; j < 8u; j++) {
            xs[j] = x[xb + u * 8u + j];
        }
        for (var r = 0u; r < R; r++) {
            let w = unit_w(min(row0 + r, p.n_rows - 1u) * upr + u);
            var a = acc[r];
            for (var j = 0u; j < 8u; j++) {
                a += dot(w[j], xs[j]);
            }
            acc[r] = a;
        }
    }
    var out: array<vec4<f32>, R>;
    for (var r = 0u; r < R; r++) {
        out[r].x = acc[r];
    }
    return out;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let row0 = (gid.x + gid.z * 65535u * WG) * R;
    // From the workgroup id (the same in every invocation of a group).
    let t0 = wg.y * T;
    if row0 >= p.n_rows {
        return;
    }
    var acc: array<vec4<f32>, R>;
    if T == 1u {
        acc = rows1(row0, t0);
    } else {
        acc = rows4(row0, t0);
    }
    for (var r = 0u; r < R; r++) {
        let row = row0 + r;
        if row >= p.n_rows {
            break;
        }
        let a = acc[r];
        for (var t = 0u; t < T; t++) {
            if t0 + t < p.n_tok {
                y[(t0 + t) * p.y_stride + p.y_off + row] = a[t];
            }
        }
    }
}
