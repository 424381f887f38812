//! Gossip over UDP, every packet authenticated and encrypted with a key derived from the
//! cluster secret and the cluster name, and protected against replay.
//!
//! Packet layout: `b"ERG"`, format version `2`, a 24-byte nonce, then the chitchat envelope
//! sealed with XChaCha20-Poly1305 (the 4-byte header is authenticated data). The nonce is the
//! sender's id (8 random bytes, new at each start), the sender's clock (unix milliseconds) and
//! the sender's packet counter (8 bytes each, big-endian); it is authenticated with the packet,
//! and unique per key as long as two starts never draw the same id.
//!
//! A packet that is too short, has another header, or fails authentication under every key of
//! the keyring (another cluster, another secret, a forged or damaged packet) is dropped and
//! counted before any of it is parsed. An authentic packet whose timestamp is further than the
//! maximum packet age from the receiver's clock is dropped as stale; one whose (sender,
//! counter) was already accepted is dropped as a replay (see `replay.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use async_trait::async_trait;
use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use hkdf::Hkdf;
use sha2::Sha256;
use tokio::sync::Mutex;
use zeroize::Zeroize;

use crate::keyring::Keyring;
use crate::replay::{MAX_SENDERS, ReplayGuard};

const HEADER: [u8; 4] = *b"ERG\x02";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const MAX_DATAGRAM: usize = 65_507;

/// A 256-bit key for one purpose, derived from the cluster secret and the cluster name with
/// HKDF-SHA256. Nodes of another cluster name or with another secret derive other keys. Its
/// `Debug` output hides it, and it is wiped from memory when dropped.
#[derive(Clone)]
pub struct ClusterKey([u8; 32]);

impl Drop for ClusterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ClusterKey {
    /// Derives the key for `purpose` (e.g. `"gossip"`, `"rpc-handshake"`).
    pub fn derive(secret: &[u8], cluster: &str, purpose: &str) -> ClusterKey {
        let hk = Hkdf::<Sha256>::new(Some(b"easy-rpc/cluster-helper/v1"), secret);
        let mut info = Vec::with_capacity(cluster.len() + purpose.len() + 1);
        info.extend_from_slice(purpose.as_bytes());
        info.push(0);
        info.extend_from_slice(cluster.as_bytes());
        let mut okm = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32; expand cannot fail.
        hk.expand(&info, &mut okm)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        ClusterKey(okm)
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// Counters of the gossip transport, shared with [`GossipStats`](crate::GossipStats).
#[derive(Default, Debug)]
pub(crate) struct Counters {
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub packets_rejected: AtomicU64,
    pub packets_stale: AtomicU64,
    pub packets_replayed: AtomicU64,
}

/// The datagram socket under the sealing: the node's UDP socket or, for benchmarks and tests,
/// an address on an in-process [`MemoryNetwork`](crate::MemoryNetwork).
#[derive(Debug)]
pub(crate) enum Wire {
    /// A bound UDP socket (production).
    Udp(tokio::net::UdpSocket),
    /// An address on an in-process network (feature `memory-transport`).
    #[cfg(feature = "memory-transport")]
    Memory(crate::memory::MemorySocket),
}

impl Wire {
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Wire::Udp(socket) => socket.local_addr(),
            #[cfg(feature = "memory-transport")]
            Wire::Memory(socket) => Ok(socket.local_addr()),
        }
    }

    async fn send_to(&self, packet: &[u8], to: SocketAddr) -> std::io::Result<usize> {
        match self {
            Wire::Udp(socket) => socket.send_to(packet, to).await,
            #[cfg(feature = "memory-transport")]
            Wire::Memory(socket) => socket.send_to(packet, to),
        }
    }

    async fn recv_from(&mut self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        match self {
            Wire::Udp(socket) => socket.recv_from(buf).await,
            #[cfg(feature = "memory-transport")]
            Wire::Memory(socket) => socket.recv_from(buf).await,
        }
    }
}

