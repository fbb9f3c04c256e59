// Writes n_tok rows of K or V (f32, row width `width`, a multiple of 32)
// into a q8_0 or q4_0 cache at position pos0, quantized with ggml's reference
// quantizers as kv_cache.rs stores them (quant/q8_0.rs, quant/q4_0.rs):
// q8_0: d = amax/127, q = roundf(x/d) (half away from zero; WGSL's round()
// is half to even, so it is not used); q4_0: d = max/-8 with max the value of
// largest magnitude (sign kept), q = min(15, trunc(x/d + 8.5)); d stored as f16.
// The cache is a byte array of BB-byte blocks (34 or 18 bytes: not 4-byte
// aligned), read and written as u32 words. Two consecutive blocks of the
// whole buffer (68 or 36 bytes) are whole words, so each invocation owns one
// such pair: it quantizes the blocks of the pair that are being written and
// keeps the bytes of the other (a neighbour row outside pos0..pos0 + n_tok).
// The host sizes the buffer to a whole number of pairs.
// The host prepends `const QT: u32` (1 = q8_0, 2 = q4_0), `const BB: u32`
// (block bytes) and `const PW: u32` (words per pair of blocks).
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

var<private> w: array<u32, PW>;

// Byte `off` of the pair's words = the low 8 bits of `b`.
fn put(off: u32, b: u32) {
    let i = off >> 2u;
    let s = (off & 3u) * 8u;
    w[i] = (w[i] & ~(0xffu << s)) | ((b & 0xffu) << s);
}

// C's roundf: half away from zero. v - trunc(v) is exact, so the half test is.
fn round_away(v: f32) -> f32 {
    let a = abs(v);
    let t = trunc(a);
    let r = select(t, t + 1.0, a - t >= 0.5);
    return select(r, -r, v < 0.0);
}

// Quantizes the 32 values at src[s..] into the block at byte `off` of the pair.
fn quantize(s: u32, off: u32) {
    var d = 0.0;
    if QT == 1u {
        var amax = 0.0;
        for (var i = 0u; i < 32u; i++) {
            amax = max(amax, abs(src[s + i]));
        }
        d = amax / 127.0;
    } else {
        var amax = 0.0;
        var mx = 0.0;
        for (var i = 0u; i < 32u; i++) {
            let v = src[s + i];
            if abs(v) > amax {
                amax = abs(v);
                mx = v;
            }
        }
        d = mx / -8.0;
    }
    var id = 0.0;
    if d != 0.0 {
        id = 1.0 / d;
    }
    let dh = pack2x16float(vec2<f32>(d, 0.0));
    put(off, dh);
    put(off + 1u, dh >> 8u);
    if QT == 1u {
        for (var i = 0u; i < 32u; i++) {
            let q = clamp(round_away(src[s + i] * id), -128.0, 127.0);
            put(off + 2u + i, u32(i32(q)));
        }
    } else {
        for (var j = 0u; j < 16u; j++) {
            // max() keeps the product rounded before the add (no fused multiply-add):
            // the products are within ±8 (+ulps), so it changes no value.
            let x0 = min(15, i32(max(src[s + j] * id, -16.0) + 8.5));
            let x1 = min(15, i32(max(src[s + j + 16u] * id, -16.0) + 8.5));
            put(off + 2u + j, u32(x0) | (u32(x1) << 4u));
        }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let bpr = p.width / 32u;
    // Blocks g0..g1 of the buffer are written; pairs from g0 / 2 on.
    let g0 = p.pos0 * bpr;
    let g1 = (p.pos0 + p.n_tok) * bpr;
    let pair = g0 / 2u + gid.x + gid.y * 65535u * 64u;
    let b0 = 2u * pair;
    if b0 >= g1 {
        return;
    }
    let w0 = pair * PW;
    let whole = b0 >= g0 && b0 + 1u < g1;
    for (var i = 0u; i < PW; i++) {
        if whole {
            w[i] = 0u;
        } else {
            w[i] = cache[w0 + i];
        }
    }
    for (var k = 0u; k < 2u; k++) {
        let g = b0 + k;
        if g >= g0 && g < g1 {
            let t = g / bpr - p.pos0;
            quantize(t * p.width + (g % bpr) * 32u, k * BB);
        }
    }
    for (var i = 0u; i < PW; i++) {
        cache[w0 + i] = w[i];
    }
}
