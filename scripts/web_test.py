#!/usr/bin/env python3
"""The browser test (scripts/test-web.sh runs it): serves web/dist and the model, opens the
demo page in headless Chromium with ?autorun=1, reads the page's `EMBER_DONE {json}` console
line over the DevTools protocol and compares the text with the native CLI's greedy output.

Standard library only: a small HTTP server (with the cross-origin isolation headers, so the
page has SharedArrayBuffer) and a minimal WebSocket client for the DevTools protocol.
"""
import argparse
import base64
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request


class Handler(http.server.SimpleHTTPRequestHandler):
    """web/dist, plus the model under /models/<anything>/<name> (the basename is looked up in
    `models`). Counts the GETs of each path (`requests`). /models/too-big/<bytes>/<name>
    answers 200 with that Content-Length and closes after the headers (no body)."""
    models = "."
    isolated = True
    requests = {}
    lock = threading.Lock()

    def translate_path(self, path):
        p = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        if p.startswith("/models/"):
            return os.path.join(self.models, os.path.basename(p))
        return super().translate_path(path)

    def do_GET(self):
        p = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        with self.lock:
            self.requests[p] = self.requests.get(p, 0) + 1
        if p.startswith("/models/too-big/"):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", p.split("/")[3])
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def end_headers(self):
        # Cross-origin isolated unless the page was asked for with coi=0 (and then so is
        # everything it loads: its worker's requests carry no query, so the last page's choice).
        if "coi=0" in self.path:
            Handler.isolated = False
        elif self.path.endswith(".html") or ".html?" in self.path:
            Handler.isolated = True
        if Handler.isolated:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *a):
        pass


Handler.extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript", ".wasm": "application/wasm"}


