//! Giving the heap back to the OS after a burst of connections.
//!
//! Each open connection costs ~12 KB of small heap allocations (hyper's read and
//! write buffers, the connection task, the router's clone). Freed, they return to
//! glibc's malloc, which keeps them: a flood of 9,000 simultaneous connections
//! raised the server's RSS by 106 MB, and it stayed there after every one closed.
//! Two glibc behaviours keep it:
//!
//! - Freed chunks in the middle of the heap are reused but never returned (only
//!   the top of the main heap is trimmed, and only past a threshold that grows
//!   up to 64 MB after large frees such as the model loader's).
//! - Each thread that allocates under contention gets its own arena (up to
//!   8 × cores). `malloc_trim` releases the free pages inside every arena, but
//!   the *top* of a per-thread arena only shrinks on a later large `free` in it,
//!   so with per-thread arenas ~25 % of the flood's memory stayed resident even
//!   after a `malloc_trim(0)` (measured: 277 MB peak → 195 MB, resting 172 MB).
//!
//! So `ember serve` keeps one arena ([`limit_arenas`], called before any thread
//! starts: threads that already allocated keep theirs) and calls
//! [`release_free_memory`] once connections have closed and no new one has
//! arrived for a second ([`crate::conn`]); the same flood then ends at the
//! resting RSS.
//! Inference allocates little per token, so one arena costs nothing measurable
//! (`ember bench` with `MALLOC_ARENA_MAX=1`: same pp/tg within noise).
//!
//! Elsewhere (musl, macOS, Windows) both are no-ops.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    /// Caps glibc malloc at one arena, unless the user chose otherwise
    /// (`MALLOC_ARENA_MAX` or a `glibc.malloc.arena_max` tunable).
    pub fn limit_arenas() {
        let chosen =
            std::env::var_os("MALLOC_ARENA_MAX").is_some() || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
        if !chosen {
            // SAFETY: mallopt only sets a parameter; M_ARENA_MAX limits arenas created from now on.
            unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
        }
    }

    /// Returns the free pages of every arena to the OS (`malloc_trim(0)`);
    /// true when some were released. Takes a few ms on a heap of a few hundred MB.
    pub fn release_free_memory() -> bool {
        // SAFETY: malloc_trim takes the arenas' locks itself; callable from any thread.
        unsafe { libc::malloc_trim(0) == 1 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    /// No-op: not glibc.
    pub fn limit_arenas() {}

    /// No-op: not glibc.
    pub fn release_free_memory() -> bool {
        false
    }
}

pub use imp::{limit_arenas, release_free_memory};

#[cfg(test)]
mod tests {
    #[test]
    fn trim_and_limit_are_callable() {
        super::limit_arenas();
        let v: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 4096]).collect();
        drop(v);
        super::release_free_memory();
    }
}