/// The network a node's gossip runs over.
#[derive(Clone, Debug, Default)]
pub(crate) enum Network {
    /// A UDP socket bound at the listen address (production).
    #[default]
    Udp,
    /// An in-process network, for benchmarks and tests (feature `memory-transport`).
    #[cfg(feature = "memory-transport")]
    Memory(crate::memory::MemoryNetwork),
}

/// A chitchat [`Transport`] that hands out one pre-bound datagram socket (UDP, or an
/// in-process one for benchmarks and tests) wrapped in authenticated encryption with replay
/// protection.
pub(crate) struct SecureTransport {
    socket: Mutex<Option<Wire>>,
    keyring: Arc<Keyring>,
    counters: Arc<Counters>,
    max_age: Duration,
}

impl SecureTransport {
    /// `max_age`: how far a packet's timestamp may be from this node's clock.
    pub(crate) fn new(
        socket: Wire,
        keyring: Arc<Keyring>,
        counters: Arc<Counters>,
        max_age: Duration,
    ) -> Self {
        SecureTransport {
            socket: Mutex::new(Some(socket)),
            keyring,
            counters,
            max_age,
        }
    }
}

#[async_trait]
impl Transport for SecureTransport {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = self
            .socket
            .lock()
            .await
            .take()
            .context("the gossip socket was already opened")?;
        Ok(Box::new(SecureSocket::new(
            socket,
            self.keyring.clone(),
            self.counters.clone(),
            self.max_age,
        )))
    }
}

/// What the nonce of an authentic packet says about its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The sender's id, random at each start.
    pub(crate) sender: u64,
    /// The sender's clock, unix milliseconds.
    pub(crate) sent_ms: u64,
    /// The sender's packet counter.
    pub(crate) counter: u64,
}

impl Origin {
    fn nonce(&self) -> [u8; NONCE_LEN] {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&self.sender.to_be_bytes());
        nonce[8..16].copy_from_slice(&self.sent_ms.to_be_bytes());
        nonce[16..].copy_from_slice(&self.counter.to_be_bytes());
        nonce
    }

    fn from_nonce(nonce: &[u8; NONCE_LEN]) -> Origin {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&nonce[i..i + 8]);
            u64::from_be_bytes(b)
        };
        Origin {
            sender: word(0),
            sent_ms: word(8),
            counter: word(16),
        }
    }
}

/// This machine's clock in unix milliseconds (0 before 1970).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct SecureSocket {
    socket: Wire,
    keyring: Arc<Keyring>,
    buf_recv: Box<[u8]>,
    counters: Arc<Counters>,
    /// This socket's sender id, random at each start.
    sender: u64,
    /// The counter of the next packet sent.
    next_counter: u64,
    freshness: Freshness,
}

/// Seals `plaintext` with the first key of `keyring`, stamped with `origin`.
pub(crate) fn seal_packet(
    keyring: &Keyring,
    origin: Origin,
    plaintext: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let nonce = origin.nonce();
    let ring = keyring.load();
    let sealed = ring.gossip[0]
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &HEADER,
            },
        )
        .map_err(|_| anyhow::anyhow!("gossip packet encryption failed"))?;
    let mut packet = Vec::with_capacity(HEADER.len() + NONCE_LEN + sealed.len());
    packet.extend_from_slice(&HEADER);
    packet.extend_from_slice(&nonce);
    packet.extend_from_slice(&sealed);
    Ok(packet)
}

/// Authenticates and decrypts one datagram with each key of `keyring` in turn; `None` if it
/// is not a valid packet of ours.
pub(crate) fn open_packet(keyring: &Keyring, packet: &[u8]) -> Option<(Origin, Vec<u8>)> {
    if packet.len() < HEADER.len() + NONCE_LEN + TAG_LEN || packet[..HEADER.len()] != HEADER {
        return None;
    }
    let (nonce, sealed) = packet[HEADER.len()..].split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    let ring = keyring.load();
    ring.gossip.iter().find_map(|cipher| {
        let plaintext = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &HEADER,
                },
            )
            .ok()?;
        Some((Origin::from_nonce(&nonce), plaintext))
    })
}

