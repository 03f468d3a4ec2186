//! [`LoopToken`]: what a poller token names on an event loop, with the one
//! encoding to and from the poller's `u64`.
//!
//! Owns only the encoding. A connection's token is its slab key (generation
//! and index packed, far below the reserved range with any slot count that
//! fits in memory); the top of the range names the doorbell, the loop's UDP
//! sockets and its own listeners.

use crate::actors::slab::SlotKey;
use crate::sys::poller::Token;

/// Tokens at or above this are not connections.
const RESERVED: Token = u64::MAX - (1 << 17);
const UDP_BASE: Token = RESERVED;
const LISTENER_BASE: Token = RESERVED + (1 << 16);
const DOORBELL: Token = u64::MAX;

/// What a readiness event on a loop is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LoopToken {
    /// A connection, by its slab key.
    Conn(SlotKey),
    /// The mailbox's doorbell: messages are waiting.
    Doorbell,
    /// The loop's UDP socket `i`.
    Udp(usize),
    /// The loop's own listener `i` (reuseport mode).
    Listener(usize),
}

impl LoopToken {
    #[inline]
    pub(super) fn encode(self) -> Token {
        match self {
            LoopToken::Conn(key) => key.token(),
            LoopToken::Doorbell => DOORBELL,
            LoopToken::Udp(i) => UDP_BASE + i as u64,
            LoopToken::Listener(i) => LISTENER_BASE + i as u64,
        }
    }

    #[inline]
    pub(super) fn decode(token: Token) -> LoopToken {
        match token {
            // Connections first: the commonest, told by one comparison.
            t if t < RESERVED => LoopToken::Conn(SlotKey::from_token(t)),
            DOORBELL => LoopToken::Doorbell,
            t if t >= LISTENER_BASE => LoopToken::Listener((t - LISTENER_BASE) as usize),
            t => LoopToken::Udp((t - UDP_BASE) as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_decodes_to_what_encoded_it() {
        let keys = [
            SlotKey {
                index: 0,
                generation: 0,
            },
            SlotKey {
                index: 7,
                generation: 3,
            },
            SlotKey {
                index: 1 << 24,
                generation: u32::MAX,
            },
        ];
        let mut all: Vec<LoopToken> = keys.into_iter().map(LoopToken::Conn).collect();
        all.push(LoopToken::Doorbell);
        for i in [0, 1, 99, (1 << 16) - 1] {
            all.push(LoopToken::Udp(i));
            all.push(LoopToken::Listener(i));
        }
        for t in &all {
            assert_eq!(LoopToken::decode(t.encode()), *t, "{t:?}");
        }
        // No two distinct names share a token.
        let mut raw: Vec<Token> = all.iter().map(|t| t.encode()).collect();
        raw.sort_unstable();
        raw.dedup();
        assert_eq!(raw.len(), all.len());
    }
}
