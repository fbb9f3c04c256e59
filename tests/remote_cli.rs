//! The remote engine against a real `ember serve` on loopback (see docs/REMOTE.md):
//! greedy output equal to the local engine's (run and chat), streaming, cancel
//! mid-stream, a server killed mid-stream (a typed error, the session usable
//! afterwards), local-first routing by prompt length and with the server down,
//! the API key kept out of errors and logs, https and http rules.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ember::remote::{ApiKey, RemoteConfig, RoutePolicy, Target};
use ember::{EngineConfig, Error, GenerateParams, StopReason};

/// An `ember serve` child on a free loopback port; killed on drop.
struct Server {
    child: Child,
    url: String,
    /// Its stderr (the log) so far.
    log: Arc<std::sync::Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(extra: &[&str]) -> Server {
    serve_env(&[], extra)
}

fn serve_env(env: &[(&str, &str)], extra: &[&str]) -> Server {
    let smol = smollm2();
    let mut child = ember()
        .args(["serve", "-m", smol.to_str().unwrap(), "--port", "0", "--backend", "cpu", "-t", "2"])
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let t0 = Instant::now();
    let url = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "ember serve exited before listening");
        if let Some(i) = line.find("http://") {
            break line[i..].split_whitespace().next().unwrap().to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "ember serve did not start");
    };
    // Keep draining its stderr so it never blocks on a full pipe.
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for l in err.lines().map_while(Result::ok) {
            let mut log = log2.lock().unwrap();
            log.push_str(&l);
            log.push('\n');
        }
    });
    Server { child, url, log }
}

fn free_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

fn engine(remote: Option<RemoteConfig>, route: Option<RoutePolicy>, n_ctx: Option<usize>) -> Arc<ember::Engine> {
    let config = EngineConfig { backend: ember::BackendKind::Cpu, n_threads: 2, n_ctx, remote, route, ..Default::default() };
    ember::Engine::load(smollm2(), config).unwrap()
}

fn greedy(n: usize) -> GenerateParams {
    GenerateParams {
        sampling: ember::sampling::SamplingParams { temperature: 0.0, ..Default::default() },
        max_tokens: n,
        ..Default::default()
    }
}

fn fast(url: &str) -> RemoteConfig {
    let mut c = RemoteConfig::new(url);
    c.backoff = Duration::from_millis(20);
    c.connect_timeout = Duration::from_secs(2);
    c
}

const PROMPT: &str = "The three primary colors are";

