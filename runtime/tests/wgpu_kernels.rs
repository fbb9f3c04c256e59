//! Parity of every wgpu kernel with its scalar reference (ops/, quant/,
//! backend/cpu attention), reported as NMSE and max-abs like llama.cpp's
//! test-backend-ops; get_rows of every weight type bit-exact with the scalar
//! `dequantize_row` (the GPU holds the GGUF bytes and decodes them in WGSL);
//! and a forced 1 MiB binding limit that splits weights into row parts.
//!
//! Runs on a real wgpu adapter (lavapipe in CI). With no adapter the GPU tests
//! fail when `CI` is set or `EMBER_REQUIRE_GPU=1`, and print a skip otherwise.

use std::collections::HashMap;

use ember::backend::cpu::simd::SCALAR;
use ember::backend::cpu::{attention, attention_kvq, AttnShape};
use ember::backend::wgpu::kernels::{ops, params_buffer, GBuf, Kernels, Readback, Recorder};
use ember::backend::wgpu::layout::GPU_TYPES;
use ember::backend::wgpu::shaders::{AttnCache, MatFuse, MatGroup, RowsTile, TileType};
use ember::backend::wgpu::weights::{self as gpu_weights, GpuDense, GpuMatrix};
use ember::backend::wgpu::{AdapterPolicy, GpuContext};
use ember::kv_cache::{KvCache, KvType};
use ember::ops::rope::{self, RopeMode, RopeParams};
use ember::quant::{self, GgmlType};
use half::f16;

fn gpu_with(limit: Option<u64>) -> Option<GpuContext> {
    let ctx = GpuContext::with_binding_limit(AdapterPolicy::AllowSoftware, limit).expect("wgpu device");
    if ctx.is_none() {
        let required = std::env::var_os("CI").is_some() || std::env::var("EMBER_REQUIRE_GPU").as_deref() == Ok("1");
        assert!(!required, "no wgpu adapter found, and CI / EMBER_REQUIRE_GPU=1 requires one (install mesa-vulkan-drivers)");
        eprintln!("SKIPPED: no wgpu adapter found (install mesa-vulkan-drivers for lavapipe); set EMBER_REQUIRE_GPU=1 to make this fail");
    }
    ctx
}

fn gpu() -> Option<GpuContext> {
    gpu_with(None)
}

/// Deterministic pseudo-random numbers in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
    fn byte(&mut self) -> u8 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 56) as u8
    }
}

/// Random rows of `ty` with sane scales (random quant bytes, f16 scale fields patched).
fn random_weights(ty: GgmlType, n_in: usize, n_out: usize, rng: &mut Rng) -> Vec<u8> {
    let f16b = |v: f32| f16::from_f32(v).to_bits().to_le_bytes();
    match ty {
        GgmlType::F32 => return rng.vec(n_in * n_out).iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => return rng.vec(n_in * n_out).iter().flat_map(|&v| f16b(v)).collect(),
        GgmlType::BF16 => return rng.vec(n_in * n_out).iter().flat_map(|&v| half::bf16::from_f32(v).to_bits().to_le_bytes()).collect(),
        _ => {}
    }
    let bs = ty.type_size();
    let n = ty.row_size(n_in).unwrap() * n_out;
    let mut w: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
    // Byte offsets of the f16 scale fields in each block.
    let fields: &[usize] = match ty {
        GgmlType::Q4_0 | GgmlType::Q8_0 | GgmlType::Q5_0 | GgmlType::IQ4_NL | GgmlType::IQ4_XS => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        _ => panic!("no generator for {ty}"),
    };
    for b in w.chunks_exact_mut(bs) {
        for &o in fields {
            let v = 0.002 + 0.02 * rng.next().abs();
            b[o..o + 2].copy_from_slice(&f16b(v));
        }
    }
    w
}

/// NMSE and max-abs of `got` against `want`, printed like test-backend-ops.
fn compare(name: &str, got: &[f32], want: &[f32], max_nmse: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let (mut err, mut norm, mut max_abs) = (0f64, 0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        let d = g as f64 - w as f64;
        err += d * d;
        norm += (w as f64) * (w as f64);
        max_abs = max_abs.max(d.abs());
        assert!(g.is_finite(), "{name}: non-finite output");
    }
    let nmse = if norm > 0.0 { err / norm } else { err };
    eprintln!("  {name:<40} NMSE = {nmse:.3e}  max-abs = {max_abs:.3e}  {}", if nmse <= max_nmse { "OK" } else { "FAIL" });
    assert!(nmse <= max_nmse, "{name}: NMSE {nmse} > {max_nmse}");
}

struct Run<'a> {
    ctx: &'a GpuContext,
    kernels: Kernels,
    params: GBuf,
    bgs: HashMap<(ember::backend::wgpu::shaders::ShaderKey, Vec<u64>), wgpu::BindGroup>,
}

impl<'a> Run<'a> {
    fn new(ctx: &'a GpuContext) -> Self {
        Run { ctx, kernels: Kernels::default(), params: params_buffer(ctx, 256), bgs: HashMap::new() }
    }
    fn go(&mut self, f: impl FnOnce(&mut Recorder)) {
        let mut rec = Recorder::new(self.ctx, &self.kernels, &self.params, &mut self.bgs);
        f(&mut rec);
        rec.submit(|_| {});
    }
    fn read(&self, b: &GBuf, n: usize) -> Vec<f32> {
        let rb = Readback::new(self.ctx, (n * 4) as u64);
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        rb.copy(&mut enc, b, 0, (n * 4) as u64);
        self.ctx.queue.submit(Some(enc.finish()));
        let mut bytes = Vec::new();
        rb.read(self.ctx, (n * 4) as u64, &mut bytes).unwrap();
        bytemuck::cast_slice(&bytes).to_vec()
    }
    fn zeros(&self, n: usize) -> GBuf {
        GBuf::from_f32(self.ctx, "out", &vec![0f32; n])
    }
}

/// Every type the shaders decode (layout.rs).
const TYPES: [GgmlType; 15] = GPU_TYPES;

#[test]
fn upload_allocates_what_the_planner_says() {
    // The planner (`weights::plan`) is what `ember bench` and the resident-size
    // tests count without a device: check its parts and sizes by hand here.
    let p = gpu_weights::plan(GgmlType::Q4_0, 64, 5, 1 << 20).unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].bytes, 180, "5 rows of two 18-byte blocks: 180 bytes, a whole number of words");
    let p = gpu_weights::plan(GgmlType::Q4_0, 32, 3, 1 << 20).unwrap();
    assert_eq!(p[0].bytes, 56, "54 bytes rounded up to a word");
    // 1 MiB limit, Q6_K rows of 4096 (16 blocks of 210 bytes = 3360 bytes): 312 rows per part.
    let p = gpu_weights::plan(GgmlType::Q6_K, 4096, 1000, 1 << 20).unwrap();
    assert_eq!(p.iter().map(|p| p.n_rows).collect::<Vec<_>>(), [312, 312, 312, 64]);
    assert!(p.iter().all(|p| p.bytes <= 1 << 20 && p.bytes == (p.n_rows as u64 * 3360).next_multiple_of(4)));
    assert!(gpu_weights::plan(GgmlType::Q8_1, 64, 1, 1 << 20).is_err(), "a type the shaders can't decode is a typed error");
    let Some(ctx) = gpu_with(Some(1 << 20)) else { return };
    for (ty, n_in, n_out) in [(GgmlType::Q4_0, 32, 3), (GgmlType::Q6_K, 4096, 1000), (GgmlType::Q5_0, 96, 7)] {
        let w = random_weights(ty, n_in, n_out, &mut Rng(3));
        let gm = GpuMatrix::upload(&ctx, "w", ty, &w, n_in, n_out).unwrap();
        let planned: Vec<(usize, usize, u64)> =
            gpu_weights::plan(ty, n_in, n_out, 1 << 20).unwrap().iter().map(|p| (p.r0, p.n_rows, p.bytes)).collect();
        let got: Vec<(usize, usize, u64)> = gm.parts.iter().map(|p| (p.r0, p.n_rows, p.wa.size)).collect();
        assert_eq!(got, planned, "{ty}");
    }
}

