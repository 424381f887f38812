//! An in-process datagram network for gossip (feature `memory-transport`), for benchmarks and
//! tests; not a production transport.
//!
//! Nodes started with [`NodeBuilder::memory_network`](crate::NodeBuilder::memory_network) send
//! their gossip through a [`MemoryNetwork`] instead of a UDP socket. Only the last hop changes:
//! every packet is still sealed, authenticated, checked for staleness and replay and counted
//! exactly as over UDP (the same code runs); it is handed to the receiver's queue instead of
//! the kernel. Like UDP, a packet to an address nobody is bound to, or to a full queue, is
//! dropped without an error, and one larger than a UDP datagram is refused.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::mpsc;

use crate::address::{Resolved, RpcBind};
use crate::error::{Error, Result};
use crate::transport::Wire;

/// How many packets wait in a socket's queue before further ones are dropped (as a full UDP
/// receive buffer drops them).
const QUEUE_PACKETS: usize = 1024;

/// The largest datagram the network carries: UDP's largest payload over IPv4, so that what
/// would not fit over UDP does not pass here either.
const MAX_DATAGRAM: usize = 65_507;

/// One datagram in flight: its sender's address and its bytes.
type Datagram = (SocketAddr, Vec<u8>);

/// An in-process datagram network that nodes' gossip runs over instead of UDP: for benchmarks
/// and tests (many nodes in one process without a socket each); **not a production
/// transport**. Feature `memory-transport`.
///
/// Clones share the network. A node started with
/// [`NodeBuilder::memory_network`](crate::NodeBuilder::memory_network) binds an address in it
/// (the listen address; port 0 takes a free port of the network, not of the host) and seeds
/// name other nodes' [`gossip_addr`](crate::Node::gossip_addr) as usual. Packets are sealed
/// and checked as over UDP; the network delivers them to the receiver's queue, and drops
/// those to an address nobody is bound to (a stopped node) or to a full queue.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> cluster_helper::Result<()> {
/// use cluster_helper::{MemoryNetwork, Node, RpcListen, Secret};
///
/// let net = MemoryNetwork::new();
/// let secret = Secret::generate();
/// let node = |name: &str| {
///     Node::builder()
///         .cluster("in-memory")
///         .name(name)
///         .listen("127.0.0.1:0")
///         .secret_key(secret.clone())
///         .rpc_listen(RpcListen::Disabled)
///         .memory_network(&net)
/// };
/// let a = node("a").start().await?;
/// let b = node("b").seeds([a.gossip_addr().to_string()]).start().await?;
/// b.ready().await;
/// assert_eq!(net.sockets(), 2);
/// # a.shutdown().await; b.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryNetwork {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// The queue of every bound address.
    sockets: RwLock<HashMap<SocketAddr, mpsc::Sender<Datagram>>>,
    /// The next port number to try for a bind at port 0.
    next_port: Mutex<u16>,
    delivered: AtomicU64,
    dropped: AtomicU64,
    largest: AtomicUsize,
}

impl MemoryNetwork {
    /// A new, empty network.
    pub fn new() -> MemoryNetwork {
        MemoryNetwork::default()
    }

    /// How many addresses are bound (nodes running on the network).
    pub fn sockets(&self) -> usize {
        self.read().len()
    }

    /// Packets delivered to a receiver's queue so far.
    pub fn delivered(&self) -> u64 {
        self.shared.delivered.load(Ordering::Relaxed)
    }

