//! The 64-bit `user_data` of every submission: which source slot, which
//! operation, which generation of the slot. A completion is routed by
//! decoding it; a completion whose generation is not the slot's current one
//! is recognised as stale and dropped.
//!
//! Layout (most significant first): `index: 32 | generation: 24 | kind: 8`.
//! Owns the encoding only; never looks at slots.

/// What an operation is, so a completion can be routed without a lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum OpKind {
    /// A multishot accept on a listener.
    Accept = 1,
    /// A multishot receive with buffer select.
    Recv = 2,
    /// A send of the source's in-flight buffer.
    Send = 3,
    /// A connect (linked to [`OpKind::ConnectTimeout`] when it has one).
    Connect = 4,
    /// The linked timeout of a connect.
    ConnectTimeout = 5,
    /// The poll half of the doorbell read (only posts on failure).
    DoorbellPoll = 6,
    /// The read of the doorbell's counter.
    Doorbell = 7,
    /// An async cancel request (its own completion carries nothing to route).
    Cancel = 8,
    /// A multishot poll of a readiness descriptor (the driver's epoll fd).
    Readiness = 9,
    /// The removal of a closing source's entry from the registered file
    /// table (`super::fixed`); counted among the source's operations.
    FileRemoval = 10,
}

impl OpKind {
    fn from_u8(raw: u8) -> Option<OpKind> {
        Some(match raw {
            1 => OpKind::Accept,
            2 => OpKind::Recv,
            3 => OpKind::Send,
            4 => OpKind::Connect,
            5 => OpKind::ConnectTimeout,
            6 => OpKind::DoorbellPoll,
            7 => OpKind::Doorbell,
            8 => OpKind::Cancel,
            9 => OpKind::Readiness,
            10 => OpKind::FileRemoval,
            _ => return None,
        })
    }
}

/// Generations wrap at 24 bits.
pub(crate) const GENERATION_MASK: u32 = (1 << 24) - 1;

/// The index used by operations that belong to no source (doorbell, cancel).
pub(crate) const NO_SOURCE: u32 = u32::MAX;

/// A decoded `user_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct UserData {
    /// The source slot.
    pub(crate) index: u32,
    /// The slot's generation when the operation was submitted.
    pub(crate) generation: u32,
    /// The operation.
    pub(crate) kind: OpKind,
}

impl UserData {
    /// Packs `index`, `generation` (masked to 24 bits) and `kind`.
    pub(crate) fn new(index: u32, generation: u32, kind: OpKind) -> UserData {
        UserData {
            index,
            generation: generation & GENERATION_MASK,
            kind,
        }
    }

    /// The value put into the submission entry.
    pub(crate) fn encode(self) -> u64 {
        (u64::from(self.index) << 32)
            | (u64::from(self.generation & GENERATION_MASK) << 8)
            | self.kind as u64
    }

    /// Unpacks a completion's `user_data`; `None` for a value this module
    /// never produced (a kernel or caller bug, dropped by the ring).
    pub(crate) fn decode(raw: u64) -> Option<UserData> {
        let kind = OpKind::from_u8((raw & 0xff) as u8)?;
        Some(UserData {
            index: (raw >> 32) as u32,
            generation: ((raw >> 8) as u32) & GENERATION_MASK,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_masks_the_generation() {
        let ud = UserData::new(7, 0x0123_4567, OpKind::Send);
        let back = UserData::decode(ud.encode()).unwrap();
        assert_eq!(back.index, 7);
        assert_eq!(back.generation, 0x23_4567);
        assert_eq!(back.kind, OpKind::Send);
        assert_eq!(UserData::decode(0), None, "kind 0 is never produced");
        let max = UserData::new(NO_SOURCE, GENERATION_MASK, OpKind::Cancel);
        assert_eq!(UserData::decode(max.encode()), Some(max));
    }
}
