// Writes n_tok rows of K or V (f32, row width `width`) into the f16 cache at
// position pos0, in place (cache rows are width/2 u32, two f16 each).
// Bindings: 0 params, 1 src (f32), 2 cache (u32).

struct Params {
    n_tok: u32,
    width: u32,
    pos0: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> cache: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let hw = p.width / 2u;
    let i = gid.x;
    let t = gid.y;
    if i >= hw || t >= p.n_tok {
        return;
    }
    let s = t * p.width + 2u * i;
    cache[(p.pos0 + t) * hw + i] = pack2x16float(vec2<f32>(src[s], src[s + 1u]));
}
