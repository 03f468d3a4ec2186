#![doc = include_str!("../README.md")]

pub use ringloop_actors as actors;

mod acceptor;
mod addr;
mod balancer;
mod buffer;
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
mod sys;
mod worker_pool;

pub use addr::{ListenAddr, SockAddr, Transport};
pub use conn::Conn;
pub use engine::{Engine, EngineBuilder, Server};
pub use error::{Error, Result};
pub use handle::{ConnHandle, ConnId, Pending, TryWriteError, DATAGRAM_SLOT};
pub use handler::{Action, CloseReason, EventHandler, LoopContext};
pub use options::{KeepAlive, LoadBalancer, Options, MAX_LOOPS};
pub use signals::stop_on_signals;
pub use worker_pool::{PoolShutdown, SubmitError, WorkerPool};
