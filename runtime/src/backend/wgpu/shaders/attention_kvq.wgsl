// Causal attention with GQA, an optional sliding window and optional score
// soft-capping over a quantized KV cache (K and/or V stored as ggml's q8_0 or
// q4_0 blocks, the other side possibly f16), computed as
// backend/cpu/attention_kvq.rs does (llama.cpp's CPU flash attention):
// - K quantized: the query head is quantized to q8_0 (ggml's reference
//   quantizer, as kv_store_q.wgsl) and each score is ggml's integer block dot
//   (vec_dot_q8_0_q8_0: f32(Σ qk·qq) · (d_k·d_q); vec_dot_q4_0_q8_0:
//   f32(Σ (nibble − 8)·qq) · d_k · d_q), summed over the blocks in f32.
//   K f16: the query is rounded to f16 and the score sums f32 products.
// - V rows are dequantized (f16 values exact) and accumulated in f32,
//   weighted by exp(s − max); the sum is scaled by 1 / Σ exp(s − max) at the
//   end (no f16 rounding of the probabilities: the f16-only cache keeps
//   attention.wgsl, llama.cpp's non-flash path).
// One workgroup per (head, token), as attention.wgsl: pass 1 finds the max
// and the sum of exp over the keys (an online max/sum per thread, combined in
// workgroup memory); pass 2 takes tiles of 64 keys, each thread one key's
// weight, then each thread accumulates its output dims.
// Cache rows are byte arrays (k_row / v_row values each, whole blocks of
// their type; a head is head_dim / 32 blocks at hk · head bytes), read as
// u32 words at any byte offset.
// The host prepends `const KT: u32` and `const VT: u32` (0 = f16, 1 = q8_0,
// 2 = q4_0; never both 0).
// Bindings: 0 params, 1 q (f32), 2 k cache (u32), 3 v cache (u32), 4 out.

