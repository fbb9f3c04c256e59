use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use ember::chat::{ChatMessage, ChatTemplate};
use ember::gguf::GgufFile;
use ember::sampling::SamplingParams;
use ember::{BackendKind, EngineConfig, GenerateParams, GenerationStats};
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

/// The most bytes a model may have here. A wasm32 instance addresses 4 GiB at most (browsers
/// allow that much or less), and the KV cache, scratch and the code need room next to it; and
/// one Rust allocation (the model's `Vec`) holds at most `isize::MAX` bytes, 2 GiB on wasm32.
const MAX_MODEL_BYTES: u64 = if (isize::MAX as u64) < (3 << 30) { isize::MAX as u64 } else { 3 << 30 };

#[wasm_bindgen(start)]
fn start() {
    // A Rust panic would otherwise surface only as "RuntimeError: unreachable".
    std::panic::set_hook(Box::new(|info| web_sys::console::error_1(&format!("ember panicked: {info}").into())));
}

fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn mib(n: u64) -> String {
    format!("{:.0} MiB", n as f64 / (1u64 << 20) as f64)
}

fn check_size(n: u64) -> Result<(), JsError> {
    if n > MAX_MODEL_BYTES {
        return Err(err(format!(
            "the model is {}; a WebAssembly page can hold at most {} of weights (wasm32 addresses 4 GiB, shared with the KV cache, and one allocation holds 2 GiB): use a smaller or more quantized model",
            mib(n),
            mib(MAX_MODEL_BYTES)
        )));
    }
    Ok(())
}

/// The model's bytes, streamed in chunk by chunk (from `fetch` or Cache Storage) straight
/// into WebAssembly memory: JavaScript never holds the whole file, so the page holds one copy.
#[wasm_bindgen]
pub struct ModelBuffer {
    bytes: Vec<u8>,
}

#[wasm_bindgen]
impl ModelBuffer {
    /// `expected_len`: the size when known (Content-Length), reserved at once, so a model that
    /// cannot fit fails here with a clear message before any byte is downloaded.
    #[wasm_bindgen(constructor)]
    pub fn new(expected_len: Option<f64>) -> Result<ModelBuffer, JsError> {
        let mut bytes = Vec::new();
        if let Some(n) = expected_len {
            let n = n as u64;
            check_size(n)?;
            bytes
                .try_reserve_exact(n as usize)
                .map_err(|_| err(format!("cannot allocate {} of WebAssembly memory for the model (the browser refused it)", mib(n))))?;
        }
        Ok(ModelBuffer { bytes })
    }

    /// Appends one chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsError> {
        let n = (self.bytes.len() + chunk.len()) as u64;
        check_size(n)?;
        self.bytes
            .try_reserve(chunk.len())
            .map_err(|_| err(format!("cannot grow the model buffer to {} of WebAssembly memory", mib(n))))?;
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// Bytes received so far.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> f64 {
        self.bytes.len() as f64
    }
}

// ---- Running work that may wait for the GPU -------------------------------------------------
//
// WebGPU's results arrive through promises, which resolve only while the event loop runs, but
// the runtime is synchronous. With JavaScript Promise Integration the worker wraps one import,
// `emberSuspend` (a promise for the next task), in `WebAssembly.Suspending`, and calls
// [`run_job`] through `WebAssembly.promising`: the runtime's waits (`ember::backend::wgpu::wait`)
// then suspend the WebAssembly stack while the browser runs, instead of blocking it. Work that
// may wait (loading, generating) is therefore set up by one call (`prepare…`, which stores a
// job and returns a `Pending…` handle), run by `runJob`, and collected with `finish()`.

#[wasm_bindgen]
extern "C" {
    /// `emberSuspend(n)`: the worker's global; a promise resolved in a new task (the worker
    /// wraps this import in `WebAssembly.Suspending`, so the call returns once it resolved).
    /// `n`: the yields of this wait so far (early ones resolve at once, later ones sleep).
    #[wasm_bindgen(js_name = emberSuspend)]
    fn ember_suspend(n: u32) -> f64;
}

