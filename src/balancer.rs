//! [`Balancer`]: which loop gets the next accepted connection.
//!
//! Owns only the choice. It runs on the acceptor's thread, so it needs no
//! synchronisation of its own; it is told how many loops there are and,
//! for least-connections, asks which holds the fewest. It must never reach
//! into the engine's state.

use crate::addr::SockAddr;
use crate::options::LoadBalancer;

pub(crate) struct Balancer {
    policy: LoadBalancer,
    next: usize,
}

impl Balancer {
    pub(crate) fn new(policy: LoadBalancer) -> Self {
        Self { policy, next: 0 }
    }

    /// Picks a loop index in `0..loops` (`loops` > 0) for a connection from
    /// `peer`; `least_loaded` names the loop holding the fewest connections.
    pub(crate) fn pick(
        &mut self,
        peer: &SockAddr,
        loops: usize,
        least_loaded: impl FnOnce() -> usize,
    ) -> usize {
        let n = loops;
        match self.policy {
            LoadBalancer::LeastConnections => least_loaded(),
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
    use super::*;

    fn peer(addr: &str) -> SockAddr {
        SockAddr::Inet(addr.parse().expect("a socket address"))
    }

    #[test]
    fn round_robin_takes_every_loop_in_turn() {
        let mut b = Balancer::new(LoadBalancer::RoundRobin);
        let picks: Vec<_> = (0..6)
            .map(|_| b.pick(&peer("127.0.0.1:1"), 3, || unreachable!()))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_connections_asks_and_source_hash_sticks() {
        let mut least = Balancer::new(LoadBalancer::LeastConnections);
        assert_eq!(least.pick(&peer("127.0.0.1:1"), 4, || 2), 2);
        let mut hash = Balancer::new(LoadBalancer::SourceAddrHash);
        let first = hash.pick(&peer("10.0.0.7:1000"), 4, || unreachable!());
        assert!(first < 4);
        for port in [1001, 2000, 65535] {
            let again = hash.pick(&peer(&format!("10.0.0.7:{port}")), 4, || unreachable!());
            assert_eq!(again, first, "same address, same loop, whatever the port");
        }
    }

    #[test]
    fn fnv1a_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[127, 0, 0, 1]), fnv1a(&[127, 0, 0, 1]));
        assert_ne!(fnv1a(&[127, 0, 0, 1]), fnv1a(&[127, 0, 0, 2]));
    }
}
