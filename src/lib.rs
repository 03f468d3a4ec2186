#![doc = include_str!("../README.md")]
// `unsafe` lives only where a raw OS call needs it (`sys`), each use allowed
// locally with a SAFETY comment.
#![deny(unsafe_code)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "ringloop runs on Linux only for now: its drivers use epoll, eventfd and \
     accept4; a kqueue driver for macOS and the BSDs is not written yet"
);

use ringloop_actors as actors;

mod accept;
mod acceptor;
mod addr;
mod admission;
mod backend;
mod balancer;
mod budget;
mod buffer;
mod buffer_pool;
mod builder;
mod close_kind;
pub mod codec;
mod conn;
mod conn_state;
mod datagram;
mod deploy;
mod doorbell;
mod engine;
mod error;
mod event_loop;
mod handle;
mod handler;
mod id;
mod listener;
mod options;
mod ordered_jobs;
pub mod proxy_protocol;
mod reason;
pub mod relay;
mod runtime;
mod server;
mod signals;
mod stats;
mod sys;
mod timer_wheel;
pub mod tls;
mod to_addr;
mod upgrade;

pub use addr::{ListenAddr, SockAddr, Transport};
pub use admission::{AcceptRate, AdmissionStats, Limits};
pub use backend::Backend;
pub use builder::EngineBuilder;
pub use close_kind::CloseKind;
pub use conn::Conn;
pub use datagram::{Datagram, DatagramHandle};
pub use doorbell::Doorbell;
pub use engine::EngineHandle;
pub use error::{Error, Result};
pub use handle::{ConnHandle, Pending, TryWriteError};
pub use handler::EventHandler;
pub use id::ConnId;
pub use options::{
    BackPressure, KeepAlive, LoadBalancer, PoolShutdown, Timeouts, WaterMarks, MAX_LOOPS,
};
pub use ordered_jobs::OrderedJobs;
pub use reason::{Action, CloseReason, TimeoutKind};
pub use runtime::message::LoopContext;
pub use runtime::worker_pool::{SubmitError, SubmitErrorKind, WorkerPool};
pub use server::Engine;
pub use signals::stop_on_signals;
pub use stats::LoopStats;
pub use tls::TlsOptions;
pub use to_addr::ToAddr;
