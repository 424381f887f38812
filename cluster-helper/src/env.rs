//! Reading the `CLUSTER_*` environment variables into [`Settings`]: strict parsing, errors that
//! name the variable and say what was expected, and no DNS lookups (host names in addresses are
//! resolved when the node starts).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::address::Address;
use crate::config::RpcListen;
use crate::error::Error;
use crate::id::{Role, check_node_name, parse_cluster_name, reason_of};
use crate::secret::{Secret, parse_secret};
use crate::seed::parse_seed_list;
use crate::settings::Settings;

/// The settings that the variables `get` returns a value for (blank values count as unset).
pub(crate) fn settings_from_env(get: impl Fn(&str) -> Option<String>) -> Result<Settings, Error> {
    let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let mut s = Settings::default();
    if let Some(v) = var("CLUSTER_NAME") {
        s.cluster = Some(parse_cluster_name("CLUSTER_NAME", v.trim())?);
    }
    if let Some(v) = var("CLUSTER_NODE_NAME") {
        let v = v.trim();
        check_node_name(v).map_err(|e| {
            Error::config(
                "CLUSTER_NODE_NAME",
                v,
                format!("a node name ({})", reason_of(&e)),
            )
        })?;
        s.node_name = Some(v.to_owned());
    }
    if let Some(v) = var("CLUSTER_ROLES") {
        s.roles = Some(parse_roles("CLUSTER_ROLES", &v)?);
    }
    if let Some(v) = var("CLUSTER_SEEDS") {
        s.seeds = Some(parse_seed_list(&v)?);
    }
    if let Some(v) = var("CLUSTER_LISTEN") {
        s.listen = Some(Address::parse("CLUSTER_LISTEN", &v, None)?);
    }
    if let Some(v) = var("CLUSTER_ADVERTISE") {
        // A bare IP keeps the gossip port (port 0 means "the bound gossip port").
        s.advertise = Some(Address::parse("CLUSTER_ADVERTISE", &v, Some(0))?);
    }
    if let Some(v) = var("CLUSTER_RPC_LISTEN") {
        s.rpc_listen = Some(match v.trim() {
            "off" | "none" | "disabled" => RpcListen::Disabled,
            "same" => RpcListen::SamePort,
            other => RpcListen::Addr(Address::parse("CLUSTER_RPC_LISTEN", other, None)?),
        });
    }
    if let Some(v) = var("CLUSTER_RPC_ADVERTISE") {
        s.rpc_advertise = Some(Address::parse("CLUSTER_RPC_ADVERTISE", &v, Some(0))?);
    }
    match (var("CLUSTER_SECRET"), var("CLUSTER_SECRET_FILE")) {
        (Some(_), Some(_)) => {
            return Err(Error::config(
                "CLUSTER_SECRET and CLUSTER_SECRET_FILE",
                "both set",
                "only one of them",
            ));
        }
        (Some(list), None) => {
            s.secrets = Some((parse_secret_list(&list)?, "CLUSTER_SECRET"));
        }
        (None, Some(path)) => {
            s.secrets = Some((read_secret_file(path.trim())?, "CLUSTER_SECRET_FILE"));
        }
        (None, None) => {}
    }
    if let Some(v) = var("CLUSTER_INSECURE") {
        s.insecure = Some(match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => true,
            "0" | "false" | "no" => false,
            _ => {
                return Err(Error::config(
                    "CLUSTER_INSECURE",
                    v,
                    "1, true or yes to run without a secret (0, false or no: not insecure)",
                ));
            }
        });
    }
    if let Some(v) = var("CLUSTER_GOSSIP_MAX_PACKET_AGE_MS") {
        s.gossip_max_packet_age = Some(parse_duration("CLUSTER_GOSSIP_MAX_PACKET_AGE_MS", &v)?);
    }
    if let Some(v) = var("CLUSTER_DNS_SERVER") {
        s.dns_server = Some(Address::parse("CLUSTER_DNS_SERVER", &v, Some(53))?);
    }
    if let Some(v) = var("CLUSTER_GOSSIP_INTERVAL") {
        s.gossip_interval = Some(parse_duration("CLUSTER_GOSSIP_INTERVAL", &v)?);
    }
    if let Some(v) = var("CLUSTER_PHI_THRESHOLD") {
        s.phi_threshold = Some(
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|p| p.is_finite() && *p >= 1.0)
                .ok_or_else(|| {
                    Error::config("CLUSTER_PHI_THRESHOLD", v, "a number of at least 1, e.g. 8")
                })?,
        );
    }
    if let Some(v) = var("CLUSTER_GOSSIP_FANOUT") {
        s.gossip_fanout = Some(match v.trim() {
            "auto" => None,
            n => Some(
                n.parse::<u32>()
                    .ok()
                    .filter(|n| (1..=crate::config::MAX_GOSSIP_FANOUT).contains(n))
                    .ok_or_else(|| {
                        Error::config(
                            "CLUSTER_GOSSIP_FANOUT",
                            v,
                            "`auto` or a number from 1 to 16, e.g. 3",
                        )
                    })?,
            ),
        });
    }
    if let Some(v) = var("CLUSTER_LEAVE_GRACE") {
        s.leave_grace = Some(parse_duration("CLUSTER_LEAVE_GRACE", &v)?);
    }
    if let Some(v) = var("CLUSTER_JOIN_TIMEOUT") {
        s.join_timeout = Some(parse_duration("CLUSTER_JOIN_TIMEOUT", &v)?);
    }
    if let Some(v) = var("CLUSTER_DNS_MIN_INTERVAL") {
        s.dns_min_interval = Some(parse_duration("CLUSTER_DNS_MIN_INTERVAL", &v)?);
    }
    if let Some(v) = var("CLUSTER_DNS_MAX_INTERVAL") {
        s.dns_max_interval = Some(parse_duration("CLUSTER_DNS_MAX_INTERVAL", &v)?);
    }
    Ok(s)
}

