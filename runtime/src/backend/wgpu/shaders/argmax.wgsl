// Greedy sampling on the GPU: out[0] = the index of the largest of v[off..off+n]
// (ties to the lowest index, like sampling.rs). One workgroup of 256.
// Bindings: 0 params, 1 v (f32), 2 out (u32).

struct Params {
    n: u32,
    off: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

var<workgroup> bv: array<f32, 256>;
var<workgroup> bi: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    var best = -3.4e38;
    var idx = 0xFFFFFFFFu;
    for (var i = lid; i < p.n; i += 256u) {
        let x = v[p.off + i];
        if x > best || idx == 0xFFFFFFFFu {
            best = x;
            idx = i;
        }
    }
    bv[lid] = best;
    bi[lid] = idx;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if lid < k {
            let ov = bv[lid + k];
            let oi = bi[lid + k];
            if oi != 0xFFFFFFFFu && (bi[lid] == 0xFFFFFFFFu || ov > bv[lid] || (ov == bv[lid] && oi < bi[lid])) {
                bv[lid] = ov;
                bi[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if lid == 0u {
        out[0] = bi[0];
    }
}