fn matmul_case(ctx: &GpuContext, ty: GgmlType, n_in: usize, n_out: usize, n_tok: usize, label: &str) -> usize {
    let mut rng = Rng(ty as u64 * 31 + n_tok as u64);
    let w = random_weights(ty, n_in, n_out, &mut rng);
    let x = rng.vec(n_tok * n_in);
    let mut want = vec![0f32; n_tok * n_out];
    ember::ops::matmul::matmul_ref(ty, &w, n_in, n_out, &x, &mut want).unwrap();
    let gm = GpuMatrix::upload(ctx, "w", ty, &w, n_in, n_out).unwrap();
    let mut run = Run::new(ctx);
    let xb = GBuf::from_f32(ctx, "x", &x);
    // Every tier this adapter runs (lavapipe has subgroups: ReduceSg runs in CI).
    let mut kinds = vec![ops::MatmulKind::Reduce];
    kinds.extend(RowsTile::ALL.map(ops::MatmulKind::Rows));
    kinds.extend(tiled_kinds(ctx));
    if ctx.profile.subgroups {
        kinds.push(ops::MatmulKind::ReduceSg);
    }
    for kind in kinds {
        let yb = run.zeros(n_tok * n_out);
        run.go(|r| ops::matmul_with(r, kind, &gm, &xb, n_in, 0, n_tok, &yb, n_out).unwrap());
        compare(&format!("mul_mat {kind:?} {ty} {n_in}x{n_out} n_tok={n_tok}{label}"), &run.read(&yb, n_tok * n_out), &want, 1e-6);
    }

    // Embedding lookup of a few rows from the same upload.
    let ids: Vec<u32> = vec![0, (n_out - 1) as u32, (n_out / 2) as u32, 3];
    let idb = GBuf::from_u32(ctx, "ids", &ids);
    let ob = run.zeros(ids.len() * n_in);
    run.go(|r| ops::get_rows(r, &gm, &idb, ids.len(), &ob, n_in).unwrap());
    let rb = ty.row_size(n_in).unwrap();
    let mut want = vec![0f32; ids.len() * n_in];
    for (t, &id) in ids.iter().enumerate() {
        quant::dequantize_row(ty, &w[id as usize * rb..(id as usize + 1) * rb], &mut want[t * n_in..(t + 1) * n_in]).unwrap();
    }
    // NMSE 0: every value equal to the scalar dequantizer's (bit for bit, up to the sign of a zero).
    compare(&format!("get_rows {ty}{label}"), &run.read(&ob, ids.len() * n_in), &want, 0.0);
    gm.parts.len()
}

#[test]
fn matmul_and_get_rows_match_reference_for_every_type() {
    let Some(ctx) = gpu() else { return };
    eprintln!("adapter: {} ({}), subgroups {}", ctx.profile.adapter_name, ctx.profile.device_type, ctx.profile.subgroups);
    if std::env::var_os("CI").is_some() {
        // lavapipe has subgroup operations; the subgroup tier must be exercised in CI.
        assert!(ctx.profile.subgroups || !ctx.profile.software, "software adapter without subgroups: the subgroup tier goes untested");
    }
    for ty in TYPES {
        for n_tok in [1, 11] {
            matmul_case(&ctx, ty, 768, 67, n_tok, "");
        }
        // Rows of 3 blocks: blocks of 18/22/34 bytes start unaligned across
        // rows, and the tensor ends mid-word (zero-padded on upload).
        if ty.block_size() <= 32 {
            matmul_case(&ctx, ty, 96, 7, 3, " (odd rows)");
        }
    }
}

/// The tiled kernel's tiles this adapter runs: f32 everywhere, f16 with `SHADER_F16`.
fn tiled_kinds(ctx: &GpuContext) -> Vec<ops::MatmulKind> {
    TileType::ALL.into_iter().filter(|&t| t == TileType::F32 || ctx.profile.f16).map(ops::MatmulKind::Tiled).collect()
}

/// Tolerated NMSE of the tiled kernel against `matmul_ref`. f32 tiles differ
/// from the reference only in the order of f32 sums (NMSE ~1e-14). f16 tiles
/// also round every weight and x value to f16 (relative error ≤ 2^-11 each,
/// variance ≈ (2^-11)²/3 ≈ 8e-8 per operand, so ≈ 1.6e-7 per product, and the
/// NMSE of a sum of independent such errors is about the same): 1e-6 leaves a
/// 6× margin and still fails on any indexing error (NMSE ~1).
fn tiled_tolerance(t: TileType) -> f64 {
    match t {
        TileType::F32 => 1e-10,
        TileType::F16 => 1e-6,
    }
}

/// The tiled kernel on every weight type, on lavapipe too (where `matmul`
/// would not pick it): an odd row count (two full 64-row tiles and a partial
/// one), token counts 8, 13 and 64 (partial and full token tiles), x rows at
/// an odd stride and offset, and y rows wider than the output (the gaps must
/// stay untouched).
#[test]
fn tiled_matmul_matches_reference_for_every_type_tile_and_stride() {
    let Some(ctx) = gpu() else { return };
    eprintln!("adapter: {} ({}), f16 {}", ctx.profile.adapter_name, ctx.profile.device_type, ctx.profile.f16);
    if std::env::var_os("CI").is_some() && ctx.profile.software {
        // lavapipe (Mesa ≥ 23) has SHADER_F16: the f16 tiles must be exercised in CI.
        assert!(ctx.profile.f16, "software adapter without SHADER_F16: the f16 tier goes untested");
    }
    let (n_in, n_out) = (512, 131);
    let (x_stride, x_off, y_stride) = (n_in + 37, 5, n_out + 3);
    let mut run = Run::new(&ctx);
    for ty in TYPES {
        for n_tok in [8, 13, 64] {
            let mut rng = Rng(ty as u64 * 131 + n_tok as u64);
            let w = random_weights(ty, n_in, n_out, &mut rng);
            let x = rng.vec(n_tok * n_in);
            let mut want = vec![0f32; n_tok * n_out];
            ember::ops::matmul::matmul_ref(ty, &w, n_in, n_out, &x, &mut want).unwrap();
            // x at stride x_stride from x_off; y at stride y_stride with 3 untouched zeros per row.
            let mut xs = rng.vec(x_off + n_tok * x_stride);
            for t in 0..n_tok {
                xs[x_off + t * x_stride..][..n_in].copy_from_slice(&x[t * n_in..(t + 1) * n_in]);
            }
            let want: Vec<f32> = want.chunks(n_out).flat_map(|r| r.iter().copied().chain([0.0; 3])).collect();
            let gm = GpuMatrix::upload(&ctx, "w", ty, &w, n_in, n_out).unwrap();
            let xb = GBuf::from_f32(&ctx, "x", &xs);
            for kind in tiled_kinds(&ctx) {
                let ops::MatmulKind::Tiled(t) = kind else { unreachable!() };
                let yb = run.zeros(n_tok * y_stride);
                run.go(|r| ops::matmul_with(r, kind, &gm, &xb, x_stride, x_off, n_tok, &yb, y_stride).unwrap());
                let name = format!("mul_mat {kind:?} {ty} {n_in}x{n_out} n_tok={n_tok} strided");
                compare(&name, &run.read(&yb, want.len()), &want, tiled_tolerance(t));
            }
            if ty == GgmlType::F16 && ctx.profile.f16 {
                // What `matmul` gives f16 tiles: F16 weights and x rounded to
                // f16 (act_quant). Then nothing rounds in the tiles: f32 tolerance.
                let x16: Vec<f32> = xs.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
                let mut want16 = vec![0f32; n_tok * n_out];
                let xr: Vec<f32> = (0..n_tok).flat_map(|t| x16[x_off + t * x_stride..][..n_in].to_vec()).collect();
                ember::ops::matmul::matmul_ref(ty, &w, n_in, n_out, &xr, &mut want16).unwrap();
                let want16: Vec<f32> = want16.chunks(n_out).flat_map(|r| r.iter().copied().chain([0.0; 3])).collect();
                let xb16 = GBuf::from_f32(&ctx, "x16", &x16);
                let yb = run.zeros(n_tok * y_stride);
                let kind = ops::MatmulKind::Tiled(TileType::F16);
                run.go(|r| ops::matmul_with(r, kind, &gm, &xb16, x_stride, x_off, n_tok, &yb, y_stride).unwrap());
                let name = format!("mul_mat {kind:?} F16 x in f16 n_tok={n_tok} strided");
                compare(&name, &run.read(&yb, want16.len()), &want16, tiled_tolerance(TileType::F32));
            }
        }
    }
}

#[test]
fn weights_split_by_rows_under_a_1_mib_binding_limit() {
    let Some(ctx) = gpu_with(Some(1 << 20)) else { return };
    assert_eq!(ctx.profile.max_storage_buffer_binding_size, 1 << 20);
    // Q4_1 2048 wide: 64 blocks of 20 bytes = 1280 bytes per row -> 819 rows per part -> 4 parts.
    let parts = matmul_case(&ctx, GgmlType::Q4_1, 2048, 2500, 3, " (1 MiB limit)");
    assert_eq!(parts, 4, "expected the tensor to be split into 4 parts");
    let parts = matmul_case(&ctx, GgmlType::F32, 1024, 600, 2, " (1 MiB limit)");
    assert_eq!(parts, 3);
}

