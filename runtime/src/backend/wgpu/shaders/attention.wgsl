// Causal attention with GQA, an optional sliding window and optional score
// soft-capping over the f16 KV cache, rounding like backend/cpu/attention.rs
// (llama.cpp without flash attention): q rounded to f16, probabilities
// rounded to f16 before weighting V. K and V heads may differ in width, and
// cache rows have their own strides, so MLA's latent rows work too (V = the
// first head_dim_v values of the K row: same buffer, v_row = k_row).
// One workgroup per (head, token). Pass 1: scores with an online max/sum per
// thread, combined in workgroup memory. Pass 2: tiles of 64 keys, each thread
// one key's probability, then each thread accumulates its output dims.
// Bindings: 0 params, 1 q (f32), 2 k cache, 3 v cache (u32 = 2 x f16), 4 out.
// The host prepends the cache bindings (2, 3) and their readers, per tier
// (shaders.rs, `AttnCache`): `k_pair(i)`, f16 values 2i and 2i + 1 of the K
// cache as f32, and `pv(pj, i, odd)`, probability pj times V value 2i (+1 if
// odd). Baseline: u32 words through unpack2x16float. f16 tier: vec2<f16>
// reads. Both take products of the f16 values in f32 (exact) and sum in f32,
// as llama.cpp's CPU does: f16 products moved SmolLM2's last logits by 0.025
// more (mean centred |Δ| 0.151 > the 0.15 criterion), and q·k products of
// values in the hundreds (Qwen2's K biases) would overflow f16.

struct Params {
    n_head: u32,
    n_head_kv: u32,
    head_dim_k: u32, // ≤ MAX_HDK, even
    head_dim_v: u32, // ≤ 64 * ACC, even
    pos0: u32,
    kq_scale: f32,
    window: u32, // 0 = none; else key j is masked for query p when p - j >= window
    softcap: f32, // 0 = none; else score = softcap * tanh(score / softcap)
    q_stride: u32, // f32 per query row
    out_stride: u32, // f32 per output row
    k_row: u32, // f16 per cache row of K (even)
    v_row: u32, // f16 per cache row of V (even)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const MAX_HDK: u32 = 576u;
const ACC: u32 = 8u;
var<workgroup> qs: array<f32, 576>;
var<workgroup> red_m: array<f32, 64>;
var<workgroup> red_l: array<f32, 64>;
var<workgroup> probs: array<f32, 64>;

fn f16r(v: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
}

fn score(j: u32, hk: u32) -> f32 {
    let hd2 = p.head_dim_k / 2u;
    let base = j * (p.k_row / 2u) + hk * hd2;
    var s = 0.0;
    for (var i = 0u; i < hd2; i++) {
        let k = k_pair(base + i);
        s += qs[2u * i] * k.x + qs[2u * i + 1u] * k.y;
    }
    s *= p.kq_scale;
    if p.softcap > 0.0 {
        s = p.softcap * tanh(clamp(s / p.softcap, -15.0, 15.0));
    }
    return s;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let hk = h / (p.n_head / p.n_head_kv);
    let pos = p.pos0 + t;
    var first = 0u;
    if p.window > 0u && pos + 1u > p.window {
        first = pos + 1u - p.window;
    }
    for (var i = lid; i < p.head_dim_k; i += 64u) {
        qs[i] = f16r(q[t * p.q_stride + h * p.head_dim_k + i]);
    }
    workgroupBarrier();

    // Pass 1: max and sum of exp over this thread's keys.
    var m = -3.0e38;
    var l = 0.0;
    for (var j = first + lid; j <= pos; j += 64u) {
        let s = score(j, hk);
        if s > m {
            l = l * exp(m - s) + 1.0;
            m = s;
        } else {
            l += exp(s - m);
        }
    }
    red_m[lid] = m;
    red_l[lid] = l;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if lid < k {
            let m2 = red_m[lid + k];
            let l2 = red_l[lid + k];
            let m1 = red_m[lid];
            let l1 = red_l[lid];
            let mm = max(m1, m2);
            red_m[lid] = mm;
            red_l[lid] = l1 * exp(m1 - mm) + l2 * exp(m2 - mm);
        }
        workgroupBarrier();
    }
    let gmax = red_m[0];
    let inv = 1.0 / red_l[0];

    // Pass 2: out = sum_j f16(p_j) * v_j.
    var acc: array<f32, 8>; // dims lid, lid + 64, ... (head_dim_v <= 64 * ACC)
    let vbase = hk * (p.head_dim_v / 2u);
    for (var base = first; base <= pos; base += 64u) {
        let j = base + lid;
        var pj = 0.0;
        if j <= pos {
            pj = f16r(exp(score(j, hk) - gmax) * inv);
        }
        probs[lid] = pj;
        workgroupBarrier();
        let n = min(64u, pos + 1u - base);
        for (var c = 0u; c < ACC; c++) {
            let d = lid + 64u * c;
            if d < p.head_dim_v {
                var a = 0.0;
                for (var k = 0u; k < n; k++) {
                    a += pv(probs[k], (base + k) * (p.v_row / 2u) + vbase + d / 2u, (d & 1u) == 1u);
                }
                acc[c] += a;
            }
        }
        workgroupBarrier();
    }
    for (var c = 0u; c < ACC; c++) {
        let d = lid + 64u * c;
        if d < p.head_dim_v {
            out[t * p.out_stride + h * p.head_dim_v + d] = acc[c];
        }
    }
}
