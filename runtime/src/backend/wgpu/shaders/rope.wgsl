// RoPE in place (ops/rope.rs) from a cos/sin table computed once per session
// on the CPU by RopeParams::cache (freq factors, linear and YaRN scaling
// included, and exact: GPU sin/cos are too coarse at large angles).
// table[pos * n_rot/2 + i] = (cos, sin). mode 0 = NORM (pairs 2i, 2i+1),
// 1 = NEOX (pairs i, i + n_rot/2). One thread per (pair, head, token).
// Heads start at `off` within each row (MLA ropes only the trailing q_pe /
// k_pe part). Bindings: 0 params, 1 table (vec2<f32>), 2 x (f32, rows of row_stride).

struct Params {
    n_tok: u32,
    n_head: u32,
    head_dim: u32,
    n_rot: u32,
    mode: u32,
    pos0: u32,
    row_stride: u32,
    off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = p.n_rot / 2u;
    let i = gid.x % half;
    let h = gid.x / half;
    let t = gid.y;
    if h >= p.n_head || t >= p.n_tok {
        return;
    }
    let cs = table[(p.pos0 + t) * half + i];
    let base = t * p.row_stride + p.off + h * p.head_dim;
    var a = base + 2u * i;
    var b = a + 1u;
    if p.mode == 1u {
        a = base + i;
        b = base + i + half;
    }
    let x0 = x[a];
    let x1 = x[b];
    x[a] = x0 * cs.x - x1 * cs.y;
    x[b] = x0 * cs.y + x1 * cs.x;
}
