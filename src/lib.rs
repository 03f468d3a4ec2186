//! ringloop: an event-driven, non-blocking networking framework in which every
//! event loop is an actor.

pub use ringloop_actors as actors;

mod error;

pub use error::{Error, Result};
