//! Gossip over UDP, every packet authenticated and encrypted with a key derived from the
//! cluster secret and the cluster name.
//!
//! Packet layout: `b"ERG"`, format version `1`, a 24-byte random nonce, then the chitchat
//! envelope sealed with XChaCha20-Poly1305 (the 4-byte header is authenticated data). A packet
//! that is too short, has another header, or fails authentication (another cluster, another
//! secret, a forged or damaged packet) is dropped and counted before any of it is parsed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use async_trait::async_trait;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use hkdf::Hkdf;
use sha2::Sha256;
use tokio::sync::Mutex;

const HEADER: [u8; 4] = *b"ERG\x01";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const MAX_DATAGRAM: usize = 65_507;

/// A 256-bit key for one purpose, derived from the cluster secret and the cluster name with
/// HKDF-SHA256. Nodes of another cluster name or with another secret derive other keys.
#[derive(Clone)]
pub struct ClusterKey([u8; 32]);

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
}

/// A chitchat [`Transport`] that hands out one pre-bound UDP socket wrapped in authenticated
/// encryption.
pub(crate) struct SecureTransport {
    socket: Mutex<Option<tokio::net::UdpSocket>>,
    key: ClusterKey,
    counters: Arc<Counters>,
}

impl SecureTransport {
    pub(crate) fn new(
        socket: tokio::net::UdpSocket,
        key: ClusterKey,
        counters: Arc<Counters>,
    ) -> Self {
        SecureTransport {
            socket: Mutex::new(Some(socket)),
            key,
            counters,
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
        Ok(Box::new(SecureSocket {
            socket,
            cipher: XChaCha20Poly1305::new(self.key.as_bytes().into()),
            buf_recv: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            counters: self.counters.clone(),
        }))
    }
}

struct SecureSocket {
    socket: tokio::net::UdpSocket,
    cipher: XChaCha20Poly1305,
    buf_recv: Box<[u8]>,
    counters: Arc<Counters>,
}

impl SecureSocket {
    fn seal(&self, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce[..]);
        let sealed = self
            .cipher
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

    /// Authenticates and decrypts one datagram; `None` if it is not a valid packet of ours.
    fn open(&self, packet: &[u8]) -> Option<Vec<u8>> {
        if packet.len() < HEADER.len() + NONCE_LEN + TAG_LEN || packet[..HEADER.len()] != HEADER {
            return None;
        }
        let (nonce, sealed) = packet[HEADER.len()..].split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                &XNonce::try_from(nonce).ok()?,
                Payload {
                    msg: sealed,
                    aad: &HEADER,
                },
            )
            .ok()
    }

    fn reject(&self, from: SocketAddr, len: usize, why: &str) {
        let n = self
            .counters
            .packets_rejected
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        // Log the first rejections and then every 1000th: a flood must not flood the logs.
        if n <= 10 || n.is_multiple_of(1000) {
            tracing::warn!(%from, len, rejected_total = n, "dropped gossip packet: {why}");
        }
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
            let Some(plaintext) = self.open(&self.buf_recv[..len]) else {
                self.reject(from_addr, len, "not authenticated with this cluster's key");
                continue;
            };
            match ChitchatEnvelope::deserialize(&mut &plaintext[..]) {
                Ok(envelope) => {
                    self.counters
                        .packets_received
                        .fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .bytes_received
                        .fetch_add(len as u64, Ordering::Relaxed);
                    return Ok(RecvOutcome {
                        from_addr,
                        envelope,
                        num_bytes_received: len,
                    });
                }
                Err(err) => {
                    // Authentic but unreadable: a peer with an incompatible protocol version.
                    self.reject(from_addr, len, &format!("unreadable gossip message: {err}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_secret_cluster_and_purpose() {
        let a = ClusterKey::derive(b"s", "c", "gossip");
        assert_ne!(a.0, ClusterKey::derive(b"t", "c", "gossip").0);
        assert_ne!(a.0, ClusterKey::derive(b"s", "d", "gossip").0);
        assert_ne!(a.0, ClusterKey::derive(b"s", "c", "rpc").0);
        assert_eq!(a.0, ClusterKey::derive(b"s", "c", "gossip").0);
    }

    fn socket_on(udp: tokio::net::UdpSocket, key: &ClusterKey) -> SecureSocket {
        SecureSocket {
            socket: udp,
            cipher: XChaCha20Poly1305::new(key.as_bytes().into()),
            buf_recv: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            counters: Arc::default(),
        }
    }

    async fn socket(key: &ClusterKey) -> (SecureSocket, SocketAddr) {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        (socket_on(udp, key), addr)
    }

    #[tokio::test]
    async fn transport_opens_its_socket_once() {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        let key = ClusterKey::derive(b"s", "c", "gossip");
        let t = SecureTransport::new(udp, key, Arc::default());
        let s = t.open(addr).await.unwrap();
        assert_eq!(s.local_addr().unwrap(), addr);
        assert!(t.open(addr).await.is_err());
    }

    #[tokio::test]
    async fn forged_and_foreign_packets_are_dropped_and_counted() {
        let key = ClusterKey::derive(b"secret", "c", "gossip");
        let other = ClusterKey::derive(b"other", "c", "gossip");
        let (mut rx, rx_addr) = socket(&key).await;
        let (mut foreign, _) = socket(&other).await;
        let (mut good, _) = socket(&key).await;
        let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();

        let envelope = || ChitchatEnvelope {
            version: chitchat::ProtocolVersion::V1,
            message: chitchat::ChitchatMessage::BadCluster,
        };
        foreign.send(rx_addr, envelope()).await.unwrap();
        raw.send_to(b"garbage", rx_addr).await.unwrap();
        // A valid packet with one flipped bit.
        let mut tampered = good.seal(&envelope().serialize_to_vec()).unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        raw.send_to(&tampered, rx_addr).await.unwrap();
        good.send(rx_addr, envelope()).await.unwrap();

        let got = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.envelope, envelope());
        assert_eq!(rx.counters.packets_rejected.load(Ordering::Relaxed), 3);
        assert_eq!(rx.counters.packets_received.load(Ordering::Relaxed), 1);
    }
}