fn suspend(n: u32) {
    ember_suspend(n);
}

/// Called by the worker once it has wrapped `emberSuspend` in `WebAssembly.Suspending` and
/// will call [`run_job`] through `WebAssembly.promising`: the runtime may then wait for the
/// GPU. Without it the WebGPU backend is refused with the reason (and `auto` uses the CPU).
#[wasm_bindgen(js_name = enableJspi)]
pub fn enable_jspi() {
    ember::backend::wgpu::wait::set_browser_yield(suspend);
}

type Slot<T> = Rc<RefCell<Option<Result<T, String>>>>;

thread_local! {
    static JOB: RefCell<Option<Box<dyn FnOnce()>>> = const { RefCell::new(None) };
}

/// Stores `work` as the job the next [`run_job`] runs; its result lands in the slot returned.
fn schedule<T: 'static>(work: impl FnOnce() -> Result<T, String> + 'static) -> Slot<T> {
    let slot: Slot<T> = Rc::new(RefCell::new(None));
    let out = slot.clone();
    JOB.with(|j| *j.borrow_mut() = Some(Box::new(move || *out.borrow_mut() = Some(work()))));
    slot
}

/// Runs the job the last `prepare…` call stored; 1 if there was one. A plain numeric export,
/// so the worker can wrap the raw export in `WebAssembly.promising`.
#[wasm_bindgen(js_name = runJob)]
pub fn run_job() -> u32 {
    match JOB.with(|j| j.borrow_mut().take()) {
        Some(job) => {
            job();
            1
        }
        None => 0,
    }
}

fn take<T>(slot: &Slot<T>) -> Result<T, JsError> {
    slot.borrow_mut().take().ok_or_else(|| err("this job has not run (call runJob first)"))?.map_err(err)
}

/// An engine being loaded: `runJob()`, then `finish()`.
#[wasm_bindgen]
pub struct PendingEngine {
    slot: Slot<Engine>,
}

#[wasm_bindgen]
impl PendingEngine {
    pub fn finish(self) -> Result<Engine, JsError> {
        take(&self.slot)
    }
}

/// A generation under way: `runJob()`, then `finish()` (the JSON of `Session.generate`).
#[wasm_bindgen]
pub struct PendingText {
    slot: Slot<String>,
}

#[wasm_bindgen]
impl PendingText {
    pub fn finish(self) -> Result<String, JsError> {
        take(&self.slot)
    }
}

/// A loaded model.
#[wasm_bindgen]
pub struct Engine {
    inner: Arc<ember::Engine>,
    /// The model's chat template (`None`, with the reason, when it has none that compiles).
    template: std::result::Result<Arc<ChatTemplate>, String>,
}

#[wasm_bindgen]
impl Engine {
    /// Sets up loading the model from `buffer` (consumed: its memory becomes the model's).
    /// `options`: JSON `{"backend": "cpu" | "webgpu" | "auto", "n_ctx": N, "scalar": bool,
    /// "allow_software": bool, "adapter": {"name": …, "software": bool}, "gpu_fault": kernel}`
    /// (`adapter`: what the page read of `GPUAdapter.info`; `gpu_fault`: tests only, a kernel
    /// made wrong so the self-test fails, like `EMBER_GPU_FAULT`). Bad options fail here; the load itself in `runJob`.
    #[wasm_bindgen(js_name = prepareLoad)]
    pub fn prepare_load(buffer: ModelBuffer, options: &str) -> Result<PendingEngine, JsError> {
        let opts: Value = if options.is_empty() { json!({}) } else { serde_json::from_str(options).map_err(err)? };
        let backend = match opts["backend"].as_str().unwrap_or("auto") {
            "cpu" => BackendKind::Cpu,
            "webgpu" => BackendKind::Wgpu,
            "auto" => BackendKind::Auto,
            other => return Err(err(format!("unknown backend {other:?} (cpu, webgpu, auto)"))),
        };
        if let Some(name) = opts["adapter"]["name"].as_str() {
            ember::backend::wgpu::device::set_browser_adapter_info(name, opts["adapter"]["software"].as_bool().unwrap_or(false));
        }
        let config = EngineConfig {
            backend,
            n_threads: 1,
            force_scalar: opts["scalar"].as_bool().unwrap_or(false),
            n_ctx: Some(opts["n_ctx"].as_u64().unwrap_or(2048) as usize),
            gpu_allow_software: opts["allow_software"].as_bool().unwrap_or(false),
            gpu_fault: opts["gpu_fault"].as_str().map(String::from),
            ..Default::default()
        };
        let slot = schedule(move || {
            let file = GgufFile::from_bytes(buffer.bytes).map_err(|e| e.to_string())?;
            let inner = ember::Engine::from_file(Arc::new(file), config).map_err(|e| e.to_string())?;
            let template = inner.tokenizer().and_then(ChatTemplate::from_tokenizer).map(Arc::new).map_err(|e| e.to_string());
            Ok(Engine { inner, template })
        });
        Ok(PendingEngine { slot })
    }

