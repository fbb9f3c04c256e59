// Types of ember-web's API (ember.js).

export interface LoadProgress {
  /** Bytes received so far. */
  loaded: number;
  /** The model's size, when the server sent Content-Length. */
  total: number | null;
  /** Where the bytes come from. */
  source: 'network' | 'cache' | 'bytes';
}

export interface LoadOptions {
  onProgress?: (p: LoadProgress) => void;
  /**
   * 'webgpu': the GPU through WebGPU (needs JSPI, `WebAssembly.Suspending`: Chrome/Edge 137+);
   * 'cpu': WebAssembly SIMD128; 'auto' (default): a hardware WebGPU adapter that passes the
   * self-test, else the CPU (`EngineInfo.backend_reason` says why).
   */
  backend?: 'auto' | 'cpu' | 'webgpu';
  /** Let 'auto' use a software WebGPU adapter (SwiftShader; default false). */
  allowSoftware?: boolean;
  /** Context size of each session (default 2048). */
  nCtx?: number;
  /** Keep the fetched model in Cache Storage (default true). */
  cache?: boolean;
  /** The Cache Storage cache's name (default 'ember-models'). */
  cacheName?: string;
  /** Force the portable scalar kernels (debugging, comparisons). */
  scalar?: boolean;
  /** Where ember-worker.js is, when a bundler moved it. */
  workerUrl?: string | URL;
}

export interface EngineInfo {
  /** The backend in use. */
  backend: 'webgpu' | 'cpu';
  /** The WebGPU adapter (from GPUAdapter.info) or "wasm32 simd128" / "wasm32 scalar". */
  adapter: string;
  /** Why this backend (the self-test's verdict, or why the GPU was not used). */
  backend_reason: string;
  /** The GPU kernel tiers in use, on WebGPU. */
  gpu_tiers: string | null;
  /** Whether this browser has JavaScript Promise Integration (needed for WebGPU). */
  jspi: boolean;
  kernels: string;
  model: string | null;
  arch: string;
  quant: string;
  n_params: number;
  n_ctx: number;
  chat_template: string | null;
  load_ms: number;
  /** Where the model's bytes came from: 'network', 'cache' (Cache Storage) or 'bytes' (given). */
  model_source: 'network' | 'cache' | 'bytes';
}

export interface GenerateParams {
  /** Most tokens to generate (default 256). */
  n?: number;
  /** 0 = greedy (default 0.8). */
  temp?: number;
  top_k?: number;
  top_p?: number;
  min_p?: number;
  repeat_penalty?: number;
  repeat_last_n?: number;
  frequency_penalty?: number;
  presence_penalty?: number;
  seed?: number;
  /** Generation stops at any of these (not included in the text). */
  stop?: string[];
}

export interface GenerateResult {
  text: string;
  prompt_tokens: number;
  generated_tokens: number;
  prompt_ms: number;
  generation_ms: number;
  prompt_tps: number;
  gen_tps: number;
  stop_reason: 'eog' | 'length' | 'stop' | 'cancelled' | 'context_full';
}

export interface LogitsResult {
  /** The prompt's token ids. */
  tokens: number[];
  /** Per position, the highest logits as [id, logit] pairs, best first. */
  rows: { pos: number; top: [number, number][] }[];
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface RunOptions {
  /** Stops generation between two tokens (without cross-origin isolation and without JSPI, on the CPU path, the promise rejects at once and the worker finishes its run). */
  signal?: AbortSignal;
}

export type OnToken = (piece: string) => void;

export declare class Engine {
  static load(src: string | URL | ArrayBuffer | Uint8Array, options?: LoadOptions): Promise<Engine>;
  readonly info: EngineInfo;
  newSession(): Session;
  dispose(): void;
}

export declare class Session {
  generate(prompt: string, params?: GenerateParams, onToken?: OnToken, options?: RunOptions): Promise<string>;
  generateFull(prompt: string, params?: GenerateParams, onToken?: OnToken, options?: RunOptions): Promise<GenerateResult>;
  chat(messages: ChatMessage[], params?: GenerateParams, onToken?: OnToken, options?: RunOptions): Promise<string>;
  chatFull(messages: ChatMessage[], params?: GenerateParams, onToken?: OnToken, options?: RunOptions): Promise<GenerateResult>;
  /** `ember logits -p PROMPT --top K` on a fresh context (the session is reset). */
  logits(prompt: string, top?: number): Promise<LogitsResult>;
  reset(): Promise<void>;
  free(): Promise<void>;
}

export interface ParityReport {
  /** The kernel tables checked ("scalar", "simd128"). */
  tables: string[];
  /** The weight formats checked ("Q4_0", "Q4_K", …). */
  formats: string[];
  /** Those of `formats` with a kernel of their own in some table (not the scalar one). */
  simd_formats: string[];
  cases: number;
  failures: { table: string; format: string; n: number; case: number; got: number; want: number }[];
}

/** The in-browser kernel parity check: the WebAssembly SIMD128 kernels against the scalar ones. */
export declare function kernelParity(options?: { workerUrl?: string | URL }): Promise<ParityReport>;
