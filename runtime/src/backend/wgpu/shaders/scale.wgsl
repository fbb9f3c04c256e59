// In-place elementwise map over x[off .. off + n]:
// op 0: x *= s (embedding scale, logit scale, q pre-scale);
// op 1: x = s * tanh(x / s) (final logit soft-capping, cap = s).
// Bindings: 0 params, 1 x.

struct Params {
    n: u32,
    off: u32,
    op: u32,
    s: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 64u;
    if i >= p.n {
        return;
    }
    let v = x[p.off + i];
    if p.op == 1u {
        // |v/s| ≤ 15 keeps tanh's exp-based forms finite; tanh(15) is 1 in f32.
        x[p.off + i] = p.s * tanh(clamp(v / p.s, -15.0, 15.0));
    } else {
        x[p.off + i] = v * p.s;
    }
}
