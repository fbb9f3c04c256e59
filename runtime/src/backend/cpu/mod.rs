//! The CPU backend: a persistent thread pool, kernels that split their
//! work by rows over it, and the executor that runs a model's graph on them.

mod attention;
mod attention_kvq;
mod exec;
mod matmul;
pub mod simd;
pub mod team;

pub use crate::graph::profile::{self, OpKind, OpProfile, OpStat};
pub use attention::{attention, attention_strided, AttnShape};
pub use attention_kvq::attention_kvq;
pub use exec::CpuRunner;
pub use matmul::{matmul, matmul_many, MatJob, MatmulScratch};
pub use simd::CpuKernels;

use crate::{Error, Result};

/// Threads for the CPU kernels. Created once per engine; `install` runs a
/// whole forward pass inside the pool so nested `par_iter`s use its threads.
pub struct CpuBackend {
    pool: Pool,
    /// One team at a time on the pool: two concurrent teams could each hold
    /// some of the threads and wait for the others forever.
    #[cfg(not(target_arch = "wasm32"))]
    team: std::sync::Mutex<()>,
    n_threads: usize,
    kernels: &'static CpuKernels,
}

impl CpuBackend {
    pub fn new(n_threads: usize) -> Result<CpuBackend> {
        Self::with_kernels(n_threads, false)
    }

    /// `force_scalar`: use the portable scalar kernels even where SIMD ones exist.
    pub fn with_kernels(n_threads: usize, force_scalar: bool) -> Result<CpuBackend> {
        let kernels = CpuKernels::detect(force_scalar);
        log::info!("cpu kernels: {}{}", kernels.isa, if force_scalar { " (forced)" } else { "" });
        Self::with_table(n_threads, kernels)
    }

    /// With a given kernel table (one of [`CpuKernels::available`]): the
    /// op-case tests run every table this CPU has.
    pub fn with_table(n_threads: usize, kernels: &'static CpuKernels) -> Result<CpuBackend> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if n_threads > cores {
            // More threads than cores only slows the spinning team down (20× at -t 1000).
            return Err(Error::InvalidParam(format!("{n_threads} threads requested; this machine runs {cores} at once (0 = default)")));
        }
        let n_threads = if n_threads == 0 { default_threads() } else { n_threads };
        #[cfg(not(target_arch = "wasm32"))]
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n_threads)
            .thread_name(|i| format!("ember-cpu-{i}"))
            .build()
            .map_err(|e| Error::InvalidParam(format!("cannot start {n_threads} threads: {e}")))?;
        #[cfg(target_arch = "wasm32")]
        let pool = Pool;
        Ok(CpuBackend {
            pool,
            #[cfg(not(target_arch = "wasm32"))]
            team: std::sync::Mutex::new(()),
            n_threads,
            kernels,
        })
    }

    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// The kernel table chosen at construction.
    pub fn kernels(&self) -> &'static CpuKernels {
        self.kernels
    }

    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// Runs one forward pass over `n_tok` tokens in the pool: a generation
    /// step (a few tokens: many short parallel loops) on a spinning
    /// [`team`], a prompt batch (long loops) through rayon.
    pub fn install_forward<R: Send>(&self, n_tok: usize, f: impl FnOnce() -> R + Send) -> R {
        #[cfg(target_arch = "wasm32")]
        let _ = n_tok;
        #[cfg(not(target_arch = "wasm32"))]
        if n_tok < TEAM_MAX_TOK {
            let _one = self.team.lock().unwrap_or_else(|e| e.into_inner());
            return team::run(&self.pool, f);
        }
        self.pool.install(f)
    }
}

#[cfg(not(target_arch = "wasm32"))]
type Pool = rayon::ThreadPool;

/// In the browser (wasm32 without threads) the pool is the calling thread: rayon cannot spawn
/// workers there, and its global pool falls back to running every parallel loop on the current
/// thread, which is what the kernels' `par_iter`s then do.
#[cfg(target_arch = "wasm32")]
struct Pool;

#[cfg(target_arch = "wasm32")]
impl Pool {
    fn install<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// Forward passes over fewer tokens than this run on a spinning team: the
/// token-at-a-time case, whose matmuls take the generation path.
#[cfg(not(target_arch = "wasm32"))]
const TEAM_MAX_TOK: usize = 4;

/// The number of physical-ish cores to use by default.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 16)
}

/// A raw pointer that may be shared by threads writing disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub *mut T);
unsafe impl<T> Send for SharedMut<T> {}
unsafe impl<T> Sync for SharedMut<T> {}