/// The most a secret file may hold: a keyring is a few lines of 45 characters.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Parses `CLUSTER_SECRET`: one secret, or a comma-separated keyring (first one first).
fn parse_secret_list(v: &str) -> Result<Vec<Secret>, Error> {
    let items: Vec<&str> = v.split(',').collect();
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let setting = if items.len() == 1 {
                "CLUSTER_SECRET".to_owned()
            } else {
                format!("CLUSTER_SECRET (key {} of {})", i + 1, items.len())
            };
            parse_secret(&setting, item)
        })
        .collect()
}

/// Reads the keyring in the file at `path`: one secret per line, blank lines and lines
/// starting with `#` ignored. Refuses a file over [`MAX_SECRET_FILE`]; warns when the file can
/// be read by its group or by others.
fn read_secret_file(path: &str) -> Result<Vec<Secret>, Error> {
    use std::io::Read;
    let io_err = |source| Error::SecretFile {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    warn_if_readable_by_others(path, &meta);
    let mut text = zeroize::Zeroizing::new(String::new());
    file.take(MAX_SECRET_FILE + 1)
        .read_to_string(&mut text)
        .map_err(io_err)?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(Error::config(
            "CLUSTER_SECRET_FILE",
            path,
            "a file of at most 64 KiB holding one secret per line",
        ));
    }
    let mut secrets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        secrets.push(parse_secret(
            &format!("CLUSTER_SECRET_FILE {path:?} line {}", n + 1),
            line,
        )?);
    }
    if secrets.is_empty() {
        return Err(Error::config(
            "CLUSTER_SECRET_FILE",
            path,
            "a file holding at least one secret (one per line; blank lines and # comments are \
             ignored)",
        ));
    }
    Ok(secrets)
}