#[test]
fn rms_norm_silu_gelu_add_argmax_match_reference() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(3);
    let mut run = Run::new(&ctx);
    let (n, rows, eps) = (576, 5, 1e-5f32);
    let x = rng.vec(n * rows);
    let w = rng.vec(n);
    let (xb, wb, ob) = (GBuf::from_f32(&ctx, "x", &x), GBuf::from_f32(&ctx, "w", &w), run.zeros(n * rows));
    run.go(|r| ops::rms_norm(r, &xb, 0, &wb, &ob, 0, n, rows, eps).unwrap());
    let mut want = x.clone();
    want.chunks_mut(n).for_each(|r| ember::ops::rms_norm::rms_norm(r, &w, eps));
    compare("rms_norm 576x5", &run.read(&ob, n * rows), &want, 1e-10);

    for gelu in [false, true] {
        let g: Vec<f32> = rng.vec(5000).iter().map(|v| v * 6.0).collect();
        let u = rng.vec(5000);
        let (gb, ub) = (GBuf::from_f32(&ctx, "g", &g), GBuf::from_f32(&ctx, "u", &u));
        run.go(|r| ops::glu(r, &ub, &gb, 5000, gelu).unwrap());
        let mut want = g.clone();
        if gelu {
            ember::ops::activation::geglu(&mut want, &u);
        } else {
            ember::ops::activation::swiglu(&mut want, &u);
        }
        compare(if gelu { "geglu 5000" } else { "swiglu 5000" }, &run.read(&gb, 5000), &want, 1e-10);
    }

    let a = rng.vec(1000);
    let b = rng.vec(1000);
    let (ab, bb) = (GBuf::from_f32(&ctx, "a", &a), GBuf::from_f32(&ctx, "b", &b));
    run.go(|r| ops::add(r, &bb, &ab, 1000).unwrap());
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    compare("add 1000", &run.read(&ab, 1000), &want, 0.0);

    for (n, tie) in [(49152usize, false), (1000, true), (7, false)] {
        let mut v = rng.vec(n);
        if tie {
            v[700] = 5.0;
            v[300] = 5.0;
        }
        let vb = GBuf::from_f32(&ctx, "v", &v);
        let out = GBuf::from_u32(&ctx, "id", &[0]);
        run.go(|r| ops::argmax(r, &vb, 0, n, &out).unwrap());
        let got = run.read(&out, 1)[0].to_bits();
        assert_eq!(got, ember::sampling::argmax(&v), "argmax n={n}");
        eprintln!("  argmax n={n}{}  OK", if tie { " (tie)" } else { "" });
    }
}

#[test]
fn rope_norm_and_neox_match_reference() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(5);
    let mut run = Run::new(&ctx);
    let (n_head, hd, n_tok, pos0, n_ctx) = (3, 64, 4, 37, 64);
    for (mode, ff) in [(RopeMode::Norm, false), (RopeMode::Neox, false), (RopeMode::Neox, true)] {
        let mut p = RopeParams::plain(hd, mode, 10000.0);
        p.n_ctx_orig = 4096;
        let freqs: Vec<f32> = (0..hd / 2).map(|i| 1.0 + i as f32 * 0.1).collect();
        let ffo = ff.then_some(&freqs[..]);
        let mut table = vec![(0f32, 0f32); n_ctx * hd / 2];
        for (pos, c) in table.chunks_mut(hd / 2).enumerate() {
            p.cache(pos, ffo, c);
        }
        let flat: Vec<f32> = table.iter().flat_map(|&(c, s)| [c, s]).collect();
        let tb = GBuf::from_f32(&ctx, "table", &flat);
        let x = rng.vec(n_tok * n_head * hd);
        let xb = GBuf::from_f32(&ctx, "x", &x);
        let args = ops::RopeArgs {
            n_tok,
            n_head,
            head_dim: hd,
            n_rot: hd,
            mode: (mode == RopeMode::Neox) as u32,
            pos0,
            row_stride: n_head * hd,
            off: 0,
        };
        run.go(|r| ops::rope(r, &tb, &xb, &args).unwrap());
        let mut want = x.clone();
        for t in 0..n_tok {
            let c = &table[(pos0 + t) * hd / 2..(pos0 + t + 1) * hd / 2];
            want[t * n_head * hd..(t + 1) * n_head * hd].chunks_mut(hd).for_each(|h| rope::apply(h, c, mode));
        }
        compare(&format!("rope {mode:?}{}", if ff { " freq_factors" } else { "" }), &run.read(&xb, x.len()), &want, 1e-12);
    }
}

/// The attention cache reads this adapter runs: packed everywhere, f16 with `SHADER_F16`.
fn attn_caches(ctx: &GpuContext) -> Vec<AttnCache> {
    AttnCache::ALL.into_iter().filter(|&c| c == AttnCache::Packed || ctx.profile.f16).collect()
}

/// Tolerated NMSE of attention against the CPU reference, for both cache
/// reads: the same f16 roundings as the CPU and exact f32 products of f16
/// values, so only the order of f32 sums differs (measured ≤ 6e-15); 1e-10
/// would catch an f16 product (measured 4e-8) or a wrong index (≥ 1e-2).
fn attn_tolerance(_: AttnCache) -> f64 {
    1e-10
}

#[test]
fn attention_matches_cpu_reference_with_gqa_and_window() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(11);
    let mut run = Run::new(&ctx);
    for (hd, window) in [(64usize, None), (64, Some(4usize)), (128, None)] {
        let (n_head, n_head_kv, n_tok, pos0, n_ctx) = (4, 2, 7, 70, 96);
        let kv_dim = n_head_kv * hd;
        let q = rng.vec(n_tok * n_head * hd);
        let k = rng.vec((pos0 + n_tok) * kv_dim);
        let v = rng.vec((pos0 + n_tok) * kv_dim);
        let (kc, vc) = (
            GBuf::new(&ctx, "kc", (n_ctx * kv_dim * 2) as u64, wgpu::BufferUsages::empty()),
            GBuf::new(&ctx, "vc", (n_ctx * kv_dim * 2) as u64, wgpu::BufferUsages::empty()),
        );
        let (kb, vb, qb) = (GBuf::from_f32(&ctx, "k", &k), GBuf::from_f32(&ctx, "v", &v), GBuf::from_f32(&ctx, "q", &q));
        let ob = run.zeros(n_tok * n_head * hd);
        let args = ops::AttnArgs { window, ..ops::AttnArgs::standard(n_tok, n_head, n_head_kv, hd, hd, pos0, 1.0 / (hd as f32).sqrt()) };
        run.go(|r| {
            ops::kv_store(r, &kb, &kc, pos0 + n_tok, kv_dim, 0).unwrap();
            ops::kv_store(r, &vb, &vc, pos0 + n_tok, kv_dim, 0).unwrap();
        });
        let k16: Vec<f16> = k.iter().map(|&x| f16::from_f32(x)).collect();
        let v16: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
        let shape = AttnShape { n_head, n_head_kv, head_dim_k: hd, head_dim_v: hd, pos0, kq_scale: args.kq_scale, window, softcap: None };
        let mut want = vec![0f32; q.len()];
        attention(&SCALAR, &shape, &q, &k16, &v16, &mut want);
        for cache in attn_caches(&ctx) {
            run.go(|r| ops::attention_with(r, cache, &qb, &kc, &vc, &ob, &args).unwrap());
            compare(&format!("attention {cache:?} hd={hd} gqa=2 window={window:?}"), &run.read(&ob, q.len()), &want, attn_tolerance(cache));
        }
        // The cache holds K exactly as f16.
        let kc_got = run.read(&kc, (pos0 + n_tok) * kv_dim / 2);
        let kc_got: Vec<f32> = bytemuck::cast_slice::<f32, u16>(&kc_got).iter().map(|&h| f16::from_bits(h).to_f32()).collect();
        compare("kv_store f16", &kc_got, &k16.iter().map(|h| h.to_f32()).collect::<Vec<_>>(), 0.0);
    }
}

#[test]
fn act_quant_matches_cpu_activation_quantization() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(13);
    let mut run = Run::new(&ctx);
    let n = 4 * 512;
    let x: Vec<f32> = rng.vec(n).iter().map(|v| v * 3.0).collect();
    let xb = GBuf::from_f32(&ctx, "x", &x);
    for (mode, act) in [(0u32, GgmlType::Q8_0), (0, GgmlType::Q8_1), (1, GgmlType::Q8_K), (2, GgmlType::F16)] {
        let ob = run.zeros(n);
        run.go(|r| ops::act_quant(r, &xb, &ob, n, mode).unwrap());
        let mut q = vec![0u8; act.row_size(n).unwrap()];
        quant::quantize_row_act(act, &x, &mut q);
        let mut want = vec![0f32; n];
        quant::dequantize_row(act, &q, &mut want).unwrap();
        compare(&format!("act_quant {act}"), &run.read(&ob, n), &want, 1e-12);
    }
}

