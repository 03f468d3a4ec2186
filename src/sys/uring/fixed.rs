//! The ring's registered file table ("fixed files"): a sparse table
//! registered once per ring, in which a source's descriptor is installed at
//! its slot's index while the source is open, so its operations name the
//! table entry ([`Target::Fixed`]) instead of the descriptor number. The
//! kernel then skips looking the descriptor up (and taking and dropping a
//! reference to its file) at every operation: `fget`/`fput` were 1.4 % of
//! the server's samples at 1,000 connections × 512 B.
//!
//! Owns the table's registration, a source's installation and the entry
//! that removes it; never decides when a source opens or closes, and never
//! touches a slot (`ring.rs` does, under its lifetime rules: an entry is
//! removed by an operation counted among the closing slot's own, so a slot
//! index, and so a table entry, is reused only after the removal completed).
//!
//! The table holds its own reference to the file: a descriptor closed by
//! its owner while installed keeps the socket open until the removal is
//! processed (the next `io_uring_enter`). Operations already submitted hold
//! what they need until they complete, so removing an entry under them is
//! safe.
//!
//! Refusal is never an error: a kernel without sparse tables (before 5.19),
//! a descriptor limit below the table's size, or memory pressure leave the
//! ring on plain descriptors (said once in the log), and a source whose
//! installation fails, or whose slot index lies past the table, uses its
//! plain descriptor.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, Submitter};
use nix::libc;

/// What an operation names: a descriptor number, or an entry of the ring's
/// registered file table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A plain descriptor (looked up by the kernel at every operation).
    Fd(RawFd),
    /// The source's entry in the registered file table.
    Fixed(u32),
}

/// Builds an entry for `$target`: `$t` is bound to `types::Fd` or
/// `types::Fixed` (the crate's opcodes take either, through a trait it does
/// not export). The caller imports [`Target`].
macro_rules! on_target {
    ($target:expr, $t:ident => $build:expr) => {
        match $target {
            Target::Fixed(index) => {
                let $t = ::io_uring::types::Fixed(index);
                $build
            }
            Target::Fd(fd) => {
                let $t = ::io_uring::types::Fd(fd);
                $build
            }
        }
    };
}
pub(crate) use on_target;

/// The largest table a ring asks for. The kernel keeps a pointer per entry
/// (512 KiB at this size, not counted in the process's memory); sources
/// past it use plain descriptors.
pub(crate) const MAX_FIXED_FILES: u32 = 1 << 16;

/// A table as large as the process may have descriptors (the kernel refuses
/// one larger than `RLIMIT_NOFILE`), at most [`MAX_FIXED_FILES`].
pub(crate) fn default_size() -> u32 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` only writes the struct it is given, which lives
    // on this stack for the call.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if got != 0 {
        return 0;
    }
    u32::try_from(limit.rlim_cur)
        .unwrap_or(u32::MAX)
        .min(MAX_FIXED_FILES)
}

/// The value a removal writes into a table entry ("no file"). Static: the
/// kernel reads it whenever the removal is issued.
static NO_FILE: [RawFd; 1] = [-1];

/// A ring's registered file table, or its absence.
#[derive(Debug)]
pub(crate) struct FixedFiles {
    /// Entries registered (0: none, every source uses its descriptor).
    capacity: u32,
}

impl FixedFiles {
    /// Registers a sparse table of `size` entries on the ring (`0`: none).
    /// Refused: no table, with one log line saying why.
    pub(crate) fn register(submitter: &Submitter<'_>, size: u32) -> FixedFiles {
        if size == 0 {
            return FixedFiles { capacity: 0 };
        }
        match submitter.register_files_sparse(size) {
            Ok(()) => FixedFiles { capacity: size },
            Err(e) => {
                log::info!(
                    "io_uring: registered files refused ({e}); operations name plain descriptors"
                );
                FixedFiles { capacity: 0 }
            }
        }
    }

    /// Entries in the table (0 when there is none).
    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Installs `fd` at entry `index` (one `io_uring_register`): whether
    /// its operations may name [`Target::Fixed`]`(index)`. The entry must
    /// be empty (a new slot, or one whose removal has completed).
    pub(crate) fn install(&self, submitter: &Submitter<'_>, index: u32, fd: RawFd) -> bool {
        if index >= self.capacity {
            return false;
        }
        match submitter.register_files_update(index, &[fd]) {
            Ok(1) => true,
            Ok(_) => false,
            Err(e) => {
                log::debug!("io_uring: installing descriptor {fd} as fixed file {index}: {e}");
                false
            }
        }
    }

    /// Drops the table (and its references to files) at once; called by
    /// the ring's teardown once nothing is in flight.
    pub(crate) fn unregister(&mut self, submitter: &Submitter<'_>) {
        if self.capacity == 0 {
            return;
        }
        self.capacity = 0;
        if let Err(e) = submitter.unregister_files() {
            log::warn!("io_uring teardown: unregistering the file table: {e}");
        }
    }

    /// The entry that empties table entry `index` when the ring submits it
    /// (its completion is owed like any operation's).
    pub(crate) fn removal(index: u32) -> io::Result<squeue::Entry> {
        let offset = i32::try_from(index)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "fixed file index"))?;
        Ok(opcode::FilesUpdate::new(NO_FILE.as_ptr(), 1)
            .offset(offset)
            .build())
    }
}
