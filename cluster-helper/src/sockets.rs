//! Binding the gossip (UDP) and RPC (TCP) sockets, and choosing the addresses peers reach them
//! at.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use crate::address::{Resolved, RpcBind};
use crate::error::{Error, Result};

/// How long looking up this host's own name (to guess the advertised address) may take.
const HOSTNAME_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A node's bound sockets and the addresses it advertises for them.
#[derive(Debug)]
pub(crate) struct Sockets {
    /// The gossip socket, non-blocking, registered with tokio.
    pub udp: tokio::net::UdpSocket,
    /// The address the gossip socket is bound to.
    pub udp_bound: SocketAddr,
    /// The gossip address peers use.
    pub gossip_addr: SocketAddr,
    /// The RPC listener (non-blocking), unless RPC is disabled.
    pub rpc_listener: Option<TcpListener>,
    /// The RPC address peers use, unless RPC is disabled.
    pub rpc_addr: Option<SocketAddr>,
}

impl Sockets {
    /// Binds the sockets at the resolved addresses and works out the
    /// advertised ones: `advertise` (port 0: the bound gossip port), else the listen IP if it
    /// is specific, else the hostname's address, else 127.0.0.1; the RPC address likewise.
    pub(crate) async fn open(addrs: &Resolved) -> Result<Sockets> {
        let (udp, tcp, listen) = bind_first(addrs)?;
        let gossip_err = |addr: SocketAddr| {
            move |source| Error::Bind {
                what: "gossip (UDP)",
                addr,
                source,
            }
        };
        let rpc_err = |addr: SocketAddr| {
            move |source| Error::Bind {
                what: "rpc (TCP)",
                addr,
                source,
            }
        };
        let udp_bound = udp.local_addr().map_err(gossip_err(listen))?;
        let gossip_addr = match addrs.advertise {
            Some(a) if a.port() == 0 => SocketAddr::new(a.ip(), udp_bound.port()),
            Some(a) => a,
            None => SocketAddr::new(guess_advertise_ip(udp_bound).await, udp_bound.port()),
        };
        let rpc_addr = match &tcp {
            None => None,
            Some(l) => {
                let bound = l.local_addr().map_err(rpc_err(udp_bound))?;
                l.set_nonblocking(true).map_err(rpc_err(bound))?;
                Some(match addrs.rpc_advertise {
                    Some(a) if a.port() == 0 => SocketAddr::new(a.ip(), bound.port()),
                    Some(a) => a,
                    None => SocketAddr::new(gossip_addr.ip(), bound.port()),
                })
            }
        };
        udp.set_nonblocking(true).map_err(gossip_err(udp_bound))?;
        let udp = tokio::net::UdpSocket::from_std(udp).map_err(gossip_err(udp_bound))?;
        Ok(Sockets {
            udp,
            udp_bound,
            gossip_addr,
            rpc_listener: tcp,
            rpc_addr,
        })
    }
}

/// Binds at the first listen address that works (as std's `bind` does with every address a
/// name resolves to); returns the sockets and that address, or the last address's error.
fn bind_first(addrs: &Resolved) -> Result<(UdpSocket, Option<TcpListener>, SocketAddr)> {
    let mut last = None;
    for &listen in &addrs.listen {
        match bind(listen, addrs.rpc_listen) {
            Ok((udp, tcp)) => return Ok((udp, tcp, listen)),
            Err(e) => {
                tracing::debug!("cannot bind {listen}: {e}");
                last = Some(e);
            }
        }
    }
    Err(last.expect("a resolved address has at least one socket address"))
}

