//! The synchronisation shim of the runtime: the atomics, locks and
//! condition variables of the engine's own shared state (lifecycle, loop
//! counters, the worker pool's queue) and the pool's threads are imported
//! from here.
//!
//! Built normally these are `std`'s types; built with
//! `RUSTFLAGS="--cfg loom"` they are loom's, so the models in
//! `runtime::loom_models` check the very code that ships (as `ringloop-actors`
//! does with its own shim). It must never contain logic.

#[cfg(loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Arc, Condvar, Mutex, MutexGuard,
};
#[cfg(loom)]
pub(crate) use loom::thread;

#[cfg(not(loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Arc, Condvar, Mutex, MutexGuard,
};
#[cfg(not(loom))]
pub(crate) use std::thread;