struct Params {
    n_head: u32,
    n_head_kv: u32,
    head_dim_k: u32, // ≤ MAX_HDK; a multiple of 32 when K is quantized, else even
    head_dim_v: u32, // ≤ 64 * ACC; a multiple of 32 when V is quantized, else even
    pos0: u32,
    kq_scale: f32,
    window: u32, // 0 = none; else key j is masked for query p when p - j >= window
    softcap: f32, // 0 = none; else score = softcap * tanh(score / softcap)
    q_stride: u32, // f32 per query row
    out_stride: u32, // f32 per output row
    k_row: u32, // values per cache row of K
    v_row: u32, // values per cache row of V
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<u32>;
@group(0) @binding(3) var<storage, read> vc: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const MAX_HDK: u32 = 576u;
const ACC: u32 = 8u;
// The query: f16-rounded values (K f16) or q8_0 values and block scales (K quantized).
var<workgroup> qs: array<f32, 576>;
var<workgroup> qi: array<i32, 576>;
var<workgroup> qd: array<f32, 18>;
var<workgroup> red_m: array<f32, 64>;
var<workgroup> red_l: array<f32, 64>;
var<workgroup> probs: array<f32, 64>;

fn f16r(v: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
}

// C's roundf: half away from zero (as kv_store_q.wgsl).
fn round_away(v: f32) -> f32 {
    let a = abs(v);
    let t = trunc(a);
    let r = select(t, t + 1.0, a - t >= 0.5);
    return select(r, -r, v < 0.0);
}

// Bytes per stored block (f16: one value) and values per block.
fn block_bytes(ty: u32) -> u32 {
    return select(select(18u, 34u, ty == 1u), 2u, ty == 0u);
}

fn block_len(ty: u32) -> u32 {
    return select(32u, 1u, ty == 0u);
}

// Bytes of `n` values stored as `ty`.
fn bytes_of(ty: u32, n: u32) -> u32 {
    return n / block_len(ty) * block_bytes(ty);
}

// The 4 bytes of the K (V) cache from byte offset o on, little-endian.
fn k_u32(o: u32) -> u32 {
    let i = o >> 2u;
    let s = (o & 3u) * 8u;
    if s == 0u {
        return kc[i];
    }
    return (kc[i] >> s) | (kc[i + 1u] << (32u - s));
}

fn v_u32(o: u32) -> u32 {
    let i = o >> 2u;
    let s = (o & 3u) * 8u;
    if s == 0u {
        return vc[i];
    }
    return (vc[i] >> s) | (vc[i + 1u] << (32u - s));
}

// The f16 at (even) byte offset o as f32.
fn k_f16(o: u32) -> f32 {
    return unpack2x16float((kc[o >> 2u] >> ((o & 2u) * 8u)) & 0xffffu).x;
}

fn v_f16(o: u32) -> f32 {
    return unpack2x16float((vc[o >> 2u] >> ((o & 2u) * 8u)) & 0xffffu).x;
}

// Signed byte k (0..3) of a word.
fn sbyte(w: u32, k: u32) -> i32 {
    return bitcast<i32>(w << (24u - 8u * k)) >> 24u;
}

fn score(j: u32, hk: u32) -> f32 {
    let base = j * bytes_of(KT, p.k_row) + hk * bytes_of(KT, p.head_dim_k);
    var s = 0.0;
    if KT == 0u {
        for (var i = 0u; i < p.head_dim_k; i += 2u) {
            let k = unpack2x16float(k_u32(base + 2u * i));
            s += qs[i] * k.x + qs[i + 1u] * k.y;
        }
    } else {
        let nb = p.head_dim_k / 32u;
        for (var b = 0u; b < nb; b++) {
            let o = base + b * block_bytes(KT);
            let dk = k_f16(o);
            var sumi = 0;
            if KT == 1u {
                for (var g = 0u; g < 8u; g++) {
                    let w = k_u32(o + 2u + 4u * g);
                    let e = 32u * b + 4u * g;
                    for (var k = 0u; k < 4u; k++) {
                        sumi += sbyte(w, k) * qi[e + k];
                    }
                }
                s += f32(sumi) * (dk * qd[b]);
            } else {
                for (var g = 0u; g < 4u; g++) {
                    let w = k_u32(o + 2u + 4u * g);
                    let e = 32u * b + 4u * g;
                    for (var k = 0u; k < 4u; k++) {
                        let x = (w >> (8u * k)) & 0xffu;
                        sumi += (i32(x & 15u) - 8) * qi[e + k] + (i32(x >> 4u) - 8) * qi[e + k + 16u];
                    }
                }
                s += f32(sumi) * dk * qd[b];
            }
        }
    }
    s *= p.kq_scale;
    if p.softcap > 0.0 {
        s = p.softcap * tanh(clamp(s / p.softcap, -15.0, 15.0));
    }
    return s;
}

// V value d of head hk at key j, dequantized.
fn v_at(j: u32, hk: u32, d: u32) -> f32 {
    let base = j * bytes_of(VT, p.v_row) + hk * bytes_of(VT, p.head_dim_v);
    if VT == 0u {
        return v_f16(base + 2u * d);
    }
    let o = base + (d / 32u) * block_bytes(VT);
    let dv = v_f16(o);
    let i = d % 32u;
    if VT == 1u {
        let b = o + 2u + i;
        return f32(sbyte(vc[b >> 2u], b & 3u)) * dv;
    }
    let b = o + 2u + (i & 15u);
    let x = (vc[b >> 2u] >> (8u * (b & 3u))) & 0xffu;
    return f32(i32(select(x & 15u, x >> 4u, i >= 16u)) - 8) * dv;
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
    let q0 = t * p.q_stride + h * p.head_dim_k;
    if KT == 0u {
        for (var i = lid; i < p.head_dim_k; i += 64u) {
            qs[i] = f16r(q[q0 + i]);
        }
    } else {
        // One thread per q8_0 block of the query (quant/q8_0.rs quantize_row).
        for (var b = lid; b < p.head_dim_k / 32u; b += 64u) {
            var amax = 0.0;
            for (var i = 0u; i < 32u; i++) {
                amax = max(amax, abs(q[q0 + 32u * b + i]));
            }
            let d = amax / 127.0;
            var id = 0.0;
            if d != 0.0 {
                id = 1.0 / d;
            }
            qd[b] = f16r(d);
            for (var i = 0u; i < 32u; i++) {
                qi[32u * b + i] = i32(clamp(round_away(q[q0 + 32u * b + i] * id), -128.0, 127.0));
            }
        }
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
    let sum = red_l[0];

    // Pass 2: acc = Σ_j exp(s_j − max) · v_j; out = acc / Σ.
    var acc: array<f32, 8>; // dims lid, lid + 64, ... (head_dim_v <= 64 * ACC)
    for (var base = first; base <= pos; base += 64u) {
        let j = base + lid;
        var wj = 0.0;
        if j <= pos {
            wj = exp(score(j, hk) - gmax);
        }
        probs[lid] = wj;
        workgroupBarrier();
        let n = min(64u, pos + 1u - base);
        for (var c = 0u; c < ACC; c++) {
            let d = lid + 64u * c;
            if d < p.head_dim_v {
                var a = 0.0;
                for (var k = 0u; k < n; k++) {
                    a += probs[k] * v_at(base + k, hk, d);
                }
                acc[c] += a;
            }
        }
        workgroupBarrier();
    }
    var inv = 0.0;
    if sum > 0.0 {
        inv = 1.0 / sum;
    }
    for (var c = 0u; c < ACC; c++) {
        let d = lid + 64u * c;
        if d < p.head_dim_v {
            out[t * p.out_stride + h * p.head_dim_v + d] = acc[c] * inv;
        }
    }
}