#[test]
fn scale_softcap_add_scaled_bias_and_strided_norm_match_reference() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(17);
    let mut run = Run::new(&ctx);
    let n = 3000;
    let x: Vec<f32> = rng.vec(n).iter().map(|v| v * 40.0).collect();
    // scale at an offset: only x[100..100 + 2000] changes.
    let xb = GBuf::from_f32(&ctx, "x", &x);
    run.go(|r| ops::scale(r, &xb, 100, 2000, 0.125).unwrap());
    let want: Vec<f32> = x.iter().enumerate().map(|(i, &v)| if (100..2100).contains(&i) { v * 0.125 } else { v }).collect();
    compare("scale 2000 @100", &run.read(&xb, n), &want, 0.0);
    // soft-capping (values up to ±40 against cap 10).
    let xb = GBuf::from_f32(&ctx, "x", &x);
    run.go(|r| ops::softcap(r, &xb, 0, n, 10.0).unwrap());
    let want: Vec<f32> = x.iter().map(|&v| 10.0 * (v / 10.0).tanh()).collect();
    compare("softcap 3000 cap=10", &run.read(&xb, n), &want, 1e-10);
    // x += s·y, MiniCPM's residual scale.
    let y = rng.vec(n);
    let (xb, yb) = (GBuf::from_f32(&ctx, "x", &x), GBuf::from_f32(&ctx, "y", &y));
    run.go(|r| ops::add_scaled(r, &yb, &xb, n, 0.221).unwrap());
    let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + 0.221 * b).collect();
    compare("add_scaled 3000 s=0.221", &run.read(&xb, n), &want, 1e-14);
    // bias over 5 rows of stride 600 at offset 64, width 512.
    let (rows, stride, off, width) = (5, 600, 64, 512);
    let xs = rng.vec(rows * stride);
    let b = rng.vec(width);
    let (xb, bb) = (GBuf::from_f32(&ctx, "x", &xs), GBuf::from_f32(&ctx, "b", &b));
    run.go(|r| ops::add_bias(r, &bb, &xb, rows, width, stride, off).unwrap());
    let mut want = xs.clone();
    for t in 0..rows {
        want[t * stride + off..][..width].iter_mut().zip(&b).for_each(|(a, b)| *a += b);
    }
    compare("add_bias 5x512 stride 600 @64", &run.read(&xb, xs.len()), &want, 0.0);
    // Per-head norm (rows of 64 inside rows of 256) and a strided latent norm
    // (first 96 of every 128-wide row, written to a packed buffer).
    let (hd, n_rows) = (64, 4 * 7);
    let q = rng.vec(n_rows * hd);
    let w = rng.vec(hd);
    let (qb, wb, ob) = (GBuf::from_f32(&ctx, "q", &q), GBuf::from_f32(&ctx, "w", &w), run.zeros(q.len()));
    run.go(|r| ops::rms_norm(r, &qb, 0, &wb, &ob, 0, hd, n_rows, 1e-6).unwrap());
    let mut want = q.clone();
    want.chunks_mut(hd).for_each(|r| ember::ops::rms_norm::rms_norm(r, &w, 1e-6));
    compare("rms_norm per head 64 x 28", &run.read(&ob, q.len()), &want, 1e-10);
    let (row, lat, n_tok) = (128, 96, 6);
    let kva = rng.vec(n_tok * row);
    let w = rng.vec(lat);
    let (kb, wb, ob) = (GBuf::from_f32(&ctx, "kva", &kva), GBuf::from_f32(&ctx, "w", &w), run.zeros(n_tok * lat));
    run.go(|r| ops::rms_norm_strided(r, &kb, 0, row, &wb, &ob, 0, lat, lat, n_tok, 1e-6).unwrap());
    let mut want = Vec::new();
    for t in 0..n_tok {
        let mut v = kva[t * row..][..lat].to_vec();
        ember::ops::rms_norm::rms_norm(&mut v, &w, 1e-6);
        want.extend(v);
    }
    compare("rms_norm strided 96 of 128 x 6", &run.read(&ob, n_tok * lat), &want, 1e-10);
}

#[test]
fn rope_at_an_offset_inside_each_row() {
    // MLA: heads of 96 = [64 nope | 32 rope]; only the rope part turns.
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(19);
    let mut run = Run::new(&ctx);
    let (n_head, hd, nope, n_rot, n_tok, pos0, n_ctx) = (2, 96, 64, 32, 3, 5, 16);
    let p = RopeParams::plain(n_rot, RopeMode::Neox, 10000.0);
    let mut table = vec![(0f32, 0f32); n_ctx * n_rot / 2];
    for (pos, c) in table.chunks_mut(n_rot / 2).enumerate() {
        p.cache(pos, None, c);
    }
    let flat: Vec<f32> = table.iter().flat_map(|&(c, s)| [c, s]).collect();
    let tb = GBuf::from_f32(&ctx, "table", &flat);
    let x = rng.vec(n_tok * n_head * hd);
    let xb = GBuf::from_f32(&ctx, "x", &x);
    let args = ops::RopeArgs { n_tok, n_head, head_dim: hd, n_rot, mode: 1, pos0, row_stride: n_head * hd, off: nope };
    run.go(|r| ops::rope(r, &tb, &xb, &args).unwrap());
    let mut want = x.clone();
    for t in 0..n_tok {
        let c = &table[(pos0 + t) * n_rot / 2..(pos0 + t + 1) * n_rot / 2];
        want[t * n_head * hd..(t + 1) * n_head * hd].chunks_mut(hd).for_each(|h| rope::apply(&mut h[nope..], c, RopeMode::Neox));
    }
    compare("rope neox on [64..96) of 96-wide heads", &run.read(&xb, x.len()), &want, 1e-12);
}

#[test]
fn attention_with_distinct_k_v_heads_softcap_and_mla_rows() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(23);
    let mut run = Run::new(&ctx);
    let store = |run: &mut Run, data: &[f32], width: usize, n: usize| {
        let c = GBuf::new(&ctx, "cache", (n * width * 2) as u64, wgpu::BufferUsages::empty());
        let src = GBuf::from_f32(&ctx, "src", data);
        run.go(|r| ops::kv_store(r, &src, &c, n, width, 0).unwrap());
        c
    };
    let f16s = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<f16>>();
    // hd_k 96 / hd_v 64 (expanded MLA), GQA 4:2, soft-capped scores.
    let (n_head, n_head_kv, hdk, hdv, n_tok, pos0) = (4, 2, 96, 64, 5, 40);
    let n = pos0 + n_tok;
    let q = rng.vec(n_tok * n_head * hdk);
    let k: Vec<f32> = rng.vec(n * n_head_kv * hdk).iter().map(|v| v * 4.0).collect();
    let v = rng.vec(n * n_head_kv * hdv);
    let (kc, vc) = (store(&mut run, &k, n_head_kv * hdk, n), store(&mut run, &v, n_head_kv * hdv, n));
    let qb = GBuf::from_f32(&ctx, "q", &q);
    let ob = run.zeros(n_tok * n_head * hdv);
    let args = ops::AttnArgs { softcap: Some(2.0), ..ops::AttnArgs::standard(n_tok, n_head, n_head_kv, hdk, hdv, pos0, 0.3) };
    let shape = AttnShape { n_head, n_head_kv, head_dim_k: hdk, head_dim_v: hdv, pos0, kq_scale: 0.3, window: None, softcap: Some(2.0) };
    let mut want = vec![0f32; n_tok * n_head * hdv];
    attention(&SCALAR, &shape, &q, &f16s(&k), &f16s(&v), &mut want);
    for cache in attn_caches(&ctx) {
        run.go(|r| ops::attention_with(r, cache, &qb, &kc, &vc, &ob, &args).unwrap());
        compare(&format!("attention {cache:?} hd_k=96 hd_v=64 softcap=2"), &run.read(&ob, want.len()), &want, attn_tolerance(cache));
    }

    // Absorbed MLA: one KV head of rows [latent 256 | k_pe 32], V = the latent (same buffer).
    let (n_head, lat, row, n_tok, pos0) = (3, 256, 288, 4, 20);
    let n = pos0 + n_tok;
    let q = rng.vec(n_tok * n_head * row);
    let kv = rng.vec(n * row);
    let kc = store(&mut run, &kv, row, n);
    let qb = GBuf::from_f32(&ctx, "q", &q);
    let ob = run.zeros(n_tok * n_head * lat);
    let args = ops::AttnArgs { k_row: row, v_row: row, ..ops::AttnArgs::standard(n_tok, n_head, 1, row, lat, pos0, 0.1) };
    let shape = AttnShape { n_head, n_head_kv: 1, head_dim_k: row, head_dim_v: lat, pos0, kq_scale: 0.1, window: None, softcap: None };
    let mut want = vec![0f32; n_tok * n_head * lat];
    let kv16 = f16s(&kv);
    ember::backend::cpu::attention_strided(&SCALAR, &shape, &q, &kv16, row, &kv16, row, &mut want);
    for cache in attn_caches(&ctx) {
        run.go(|r| ops::attention_with(r, cache, &qb, &kc, &kc, &ob, &args).unwrap());
        compare(&format!("attention {cache:?} MLA rows 288, V = latent 256"), &run.read(&ob, want.len()), &want, attn_tolerance(cache));
    }
}

