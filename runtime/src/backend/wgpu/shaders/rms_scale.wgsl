// The RMSNorm scale of one row, 1 / sqrt(mean(x[xb..xb+n]²) + eps), summed by
// the workgroup's 64 invocations and reduced in workgroup memory. Appended to
// rms_norm.wgsl and rms_norm_q.wgsl (one reduction, so the plain and the fused
// norm sum in the same order and agree bit for bit); they provide `p.n`,
// `p.eps` and `x`. Every invocation of the workgroup must call it (barriers).

var<workgroup> red: array<f32, 64>;

fn rms_scale(xb: u32, lid: u32) -> f32 {
    var s = 0.0;
    for (var i = lid; i < p.n; i += 64u) {
        let v = x[xb + i];
        s += v * v;
    }
    red[lid] = s;
    workgroupBarrier();
    for (var k = 32u; k > 0u; k >>= 1u) {
        if lid < k {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    return 1.0 / sqrt(red[0] / f32(p.n) + p.eps);
}
