// Ember's Web Worker: owns the WebAssembly module, the engine and its sessions. ember.js talks
// to it with messages {id, op, ...}; it answers {id, ok, value | error} and streams
// {id, token} while generating. Generation runs in this worker, never on the page.
import init, { Engine, ModelBuffer, enableJspi, kernelParity, runJob as runJobSync } from './pkg/ember_web.js';

// JavaScript Promise Integration (JSPI). The runtime is synchronous, but WebGPU answers through
// promises, which resolve only while the event loop runs. So the one import the runtime calls
// while it waits for the GPU, `emberSuspend`, is wrapped in `WebAssembly.Suspending`, and the
// export that runs work (`runJob`) is called through `WebAssembly.promising`: a wait suspends
// the WebAssembly stack, the event loop runs (WebGPU's callbacks included), then it resumes.
// Without JSPI the CPU path still works (runJob runs synchronously) and WebGPU is refused.
const JSPI_AVAILABLE = typeof WebAssembly.Suspending === 'function' && typeof WebAssembly.promising === 'function';
// Whether this worker's module runs with JSPI (set by `load`).
let jspi = false;

// emberSuspend(n): a promise resolved in a new task. `n` counts the yields of the current wait:
// for the first milliseconds of a wait yield at once (a MessageChannel task: GPU work on a real
// adapter takes a few ms), later sleep between polls so a long wait (a software adapter) does
// not spin a core the GPU emulation needs.
const tick = new MessageChannel();
const ticked = [];
tick.port1.onmessage = () => ticked.shift()?.(0);
let waitStart = 0;
self.emberSuspend = (n) => {
  const now = performance.now();
  if (n === 0) waitStart = now;
  if (now - waitStart < 20) {
    return new Promise((resolve) => {
      ticked.push(resolve);
      tick.port2.postMessage(0);
    });
  }
  return new Promise((resolve) => setTimeout(resolve, 1, 0));
};

// Loads the module; with JSPI (unless `useJspi` is false: tests) its emberSuspend import
// wrapped while it is instantiated. Resolves to the function that runs a job (`prepare…`
// stored it): async with JSPI.
async function load(useJspi = true) {
  if (!JSPI_AVAILABLE || !useJspi) {
    await init();
    return async () => runJobSync();
  }
  let wrapped = 0;
  const wrap = (imports) => {
    for (const ns of Object.values(imports ?? {})) {
      for (const k of Object.keys(ns)) {
        if (k.startsWith('__wbg_emberSuspend_') && typeof ns[k] === 'function') {
          ns[k] = new WebAssembly.Suspending(ns[k]);
          wrapped++;
        }
      }
    }
    return imports;
  };
  const { instantiate, instantiateStreaming } = WebAssembly;
  WebAssembly.instantiate = (src, imports) => instantiate(src, wrap(imports));
  WebAssembly.instantiateStreaming = (src, imports) => instantiateStreaming(src, wrap(imports));
  let wasm;
  try {
    wasm = await init();
  } finally {
    WebAssembly.instantiate = instantiate;
    WebAssembly.instantiateStreaming = instantiateStreaming;
  }
  if (!wrapped) {
    console.warn('ember: emberSuspend import not found; WebGPU off');
    return async () => runJobSync();
  }
  enableJspi();
  jspi = true;
  const promising = WebAssembly.promising(wasm.runJob);
  return () => promising();
}

let ready = null;
// Runs the job a `prepare…` call returned and collects its result.
async function run(pending) {
  const runJob = await ready;
  await runJob();
  return pending.finish();
}

// What the browser says of its WebGPU adapter, for the runtime's reports (wgpu cannot read
// GPUAdapter.info): { name, software }, or null without WebGPU or when the CPU is asked for.
async function browserAdapter(backend) {
  if (backend === 'cpu') return null;
  if (!self.navigator?.gpu) {
    if (backend === 'webgpu') throw new Error('this browser has no WebGPU (navigator.gpu is missing): use backend "cpu" or "auto"');
    return null;
  }
  if (!jspi && backend === 'webgpu') {
    throw new Error('the WebGPU backend needs JavaScript Promise Integration (WebAssembly.Suspending; Chrome/Edge 137+), which this browser lacks: use backend "cpu" or "auto"');
  }
  const gpu = self.navigator.gpu;
  const adapter = (await gpu.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null))
    ?? (await gpu.requestAdapter({ forceFallbackAdapter: true }).catch(() => null));
  if (!adapter) return null;
  const i = adapter.info ?? {};
  const name = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' ') || 'WebGPU adapter';
  const software = Boolean(i.isFallbackAdapter ?? adapter.isFallbackAdapter) || /swiftshader|llvmpipe|lavapipe|software/i.test(name);
  return { name, software };
}
let engine = null;
const sessions = new Map();
let nextSession = 1;

