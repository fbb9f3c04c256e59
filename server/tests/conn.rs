//! The accept loop over real loopback sockets (the tiny llama fixture): idle
//! connections closed, a stalled body answered 408, the connection cap, and
//! graceful shutdown. The server runs on its own runtime thread; the clients are
//! plain blocking sockets.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ember::chat::ChatTemplate;
use ember::{Engine, EngineConfig};
use ember_server::api::Limits;
use ember_server::{conn, AppState, ServerConfig};
use tokio::sync::oneshot;

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Ctrl-C, in effect; returns how long the server took to return.
    fn shutdown(&mut self) -> Duration {
        let t = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
        t.elapsed()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.shutdown();
        }
    }
}

fn start(idle_timeout: Duration, max_connections: usize) -> Running {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/arch/llama.gguf");
    let engine = Engine::load(p, EngineConfig { n_threads: 1, n_ctx: Some(128), ..Default::default() }).unwrap();
    let config = ServerConfig {
        host: "127.0.0.1".into(),
        port: 0,
        api_key: None,
        parallel: 1,
        model_id: "tiny".into(),
        model_aliases: vec![],
        limits: Limits { max_body_bytes: 1024, max_prompt_tokens: 100, max_tokens: 16, n_ctx: 128 },
        idle_timeout,
        max_connections,
        slot_save_path: None,
    };
    let template = ChatTemplate::from_tokenizer(engine.tokenizer().unwrap());
    let state = AppState::new(engine, template, config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let thread = thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            conn::serve_on(listener, state, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
    });
    Running { addr, stop: Some(tx), thread: Some(thread) }
}

fn connect(r: &Running) -> TcpStream {
    let s = TcpStream::connect(r.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the server closes the connection: what it sent, and when (None: still open after 10 s).
fn until_closed(s: &mut TcpStream) -> (String, Option<Instant>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), Some(Instant::now())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (String::from_utf8_lossy(&got).into_owned(), Some(Instant::now())),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), None),
        }
    }
}

/// One whole response on a keep-alive connection (headers, then `content-length` bytes).
fn one_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut buf).unwrap(), 1, "closed mid-header: {}", String::from_utf8_lossy(&got));
        got.push(buf[0]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().trim().parse().unwrap();
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    format!("{head}{}", String::from_utf8_lossy(&body))
}

const IDLE: Duration = Duration::from_millis(400);

fn assert_closed_after_idle(what: &str, since: Instant, at: Option<Instant>) {
    let at = at.unwrap_or_else(|| panic!("{what}: still open after 10 s"));
    let took = at - since;
    assert!(
        took >= IDLE - Duration::from_millis(50) && took < IDLE + Duration::from_secs(3),
        "{what}: closed after {took:?} (idle timeout {IDLE:?})"
    );
}

#[test]
fn idle_connections_are_closed() {
    let srv = start(IDLE, 64);
    // Opened, nothing sent.
    let t = Instant::now();
    let mut silent = connect(&srv);
    // Half a header.
    let mut half = connect(&srv);
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    // A header, then a body that stalls: 408 (the body gets the same time again).
    let mut stalled = connect(&srv);
    stalled
        .write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"pro")
        .unwrap();
    let (got, at) = until_closed(&mut silent);
    assert_eq!(got, "");
    assert_closed_after_idle("silent", t, at);
    let (got, at) = until_closed(&mut half);
    assert!(!got.contains("200 OK"), "{got}");
    assert_closed_after_idle("half a header", t, at);
    let (got, at) = until_closed(&mut stalled);
    assert!(got.starts_with("HTTP/1.1 408") && got.contains("\"request_timeout\""), "{got}");
    assert_closed_after_idle("stalled body", t, at);

    // Keep-alive: requests within the timeout are served on the same
    // connection, however long it has been open; then silence closes it.
    let mut ka = connect(&srv);
    for _ in 0..3 {
        ka.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(one_response(&mut ka).contains("\"status\":\"ok\""));
        thread::sleep(IDLE / 2);
    }
    ka.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(one_response(&mut ka).contains("\"status\":\"ok\""));
    let t = Instant::now();
    let (got, at) = until_closed(&mut ka);
    assert_eq!(got, "");
    assert_closed_after_idle("keep-alive", t, at);
}

#[test]
fn a_slow_reader_of_a_stream_is_not_cut() {
    let srv = start(IDLE, 64);
    let mut s = connect(&srv);
    let body = r#"{"prompt":[1,20,30],"max_tokens":16,"temperature":0,"stream":true}"#;
    write!(s, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .unwrap();
    // Read in dribs, pausing longer than the idle timeout in all. (The tiny
    // model's stream may already sit in socket buffers; tests/server's long
    // generations cover a response still being produced.)
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    let t = Instant::now();
    while !got.windows(12).any(|w| w == b"data: [DONE]") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed mid-stream after {:?}: {}", t.elapsed(), String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        thread::sleep(IDLE / 8);
    }
    assert!(t.elapsed() > IDLE, "the stream was read in {:?}", t.elapsed());
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200") && text.contains("\"finish_reason\":\"length\""), "{text}");
}

#[test]
fn connections_over_the_cap_wait_for_one_to_close() {
    let srv = start(Duration::from_secs(30), 2);
    let a = connect(&srv);
    let mut b = connect(&srv);
    b.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(one_response(&mut b).contains("\"status\":\"ok\""));
    // The third connects (the kernel's backlog) but is not served while two are open.
    let mut c = connect(&srv);
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = [0u8; 1];
    let e = c.read(&mut buf).expect_err("served over the cap");
    assert!(matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{e}");
    // One closes: the waiting one is served.
    drop(a);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(one_response(&mut c).contains("\"status\":\"ok\""));
}

#[test]
fn shutdown_closes_idle_connections_and_returns() {
    let mut srv = start(Duration::from_secs(30), 64);
    let mut idle = connect(&srv);
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(one_response(&mut idle).contains("\"status\":\"ok\""));
    let took = srv.shutdown();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?} with an idle keep-alive connection open");
    let (_, at) = until_closed(&mut idle);
    assert!(at.is_some(), "the idle connection is closed");
    assert!(TcpStream::connect(srv.addr).is_err(), "no longer listening");
}
