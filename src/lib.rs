#![doc = include_str!("../README.md")]
// `unsafe` lives only where a raw OS call needs it (`sys`), each use allowed
// locally with a SAFETY comment.
#![deny(unsafe_code)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "ringloop runs on Linux only for now: its drivers use epoll, eventfd and \
     accept4; a kqueue driver for macOS and the BSDs is not written yet"
);

pub use ringloop_actors as actors;

mod accept;
mod acceptor;
mod addr;
mod admission;
mod balancer;
mod budget;
mod buffer;
pub mod codec;
mod conn;
mod deploy;
mod engine;
mod error;
mod event_loop;
mod handle;
mod handler;
mod listener;
mod message;
mod options;
pub mod proxy_protocol;
mod signals;
mod stats;
mod sys;
mod timer_wheel;
pub mod tls;
mod upgrade;
mod worker_pool;

pub use addr::{ListenAddr, SockAddr, Transport};
pub use admission::{AcceptRate, AdmissionStats, Limits};
pub use conn::Conn;
pub use engine::{Engine, EngineBuilder, Server};
pub use error::{Error, Result};
pub use handle::{ConnHandle, ConnId, Pending, TryWriteError, DATAGRAM_SLOT};
pub use handler::{Action, CloseReason, EventHandler, LoopContext, TimeoutKind};
pub use options::{
    BackPressure, KeepAlive, LoadBalancer, Options, Timeouts, WaterMarks, MAX_LOOPS,
};
pub use signals::stop_on_signals;
pub use stats::LoopStats;
pub use tls::TlsOptions;
pub use worker_pool::{PoolShutdown, SubmitError, WorkerPool};
