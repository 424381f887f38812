//! Seeds: where peers might be found (`CLUSTER_SEEDS`).
//!
//! A seed is a literal socket address, a `hostname:port`, a DNS name whose A/AAAA records list
//! the peers (a Kubernetes headless service), or a DNS SRV name whose records list targets and
//! ports. Parsing is strict so that a typo stops start-up with a message naming
//! `CLUSTER_SEEDS`, the offending item and what was expected.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use hickory_resolver::proto::rr::Name;

use crate::error::Error;

/// The setting named in parse errors.
const SETTING: &str = "CLUSTER_SEEDS";

/// What a seed looks like, for error messages.
const EXPECTED: &str = "host:port, dns:name:port or srv:_service._proto.name";

/// Longest DNS name in its text form, without the trailing dot (RFC 1035 §2.3.4).
const MAX_NAME_LEN: usize = 253;

/// Longest DNS label (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// One place where peers might be found, as given in `CLUSTER_SEEDS` or to the builder.
///
/// Parse one with [`str::parse`]; [`Display`](fmt::Display) gives back the canonical form
/// (names in lower case), which parses to the same seed:
///
/// | text                                                | seed                        |
/// |-----------------------------------------------------|-----------------------------|
/// | `10.0.0.7:7946`, `[fd00::7]:7946`                    | [`Seed::Addr`]              |
/// | `billing-0.billing:7946`                             | [`Seed::Host`] (A/AAAA)     |
/// | `dns:billing.default.svc.cluster.local:7946`         | [`Seed::Dns`] (A/AAAA)      |
/// | `srv:_gossip._udp.billing.default.svc.cluster.local` | [`Seed::Srv`] (SRV)         |
///
/// Names that do not end with a dot are looked up with the system resolver's search domains
/// (so `dns:billing:7946` works inside a Kubernetes namespace); write a trailing dot for a fully
/// qualified name.
///
/// ```
/// use cluster_helper::Seed;
///
/// let seed: Seed = "dns:Billing.default.svc.cluster.local:7946".parse()?;
/// assert_eq!(seed.to_string(), "dns:billing.default.svc.cluster.local:7946");
/// # Ok::<(), cluster_helper::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Seed {
    /// A literal socket address; needs no DNS.
    Addr(SocketAddr),
    /// `hostname:port`: every A and AAAA record of `host`, each with `port`
    /// (resolved like [`Seed::Dns`]).
    Host {
        /// The host name, in lower case.
        host: String,
        /// The port of every address found.
        port: u16,
    },
    /// `dns:name:port`: every A and AAAA record of `name` (e.g. a Kubernetes headless service),
    /// each with `port`.
    Dns {
        /// The DNS name, in lower case.
        name: String,
        /// The port of every address found.
        port: u16,
    },
    /// `srv:_service._proto.name`: every SRV record of `name`; each target host's A and AAAA
    /// records, with the port of its SRV record.
    Srv {
        /// The SRV name, in lower case, e.g. `_gossip._udp.billing.default.svc.cluster.local`.
        name: String,
    },
}

impl From<SocketAddr> for Seed {
    fn from(addr: SocketAddr) -> Self {
        Seed::Addr(addr)
    }
}

impl fmt::Display for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seed::Addr(addr) => write!(f, "{addr}"),
            Seed::Host { host, port } => write!(f, "{host}:{port}"),
            Seed::Dns { name, port } => write!(f, "dns:{name}:{port}"),
            Seed::Srv { name } => write!(f, "srv:{name}"),
        }
    }
}

impl FromStr for Seed {
    type Err = Error;

    /// Parses one seed; surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, Error> {
        let item = s.trim();
        let fail = |expected: String| Error::config(SETTING, item, expected);

        if item.is_empty() {
            return Err(fail(format!("a seed ({EXPECTED}), not an empty string")));
        }
        if item.contains(char::is_whitespace) {
            return Err(fail(format!("{EXPECTED} without spaces")));
        }
        if item.contains("://") {
            return Err(fail(format!("{EXPECTED}, not a URL")));
        }