/// Logs a warning when the secret file's permissions let its group or others read it.
#[cfg(unix)]
fn warn_if_readable_by_others(path: &str, meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    let open = mode & 0o077 != 0;
    if open {
        tracing::warn!(
            "CLUSTER_SECRET_FILE {path:?} can be read by other users (mode {:o}): \
             restrict it, e.g. chmod 600 {path:?}",
            mode & 0o777
        );
    }
    open
}

/// File permissions are not checked on this platform.
#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &str, _meta: &std::fs::Metadata) -> bool {
    false
}

/// Parses a comma list of roles; the error names `setting` and the offending role.
fn parse_roles(setting: &str, v: &str) -> Result<BTreeSet<Role>, Error> {
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

/// Parses `250ms`, `2s`, `1m` or a bare number of milliseconds.
fn parse_duration(setting: &str, v: &str) -> Result<Duration, Error> {
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
        settings_from_env(env(pairs)).unwrap_err().to_string()
    }

    #[test]
    fn reads_every_variable() {
        let s = settings_from_env(env(&[
            ("CLUSTER_NAME", "prod"),
            ("CLUSTER_NODE_NAME", "billing-0"),
            ("CLUSTER_ROLES", "billing, audit"),
            ("CLUSTER_SEEDS", "10.0.0.1:7946,dns:billing.svc:7946"),
            ("CLUSTER_LISTEN", "0.0.0.0:9000"),
            ("CLUSTER_ADVERTISE", "10.1.2.3"),
            ("CLUSTER_RPC_LISTEN", "off"),
            ("CLUSTER_RPC_ADVERTISE", "rpc.billing:7000"),
            ("CLUSTER_SECRET", A),
            ("CLUSTER_INSECURE", "no"),
            ("CLUSTER_GOSSIP_MAX_PACKET_AGE_MS", "5000"),
            ("CLUSTER_DNS_SERVER", "127.0.0.1:5353"),
            ("CLUSTER_GOSSIP_INTERVAL", "100ms"),
            ("CLUSTER_PHI_THRESHOLD", "10"),
            ("CLUSTER_GOSSIP_FANOUT", "2"),
            ("CLUSTER_LEAVE_GRACE", "1s"),
            ("CLUSTER_JOIN_TIMEOUT", "2s"),
            ("CLUSTER_DNS_MIN_INTERVAL", "200ms"),
            ("CLUSTER_DNS_MAX_INTERVAL", "1m"),
        ]))
        .unwrap();
        let addr = |s: &str| Address::Ip(s.parse().unwrap());
        assert_eq!(s.cluster.as_deref(), Some("prod"));
        assert_eq!(s.node_name.as_deref(), Some("billing-0"));
        assert_eq!(s.roles.map(|r| r.len()), Some(2));
        assert_eq!(s.seeds.map(|s| s.len()), Some(2));
        assert_eq!(s.listen, Some(addr("0.0.0.0:9000")));
        // A bare IP: port 0, i.e. the bound gossip port.
        assert_eq!(s.advertise, Some(addr("10.1.2.3:0")));
        assert_eq!(s.rpc_listen, Some(RpcListen::Disabled));
        assert_eq!(
            s.rpc_advertise,
            Some(Address::Host {
                host: "rpc.billing".into(),
                port: 7000
            })
        );
        let (secrets, var) = s.secrets.unwrap();
        assert_eq!((secrets, var), (vec![secret(A)], "CLUSTER_SECRET"));
        assert_eq!(s.insecure, Some(false));
        assert_eq!(s.gossip_max_packet_age, Some(Duration::from_secs(5)));
        assert_eq!(s.dns_server, Some(addr("127.0.0.1:5353")));
        assert_eq!(s.gossip_interval, Some(Duration::from_millis(100)));
        assert_eq!(s.phi_threshold, Some(10.0));
        assert_eq!(s.gossip_fanout, Some(Some(2)));
        assert_eq!(s.leave_grace, Some(Duration::from_secs(1)));
        assert_eq!(s.join_timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.dns_min_interval, Some(Duration::from_millis(200)));
        assert_eq!(s.dns_max_interval, Some(Duration::from_secs(60)));
    }

    #[test]
    fn host_names_are_kept_for_start_up_not_looked_up() {
        // `.invalid` never resolves: parsing succeeds because nothing is looked up here.
        let s = settings_from_env(env(&[
            ("CLUSTER_LISTEN", "nowhere.invalid:7946"),
            ("CLUSTER_DNS_SERVER", "10.0.0.53"),
        ]))
        .unwrap();
        assert_eq!(
            s.listen,
            Some(Address::Host {
                host: "nowhere.invalid".into(),
                port: 7946
            })
        );
        assert_eq!(
            s.dns_server,
            Some(Address::Ip("10.0.0.53:53".parse().unwrap()))
        );
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
            e.contains("CLUSTER_LISTEN")
                && e.contains("host:port")
                && e.contains("port is missing"),
            "{e}"
        );
        let e = err(&[("CLUSTER_ADVERTISE", "10.0.0.1:99999")]);
        assert!(e.contains("CLUSTER_ADVERTISE"), "{e}");
        let e = err(&[("CLUSTER_RPC_LISTEN", "sometimes")]);
        assert!(e.contains("CLUSTER_RPC_LISTEN"), "{e}");
        let e = err(&[("CLUSTER_GOSSIP_INTERVAL", "fast")]);
        assert!(
            e.contains("CLUSTER_GOSSIP_INTERVAL") && e.contains("250ms"),
            "{e}"
        );
        let e = err(&[("CLUSTER_SEEDS", "10.0.0.1:0")]);
        assert!(e.contains("CLUSTER_SEEDS"), "{e}");
        let e = err(&[("CLUSTER_SECRET", A), ("CLUSTER_SECRET_FILE", "/x")]);
        assert!(e.contains("only one"), "{e}");
        let e = err(&[("CLUSTER_SECRET", "s3cret")]);
        assert!(
            e.starts_with("invalid CLUSTER_SECRET: ")
                && e.contains("easy-rpc keygen")
                && !e.contains("s3cret"),
            "{e}"
        );
        let e = err(&[("CLUSTER_INSECURE", "on")]);
        assert!(e.contains("CLUSTER_INSECURE"), "{e}");
        let e = err(&[("CLUSTER_GOSSIP_MAX_PACKET_AGE_MS", "soon")]);
        assert!(e.contains("CLUSTER_GOSSIP_MAX_PACKET_AGE_MS"), "{e}");
        let e = err(&[("CLUSTER_SECRET_FILE", "/nonexistent/secret")]);
        assert!(
            e.contains("CLUSTER_SECRET_FILE") && e.contains("/nonexistent/secret"),
            "{e}"
        );
        let e = err(&[("CLUSTER_NAME", "has space")]);
        assert!(e.contains("CLUSTER_NAME"), "{e}");
        let e = err(&[("CLUSTER_NODE_NAME", "a#b")]);
        assert!(e.contains("CLUSTER_NODE_NAME"), "{e}");
        for bad in ["0", "17", "many"] {
            let e = err(&[("CLUSTER_GOSSIP_FANOUT", bad)]);
            assert!(
                e.contains("CLUSTER_GOSSIP_FANOUT") && e.contains("auto"),
                "{e}"
            );
        }
        let auto = settings_from_env(env(&[("CLUSTER_GOSSIP_FANOUT", "auto")])).unwrap();
        assert_eq!(auto.gossip_fanout, Some(None));
        let e = err(&[("CLUSTER_PHI_THRESHOLD", "-1")]);
        assert!(e.contains("CLUSTER_PHI_THRESHOLD"), "{e}");
        let e = err(&[("CLUSTER_DNS_SERVER", "dns.example")]);
        assert!(e.contains("CLUSTER_DNS_SERVER"), "{e}");
    }

    /// Secrets made with `openssl rand -base64 32`, for these tests only.
    const A: &str = "0ZQkIkBmjy/L70cLhhI1PctBR36j4GBmY2f4t5Bq99c=";
    const B: &str = "kJMlVGokI8OS0NxCZheIGH+/WDqMdYVLdu5SqHQtB1Y=";
    const C: &str = "FOEfhc+kPcr4CgxAprLTPFXU2QXHkGBdXr0NCQ3yVDk=";

    fn secret(text: &str) -> Secret {
        Secret::parse(text).unwrap()
    }

    #[test]
    fn a_keyring_from_the_variable() {
        let s = settings_from_env(env(&[("CLUSTER_SECRET", &format!(" {A}, {B} ,{C}"))])).unwrap();
        assert_eq!(s.secrets.unwrap().0, vec![secret(A), secret(B), secret(C)]);
        let e = err(&[("CLUSTER_SECRET", &format!("{A},{A:.20}"))]);
        assert!(
            e.starts_with("invalid CLUSTER_SECRET (key 2 of 2): "),
            "{e}"
        );
        let e = err(&[("CLUSTER_SECRET", &format!("{A},"))]);
        assert!(
            e.contains("key 2 of 2") && e.contains("empty") && !e.contains(A),
            "{e}"
        );
    }

    /// A file in the temporary directory, removed when dropped.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &[u8]) -> TempFile {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "ch-{name}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn a_keyring_from_a_file() {
        let f = TempFile::new(
            "ring",
            format!("# rotated 2026-11-27\n{A}\n\n  {B}  \r\n# old:\n{C}\n").as_bytes(),
        );
        let s = settings_from_env(env(&[("CLUSTER_SECRET_FILE", f.path())])).unwrap();
        let (secrets, var) = s.secrets.unwrap();
        assert_eq!(secrets, vec![secret(A), secret(B), secret(C)]);
        assert_eq!(var, "CLUSTER_SECRET_FILE");

        // A bad line is named by its number, never shown.
        let f = TempFile::new("bad", format!("{A}\n# comment\nhunter2\n").as_bytes());
        let e = err(&[("CLUSTER_SECRET_FILE", f.path())]);
        assert!(
            e.contains("CLUSTER_SECRET_FILE") && e.contains("line 3") && !e.contains("hunter2"),
            "{e}"
        );
        // Only comments: no secret.
        let f = TempFile::new("empty", b"# nothing yet\n\n");
        let e = err(&[("CLUSTER_SECRET_FILE", f.path())]);
        assert!(e.contains("at least one secret"), "{e}");
        // Too big.
        let f = TempFile::new("big", &vec![b'#'; 64 * 1024 + 1]);
        let e = err(&[("CLUSTER_SECRET_FILE", f.path())]);
        assert!(e.contains("at most 64 KiB"), "{e}");
        // Not text.
        let f = TempFile::new("binary", &[0xff, 0xfe, 0x00]);
        let e = err(&[("CLUSTER_SECRET_FILE", f.path())]);
        assert!(e.contains("cannot read CLUSTER_SECRET_FILE"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_readable_by_others_is_noticed() {
        use std::os::unix::fs::PermissionsExt;
        let f = TempFile::new("perm", format!("{A}\n").as_bytes());
        let set =
            |mode| std::fs::set_permissions(&f.0, std::fs::Permissions::from_mode(mode)).unwrap();
        let meta = || std::fs::metadata(&f.0).unwrap();
        set(0o644);
        assert!(warn_if_readable_by_others(f.path(), &meta()));
        set(0o640);
        assert!(warn_if_readable_by_others(f.path(), &meta()));
        set(0o600);
        assert!(!warn_if_readable_by_others(f.path(), &meta()));
        set(0o400);
        assert!(!warn_if_readable_by_others(f.path(), &meta()));
        // Still read either way.
        let s = settings_from_env(env(&[("CLUSTER_SECRET_FILE", f.path())])).unwrap();
        assert_eq!(s.secrets.unwrap().0, vec![secret(A)]);
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
        assert!(parse_duration("X", "1e300s").is_err());
    }
}