/// The checks of an authentic packet's origin: not stale, not a replay.
#[derive(Debug)]
pub(crate) struct Freshness {
    counters: Arc<Counters>,
    max_age_ms: u64,
    replay: ReplayGuard,
}

impl Freshness {
    /// Packets at most `max_age` from this node's clock; at most `max_senders` tracked.
    pub(crate) fn new(counters: Arc<Counters>, max_age: Duration, max_senders: usize) -> Self {
        Freshness {
            counters,
            max_age_ms: u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX),
            replay: ReplayGuard::with_capacity(max_age, max_senders),
        }
    }

    /// Whether an authentic packet is fresh: not stale, not a replay. Counts what it drops.
    pub(crate) fn admit(&mut self, origin: Origin, from: SocketAddr, len: usize) -> bool {
        if unix_ms().abs_diff(origin.sent_ms) > self.max_age_ms {
            drop_packet(
                &self.counters.packets_stale,
                from,
                len,
                "stale (older, or further ahead, than the maximum packet age: a replay, or \
                 clocks out of sync)",
            );
            return false;
        }
        if !self
            .replay
            .accept(origin.sender, origin.counter, Instant::now())
        {
            drop_packet(&self.counters.packets_replayed, from, len, "replayed");
            return false;
        }
        true
    }
}

impl SecureSocket {
    fn new(
        socket: Wire,
        keyring: Arc<Keyring>,
        counters: Arc<Counters>,
        max_age: Duration,
    ) -> SecureSocket {
        let mut id = [0u8; 8];
        rand::fill(&mut id[..]);
        SecureSocket {
            socket,
            keyring,
            buf_recv: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            counters: counters.clone(),
            sender: u64::from_be_bytes(id),
            next_counter: 0,
            freshness: Freshness::new(counters.clone(), max_age, MAX_SENDERS),
        }
    }

    /// Seals `plaintext` with the first key of the keyring, stamped with this sender's id,
    /// clock and next counter.
    fn seal(&mut self, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.seal_at(unix_ms(), plaintext)
    }

    /// [`seal`](SecureSocket::seal) with the given sender clock.
    fn seal_at(&mut self, sent_ms: u64, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let origin = Origin {
            sender: self.sender,
            sent_ms,
            counter: self.next_counter,
        };
        self.next_counter += 1;
        seal_packet(&self.keyring, origin, plaintext)
    }
}

/// Counts a dropped packet in `counter`, and logs the first drops and then every 1000th: a
/// flood must not flood the logs.
fn drop_packet(counter: &AtomicU64, from: SocketAddr, len: usize, why: &str) {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    if n <= 10 || n.is_multiple_of(1000) {
        tracing::warn!(%from, len, dropped_total = n, "dropped gossip packet: {why}");
    }
}

#[async_trait]
impl Socket for SecureSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let packet = self.seal(&envelope.serialize_to_vec())?;
        let num_bytes_sent = self
            .socket
            .send_to(&packet, to)
            .await
            .with_context(|| format!("failed to send gossip to {to}"))?;
        self.counters.packets_sent.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_sent
            .fetch_add(num_bytes_sent as u64, Ordering::Relaxed);
        Ok(SendOutcome { num_bytes_sent })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let (len, from_addr) = match self.socket.recv_from(&mut self.buf_recv).await {
                Ok(received) => received,
                // ICMP errors for earlier sends surface here on some platforms: not fatal.
                Err(err)
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionRefused
                            | std::io::ErrorKind::OutOfMemory
                    ) =>
                {
                    continue;
                }
                Err(err) => return Err(err).context("gossip socket failed"),
            };
            let packet = &self.buf_recv[..len];
            if let Some(envelope) = receive_packet(
                &self.keyring,
                &mut self.freshness,
                &self.counters,
                packet,
                from_addr,
            ) {
                return Ok(RecvOutcome {
                    from_addr,
                    envelope,
                    num_bytes_received: len,
                });
            }
        }
    }
}