    /// JSON: the backend in use (`webgpu` or `cpu`), the adapter, why, the CPU kernels, the model.
    pub fn info(&self) -> String {
        let e = &self.inner;
        let i = e.info();
        let report = e.backend_report();
        let gpu = e.gpu().is_some();
        json!({
            "backend": if gpu { "webgpu" } else { "cpu" },
            "adapter": if gpu { report.adapter.clone().unwrap_or_default() } else { format!("wasm32 {}", e.cpu().kernels().isa) },
            "backend_reason": report.reason,
            "gpu_tiers": report.tiers,
            "kernels": e.cpu().kernels().isa,
            "model": i.name,
            "arch": i.arch,
            "quant": i.quant.to_string(),
            "n_params": i.n_params,
            "n_ctx": e.n_ctx(),
            "chat_template": self.template.as_ref().map(|t| t.name().to_string()).ok(),
        })
        .to_string()
    }

    #[wasm_bindgen(js_name = newSession)]
    pub fn new_session(&self) -> Session {
        Session { inner: Rc::new(RefCell::new(self.inner.new_session())), engine: self.inner.clone(), template: self.template.clone() }
    }
}

/// One conversation's context (its KV cache).
#[wasm_bindgen]
pub struct Session {
    /// Shared with the job generating on it (the worker runs one request at a time).
    inner: Rc<RefCell<ember::Session>>,
    engine: Arc<ember::Engine>,
    template: std::result::Result<Arc<ChatTemplate>, String>,
}

/// The `k` highest (id, logit) pairs of each row of `logits` (at least one), as JSON
/// `[{pos, top: [[id, logit], …]}, …]` — `ember logits --top K`'s rows.
fn top_rows(logits: &[f32], n_vocab: usize, k: usize) -> Value {
    let rows = logits.chunks(n_vocab).enumerate().map(|(pos, row)| json!({"pos": pos, "top": ember::sampling::top_logits(row, k.max(1))}));
    Value::Array(rows.collect())
}

/// `params` JSON: `n` (max tokens), `temp`, `top_k`, `top_p`, `min_p`, `repeat_penalty`,
/// `repeat_last_n`, `seed`, `stop` (strings). Unset ones take the runtime's defaults.
fn params(json: &str) -> Result<GenerateParams, JsError> {
    let p: Value = if json.is_empty() { json!({}) } else { serde_json::from_str(json).map_err(err)? };
    let d = SamplingParams::default();
    let f = |k: &str, d: f32| p[k].as_f64().map_or(d, |v| v as f32);
    let u = |k: &str, d: usize| p[k].as_u64().map_or(d, |v| v as usize);
    let sampling = SamplingParams {
        temperature: f("temp", d.temperature),
        top_k: u("top_k", d.top_k),
        top_p: f("top_p", d.top_p),
        min_p: f("min_p", d.min_p),
        repeat_penalty: f("repeat_penalty", d.repeat_penalty),
        repeat_last_n: u("repeat_last_n", d.repeat_last_n),
        frequency_penalty: f("frequency_penalty", d.frequency_penalty),
        presence_penalty: f("presence_penalty", d.presence_penalty),
        seed: p["seed"].as_u64().unwrap_or_else(|| js_sys::Date::now() as u64),
    };
    let stop = p["stop"].as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default();
    Ok(GenerateParams { sampling, max_tokens: u("n", 256), stop, constraint: None })
}

