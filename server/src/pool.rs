//! A pool of at most N sessions behind a semaphore: requests beyond N wait in
//! the semaphore's (fair, FIFO) queue. A request takes the idle session whose
//! cached tokens share the longest prefix with its prompt, so repeated system
//! prompts and growing conversations reuse the KV cache; a slot that never saw
//! a prompt's prefix copies it from the pool's [`PrefixCache`].
//!
//! Slots are numbered `0..N` as sessions are made (the lowest free number),
//! so llama-server's slot actions (`POST /slots/{id}?action=save|restore|erase`)
//! can name one: [`SessionPool::with_slot`].

use std::sync::{Arc, Mutex};

use ember::session::{common_prefix_len, Session};
use ember::speculative::Speculation;
use ember::Engine;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::prefix_cache::PrefixCache;

pub struct SessionPool {
    engine: Arc<Engine>,
    n_ctx: usize,
    /// Idle sessions with their slot numbers.
    idle: Mutex<Vec<(usize, Session)>>,
    /// Slot numbers of the sessions made so far (idle or lent).
    made: Mutex<Vec<usize>>,
    sem: Arc<Semaphore>,
    size: usize,
    /// Every session drafts this way (`ember serve --lookup/--draft-model`).
    speculation: Option<Speculation>,
    /// The last prompt's rows, for the other slots.
    prefix: PrefixCache,
}

/// A session lent by the pool; goes back when dropped.
pub struct Lease {
    slot: usize,
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
            made: Mutex::new(Vec::new()),
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
        let taken = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let best = idle.iter().enumerate().max_by_key(|(_, (_, s))| common_prefix_len(s.tokens(), prompt)).map(|(i, _)| i);
            best.map(|i| idle.swap_remove(i))
        };
        let (slot, session) = match taken {
            Some(t) => t,
            None => {
                let slot = self.claim_slot(None).ok_or_else(|| anyhow::anyhow!("no free slot"))?;
                match self.new_session() {
                    Ok(s) => (slot, s),
                    Err(e) => {
                        self.release_slot(slot);
                        return Err(e);
                    }
                }
            }
        };
        Ok(Lease { slot, session: Some(session), pool: self.clone(), _permit: permit })
    }

    /// Runs `f` on slot `id`'s session — made empty when the slot was never
    /// used — off the async threads, while no request can take it. The slot
    /// must be idle ([`SlotError::Busy`] while a request has it).
    pub async fn with_slot<T: Send + 'static>(
        self: &Arc<Self>,
        id: usize,
        f: impl FnOnce(&mut Session) -> ember::Result<T> + Send + 'static,
    ) -> Result<T, SlotError> {
        if id >= self.size {
            return Err(SlotError::NoSuchSlot { id, size: self.size });
        }
        // A permit, as a request would take: the pool never holds more than N sessions out.
        let _permit = self.sem.clone().acquire_owned().await.map_err(|e| SlotError::Failed(ember::Error::Backend(e.to_string())))?;
        let taken = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.iter().position(|(slot, _)| *slot == id).map(|i| idle.swap_remove(i))
        };
        let session = match taken {
            Some((_, s)) => s,
            None => {
                if self.claim_slot(Some(id)).is_none() {
                    return Err(SlotError::Busy(id));
                }
                match self.new_session() {
                    Ok(s) => s,
                    Err(e) => {
                        self.release_slot(id);
                        return Err(SlotError::Failed(ember::Error::Backend(e.to_string())));
                    }
                }
            }
        };
        let done = tokio::task::spawn_blocking(move || {
            let mut session = session;
            let r = f(&mut session);
            (session, r)
        })
        .await;
        match done {
            Ok((session, r)) => {
                self.idle.lock().unwrap_or_else(|e| e.into_inner()).push((id, session));
                r.map_err(SlotError::Failed)
            }
            Err(e) => {
                // The session is gone with the panicked task: its number is free again.
                self.release_slot(id);
                Err(SlotError::Failed(ember::Error::Backend(format!("slot {id}: {e}"))))
            }
        }
    }

    /// Every slot made so far: its number, whether a request has it, and the
    /// tokens an idle one caches.
    pub fn slots(&self) -> Vec<(usize, bool, Option<usize>)> {
        let made = self.made.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(usize, bool, Option<usize>)> = made
            .iter()
            .map(|&id| match idle.iter().find(|(slot, _)| *slot == id) {
                Some((_, s)) => (id, false, Some(s.tokens().len())),
                None => (id, true, None),
            })
            .collect();
        out.sort_by_key(|e| e.0);
        out
    }

    fn new_session(&self) -> anyhow::Result<Session> {
        let mut s = self.engine.new_session_with_ctx(self.n_ctx)?;
        s.set_speculation(self.speculation.as_ref())?;
        Ok(s)
    }

    /// Marks slot `want` (or the lowest free number) as made; `None` when it
    /// already is (or all are).
    fn claim_slot(&self, want: Option<usize>) -> Option<usize> {
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        let id = match want {
            Some(id) => (!made.contains(&id)).then_some(id)?,
            None => (0..self.size).find(|i| !made.contains(i))?,
        };
        made.push(id);
        Some(id)
    }

    fn release_slot(&self, id: usize) {
        self.made.lock().unwrap_or_else(|e| e.into_inner()).retain(|&m| m != id);
    }
}

/// Why a slot action could not run.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("no slot {id} (slots 0..{size})")]
    NoSuchSlot { id: usize, size: usize },
    #[error("slot {0} is processing a request")]
    Busy(usize),
    #[error("{0}")]
    Failed(ember::Error),
}

impl Lease {
    /// The slot number of the lent session.
    pub fn slot(&self) -> usize {
        self.slot
    }

    pub fn session(&mut self) -> &mut Session {
        self.session.as_mut().expect("a lease holds its session until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push((self.slot, s));
        }
    }
}
