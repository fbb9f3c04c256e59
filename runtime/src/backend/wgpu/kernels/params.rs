//! Typed kernel parameters: one `#[repr(C)]` [`Pod`] struct per WGSL
//! `Params` uniform block, fields named and typed as in the shader, in the
//! same order. [`super::Recorder::dispatch`] copies a struct's bytes into its
//! parameter slot; each struct's [`ParamsLayout`] (size, field names, offsets
//! and scalar types, from `offset_of!`) is what the naga test in `shaders.rs`
//! compares with the WGSL struct of every shader variant that uses it
//! ([`crate::backend::wgpu::shaders::ShaderKey::params`]).
//!
//! Padding members (`_pad`, `_p0`, …) exist in the WGSL structs and are kept
//! here so the two layouts match member for member; they are written as 0.

use bytemuck::{Pod, Zeroable};

use super::SLOT;

/// A WGSL scalar type a parameter field may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamScalar {
    U32,
    I32,
    F32,
}

/// Rust types allowed as parameter fields, with their WGSL scalar.
pub trait ParamField: Pod {
    const SCALAR: ParamScalar;
}

impl ParamField for u32 {
    const SCALAR: ParamScalar = ParamScalar::U32;
}
impl ParamField for i32 {
    const SCALAR: ParamScalar = ParamScalar::I32;
}
impl ParamField for f32 {
    const SCALAR: ParamScalar = ParamScalar::F32;
}

/// One field of a parameter struct: name, byte offset, scalar type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamsFieldLayout {
    pub name: &'static str,
    pub offset: usize,
    pub scalar: ParamScalar,
}

/// The memory layout of a parameter struct as Rust lays it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamsLayout {
    /// The Rust struct's name.
    pub name: &'static str,
    /// `size_of` the struct (must equal the WGSL struct's span).
    pub size: usize,
    pub fields: &'static [ParamsFieldLayout],
}

/// A kernel's uniform block: plain bytes, at most one [`SLOT`], with a layout
/// the naga test checks against the WGSL struct.
pub trait KernelParams: Pod {
    const LAYOUT: ParamsLayout;
}

/// Declares a `#[repr(C)]` Pod parameter struct and its [`KernelParams`]
/// layout (offsets from `offset_of!`), and asserts at compile time that it
/// fits one parameter slot.
macro_rules! kernel_params {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $f:ident: $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Pod, Zeroable)]
        pub struct $name {
            $($(#[$fm])* pub $f: $t,)*
        }

        impl KernelParams for $name {
            const LAYOUT: ParamsLayout = ParamsLayout {
                name: stringify!($name),
                size: std::mem::size_of::<$name>(),
                fields: &[$(ParamsFieldLayout {
                    name: stringify!($f),
                    offset: std::mem::offset_of!($name, $f),
                    scalar: <$t as ParamField>::SCALAR,
                }),*],
            };
        }

        const _: () = assert!(std::mem::size_of::<$name>() <= SLOT as usize, "parameter struct larger than a slot");
    };
}

kernel_params! {
    /// `Params` of matmul.wgsl (the `Matmul`, `MatmulSg` and fused variants) and of
    /// matmul_rows.wgsl: `y[t·y_stride + y_off + r] = Σ_i W[r][i] · x[t·x_stride + x_off + i]`
    /// over the `n_rows` rows of one row part.
    MatmulParams {
        n_in: u32,
        n_rows: u32,
        n_tok: u32,
        x_stride: u32,
        x_off: u32,
        y_stride: u32,
        /// First output row of this row part.
        y_off: u32,
        /// The residual add's branch scale (`ShaderKey::MatmulFused` with `add`; 0 otherwise).
        s: f32,
        /// Rows of a q/k/v group's first two weights (`MatGroup::Qkv`; 0 otherwise).
        n_a: u32,
        n_b: u32,
        _p0: u32,
        _p1: u32,
    }
}

kernel_params! {
    /// `Params` of get_rows.wgsl: embedding lookup from rows `r0..r0 + n_rows`,
    /// written at rows of `out_w` (the real width; the table's rows may be padded).
    GetRowsParams {
        n_in: u32,
        r0: u32,
        n_rows: u32,
        n_tok: u32,
        out_w: u32,
    }
}

kernel_params! {
    /// `Params` of rms_norm.wgsl: `n_rows` rows of width `n`, strided.
    RmsNormParams {
        n: u32,
        eps: f32,
        x_off: u32,
        out_off: u32,
        x_stride: u32,
        out_stride: u32,
        n_rows: u32,
        _p1: u32,
    }
}

