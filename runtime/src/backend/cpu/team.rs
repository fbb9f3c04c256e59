//! A team of spinning threads for one generation step.
//!
//! Generating a token runs ~160 short parallel loops (each 8–15 MB of
//! weights, ~0.1–0.5 ms) separated by a little serial work (norms, RoPE,
//! the KV write). Between them rayon's idle workers yield and fall asleep;
//! waking one costs a futex call and, in a VM, an inter-processor interrupt,
//! and its share of the next loop starts late: measured ~9% of the loops'
//! wall time idle on the 2B model (2 threads). llama.cpp spins its threads
//! on a barrier for the same reason.
//!
//! [`run`] turns the pool's threads into a team for the duration of one
//! closure: the thread running the closure leads, the others spin waiting
//! for the leader's next loop. [`for_each`] is the parallel loop every CPU
//! kernel uses: on a team it hands out task indices through one atomic
//! counter; anywhere else it is rayon's `for_each`.
//!
//! The spinning stops when the closure returns: between tokens the threads
//! sleep in rayon as before.

use std::any::Any;
use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Mutex;

use rayon::prelude::*;

/// The loop body of the current round, lifetime erased (see [`Team::lead`]).
type Body = dyn Fn(usize) + Sync;

struct Team {
    /// Members, the leader included.
    n: usize,
    /// Bumped by the leader to start a round.
    round: AtomicU64,
    /// This round's body: `*const &Body` (a thin pointer to the fat one).
    body: AtomicPtr<&'static Body>,
    n_tasks: AtomicUsize,
    /// The next task index to hand out.
    next: AtomicUsize,
    /// Helpers done with this round.
    done: AtomicUsize,
    stop: AtomicBool,
    /// A helper's task panicked: the payload, re-raised by the leader.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

thread_local! {
    /// The team this thread leads, while it leads one.
    static LEADING: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
    /// This thread is running a round's task: a loop nested in it runs
    /// sequentially (every other member is busy with the round anyway).
    static IN_ROUND: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on `pool` with its threads as a spinning team (see the module
/// doc); with one thread, plain `install`. One team per pool at a time (the
/// caller's to ensure: `CpuBackend` holds a lock): two teams each holding
/// some of the threads would wait for each other.
pub fn run<R: Send>(pool: &rayon::ThreadPool, f: impl FnOnce() -> R + Send) -> R {
    let n = pool.current_num_threads();
    if n < 2 {
        return pool.install(f);
    }
    let team = Team {
        n,
        round: AtomicU64::new(0),
        body: AtomicPtr::new(std::ptr::null_mut()),
        n_tasks: AtomicUsize::new(0),
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        panic: Mutex::new(None),
    };
    let f = Mutex::new(Some(f));
    let mut out = pool.broadcast(|ctx| {
        if ctx.index() != 0 {
            team.help();
            return None;
        }
        // Helpers stop however the leader leaves, a panic included.
        struct Stop<'a>(&'a Team);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.stop.store(true, Release);
                LEADING.set(std::ptr::null());
            }
        }
        let _stop = Stop(&team);
        LEADING.set(&team);
        let f = f.lock().unwrap_or_else(|e| e.into_inner()).take().expect("the leader runs once");
        Some(f())
    });
    out.swap_remove(0).expect("thread 0 leads")
}

/// `f(i)` for every `i < n`, in parallel: on the team this thread leads,
/// else on rayon's pool. A single task, or a loop inside a task, runs here.
pub fn for_each(n: usize, f: impl Fn(usize) + Sync) {
    let team = LEADING.get();
    if n <= 1 || IN_ROUND.get() {
        (0..n).for_each(f);
    } else if team.is_null() {
        (0..n).into_par_iter().for_each(&f);
    } else {
        // SAFETY: LEADING points at the team of the enclosing `run`, which
        // outlives the leader's closure, and is cleared when that ends.
        unsafe { &*team }.lead(n, &f);
    }
}

/// `f(i, chunk_i)` for the `chunk`-long pieces of `data` (the last may be
/// shorter), in parallel as [`for_each`].
pub fn for_each_chunk_mut<T: Send>(data: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    assert!(chunk > 0, "for_each_chunk_mut: zero chunk");
    let (len, p) = (data.len(), super::SharedMut(data.as_mut_ptr()));
    for_each(len.div_ceil(chunk), |i| {
        let p = &p;
        let start = i * chunk;
        // SAFETY: the chunks are disjoint pieces of `data`, which stays
        // borrowed mutably until every task has returned.
        let piece = unsafe { std::slice::from_raw_parts_mut(p.0.add(start), chunk.min(len - start)) };
        f(i, piece);
    });
}