fn result(text: String, s: &GenerationStats) -> String {
    json!({
        "text": text,
        "prompt_tokens": s.prompt_tokens,
        "generated_tokens": s.generated_tokens,
        "prompt_ms": s.prompt_ms,
        "generation_ms": s.generation_ms,
        "prompt_tps": s.prompt_tps(),
        "gen_tps": s.generation_tps(),
        "stop_reason": s.stop_reason.as_str(),
    })
    .to_string()
}

/// Calls `on_token(piece)` for each piece of text; a `false` back stops generation.
///
/// With JSPI (the job runs under `WebAssembly.promising`) it then yields to the worker's event
/// loop once: the CPU path never waits for anything, so without this a `cancel` message (the
/// only way an `AbortSignal` reaches a worker that is not cross-origin isolated) would queue
/// until the whole generation ended. One yield is a MessageChannel task (well under a
/// millisecond; a token on the CPU path takes tens).
fn streamer<'a>(on_token: &'a js_sys::Function, text: &'a mut String) -> impl FnMut(&str) -> bool + 'a {
    move |piece: &str| {
        text.push_str(piece);
        let go_on = match on_token.call1(&JsValue::NULL, &JsValue::from_str(piece)) {
            Ok(v) => v != JsValue::FALSE,
            Err(e) => {
                web_sys::console::error_2(&"ember: onToken threw; stopping".into(), &e);
                false
            }
        };
        if go_on && ember::backend::wgpu::wait::can_wait() {
            suspend(0);
        }
        go_on
    }
}

impl Session {
    /// Schedules `run` on this session with a streamer to `on_token`; the JSON result.
    fn schedule(
        &self,
        on_token: &js_sys::Function,
        run: impl FnOnce(&mut ember::Session, &mut dyn FnMut(&str) -> bool) -> ember::Result<GenerationStats> + 'static,
    ) -> PendingText {
        let inner = self.inner.clone();
        let on_token = on_token.clone();
        let slot = schedule(move || {
            let mut session = inner.try_borrow_mut().map_err(|_| "this session is busy".to_string())?;
            let mut text = String::new();
            let stats = run(&mut session, &mut streamer(&on_token, &mut text)).map_err(|e| e.to_string())?;
            Ok(result(text, &stats))
        });
        PendingText { slot }
    }
}

#[wasm_bindgen]
impl Session {
    /// Sets up continuing the context with `prompt` (raw text, like `ember run -p`) and
    /// generating; `runJob()` runs it, `finish()` gives JSON `{text, prompt_tps, gen_tps,
    /// stop_reason, …}`.
    #[wasm_bindgen(js_name = prepareGenerate)]
    pub fn prepare_generate(&self, prompt: String, params_json: &str, on_token: &js_sys::Function) -> Result<PendingText, JsError> {
        let p = params(params_json)?;
        Ok(self.schedule(on_token, move |s, stream| s.complete(&prompt, &p, stream)))
    }

    /// Sets up the assistant's reply to `messages_json` (`[{role, content}, …]`, the whole
    /// conversation), rendered with the model's chat template; the cached prefix of earlier
    /// turns is reused. Run and collected as `prepareGenerate`'s.
    #[wasm_bindgen(js_name = prepareChat)]
    pub fn prepare_chat(&self, messages_json: &str, params_json: &str, on_token: &js_sys::Function) -> Result<PendingText, JsError> {
        let template = self.template.clone().map_err(|e| err(format!("this model has no usable chat template: {e}")))?;
        let v: Value = serde_json::from_str(messages_json).map_err(err)?;
        let messages: Vec<ChatMessage> = v
            .as_array()
            .ok_or_else(|| err("messages: an array of {role, content}"))?
            .iter()
            .map(|m| ChatMessage::new(m["role"].as_str().unwrap_or("user"), m["content"].as_str().unwrap_or("")))
            .collect();
        let p = params(params_json)?;
        Ok(self.schedule(on_token, move |s, stream| s.chat(&template, &messages, &p, stream)))
    }

