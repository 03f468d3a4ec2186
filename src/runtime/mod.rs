//! The runtime: what the actors of one engine share and how they reach each
//! other.
//!
//! Owns the loop messages, the worker pool, and (in later steps) the shared
//! engine state, its lifecycle, message routing and the thread-local
//! context. It must never touch a connection or a socket: that is the loops'
//! job, above it.

pub(crate) mod message;
pub(crate) mod worker_pool;
