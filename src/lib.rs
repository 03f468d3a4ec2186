#![doc = include_str!("../README.md")]

pub use ringloop_actors as actors;

mod acceptor;
mod addr;
mod balancer;
mod buffer;
pub mod codec;
mod conn;
mod engine;
mod error;
mod event_loop;
mod handle;
mod handler;
mod listener;
mod message;
mod options;
mod signals;
mod stats;
mod sys;
mod timer_wheel;
pub mod tls;
mod worker_pool;

pub use addr::{ListenAddr, SockAddr, Transport};
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
