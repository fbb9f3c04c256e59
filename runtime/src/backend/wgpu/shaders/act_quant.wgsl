// Rounds activations the way llama.cpp's CPU matrix product sees them, so the
// GPU matches llama.cpp's answers, not just exact math: out = dequant(quant(x))
// for the weight's vec_dot_type. mode 0: Q8_0/Q8_1 (blocks of 32, d = amax/127
// stored as f16, q = roundf(x/d)); mode 1: Q8_K (blocks of 256, iscale =
// -127/max, q = min(127, round_even(iscale*x)), d = 1/iscale in f32);
// mode 2: F16 (round each value to f16). One invocation per block (32 values for mode 2).
// Bindings: 0 params, 1 x (f32), 2 out (f32).

struct Params {
    n: u32,
    mode: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

fn f16r(v: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let blk = gid.x + gid.y * 65535u * 64u;
    var bs = 32u;
    if p.mode == 1u {
        bs = 256u;
    }
    let b0 = blk * bs;
    if b0 >= p.n {
        return;
    }
    if p.mode == 2u {
        for (var i = 0u; i < 32u; i++) {
            out[b0 + i] = f16r(x[b0 + i]);
        }
    } else if p.mode == 0u {
        var amax = 0.0;
        for (var i = 0u; i < 32u; i++) {
            amax = max(amax, abs(x[b0 + i]));
        }
        let d = amax / 127.0;
        var id = 0.0;
        if d != 0.0 {
            id = 1.0 / d;
        }
        let dh = f16r(d);
        for (var i = 0u; i < 32u; i++) {
            let v = x[b0 + i] * id;
            out[b0 + i] = sign(v) * floor(abs(v) + 0.5) * dh;
        }
    } else {
        var amax = 0.0;
        var mx = 0.0;
        for (var i = 0u; i < 256u; i++) {
            let v = x[b0 + i];
            if abs(v) > amax {
                amax = abs(v);
                mx = v;
            }
        }
        if amax == 0.0 {
            for (var i = 0u; i < 256u; i++) {
                out[b0 + i] = 0.0;
            }
            return;
        }
        let iscale = -127.0 / mx;
        let d = 1.0 / iscale;
        for (var i = 0u; i < 256u; i++) {
            out[b0 + i] = min(round(iscale * x[b0 + i]), 127.0) * d;
        }
    }
}
