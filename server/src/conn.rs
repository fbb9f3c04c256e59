//! The accept loop: hyper's HTTP/1 server per connection, with the limits
//! `axum::serve` does not set.
//!
//! - **Idle connections are closed.** hyper's header-read timeout runs while a
//!   connection waits for a request's header: from the moment it is accepted,
//!   and again from the end of each response on a keep-alive connection. A
//!   client that sends nothing, half a header, or nothing more after its last
//!   response is dropped after [`ServerConfig::idle_timeout`]. The timer is
//!   stopped while a request is in flight: a long prompt evaluation, a
//!   non-streaming generation or a server-sent-events stream (however slowly the
//!   client reads it) is never cut. A body that stalls is the handlers' own
//!   timeout (`read_body` in lib.rs), 408.
//! - **At most [`ServerConfig::max_connections`] are open.** Past that the loop
//!   stops accepting; new clients wait in the kernel's listen backlog until one
//!   closes. A flood holds bounded memory (~12 KB per connection).
//! - **Memory goes back to the OS** once connections have closed and no new
//!   one has arrived for [`TRIM_AFTER`] ([`crate::memory`]). Idle keep-alive
//!   connections left open do not hold it back.
//! - **Ctrl-C** (the `shutdown` future) stops accepting, closes idle
//!   connections, lets requests in flight finish, then returns (as
//!   `axum::serve(..).with_graceful_shutdown(..)` did).

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};

use crate::{memory, router, AppState};

/// How long after connections closed, with none accepted meanwhile, the server
/// returns free memory to the OS (not while a burst is still arriving).
pub const TRIM_AFTER: Duration = Duration::from_secs(1);

/// Open connections, and a wake-up when there are none.
struct Slots {
    /// One permit per connection that may open (the accept loop takes one before accepting).
    sem: Semaphore,
    accepted: AtomicU64,
    /// Woken when a connection closes.
    closed: Notify,
}

/// One open connection: gives its slot back when dropped (also if its task panics).
struct Open(Arc<Slots>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.sem.add_permits(1);
        self.0.closed.notify_one();
    }
}

/// Serves `state` on `listener` until `shutdown` completes, then waits for the
/// requests in flight. See the module docs for the limits.
pub async fn serve_on<F>(listener: TcpListener, state: Arc<AppState>, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let max = state.config.max_connections.max(1);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(state.config.idle_timeout);
    let app = router(state);
    let slots = Arc::new(Slots { sem: Semaphore::new(max), accepted: AtomicU64::new(0), closed: Notify::new() });
    let trimmer = tokio::spawn(trim_when_quiet(slots.clone()));
    // Tells every connection to finish its request in flight and close.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut warned: Option<Instant> = None;
    loop {
        let warn_due = match warned {
            Some(t) => t.elapsed() > Duration::from_secs(60),
            None => true,
        };
        if slots.sem.available_permits() == 0 && warn_due {
            log::warn!("{max} connections open (--max-connections): new ones wait until one closes");
            warned = Some(Instant::now());
        }
        let permit = tokio::select! {
            p = slots.sem.acquire() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            s = accept(&listener) => s,
            _ = &mut shutdown => break,
        };
        // The permit travels with the connection's task, as `Open`.
        permit.forget();
        slots.accepted.fetch_add(1, Ordering::Relaxed);
        let open = Open(slots.clone());
        // Server-sent events are many small writes: don't let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _open = open;
            let mut conn = pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                // Header timeouts, clients that hang up mid-request, malformed requests.
                log::debug!("connection closed: {e}");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection gives its permit back when it has closed.
    let _all = slots.sem.acquire_many(max as u32).await;
    trimmer.abort();
    Ok(())
}

/// The next connection; transient accept errors are retried (a full file
/// descriptor table after a pause, as hyper and axum do).
async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => {
                log::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Returns free heap to the OS after each burst: once connections have closed
/// and none has been accepted for [`TRIM_AFTER`]. Under steady traffic it waits
/// (the freed memory is being reused); a client keeping an idle connection open
/// does not stop it.
async fn trim_when_quiet(slots: Arc<Slots>) {
    loop {
        // Something was freed (closes meanwhile are covered by this trim; one more wakes it again).
        slots.closed.notified().await;
        loop {
            let seen = slots.accepted.load(Ordering::Relaxed);
            tokio::time::sleep(TRIM_AFTER).await;
            if slots.accepted.load(Ordering::Relaxed) == seen {
                break;
            }
        }
        let t = Instant::now();
        let released = memory::release_free_memory();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        log::debug!("quiet: malloc_trim {} in {ms:.1} ms", if released { "returned memory to the OS" } else { "had nothing to return" });
    }
}