        if let Some(rest) = strip_prefix_ignore_case(item, "dns:") {
            let Some((name, port)) = rest.rsplit_once(':') else {
                return Err(fail(
                    "dns:name:port, e.g. dns:billing.default.svc.cluster.local:7946 (the port is missing)"
                        .into(),
                ));
            };
            let port = parse_port(port)
                .map_err(|why| fail(format!("dns:name:port with a port number 1-65535 ({why})")))?;
            if name.parse::<IpAddr>().is_ok() || name.starts_with('[') {
                return Err(fail(format!(
                    "dns:name:port with a DNS name; write a literal address without \"dns:\" (e.g. {})",
                    literal_hint(name, port)
                )));
            }
            let name = validate_name(name, NameKind::Host)
                .map_err(|why| fail(format!("dns:name:port with a valid DNS name ({why})")))?;
            return Ok(Seed::Dns { name, port });
        }

        if let Some(rest) = strip_prefix_ignore_case(item, "srv:") {
            if let Some((_, maybe_port)) = rest.rsplit_once(':') {
                let why = if maybe_port.bytes().all(|b| b.is_ascii_digit()) {
                    "no port: the SRV records carry the ports"
                } else {
                    "a DNS name, which contains no ':'"
                };
                return Err(fail(format!("srv:_service._proto.name with {why}")));
            }
            let name = validate_name(rest, NameKind::Srv).map_err(|why| {
                fail(format!(
                    "srv:_service._proto.name, e.g. srv:_gossip._udp.billing.default.svc.cluster.local ({why})"
                ))
            })?;
            return Ok(Seed::Srv { name });
        }

        if let Ok(addr) = item.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(fail(format!(
                    "{EXPECTED} with a port number 1-65535, not 0"
                )));
            }
            return Ok(Seed::Addr(addr));
        }

        if let Some(inner) = item.strip_prefix('[') {
            // A bracketed IPv6 literal that did not parse: find out why.
            let Some((ip, after)) = inner.split_once(']') else {
                return Err(fail(
                    "[ipv6]:port, e.g. [fd00::7]:7946 (missing ']')".into(),
                ));
            };
            if ip.parse::<Ipv6Addr>().is_err() {
                return Err(fail(format!(
                    "[ipv6]:port with a valid IPv6 address, not {ip:?}"
                )));
            }
            let Some(port) = after.strip_prefix(':') else {
                return Err(fail(
                    "[ipv6]:port, e.g. [fd00::7]:7946 (the port is missing)".into(),
                ));
            };
            let why = parse_port(port).err().unwrap_or("an invalid port");
            return Err(fail(format!(
                "[ipv6]:port with a port number 1-65535 ({why})"
            )));
        }

        if item.parse::<Ipv6Addr>().is_ok() {
            return Err(fail(format!(
                "[ipv6]:port: an IPv6 address goes in brackets, followed by the port, \
                 e.g. [fd00::7]:7946; {item:?} has no brackets"
            )));
        }

        let Some((host, port)) = item.rsplit_once(':') else {
            return Err(fail(format!("{EXPECTED} (the port is missing)")));
        };
        if host.contains(':') {
            if host.parse::<Ipv6Addr>().is_ok() {
                return Err(fail(format!(
                    "IPv6 addresses in brackets, e.g. [{host}]:{port}"
                )));
            }
            let prefix = host.split(':').next().unwrap_or_default();
            return Err(fail(format!(
                "{EXPECTED}; unknown prefix \"{prefix}:\" (only \"dns:\" and \"srv:\" are known)"
            )));
        }
        let port = parse_port(port)
            .map_err(|why| fail(format!("host:port with a port number 1-65535 ({why})")))?;
        let host = validate_name(host, NameKind::Host).map_err(|why| {
            fail(format!(
                "host:port with a valid host name or IP address ({why})"
            ))
        })?;
        Ok(Seed::Host { host, port })
    }
}