    /// Packets dropped so far: to an address nobody is bound to, or to a full queue.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The largest packet sent so far, in bytes (sealed, as it would go over UDP).
    pub fn largest_packet(&self) -> usize {
        self.shared.largest.load(Ordering::Relaxed)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<SocketAddr, mpsc::Sender<Datagram>>> {
        self.shared
            .sockets
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Binds `addr` (port 0: a free port of this network; an unspecified IP: 127.0.0.1).
    pub(crate) fn bind(&self, addr: SocketAddr) -> io::Result<MemorySocket> {
        let ip = if addr.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            addr.ip()
        };
        let (tx, rx) = mpsc::channel(QUEUE_PACKETS);
        let mut sockets = self
            .shared
            .sockets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let addr = if addr.port() == 0 {
            let mut next = self
                .shared
                .next_port
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut found = None;
            for _ in 0..u16::MAX {
                *next = next.checked_add(1).unwrap_or(1);
                let candidate = SocketAddr::new(ip, *next);
                if !sockets.contains_key(&candidate) {
                    found = Some(candidate);
                    break;
                }
            }
            found.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    "no free port left in the memory network",
                )
            })?
        } else {
            let addr = SocketAddr::new(ip, addr.port());
            if sockets.contains_key(&addr) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{addr} is already bound in the memory network"),
                ));
            }
            addr
        };
        sockets.insert(addr, tx);
        Ok(MemorySocket {
            addr,
            network: self.clone(),
            rx,
        })
    }

    /// Hands `packet` to the queue bound at `to`, or drops it.
    fn deliver(&self, from: SocketAddr, to: SocketAddr, packet: &[u8]) {
        self.shared
            .largest
            .fetch_max(packet.len(), Ordering::Relaxed);
        let sent = match self.read().get(&to) {
            Some(tx) => tx.try_send((from, packet.to_vec())).is_ok(),
            None => false,
        };
        let counter = if sent {
            &self.shared.delivered
        } else {
            &self.shared.dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a node started on a memory network binds: its gossip address on `network` (the first
/// listen address; the advertised one as over UDP, else the bound one) and, unless disabled,
/// a real TCP listener for RPC on the listen IP (with `RpcListen::SamePort`, at a free port:
/// the memory network's ports are not the host's).
pub(crate) fn open(network: &MemoryNetwork, addrs: &Resolved) -> Result<Opened> {
    let listen = addrs.listen[0];
    let socket = network.bind(listen).map_err(|source| Error::Bind {
        what: "gossip (memory network)",
        addr: listen,
        source,
    })?;
    let bound = socket.local_addr();
    let gossip_addr = match addrs.advertise {
        Some(a) if a.port() == 0 => SocketAddr::new(a.ip(), bound.port()),
        Some(a) => a,
        None => bound,
    };
    let rpc_bind = match addrs.rpc_listen {
        RpcBind::Disabled => None,
        RpcBind::Addr(addr) => Some(addr),
        RpcBind::SamePort => Some(SocketAddr::new(listen.ip(), 0)),
    };
    let (rpc_listener, rpc_addr) = match rpc_bind {
        None => (None, None),
        Some(addr) => {
            let err = |source| Error::Bind {
                what: "rpc (TCP)",
                addr,
                source,
            };
            let listener = TcpListener::bind(addr).map_err(err)?;
            listener.set_nonblocking(true).map_err(err)?;
            let port = listener.local_addr().map_err(err)?.port();
            let advertised = match addrs.rpc_advertise {
                Some(a) if a.port() == 0 => SocketAddr::new(a.ip(), port),
                Some(a) => a,
                None => SocketAddr::new(gossip_addr.ip(), port),
            };
            (Some(listener), Some(advertised))
        }
    };
    Ok(Opened {
        wire: Wire::Memory(socket),
        bound,
        gossip_addr,
        rpc_listener,
        rpc_addr,
    })
}

/// A node's bound sockets on a memory network (see [`open`]).
#[derive(Debug)]
pub(crate) struct Opened {
    pub wire: Wire,
    pub bound: SocketAddr,
    pub gossip_addr: SocketAddr,
    pub rpc_listener: Option<TcpListener>,
    pub rpc_addr: Option<SocketAddr>,
}

/// One node's address on a [`MemoryNetwork`]; dropping it unbinds the address.
#[derive(Debug)]
pub(crate) struct MemorySocket {
    addr: SocketAddr,
    network: MemoryNetwork,
    rx: mpsc::Receiver<Datagram>,
}

impl MemorySocket {
    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one datagram; like UDP, never fails for want of a receiver, and refuses a
    /// datagram larger than UDP carries.
    pub(crate) fn send_to(&self, packet: &[u8], to: SocketAddr) -> io::Result<usize> {
        if packet.len() > MAX_DATAGRAM {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "message too long: {} bytes, a UDP datagram carries at most {MAX_DATAGRAM}",
                    packet.len()
                ),
            ));
        }
        self.network.deliver(self.addr, to, packet);
        Ok(packet.len())
    }

    /// The next datagram, copied into `buf` (truncated to its length, as UDP does).
    pub(crate) async fn recv_from(&mut self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (from, packet) = self.rx.recv().await.ok_or_else(|| {
            io::Error::new(io::ErrorKind::BrokenPipe, "memory network socket closed")
        })?;
        let len = packet.len().min(buf.len());
        buf[..len].copy_from_slice(&packet[..len]);
        Ok((len, from))
    }
}

impl Drop for MemorySocket {
    fn drop(&mut self) {
        let mut sockets = self
            .network
            .shared
            .sockets
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sockets.remove(&self.addr);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn datagrams_reach_the_bound_address_and_unbinding_frees_it() {
        let net = MemoryNetwork::new();
        let any: SocketAddr = "0.0.0.0:0".parse().unwrap();
        let a = net.bind(any).unwrap();
        let mut b = net.bind(any).unwrap();
        assert_ne!(a.local_addr(), b.local_addr());
        assert!(net.bind(b.local_addr()).is_err());
        assert_eq!(a.send_to(b"hello", b.local_addr()).unwrap(), 5);
        assert!(a.send_to(&[0; MAX_DATAGRAM + 1], b.local_addr()).is_err());
        let mut buf = [0u8; 16];
        let (len, from) = tokio::time::timeout(Duration::from_secs(5), b.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&buf[..len], from), (&b"hello"[..], a.local_addr()));
        let gone = b.local_addr();
        drop(b);
        a.send_to(b"lost", gone).unwrap();
        assert_eq!((net.delivered(), net.dropped(), net.sockets()), (1, 1, 1));
        assert_eq!(net.largest_packet(), 5);
        // The address is free again.
        let again = net.bind(gone).unwrap();
        assert_eq!(again.local_addr(), gone);
    }
}
