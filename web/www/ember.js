// Ember in the browser: the package's API. The model runs in a Web Worker (ember-worker.js);
// this module turns its messages into promises, progress callbacks and token streams.
//
//   import { Engine } from 'ember-web';
//   const engine = await Engine.load('https://…/model.gguf', { onProgress: (p) => … });
//   const session = engine.newSession();
//   const text = await session.generate('Once upon a time', { n: 64, temp: 0 }, (t) => out.append(t));
//   const reply = await session.chat([{ role: 'user', content: 'Hi!' }], { n: 128 }, onToken, { signal });

class Worker_ {
  constructor(url) {
    this.worker = new Worker(url, { type: 'module' });
    this.pending = new Map();
    this.next = 1;
    this.worker.onmessage = (e) => {
      const m = e.data;
      const p = this.pending.get(m.id);
      if (!p) return;
      if ('token' in m) return p.onToken?.(m.token);
      if ('progress' in m) return p.onProgress?.(m.progress);
      this.pending.delete(m.id);
      m.ok ? p.resolve(m.value) : p.reject(new Error(m.error));
    };
    this.worker.onerror = (e) => {
      const err = new Error(`ember worker: ${e.message ?? e}`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
  }
  call(op, args = {}, hooks = {}, transfer = []) {
    const id = this.next++;
    const p = new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, ...hooks });
      this.worker.postMessage({ id, op, ...args }, transfer);
    });
    p.id = id;
    return p;
  }
  /** Asks the worker to stop request `id` at its next token. The worker sees the message when
   * its event loop runs: while it waits for the GPU, or at the yield after each token on the
   * CPU path — both with JSPI; without JSPI only the shared flag below stops a CPU run. */
  cancel(id) {
    this.worker.postMessage({ op: 'cancel', target: id });
  }
}

function abortError(signal) {
  return signal.reason ?? new DOMException('generation aborted', 'AbortError');
}

export class Engine {
  /** @internal */
  constructor(worker, info) {
    this._w = worker;
    /** Backend, kernels, model and context: see ember.d.ts. */
    this.info = info;
  }

  /**
   * Loads a GGUF model from a URL (fetched with progress, kept in Cache Storage) or bytes.
   * options: { onProgress({loaded, total, source}), backend: 'auto' | 'cpu' | 'webgpu',
   * nCtx, cache (default true), cacheName, scalar (the portable kernels), workerUrl }.
   */
  static async load(src, options = {}) {
    const { onProgress, workerUrl, ...rest } = options;
    const w = new Worker_(workerUrl ?? new URL('./ember-worker.js', import.meta.url));
    if (src instanceof URL) src = src.href;
    const transfer = src instanceof ArrayBuffer ? [src] : [];
    const info = await w.call('load', { src, options: rest }, { onProgress }, transfer);
    return new Engine(w, info);
  }

  /** A new conversation (its own context). */
  newSession() {
    return new Session(this._w, this._w.call('newSession'));
  }

  /** Ends the worker and frees the model. */
  dispose() {
    this._w.worker.terminate();
  }
}

export class Session {
  /** @internal */
  constructor(worker, id) {
    this._w = worker;
    this._id = id;
  }

  async _run(op, args, onToken, signal) {
    if (signal?.aborted) throw abortError(signal);
    const session = await this._id;
    // With cross-origin isolation the worker sees the abort between two tokens (a shared flag);
    // without it the promise rejects at once, and the worker stops at the next token when it
    // sees the cancel message (with JSPI: it yields while waiting for the GPU and after each
    // CPU token) or, without JSPI, ends at `n`.
    const cancel = globalThis.crossOriginIsolated ? new SharedArrayBuffer(4) : null;
    let aborted = false;
    const run = this._w.call(op, { session, ...args, cancel }, { onToken: (t) => aborted || onToken?.(t) });
    if (!signal) return run;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        aborted = true;
        this._w.cancel(run.id);
        if (cancel) Atomics.store(new Int32Array(cancel), 0, 1);
        else reject(abortError(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      run.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  /**
   * Continues the context with `prompt` (raw text) and generates; resolves to the result
   * ({text, prompt_tps, gen_tps, stop_reason, …}). params: { n, temp, top_k, top_p, min_p,
   * repeat_penalty, seed, stop }. options: { signal } (an AbortSignal).
   */
  generateFull(prompt, params = {}, onToken, options = {}) {
    return this._run('generate', { prompt, params }, onToken, options.signal);
  }

  /** Like generateFull; resolves to the generated text. */
  async generate(prompt, params = {}, onToken, options = {}) {
    return (await this.generateFull(prompt, params, onToken, options)).text;
  }

  /** The assistant's reply to the conversation `messages` ([{role, content}, …]), full result. */
  chatFull(messages, params = {}, onToken, options = {}) {
    return this._run('chat', { messages, params }, onToken, options.signal);
  }

  /** Like chatFull; resolves to the reply's text. */
  async chat(messages, params = {}, onToken, options = {}) {
    return (await this.chatFull(messages, params, onToken, options)).text;
  }

  /**
   * The logits of every position of `prompt` on a fresh context (like `ember logits -p PROMPT
   * --top K`): { tokens, rows: [{pos, top: [[id, logit], …]}] }. The session is reset.
   */
  async logits(prompt, top = 10) {
    return this._w.call('logits', { session: await this._id, prompt, top });
  }

  /** Forgets the context. */
  async reset() {
    await this._w.call('reset', { session: await this._id });
  }

  /** Frees the session's memory. */
  async free() {
    await this._w.call('freeSession', { session: await this._id });
  }
}

/** The in-browser kernel parity check: the WebAssembly SIMD128 kernels against the scalar ones. */
export async function kernelParity(options = {}) {
  const w = new Worker_(options.workerUrl ?? new URL('./ember-worker.js', import.meta.url));
  try {
    return await w.call('parity');
  } finally {
    w.worker.terminate();
  }
}
