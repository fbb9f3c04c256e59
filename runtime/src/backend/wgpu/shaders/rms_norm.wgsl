// RMSNorm (ops/rms_norm.rs): out[r][i] = x[r][i] / sqrt(mean(x[r]^2) + eps) * w[i].
// One workgroup per row; row r starts at x_off + r * x_stride (in f32) and is
// written at out_off + r * out_stride, so the same kernel norms whole rows,
// per-head slices (q/k norms) and the latent part of MLA rows.
// Bindings: 0 params, 1 x, 2 w, 3 out. The row's scale: rms_scale.wgsl (appended).

struct Params {
    n: u32,
    eps: f32,
    x_off: u32,
    out_off: u32,
    x_stride: u32,
    out_stride: u32,
    n_rows: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wid.x + wid.y * 65535u;
    if r >= p.n_rows {
        return; // workgroup-uniform: the barriers below stay uniform
    }
    let xb = p.x_off + r * p.x_stride;
    let ob = p.out_off + r * p.out_stride;
    let scale = rms_scale(xb, lid);
    for (var i = lid; i < p.n; i += 64u) {
        out[ob + i] = x[xb + i] * scale * w[i];
    }
}
