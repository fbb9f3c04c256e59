// y[t][y_off + r] = sum_k W[r][k] * x[t][x_off + k], one invocation per
// (R rows, T tokens): no workgroup memory, no barriers, weights
// dequantized into registers a unit (32) at a time and reused for T tokens.
// The tier for software adapters (lavapipe, where barriers are costly) and
// for prompt batches; matmul.wgsl (lanes + reduction) serves GPU decode.
// x_stride, x_off and n_in are multiples of 4 (x is read as vec4).
// Bindings: 0 params, 1 x (vec4<f32>), 2 wa (the weight's GGUF bytes, dequant.wgsl),
// then what the host prepends (shaders.rs, matmul_fuse): y (3) and, for the
// fused tier, the residual or the other weights and outputs of a product
// group. The prelude gives ROUND, round_x, GLU, w_unit, wsel, store and
// store_glu: the plain product stores y; the fused tier's may also round
// each unit of x like act_quant, add the result into a residual, route the
// rows of a q/k/v group to their outputs, or multiply act(gate) by up.

struct Params {
    n_in: u32,
    n_rows: u32,
    n_tok: u32,
    x_stride: u32,
    x_off: u32,
    y_stride: u32,
    y_off: u32,
    // The residual add's branch scale (fused products with ADD; 0 otherwise).
    s: f32,
    // A q/k/v group's first two weights' rows (fused QKV products; 0 otherwise).
    n_a: u32,
    n_b: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> wa: array<u32>;

// The 32 elements of unit u as 8 vec4s (elements 4j..4j+3 in w[j]), from
// dequant.wgsl's dequant_unit.
fn unit_w(u: u32) -> array<vec4<f32>, 8> {
    var f: array<f32, 32>;
    dequant_unit(u, &f);
    var w: array<vec4<f32>, 8>;
    for (var j = 0u; j < 8u; j++) {
        w[j] = vec4<f32>(f[4u * j], f[4u * j + 1u], f[4u * j + 2u], f[4u * j + 3u]);
    }
    return w;
}

// x's unit u rounded by round_x (ROUND: the fused tier's rounding prologue).
fn round_unit(v: array<vec4<f32>, 8>) -> array<vec4<f32>, 8> {
    var b: array<f32, 32>;
    for (var j = 0u; j < 8u; j++) {
        b[4u * j] = v[j].x;
        b[4u * j + 1u] = v[j].y;
        b[4u * j + 2u] = v[j].z;
        b[4u * j + 3u] = v[j].w;
    }
    round_x(&b);
    var o: array<vec4<f32>, 8>;
    for (var j = 0u; j < 8u; j++) {
        o[j] = vec4<f32>(b[4u * j], b[4u * j + 1u], b[4u * j + 2u], b[4u * j + 3u]);
    }
    return o;
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
        if ROUND {
            for (var t = 0u; t < 4u; t++) {
                var v: array<vec4<f32>, 8>;
                for (var j = 0u; j < 8u; j++) {
                    v[j] = xs[j][t];
                }
                v = round_unit(v);
                for (var j = 0u; j < 8u; j++) {
                    xs[j][t] = v[j];
                }
            }
        }
        for (var r = 0u; r < R; r++) {
            // Rows past the end compute on the last row; their sums are not stored.
            let w = unit_w(w_unit(min(row0 + r, p.n_rows - 1u), upr, u));
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

// Sums of R rows for token t0 alone (in .x). A twin of rows4 rather than one
// body generic over T: with per-token scalar accumulators the 4-token case
// ran ~35% slower on lavapipe than with vec4 lanes.
fn rows1(row0: u32, t0: u32) -> array<vec4<f32>, R> {
    let xb = t0 * (p.x_stride / 4u) + p.x_off / 4u;
    let upr = p.n_in / 32u;
    var acc: array<f32, R>;
    for (var u = 0u; u < upr; u++) {
        var xs: array<vec4<f32>, 8>;
        for (var j = 0u; j < 8u; j++) {
            xs[j] = x[xb + u * 8u + j];
        }
        if ROUND {
            xs = round_unit(xs);
        }
        for (var r = 0u; r < R; r++) {
            let w = unit_w(w_unit(min(row0 + r, p.n_rows - 1u), upr, u));
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
    // GLU (fused gate/up): the same rows of the second weight (up), by the
    // same code, so each sum is bit for bit the plain product's.
    var acc_up: array<vec4<f32>, R>;
    if GLU {
        wsel = 1u;
        if T == 1u {
            acc_up = rows1(row0, t0);
        } else {
            acc_up = rows4(row0, t0);
        }
    }
    for (var r = 0u; r < R; r++) {
        let row = row0 + r;
        if row >= p.n_rows {
            break;
        }
        let a = acc[r];
        let b = acc_up[r];
        for (var t = 0u; t < T; t++) {
            if t0 + t < p.n_tok {
                if GLU {
                    store_glu(t0 + t, row, a[t], b[t]);
                } else {
                    store(t0 + t, row, a[t]);
                }
            }
        }
    }
}