/// Binds the gossip UDP socket and, unless disabled, the RPC TCP listener. With
/// [`RpcBind::SamePort`] both get one port number; when the listen port is 0 the pair is
/// retried until a number free for both protocols is found.
fn bind(listen: SocketAddr, rpc_listen: RpcBind) -> Result<(UdpSocket, Option<TcpListener>)> {
    let bind_udp = |addr: SocketAddr| {
        UdpSocket::bind(addr).map_err(|source| Error::Bind {
            what: "gossip (UDP)",
            addr,
            source,
        })
    };
    let bind_tcp = |addr: SocketAddr| {
        TcpListener::bind(addr).map_err(|source| Error::Bind {
            what: "rpc (TCP)",
            addr,
            source,
        })
    };
    match rpc_listen {
        RpcBind::Disabled => Ok((bind_udp(listen)?, None)),
        RpcBind::Addr(addr) => Ok((bind_udp(listen)?, Some(bind_tcp(addr)?))),
        RpcBind::SamePort => {
            let mut attempts = 0;
            loop {
                let udp = bind_udp(listen)?;
                let port = udp
                    .local_addr()
                    .map_err(|source| Error::Bind {
                        what: "gossip (UDP)",
                        addr: listen,
                        source,
                    })?
                    .port();
                match bind_tcp(SocketAddr::new(listen.ip(), port)) {
                    Ok(tcp) => return Ok((udp, Some(tcp))),
                    Err(e) if listen.port() == 0 && attempts < 32 => {
                        attempts += 1;
                        tracing::debug!("port {port} free for UDP but not TCP, retrying: {e}");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// The address peers should use for `bound`, when it was bound to an unspecified IP.
async fn guess_advertise_ip(bound: SocketAddr) -> IpAddr {
    if !bound.ip().is_unspecified() {
        return bound.ip();
    }
    if let Some(host) = hostname::get().ok().and_then(|h| h.into_string().ok())
        && let Ok(Ok(addrs)) = tokio::time::timeout(
            HOSTNAME_LOOKUP_TIMEOUT,
            tokio::net::lookup_host((host.as_str(), bound.port())),
        )
        .await
    {
        let addrs: Vec<SocketAddr> = addrs.collect();
        let pick = addrs
            .iter()
            .find(|a| a.is_ipv4() && !a.ip().is_loopback())
            .or_else(|| addrs.iter().find(|a| !a.ip().is_loopback()));
        if let Some(a) = pick {
            return a.ip();
        }
    }
    tracing::warn!(
        "cannot tell which address peers can reach this node at; advertising 127.0.0.1 \
         (set CLUSTER_ADVERTISE to the pod/host IP)"
    );
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::RpcListen;
    use crate::node::Node;
    use crate::secret::Secret;

    /// Whether anything accepts TCP connections at `addr` (a listener that never accepts
    /// still completes the handshake from its backlog).
    async fn tcp_open(addr: std::net::SocketAddr) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                .await,
            Ok(Ok(_))
        )
    }

    #[tokio::test]
    async fn a_gossip_only_node_binds_no_tcp_port() {
        let secret = Secret::generate();
        let builder = || {
            Node::builder()
                .cluster("sockets-test")
                .listen("127.0.0.1:0")
                .secret_key(secret.clone())
        };
        // Control: asked for an RPC listener, the same port number is open over TCP.
        let serving = builder()
            .rpc_listen(RpcListen::SamePort)
            .start()
            .await
            .unwrap();
        assert!(serving.rpc_addr().is_some());
        assert!(tcp_open(serving.gossip_addr()).await);
        serving.shutdown().await;

        // Explicitly without one, and by default (nothing set: no RPC layer takes a listener).
        for gossip_only in [
            builder().rpc_listen(RpcListen::Disabled),
            builder(),
            builder().config(crate::Config::default()),
        ] {
            let gossip_only = gossip_only.start().await.unwrap();
            assert_eq!(gossip_only.rpc_addr(), None);
            assert!(gossip_only.take_rpc_listener().is_none());
            assert!(
                !tcp_open(gossip_only.gossip_addr()).await,
                "a gossip-only node accepts TCP connections on its port"
            );
            gossip_only.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_layer_default_applies_only_when_nothing_sets_the_listener() {
        let secret = Secret::generate();
        let layer = || {
            Node::builder()
                .cluster("sockets-test")
                .listen("127.0.0.1:0")
                .secret_key(secret.clone())
                .default_rpc_listen(RpcListen::SamePort)
        };
        let serving = layer().start().await.unwrap();
        assert_eq!(
            serving.rpc_addr().map(|a| a.port()),
            Some(serving.gossip_addr().port())
        );
        assert!(serving.take_rpc_listener().is_some());
        serving.shutdown().await;
        for off in [
            layer().rpc_listen(RpcListen::Disabled),
            layer().from_vars([("CLUSTER_RPC_LISTEN", "off")]).unwrap(),
        ] {
            let off = off.start().await.unwrap();
            assert_eq!(off.rpc_addr(), None);
            assert!(!tcp_open(off.gossip_addr()).await);
            off.shutdown().await;
        }
    }
}