// Resolves to { buf, source }: the model's bytes in WebAssembly memory and where they came
// from ('network' | 'cache' | 'bytes').
async function openModel(src, cacheName, onProgress) {
  if (src instanceof ArrayBuffer || ArrayBuffer.isView(src)) {
    const bytes = src instanceof ArrayBuffer ? new Uint8Array(src) : new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    const buf = new ModelBuffer(bytes.byteLength);
    buf.push(bytes);
    onProgress(bytes.byteLength, bytes.byteLength, 'bytes');
    return { buf, source: 'bytes' };
  }
  const url = new URL(src, self.location.href).href;
  let response = null;
  let source = 'network';
  const cache = cacheName && self.caches ? await caches.open(cacheName).catch(() => null) : null;
  if (cache) {
    response = await cache.match(url).catch(() => null);
    if (response) source = 'cache';
  }
  if (!response) {
    response = await fetch(url);
    if (!response.ok) throw new Error(`fetching ${url}: HTTP ${response.status} ${response.statusText}`);
  }
  const total = Number(response.headers.get('content-length')) || null;
  // Reserved up front: a model too big for this page fails before the download (and before
  // anything is written to the cache).
  let buf;
  try {
    buf = new ModelBuffer(total ?? undefined);
  } catch (e) {
    response.body?.cancel().catch(() => {});
    throw e;
  }
  // Stored while it streams in (the clone is written to disk, not kept in memory); awaited
  // below, so the next load finds it.
  const stored = cache && source === 'network'
    ? cache.put(url, response.clone()).catch((e) => console.warn(`ember: not cached: ${e}`))
    : null;
  const reader = response.body.getReader();
  let loaded = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf.push(value);
      loaded += value.byteLength;
      onProgress(loaded, total, source);
    }
  } catch (e) {
    buf.free();
    throw new Error(`reading ${url} (${source}) after ${loaded} bytes: ${e?.message ?? e}`);
  }
  await stored;
  return { buf, source };
}

function session(id) {
  const s = sessions.get(id);
  if (!s) throw new Error(`no session ${id}`);
  return s;
}

// Requests cancelled by a {op: 'cancel', target} message. It is handled as it arrives, not
// queued: with JSPI generation yields to the event loop (while it waits for the GPU, and after
// each token on the CPU path: api.rs's `streamer`), which sees it then.
const cancelled = new Set();

function streaming(id, cancel) {
  const flag = cancel ? new Int32Array(cancel) : null;
  return (token) => {
    self.postMessage({ id, token });
    return !((flag && Atomics.load(flag, 0) !== 0) || cancelled.has(id));
  };
}

const ops = {
  async load({ src, options }, id) {
    ready ??= load(!options.testNoJspi);
    await ready;
    // Tests of the fallbacks: a browser without WebGPU.
    if (options.testNoWebGPU) Object.defineProperty(Object.getPrototypeOf(self.navigator), 'gpu', { get: () => undefined, configurable: true });
    const progress = (loaded, total, source) => self.postMessage({ id, progress: { loaded, total, source } });
    const { buf, source } = await openModel(src, options.cache === false ? null : (options.cacheName ?? 'ember-models'), progress);
    engine?.free();
    engine = null;
    sessions.clear();
    const t = performance.now();
    const backend = options.backend ?? 'auto';
    const adapter = await browserAdapter(backend).catch((e) => {
      buf.free();
      throw e;
    });
    engine = await run(Engine.prepareLoad(buf, JSON.stringify({
      backend, adapter, n_ctx: options.nCtx, scalar: options.scalar, allow_software: options.allowSoftware, gpu_fault: options.gpuFault,
    })));
    const info = JSON.parse(engine.info());
    info.jspi = jspi;
    info.load_ms = performance.now() - t;
    info.model_source = source;
    return info;
  },
  async parity() {
    ready ??= load();
    await ready;
    return JSON.parse(kernelParity());
  },
  newSession() {
    if (!engine) throw new Error('no model loaded');
    const sid = nextSession++;
    sessions.set(sid, engine.newSession());
    return sid;
  },
  async generate({ session: sid, prompt, params, cancel }, id) {
    return JSON.parse(await run(session(sid).prepareGenerate(prompt, JSON.stringify(params ?? {}), streaming(id, cancel))));
  },
  async chat({ session: sid, messages, params, cancel }, id) {
    return JSON.parse(await run(session(sid).prepareChat(JSON.stringify(messages), JSON.stringify(params ?? {}), streaming(id, cancel))));
  },
  async logits({ session: sid, prompt, top }) {
    return JSON.parse(await run(session(sid).prepareLogits(prompt, top ?? 10)));
  },
  reset({ session: sid }) {
    session(sid).reset();
  },
  freeSession({ session: sid }) {
    sessions.get(sid)?.free();
    sessions.delete(sid);
  },
};

// One request at a time, in order (a session is busy while it generates).
let queue = Promise.resolve();
self.onmessage = (e) => {
  const { id, op, ...args } = e.data;
  if (op === 'cancel') {
    cancelled.add(args.target);
    return;
  }
  queue = queue.then(async () => {
    try {
      const value = await ops[op](args, id);
      self.postMessage({ id, ok: true, value });
    } catch (err) {
      self.postMessage({ id, ok: false, error: String(err?.message ?? err) });
    } finally {
      cancelled.delete(id);
    }
  });
};
