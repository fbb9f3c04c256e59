// Fused tier: gate = act(gate) · up (swiglu.wgsl, the same arithmetic) and the
// result rounded for the down product (act_round.wgsl) into xq, in one
// dispatch. One invocation per rounding block (32 values, or 256 for mode 1);
// n is a multiple of the block. `gate` gets the unrounded values, as swiglu.wgsl
// writes them. op 1 = GELU (tanh) instead of SiLU.
// Bindings: 0 params, 1 up, 2 gate, 3 xq.

struct Params {
    n: u32,
    op: u32,
    mode: u32,
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> gate: array<f32>;
@group(0) @binding(3) var<storage, read_write> xq: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let bs = act_block(p.mode);
    let b0 = (gid.x + gid.y * 65535u * 64u) * bs;
    if b0 >= p.n {
        return;
    }
    var v: array<f32, 256>;
    for (var i = 0u; i < bs; i++) {
        let g = gate[b0 + i];
        var a = g / (1.0 + exp(-g));
        if p.op == 1u {
            a = 0.5 * g * (1.0 + tanh(0.7978846 * g * (1.0 + 0.044715 * g * g)));
        }
        let y = a * up[b0 + i];
        gate[b0 + i] = y;
        v[i] = y;
    }
    act_round(p.mode, &v);
    for (var i = 0u; i < bs; i++) {
        xq[b0 + i] = v[i];
    }
}