#[test]
fn strided_copy_and_mla_head_products_match_reference() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(29);
    let mut run = Run::new(&ctx);
    // MLA shapes like the minicpm3 fixture (none a multiple of 32 except lat):
    // heads of [nope 16 | rope 8], latent 32, value heads 32, cache rows 40.
    let (n_tok, n_head, nope, nrot, lat, hdv) = (5, 4, 16, 8, 32, 32);
    let (hdk, row, per_head) = (nope + nrot, lat + nrot, nope + hdv);
    let q = rng.vec(n_tok * n_head * hdk);
    // kv_b as the CPU dequantizes it: per head `nope` rows of W_kb then `hdv` rows of W_vb, `lat` wide.
    let qb = GBuf::from_f32(&ctx, "q", &q);
    // kv_b stays in its file type on the GPU (head_matmul decodes it per element).
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_1] {
        let wbytes = random_weights(ty, lat, n_head * per_head, &mut rng);
        let mut wkv = vec![0f32; n_head * per_head * lat];
        let rb = ty.row_size(lat).unwrap();
        for (r, row) in wkv.chunks_mut(lat).enumerate() {
            quant::dequantize_row(ty, &wbytes[r * rb..(r + 1) * rb], row).unwrap();
        }
        let wb = GpuDense::upload(&ctx, "wkv", ty, &wbytes, lat, n_head * per_head).unwrap();

        // qabs[t, h] = [W_kbᵀ q_nope (lat) | q_pe (rope)]: head_matmul, then copy the rope part.
        let qabs = run.zeros(n_tok * n_head * row);
        let absorb = ops::HeadMatmulArgs {
            n_tok,
            n_head,
            n_out: lat,
            n_in: nope,
            x_stride: n_head * hdk,
            x_head: hdk,
            y_stride: n_head * row,
            y_head: row,
            w_off: 0,
            w_head: per_head * lat,
            w_o: 1,
            w_i: lat,
        };
        run.go(|r| {
            ops::head_matmul(r, &qb, &wb, &qabs, &absorb).unwrap();
            ops::copy_rows(r, &qb, nope, hdk, &qabs, lat, row, nrot, n_tok * n_head).unwrap();
        });
        let mut want = vec![0f32; n_tok * n_head * row];
        for (th, dst) in want.chunks_mut(row).enumerate() {
            let (h, qh) = (th % n_head, &q[th * hdk..(th + 1) * hdk]);
            for (d, &qd) in qh[..nope].iter().enumerate() {
                let wr = &wkv[(h * per_head + d) * lat..][..lat];
                dst[..lat].iter_mut().zip(wr).for_each(|(a, &w)| *a += qd * w);
            }
            dst[lat..].copy_from_slice(&qh[nope..]);
        }
        compare(&format!("mla absorb (head_matmul + copy_rows) {ty}"), &run.read(&qabs, want.len()), &want, 1e-12);

        // attn[t, h] = W_vb[h] · olat[t, h].
        let olat = rng.vec(n_tok * n_head * lat);
        let ob = GBuf::from_f32(&ctx, "olat", &olat);
        let attn = run.zeros(n_tok * n_head * hdv);
        let unabsorb = ops::HeadMatmulArgs {
            n_out: hdv,
            n_in: lat,
            x_stride: n_head * lat,
            x_head: lat,
            y_stride: n_head * hdv,
            y_head: hdv,
            w_off: nope * lat,
            w_o: lat,
            w_i: 1,
            ..absorb
        };
        run.go(|r| ops::head_matmul(r, &ob, &wb, &attn, &unabsorb).unwrap());
        let mut want = vec![0f32; n_tok * n_head * hdv];
        for (th, dst) in want.chunks_mut(hdv).enumerate() {
            let (h, o) = (th % n_head, &olat[th * lat..(th + 1) * lat]);
            for (e, d) in dst.iter_mut().enumerate() {
                *d = wkv[(h * per_head + nope + e) * lat..][..lat].iter().zip(o).map(|(a, b)| a * b).sum();
            }
        }
        compare(&format!("mla unabsorb (head_matmul) {ty}"), &run.read(&attn, want.len()), &want, 1e-12);
    }

    // A strided copy leaves everything else in place: k_pe (8 at 32 of 40) into a row buffer.
    let (src, dst) = (rng.vec(n_tok * row), rng.vec(n_tok * row));
    let (sb, db) = (GBuf::from_f32(&ctx, "src", &src), GBuf::from_f32(&ctx, "dst", &dst));
    run.go(|r| ops::copy_rows(r, &sb, lat, row, &db, lat, row, nrot, n_tok).unwrap());
    let want: Vec<f32> = (0..n_tok * row).map(|i| if i % row >= lat { src[i] } else { dst[i] }).collect();
    compare("copy_rows 8 of 40 x 5", &run.read(&db, want.len()), &want, 0.0);
}

#[test]
fn padded_rows_multiply_like_the_unpadded_weight() {
    // q_b with q_lora_rank 48: rows padded to 64, activations at stride 64 with a zero tail.
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(31);
    let mut run = Run::new(&ctx);
    let (n_in, n_out, n_tok, pad) = (48, 96, 6, 64);
    for ty in [GgmlType::F32, GgmlType::F16, GgmlType::BF16] {
        let w = random_weights(ty, n_in, n_out, &mut rng);
        let x = rng.vec(n_tok * n_in);
        let mut want = vec![0f32; n_tok * n_out];
        ember::ops::matmul::matmul_ref(ty, &w, n_in, n_out, &x, &mut want).unwrap();
        let gm = GpuMatrix::upload_padded(&ctx, "w", ty, &w, n_in, n_out).unwrap();
        assert_eq!(gm.n_in, pad);
        let xp: Vec<f32> = x.chunks(n_in).flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0.0, pad - n_in))).collect();
        let xb = GBuf::from_f32(&ctx, "x", &xp);
        for kind in [ops::MatmulKind::Reduce].into_iter().chain(RowsTile::ALL.map(ops::MatmulKind::Rows)).chain(tiled_kinds(&ctx)) {
            let yb = run.zeros(n_tok * n_out);
            run.go(|r| ops::matmul_with(r, kind, &gm, &xb, pad, 0, n_tok, &yb, n_out).unwrap());
            compare(&format!("mul_mat {kind:?} {ty} padded 48→64 x {n_out}"), &run.read(&yb, want.len()), &want, 1e-6);
        }
    }
}

/// `got` equals `want` bit for bit (the fused tier's kernels against the unfused sequence).
fn same_bits(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let differ: Vec<usize> = (0..got.len()).filter(|&i| got[i].to_bits() != want[i].to_bits()).collect();
    eprintln!("  {name:<40} {} of {} values differ  {}", differ.len(), got.len(), if differ.is_empty() { "OK" } else { "FAIL" });
    if let Some(&i) = differ.first() {
        panic!("{name}: value {i}: {} (fused) vs {} (unfused)", got[i], want[i]);
    }
}

