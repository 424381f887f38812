//! [`GossipStats`]: counters of a node's gossip traffic.

use std::sync::atomic::Ordering;

use crate::transport::Counters;

/// Counters of this node's gossip traffic, from [`Node::gossip_stats`](crate::Node::gossip_stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GossipStats {
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Bytes sent (UDP payload, including encryption overhead).
    pub bytes_sent: u64,
    /// Authentic datagrams received.
    pub packets_received: u64,
    /// Bytes of authentic datagrams received.
    pub bytes_received: u64,
    /// Datagrams dropped before parsing: not authenticated with any key of this node's
    /// keyring (another cluster, another secret, garbage), or unreadable.
    pub packets_rejected: u64,
    /// Authentic datagrams dropped because their sender's timestamp was further from this
    /// node's clock than the maximum packet age
    /// ([`Config::gossip_max_packet_age`](crate::Config::gossip_max_packet_age)): an old
    /// recording replayed, or clocks out of sync.
    pub packets_stale: u64,
    /// Authentic datagrams dropped because the same packet was already received: a replay.
    pub packets_replayed: u64,
}

impl GossipStats {
    /// Reads the transport's counters.
    pub(crate) fn read(c: &Counters) -> GossipStats {
        GossipStats {
            packets_sent: c.packets_sent.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            packets_received: c.packets_received.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            packets_rejected: c.packets_rejected.load(Ordering::Relaxed),
            packets_stale: c.packets_stale.load(Ordering::Relaxed),
            packets_replayed: c.packets_replayed.load(Ordering::Relaxed),
        }
    }
}