# The weight formats with a WebAssembly SIMD128 kernel (runtime/src/backend/cpu/simd/wasm32.rs).
SIMD128_FORMATS = ["Q4_0", "Q4_1", "Q5_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]


def serve(root, models):
    Handler.models = models
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


class WebSocket:
    """Just enough of RFC 6455 for the DevTools protocol (text frames, client-masked)."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port))
        key = base64.b64encode(os.urandom(16)).decode()
        req = f"GET {u.path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the WebSocket handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"WebSocket handshake refused: {head[:200]!r}")

    def send(self, text):
        data = text.encode()
        n = len(data)
        hdr = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 65536 else bytes([0x80 | 127]) + n.to_bytes(8, "big"))
        mask = os.urandom(4)
        self.sock.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        msg = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._read(2), "big")
            elif n == 127:
                n = int.from_bytes(self._read(8), "big")
            payload = self._read(n)
            op = b0 & 0x0F
            if op == 8:
                raise ConnectionError("DevTools closed the connection")
            if op in (0, 1, 2):
                msg += payload
                if b0 & 0x80:
                    return msg.decode()


class Browser:
    def __init__(self, chromium, size=(820, 640)):
        self.dir = tempfile.mkdtemp(prefix="ember-chromium-")
        args = [chromium, "--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--no-first-run", "--disable-gpu-sandbox",
                "--remote-debugging-port=0", f"--user-data-dir={self.dir}", f"--window-size={size[0]},{size[1]}", "about:blank"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.dir, "DevToolsActivePort")
        for _ in range(300):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("chromium did not start (no DevToolsActivePort after 30 s)")
        port = int(open(port_file).read().split()[0])
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        self.ws = WebSocket(next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"])
        self.next = 0
        self.call("Runtime.enable")
        self.call("Page.enable")

    def call(self, method, **params):
        self.next += 1
        me = self.next
        self.ws.send(json.dumps({"id": me, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == me:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.event(m)

    def event(self, m):
        if m.get("method") == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in m["params"]["args"])
            self.console.append(text)
            if not text.startswith("EMBER_"):
                print(f"  console: {text[:300]}", file=sys.stderr)
        elif m.get("method") == "Runtime.exceptionThrown":
            d = m["params"]["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            self.console.append(f"EMBER_ERROR {json.dumps({'error': 'uncaught: ' + str(text)})}")

    def run_page(self, url, timeout):
        """Loads `url` and waits for its EMBER_DONE / EMBER_ERROR line; returns (kind, json)."""
        self.console = []
        self.call("Page.navigate", url=url)
        deadline = time.time() + timeout
        self.ws.sock.settimeout(5)
        while time.time() < deadline:
            for line in self.console:
                if line.startswith("EMBER_DONE ") or line.startswith("EMBER_ERROR "):
                    kind, _, body = line.partition(" ")
                    return kind, json.loads(body)
            try:
                self.event(json.loads(self.ws.recv()))
            except socket.timeout:
                pass
        return "TIMEOUT", {"error": f"no EMBER_DONE within {timeout} s"}

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def native(ember, model, prompt, n, *extra):
    out = subprocess.run([ember, "run", "-m", model, "--backend", "cpu", "--temp", "0", "-n", str(n), "-p", prompt, *extra],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    return out[:-1] if out.endswith("\n") else out


def native_logits(ember, model, text, top):
    """`ember logits --backend cpu -p TEXT --top K`: one {pos, top} row per position."""
    out = subprocess.run([ember, "logits", "-m", model, "--backend", "cpu", "-p", text, "--top", str(top)],
                         capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def compare_logits(native, web, margin):
    """WebGPU's rows against the native CPU's: (top-1 agreements, confident positions (native
    top-1 ahead by `margin` or more), mean and max |Δ| over the native top 5 found in web's top)."""
    agree = confident = 0
    diffs = []
    for rn, rw in zip(native, web):
        top_n, top_w = rn["top"], rw["top"]
        if top_n[0][1] - top_n[1][1] >= margin:
            confident += 1
            agree += top_w[0][0] == top_n[0][0]
        theirs = {i: v for i, v in top_w}
        diffs += [abs(v - theirs[i]) for i, v in top_n[:5] if i in theirs]
    return agree, confident, sum(diffs) / max(len(diffs), 1), max(diffs, default=float("inf"))


def native_chat(ember, model, message, n):
    """`ember chat` with one user message on stdin: the model's chat template, as the page's
    session.chat([{role: 'user', content: message}]) renders it; the reply and a newline on stdout."""
    out = subprocess.run([ember, "chat", "-m", model, "--backend", "cpu", "--temp", "0", "-n", str(n)], input=message + "\n",
                         capture_output=True, text=True, timeout=300, check=True).stdout
    return out[:-1] if out.endswith("\n") else out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    ap.add_argument("--ember", default="target/release/ember")
    ap.add_argument("--model", required=True)
    ap.add_argument("--backends", default="cpu")
    ap.add_argument("--webgpu-prompts", type=int, default=1,
                    help="greedy text on WebGPU for the last N prompts only (a GPU's rounding may part from the "
                         "CPU's at a near tie; every prompt gets the logits check)")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--timeout", type=int, default=180)
    ap.add_argument("--kquant-model", help="a Q4_K_M file (Q4_K, Q5_K, Q6_K, Q5_0, Q8_0 tensors) for the CPU path's "
                    "end-to-end check of those SIMD128 kernels; same directory as --model")
    ap.add_argument("--screenshot")
    ap.add_argument("--screenshot-backend", default="auto")
    ap.add_argument("prompts", nargs="+")
    a = ap.parse_args()

    port = serve("web/dist", os.path.dirname(os.path.abspath(a.model)))
    model_url = f"/models/{os.path.basename(a.model)}"
    base = f"http://127.0.0.1:{port}/index.html"
    browser = Browser(a.chromium)
    failed = 0
    try:
        kind, r = browser.run_page(f"{base}?parity=1", a.timeout)
        if kind != "EMBER_DONE":
            failed += 1
            print(f"FAIL kernel parity: {kind} {r.get('error')} {json.dumps(r.get('parity', {}).get('failures', [])[:3])}")
        else:
            # Every format of the real files (Q4_K_M mixes: Q4_K, Q5_K, Q6_K, with Q4_0, Q5_0,
            # Q8_0 in some) must have its own SIMD128 kernel, checked against the scalar one.
            p = r["parity"]
            missing = [f for f in SIMD128_FORMATS if f not in p.get("simd_formats", [])]
            if "simd128" not in p["tables"] or missing:
                failed += 1
                print(f"FAIL kernel parity: tables {p['tables']}, formats without a SIMD128 kernel checked: {missing}")
            else:
                print(f"ok   kernel parity: {'/'.join(p['tables'])} on {', '.join(p['simd_formats'])}: {p['cases']} cases bit-identical")
        @functools.lru_cache(maxsize=None)
        def want(prompt, model=a.model, n=a.n, flags=()):
            """The native CPU's greedy text (`ember run`), run once per question."""
            return native(a.ember, model, prompt, n, *flags)

        # The CPU path on SIMD128, and once on the scalar kernels (?scalar=1; bit-identical,
        # so the same text): each run's kernels are the ones asked for. The K-quant kernels end
        # to end: a Q4_K_M file's greedy text on the CPU path against the native *scalar*
        # kernels (`ember run --scalar`). The SIMD128 kernels return the scalar ones' bits, so
        # only the math library (Rust's libm on wasm32, glibc natively) may part them; the
        # native SIMD kernels add in another f32 order and would tie-break differently from
        # machine to machine.
        runs = []  # (name, backend, model, prompt, the page's extra query, `ember run`'s extra flags)
        for backend in a.backends.split(","):
            runs += [(backend, backend, a.model, prompt, {}, ()) for prompt in (a.prompts[-a.webgpu_prompts:] if backend == "webgpu" else a.prompts)]
            if backend == "cpu":
                runs.append(("cpu scalar", backend, a.model, a.prompts[0], {"scalar": 1}, ()))
                if a.kquant_model:
                    runs.append((f"cpu {os.path.basename(a.kquant_model)}", backend, a.kquant_model, a.prompts[0], {}, ("--scalar",)))
        for name, backend, model, prompt, extra, flags in runs:
            expected = want(prompt, model, flags=flags)
            native_name = " ".join(("native",) + flags)
            q = urllib.parse.urlencode({"autorun": 1, "model": f"/models/{os.path.basename(model)}", "backend": backend, "prompt": prompt,
                                        "n": a.n, "temp": 0, "cache": 0, **extra})
            t = time.time()
            kind, r = browser.run_page(f"{base}?{q}", a.timeout)
            secs = time.time() - t
            kernels = "scalar" if extra.get("scalar") else "simd128"
            if kind != "EMBER_DONE":
                failed += 1
                print(f"FAIL [{name}] {prompt!r}: {kind} {r.get('error')}")
            elif r["text"] != expected:
                failed += 1
                print(f"FAIL [{name}] {prompt!r}: the browser's text differs from the native CPU's\n  web:    {r['text']!r}\n  {native_name}: {expected!r}")
            elif backend == "cpu" and r.get("kernels") != kernels:
                failed += 1
                print(f"FAIL [{name}] {prompt!r}: ran on the {r.get('kernels')} kernels, not {kernels}")
            else:
                print(f"ok   [{name}] {prompt!r} = {native_name} ({r['backend']} on {r['adapter']}; prompt {r['prompt_tps']:.1f} tok/s, "
                      f"generation {r['gen_tps']:.1f} tok/s; page {secs:.1f} s)")

        def check(name, ok, detail):
            nonlocal failed
            failed += 0 if ok else 1
            print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")

        # WebGPU's numbers: session.logits over each prompt and its native greedy continuation
        # (so the generation's positions are covered) against `ember logits --backend cpu`.
        if "webgpu" in a.backends.split(","):
            for prompt in a.prompts:
                text = prompt + want(prompt)
                want_rows = native_logits(a.ember, a.model, text, 10)
                q = urllib.parse.urlencode({"logits": 1, "model": model_url, "backend": "webgpu", "prompt": text, "top": 10, "cache": 0})
                t = time.time()
                kind, r = browser.run_page(f"{base}?{q}", a.timeout)
                if kind != "EMBER_DONE":
                    check(f"[webgpu] logits {prompt!r}", False, f"{kind} {r.get('error')}")
                    continue
                rows = r["logits"]["rows"]
                agree, confident, mean, worst = compare_logits(want_rows, rows, 0.5)
                ok = len(rows) == len(want_rows) and r["backend"] == "webgpu" and agree == confident and mean <= 0.25 and worst <= 1.5
                check(f"[webgpu] logits {prompt!r}", ok,
                      f"{len(rows)} positions (native {len(want_rows)}) on {r['adapter']}: top-1 = native CPU at {agree}/{confident} "
                      f"confident positions (margin ≥ 0.5), |Δ| over the native top 5 mean {mean:.3f} max {worst:.3f} "
                      f"(bounds 0.25, 1.5); page {time.time() - t:.1f} s")

        # `auto` falls back to the wasm CPU path: past a software adapter (SwiftShader) unless
        # allowed, and past one whose self-test fails (a kernel broken on purpose, gpu_fault).
        if "webgpu" in a.backends.split(","):
            prompt = a.prompts[0]
            want_text = want(prompt)
            for name, extra, needles in [
                ("[auto] software adapter → cpu", {}, ["software"]),
                ("[auto] failed self-test → cpu", {"allow_software": 1, "gpu_fault": "matmul"}, ["GPU not used", "baseline", "matmul"]),
                ("[auto] no navigator.gpu → cpu", {"allow_software": 1, "webgpu": 0}, ["GPU not used", "no WebGPU adapter"]),
                ("[auto] no JSPI → cpu", {"allow_software": 1, "jspi": 0}, ["GPU not used", "JavaScript Promise Integration"]),
            ]:
                q = urllib.parse.urlencode({"autorun": 1, "model": model_url, "backend": "auto", "prompt": prompt, "n": a.n, "temp": 0, "cache": 0, **extra})
                kind, r = browser.run_page(f"{base}?{q}", a.timeout)
                if kind != "EMBER_DONE":
                    check(name, False, f"{kind} {r.get('error')}")
                    continue
                reason = r.get("backend_reason", "")
                check(name, r["backend"] == "cpu" and all(n in reason for n in needles) and r["text"] == want_text,
                      f"backend {r['backend']} ({reason[:160]!r}), text {'= native' if r['text'] == want_text else repr(r['text'])}")

        # backend webgpu where it cannot run: a clear error, not a hang or a silent CPU run.
        if "webgpu" in a.backends.split(","):
            for name, extra, needles in [
                ("error: webgpu without navigator.gpu", {"webgpu": 0}, ["no WebGPU", "navigator.gpu"]),
                ("error: webgpu without JSPI", {"jspi": 0}, ["JavaScript Promise Integration"]),
            ]:
                q = urllib.parse.urlencode({"autorun": 1, "model": model_url, "backend": "webgpu", "prompt": "Hi", "n": 4, "temp": 0, "cache": 0, **extra})
                kind, r = browser.run_page(f"{base}?{q}", min(a.timeout, 60))
                msg = str(r.get("error"))
                check(name, kind == "EMBER_ERROR" and all(n in msg for n in needles), f"{kind}: {msg[:200]!r}")

        # Cancel without cross-origin isolation (`coi=0`: no SharedArrayBuffer flag): the abort
        # must reach the worker as a `cancel` message, handled while it waits for the GPU
        # (webgpu) or at the yield after each token (cpu), and stop the run at the next token;
        # the page then times one more token on the session, which waits for that run. Not
        # stopped, the rest would take minutes on SwiftShader (64 tokens) and ~15 s on the CPU
        # path (256 tokens at ~15 tok/s): the native greedy run must be that long (no early end
        # of text), or the check would pass without a cancel.
        for backend in [b for b in ("cpu", "webgpu") if b in a.backends.split(",")]:
            n = 64 if backend == "webgpu" else 256
            q = urllib.parse.urlencode({"abort_after": 2, "model": model_url, "backend": backend, "prompt": a.prompts[0], "n": n, "cache": 0, "coi": 0})
            kind, r = browser.run_page(f"{base}?{q}", a.timeout)
            name = f"[{backend}] cancel"
            if kind != "EMBER_DONE":
                check(name, False, f"{kind} {r.get('error')}")
                continue
            limit = 30000 if backend == "webgpu" else 3000
            full = want(a.prompts[0], n=n) if backend == "cpu" else None
            if full is not None and len(full) < 2 * n:
                check(name, False, f"the native greedy run ends early ({len(full)} chars): pick a longer prompt for this check")
                continue
            check(name, r["aborted"] and not r["crossOriginIsolated"] and r["after_ms"] < limit,
                  f"aborted after {r['tokens_seen']} tokens (cross-origin isolated: {r['crossOriginIsolated']}); "
                  f"the next 1-token run finished {r['after_ms'] / 1000:.1f} s later (< {limit / 1000:.0f} s: the {n}-token run stopped)")

        # Cache Storage: the same URL loaded by two pages of one profile; the second must read
        # the cache (the server sees one GET) and generate the same text.
        prompt = a.prompts[0]
        want_text = want(prompt)
        url = f"/models/cached/{os.path.basename(a.model)}"
        q = urllib.parse.urlencode({"autorun": 1, "model": url, "backend": "cpu", "prompt": prompt, "n": a.n, "temp": 0})
        runs = [browser.run_page(f"{base}?{q}", a.timeout) for _ in range(2)]
        gets = Handler.requests.get(url, 0)
        if any(kind != "EMBER_DONE" for kind, _ in runs):
            check("cache", False, " / ".join(f"{kind} {r.get('error')}" for kind, r in runs))
        else:
            (_, r1), (_, r2) = runs
            sources = (r1.get("model_source"), r2.get("model_source"))
            same = r1["text"] == r2["text"] == want_text
            texts = "equal (= native)" if same else f"differ: {r1['text']!r} / {r2['text']!r} / native {want_text!r}"
            check("cache", sources == ("network", "cache") and gets == 1 and same,
                  f"model_source {sources[0]} then {sources[1]}, {gets} GET(s) of the model, texts {texts}")

        # Load errors: EMBER_ERROR with the reason, quickly (no hang, no crash).
        err_timeout = min(a.timeout, 60)
        too_big = 5 << 30
        for name, url, needles in [
            ("error: model over the limit", f"/models/too-big/{too_big}/{os.path.basename(a.model)}", ["5120 MiB", "at most 2048 MiB"]),
            ("error: HTTP 404", "/models/no-such-model.gguf", ["HTTP 404", "no-such-model.gguf"]),
        ]:
            q = urllib.parse.urlencode({"autorun": 1, "model": url, "backend": "cpu", "prompt": "Hi", "n": 4, "temp": 0})
            t = time.time()
            kind, r = browser.run_page(f"{base}?{q}", err_timeout)
            msg = str(r.get("error"))
            check(name, kind == "EMBER_ERROR" and all(s in msg for s in needles) and Handler.requests.get(url, 0) == 1,
                  f"{kind} in {time.time() - t:.1f} s: {msg[:200]!r}")

        # Chat: session.chat([{role: 'user', content}]) against `ember chat` (the same template).
        message = "Hello! Who are you?"
        reply = native_chat(a.ember, a.model, message, a.n)
        q = urllib.parse.urlencode({"autorun": 1, "chat": 1, "model": model_url, "backend": "cpu", "prompt": message, "n": a.n, "temp": 0, "cache": 0})
        kind, r = browser.run_page(f"{base}?{q}", a.timeout)
        if kind != "EMBER_DONE":
            check("chat", False, f"{kind} {r.get('error')}")
        else:
            check("chat", r["text"] == reply, f"{message!r} → {r['text']!r}" + ("" if r["text"] == reply else f" but `ember chat` says {reply!r}"))
        if a.screenshot:
            q = urllib.parse.urlencode({"autorun": 1, "chat": 1, "model": model_url, "backend": a.screenshot_backend,
                                        "prompt": "Hello! Who are you?", "n": 40, "temp": 0})
            kind, r = browser.run_page(f"{base}?{q}", a.timeout)
            if kind != "EMBER_DONE":
                failed += 1
                print(f"FAIL screenshot page: {kind} {r.get('error')}")
            else:
                browser.screenshot(a.screenshot)
                print(f"screenshot: {a.screenshot} (chat reply {r['text'][:60]!r}, {r['gen_tps']:.1f} tok/s)")
    finally:
        browser.close()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