#[test]
fn fused_norm_and_glu_with_rounding_equal_the_unfused_kernels_bit_for_bit() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(17);
    let mut run = Run::new(&ctx);
    // Rows of 512 (a multiple of both block sizes), read at an offset and a
    // stride like strided norms; 3 rows.
    let (n, rows, eps, x_off, x_stride) = (512, 3, 1e-5f32, 8, 520);
    let x: Vec<f32> = rng.vec(x_off + rows * x_stride).iter().map(|v| v * 4.0).collect();
    let w = rng.vec(n);
    let (xb, wb) = (GBuf::from_f32(&ctx, "x", &x), GBuf::from_f32(&ctx, "w", &w));
    for mode in [0u32, 1, 2] {
        let (o1, q1, o2, q2) = (run.zeros(n * rows), run.zeros(n * rows), run.zeros(n * rows), run.zeros(n * rows));
        run.go(|r| {
            ops::rms_norm_strided(r, &xb, x_off, x_stride, &wb, &o1, 0, n, n, rows, eps).unwrap();
            ops::act_quant(r, &o1, &q1, n * rows, mode).unwrap();
            ops::rms_norm_q(r, &xb, x_off, x_stride, &wb, &o2, 0, n, n, rows, eps, &q2, mode).unwrap();
        });
        same_bits(&format!("rms_norm_q mode {mode}: normed rows"), &run.read(&o2, n * rows), &run.read(&o1, n * rows));
        same_bits(&format!("rms_norm_q mode {mode}: rounded rows"), &run.read(&q2, n * rows), &run.read(&q1, n * rows));
        // And against the scalar RMSNorm, like the unfused kernel's test.
        let mut want: Vec<f32> = (0..rows).flat_map(|r| x[x_off + r * x_stride..][..n].to_vec()).collect();
        want.chunks_mut(n).for_each(|r| ember::ops::rms_norm::rms_norm(r, &w, eps));
        compare(&format!("rms_norm_q mode {mode} vs scalar rms_norm"), &run.read(&o2, n * rows), &want, 1e-10);
    }
    // A row whose width is not a multiple of the rounding block is refused.
    let o = run.zeros(640);
    run.go(|r| assert!(ops::rms_norm_q(r, &xb, 0, 640, &wb, &o, 0, 640, 640, 1, eps, &o, 1).is_err()));

    let n = 4096;
    let g: Vec<f32> = rng.vec(n).iter().map(|v| v * 6.0).collect();
    let u = rng.vec(n);
    let ub = GBuf::from_f32(&ctx, "u", &u);
    for gelu in [false, true] {
        for mode in [0u32, 1, 2] {
            let (g1, g2) = (GBuf::from_f32(&ctx, "g1", &g), GBuf::from_f32(&ctx, "g2", &g));
            let (q1, q2) = (run.zeros(n), run.zeros(n));
            run.go(|r| {
                ops::glu(r, &ub, &g1, n, gelu).unwrap();
                ops::act_quant(r, &g1, &q1, n, mode).unwrap();
                ops::glu_q(r, &ub, &g2, n, gelu, &q2, mode).unwrap();
            });
            let name = if gelu { "geglu_q" } else { "swiglu_q" };
            same_bits(&format!("{name} mode {mode}: product"), &run.read(&g2, n), &run.read(&g1, n));
            same_bits(&format!("{name} mode {mode}: rounded"), &run.read(&q2, n), &run.read(&q1, n));
        }
    }
}

#[test]
fn fused_rope_and_kv_store_equal_the_unfused_kernels_bit_for_bit() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(19);
    let mut run = Run::new(&ctx);
    let (n_tok, pos0, n_ctx) = (3, 5, 16);
    // (heads, kv heads, head_dim, head_dim_v, n_rot, mode, q scale): GQA, a
    // partial rotation, V heads of another width, a q scale (gemma3), and a
    // head wider than the 64-invocation workgroup (NEOX pairs 128 apart).
    let cases = [
        (4usize, 2usize, 64usize, 64usize, 64usize, RopeMode::Norm, 1.0f32),
        (4, 2, 64, 64, 64, RopeMode::Neox, 1.0),
        (3, 1, 64, 32, 32, RopeMode::Neox, 0.125),
        (2, 2, 256, 256, 256, RopeMode::Neox, 0.0625),
        (2, 1, 96, 96, 64, RopeMode::Norm, 0.5),
    ];
    for (n_head, n_kv, hd, hdv, n_rot, mode, q_scale) in cases {
        let mut p = RopeParams::plain(n_rot, mode, 10000.0);
        p.n_ctx_orig = 4096;
        let mut table = vec![(0f32, 0f32); n_ctx * n_rot / 2];
        for (pos, c) in table.chunks_mut(n_rot / 2).enumerate() {
            p.cache(pos, None, c);
        }
        let flat: Vec<f32> = table.iter().flat_map(|&(c, s)| [c, s]).collect();
        let tb = GBuf::from_f32(&ctx, "table", &flat);
        let (qw, kw, vw) = (n_head * hd, n_kv * hd, n_kv * hdv);
        let (q, k, v) = (rng.vec(n_tok * qw), rng.vec(n_tok * kw), rng.vec(n_tok * vw));
        let vb = GBuf::from_f32(&ctx, "v", &v);
        let bufs = || {
            let cache = |w: usize| GBuf::from_u32(&ctx, "cache", &vec![0x7e00_7e00u32; n_ctx * w / 2]);
            (GBuf::from_f32(&ctx, "q", &q), GBuf::from_f32(&ctx, "k", &k), cache(kw), cache(vw))
        };
        let (q1, k1, kc1, vc1) = bufs();
        let (q2, k2, kc2, vc2) = bufs();
        let m = (mode == RopeMode::Neox) as u32;
        let rope =
            |n_head: usize, stride: usize| ops::RopeArgs { n_tok, n_head, head_dim: hd, n_rot, mode: m, pos0, row_stride: stride, off: 0 };
        let a = ops::RopeKvArgs {
            n_tok,
            n_head,
            n_head_kv: n_kv,
            head_dim: hd,
            head_dim_v: hdv,
            n_rot,
            mode: m,
            pos0,
            q_stride: qw,
            k_stride: kw,
            v_stride: vw,
            q_scale,
        };
        run.go(|r| {
            ops::rope(r, &tb, &q1, &rope(n_head, qw)).unwrap();
            ops::rope(r, &tb, &k1, &rope(n_kv, kw)).unwrap();
            if q_scale != 1.0 {
                ops::scale(r, &q1, 0, n_tok * qw, q_scale).unwrap();
            }
            ops::kv_store(r, &k1, &kc1, n_tok, kw, pos0).unwrap();
            ops::kv_store(r, &vb, &vc1, n_tok, vw, pos0).unwrap();
            ops::rope_kv(r, &tb, &q2, &k2, &vb, &kc2, &vc2, &a).unwrap();
        });
        let name = format!("rope_kv {mode:?} heads {n_head}/{n_kv} hd {hd}/{hdv} n_rot {n_rot} q×{q_scale}");
        same_bits(&format!("{name}: q"), &run.read(&q2, n_tok * qw), &run.read(&q1, n_tok * qw));
        same_bits(&format!("{name}: k"), &run.read(&k2, n_tok * kw), &run.read(&k1, n_tok * kw));
        // Whole caches: the rows written and the NaN-filled rows around them.
        same_bits(&format!("{name}: k cache"), &run.read(&kc2, n_ctx * kw / 2), &run.read(&kc1, n_ctx * kw / 2));
        same_bits(&format!("{name}: v cache"), &run.read(&vc2, n_ctx * vw / 2), &run.read(&vc1, n_ctx * vw / 2));
    }
}

/// x as the unfused path feeds a product: rounded by act_quant (mode `m`)
/// into `xq`, or as it is.
fn rounded<'a>(r: &mut Recorder, xb: &'a GBuf, xq: &'a GBuf, n: usize, round: Option<u32>) -> &'a GBuf {
    match round {
        Some(m) => {
            ops::act_quant(r, xb, xq, n, m).unwrap();
            xq
        }
        None => xb,
    }
}

/// Every row and decode product kernel the device can run (the subgroup
/// reduction where it has subgroups): what the fused products must match.
fn row_and_decode_kinds(ctx: &GpuContext) -> Vec<ops::MatmulKind> {
    let mut kinds = vec![ops::MatmulKind::Reduce];
    kinds.extend(RowsTile::ALL.map(ops::MatmulKind::Rows));
    if ctx.profile.tiers.subgroup {
        kinds.push(ops::MatmulKind::ReduceSg);
    }
    kinds
}

