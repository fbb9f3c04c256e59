// act_quant.wgsl's rounding as functions over one block held in a
// function-local array, appended to the fused kernels that round what they
// produce for the next product (rms_norm_q, glu_q, the fused products). The arithmetic is
// act_quant.wgsl's, step for step, so a fused kernel's rounded output is
// bit-exact with the unfused kernel followed by act_quant (the parity tests
// in runtime/tests/wgpu_kernels.rs compare bits).

fn f16r(v: f32) -> f32 {
    return unpack2x16float(pack2x16float(vec2<f32>(v, 0.0))).x;
}

// Elements per block of `mode`: 256 for Q8_K, 32 for Q8_0/Q8_1 and F16.
fn act_block(mode: u32) -> u32 {
    if mode == 1u {
        return 256u;
    }
    return 32u;
}

// b[0..32] = dequant(quant(b[..])) in place for the 32-value modes (0:
// Q8_0/Q8_1, 2: F16); also the rounding prologue of the fused products
// (matmul_fuse in shaders.rs), which round each 32-value unit of x as they read it.
fn act_round32(mode: u32, b: ptr<function, array<f32, 32>>) {
    if mode == 2u {
        for (var i = 0u; i < 32u; i++) {
            (*b)[i] = f16r((*b)[i]);
        }
    } else {
        var amax = 0.0;
        for (var i = 0u; i < 32u; i++) {
            amax = max(amax, abs((*b)[i]));
        }
        let d = amax / 127.0;
        var id = 0.0;
        if d != 0.0 {
            id = 1.0 / d;
        }
        let dh = f16r(d);
        for (var i = 0u; i < 32u; i++) {
            let v = (*b)[i] * id;
            (*b)[i] = sign(v) * floor(abs(v) + 0.5) * dh;
        }
    }
}

// b[0..act_block(mode)] = dequant(quant(b[..])) in place (modes as act_quant.wgsl).
fn act_round(mode: u32, b: ptr<function, array<f32, 256>>) {
    if mode != 1u {
        var s: array<f32, 32>;
        for (var i = 0u; i < 32u; i++) {
            s[i] = (*b)[i];
        }
        act_round32(mode, &s);
        for (var i = 0u; i < 32u; i++) {
            (*b)[i] = s[i];
        }
    } else {
        var amax = 0.0;
        var mx = 0.0;
        for (var i = 0u; i < 256u; i++) {
            let v = (*b)[i];
            if abs(v) > amax {
                amax = abs(v);
                mx = v;
            }
        }
        if amax == 0.0 {
            for (var i = 0u; i < 256u; i++) {
                (*b)[i] = 0.0;
            }
            return;
        }
        let iscale = -127.0 / mx;
        let d = 1.0 / iscale;
        for (var i = 0u; i < 256u; i++) {
            (*b)[i] = min(round(iscale * (*b)[i]), 127.0) * d;
        }
    }
}
