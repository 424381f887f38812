//! Node configuration: a `#[non_exhaustive]` struct with defaults, filled from the builder or
//! from `CLUSTER_*` environment variables.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::Error;
use crate::id::Role;
use crate::seed::{Seed, parse_seed_list};

/// The default port for gossip (UDP) and RPC (TCP).
pub const DEFAULT_PORT: u16 = 7946;

/// Where a node accepts RPC connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RpcListen {
    /// A TCP listener on the gossip address's IP and port number (one port number per node,
    /// TCP and UDP). The default.
    #[default]
    SamePort,
    /// A TCP listener on this address (port 0 picks a free port).
    Addr(SocketAddr),
    /// No RPC listener: the node only takes part in membership.
    Disabled,
}

/// Everything a [`Node`](crate::Node) needs. Build it with [`NodeBuilder`](crate::NodeBuilder)
/// or fill it from the environment with [`NodeBuilder::from_env`](crate::NodeBuilder::from_env).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The cluster's name (`CLUSTER_NAME`, default `"default"`). Nodes of other clusters are
    /// never seen, even on the same network.
    pub cluster: String,
    /// The node's name (`CLUSTER_NODE_NAME`). Default: the hostname, with `-<pid>` appended
    /// unless the process is a container's PID 1, and `-<n>` for the n-th extra node started in
    /// the same process.
    pub node_name: Option<String>,
    /// The roles the node starts with (`CLUSTER_ROLES`, comma separated).
    pub roles: BTreeSet<Role>,
    /// The RPC services the node serves from the start (set by the RPC layer, not from the
    /// environment), so that they are advertised with the node's first gossip state.
    pub services: BTreeSet<crate::id::ServiceName>,
    /// Where peers might be (`CLUSTER_SEEDS`, comma separated).
    pub seeds: Vec<Seed>,
    /// The gossip (UDP) listen address (`CLUSTER_LISTEN`, default `0.0.0.0:7946`).
    pub listen: SocketAddr,
    /// The gossip address peers use to reach this node (`CLUSTER_ADVERTISE`, e.g. the pod IP;
    /// a bare IP takes the listen port). Default: the listen address if it is specific, else the
    /// address the hostname resolves to, else 127.0.0.1.
    pub advertise: Option<SocketAddr>,
    /// The RPC (TCP) listener (`CLUSTER_RPC_LISTEN`: an address, or `off`).
    pub rpc_listen: RpcListen,
    /// The RPC address peers use (`CLUSTER_RPC_ADVERTISE`). Default: the advertised gossip IP
    /// with the RPC listener's port.
    pub rpc_advertise: Option<SocketAddr>,
    /// The cluster secret (`CLUSTER_SECRET`, or the contents of `CLUSTER_SECRET_FILE`).
    /// Without one, gossip is still encrypted but with a key anyone can derive from the cluster
    /// name: a warning is logged.
    pub secret: Option<Vec<u8>>,
    /// The DNS server for `dns:`/`srv:`/hostname seeds (`CLUSTER_DNS_SERVER`, `ip:port`).
    /// Default: the system's resolver configuration.
    pub dns_server: Option<SocketAddr>,
    /// How often a node gossips with a few peers (`CLUSTER_GOSSIP_INTERVAL`, default 250ms).
    pub gossip_interval: Duration,
    /// Phi-accrual threshold (`CLUSTER_PHI_THRESHOLD`, default 8): a node is declared down once
    /// nothing was heard from it for about this many mean heartbeat intervals. With the default
    /// interval a crashed node leaves the registry in about 2-3 s, well within 10 s.
    pub phi_threshold: f64,
    /// How long a leaving node keeps gossiping after announcing `leaving` (so that every peer
    /// hears it) before it stops (`CLUSTER_LEAVE_GRACE`, default 500ms).
    pub leave_grace: Duration,
    /// How long a node waits for any peer to answer before it declares itself ready alone, as
    /// the first node of a new cluster (`CLUSTER_JOIN_TIMEOUT`, default 5s).
    pub join_timeout: Duration,
    /// Bounds on DNS re-resolution; within them the interval follows the records' TTL
    /// (`CLUSTER_DNS_MIN_INTERVAL`, default 1s; `CLUSTER_DNS_MAX_INTERVAL`, default 30s).
    pub dns_min_interval: Duration,
    /// See [`dns_min_interval`](Config::dns_min_interval).
    pub dns_max_interval: Duration,
    /// How long a dead node's state is kept (to recognise its late packets) before it is
    /// forgotten. Default 10 minutes.
    pub dead_node_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cluster: "default".to_owned(),
            node_name: None,
            roles: BTreeSet::new(),
            services: BTreeSet::new(),
            seeds: Vec::new(),
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            advertise: None,
            rpc_listen: RpcListen::SamePort,
            rpc_advertise: None,
            secret: None,
            dns_server: None,
            gossip_interval: Duration::from_millis(250),
            phi_threshold: 8.0,
            leave_grace: Duration::from_millis(500),
            join_timeout: Duration::from_secs(5),
            dns_min_interval: Duration::from_secs(1),
            dns_max_interval: Duration::from_secs(30),
            dead_node_grace: Duration::from_secs(600),
        }
    }
}