#[test]
fn remote_run_and_chat_equal_local_greedy() {
    let server = serve(&[]);
    let smol = smollm2();
    let m = smol.to_str().unwrap();
    let base = ["run", "-m", m, "--backend", "cpu", "-t", "2", "--temp", "0", "-n", "24", "-p", PROMPT];
    let local = run(&base);
    assert!(local.status.success());
    let local_run = &local;
    let remote = run(&[&base[..], &["--remote", &server.url]].concat());
    let stderr = String::from_utf8_lossy(&remote.stderr);
    assert!(remote.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&remote.stdout), String::from_utf8_lossy(&local.stdout));
    assert!(stderr.contains("route: remote (the route policy)"), "{stderr}");
    assert!(stderr.contains("generated 24 tokens"), "{stderr}");
    // Remote-only: no -m, no local model (nor the default one fetched).
    let only = ember()
        .env("EMBER_HOME", std::env::temp_dir().join("ember-remote-only-no-models"))
        .args(["run", "--temp", "0", "-n", "24", "-p", PROMPT, "--remote", &server.url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&only.stderr);
    assert!(only.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&only.stdout), String::from_utf8_lossy(&local.stdout));
    assert!(stderr.contains("route: remote (the route policy)") && !stderr.contains("fetching"), "{stderr}");
    // Local-first needs a local model to be first.
    let out = run(&["run", "-p", PROMPT, "--remote", &server.url, "--route", "local-first"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("needs a local model file"), "{err}");

    let chat = |extra: &[&str]| {
        let mut child = ember()
            .args(["chat", "--backend", "cpu", "-t", "2", "--temp", "0", "-n", "20"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"What is the capital of France?\nAnd of Italy?\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let (local, _) = chat(&["-m", m]);
    let (remote, stderr) = chat(&["-m", m, "--remote", &server.url]);
    assert_eq!(remote, local, "two chat turns, remote and local");
    assert_eq!(local.lines().count(), 2);
    assert_eq!(stderr.matches("route: remote").count(), 2, "{stderr}");
    let (remote_only, stderr) = chat(&["--remote", &server.url]);
    assert_eq!(remote_only, local, "two chat turns, remote-only");
    assert_eq!(stderr.matches("route: remote").count(), 2, "{stderr}");

    // The library: a remote-only engine answers complete/chat; local-only calls are typed errors.
    let e = ember::Engine::remote_only(EngineConfig { remote: Some(fast(&server.url)), ..Default::default() }).unwrap();
    assert_eq!((e.info().arch.as_str(), e.backend_name()), ("remote", "remote"));
    let mut s = e.new_session();
    let mut text = String::new();
    let st = s
        .complete(PROMPT, &greedy(24), &mut |t| {
            text.push_str(t);
            true
        })
        .unwrap();
    assert_eq!(text, String::from_utf8_lossy(&local_run.stdout).trim_end());
    let r = st.route.unwrap();
    assert_eq!((r.target, r.prompt_tokens), (Target::Remote, st.prompt_tokens));
    assert!(st.prompt_tokens > 0, "the server's count");
    assert!(matches!(s.eval(&[1, 2], ember::model::LogitsWanted::Last), Err(Error::NoLocalModel(_))));
    assert!(matches!(s.generate(&[1], &greedy(2), &mut |_| true), Err(Error::NoLocalModel(_))));
    assert!(matches!(e.tokenizer(), Err(Error::NoLocalModel(_))));
    let local_first = EngineConfig { remote: Some(fast(&server.url)), route: Some(RoutePolicy::LocalFirst), ..Default::default() };
    assert!(matches!(ember::Engine::remote_only(local_first), Err(Error::InvalidParam(_))));
}

#[test]
fn streaming_cancel_and_a_killed_server() {
    let mut server = serve(&[]);
    let e = engine(Some(fast(&server.url)), None, None);
    let mut s = e.new_session();

    // Streaming: many pieces, as they come, equal to the local text.
    let mut pieces = Vec::new();
    let st = s.complete(PROMPT, &greedy(16), &mut |t| {
        pieces.push(t.to_string());
        true
    });
    let st = st.unwrap();
    assert!(pieces.len() >= 8, "{pieces:?}");
    assert_eq!((st.generated_tokens, st.stop_reason), (16, StopReason::Length));
    assert_eq!(st.route.as_ref().unwrap().target, Target::Remote);
    let local_engine = engine(None, None, None);
    let mut local = String::new();
    local_engine
        .new_session()
        .complete(PROMPT, &greedy(16), &mut |t| {
            local.push_str(t);
            true
        })
        .unwrap();
    assert_eq!(pieces.concat(), local);

    // Cancel through the session's flag from another thread, mid-stream.
    let flag = s.cancel_handle();
    let t0 = Instant::now();
    let mut n = 0;
    let st = s
        .complete(PROMPT, &greedy(400), &mut |_| {
            n += 1;
            if n == 3 {
                let f = flag.clone();
                std::thread::spawn(move || f.store(true, Ordering::Relaxed));
            }
            true
        })
        .unwrap();
    assert_eq!(st.stop_reason, StopReason::Cancelled);
    assert!(n < 60, "stopped within a few pieces, got {n}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert!(!flag.load(Ordering::Relaxed), "the cancel is consumed");
    // on_text returning false stops too.
    let st = s.complete(PROMPT, &greedy(400), &mut |_| false).unwrap();
    assert_eq!((st.stop_reason, st.generated_tokens), (StopReason::Cancelled, 1));

    // The server dies mid-stream: a typed error, after the text so far.
    let mut got = 0;
    let r = s.complete(PROMPT, &greedy(1000), &mut |_| {
        got += 1;
        if got == 2 {
            let _ = server.child.kill();
        }
        true
    });
    match r {
        Err(Error::RemoteUnavailable(m)) => assert!(m.contains("stream"), "{m}"),
        other => panic!("expected RemoteUnavailable, got {other:?}"),
    }
    assert!(got >= 2);
    // With nothing listening: unavailable after the retries, quickly.
    let t0 = Instant::now();
    let r = s.complete(PROMPT, &greedy(4), &mut |_| true);
    assert!(matches!(r, Err(Error::RemoteUnavailable(_))), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    // The session is still usable: a new server on another port, a new engine config not needed
    // for the local path, and this session answers again once a server is back.
    let server2 = serve(&[]);
    let e2 = engine(Some(fast(&server2.url)), None, None);
    let mut s2 = e2.new_session();
    let mut text = String::new();
    s2.complete(PROMPT, &greedy(16), &mut |t| {
        text.push_str(t);
        true
    })
    .unwrap();
    assert_eq!(text, local);
    // And the first session's local engine is untouched: generate works on it.
    let ids = e.tokenizer().unwrap().encode(PROMPT, true, true).unwrap();
    let mut again = String::new();
    s.generate_from(&ids, &greedy(16), &mut |t| {
        again.push_str(t);
        true
    })
    .unwrap();
    assert_eq!(again, local);
}

#[test]
fn local_first_routes_by_prompt_length_and_survives_the_server_down() {
    let server = serve(&[]);
    let long = format!("{} {PROMPT}", "Once upon a time there was a small robot who loved to read books.".repeat(8));
    let e = engine(Some(fast(&server.url)), Some(RoutePolicy::LocalFirst), Some(64));
    let mut s = e.new_session();
    let mut text = String::new();
    let st = s.complete(PROMPT, &greedy(8), &mut |t| {
        text.push_str(t);
        true
    });
    let r = st.unwrap().route.unwrap();
    assert_eq!((r.target, r.reason.code()), (Target::Local, "fits"));
    let st = s.complete(&long, &greedy(8), &mut |_| true).unwrap();
    let r = st.route.unwrap();
    assert_eq!((r.target, r.reason.code()), (Target::Remote, "exceeds_context"), "{r}");
    assert!(r.prompt_tokens > 64);
    assert_eq!(st.prompt_tokens, r.prompt_tokens, "the server counts the same tokens");

    // The same through the CLI, with the reason on stderr.
    let smol = smollm2();
    let m = smol.to_str().unwrap();
    let cli = |prompt: &str, url: &str| {
        let out = run(&[
            "run",
            "-m",
            m,
            "--backend",
            "cpu",
            "-t",
            "2",
            "--temp",
            "0",
            "-n",
            "8",
            "--ctx",
            "64",
            "--route",
            "local-first",
            "--remote",
            url,
            "-p",
            prompt,
        ]);
        (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    };
    let (ok, _, err) = cli(&long, &server.url);
    assert!(ok && err.contains("route: remote (the prompt (") && err.contains("does not fit the local context (64))"), "{err}");
    let (ok, out, err) = cli(PROMPT, &server.url);
    assert!(ok && err.contains("route: local (the prompt fits the local context)"), "{err}");
    assert_eq!(out.trim_end(), text);

    // Server down: a prompt that fits is answered locally; one that does not fails clearly.
    let down = free_port_url();
    let (ok, out, err) = cli(PROMPT, &down);
    assert!(ok && err.contains("route: local"), "{err}");
    assert_eq!(out.trim_end(), text);
    let (ok, _, err) = cli(&long, &down);
    assert!(!ok && err.contains("remote engine unavailable"), "{err}");
}

#[test]
fn local_first_routes_by_memory_when_the_budget_lowers_the_context() {
    use ember::memory_plan::{MemoryPlan, PlanBackend, PlanModel, PlanRequest};
    let server = serve(&[]);
    // A budget that holds SmolLM2 with a 256-token context, not the 2048 asked for.
    let file = Arc::new(ember::gguf::GgufFile::open(smollm2()).unwrap());
    let pm = PlanModel::of(&ember::model::Model::from_gguf(file).unwrap());
    let f16 = (ember::kv_cache::KvType::F16, ember::kv_cache::KvType::F16);
    let req = PlanRequest { backend: PlanBackend::Cpu, n_ctx: 256, kv_types: f16, sessions: 1 };
    let budget = MemoryPlan::new(&pm, req).unwrap().total();
    let config = |remote: bool| EngineConfig {
        backend: ember::BackendKind::Cpu,
        n_threads: 2,
        n_ctx: Some(2048),
        memory_budget: Some(budget),
        remote: remote.then(|| fast(&server.url)),
        route: remote.then_some(RoutePolicy::LocalFirst),
        ..Default::default()
    };
    // Without a remote engine the same budget is refused, saying what fits.
    let err = ember::Engine::load(smollm2(), config(false)).err().expect("over the budget").to_string();
    assert!(err.contains("memory plan") && err.contains("--ctx 256"), "{err}");
    let e = ember::Engine::load(smollm2(), config(true)).unwrap();
    assert_eq!(e.n_ctx(), 256, "local-first lowers the context to the budget");
    assert_eq!(e.memory_limit().map(|m| m.wanted_ctx), Some(2048));
    let mut s = e.new_session();
    let r = s.complete(PROMPT, &greedy(4), &mut |_| true).unwrap().route.unwrap();
    assert_eq!((r.target, r.reason.code()), (Target::Local, "fits"));
    // ~400 tokens: within the 2048 asked for, over the 256 the memory allows.
    let long = format!("{} {PROMPT}", "Once upon a time there was a small robot who loved to read books.".repeat(28));
    let st = s.complete(&long, &greedy(4), &mut |_| true).unwrap();
    let r = st.route.unwrap();
    assert_eq!((r.target, r.reason.code()), (Target::Remote, "exceeds_memory"), "{r}");
    assert!(r.prompt_tokens > 256 && r.prompt_tokens < 2048, "{}", r.prompt_tokens);
    assert!(r.to_string().contains("would not fit the local memory plan (memory"), "{r}");
}

#[test]
fn serve_routes_each_request_and_logs_the_choice() {
    let upstream = serve(&[]);
    // A server with a 64-token context, local first, the upstream one behind it.
    let router = serve_env(&[("EMBER_LOG", "ember_server=info")], &["--ctx", "64", "--remote", &upstream.url, "--route", "local-first"]);
    let long = format!("{} {PROMPT}", "Once upon a time there was a small robot who loved to read books.".repeat(8));
    // The client: the library's remote engine, pointed at the router.
    let client = engine(Some(fast(&router.url)), None, None);
    let mut s = client.new_session();
    let mut text = |prompt: &str| {
        let mut t = String::new();
        s.complete(prompt, &greedy(8), &mut |p| {
            t.push_str(p);
            true
        })
        .unwrap();
        t
    };
    let (short_out, long_out) = (text(PROMPT), text(&long));
    // The same answers as a local engine with room for both prompts.
    let local = engine(None, None, None);
    let reference = |prompt: &str| {
        let mut t = String::new();
        local
            .new_session()
            .complete(prompt, &greedy(8), &mut |p| {
                t.push_str(p);
                true
            })
            .unwrap();
        t
    };
    assert_eq!(short_out, reference(PROMPT));
    assert_eq!(long_out, reference(&long));
    let n_tokens = |p: &str| local.tokenizer().unwrap().encode(p, true, true).unwrap().len();
    let (n_short, n_long) = (n_tokens(PROMPT), n_tokens(&long));
    // One info line per request: the route, its reason and the tokens.
    let t0 = Instant::now();
    let log = loop {
        let log = router.log.lock().unwrap().clone();
        if log.matches("route: ").count() >= 2 || t0.elapsed() > Duration::from_secs(10) {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("route: ")).collect();
    assert_eq!(lines.len(), 2, "{log}");
    let fits = format!("route: local (the prompt fits the local context) | prompt {n_short} tokens");
    assert!(lines[0].contains("INFO") && lines[0].contains(&fits), "{log}");
    let remote = format!("route: remote (the prompt ({n_long} tokens) does not fit the local context (64)) | prompt {n_long} tokens");
    assert!(lines[1].contains(&remote) && lines[1].contains("generated 8 tokens"), "{log}");
}

#[test]
fn the_api_key_stays_out_of_errors_and_logs() {
    const KEY: &str = "sk-ember-test-0123456789";
    let server = serve(&["--api-key", KEY]);
    let smol = smollm2();
    let m = smol.to_str().unwrap();
    let cli = |key: &str| {
        let out = ember()
            .env("EMBER_LOG", "trace")
            .args(["run", "-m", m, "--backend", "cpu", "-t", "2", "--temp", "0", "-n", "4", "-p", PROMPT])
            .args(["--remote", &server.url, "--api-key", key])
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, _, err) = cli(KEY);
    assert!(ok, "{err}");
    assert!(err.contains("POST") && !err.contains(KEY), "trace logs never show the key: {err}");
    let wrong = "sk-wrong-key-9876543210";
    let (ok, out, err) = cli(wrong);
    assert!(!ok && err.contains("HTTP 401"), "{err}");
    assert!(!err.contains(wrong) && !err.contains(KEY) && !out.contains(wrong), "{err}");

    // The library: the typed error, its Display and Debug.
    let mut c = fast(&server.url);
    c.api_key = Some(ApiKey::new(wrong));
    let e = engine(Some(c.clone()), None, None);
    assert!(!format!("{:?}", e.config()).contains(wrong));
    let r = e.new_session().complete(PROMPT, &greedy(4), &mut |_| true);
    let err = r.unwrap_err();
    assert!(matches!(err, Error::Remote { status: Some(401), .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(wrong));
}

#[test]
fn https_uses_rustls_and_plain_http_is_for_loopback() {
    let server = serve(&[]);
    // https to a plain-http port: the TLS handshake fails, typed, not retried forever.
    let https = server.url.replace("http://", "https://");
    let mut c = fast(&https);
    c.max_retries = 0;
    let e = engine(Some(c), None, None);
    let r = e.new_session().complete(PROMPT, &greedy(4), &mut |_| true);
    assert!(matches!(r, Err(Error::RemoteUnavailable(_))), "{r:?}");
    // http to another host needs the opt-in (checked before anything is loaded or sent).
    let smol = smollm2();
    let out = run(&["run", "-m", smol.to_str().unwrap(), "-p", "x", "--remote", "http://192.0.2.1:8080"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("only for a loopback host"), "{err}");
    let out = run(&["run", "-m", smol.to_str().unwrap(), "-p", "x", "--route", "remote"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --remote"));
}

/// llama.cpp's own server (`python -m llama_cpp.server`, from `llama-cpp-python[server]`)
/// when its venv exists (`$EMBER_LLAMACPP_VENV`, default `~/.cache/ember/llamacpp-venv`);
/// skipped with a message otherwise (CI does not build llama-cpp-python: too long).
fn llamacpp_server() -> Option<Server> {
    let venv = std::env::var_os("EMBER_LLAMACPP_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/ember/llamacpp-venv"));
    let python = venv.join("bin/python");
    let ok = python.exists()
        && std::process::Command::new(&python)
            .args(["-c", "import llama_cpp.server.app"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED: llama.cpp server test: no {} with llama-cpp-python[server] \
             (pip install 'llama-cpp-python[server]' into it to run this test)",
            venv.display()
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(&python)
        .args(["-m", "llama_cpp.server", "--model", smollm2().to_str().unwrap(), "--host", "127.0.0.1"])
        .args(["--port", &port.to_string(), "--n_ctx", "2048", "--n_threads", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let server = Server { child, url, log: Default::default() };
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(120), "llama.cpp's server did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    Some(server)
}

#[test]
fn llamacpp_server_greedy_streaming_cancel_and_kill() {
    let Some(mut server) = llamacpp_server() else { return };
    let remote = engine(Some(fast(&server.url)), None, None);
    let local = engine(None, None, None);
    let text = |e: &Arc<ember::Engine>, prompt: &str, n: usize| {
        let mut pieces = Vec::new();
        let st = e.new_session().complete(prompt, &greedy(n), &mut |t| {
            pieces.push(t.to_string());
            true
        });
        (st.unwrap(), pieces)
    };
    // Prompts without a near-tie in their first 16 greedy tokens (see docs/REMOTE.md:
    // "The three primary colors are" parts after 9 tokens, at a 0.06-logit tie).
    for prompt in ["The capital of France is", "Water boils at"] {
        let (st, pieces) = text(&remote, prompt, 16);
        assert_eq!(st.route.as_ref().unwrap().target, Target::Remote);
        assert!(pieces.len() >= 8, "streamed: {pieces:?}");
        assert_eq!(pieces.concat(), text(&local, prompt, 16).1.concat(), "{prompt}");
    }
    // Chat: the server renders the model's template itself.
    let tpl = ember::chat::ChatTemplate::for_tokenizer(remote.tokenizer().unwrap(), None).unwrap();
    let mut reply = String::new();
    let st = remote
        .new_session()
        .chat(&tpl, &[ember::chat::ChatMessage::user("What is 2+2?")], &greedy(12), &mut |t| {
            reply.push_str(t);
            true
        })
        .unwrap();
    assert!(!reply.is_empty() && st.generated_tokens > 0);
    // Cancel mid-stream through the session's flag.
    let mut s = remote.new_session();
    let flag = s.cancel_handle();
    let mut n = 0;
    let st = s
        .complete(PROMPT, &greedy(400), &mut |_| {
            n += 1;
            if n == 3 {
                flag.store(true, Ordering::Relaxed);
            }
            true
        })
        .unwrap();
    assert_eq!(st.stop_reason, StopReason::Cancelled);
    assert!(n < 40, "{n}");
    // Killed mid-stream: a typed error; the session then answers locally.
    let mut got = 0;
    let r = s.complete(PROMPT, &greedy(1000), &mut |_| {
        got += 1;
        if got == 2 {
            let _ = server.child.kill();
        }
        true
    });
    assert!(matches!(r, Err(Error::RemoteUnavailable(_))), "{r:?}");
    let ids = remote.tokenizer().unwrap().encode(PROMPT, true, true).unwrap();
    assert!(s.generate_from(&ids, &greedy(4), &mut |_| true).is_ok());
}
