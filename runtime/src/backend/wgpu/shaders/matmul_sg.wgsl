// Subgroup tier of matmul.wgsl (adapters with subgroup operations): each
// row's LANES partials are summed by XOR shuffles inside the subgroup — a
// thread's (row, lane) comes from its subgroup id and subgroup invocation id,
// so a row's lanes are consecutive subgroup invocations and shuffles with
// masks below min(subgroup size, LANES) never mix rows — leaving one partial per
// subgroup-sized segment; those (1 when the subgroup has ≥ 16 lanes, 2 with 8
// lanes …) meet in workgroup memory after a single barrier.

var<workgroup> red: array<f32, 512>; // [ROWS][TT][segments ≤ LANES]

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(subgroup_invocation_id) sg_inv: u32,
    @builtin(subgroup_size) sg_size: u32,
) {
    let flat = sg_id * sg_size + sg_inv; // a permutation of 0..64 for full subgroups
    let rl = flat / LANES;
    let lane = flat % LANES;
    let row = (wid.x + wid.y * 8192u) * ROWS + rl;
    let t0 = wid.z * TT;
    let nt = min(TT, p.n_tok - t0);
    var acc = partial(row, lane, t0, nt);
    let seg = min(sg_size, LANES);
    for (var m = seg / 2u; m > 0u; m >>= 1u) {
        for (var t = 0u; t < TT; t++) {
            acc[t] += subgroupShuffleXor(acc[t], m);
        }
    }
    let n_seg = LANES / seg;
    if lane % seg == 0u {
        for (var t = 0u; t < TT; t++) {
            red[(rl * TT + t) * LANES + lane / seg] = acc[t];
        }
    }
    workgroupBarrier();
    if GLU {
        // Rows 2i (gate_i) and 2i+1 (up_i) are rows rl, rl + 1 of this
        // workgroup (w_unit; ROWS is even): both meet here after the barrier.
        if rl % 2u == 0u && row < p.n_rows && lane < nt {
            var g = 0.0;
            var u = 0.0;
            for (var k = 0u; k < n_seg; k++) {
                g += red[(rl * TT + lane) * LANES + k];
                u += red[((rl + 1u) * TT + lane) * LANES + k];
            }
            store_glu(t0 + lane, row / 2u, g, u);
        }
    } else if row < p.n_rows && lane < nt {
        var s = 0.0;
        for (var k = 0u; k < n_seg; k++) {
            s += red[(rl * TT + lane) * LANES + k];
        }
        store(t0 + lane, row, s);
    }
}