/// The environment variables [`Config::apply_env`] reads.
pub const ENV_VARS: &[&str] = &[
    "CLUSTER_NAME",
    "CLUSTER_NODE_NAME",
    "CLUSTER_ROLES",
    "CLUSTER_SEEDS",
    "CLUSTER_LISTEN",
    "CLUSTER_ADVERTISE",
    "CLUSTER_RPC_LISTEN",
    "CLUSTER_RPC_ADVERTISE",
    "CLUSTER_SECRET",
    "CLUSTER_SECRET_FILE",
    "CLUSTER_DNS_SERVER",
    "CLUSTER_GOSSIP_INTERVAL",
    "CLUSTER_PHI_THRESHOLD",
    "CLUSTER_LEAVE_GRACE",
    "CLUSTER_JOIN_TIMEOUT",
    "CLUSTER_DNS_MIN_INTERVAL",
    "CLUSTER_DNS_MAX_INTERVAL",
];

impl Config {
    /// Overrides fields with the `CLUSTER_*` variables that `get` returns a value for. A bad
    /// value is an [`Error::InvalidConfig`] naming the variable and what was expected.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = var("CLUSTER_NAME") {
            self.cluster = parse_cluster_name("CLUSTER_NAME", v.trim())?;
        }
        if let Some(v) = var("CLUSTER_NODE_NAME") {
            let v = v.trim();
            crate::id::check_node_name(v).map_err(|e| {
                Error::config(
                    "CLUSTER_NODE_NAME",
                    v,
                    format!("a node name ({})", reason_of(&e)),
                )
            })?;
            self.node_name = Some(v.to_owned());
        }
        if let Some(v) = var("CLUSTER_ROLES") {
            self.roles = parse_roles("CLUSTER_ROLES", &v)?;
        }
        if let Some(v) = var("CLUSTER_SEEDS") {
            self.seeds = parse_seed_list(&v)?;
        }
        if let Some(v) = var("CLUSTER_LISTEN") {
            self.listen = parse_addr("CLUSTER_LISTEN", &v, None)?;
        }
        if let Some(v) = var("CLUSTER_ADVERTISE") {
            self.advertise = Some(parse_addr(
                "CLUSTER_ADVERTISE",
                &v,
                Some(self.listen.port()),
            )?);
        }
        if let Some(v) = var("CLUSTER_RPC_LISTEN") {
            self.rpc_listen = match v.trim() {
                "off" | "none" | "disabled" => RpcListen::Disabled,
                "same" => RpcListen::SamePort,
                other => RpcListen::Addr(parse_addr("CLUSTER_RPC_LISTEN", other, None)?),
            };
        }
        if let Some(v) = var("CLUSTER_RPC_ADVERTISE") {
            self.rpc_advertise = Some(parse_addr("CLUSTER_RPC_ADVERTISE", &v, None)?);
        }
        match (get("CLUSTER_SECRET"), get("CLUSTER_SECRET_FILE")) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "CLUSTER_SECRET and CLUSTER_SECRET_FILE",
                    "both set",
                    "only one of them",
                ));
            }
            (Some(secret), None) => {
                if secret.is_empty() {
                    return Err(Error::config(
                        "CLUSTER_SECRET",
                        "",
                        "a non-empty secret (or leave the variable unset)",
                    ));
                }
                self.secret = Some(secret.into_bytes());
            }
            (None, Some(path)) => {
                let bytes = std::fs::read(&path).map_err(|source| Error::SecretFile {
                    path: path.clone(),
                    source,
                })?;
                let trimmed = bytes.trim_ascii_end();
                if trimmed.is_empty() {
                    return Err(Error::config(
                        "CLUSTER_SECRET_FILE",
                        path,
                        "a file holding a non-empty secret",
                    ));
                }
                self.secret = Some(trimmed.to_vec());
            }
            (None, None) => {}
        }
        if let Some(v) = var("CLUSTER_DNS_SERVER") {
            self.dns_server = Some(parse_addr("CLUSTER_DNS_SERVER", &v, Some(53))?);
        }
        if let Some(v) = var("CLUSTER_GOSSIP_INTERVAL") {
            self.gossip_interval = parse_duration("CLUSTER_GOSSIP_INTERVAL", &v)?;
        }
        if let Some(v) = var("CLUSTER_PHI_THRESHOLD") {
            self.phi_threshold = v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| p.is_finite() && *p >= 1.0)
                .ok_or_else(|| {
                    Error::config("CLUSTER_PHI_THRESHOLD", v, "a number of at least 1, e.g. 8")
                })?;
        }
        if let Some(v) = var("CLUSTER_LEAVE_GRACE") {
            self.leave_grace = parse_duration("CLUSTER_LEAVE_GRACE", &v)?;
        }
        if let Some(v) = var("CLUSTER_JOIN_TIMEOUT") {
            self.join_timeout = parse_duration("CLUSTER_JOIN_TIMEOUT", &v)?;
        }
        if let Some(v) = var("CLUSTER_DNS_MIN_INTERVAL") {
            self.dns_min_interval = parse_duration("CLUSTER_DNS_MIN_INTERVAL", &v)?;
        }
        if let Some(v) = var("CLUSTER_DNS_MAX_INTERVAL") {
            self.dns_max_interval = parse_duration("CLUSTER_DNS_MAX_INTERVAL", &v)?;
        }
        self.validate()
    }

    /// Checks relations between fields that each parse on their own.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.gossip_interval < Duration::from_millis(10)
            || self.gossip_interval > Duration::from_secs(60)
        {
            return Err(Error::config(
                "CLUSTER_GOSSIP_INTERVAL",
                format!("{:?}", self.gossip_interval),
                "a duration from 10ms to 60s",
            ));
        }
        if self.dns_min_interval > self.dns_max_interval {
            return Err(Error::config(
                "CLUSTER_DNS_MIN_INTERVAL",
                format!("{:?}", self.dns_min_interval),
                format!(
                    "at most CLUSTER_DNS_MAX_INTERVAL ({:?})",
                    self.dns_max_interval
                ),
            ));
        }
        if self.dns_min_interval.is_zero() {
            return Err(Error::config(
                "CLUSTER_DNS_MIN_INTERVAL",
                "0",
                "a positive duration, e.g. 1s",
            ));
        }
        Ok(())
    }
}

