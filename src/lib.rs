//! ringloop: an event-driven, non-blocking networking framework in which every
//! event loop is an actor.

pub use ringloop_actors as actors;

mod addr;
mod error;
mod sys;

pub use addr::{ListenAddr, SockAddr, Transport};
pub use error::{Error, Result};
