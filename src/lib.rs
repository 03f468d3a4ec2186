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
mod slab;
mod sys;

pub use addr::{ListenAddr, SockAddr, Transport};
pub use conn::Conn;
pub use engine::{Engine, EngineBuilder, Server};
pub use error::{Error, Result};
pub use handle::{ConnHandle, ConnId, Pending, TryWriteError};
pub use handler::{Action, CloseReason, EventHandler, LoopContext};
pub use options::{KeepAlive, LoadBalancer, Options, MAX_LOOPS};
pub use signals::stop_on_signals;