fn reason_of(e: &Error) -> &'static str {
    match e {
        Error::InvalidRole { reason, .. }
        | Error::InvalidNodeName { reason, .. }
        | Error::InvalidService { reason, .. } => reason,
        _ => "invalid",
    }
}

pub(crate) fn parse_cluster_name(setting: &str, v: &str) -> Result<String, Error> {
    crate::id::check_node_name(v).map_err(|e| {
        Error::config(
            setting,
            v,
            format!(
                "a cluster name of 1-253 ASCII letters, digits, '-', '_', '.' ({})",
                reason_of(&e)
            ),
        )
    })?;
    Ok(v.to_owned())
}

pub(crate) fn parse_roles(setting: &str, v: &str) -> Result<BTreeSet<Role>, Error> {
    v.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| {
            Role::new(r).map_err(|e| {
                Error::config(
                    setting,
                    v,
                    format!(
                        "a comma-separated list of role names; {r:?} is not one: {}",
                        reason_of(&e)
                    ),
                )
            })
        })
        .collect()
}

/// Parses `ip:port`, `[v6]:port`, or (when `default_port` is given) a bare IP.
pub(crate) fn parse_addr(
    setting: &str,
    v: &str,
    default_port: Option<u16>,
) -> Result<SocketAddr, Error> {
    let v = v.trim();
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = default_port {
        if let Ok(ip) = v.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        return Err(Error::config(
            setting,
            v,
            "an IP address with an optional port, e.g. 10.0.0.7 or 10.0.0.7:7946 or [fd00::7]:7946",
        ));
    }
    Err(Error::config(
        setting,
        v,
        "an IP address and port, e.g. 0.0.0.0:7946 or [::]:7946",
    ))
}

