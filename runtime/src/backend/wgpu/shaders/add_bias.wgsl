// Broadcast bias add over rows: x[t * stride + off + i] += b[i] for i < width
// (qwen2's q/k/v biases). Bindings: 0 params, 1 b, 2 x.

struct Params {
    n_tok: u32,
    width: u32,
    stride: u32,
    off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let t = gid.y;
    if i >= p.width || t >= p.n_tok {
        return;
    }
    x[t * p.stride + p.off + i] += b[i];
}