/// What becomes of one datagram from `from`: the chitchat message it carries if it is
/// authentic, fresh and readable; otherwise it is dropped and counted.
pub(crate) fn receive_packet(
    keyring: &Keyring,
    freshness: &mut Freshness,
    counters: &Counters,
    packet: &[u8],
    from: SocketAddr,
) -> Option<ChitchatEnvelope> {
    let len = packet.len();
    let Some((origin, plaintext)) = open_packet(keyring, packet) else {
        drop_packet(
            &counters.packets_rejected,
            from,
            len,
            "not authenticated with this cluster's keys",
        );
        return None;
    };
    if !freshness.admit(origin, from, len) {
        return None;
    }
    match ChitchatEnvelope::deserialize(&mut &plaintext[..]) {
        Ok(envelope) => {
            counters.packets_received.fetch_add(1, Ordering::Relaxed);
            counters
                .bytes_received
                .fetch_add(len as u64, Ordering::Relaxed);
            Some(envelope)
        }
        Err(err) => {
            // Authentic but unreadable: a peer with an incompatible protocol version.
            drop_packet(
                &counters.packets_rejected,
                from,
                len,
                &format!("unreadable gossip message: {err}"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn keys_differ_by_secret_cluster_and_purpose() {
        let a = ClusterKey::derive(b"s", "c", "gossip");
        assert_ne!(a.0, ClusterKey::derive(b"t", "c", "gossip").0);
        assert_ne!(a.0, ClusterKey::derive(b"s", "d", "gossip").0);
        assert_ne!(a.0, ClusterKey::derive(b"s", "c", "rpc").0);
        assert_eq!(a.0, ClusterKey::derive(b"s", "c", "gossip").0);
    }

    #[test]
    fn the_nonce_carries_the_origin() {
        let o = Origin {
            sender: 0x0102_0304_0506_0708,
            sent_ms: 1_700_000_000_123,
            counter: 42,
        };
        assert_eq!(Origin::from_nonce(&o.nonce()), o);
    }

    fn ring(secrets: &[&Secret]) -> Arc<Keyring> {
        Arc::new(Keyring::new(
            "c",
            secrets.iter().map(|s| (*s).clone()).collect(),
        ))
    }

    async fn socket(keyring: Arc<Keyring>) -> (SecureSocket, SocketAddr) {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let s = SecureSocket::new(
            Wire::Udp(udp),
            keyring,
            Arc::default(),
            Duration::from_secs(10),
        );
        (s, addr)
    }

    fn envelope() -> ChitchatEnvelope {
        ChitchatEnvelope {
            version: chitchat::ProtocolVersion::V1,
            message: chitchat::ChitchatMessage::BadCluster,
        }
    }

    fn count(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Receives one packet, within 5 s.
    async fn recv(s: &mut SecureSocket) -> RecvOutcome {
        tokio::time::timeout(Duration::from_secs(5), s.recv())
            .await
            .expect("a packet within 5 s")
            .unwrap()
    }

    #[tokio::test]
    async fn transport_opens_its_socket_once() {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let t = SecureTransport::new(
            Wire::Udp(udp),
            ring(&[&Secret::generate()]),
            Arc::default(),
            Duration::from_secs(10),
        );
        let s = t.open(addr).await.unwrap();
        assert_eq!(s.local_addr().unwrap(), addr);
        assert!(t.open(addr).await.is_err());
    }

    #[tokio::test]
    async fn forged_and_foreign_packets_are_dropped_and_counted() {
        let secret = Secret::generate();
        let (mut rx, rx_addr) = socket(ring(&[&secret])).await;
        let (mut foreign, _) = socket(ring(&[&Secret::generate()])).await;
        let (mut good, _) = socket(ring(&[&secret])).await;
        let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();

        foreign.send(rx_addr, envelope()).await.unwrap();
        raw.send_to(b"garbage", rx_addr).await.unwrap();
        // A valid packet with one flipped bit.
        let mut tampered = good.seal(&envelope().serialize_to_vec()).unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        raw.send_to(&tampered, rx_addr).await.unwrap();
        // A valid packet with its counter changed (the nonce is authenticated).
        let mut recounted = good.seal(&envelope().serialize_to_vec()).unwrap();
        recounted[HEADER.len() + NONCE_LEN - 1] ^= 1;
        raw.send_to(&recounted, rx_addr).await.unwrap();
        // A packet of the previous format.
        let mut old = good.seal(&envelope().serialize_to_vec()).unwrap();
        old[3] = 1;
        raw.send_to(&old, rx_addr).await.unwrap();
        good.send(rx_addr, envelope()).await.unwrap();

        let got = recv(&mut rx).await;
        assert_eq!(got.envelope, envelope());
        assert_eq!(count(&rx.counters.packets_rejected), 5);
        assert_eq!(count(&rx.counters.packets_received), 1);
    }

    #[tokio::test]
    async fn replayed_and_stale_packets_are_dropped_and_counted() {
        let secret = Secret::generate();
        let (mut rx, rx_addr) = socket(ring(&[&secret])).await;
        let (mut tx, _) = socket(ring(&[&secret])).await;
        let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let first = tx.seal(&envelope().serialize_to_vec()).unwrap();
        let second = tx.seal(&envelope().serialize_to_vec()).unwrap();
        // In reverse order: reordering is not replay.
        raw.send_to(&second, rx_addr).await.unwrap();
        recv(&mut rx).await;
        raw.send_to(&first, rx_addr).await.unwrap();
        recv(&mut rx).await;
        // Both again, from another address: replays.
        let other = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        other.send_to(&first, rx_addr).await.unwrap();
        raw.send_to(&second, rx_addr).await.unwrap();
        // Sealed 11 s ago, or 11 s ahead: stale.
        let now = unix_ms();
        let old = tx
            .seal_at(now - 11_000, &envelope().serialize_to_vec())
            .unwrap();
        let ahead = tx
            .seal_at(now + 11_000, &envelope().serialize_to_vec())
            .unwrap();
        raw.send_to(&old, rx_addr).await.unwrap();
        raw.send_to(&ahead, rx_addr).await.unwrap();
        // Just within the allowance: accepted.
        let skewed = tx
            .seal_at(now - 8_000, &envelope().serialize_to_vec())
            .unwrap();
        raw.send_to(&skewed, rx_addr).await.unwrap();
        recv(&mut rx).await;
        assert_eq!(count(&rx.counters.packets_replayed), 2);
        assert_eq!(count(&rx.counters.packets_stale), 2);
        assert_eq!(count(&rx.counters.packets_received), 3);
        assert_eq!(count(&rx.counters.packets_rejected), 0);
    }

    #[tokio::test]
    async fn every_key_of_the_ring_is_accepted_and_the_first_one_sends() {
        let (old, new) = (Secret::generate(), Secret::generate());
        let rx_ring = ring(&[&old]);
        let (mut rx, rx_addr) = socket(rx_ring.clone()).await;
        let (mut old_tx, _) = socket(ring(&[&old])).await;
        let (mut new_tx, _) = socket(ring(&[&new, &old])).await;
        // Only the old key on the receiver: the new sender is refused.
        new_tx.send(rx_addr, envelope()).await.unwrap();
        old_tx.send(rx_addr, envelope()).await.unwrap();
        recv(&mut rx).await;
        assert_eq!(count(&rx.counters.packets_rejected), 1);
        // Both keys: both accepted.
        rx_ring.set(vec![old.clone(), new.clone()]);
        new_tx.send(rx_addr, envelope()).await.unwrap();
        recv(&mut rx).await;
        old_tx.send(rx_addr, envelope()).await.unwrap();
        recv(&mut rx).await;
        // The old key removed: its packets are refused.
        rx_ring.set(vec![new.clone()]);
        old_tx.send(rx_addr, envelope()).await.unwrap();
        new_tx.send(rx_addr, envelope()).await.unwrap();
        recv(&mut rx).await;
        assert_eq!(count(&rx.counters.packets_rejected), 2);
        assert_eq!(count(&rx.counters.packets_received), 4);
    }
}
