//! Async exports without an async runtime: the blocking work runs on its own
//! thread and a one-shot future hands back the result. uniffi polls the future
//! from the foreign side (Kotlin coroutines, Swift async, Python asyncio).
//! Dropping the future before it completes (a cancelled coroutine or Task)
//! sets the session's cancel flag, so the generation stops within a token.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::{guard, EmberError};

struct Slot<T> {
    value: Option<Result<T, EmberError>>,
    waker: Option<Waker>,
    done: bool,
}

pub(crate) struct Receiver<T> {
    slot: Arc<Mutex<Slot<T>>>,
    cancel_on_drop: Option<Arc<AtomicBool>>,
}

/// Runs `f` on a new thread; the returned future resolves to its result.
pub(crate) fn spawn<T, F>(name: &str, cancel_on_drop: Option<Arc<AtomicBool>>, f: F) -> Receiver<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, EmberError> + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot { value: None, waker: None, done: false }));
    let s2 = slot.clone();
    let what = name.to_string();
    let spawned = std::thread::Builder::new().name(format!("ember-{name}")).spawn(move || {
        let r = guard(&what, f);
        let mut s = s2.lock().unwrap_or_else(|p| p.into_inner());
        s.value = Some(r);
        s.done = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    });
    if let Err(e) = spawned {
        let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
        s.value = Some(Err(EmberError::Internal(format!("cannot start a thread for {name}: {e}"))));
        s.done = true;
    }
    Receiver { slot, cancel_on_drop }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, EmberError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None if s.done => Poll::Ready(Err(EmberError::Internal("result already taken".into()))),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let done = self.slot.lock().map(|s| s.done).unwrap_or(true);
        if let (false, Some(c)) = (done, &self.cancel_on_drop) {
            c.store(true, Ordering::Relaxed);
        }
    }
}
