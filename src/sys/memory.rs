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
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks;
    // it takes no pointers from us and is safe to call from any thread.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}