    /// Sets up `ember logits -p PROMPT --top K` on a fresh context: the prompt tokenized like
    /// `generate`'s, the logits of every position; `finish()` gives JSON
    /// `{tokens, rows: [{pos, top: [[id, logit], …]}, …]}` (for checking a backend's numbers
    /// against the native ones). The session is reset before and after.
    #[wasm_bindgen(js_name = prepareLogits)]
    pub fn prepare_logits(&self, prompt: String, top: u32) -> PendingText {
        let inner = self.inner.clone();
        let engine = self.engine.clone();
        let slot = schedule(move || {
            let mut session = inner.try_borrow_mut().map_err(|_| "this session is busy".to_string())?;
            let ids = engine.tokenizer().and_then(|t| t.encode(&prompt, true, true)).map_err(|e| e.to_string())?;
            if ids.is_empty() {
                return Err("no tokens to evaluate".into());
            }
            session.reset();
            let rows = session.eval(&ids, ember::model::LogitsWanted::All).map(|l| top_rows(l, engine.info().n_vocab, top as usize));
            session.reset();
            Ok(json!({"tokens": ids, "rows": rows.map_err(|e| e.to_string())?}).to_string())
        });
        PendingText { slot }
    }

    /// Forgets the context.
    pub fn reset(&self) -> Result<(), JsError> {
        self.inner.try_borrow_mut().map_err(|_| err("this session is busy"))?.reset();
        Ok(())
    }
}

