// Fused tier: RoPE of q and k (rope.wgsl's arithmetic, from the same table),
// the q scale some architectures apply after it (gemma3, phi3; 1.0 = none,
// exact), and the KV store of k and v into the f16 caches (kv_store.wgsl) —
// four to five dispatches of every layer in one. One workgroup per (head,
// token): workgroups 0..n_head rope (and scale) a q head in place;
// workgroups n_head..n_head + n_head_kv rope a k head in place, then, after a
// storage barrier (a cache word packs elements 2j and 2j+1, which NEOX rotates
// in different pairs), write that k head and the matching v head into the
// caches at position pos0 + t. Heads start at 0 in each row (no offset).
// Bindings: 0 params, 1 table (vec2<f32>), 2 v, 3 q, 4 k, 5 k cache, 6 v cache.

struct Params {
    n_tok: u32,
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    n_rot: u32,
    mode: u32,
    pos0: u32,
    q_stride: u32,
    k_stride: u32,
    v_stride: u32,
    head_dim_v: u32,
    q_scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> q: array<f32>;
@group(0) @binding(4) var<storage, read_write> k: array<f32>;
@group(0) @binding(5) var<storage, read_write> kc: array<u32>;
@group(0) @binding(6) var<storage, read_write> vc: array<u32>;

// Element indices (a, b) of rotation pair i of a head starting at `base`.
fn pair(base: u32, i: u32) -> vec2<u32> {
    if p.mode == 1u {
        return vec2<u32>(base + i, base + i + p.n_rot / 2u);
    }
    return vec2<u32>(base + 2u * i, base + 2u * i + 1u);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let half = p.n_rot / 2u;
    let tb = (p.pos0 + t) * half;
    if h < p.n_head {
        let base = t * p.q_stride + h * p.head_dim;
        for (var i = lid; i < half; i += 64u) {
            let cs = table[tb + i];
            let ab = pair(base, i);
            let x0 = q[ab.x];
            let x1 = q[ab.y];
            q[ab.x] = (x0 * cs.x - x1 * cs.y) * p.q_scale;
            q[ab.y] = (x0 * cs.y + x1 * cs.x) * p.q_scale;
        }
        // Dimensions past n_rot are not rotated, only scaled.
        for (var e = p.n_rot + lid; e < p.head_dim; e += 64u) {
            q[base + e] = q[base + e] * p.q_scale;
        }
    } else {
        let base = t * p.k_stride + (h - p.n_head) * p.head_dim;
        for (var i = lid; i < half; i += 64u) {
            let cs = table[tb + i];
            let ab = pair(base, i);
            let x0 = k[ab.x];
            let x1 = k[ab.y];
            k[ab.x] = x0 * cs.x - x1 * cs.y;
            k[ab.y] = x0 * cs.y + x1 * cs.x;
        }
    }
    // The whole workgroup reaches this (h is workgroup-uniform).
    storageBarrier();
    if h >= p.n_head {
        let kh = h - p.n_head;
        let kb = t * p.k_stride + kh * p.head_dim;
        let krow = (p.pos0 + t) * (p.k_stride / 2u) + kh * (p.head_dim / 2u);
        for (var j = lid; j < p.head_dim / 2u; j += 64u) {
            kc[krow + j] = pack2x16float(vec2<f32>(k[kb + 2u * j], k[kb + 2u * j + 1u]));
        }
        let vb = t * p.v_stride + kh * p.head_dim_v;
        let vrow = (p.pos0 + t) * (p.v_stride / 2u) + kh * (p.head_dim_v / 2u);
        for (var j = lid; j < p.head_dim_v / 2u; j += 64u) {
            vc[vrow + j] = pack2x16float(vec2<f32>(v[vb + 2u * j], v[vb + 2u * j + 1u]));
        }
    }
}
