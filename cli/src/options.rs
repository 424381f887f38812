//! The options the management commands share: where the endpoint is (`--http`, or
//! `EASY_RPC_HTTP`), `--json`, and `watch`'s `--for` and `--interval`.

use std::time::Duration;

use crate::Failure;
use crate::http::Endpoint;

/// The variable that gives the management address when `--http` does not.
pub(crate) const HTTP_VAR: &str = "EASY_RPC_HTTP";

/// Parsed options.
#[derive(Debug)]
pub(crate) struct Options {
    /// The node's management endpoint.
    pub(crate) endpoint: Endpoint,
    /// JSON instead of tables.
    pub(crate) json: bool,
    /// How long `watch` runs (until interrupted if `None`).
    pub(crate) run_for: Option<Duration>,
    /// How often `watch` polls.
    pub(crate) interval: Duration,
}

/// Which options a command takes besides `--http` and `--json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Extra {
    /// None.
    None,
    /// `--for <duration>` and `--interval <duration>` (watch).
    Watch,
}

/// Parses `args`; `env` is `EASY_RPC_HTTP`'s value, if set.
pub(crate) fn parse(
    args: &[String],
    extra: Extra,
    env: Option<String>,
) -> Result<Options, Failure> {
    let mut http = None;
    let mut json = false;
    let mut run_for = None;
    let mut interval = Duration::from_millis(500);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_owned())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, Failure> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| Failure::Usage(format!("{name} needs a value")))
        };
        match flag {
            "--http" => http = Some(value("--http")?),
            "--json" if inline.is_none() => json = true,
            "--for" if extra == Extra::Watch => {
                run_for = Some(duration("--for", &value("--for")?)?)
            }
            "--interval" if extra == Extra::Watch => {
                interval = duration("--interval", &value("--interval")?)?;
                if interval < Duration::from_millis(10) {
                    return Err(Failure::Usage("--interval must be at least 10ms".into()));
                }
            }
            other => return Err(Failure::Usage(format!("unexpected argument {other:?}"))),
        }
    }
    let Some(http) = http.or(env.filter(|v| !v.trim().is_empty())) else {
        return Err(Failure::Usage(format!(
            "where is the node's management endpoint? give --http <host:port> or set {HTTP_VAR} \
             (the node's CLUSTER_HTTP_LISTEN)"
        )));
    };
    Ok(Options {
        endpoint: Endpoint::parse(&http).map_err(Failure::Usage)?,
        json,
        run_for,
        interval,
    })
}

/// Parses `250ms`, `10s`, `2m`, `1h`.
fn duration(flag: &str, text: &str) -> Result<Duration, Failure> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => f64::NAN,
    };
    num.parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            Failure::Usage(format!(
                "{flag} {text:?}: expected a duration such as 500ms, 10s, 2m or 1h"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn usage(r: Result<Options, Failure>) -> String {
        match r {
            Err(Failure::Usage(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_and_the_variable() {
        let o = parse(
            &args(&["--http", "127.0.0.1:9090", "--json"]),
            Extra::None,
            None,
        )
        .unwrap();
        assert_eq!(o.endpoint.host, "127.0.0.1:9090");
        assert!(o.json);
        let o = parse(&args(&[]), Extra::None, Some("n:1".into())).unwrap();
        assert_eq!(o.endpoint.host, "n:1");
        assert!(!o.json);
        let o = parse(&args(&["--http=a:2"]), Extra::None, Some("n:1".into())).unwrap();
        assert_eq!(o.endpoint.host, "a:2", "the flag wins");
        let o = parse(
            &args(&["--for", "2s", "--interval=100ms", "--http", "a:1"]),
            Extra::Watch,
            None,
        )
        .unwrap();
        assert_eq!(o.run_for, Some(Duration::from_secs(2)));
        assert_eq!(o.interval, Duration::from_millis(100));
    }

    #[test]
    fn mistakes() {
        assert!(usage(parse(&args(&[]), Extra::None, None)).contains(HTTP_VAR));
        assert!(usage(parse(&args(&["--http"]), Extra::None, None)).contains("needs a value"));
        assert!(
            usage(parse(
                &args(&["--for", "2s", "--http", "a:1"]),
                Extra::None,
                None
            ))
            .contains("--for")
        );
        assert!(
            usage(parse(
                &args(&["--for", "2", "--http", "a:1"]),
                Extra::Watch,
                None
            ))
            .contains("500ms")
        );
        assert!(
            usage(parse(
                &args(&["--interval", "1ms", "--http", "a:1"]),
                Extra::Watch,
                None
            ))
            .contains("10ms")
        );
        assert!(usage(parse(&args(&["--http", "nope"]), Extra::None, None)).contains("host:port"));
    }
}
