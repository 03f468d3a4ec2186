//! Handing freed heap memory back to the operating system.
//!
//! glibc keeps memory freed by `free` in its arenas for reuse, and only
//! gives the top of the main heap back on its own: after a burst of large
//! buffers (many slow clients, half-sent messages) a server's RSS stays high
//! long after the buffers are gone. `malloc_trim` releases the free pages of
//! every arena. Owns only that call; other allocators (musl, jemalloc) manage
//! this themselves, and there it does nothing.

/// Returns the allocator's free memory to the system where that takes a
/// call (glibc); a no-op elsewhere.
#[allow(unsafe_code)] // one libc call with no arguments to get wrong
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // The first call of the process runs alone: where another allocator
        // is interposed (AddressSanitizer, a preloaded jemalloc or tcmalloc),
        // glibc's malloc has never run and `malloc_trim` initialises its
        // arena first, which is not thread-safe (two loops trimming at once
        // crashed in `mtrim`). `call_once` makes every other caller wait
        // until that first call has returned.
        static FIRST: std::sync::Once = std::sync::Once::new();
        let trim = || {
            // SAFETY: malloc_trim takes no pointers from us and walks
            // glibc's arenas under their locks, which is safe from any
            // thread once the arena is initialised: by the first call, which
            // `FIRST` runs alone and before any other returns here.
            unsafe { nix::libc::malloc_trim(0) };
        };
        let mut trimmed = false;
        FIRST.call_once(|| {
            trim();
            trimmed = true;
        });
        if !trimmed {
            trim();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    /// Loops going idle together trim together. Where glibc's malloc is
    /// not the allocator in use (an interposed one: AddressSanitizer,
    /// jemalloc or tcmalloc preloaded), the first `malloc_trim` of the
    /// process also initialises glibc's arena, which is not thread-safe: a
    /// second caller walked the half-initialised arena and crashed (SEGV in
    /// `mtrim`, seen under ASan with two loops). With glibc's malloc in use
    /// it was initialised before any thread started, so this test can fail
    /// only in such a process (`RUSTFLAGS=-Zsanitizer=address`, run alone).
    #[test]
    fn loops_trimming_at_once_for_the_first_time_do_not_race() {
        const THREADS: usize = 8;
        let start = Arc::new(Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let start = Arc::clone(&start);
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..4 {
                        super::release_free_memory();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a trimming thread panicked");
        }
    }
}
