//! The synchronisation shim: every atomic, cell, lock and thread that the
//! lock-free protocols of this crate use is imported from here.
//!
//! Built normally, these are `std`'s types (plus a zero-cost [`UnsafeCell`]
//! wrapper with loom's closure API). Built with `RUSTFLAGS="--cfg loom"`, they
//! are loom's model types, so the loom tests in `tests/loom_*.rs` check the very
//! code that ships rather than a copy of it.
//!
//! This module must never contain logic: only re-exports and the cell wrapper.

#[cfg(loom)]
pub(crate) use loom::{
    cell::UnsafeCell,
    sync::{
        atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Condvar, Mutex,
    },
    thread,
};

#[cfg(not(loom))]
pub(crate) use std::{
    sync::{
        atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
};

/// `std::cell::UnsafeCell` behind loom's closure-based API, so that slot
/// accesses compile to plain pointer accesses here and are tracked for
/// causality violations under loom.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with an exclusive raw pointer to the contents.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
