// gate[i] = silu(gate[i]) * up[i] (ops/activation.rs swiglu); op 1 = GELU (tanh) instead of SiLU.
// Bindings: 0 params, 1 up, 2 gate.

struct Params {
    n: u32,
    op: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> gate: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 64u;
    if i >= p.n {
        return;
    }
    let g = gate[i];
    var a = g / (1.0 + exp(-g));
    if p.op == 1u {
        a = 0.5 * g * (1.0 + tanh(0.7978846 * g * (1.0 + 0.044715 * g * g)));
    }
    gate[i] = a * up[i];
}
