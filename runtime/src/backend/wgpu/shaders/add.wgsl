// Residual add with a branch scale: x[i] += s * y[i] (s = 1 for llama;
// MiniCPM's residual scale otherwise). Bindings: 0 params, 1 y, 2 x.

struct Params {
    n: u32,
    s: f32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 64u;
    if i < p.n {
        x[i] += p.s * y[i];
    }
}
