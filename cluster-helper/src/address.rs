//! [`Address`]: a socket address as configured, `ip:port` or a `host:port` that is resolved
//! (without blocking) when the node starts.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use crate::config::{Config, RpcListen};
use crate::error::Error;
use crate::settings::{Field, Origins};

/// How long resolving one configured host name may take at start-up.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A socket address as configured: a literal `ip:port`, or a `host:port` looked up when the
/// node starts.
///
/// Configuring never blocks: text that is a literal address is parsed at once, a host name is
/// kept as text and resolved by [`NodeBuilder::start`](crate::NodeBuilder::start) with
/// tokio's non-blocking lookup (the first address found is used). A name that does not resolve
/// stops start-up with [`Error::Resolve`], naming the setting and the value.
///
/// ```
/// use cluster_helper::Address;
/// use std::net::SocketAddr;
///
/// let literal: Address = "10.0.0.7:7946".parse()?;
/// assert_eq!(literal, Address::from("10.0.0.7:7946".parse::<SocketAddr>().unwrap()));
/// let named: Address = "node-0.billing:7946".parse()?;
/// assert_eq!(named.to_string(), "node-0.billing:7946");
/// assert_eq!(named.port(), 7946);
/// assert!("no-port".parse::<Address>().is_err());
/// # Ok::<(), cluster_helper::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// A literal socket address: nothing to resolve.
    Ip(SocketAddr),
    /// A host name (lower case) and a port, resolved when the node starts.
    Host {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl Address {
    /// The port (0 where the setting gives it a meaning, e.g. "any free port" for `listen`).
    pub fn port(&self) -> u16 {
        match self {
            Address::Ip(addr) => addr.port(),
            Address::Host { port, .. } => *port,
        }
    }

    /// The literal address, if this is one.
    pub fn as_ip(&self) -> Option<SocketAddr> {
        match self {
            Address::Ip(addr) => Some(*addr),
            Address::Host { .. } => None,
        }
    }

    /// Parses `ip:port`, `[v6]:port` or `host:port`; with `bare_ip_port`, a bare IP address
    /// too (with that port). Errors name `setting` and say what was expected.
    pub(crate) fn parse(
        setting: &str,
        text: &str,
        bare_ip_port: Option<u16>,
    ) -> Result<Address, Error> {
        let t = text.trim();
        if let Ok(addr) = t.parse::<SocketAddr>() {
            return Ok(Address::Ip(addr));
        }
        if let Some(port) = bare_ip_port
            && let Ok(ip) = t
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .unwrap_or(t)
                .parse::<IpAddr>()
        {
            return Ok(Address::Ip(SocketAddr::new(ip, port)));
        }
        let expected = if bare_ip_port.is_some() {
            "an IP address with an optional port, or host:port, e.g. 10.0.0.7, 10.0.0.7:7946, \
             [fd00::7]:7946 or node-0.example:7946"
        } else {
            "ip:port or host:port, e.g. 0.0.0.0:7946, [::]:7946 or node-0.example:7946"
        };
        let fail = |why: &str| Error::config(setting, t, format!("{expected} ({why})"));
        if t.is_empty() {
            return Err(fail("it is empty"));
        }
        if t.starts_with('[') {
            return Err(fail("not a valid [ipv6]:port"));
        }
        let Some((host, port)) = t.rsplit_once(':') else {
            return Err(fail("the port is missing"));
        };
        if host.contains(':') {
            return Err(fail("an IPv6 address goes in brackets: [ipv6]:port"));
        }
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail("the port is not a number"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| fail("the port is above 65535"))?;
        let host = crate::seed::validate_host(host).map_err(|why| fail(&why))?;
        Ok(Address::Host { host, port })
    }

    /// The socket address: the literal one, or the first address `host` resolves to (looked
    /// up without blocking, within 10 s). Errors name `setting`.
    pub(crate) async fn resolve(&self, setting: &str) -> Result<SocketAddr, Error> {
        Ok(self.resolve_all(setting).await?[0])
    }

    /// Every socket address this is, in the resolver's order (at least one): the literal one,
    /// or each address `host` resolves to. Errors name `setting`.
    pub(crate) async fn resolve_all(&self, setting: &str) -> Result<Vec<SocketAddr>, Error> {
        let (host, port) = match self {
            Address::Ip(addr) => return Ok(vec![*addr]),
            Address::Host { host, port } => (host.as_str(), *port),
        };
        let fail = |source: std::io::Error| Error::Resolve {
            setting: setting.to_owned(),
            value: self.to_string(),
            source,
        };
        let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| {
                fail(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {RESOLVE_TIMEOUT:?}"),
                ))
            })?
            .map_err(fail)?
            .collect::<Vec<_>>();
        if found.is_empty() {
            return Err(fail(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the name has no addresses",
            )));
        }
        Ok(found)
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Ip(addr)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(addr) => write!(f, "{addr}"),
            Address::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl FromStr for Address {
    type Err = Error;

    /// Parses `ip:port`, `[v6]:port` or `host:port` (no lookup).
    fn from_str(s: &str) -> Result<Address, Error> {
        Address::parse("address", s, None)
    }
}

