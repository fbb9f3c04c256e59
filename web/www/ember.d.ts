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
  /** 'auto' (default) and 'cpu' run on WebAssembly SIMD128; 'webgpu' is not in this build yet. */
  backend?: 'auto' | 'cpu' | 'webgpu';
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
  backend: string;
  adapter: string;
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

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface RunOptions {
  /** Stops generation between two tokens (the promise rejects when the page is not cross-origin isolated). */
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
  reset(): Promise<void>;
  free(): Promise<void>;
}

export interface ParityReport {
  /** The kernel tables checked ("scalar", "simd128"). */
  tables: string[];
  cases: number;
  failures: { table: string; format: string; n: number; got: number; want: number }[];
}

/** The in-browser kernel parity check: the WebAssembly SIMD128 kernels against the scalar ones. */
export declare function kernelParity(options?: { workerUrl?: string | URL }): Promise<ParityReport>;
