// Embedding lookup: out[t][k] = W[ids[t]][k] for the tokens whose id falls in
// this weight part's rows [r0, r0 + n_rows), k < out_w (rows padded to a
// multiple of 32 at upload give back only their out_w real values; out rows
// are out_w wide). One thread per (unit, token).
// Bindings: 0 params, 1 ids (u32), 2 wa (the weight's GGUF bytes, dequant.wgsl), 3 out (f32).

struct Params {
    n_in: u32,
    r0: u32,
    n_rows: u32,
    n_tok: u32,
    out_w: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> wa: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let upr = p.n_in / 32u;
    let u = gid.x;
    let t = gid.y;
    if u >= upr || t >= p.n_tok {
        return;
    }
    let id = ids[t];
    if id < p.r0 || id >= p.r0 + p.n_rows {
        return;
    }
    var w: array<f32, 32>;
    dequant_unit((id - p.r0) * upr + u, &w);
    for (var i = 0u; i < 32u; i++) {
        let k = u * 32u + i;
        if k < p.out_w {
            out[t * p.out_w + k] = w[i];
        }
    }
}