/// Parses a comma-separated seed list such as the value of `CLUSTER_SEEDS`.
///
/// Whitespace around items is ignored, and so are empty items (`"a:1,,b:2,"`); an empty or blank
/// list gives no seeds. Duplicates are dropped, keeping the first. The error names the offending
/// item, e.g. `invalid CLUSTER_SEEDS: "dns:billing": expected dns:name:port, ...`.
pub fn parse_seed_list(s: &str) -> Result<Vec<Seed>, Error> {
    let mut seeds: Vec<Seed> = Vec::new();
    for item in s.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let seed: Seed = item.parse()?;
        if !seeds.contains(&seed) {
            seeds.push(seed);
        }
    }
    Ok(seeds)
}

/// `prefix` removed from the start of `s`, compared without regard to ASCII case.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// A port number 1-65535 written in decimal digits only.
fn parse_port(port: &str) -> Result<u16, &'static str> {
    if port.is_empty() {
        return Err("the port is missing");
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port is not a number");
    }
    match port.parse::<u16>() {
        Ok(0) => Err("port 0 is not allowed"),
        Ok(port) => Ok(port),
        Err(_) => Err("the port is above 65535"),
    }
}

/// How a literal address would be written, for a hint in an error message.
fn literal_hint(ip: &str, port: u16) -> String {
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    match ip.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{ip}:{port}"),
    }
}

/// Checks a host name (as in `host:port`) and returns it in lower case.
pub(crate) fn validate_host(name: &str) -> Result<String, String> {
    validate_name(name, NameKind::Host)
}

/// Which rules a DNS name must follow beyond the common ones.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NameKind {
    /// A host name: its last label is not all digits (that would be a mistyped IPv4 address).
    Host,
    /// An SRV name: `_service._proto.name`, at least three labels, the first two starting with
    /// an underscore.
    Srv,
}

