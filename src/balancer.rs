//! [`Balancer`]: which loop gets the next accepted connection.
//!
//! Owns only the choice. It runs on the acceptor's thread, so it needs no
//! synchronisation of its own; it reads the loops' connection counters.

use crate::addr::SockAddr;
use crate::engine::EngineShared;
use crate::options::LoadBalancer;

pub(crate) struct Balancer {
    policy: LoadBalancer,
    next: usize,
}

impl Balancer {
    pub(crate) fn new(policy: LoadBalancer) -> Self {
        Self { policy, next: 0 }
    }

    /// Picks a loop index in `0..engine.loops.len()`.
    pub(crate) fn pick(&mut self, peer: &SockAddr, engine: &EngineShared) -> usize {
        let n = engine.loops.len();
        match self.policy {
            LoadBalancer::LeastConnections => engine.least_loaded_loop(),
            LoadBalancer::SourceAddrHash => match peer {
                SockAddr::Inet(sa) => {
                    let bytes: Vec<u8> = match sa.ip() {
                        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
                        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
                    };
                    (fnv1a(&bytes) % n as u64) as usize
                }
                _ => self.round_robin(n),
            },
            _ => self.round_robin(n),
        }
    }

    fn round_robin(&mut self, n: usize) -> usize {
        let i = self.next % n;
        self.next = self.next.wrapping_add(1);
        i
    }
}

/// FNV-1a: a small, fast, stable hash of the peer's IP.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    #[test]
    fn fnv1a_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[127, 0, 0, 1]), fnv1a(&[127, 0, 0, 1]));
        assert_ne!(fnv1a(&[127, 0, 0, 1]), fnv1a(&[127, 0, 0, 2]));
    }
}
