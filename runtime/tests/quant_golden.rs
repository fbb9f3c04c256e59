//! Golden test: our `dequantize_row` against gguf-py's `gguf.quants.dequantize`
//! on rows of real tensors (fixtures made by `scripts/gen_quant_golden.py`),
//! for every weight format Ember computes with. A missing fixture fails.
//! The same real rows also check `vec_dot` against float math.

use std::path::PathBuf;

use ember::quant::{dequantize_row, is_supported, quantize_row_act, vec_dot, vec_dot_type, GgmlType};

const TYPES: [&str; 15] =
    ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/quant_golden")
}

fn ty_of(name: &str) -> GgmlType {
    (0..64).filter_map(GgmlType::from_u32).find(|t| t.name() == name).unwrap()
}

struct Fixture {
    ty: GgmlType,
    n: usize,
    row_elements: usize,
    raw: Vec<u8>,
    want: Vec<f32>,
}

fn load(name: &str, index: &serde_json::Value) -> Fixture {
    let entry = &index["types"][name];
    let n = entry["n"].as_u64().unwrap_or_else(|| panic!("index.json has no entry for {name}")) as usize;
    let row_elements = entry["row_elements"].as_u64().unwrap() as usize;
    let read = |ext: &str| {
        let p = dir().join(format!("{name}.{ext}"));
        std::fs::read(&p).unwrap_or_else(|e| panic!("missing golden fixture {}: {e} (run scripts/gen_quant_golden.py)", p.display()))
    };
    let raw = read("bin");
    let want: Vec<f32> = read("f32").chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    assert_eq!(want.len(), n, "{name}.f32 length");
    Fixture { ty: ty_of(name), n, row_elements, raw, want }
}

fn index() -> serde_json::Value {
    let p = dir().join("index.json");
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("missing {}: {e}", p.display()));
    serde_json::from_str(&s).unwrap()
}

#[test]
fn dequantize_matches_gguf_py_on_real_tensors() {
    let index = index();
    for name in TYPES {
        let f = load(name, &index);
        assert!(is_supported(f.ty), "{name}");
        assert_eq!(f.ty.row_size(f.n), Some(f.raw.len()), "{name}.bin length");
        let mut got = vec![0f32; f.n];
        dequantize_row(f.ty, &f.raw, &mut got).unwrap();
        let mut exact = 0;
        for (i, (&g, &w)) in got.iter().zip(&f.want).enumerate() {
            if g.to_bits() == w.to_bits() {
                exact += 1;
                continue;
            }
            assert!((g - w).abs() <= 1e-6 * w.abs(), "{name}[{i}]: ours {g}, gguf-py {w}");
        }
        assert!(f.want.iter().any(|&w| w != 0.0), "{name}: fixture is all zeros");
        eprintln!("{name:5}: {} elements, {exact} bit-exact", f.n);
    }
}

/// Integer dot on real blocks equals float math on the golden values and the
/// dequantized activations, up to f32 rounding (and Q8_1's f16 `s`).
#[test]
fn vec_dot_on_real_rows_matches_float_math() {
    let index = index();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for name in TYPES {
        let f = load(name, &index);
        let act_ty = vec_dot_type(f.ty);
        let n = f.row_elements;
        let row_bytes = f.ty.row_size(n).unwrap();
        for (w, wf) in f.raw.chunks_exact(row_bytes).zip(f.want.chunks_exact(n)) {
            let x: Vec<f32> = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
                })
                .collect();
            let mut act = vec![0u8; act_ty.row_size(n).unwrap()];
            quantize_row_act(act_ty, &x, &mut act);
            let mut xq = vec![0f32; n];
            dequantize_row(act_ty, &act, &mut xq).unwrap();
            let got = vec_dot(f.ty, n, w, &act) as f64;
            let want: f64 = wf.iter().zip(&xq).map(|(&a, &b)| a as f64 * b as f64).sum();
            let scale: f64 = wf.iter().zip(&xq).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
            let rel = if act_ty == GgmlType::Q8_1 { 2e-3 } else { 1e-5 };
            assert!((got - want).abs() <= rel * scale + 1e-9, "{name}: vec_dot {got} vs float {want} (scale {scale})");
        }
    }
}
