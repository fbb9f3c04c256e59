// Fused tier: RMSNorm (rms_norm.wgsl, the same sums in the same order) whose
// rows are also written rounded for the next product (act_round.wgsl, mode as
// act_quant.wgsl) — the norm → act_quant pair every layer runs before its
// q/k/v and gate/up products, in one dispatch. `out` gets the normed rows as
// rms_norm.wgsl writes them; `xq` gets them rounded, as contiguous rows of n
// (what the products read). One workgroup per row; n is a multiple of the
// rounding block (32, or 256 for mode 1).
// Bindings: 0 params, 1 x, 2 w, 3 out, 4 xq. The row's scale: rms_scale.wgsl (appended).

struct Params {
    n: u32,
    eps: f32,
    x_off: u32,
    out_off: u32,
    x_stride: u32,
    out_stride: u32,
    n_rows: u32,
    mode: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> xq: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * 65535u;
    if r >= p.n_rows {
        return; // workgroup-uniform: the barriers below stay uniform
    }
    let xb = p.x_off + r * p.x_stride;
    let ob = p.out_off + r * p.out_stride;
    let scale = rms_scale(xb, lid);
    // One rounding block per invocation at a time (a block's amax needs all of it).
    let bs = act_block(p.mode);
    for (var b = lid; b < p.n / bs; b += 64u) {
        var v: array<f32, 256>;
        for (var i = 0u; i < bs; i++) {
            let e = b * bs + i;
            let y = x[xb + e] * scale * w[e];
            out[ob + e] = y;
            v[i] = y;
        }
        act_round(p.mode, &v);
        for (var i = 0u; i < bs; i++) {
            xq[r * p.n + b * bs + i] = v[i];
        }
    }
}
