// y[t][y_off + r] = sum_k W[r][k] * x[t][x_off + k] for the rows r of one
// weight part (a band of rows, see weights.rs) and a tile of TT tokens.
// Baseline f32 tier: ROWS rows per workgroup, LANES threads per row striding
// over 32-element units; each dequantized unit is reused for TT tokens, so
// decode is a mat-vec and prompts a batched mat-vec (weights read n_tok/TT times).
// Bindings: 0 params, 1 x (f32), 2 wa, 3 wb (layout arrays, dequant.wgsl), 4 y.

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
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wa: array<u32>;
@group(0) @binding(3) var<storage, read> wb: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const ROWS: u32 = 4u;
const LANES: u32 = 16u;
const TT: u32 = 8u;
var<workgroup> red: array<f32, 512>; // [ROWS][TT][LANES]

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let rl = lid / LANES;
    let lane = lid % LANES;
    let row = (wid.x + wid.y * 8192u) * ROWS + rl;
    let t0 = wid.z * TT;
    let nt = min(TT, p.n_tok - t0);
    let upr = p.n_in / 32u;
    var acc: array<f32, 8>;
    var w: array<f32, 32>;
    if row < p.n_rows {
        for (var u = lane; u < upr; u += LANES) {
            dequant_unit(row * upr + u, &w);
            for (var t = 0u; t < nt; t++) {
                let xb = (t0 + t) * p.x_stride + p.x_off + u * 32u;
                var s = 0.0;
                for (var i = 0u; i < 32u; i++) {
                    s += w[i] * x[xb + i];
                }
                acc[t] += s;
            }
        }
    }
    for (var t = 0u; t < TT; t++) {
        red[(rl * TT + t) * LANES + lane] = acc[t];
    }
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        if lane < s {
            for (var t = 0u; t < TT; t++) {
                let i = (rl * TT + t) * LANES + lane;
                red[i] += red[i + s];
            }
        }
        workgroupBarrier();
    }
    if row < p.n_rows && lane < nt {
        y[(t0 + lane) * p.y_stride + p.y_off + row] = red[(rl * TT + lane) * LANES];
    }
}