#[test]
fn fused_products_with_rounding_and_residual_add_equal_the_unfused_kernels_bit_for_bit() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(29);
    let mut run = Run::new(&ctx);
    let kinds = row_and_decode_kinds(&ctx);
    let (rows_1, rows_4) = (ops::MatmulKind::Rows(RowsTile::SOFTWARE_DECODE), ops::MatmulKind::Rows(RowsTile::SOFTWARE));
    // (type, kernels, rounding, add): Q4_1 rounds x like Q8_1 (mode 0) in
    // every kernel, with the add and a branch scale ≠ 1; F16 rounds to f16
    // (mode 2), alone and with the add, in the 1- and 4-token row tiles and
    // the reduction; F32 adds without rounding. Few cases: each variant is a
    // pipeline compiled on lavapipe.
    let cases = [
        (GgmlType::Q4_1, kinds.clone(), Some(0u32), true),
        (GgmlType::F16, vec![rows_1, ops::MatmulKind::Reduce], Some(2), false),
        (GgmlType::F16, vec![rows_4], Some(2), true),
        (GgmlType::F32, vec![rows_4], None, true),
    ];
    // 5 tokens: a 4-token tile and a tail (the 1-token tile and the
    // reductions take the same path for 1); 70 rows: a partial row tile.
    let (n_in, n_out, n_tok, s) = (256, 70, 5, 0.375f32);
    for (ty, kinds, round, add) in cases {
        let gm = GpuMatrix::upload(&ctx, "w", ty, &random_weights(ty, n_in, n_out, &mut rng), n_in, n_out).unwrap();
        let x: Vec<f32> = rng.vec(n_in * n_tok).iter().map(|v| v * 3.0).collect();
        let res = rng.vec(n_out * n_tok);
        let xb = GBuf::from_f32(&ctx, "x", &x);
        for kind in kinds {
            // Unfused: act_quant, the plain product, add.
            let (xq, y1, r1) = (run.zeros(n_in * n_tok), run.zeros(n_out * n_tok), GBuf::from_f32(&ctx, "r1", &res));
            let (y2, r2) = (run.zeros(n_out * n_tok), GBuf::from_f32(&ctx, "r2", &res));
            run.go(|r| {
                let src = rounded(r, &xb, &xq, n_in * n_tok, round);
                ops::matmul_with(r, kind, &gm, src, n_in, 0, n_tok, &y1, n_out).unwrap();
                if add {
                    ops::add_scaled(r, &y1, &r1, n_out * n_tok, s).unwrap();
                }
                let fuse = MatFuse { round, add, group: MatGroup::One };
                ops::matmul_fused_with(r, kind, fuse, &gm, &xb, n_in, n_tok, &y2, n_out, add.then_some((&r2, s))).unwrap();
            });
            let name = format!("{kind:?} {ty} round {round:?} add {add}");
            same_bits(&format!("{name}: y"), &run.read(&y2, n_out * n_tok), &run.read(&y1, n_out * n_tok));
            if add {
                same_bits(&format!("{name}: residual"), &run.read(&r2, n_out * n_tok), &run.read(&r1, n_out * n_tok));
            }
        }
    }
    // Refused: Q8_K's 256-value blocks span units; a tiled kernel; an add without its residual.
    let gm = GpuMatrix::upload(&ctx, "w", GgmlType::F32, &random_weights(GgmlType::F32, n_in, 4, &mut rng), n_in, 4).unwrap();
    let (xb, yb, rb) = (run.zeros(n_in), run.zeros(4), run.zeros(4));
    run.go(|r| {
        let k = ops::MatmulKind::Reduce;
        assert!(ops::matmul_fused_with(r, k, MatFuse { round: Some(1), ..MatFuse::NONE }, &gm, &xb, n_in, 1, &yb, 4, None).is_err());
        let t = ops::MatmulKind::Tiled(TileType::F32);
        assert!(ops::matmul_fused_with(r, t, MatFuse { add: true, ..MatFuse::NONE }, &gm, &xb, n_in, 1, &yb, 4, Some((&rb, 1.0))).is_err());
        assert!(ops::matmul_fused_with(r, k, MatFuse { add: true, ..MatFuse::NONE }, &gm, &xb, n_in, 1, &yb, 4, None).is_err());
    });
}

#[test]
fn fused_qkv_and_gate_up_glu_groups_equal_the_unfused_kernels_bit_for_bit() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(31);
    let mut run = Run::new(&ctx);
    let kinds = row_and_decode_kinds(&ctx);
    // Every row/decode kernel on Q4_1 (SmolLM2's type), with x already
    // rounded (what the executor runs: the norm wrote xq) and with the
    // rounding prologue (Q8_1, mode 0); F16, F32 and Q8_0 on the decode
    // kernel (the group code is the same for every type: only the block
    // reader differs, which the single-product cases cover per kernel). SiLU
    // on every kernel, GELU on the decode kernel; 1 and 5 tokens. Each
    // combination is a pipeline, compiled cold in CI (~1 s each on lavapipe):
    // the matrix is kept to what differs. q 70, k 38, v 38 rows: partial
    // tiles, and q/k and k/v boundaries inside a 16-row tile and a 4-row
    // workgroup; n_ff 70.
    let n_in = 256;
    let (n_q, n_kv, n_ff) = (70, 38, 70);
    let cases =
        [(GgmlType::Q4_1, None), (GgmlType::Q4_1, Some(0u32)), (GgmlType::F16, None), (GgmlType::F32, None), (GgmlType::Q8_0, None)];
    for (ty, round) in cases {
        let mut upload = |n_out: usize| GpuMatrix::upload(&ctx, "w", ty, &random_weights(ty, n_in, n_out, &mut rng), n_in, n_out).unwrap();
        let (wq, wk, wv, wg, wu) = (upload(n_q), upload(n_kv), upload(n_kv), upload(n_ff), upload(n_ff));
        for n_tok in [1, 5] {
            let x: Vec<f32> = rng.vec(n_in * n_tok).iter().map(|v| v * 3.0).collect();
            let xb = GBuf::from_f32(&ctx, "x", &x);
            let decode_only = [ops::MatmulKind::Reduce];
            for &kind in if ty == GgmlType::Q4_1 { &kinds[..] } else { &decode_only[..] } {
                // q, k, v: three plain products, then one group.
                let ys1 = [n_q, n_kv, n_kv].map(|n| run.zeros(n * n_tok));
                let ys2 = [n_q, n_kv, n_kv].map(|n| run.zeros(n * n_tok));
                let xq = run.zeros(n_in * n_tok);
                run.go(|r| {
                    let src = rounded(r, &xb, &xq, n_in * n_tok, round);
                    for (w, y) in [&wq, &wk, &wv].into_iter().zip(&ys1) {
                        ops::matmul_with(r, kind, w, src, n_in, 0, n_tok, y, w.n_out).unwrap();
                    }
                    let ys: Vec<&GBuf> = ys2.iter().collect();
                    ops::matmul_group_with(r, kind, MatGroup::Qkv, round, &[&wq, &wk, &wv], &xb, n_tok, &ys).unwrap();
                });
                let name = format!("qkv {kind:?} {ty} round {round:?} {n_tok} tok");
                for (i, n) in [n_q, n_kv, n_kv].into_iter().enumerate() {
                    let out = ["q", "k", "v"][i];
                    same_bits(&format!("{name}: {out}"), &run.read(&ys2[i], n * n_tok), &run.read(&ys1[i], n * n_tok));
                }
                // gate, up, GLU: two plain products and swiglu.wgsl, then one group.
                for gelu in [false, true] {
                    if gelu && kind != ops::MatmulKind::Reduce {
                        continue;
                    }
                    let n = n_ff * n_tok;
                    let (g1, u1, g2, u2) = (run.zeros(n), run.zeros(n), run.zeros(n), run.zeros(n));
                    run.go(|r| {
                        let src = rounded(r, &xb, &xq, n_in * n_tok, round);
                        ops::matmul_with(r, kind, &wg, src, n_in, 0, n_tok, &g1, n_ff).unwrap();
                        ops::matmul_with(r, kind, &wu, src, n_in, 0, n_tok, &u1, n_ff).unwrap();
                        ops::glu(r, &u1, &g1, n, gelu).unwrap();
                        let group = MatGroup::Glu(ops::glu_op(gelu));
                        ops::matmul_group_with(r, kind, group, round, &[&wg, &wu], &xb, n_tok, &[&u2, &g2]).unwrap();
                    });
                    let name = format!("{} {kind:?} {ty} round {round:?} {n_tok} tok", if gelu { "geglu" } else { "swiglu" });
                    same_bits(&format!("{name}: gate"), &run.read(&g2, n), &run.read(&g1, n));
                    same_bits(&format!("{name}: up"), &run.read(&u2, n), &run.read(&u1, n));
                }
            }
        }
    }
    // Refused: the tiled kernel, weights of two layouts, a GLU of unequal
    // halves, Q8_K rounding (256-value blocks span units), a lone weight.
    let upload = |ty: GgmlType, n_out: usize, rng: &mut Rng| {
        GpuMatrix::upload(&ctx, "w", ty, &random_weights(ty, n_in, n_out, rng), n_in, n_out).unwrap()
    };
    let (a, b, c) = (upload(GgmlType::Q4_1, 8, &mut rng), upload(GgmlType::Q8_0, 8, &mut rng), upload(GgmlType::Q4_1, 4, &mut rng));
    let (xb, y1, y2, y3) = (run.zeros(n_in), run.zeros(8), run.zeros(8), run.zeros(8));
    run.go(|r| {
        let k = ops::MatmulKind::Reduce;
        let glu = MatGroup::Glu(ops::glu_op(false));
        let t = ops::MatmulKind::Tiled(TileType::F32);
        assert!(ops::matmul_group_with(r, t, glu, None, &[&a, &a], &xb, 1, &[&y1, &y2]).is_err());
        assert!(ops::matmul_group_with(r, k, glu, None, &[&a, &b], &xb, 1, &[&y1, &y2]).is_err());
        assert!(ops::matmul_group_with(r, k, glu, None, &[&a, &c], &xb, 1, &[&y1, &y2]).is_err());
        assert!(ops::matmul_group_with(r, k, glu, Some(1), &[&a, &a], &xb, 1, &[&y1, &y2]).is_err());
        assert!(ops::matmul_group_with(r, k, MatGroup::Qkv, None, &[&a, &b, &a], &xb, 1, &[&y1, &y2, &y3]).is_err());
        assert!(ops::matmul_group_with(r, k, MatGroup::One, None, &[&a], &xb, 1, &[&y1]).is_err());
    });
}

