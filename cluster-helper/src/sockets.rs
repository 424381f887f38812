//! Binding the gossip (UDP) and RPC (TCP) sockets, and guessing the address peers reach us at.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};

use crate::config::{Config, RpcListen};
use crate::error::{Error, Result};

/// Binds the gossip UDP socket and, unless disabled, the RPC TCP listener. With
/// [`RpcListen::SamePort`] both get one port number; when the listen port is 0 the pair is
/// retried until a number free for both protocols is found.
pub(crate) fn bind_sockets(config: &Config) -> Result<(std::net::UdpSocket, Option<TcpListener>)> {
    let bind_udp = |addr: SocketAddr| {
        std::net::UdpSocket::bind(addr).map_err(|source| Error::Bind {
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
    match config.rpc_listen {
        RpcListen::Disabled => Ok((bind_udp(config.listen)?, None)),
        RpcListen::Addr(addr) => Ok((bind_udp(config.listen)?, Some(bind_tcp(addr)?))),
        RpcListen::SamePort => {
            let mut attempts = 0;
            loop {
                let udp = bind_udp(config.listen)?;
                let port = udp
                    .local_addr()
                    .map_err(|source| Error::Bind {
                        what: "gossip (UDP)",
                        addr: config.listen,
                        source,
                    })?
                    .port();
                match bind_tcp(SocketAddr::new(config.listen.ip(), port)) {
                    Ok(tcp) => return Ok((udp, Some(tcp))),
                    Err(e) if config.listen.port() == 0 && attempts < 32 => {
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
pub(crate) async fn guess_advertise_ip(bound: SocketAddr) -> IpAddr {
    if !bound.ip().is_unspecified() {
        return bound.ip();
    }
    if let Some(host) = hostname::get().ok().and_then(|h| h.into_string().ok())
        && let Ok(addrs) = tokio::net::lookup_host((host.as_str(), bound.port())).await
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
