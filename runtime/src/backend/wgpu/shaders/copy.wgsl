// Strided row copy: out[dst_off + r * dst_stride + i] = x[src_off + r * src_stride + i]
// for i < width, r < n_rows. MLA moves the rope parts with it: k_pe from
// kv_a_mqa's output into the cache row (the latent's norm is out of place),
// and q_pe after each head's absorbed q. One thread per value.
// Bindings: 0 params, 1 x, 2 out (distinct buffers).

struct Params {
    width: u32,
    n_rows: u32,
    src_off: u32,
    src_stride: u32,
    dst_off: u32,
    dst_stride: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let r = gid.y + gid.z * 65535u;
    if i >= p.width || r >= p.n_rows {
        return;
    }
    out[p.dst_off + r * p.dst_stride + i] = x[p.src_off + r * p.src_stride + i];
}