kernel_params! {
    /// `Params` of rope.wgsl (`mode`: 0 = NORM, 1 = NEOX).
    RopeParams {
        n_tok: u32,
        n_head: u32,
        head_dim: u32,
        n_rot: u32,
        mode: u32,
        pos0: u32,
        row_stride: u32,
        off: u32,
    }
}

kernel_params! {
    /// `Params` of kv_store.wgsl: `n_tok` rows of `width` f32 into the f16 cache at `pos0`.
    KvStoreParams {
        n_tok: u32,
        width: u32,
        pos0: u32,
        _pad: u32,
    }
}

kernel_params! {
    /// `Params` of attention.wgsl. `window` 0 = no sliding window, `softcap`
    /// 0 = no score soft-capping; strides in f32 (queries, outputs) and f16
    /// (cache rows) values.
    AttentionParams {
        n_head: u32,
        n_head_kv: u32,
        head_dim_k: u32,
        head_dim_v: u32,
        pos0: u32,
        kq_scale: f32,
        window: u32,
        softcap: f32,
        q_stride: u32,
        out_stride: u32,
        k_row: u32,
        v_row: u32,
    }
}

kernel_params! {
    /// `Params` of swiglu.wgsl (`op`: 0 = SiLU, 1 = GELU gate).
    SwigluParams {
        n: u32,
        op: u32,
        _p0: u32,
        _p1: u32,
    }
}

kernel_params! {
    /// `Params` of add.wgsl: `x += s · y` over `n` elements.
    AddParams {
        n: u32,
        s: f32,
        _p1: u32,
        _p2: u32,
    }
}

kernel_params! {
    /// `Params` of scale.wgsl (`op`: 0 = `x *= s`, 1 = `x = s · tanh(x / s)`).
    ScaleParams {
        n: u32,
        off: u32,
        op: u32,
        s: f32,
    }
}

kernel_params! {
    /// `Params` of hadamard.wgsl: `n_pieces` pieces of `n` values from `off`,
    /// each multiplied by the `n × n` Walsh–Hadamard matrix (`s = 1/√n`).
    HadamardParams {
        n: u32,
        n_pieces: u32,
        off: u32,
        s: f32,
    }
}

kernel_params! {
    /// `Params` of add_bias.wgsl: `x[t·stride + off + i] += b[i]`.
    AddBiasParams {
        n_tok: u32,
        width: u32,
        stride: u32,
        off: u32,
    }
}

kernel_params! {
    /// `Params` of argmax.wgsl: argmax of `v[off..off + n]`.
    ArgmaxParams {
        n: u32,
        off: u32,
        _p0: u32,
        _p1: u32,
    }
}

kernel_params! {
    /// `Params` of act_quant.wgsl (`mode`: 0 = Q8_0/Q8_1, 1 = Q8_K, 2 = F16 rounding).
    ActQuantParams {
        n: u32,
        mode: u32,
        _p0: u32,
        _p1: u32,
    }
}

kernel_params! {
    /// `Params` of copy.wgsl: strided copy of `n_rows` rows of `width` values.
    CopyParams {
        width: u32,
        n_rows: u32,
        src_off: u32,
        src_stride: u32,
        dst_off: u32,
        dst_stride: u32,
        _p0: u32,
        _p1: u32,
    }
}

kernel_params! {
    /// `Params` of head_matmul.wgsl (see `ops::HeadMatmulArgs`).
    HeadMatmulParams {
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
}

// ------------------------------------------------------------- fused tier

kernel_params! {
    /// `Params` of rms_norm_q.wgsl: rms_norm.wgsl's, with the rounding `mode`
    /// of act_quant.wgsl for the rounded copy.
    RmsNormQParams {
        n: u32,
        eps: f32,
        x_off: u32,
        out_off: u32,
        x_stride: u32,
        out_stride: u32,
        n_rows: u32,
        mode: u32,
    }
}

kernel_params! {
    /// `Params` of glu_q.wgsl (`op` as swiglu.wgsl, `mode` as act_quant.wgsl).
    GluQParams {
        n: u32,
        op: u32,
        mode: u32,
        _p0: u32,
    }
}

kernel_params! {
    /// `Params` of rope_kv.wgsl (`mode`: 0 = NORM, 1 = NEOX; strides in f32
    /// values; `q_scale` multiplies q after RoPE, 1.0 = none).
    RopeKvParams {
        n_tok: u32,
        n_head: u32,
        n_head_kv: u32,
        head_dim: u32,
        n_rot: u32,
        mode: u32,
        pos0: u32,
        q_stride: u32,
        k_stride: u32,
        v_stride: u32,
        head_dim_v: u32,
        q_scale: f32,
    }
}
