//! Waiting for the GPU: wgpu's futures (device requests, error scopes), the queue going idle,
//! and the callbacks of buffer mappings.
//!
//! Natively these block: `pollster` for futures, `device.poll(Wait)` for the queue (whose
//! callbacks, `map_async`'s included, have run when it returns). In the browser nothing may
//! block: WebGPU's promises resolve only when the page's event loop runs, and `device.poll`
//! does nothing. There the embedder (web/) installs a *yield* hook with [`set_browser_yield`]:
//! an import wrapped by JavaScript Promise Integration (`WebAssembly.Suspending`), which
//! suspends the WebAssembly stack, lets the event loop run once and resumes it. Every wait is
//! then a loop of "poll, else yield", and the rest of the backend (and the whole runtime
//! above it) stays synchronous, the same code as natively. Without the hook (a browser with no
//! JSPI) a wait is an error, [`Error::Backend`], and `backend auto` runs on the CPU.

use std::future::Future;
use std::sync::atomic::Ordering;

use super::device::GpuContext;
use crate::{Error, Result};

#[cfg(target_arch = "wasm32")]
static YIELD: std::sync::OnceLock<fn(u32)> = std::sync::OnceLock::new();

/// The browser's yield (see the module doc): `hook(n)` must return only after the event loop
/// has run (a `Suspending` import awaiting a new task); `n` counts the yields of this wait
/// (0 first), so the page can yield at once early in a wait and sleep longer later. Set
/// once; later calls are ignored.
#[cfg(target_arch = "wasm32")]
pub fn set_browser_yield(hook: fn(u32)) {
    let _ = YIELD.set(hook);
}

/// Whether waits can work here: always natively; in the browser once [`set_browser_yield`] ran.
pub fn can_wait() -> bool {
    #[cfg(target_arch = "wasm32")]
    return YIELD.get().is_some();
    #[cfg(not(target_arch = "wasm32"))]
    true
}

/// Lets the browser's event loop run once; `n`: the yields of this wait so far.
#[cfg(target_arch = "wasm32")]
fn browser_yield(n: u32) -> Result<()> {
    let hook = YIELD.get().ok_or_else(|| {
        Error::Backend(
            "WebGPU needs JavaScript Promise Integration (WebAssembly.Suspending: Chrome/Edge 137+) to wait for the GPU; this browser has none".into(),
        )
    })?;
    hook(n);
    Ok(())
}

/// Runs `f` to completion (a wgpu future: a device request, an error scope).
pub fn block_on<F: Future>(f: F) -> Result<F::Output> {
    #[cfg(not(target_arch = "wasm32"))]
    return Ok(pollster::block_on(f));
    #[cfg(target_arch = "wasm32")]
    {
        // WebGPU's futures are woken from promise callbacks, which run while we yield: polling
        // after every yield needs no waker.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut f = std::pin::pin!(f);
        for n in 0.. {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return Ok(v);
            }
            browser_yield(n)?;
        }
        unreachable!()
    }
}

/// Blocks until the queue is idle. wgpu gives up waiting after 60 s; a big
/// micro-batch on a software adapter under load can take longer, so keep
/// waiting, up to the context's watchdog: past it, or when the device was
/// lost, [`Error::DeviceLost`] (`backend auto` then continues on the CPU).
pub fn wait(ctx: &GpuContext) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        ctx.queue.on_submitted_work_done(move || flag.store(true, Ordering::Relaxed));
        wait_for(ctx, || done.load(Ordering::Relaxed).then_some(()))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let start = crate::time::Instant::now();
        let step = ctx.watchdog.min(std::time::Duration::from_secs(60));
        loop {
            check_lost(ctx)?;
            let wait = wgpu::PollType::Wait { submission_index: None, timeout: Some(step) };
            match ctx.device.poll(wait) {
                Ok(_) if ctx.lost.load(Ordering::Relaxed) => {}
                Ok(_) => return Ok(()),
                Err(wgpu::PollError::Timeout) => {}
                Err(e) => return Err(Error::Backend(format!("wgpu poll: {e:?}"))),
            }
            check_watchdog(ctx, start)?;
            log::warn!("wgpu: still waiting for the GPU after {} s", start.elapsed().as_secs());
        }
    }
}

/// Waits until `ready` gives a value (a GPU callback has run): natively once the queue is
/// idle, when every callback has run; in the browser by yielding until it does.
pub fn wait_for<T>(ctx: &GpuContext, mut ready: impl FnMut() -> Option<T>) -> Result<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        wait(ctx)?;
        ready().ok_or_else(|| Error::Backend("wgpu: a callback did not run when the queue was idle".into()))
    }
    #[cfg(target_arch = "wasm32")]
    {
        let start = crate::time::Instant::now();
        for n in 0.. {
            check_lost(ctx)?;
            if let Some(v) = ready() {
                return Ok(v);
            }
            check_watchdog(ctx, start)?;
            browser_yield(n)?;
        }
        unreachable!()
    }
}

fn check_lost(ctx: &GpuContext) -> Result<()> {
    if ctx.lost.load(Ordering::Relaxed) {
        return Err(Error::DeviceLost(format!("{}: the device was lost", ctx.profile.adapter_name)));
    }
    Ok(())
}

fn check_watchdog(ctx: &GpuContext, start: crate::time::Instant) -> Result<()> {
    if start.elapsed() >= ctx.watchdog {
        return Err(Error::DeviceLost(format!(
            "{}: a submit did not finish within the {} s watchdog",
            ctx.profile.adapter_name,
            ctx.watchdog.as_secs()
        )));
    }
    Ok(())
}