/// The addresses of a [`Config`](crate::Config), resolved at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The gossip (UDP) listen addresses, tried in order (a host name may resolve to
    /// several, e.g. `::1` and `127.0.0.1` for `localhost`): at least one.
    pub listen: Vec<SocketAddr>,
    /// The gossip address peers use (port 0: the bound gossip port).
    pub advertise: Option<SocketAddr>,
    /// Where to bind the RPC listener.
    pub rpc_listen: RpcBind,
    /// The RPC address peers use (port 0: the RPC listener's port).
    pub rpc_advertise: Option<SocketAddr>,
    /// The DNS server for DNS seeds.
    pub dns_server: Option<SocketAddr>,
}

/// [`RpcListen`] with its address resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RpcBind {
    /// On the gossip IP and port number.
    SamePort,
    /// On this address.
    Addr(SocketAddr),
    /// No RPC listener.
    Disabled,
}

impl Resolved {
    /// Resolves every address of `config`, one after the other; errors name the setting as
    /// `origins` says it was given.
    pub(crate) async fn resolve(config: &Config, origins: &Origins) -> Result<Resolved, Error> {
        async fn opt(
            addr: Option<&Address>,
            field: Field,
            origins: &Origins,
        ) -> Result<Option<SocketAddr>, Error> {
            match addr {
                Some(a) => a.resolve(&origins.label(field)).await.map(Some),
                None => Ok(None),
            }
        }
        let rpc_listen = match &config.rpc_listen {
            RpcListen::SamePort => RpcBind::SamePort,
            RpcListen::Disabled => RpcBind::Disabled,
            RpcListen::Addr(a) => RpcBind::Addr(a.resolve(&origins.label(Field::RpcListen)).await?),
        };
        Ok(Resolved {
            listen: config
                .listen
                .resolve_all(&origins.label(Field::Listen))
                .await?,
            advertise: opt(config.advertise.as_ref(), Field::Advertise, origins).await?,
            rpc_listen,
            rpc_advertise: opt(config.rpc_advertise.as_ref(), Field::RpcAdvertise, origins).await?,
            dns_server: opt(config.dns_server.as_ref(), Field::DnsServer, origins).await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Address, String> {
        Address::parse("listen address", text, None).map_err(|e| e.to_string())
    }

    #[test]
    fn literals_hosts_and_malformed_text() {
        let sa = |s: &str| Address::Ip(s.parse().unwrap());
        assert_eq!(parse("127.0.0.1:0"), Ok(sa("127.0.0.1:0")));
        assert_eq!(parse(" [::1]:7946 "), Ok(sa("[::1]:7946")));
        assert_eq!(
            parse("Node-0.Billing:7946"),
            Ok(Address::Host {
                host: "node-0.billing".into(),
                port: 7946
            })
        );
        assert_eq!(
            parse("localhost:0"),
            Ok(Address::Host {
                host: "localhost".into(),
                port: 0
            })
        );
        for (bad, why) in [
            ("nowhere", "the port is missing"),
            ("", "it is empty"),
            ("host:", "the port is not a number"),
            ("host:http", "the port is not a number"),
            ("host:65536", "above 65535"),
            ("fd00::1:7946", "brackets"),
            ("[fd00::1", "[ipv6]:port"),
            ("10.0.0:7946", "numeric label"),
            ("bad host:1", "contains ' '"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(
                e.contains("listen address") && e.contains(why) && e.contains(&format!("{bad:?}")),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn bare_ips_take_the_given_port() {
        let a = Address::parse("CLUSTER_ADVERTISE", "10.1.2.3", Some(0)).unwrap();
        assert_eq!(a, Address::Ip("10.1.2.3:0".parse().unwrap()));
        let a = Address::parse("CLUSTER_DNS_SERVER", "[fd00::53]", Some(53)).unwrap();
        assert_eq!(a, Address::Ip("[fd00::53]:53".parse().unwrap()));
        assert!(Address::parse("CLUSTER_ADVERTISE", "pod-0", Some(0)).is_err());
    }

    #[tokio::test]
    async fn resolves_without_blocking_and_names_the_setting() {
        let ip = Address::Ip("10.0.0.1:5".parse().unwrap());
        assert_eq!(
            ip.resolve("x").await.unwrap(),
            "10.0.0.1:5".parse().unwrap()
        );
        let local = parse("localhost:7").unwrap();
        let addr = local.resolve("listen address").await.unwrap();
        assert!(addr.ip().is_loopback() && addr.port() == 7, "{addr}");
        // `.invalid` never resolves (RFC 6761).
        let nowhere = parse("nowhere.invalid:7").unwrap();
        let e = nowhere.resolve("CLUSTER_LISTEN").await.unwrap_err();
        assert!(matches!(e, Error::Resolve { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("CLUSTER_LISTEN") && e.contains("nowhere.invalid:7"),
            "{e}"
        );
    }
}
