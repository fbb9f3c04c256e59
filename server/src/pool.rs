//! A pool of at most N sessions behind a semaphore: requests beyond N wait in
//! the semaphore's (fair, FIFO) queue. A request takes the idle session whose
//! cached tokens share the longest prefix with its prompt, so repeated system
//! prompts and growing conversations reuse the KV cache; a slot that never saw
//! a prompt's prefix copies it from the pool's [`PrefixCache`].

use std::sync::{Arc, Mutex};

use ember::session::{common_prefix_len, Session};
use ember::speculative::Speculation;
use ember::Engine;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::prefix_cache::PrefixCache;

pub struct SessionPool {
    engine: Arc<Engine>,
    n_ctx: usize,
    idle: Mutex<Vec<Session>>,
    sem: Arc<Semaphore>,
    size: usize,
    /// Every session drafts this way (`ember serve --lookup/--draft-model`).
    speculation: Option<Speculation>,
    /// The last prompt's rows, for the other slots.
    prefix: PrefixCache,
}

/// A session lent by the pool; goes back when dropped.
pub struct Lease {
    session: Option<Session>,
    pool: Arc<SessionPool>,
    _permit: OwnedSemaphorePermit,
}

impl SessionPool {
    pub fn new(engine: Arc<Engine>, size: usize, n_ctx: usize, speculation: Option<Speculation>) -> Arc<SessionPool> {
        let size = size.max(1);
        Arc::new(SessionPool {
            engine,
            n_ctx,
            idle: Mutex::new(Vec::new()),
            sem: Arc::new(Semaphore::new(size)),
            size,
            speculation,
            prefix: PrefixCache::default(),
        })
    }

    /// The prefix shared across slots ([`PrefixCache`]).
    pub fn prefix_cache(&self) -> &PrefixCache {
        &self.prefix
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Sessions generating now.
    pub fn busy(&self) -> usize {
        self.size - self.sem.available_permits()
    }

    /// Waits for a free slot, then lends the best session for `prompt`.
    pub async fn acquire(self: &Arc<Self>, prompt: &[u32]) -> anyhow::Result<Lease> {
        let permit = self.sem.clone().acquire_owned().await?;
        let session = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let best = idle.iter().enumerate().max_by_key(|(_, s)| common_prefix_len(s.tokens(), prompt)).map(|(i, _)| i);
            best.map(|i| idle.swap_remove(i))
        };
        let session = match session {
            Some(s) => s,
            None => {
                let mut s = self.engine.new_session_with_ctx(self.n_ctx)?;
                s.set_speculation(self.speculation.as_ref())?;
                s
            }
        };
        Ok(Lease { session: Some(session), pool: self.clone(), _permit: permit })
    }
}

impl Lease {
    pub fn session(&mut self) -> &mut Session {
        self.session.as_mut().expect("a lease holds its session until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push(s);
        }
    }
}
