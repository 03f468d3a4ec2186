//! An endless deterministic byte stream, different per seed: a reader can
//! check every byte of a long transfer against it without keeping a copy.
//! Shared by the soak driver and the soak server.

/// The byte at `offset` of stream `seed`.
pub fn byte(seed: u64, offset: u64) -> u8 {
    let x = (offset ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0x2545_F491_4F6C_DD1D);
    (x >> 56) as u8 ^ (offset >> 12) as u8
}

/// Fills `out` with stream `seed` from `offset`.
pub fn fill(seed: u64, offset: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = byte(seed, offset + i as u64);
    }
}

/// The first position where `got` differs from stream `seed` at `offset`.
pub fn mismatch(seed: u64, offset: u64, got: &[u8]) -> Option<u64> {
    got.iter()
        .enumerate()
        .find(|(i, &b)| b != byte(seed, offset + *i as u64))
        .map(|(i, _)| offset + i as u64)
}