/// Parses `250ms`, `2s`, `1m` or a bare number of milliseconds.
pub(crate) fn parse_duration(setting: &str, v: &str) -> Result<Duration, Error> {
    let t = v.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => t.split_at(i),
        None => (t, "ms"),
    };
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        _ => f64::NAN,
    };
    num.parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|secs| secs.is_finite() && *secs >= 0.0 && *secs < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            Error::config(
                setting,
                v,
                "a duration such as 250ms, 2s or 1m (a bare number is milliseconds)",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        Config::default()
            .apply_env(env(pairs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_every_variable() {
        let mut c = Config::default();
        c.apply_env(env(&[
            ("CLUSTER_NAME", "prod"),
            ("CLUSTER_NODE_NAME", "billing-0"),
            ("CLUSTER_ROLES", "billing, audit"),
            ("CLUSTER_SEEDS", "10.0.0.1:7946,dns:billing.svc:7946"),
            ("CLUSTER_LISTEN", "0.0.0.0:9000"),
            ("CLUSTER_ADVERTISE", "10.1.2.3"),
            ("CLUSTER_RPC_LISTEN", "off"),
            ("CLUSTER_SECRET", "s3cret"),
            ("CLUSTER_DNS_SERVER", "127.0.0.1:5353"),
            ("CLUSTER_GOSSIP_INTERVAL", "100ms"),
            ("CLUSTER_PHI_THRESHOLD", "10"),
            ("CLUSTER_LEAVE_GRACE", "1s"),
        ]))
        .unwrap();
        assert_eq!(c.cluster, "prod");
        assert_eq!(c.node_name.as_deref(), Some("billing-0"));
        assert_eq!(c.roles.len(), 2);
        assert_eq!(c.seeds.len(), 2);
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.advertise, Some("10.1.2.3:9000".parse().unwrap()));
        assert_eq!(c.rpc_listen, RpcListen::Disabled);
        assert_eq!(c.secret.as_deref(), Some(&b"s3cret"[..]));
        assert_eq!(c.dns_server, Some("127.0.0.1:5353".parse().unwrap()));
        assert_eq!(c.gossip_interval, Duration::from_millis(100));
        assert_eq!(c.phi_threshold, 10.0);
        assert_eq!(c.leave_grace, Duration::from_secs(1));
    }

    #[test]
    fn bad_values_name_the_variable_and_the_expectation() {
        let e = err(&[("CLUSTER_ROLES", "billing,bad role")]);
        assert!(
            e.contains("CLUSTER_ROLES") && e.contains("\"bad role\"") && e.contains("role names"),
            "{e}"
        );
        let e = err(&[("CLUSTER_LISTEN", "localhost")]);
        assert!(
            e.contains("CLUSTER_LISTEN") && e.contains("IP address and port"),
            "{e}"
        );
        let e = err(&[("CLUSTER_GOSSIP_INTERVAL", "fast")]);
        assert!(
            e.contains("CLUSTER_GOSSIP_INTERVAL") && e.contains("250ms"),
            "{e}"
        );
        let e = err(&[("CLUSTER_GOSSIP_INTERVAL", "0")]);
        assert!(e.contains("10ms to 60s"), "{e}");
        let e = err(&[("CLUSTER_SEEDS", "10.0.0.1:0")]);
        assert!(e.contains("CLUSTER_SEEDS"), "{e}");
        let e = err(&[("CLUSTER_SECRET", "a"), ("CLUSTER_SECRET_FILE", "/x")]);
        assert!(e.contains("only one"), "{e}");
        let e = err(&[("CLUSTER_SECRET_FILE", "/nonexistent/secret")]);
        assert!(
            e.contains("CLUSTER_SECRET_FILE") && e.contains("/nonexistent/secret"),
            "{e}"
        );
        let e = err(&[("CLUSTER_NAME", "has space")]);
        assert!(e.contains("CLUSTER_NAME"), "{e}");
        let e = err(&[("CLUSTER_PHI_THRESHOLD", "-1")]);
        assert!(e.contains("CLUSTER_PHI_THRESHOLD"), "{e}");
        let e = err(&[("CLUSTER_DNS_SERVER", "dns.example")]);
        assert!(e.contains("CLUSTER_DNS_SERVER"), "{e}");
    }

    #[test]
    fn secret_file_is_trimmed() {
        let dir = std::env::temp_dir().join(format!("ch-secret-{}", std::process::id()));
        std::fs::write(&dir, "topsecret\n").unwrap();
        let mut c = Config::default();
        c.apply_env(env(&[("CLUSTER_SECRET_FILE", dir.to_str().unwrap())]))
            .unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(c.secret.as_deref(), Some(&b"topsecret"[..]));
    }

    #[test]
    fn durations() {
        let d = |s| parse_duration("X", s).unwrap();
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("2s"), Duration::from_secs(2));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("1m"), Duration::from_secs(60));
        assert_eq!(d("40"), Duration::from_millis(40));
        assert!(parse_duration("X", "1h").is_err());
        assert!(parse_duration("X", "-1s").is_err());
    }
}
