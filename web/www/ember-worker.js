// Ember's Web Worker: owns the WebAssembly module, the engine and its sessions. ember.js talks
// to it with messages {id, op, ...}; it answers {id, ok, value | error} and streams
// {id, token} while generating. Generation blocks this worker, never the page.
import init, { Engine, ModelBuffer, kernelParity } from './pkg/ember_web.js';

let ready = null;
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

function streaming(id, cancel) {
  const flag = cancel ? new Int32Array(cancel) : null;
  return (token) => {
    self.postMessage({ id, token });
    return !(flag && Atomics.load(flag, 0) !== 0);
  };
}

const ops = {
  async load({ src, options }, id) {
    ready ??= init();
    await ready;
    const progress = (loaded, total, source) => self.postMessage({ id, progress: { loaded, total, source } });
    const { buf, source } = await openModel(src, options.cache === false ? null : (options.cacheName ?? 'ember-models'), progress);
    engine?.free();
    sessions.clear();
    const t = performance.now();
    engine = Engine.load(buf, JSON.stringify({ backend: options.backend ?? 'auto', n_ctx: options.nCtx, scalar: options.scalar }));
    const info = JSON.parse(engine.info());
    info.load_ms = performance.now() - t;
    info.model_source = source;
    return info;
  },
  async parity() {
    ready ??= init();
    await ready;
    return JSON.parse(kernelParity());
  },
  newSession() {
    if (!engine) throw new Error('no model loaded');
    const sid = nextSession++;
    sessions.set(sid, engine.newSession());
    return sid;
  },
  generate({ session: sid, prompt, params, cancel }, id) {
    return JSON.parse(session(sid).generate(prompt, JSON.stringify(params ?? {}), streaming(id, cancel)));
  },
  chat({ session: sid, messages, params, cancel }, id) {
    return JSON.parse(session(sid).chat(JSON.stringify(messages), JSON.stringify(params ?? {}), streaming(id, cancel)));
  },
  reset({ session: sid }) {
    session(sid).reset();
  },
  freeSession({ session: sid }) {
    sessions.get(sid)?.free();
    sessions.delete(sid);
  },
};

// One request at a time, in order (generation is synchronous anyway).
let queue = Promise.resolve();
self.onmessage = (e) => {
  const { id, op, ...args } = e.data;
  queue = queue.then(async () => {
    try {
      const value = await ops[op](args, id);
      self.postMessage({ id, ok: true, value });
    } catch (err) {
      self.postMessage({ id, ok: false, error: String(err?.message ?? err) });
    }
  });
};