/// Checks a DNS name and returns it in lower case (with its trailing dot, if it had one).
fn validate_name(name: &str, kind: NameKind) -> Result<String, String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    let relative = name.strip_suffix('.').unwrap_or(name);
    if relative.is_empty() {
        return Err("the root name \".\" cannot be looked up".into());
    }
    if relative.len() > MAX_NAME_LEN {
        return Err(format!(
            "the name is {} characters long, at most {MAX_NAME_LEN} are allowed",
            relative.len()
        ));
    }
    let labels: Vec<&str> = relative.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err("the name has an empty label (\"..\" or a leading dot)".into());
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(format!(
                "label {label:?} is {} characters long, at most {MAX_LABEL_LEN} are allowed",
                label.len()
            ));
        }
        if let Some(bad) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "label {label:?} contains {bad:?}; only letters, digits, '-' and '_' are allowed"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} starts or ends with '-'"));
        }
    }
    match kind {
        NameKind::Host => {
            if labels
                .last()
                .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(format!(
                    "{relative:?} is neither a valid IP address nor a host name (a name cannot end with a numeric label)"
                ));
            }
        }
        NameKind::Srv => {
            let service_and_proto = labels.len() >= 3
                && labels[0].len() > 1
                && labels[0].starts_with('_')
                && labels[1].len() > 1
                && labels[1].starts_with('_');
            if !service_and_proto {
                return Err(format!(
                    "{relative:?} does not start with _service._proto. followed by a domain"
                ));
            }
        }
    }
    // The resolver must accept it too.
    Name::from_ascii(name).map_err(|e| format!("not a valid DNS name: {e}"))?;
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Seed {
        match s.parse::<Seed>() {
            Ok(seed) => seed,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn parse_err(s: &str) -> String {
        match s.parse::<Seed>() {
            Ok(seed) => panic!("{s:?} should not parse, got {seed:?}"),
            Err(e) => {
                assert!(
                    matches!(&e, Error::InvalidConfig { setting, .. } if setting == "CLUSTER_SEEDS"),
                    "{e:?}"
                );
                e.to_string()
            }
        }
    }

    #[test]
    fn literal_addresses() {
        assert_eq!(
            parse("127.0.0.1:7946"),
            Seed::Addr("127.0.0.1:7946".parse().unwrap())
        );
        assert_eq!(
            parse("[::1]:7946"),
            Seed::Addr("[::1]:7946".parse().unwrap())
        );
        assert_eq!(
            parse("  10.0.0.7:1  "),
            Seed::Addr("10.0.0.7:1".parse().unwrap())
        );
        assert_eq!(
            Seed::from("10.1.2.3:9".parse::<SocketAddr>().unwrap()),
            parse("10.1.2.3:9")
        );
    }

    #[test]
    fn host_names() {
        assert_eq!(
            parse("billing-0.billing:7946"),
            Seed::Host {
                host: "billing-0.billing".into(),
                port: 7946
            }
        );
        assert_eq!(
            parse("LocalHost:80"),
            Seed::Host {
                host: "localhost".into(),
                port: 80
            }
        );
        assert_eq!(
            parse("node.example.com.:65535"),
            Seed::Host {
                host: "node.example.com.".into(),
                port: 65535
            }
        );
    }

    #[test]
    fn dns_seeds() {
        assert_eq!(
            parse("dns:billing.default.svc.cluster.local:7946"),
            Seed::Dns {
                name: "billing.default.svc.cluster.local".into(),
                port: 7946
            }
        );
        assert_eq!(
            parse("DNS:Billing:1"),
            Seed::Dns {
                name: "billing".into(),
                port: 1
            }
        );
    }

    #[test]
    fn srv_seeds() {
        assert_eq!(
            parse("srv:_gossip._udp.billing.default.svc.cluster.local"),
            Seed::Srv {
                name: "_gossip._udp.billing.default.svc.cluster.local".into()
            }
        );
        assert_eq!(
            parse("SRV:_rpc._TCP.billing."),
            Seed::Srv {
                name: "_rpc._tcp.billing.".into()
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "127.0.0.1:7946",
            "[::1]:7946",
            "[fd00::7]:1",
            "billing-0.billing:7946",
            "node.example.com.:2",
            "dns:billing.default.svc.cluster.local:7946",
            "srv:_gossip._udp.billing.default.svc.cluster.local",
        ] {
            let seed = parse(s);
            assert_eq!(seed.to_string(), s);
            assert_eq!(parse(&seed.to_string()), seed);
        }
        assert_eq!(parse("DNS:A.B:3").to_string(), "dns:a.b:3");
    }

    #[test]
    fn empty_and_blank() {
        assert!(parse_err("").contains("not an empty string"));
        assert!(parse_err("   ").contains("not an empty string"));
    }

    #[test]
    fn bad_ports() {
        for s in ["127.0.0.1:0", "[::1]:0", "host:0", "dns:billing:0"] {
            let e = parse_err(s);
            assert!(e.contains("1-65535"), "{s}: {e}");
        }
        for s in [
            "host:http",
            "host:+80",
            "host:-1",
            "dns:billing:x",
            "[::1]:x",
        ] {
            let e = parse_err(s);
            assert!(e.contains("not a number"), "{s}: {e}");
        }
        for s in ["host:65536", "127.0.0.1:99999", "dns:billing:70000"] {
            let e = parse_err(s);
            assert!(e.contains("1-65535"), "{s}: {e}");
        }
    }

    #[test]
    fn missing_port() {
        assert!(parse_err("billing").contains("port is missing"));
        assert!(parse_err("billing:").contains("port is missing"));
        assert!(parse_err("10.0.0.1").contains("port is missing"));
        assert!(parse_err("dns:billing").contains("port is missing"));
        assert!(parse_err("dns:billing:").contains("port is missing"));
        assert!(parse_err("[::1]").contains("port is missing"));
    }

    #[test]
    fn empty_host() {
        assert!(parse_err(":7946").contains("empty"));
        assert!(parse_err("dns::7946").contains("empty"));
        assert!(parse_err("srv:").contains("empty"));
    }

    #[test]
    fn bad_names() {
        for s in [
            "bad..name:1",
            ".lead:1",
            "-dash.example:1",
            "dash-.example:1",
            "under score:1",
            "caf\u{e9}.example:1",
            "a/b:1",
            "dns:bad..name:1",
            "dns:x*y:1",
            "srv:_a._tcp..b",
        ] {
            let e = parse_err(s);
            assert!(e.contains("label") || e.contains("spaces"), "{s}: {e}");
        }
        let long_label = format!("{}.example:1", "a".repeat(64));
        assert!(parse_err(&long_label).contains("at most 63"));
        let long_name = format!("{}:1", ["abcdefghi"; 26].join("."));
        assert!(parse_err(&long_name).contains("at most 253"));
        assert!(parse_err(".:1").contains("root"));
    }

    #[test]
    fn mistyped_ip_addresses() {
        assert!(parse_err("10.0.0.256:1").contains("neither a valid IP address"));
        assert!(parse_err("::1:7946").contains("brackets"));
        assert!(parse_err("fd00::1").contains("brackets"));
        assert!(parse_err("[::g]:1").contains("valid IPv6"));
        assert!(parse_err("[::1:1").contains("missing ']'"));
        assert!(parse_err("dns:10.0.0.1:7946").contains("10.0.0.1:7946"));
        assert!(parse_err("dns:[::1]:7946").contains("[::1]:7946"));
    }

    #[test]
    fn bad_srv() {
        assert!(parse_err("srv:billing.default.svc").contains("_service._proto"));
        assert!(parse_err("srv:_gossip._udp").contains("_service._proto"));
        assert!(parse_err("srv:_._udp.x").contains("_service._proto"));
        assert!(parse_err("srv:_gossip._udp.billing:7946").contains("SRV records carry the ports"));
    }

    #[test]
    fn unknown_prefixes_and_urls() {
        assert!(parse_err("dnss:billing:1").contains("unknown prefix \"dnss:\""));
        assert!(parse_err("tcp://10.0.0.1:1").contains("not a URL"));
    }

    #[test]
    fn error_names_setting_value_and_expectation() {
        let e = parse_err("dns:billing");
        assert!(
            e.starts_with("invalid CLUSTER_SEEDS: \"dns:billing\": expected dns:name:port"),
            "{e}"
        );
    }

    #[test]
    fn lists() {
        let seeds = parse_seed_list(
            " 10.0.0.1:7946 ,, dns:billing.default.svc.cluster.local:7946,srv:_g._udp.b.c , ,",
        )
        .unwrap();
        assert_eq!(
            seeds,
            vec![
                parse("10.0.0.1:7946"),
                parse("dns:billing.default.svc.cluster.local:7946"),
                parse("srv:_g._udp.b.c"),
            ]
        );
        assert_eq!(parse_seed_list("").unwrap(), vec![]);
        assert_eq!(parse_seed_list(" , ,").unwrap(), vec![]);
        assert_eq!(
            parse_seed_list("a.b:1, A.B:1, 10.0.0.1:1,10.0.0.1:1").unwrap(),
            vec![parse("a.b:1"), parse("10.0.0.1:1")]
        );
    }

    #[test]
    fn list_error_names_the_item() {
        let e = parse_seed_list("10.0.0.1:7946, dns:billing , srv:_a._tcp.b")
            .unwrap_err()
            .to_string();
        assert!(e.contains("CLUSTER_SEEDS"), "{e}");
        assert!(e.contains("\"dns:billing\""), "{e}");
        assert!(!e.contains("10.0.0.1"), "{e}");
    }
}
