// y[t][y_off + r] = sum_k W[r][k] * x[t][x_off + k] for prompt micro-batches:
// a workgroup of 64 invocations computes a tile of BM = 64 rows × BN tokens.
// For each 32-element unit of the rows (BK = 32) the weights are dequantized
// once per tile (one unit per invocation, dequant.wgsl's dequant_unit) into
// workgroup memory, the x values of the tile's tokens are staged next to them,
// and every invocation then accumulates an 8-row × TN-token sub-tile in f32
// registers. Each weight is dequantized n_tok/BN times instead of once per
// token tile of 4 (matmul_rows.wgsl), and each x value read from memory once
// per BM rows.
//
// Two tile types (the host prepends `alias tile = f32|f16;` and BN):
//   f32: BN = 32 tokens; 8 KiB of weights + 4 KiB of x in workgroup memory.
//   f16 (the f16 tier, `enable f16;`): BN = 64 tokens in less memory (4 + 4 KiB):
//        weights and x are rounded to f16 in the tiles; the products are taken
//        in f32 (a product of two f16 values is exact in f32) and summed in f32,
//        so the only error is the rounding of each element to f16 (≤ 2^-11
//        relative, like llama.cpp's f16 shared-memory tiles).
// Rows past n_rows compute on the last row and tokens past n_tok on the last
// token (valid reads); their sums are not stored. x is read as plain f32, so
// x_stride and x_off may be anything (n_in is a multiple of 32).
// Bindings: 0 params, 1 x (f32), 2 wa (the weight's GGUF bytes: dequant.wgsl), 3 y.

struct Params {
    n_in: u32,
    n_rows: u32,
    n_tok: u32,
    x_stride: u32,
    x_off: u32,
    y_stride: u32,
    y_off: u32,
    // Used by the fused products only (matmul.wgsl); 0 here.
    s: f32,
    n_a: u32,
    n_b: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wa: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// Rows per workgroup: one weight unit dequantized per invocation and step.
const BM: u32 = 64u;
// Elements of the inner dimension per step: one unit.
const BK: u32 = 32u;
// Tokens per invocation: the 8 × 8 invocations cover BM rows × BN tokens.
const TN: u32 = BN / 8u;
// Row strides of the tiles, padded by one so that the transposing stores of
// x (consecutive invocations write consecutive k) do not all hit one bank.
const WS: u32 = BM + 1u;
const XS: u32 = BN + 1u;

// ws[k * WS + r]: element k of the current unit of row row0 + r.
var<workgroup> ws: array<tile, BK * WS>;
// xs[k * XS + t]: element u·32 + k of token tok0 + t.
var<workgroup> xs: array<tile, BK * XS>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    // Row tiles past 65535 continue in z (the same split as matmul_rows).
    let row0 = (wg.x + wg.z * 65535u) * BM;
    let tok0 = wg.y * BN;
    // Uniform per workgroup (ids and params), so the barriers below stay uniform.
    if row0 >= p.n_rows {
        return;
    }
    // This invocation's sub-tile: rows row0 + ty + 8i, tokens tok0 + tx + 8j
    // (interleaved, so the 8 invocations sharing a ty read 8 distinct x).
    let ty = lid / 8u;
    let tx = lid % 8u;
    let upr = p.n_in / 32u;
    // The row whose unit this invocation dequantizes each step.
    let my_row = min(row0 + lid, p.n_rows - 1u);
    var acc: array<array<f32, TN>, 8>;
    for (var u = 0u; u < upr; u++) {
        var f: array<f32, 32>;
        dequant_unit(my_row * upr + u, &f);
        for (var k = 0u; k < BK; k++) {
            ws[k * WS + lid] = tile(f[k]);
        }
        // BK × BN x values, consecutive invocations on consecutive k (coalesced reads).
        for (var e = lid; e < BK * BN; e += 64u) {
            let t = e / BK;
            let k = e % BK;
            let tok = min(tok0 + t, p.n_tok - 1u);
            xs[k * XS + t] = tile(x[tok * p.x_stride + p.x_off + u * BK + k]);
        }
        workgroupBarrier();
        for (var k = 0u; k < BK; k++) {
            var a: array<f32, 8>;
            for (var i = 0u; i < 8u; i++) {
                a[i] = f32(ws[k * WS + ty + 8u * i]);
            }
            for (var j = 0u; j < TN; j++) {
                let b = f32(xs[k * XS + tx + 8u * j]);
                for (var i = 0u; i < 8u; i++) {
                    acc[i][j] += a[i] * b;
                }
            }
        }
        // The next step overwrites the tiles.
        workgroupBarrier();
    }
    for (var i = 0u; i < 8u; i++) {
        let row = row0 + ty + 8u * i;
        if row < p.n_rows {
            for (var j = 0u; j < TN; j++) {
                let t = tok0 + tx + 8u * j;
                if t < p.n_tok {
                    y[t * p.y_stride + p.y_off + row] = acc[i][j];
                }
            }
        }
    }
}
