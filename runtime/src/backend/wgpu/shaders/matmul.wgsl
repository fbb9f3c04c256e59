// y[t][y_off + r] = sum_k W[r][k] * x[t][x_off + k] for the rows r of one
// weight part (a band of rows, see weights.rs) and a tile of TT tokens.
// Baseline f32 tier: ROWS rows per workgroup, LANES threads per row striding
// over 32-element units; each dequantized unit is reused for TT tokens, so
// decode is a mat-vec and prompts a batched mat-vec (weights read n_tok/TT times).
// This file holds what both tiers share (`partial`: one lane's sums over its
// units for TT tokens); the tier's `main` follows it: matmul_wg.wgsl (baseline,
// workgroup-memory tree reduction) or matmul_sg.wgsl (subgroup shuffles).
// Bindings: 0 params, 1 x (f32), 2 wa (the weight's GGUF bytes, dequant.wgsl),
// then what the host prepends (shaders.rs, matmul_fuse): y (3) and, for the
// fused tier, the residual or the other weights and outputs of a product
// group. The prelude also gives ROUND, round_x, GLU, w_unit (the unit index of
// a row's unit, choosing the weight of a group), store and store_glu.

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
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wa: array<u32>;

const ROWS: u32 = 4u;
const LANES: u32 = 16u;
const TT: u32 = 8u;

// Lane `lane`'s partial sums of row `row` for tokens t0..t0+nt.
fn partial(row: u32, lane: u32, t0: u32, nt: u32) -> array<f32, 8> {
    let upr = p.n_in / 32u;
    var acc: array<f32, 8>;
    var w: array<f32, 32>;
    if row < p.n_rows {
        for (var u = lane; u < upr; u += LANES) {
            dequant_unit(w_unit(row, upr, u), &w);
            for (var t = 0u; t < nt; t++) {
                let xb = (t0 + t) * p.x_stride + p.x_off + u * 32u;
                var s = 0.0;
                if ROUND {
                    var xr: array<f32, 32>;
                    for (var i = 0u; i < 32u; i++) {
                        xr[i] = x[xb + i];
                    }
                    round_x(&xr);
                    for (var i = 0u; i < 32u; i++) {
                        s += w[i] * xr[i];
                    }
                } else {
                    for (var i = 0u; i < 32u; i++) {
                        s += w[i] * x[xb + i];
                    }
                }
                acc[t] += s;
            }
        }
    }
    return acc;
}