/// The in-browser kernel parity check: every CPU kernel table this build has (SIMD128)
/// against the scalar references, on random rows of each weight format with a WebAssembly
/// kernel (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K) at several lengths (640 cases): quantized random
/// activations with modest fp16 scales, and two extreme kinds per length (every quant and
/// sub-block scale at its maximum, the fp16 scales at 65504, activations all -128, which no
/// quantizer writes; random bytes with random finite fp16 scales, subnormals included, and a
/// quarter of the activations -128). Returns JSON `{tables, formats, simd_formats, cases,
/// failures: [...]}` (`simd_formats`: those whose kernel in a table is not the scalar one);
/// the kernels must match bit for bit.
#[wasm_bindgen(js_name = kernelParity)]
pub fn kernel_parity() -> String {
    use ember::backend::cpu::simd::SCALAR;
    use ember::backend::cpu::CpuKernels;
    use ember::quant::{self, GgmlType};
    use half::f16;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    /// Random rows per (format, length): the first `CASES - 2` ordinary, then the two extreme kinds.
    const CASES: usize = 10;
    let (max_case, random_case) = (CASES - 2, CASES - 1);
    let mut cases = 0;
    let mut failures = Vec::new();
    let tables: Vec<&str> = CpuKernels::available().iter().map(|k| k.isa).collect();
    let mut formats = Vec::new();
    let mut simd_formats = Vec::new();
    // Each format and the byte offsets of the fp16 scales in its block.
    let checked: [(GgmlType, &[usize]); 7] = [
        (GgmlType::Q4_0, &[0]),
        (GgmlType::Q4_1, &[0, 2]),
        (GgmlType::Q5_0, &[0]),
        (GgmlType::Q8_0, &[0]),
        (GgmlType::Q4_K, &[0, 2]),
        (GgmlType::Q5_K, &[0, 2]),
        (GgmlType::Q6_K, &[208]),
    ];
    for (ty, f16_at) in checked {
        let name = ty.name().to_string();
        formats.push(name.clone());
        let scalar_dot = SCALAR.format(ty).unwrap().dot;
        if CpuKernels::available().iter().any(|k| !std::ptr::fn_addr_eq(k.format(ty).unwrap().dot, scalar_dot)) {
            simd_formats.push(name.clone());
        }
        let (qk, block) = (ty.block_size(), ty.type_size());
        let act_ty = quant::vec_dot_type(ty);
        // 32-element blocks: 1, 3, 7, 18 and 48 of them (the SIMD128 kernels take four at a
        // time: every remainder); super-blocks: 1, 2, 6, 9.
        let lengths: &[usize] = if qk == 32 { &[32, 96, 224, 576, 1536] } else { &[256, 512, 1536, 2304] };
        for &n in lengths {
            for case in 0..CASES {
                // Q8_0's largest quant is -128; the others' all-ones bytes are their largest.
                let max_byte = if ty == GgmlType::Q8_0 { 0x80 } else { 0xFF };
                let mut w: Vec<u8> = (0..n / qk * block).map(|_| if case == max_case { max_byte } else { rnd() as u8 }).collect();
                for b in w.chunks_exact_mut(block) {
                    if ty == GgmlType::Q6_K && case == max_case {
                        // Its sub-block scales are signed: the largest magnitudes, both signs.
                        for (i, s) in b[192..208].iter_mut().enumerate() {
                            *s = if i % 2 == 0 { 0x80 } else { 0x7F };
                        }
                    }
                    for &at in f16_at {
                        let v = match case {
                            c if c == max_case => f16::MAX,
                            c if c == random_case => f16::from_bits((rnd() as u16 % 0x7C00) | (rnd() as u16 & 0x8000)),
                            _ => f16::from_f32(((rnd() % 2000) as f32 - 1000.0) * 1e-5),
                        };
                        b[at..at + 2].copy_from_slice(&v.to_le_bytes());
                    }
                }
                let x: Vec<f32> = (0..n).map(|_| ((rnd() % 20001) as f32 - 10000.0) * 1e-4).collect();
                let mut act = vec![0u8; act_ty.row_size(n).unwrap()];
                quant::quantize_row_act(act_ty, &x, &mut act);
                if case >= max_case {
                    set_act_quants(act_ty, &mut act, |_| if case == max_case || rnd() % 4 == 0 { -128 } else { rnd() as i8 });
                }
                let want = SCALAR.vec_dot(ty, n, &w, &act);
                for k in CpuKernels::available() {
                    cases += 1;
                    let got = k.vec_dot(ty, n, &w, &act);
                    if got.to_bits() != want.to_bits() {
                        failures.push(json!({"table": k.isa, "format": name, "n": n, "case": case, "got": got, "want": want}));
                    }
                }
            }
        }
    }
    json!({"tables": tables, "formats": formats, "simd_formats": simd_formats, "cases": cases, "failures": failures}).to_string()
}

/// Overwrites the quants of an activation row (Q8_0, Q8_1 or Q8_K) with `q(i)`, keeping its
/// scales; Q8_K's block sums are recomputed, as its weights' min terms read them.
fn set_act_quants(act_ty: ember::quant::GgmlType, act: &mut [u8], mut q: impl FnMut(usize) -> i8) {
    use ember::quant::GgmlType;
    // (block bytes, offset of the quants, quants per block)
    let (block, at, qk) = match act_ty {
        GgmlType::Q8_0 => (34, 2, 32),
        GgmlType::Q8_1 => (36, 4, 32),
        GgmlType::Q8_K => (292, 4, 256),
        other => unreachable!("{other:?} is not a Q8 activation format"),
    };
    for b in act.chunks_exact_mut(block) {
        for (i, v) in b[at..at + qk].iter_mut().enumerate() {
            *v = q(i) as u8;
        }
        if act_ty == GgmlType::Q8_K {
            for j in 0..16 {
                let s: i16 = b[at + 16 * j..at + 16 * j + 16].iter().map(|&v| v as i8 as i16).sum();
                b[at + 256 + 2 * j..at + 256 + 2 * j + 2].copy_from_slice(&s.to_le_bytes());
            }
        }
    }
}