/// Bytes of a GPU buffer.
fn read_bytes(run: &Run, b: &GBuf, n: usize) -> Vec<u8> {
    let words = run.read(b, n.div_ceil(4));
    bytemuck::cast_slice::<f32, u8>(&words)[..n].to_vec()
}

/// A device KV cache of `n_ctx` rows of `width` values stored as `ty`,
/// holding `bytes` (the rest of its pairs of blocks zero).
fn kv_buf(ctx: &GpuContext, ty: KvType, width: usize, n_ctx: usize, bytes: &[u8]) -> GBuf {
    let mut data = bytes.to_vec();
    data.resize(ops::kv_cache_bytes(ty, width, n_ctx).unwrap() as usize, 0);
    data.resize(data.len().next_multiple_of(4), 0);
    GBuf::from_u32(ctx, "kv cache", bytemuck::cast_slice(&data))
}

/// The quantizing KV store writes what `KvCache::write` stores (ggml's
/// reference quantizers), byte for byte, over a cache of random bytes: rows of
/// 3 blocks (so the pairs of blocks an invocation owns straddle rows and the
/// rows around the written ones must keep their bytes), two writes that
/// start and end inside a pair, rounding ties (x/d = k + ½: half away from
/// zero, not WGSL's half to even) and an all-zero block (d = 0).
#[test]
fn quantizing_kv_store_writes_the_cpu_cache_bytes() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(23);
    let mut run = Run::new(&ctx);
    let (width, n_ctx) = (96usize, 8usize);
    for ty in [KvType::Q8_0, KvType::Q4_0] {
        let rb = ty.row_bytes(width).unwrap();
        let noise: Vec<u8> = (0..n_ctx * rb).map(|_| rng.byte()).collect();
        let mut cpu = KvCache::new(n_ctx, vec![(width, width)], ty, ty).unwrap();
        let (dk, dv) = cpu.layer_bytes_mut(0);
        dk.copy_from_slice(&noise);
        dv.copy_from_slice(&noise);
        let (kc, vc) = (kv_buf(&ctx, ty, width, n_ctx, &noise), kv_buf(&ctx, ty, width, n_ctx, &noise));
        // (pos0, n_tok): blocks 3..12 (from the middle of a pair), then 12..15 (to the middle of one).
        for (pos0, n_tok) in [(1usize, 3usize), (4, 1)] {
            let mut k: Vec<f32> = rng.vec(n_tok * width).iter().map(|x| x * 3.0).collect();
            let v = rng.vec(n_tok * width);
            // Ties: amax 127 (q8_0: d = 1) or max −8 (q4_0: d = 1, x/d + 8.5 on an integer).
            let (top, ties) = if ty == KvType::Q8_0 { (127.0, [2.5f32, -3.5, 0.5, -0.5]) } else { (-8.0, [0.5, -0.5, 1.5, -2.5]) };
            k[0] = top;
            k[1..5].copy_from_slice(&ties);
            k[32..64].fill(0.0);
            cpu.write(0, pos0, &k, &v);
            let (kb, vb) = (GBuf::from_f32(&ctx, "k", &k), GBuf::from_f32(&ctx, "v", &v));
            run.go(|r| {
                ops::kv_store_q(r, &kb, &kc, ty, n_tok, width, pos0).unwrap();
                ops::kv_store_q(r, &vb, &vc, ty, n_tok, width, pos0).unwrap();
            });
        }
        let (want_k, want_v) = cpu.layer(0);
        for (what, got, want) in [("K", &kc, want_k.bytes), ("V", &vc, want_v.bytes)] {
            let got = read_bytes(&run, got, want.len());
            let first = got.iter().zip(want).position(|(a, b)| a != b);
            assert!(
                first.is_none(),
                "kv_store {ty} {what}: byte {} differs (GPU {:?}, CPU {:?})",
                first.unwrap(),
                got[first.unwrap()],
                want[first.unwrap()]
            );
        }
        eprintln!("  kv_store {ty:<36} bytes equal the CPU cache's");
    }
}

/// The rotation of a quantized cache (hadamard.wgsl) against the CPU's
/// `kv_rotation::hadamard`, bit for bit (the same f32 operations in the same
/// order), for every piece size the rotation uses (64 to 256) over several
/// pieces; the unsupported sizes are errors, not wrong answers.
#[test]
fn hadamard_rotation_is_bit_for_bit_the_cpus() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(31);
    let mut run = Run::new(&ctx);
    for (piece, n_pieces) in [(64usize, 7usize), (128, 3), (256, 5)] {
        let x: Vec<f32> = rng.vec(piece * n_pieces).iter().map(|v| v * 40.0).collect();
        let mut want = x.clone();
        ember::kv_rotation::hadamard(&mut want, piece);
        let xb = GBuf::from_f32(&ctx, "x", &x);
        run.go(|r| ops::hadamard(r, &xb, x.len(), piece).unwrap());
        let got = run.read(&xb, x.len());
        let first = got.iter().zip(&want).position(|(a, b)| a.to_bits() != b.to_bits());
        assert!(
            first.is_none(),
            "hadamard {piece}: value {} differs ({} vs {})",
            first.unwrap(),
            got[first.unwrap()],
            want[first.unwrap()]
        );
    }
    let xb = GBuf::from_f32(&ctx, "x", &[0.0; 512]);
    run.go(|r| {
        assert!(ops::hadamard(r, &xb, 512, 512).is_err(), "pieces over 256");
        assert!(ops::hadamard(r, &xb, 96, 64).is_err(), "not whole pieces");
        assert!(ops::hadamard(r, &xb, 96, 48).is_err(), "not a power of two");
    });
}

/// Attention over quantized caches against the CPU's `attention_kvq`
/// (llama.cpp's flash-attention arithmetic: the query quantized to q8_0 for
/// a quantized K, integer block dots, dequantized V summed in f32), the cache
/// bytes written by `KvCache::write`: GQA, a sliding window with one token,
/// several tokens, a head of one q4_0 block (rows of 18-byte heads: words at
/// every byte offset), K q8_0 with an f16 V of another width and a softcap.
/// Only the order of f32 sums (and exp's last ulps) differs: measured NMSE
/// ≤ 1e-13; 1e-10 catches a query or key rounded otherwise (≈1e-5) or a
/// wrong index (≥ 1e-2).
#[test]
fn attention_over_quantized_caches_matches_cpu_attention_kvq() {
    let Some(ctx) = gpu() else { return };
    let mut rng = Rng(29);
    let mut run = Run::new(&ctx);
    // (k type, v type, n_head, n_head_kv, hd_k, hd_v, n_tok, pos0, window, softcap)
    let cases = [
        (KvType::Q8_0, KvType::Q8_0, 4, 2, 64, 64, 5, 20, None, None),
        (KvType::Q4_0, KvType::Q4_0, 4, 2, 32, 32, 1, 30, Some(7), None),
        (KvType::Q8_0, KvType::F16, 4, 1, 32, 64, 3, 9, None, Some(30.0)),
    ];
    for (kt, vt, n_head, n_head_kv, hk, hv, n_tok, pos0, window, softcap) in cases {
        let n_pos = pos0 + n_tok;
        let (kr, vr) = (n_head_kv * hk, n_head_kv * hv);
        let mut cache = KvCache::new(n_pos, vec![(kr, vr)], kt, vt).unwrap();
        let k: Vec<f32> = rng.vec(n_pos * kr).iter().map(|x| x * 2.0).collect();
        let v = rng.vec(n_pos * vr);
        cache.write(0, 0, &k, &v);
        let q: Vec<f32> = rng.vec(n_tok * n_head * hk).iter().map(|x| x * 2.0).collect();
        let kq_scale = 1.0 / (hk as f32).sqrt();
        let shape = AttnShape { n_head, n_head_kv, head_dim_k: hk, head_dim_v: hv, pos0, kq_scale, window, softcap };
        let (kc, vc) = cache.layer(0);
        let mut want = vec![0f32; n_tok * n_head * hv];
        attention_kvq(&SCALAR, &shape, &q, kc, vc, &mut want).unwrap();
        let (kb, vb) = (kv_buf(&ctx, kt, kr, n_pos, kc.bytes), kv_buf(&ctx, vt, vr, n_pos, vc.bytes));
        let (qb, ob) = (GBuf::from_f32(&ctx, "q", &q), run.zeros(want.len()));
        let args = ops::AttnArgs { window, softcap, ..ops::AttnArgs::standard(n_tok, n_head, n_head_kv, hk, hv, pos0, kq_scale) };
        run.go(|r| ops::attention_typed(r, (kt, vt), &qb, &kb, &vb, &ob, &args).unwrap());
        let got = run.read(&ob, want.len());
        let name = format!("attention {kt}/{vt} heads {n_head}/{n_head_kv} hd {hk}/{hv} tok {n_tok} window {window:?}");
        compare(&name, &got, &want, 1e-10);
        let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(d <= 1e-5, "{name}: max |Δ| {d:e}");
    }
}
