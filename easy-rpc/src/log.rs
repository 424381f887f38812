//! What easy-rpc logs, and the log filter a program should start from.
//!
//! easy-rpc logs through [`tracing`]; a program picks what it sees with its subscriber's
//! filter, usually from `RUST_LOG` (`tracing_subscriber::EnvFilter`). Its own events name this
//! node (`node`), and for calls the service, the method and the other node (`peer`):
//!
//! - `warn`: a call that failed in the end (not the method's own error), at most one line per
//!   method every 10 s with the number of others (those at `debug`); refused connections
//!   (rate-limited); a node that cannot join, with what to check; a name used twice.
//! - `info`: settings from code that override the environment; connections refused at the
//!   handshake for a reason other than a wrong key.
//! - `debug`: every reroute and retry with its reason, every failed call, closed connections,
//!   refused handshakes from strangers.
//!
//! tarpc, underneath, logs expected outcomes as errors: `ERROR DeadlineExceeded` on both sides
//! for every call that reached the deadline its caller gave it, and `WARN RpcError::Channel`
//! for every call in flight on a connection that broke, naming neither the node nor the
//! method. easy-rpc reports those itself (above), so [`default_filter`] turns tarpc's own
//! events off.

/// The directive that silences tarpc's own events (easy-rpc reports what they would say,
/// naming the node, the service and the method).
pub const QUIET_TARPC: &str = "tarpc=off";

/// The filter directives a program should give its log subscriber: `RUST_LOG` if it is set
/// (with [`QUIET_TARPC`] added unless it names `tarpc` itself), else `warn,tarpc=off`.
///
/// ```
/// // e.g. tracing_subscriber::EnvFilter::new(easy_rpc::log::default_filter())
/// let filter = easy_rpc::log::default_filter();
/// assert!(filter.contains("tarpc"));
/// ```
pub fn default_filter() -> String {
    filter_from(std::env::var("RUST_LOG").ok().as_deref())
}

/// [`default_filter`] for a given value of `RUST_LOG` (`None`: not set).
///
/// ```
/// use easy_rpc::log::filter_from;
/// assert_eq!(filter_from(None), "warn,tarpc=off");
/// assert_eq!(filter_from(Some("easy_rpc=debug")), "easy_rpc=debug,tarpc=off");
/// // Asking for tarpc's events gets them.
/// assert_eq!(filter_from(Some("info,tarpc=debug")), "info,tarpc=debug");
/// ```
pub fn filter_from(rust_log: Option<&str>) -> String {
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => format!("warn,{QUIET_TARPC}"),
        Some(s) if s.split(',').any(|d| d.trim().starts_with("tarpc")) => s.to_owned(),
        Some(s) => format!("{s},{QUIET_TARPC}"),
    }
}

/// Whether a log written to standard error should use colours: only on a terminal, and not
/// when `NO_COLOR` is set.
///
/// ```
/// // e.g. tracing_subscriber::fmt().with_ansi(easy_rpc::log::colours_on_stderr())
/// let _ = easy_rpc::log::colours_on_stderr();
/// ```
pub fn colours_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}
