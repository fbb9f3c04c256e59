// In place: every piece of `n` consecutive values of x[off ..] (n_pieces of them) becomes
// H·piece, H the orthonormal Walsh–Hadamard matrix: llama.cpp's rotation of quantized KV
// caches (kv_rotation.rs). Each value is multiplied by s = 1/√n first, then the butterflies
// (u + v, u − v) run at strides 1, 2, 4, …: the CPU's f32 operations in its order, so the
// values are bit for bit the CPU's.
// One workgroup per piece (n a power of two ≤ 256). Bindings: 0 params, 1 x.

struct Params {
    n: u32,
    n_pieces: u32,
    off: u32,
    s: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

const WG: u32 = 128u;
var<workgroup> buf: array<f32, 256>;

@compute @workgroup_size(128)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    // Workgroup-uniform: the whole group returns or none of it does.
    let piece = wg.x + wg.y * 65535u;
    if piece >= p.n_pieces {
        return;
    }
    let base = p.off + piece * p.n;
    let t = lid.x;
    for (var i = t; i < p.n; i += WG) {
        buf[i] = x[base + i] * p.s;
    }
    workgroupBarrier();
    // n/2 independent butterflies per stage: butterfly b pairs i and i + len.
    for (var len = 1u; len < p.n; len *= 2u) {
        for (var b = t; b < p.n / 2u; b += WG) {
            let i = (b / len) * 2u * len + b % len;
            let u = buf[i];
            let v = buf[i + len];
            buf[i] = u + v;
            buf[i + len] = u - v;
        }
        workgroupBarrier();
    }
    for (var i = t; i < p.n; i += WG) {
        x[base + i] = buf[i];
    }
}
