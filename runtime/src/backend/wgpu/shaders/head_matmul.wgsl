// Per-head products with a row-major weight in its file type (MLA's kv_b, read
// through dequant.wgsl: element e of the tensor is element e % 32 of unit
// e / 32), any sizes (qabs = W_kbᵀ·q_nope per head, and v = W_vb·olat per
// head; their widths need not be multiples of 32):
//   y[t*y_stride + h*y_head + o] = Σ_{i < n_in} W[w_off + h*w_head + o*w_o + i*w_i] · x[t*x_stride + h*x_head + i]
// summed in order i = 0, 1, … like the CPU loops. One thread per (o, h, t).
// A thread keeps the last unit it decoded: with w_i = 1 (v = W_vb·olat) it
// decodes each unit once; with w_i a row (W_kbᵀ) one unit per element.
// Bindings: 0 params, 1 x, 2 wa (the weight's GGUF bytes), 3 y.

struct Params {
    n_tok: u32,
    n_head: u32,
    n_out: u32,
    n_in: u32,
    x_stride: u32,
    x_head: u32,
    y_stride: u32,
    y_head: u32,
    w_off: u32,
    w_head: u32,
    w_o: u32,
    w_i: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wa: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let o = gid.x;
    let h = gid.y;
    let t = gid.z;
    if o >= p.n_out || h >= p.n_head || t >= p.n_tok {
        return;
    }
    let xb = t * p.x_stride + h * p.x_head;
    let wb = p.w_off + h * p.w_head + o * p.w_o;
    var acc = 0.0;
    var unit: array<f32, 32>;
    var have = 0xFFFFFFFFu;
    for (var i = 0u; i < p.n_in; i++) {
        let e = wb + i * p.w_i;
        if e / 32u != have {
            have = e / 32u;
            dequant_unit(have, &unit);
        }
        acc += unit[e % 32u] * x[xb + i];
    }
    y[t * p.y_stride + h * p.y_head + o] = acc;
}