impl Team {
    /// One round of `n` (≥ 2, see [`for_each`]) tasks: the leader works through them with the
    /// helpers, then waits until every helper is done with `f` (they read it
    /// through an erased pointer, so it must outlive their use).
    fn lead(&self, n: usize, f: &(dyn Fn(usize) + Sync + '_)) {
        // SAFETY: only the lifetime is erased; `f` outlives the round, as the
        // leader returns only after every helper has finished with it.
        let f_static: &'static Body = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static Body>(f) };
        let slot: &&'static Body = &f_static;
        self.body.store(slot as *const _ as *mut _, Relaxed);
        self.n_tasks.store(n, Relaxed);
        self.next.store(0, Relaxed);
        self.done.store(0, Relaxed);
        // Publishes the stores above to the helpers (they load it Acquire).
        self.round.fetch_add(1, Release);
        let mine = catch_unwind(AssertUnwindSafe(|| self.work(f, n)));
        let mut spins = 0u32;
        while self.done.load(Acquire) < self.n - 1 {
            pause(&mut spins);
        }
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if let Some(p) = self.panic.lock().unwrap_or_else(|e| e.into_inner()).take() {
            resume_unwind(p);
        }
    }

    fn work(&self, f: &(dyn Fn(usize) + Sync + '_), n: usize) {
        struct Round;
        impl Drop for Round {
            fn drop(&mut self) {
                IN_ROUND.set(false);
            }
        }
        IN_ROUND.set(true);
        let _round = Round;
        loop {
            let i = self.next.fetch_add(1, Relaxed);
            if i >= n {
                return;
            }
            f(i);
        }
    }

    /// A helper's life: wait for a round (or the stop), work, report done.
    fn help(&self) {
        let mut seen = 0;
        loop {
            let mut spins = 0u32;
            let round = loop {
                let r = self.round.load(Acquire);
                if r != seen {
                    break r;
                }
                if self.stop.load(Acquire) {
                    return;
                }
                pause(&mut spins);
            };
            seen = round;
            // SAFETY: the leader published a pointer to a live `&Body`
            // before bumping `round` and keeps it alive until `done` counts
            // this helper.
            let f: &Body = unsafe { *self.body.load(Relaxed) };
            let n = self.n_tasks.load(Relaxed);
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| self.work(f, n))) {
                *self.panic.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
            }
            // Publishes this helper's writes to the leader.
            self.done.fetch_add(1, Release);
        }
    }
}

/// Spin politely: a CPU pause most of the time, a yield to the OS now and
/// then so an oversubscribed machine still makes progress.
#[inline]
fn pause(spins: &mut u32) {
    *spins += 1;
    if (*spins).is_multiple_of(256) {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()
    }

    #[test]
    fn every_task_runs_once_in_every_round() {
        for threads in [1, 2, 3, 4] {
            let hits: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
            let rounds = run(&pool(threads), || {
                for n in [0, 1, 5, 64, 1000] {
                    for_each(n, |i| {
                        hits[i].fetch_add(1, Relaxed);
                    });
                }
                5
            });
            assert_eq!(rounds, 5);
            for (i, h) in hits.iter().enumerate() {
                let want = [1, 5, 64, 1000].iter().filter(|&&n| i < n).count();
                assert_eq!(h.load(Relaxed), want, "task {i}, {threads} threads");
            }
        }
    }

    #[test]
    fn helpers_share_the_work_and_their_writes_are_visible() {
        let p = pool(2);
        let by_helper = AtomicUsize::new(0);
        let out: Vec<usize> = run(&p, || {
            let mut out = vec![0usize; 1024];
            let ptr = super::super::SharedMut(out.as_mut_ptr());
            for _ in 0..20 {
                for_each(out.len(), |i| {
                    #[allow(clippy::redundant_locals)] // capture the Send wrapper, not its field
                    let ptr = ptr;
                    if rayon::current_thread_index() != Some(0) {
                        by_helper.fetch_add(1, Relaxed);
                    }
                    // Slow enough (5 µs) that the helper gets tasks.
                    let t0 = crate::time::Instant::now();
                    while t0.elapsed().as_micros() < 5 {
                        std::hint::spin_loop();
                    }
                    // SAFETY: each index is written by exactly one task.
                    unsafe { *ptr.0.add(i) += i };
                });
            }
            out
        });
        assert!(out.iter().enumerate().all(|(i, &v)| v == 20 * i));
        assert!(by_helper.load(Relaxed) > 0, "the helper never ran a task");
    }

    #[test]
    fn chunks_cover_the_slice_once() {
        for threads in [1, 2] {
            for (len, chunk) in [(0, 3), (10, 3), (12, 4), (5, 8)] {
                let mut v = vec![0usize; len];
                run(&pool(threads), || for_each_chunk_mut(&mut v, chunk, |i, c| c.iter_mut().for_each(|x| *x += i + 1)));
                assert_eq!(v, (0..len).map(|j| j / chunk + 1).collect::<Vec<_>>(), "len {len} chunk {chunk}");
            }
        }
    }

    #[test]
    fn a_nested_loop_runs_inline() {
        let sum = AtomicUsize::new(0);
        run(&pool(2), || {
            for_each(8, |_| for_each(10, |j| _ = sum.fetch_add(j, Relaxed)));
        });
        assert_eq!(sum.load(Relaxed), 8 * 45);
    }

    #[test]
    fn a_panicking_task_reaches_the_caller_and_the_pool_survives() {
        let p = pool(2);
        for _ in 0..10 {
            let r = catch_unwind(AssertUnwindSafe(|| {
                run(&p, || for_each(100, |i| assert_ne!(i, 77, "task 77 fails")));
            }));
            assert!(r.is_err());
        }
        assert_eq!(run(&p, || 7), 7);
        assert!(LEADING.get().is_null() && !IN_ROUND.get());
    }
}
