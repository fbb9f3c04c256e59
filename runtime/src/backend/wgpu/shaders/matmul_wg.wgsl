// Baseline tier of matmul.wgsl: the LANES partials of each row are summed by
// a tree in workgroup memory (log2(LANES) barriers).

var<workgroup> red: array<f32, 512>; // [ROWS][TT][LANES]

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let rl = lid / LANES;
    let lane = lid % LANES;
    let row = (wid.x + wid.y * 8192u) * ROWS + rl;
    let t0 = wid.z * TT;
    let nt = min(TT, p.n_tok - t0);
    let acc = partial(row, lane, t0, nt);
    for (var t = 0u; t < TT; t++) {
        red[(rl * TT + t) * LANES + lane] = acc[t];
    }
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        if lane < s {
            for (var t = 0u; t < TT; t++) {
                let i = (rl * TT + t) * LANES + lane;
                red[i] += red[i + s];
            }
        }
        workgroupBarrier();
    }
    if GLU {
        // Rows 2i (gate_i) and 2i+1 (up_i) are rows rl, rl + 1 of this
        // workgroup (w_unit; ROWS is even), both summed after the last barrier.
        if rl % 2u == 0u && row < p.n_rows && lane < nt {
            store_glu(t0 + lane, row / 2u, red[(rl * TT + lane) * LANES], red[((rl + 1u) * TT + lane) * LANES]);
        }
    } else if row < p.n_rows && lane < nt {
        store(t0 + lane, row, red[(rl * TT + lane) * LANES]);
    }
}
