//! The server's resource bounds: [`ServerLimits`] (the settings, from code or `CLUSTER_RPC_*`
//! variables), the open-file limit raised at start, the admission of new connections (open
//! connections, pending handshakes in all and per source address) and the node's budget for
//! partially received frames.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::admission::Admission;
use crate::error::Error;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: usize = 1024 * MIB;

/// The smallest frame limit accepted: a handful of small calls must fit.
const MIN_FRAME: usize = KIB;
/// The largest: what a frame's 4-byte length can say.
const MAX_FRAME: usize = u32::MAX as usize;
/// The share of the open-file limit that connections may take by default, in percent: the
/// rest stays for gossip, outgoing connections, files and logs.
const FD_SHARE_PERCENT: u64 = 80;
/// The connection cap where the open-file limit is unknown (not unix) or unlimited.
const FALLBACK_MAX_CONNECTIONS: usize = 65_536;

/// Bounds on what peers can make a node's RPC server hold, before and after they
/// authenticate. Set with [`NodeBuilder::server_limits`](crate::NodeBuilder::server_limits)
/// or the `CLUSTER_RPC_*` variables read by
/// [`NodeBuilder::from_env`](crate::NodeBuilder::from_env) (see [`ServerLimits::ENV_VARS`]).
///
/// Before authentication, a connection over [`max_connections`](Self::max_connections),
/// [`max_pending_handshakes`](Self::max_pending_handshakes) or
/// [`max_pending_per_ip`](Self::max_pending_per_ip) is accepted and closed at once (never
/// left in the kernel's backlog, where it would hold up the connections behind it), and
/// counted by reason in [`ServerStats`](crate::ServerStats). After it, frames are bounded one
/// by one ([`max_frame`](Self::max_frame)) and together
/// ([`max_buffered_bytes`](Self::max_buffered_bytes)), and so are the requests a connection
/// runs at once ([`max_concurrent_requests`](Self::max_concurrent_requests)).
///
/// ```
/// use easy_rpc::ServerLimits;
///
/// let limits = ServerLimits::default()
///     .max_connections(2_000)
///     .max_frame(16 * 1024 * 1024)
///     .max_buffered_bytes(256 * 1024 * 1024);
/// assert_eq!(limits.max_pending_per_ip, 16);
/// let builder = easy_rpc::Node::builder().server_limits(limits);
/// # drop(builder);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// The TCP connections the server holds at once, authenticated or not
    /// (`CLUSTER_RPC_MAX_CONNECTIONS`, a number or `auto`). `None` (the default): 80 % of
    /// the process's open-file limit, after the node raised it to the hard limit at start,
    /// so that a flood of connections reaches this cap before the process runs out of
    /// descriptors (the other 20 % are for gossip, calls to other nodes, files and logs).
    pub max_connections: Option<usize>,
    /// Connections that have not finished the handshake (`CLUSTER_RPC_MAX_PENDING_HANDSHAKES`).
    /// Default 256: far more than honest peers ever have at once (a handshake takes a round
    /// trip and two MACs), few enough that idle strangers cannot take every descriptor.
    pub max_pending_handshakes: usize,
    /// Connections from one source IP address that have not finished the handshake
    /// (`CLUSTER_RPC_MAX_PENDING_PER_IP`). Default 16: one address cannot take the global
    /// allowance from the others (a node's pool opens one connection per service to a node,
    /// so honest peers stay far below it).
    pub max_pending_per_ip: usize,
    /// How long a peer has to complete the handshake, however slowly it sends its bytes.
    /// Default 5 s.
    pub handshake_timeout: Duration,
    /// The largest frame (one request or one response) in bytes (`CLUSTER_RPC_MAX_FRAME`).
    /// Default 4 MiB, as gRPC's message limit. A larger request closes its connection before
    /// anything is allocated for it; a larger response fails to send and closes the
    /// connection too (its callers see the node down). Calls made by this node accept
    /// responses up to the same size. At least 1 KiB, at most 4 GiB - 1.
    pub max_frame: usize,
    /// Requests one connection may run at once (`CLUSTER_RPC_MAX_CONCURRENT_REQUESTS`).
    /// Default 1024. A request over it is answered at once with
    /// [`NotRunReason::Overloaded`](crate::NotRunReason::Overloaded) without running (callers
    /// send it to another node of the role): refusing keeps the connection's other traffic
    /// (responses, cancellations) flowing, where not reading would stall it whole.
    pub max_concurrent_requests: usize,
    /// The bytes that partially received frames may hold across all the node's connections
    /// (`CLUSTER_RPC_MAX_BUFFERED_BYTES`). Default 64 MiB. A frame that is not received whole
    /// in one read takes its announced length from this budget until it is complete; a frame
    /// the budget cannot cover closes its connection at once (it does not wait: waiting
    /// would let peers that hold partial frames stall the others). At least `max_frame`.
    pub max_buffered_bytes: usize,
    /// How far ahead of a caller's clock this node's wall clock may be
    /// (`CLUSTER_RPC_MAX_CLOCK_SKEW`, e.g. `100ms`). Default 100 ms, at most 1 min.
    ///
    /// A request carries the caller's wall-clock time when it was sent. Time in transit
    /// beyond this allowance (the node was stopped, or its socket queue was long) is taken
    /// off the request's deadline, so a request whose caller's deadline passed before the
    /// node got to it is never started: it is answered
    /// [`NotRunReason::Expired`](crate::NotRunReason::Expired) and counted
    /// ([`ServerStats::expired_requests`](crate::ServerStats::expired_requests)). The
    /// allowance is the most such a request can have waited past its caller's deadline and
    /// still start: set it to the clock skew your nodes can have (NTP keeps Kubernetes nodes
    /// within milliseconds).
    pub max_clock_skew: Duration,
    /// Requests the node runs at once, across all its connections (`CLUSTER_RPC_MAX_RUNNING`).
    /// `None` (the default): no node-wide cap (each connection still has
    /// [`max_concurrent_requests`](Self::max_concurrent_requests)).
    ///
    /// Set it to what the node can run without slowing every request down (e.g. a small
    /// multiple of its cores for CPU-bound methods, or the size of the pool a method waits
    /// for). A request over it waits in a queue of [`max_queued`](Self::max_queued); one that
    /// finds the queue full is answered "not run: overloaded" at once, and its caller sends
    /// it to another node of the role. When every node refuses, the caller gets
    /// [`RpcError::NotRun`](crate::RpcError::NotRun) with
    /// [`NotRunReason::Overloaded`](crate::NotRunReason::Overloaded), fast, instead of a
    /// timeout.
    pub max_running: Option<usize>,
    /// Requests that wait for room under [`max_running`](Self::max_running)
    /// (`CLUSTER_RPC_MAX_QUEUED`). Default 16. A waiting request whose caller's deadline passes
    /// is answered "not run: expired" without running. Keep it near `max_running` or below:
    /// a request waits about `max_queued / max_running` request times, and every request the
    /// queue refuses is tried on another node at once, which is better than a long wait here.
    pub max_queued: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: None,
            max_pending_handshakes: 256,
            max_pending_per_ip: 16,
            handshake_timeout: Duration::from_secs(5),
            max_frame: 4 * MIB,
            max_concurrent_requests: 1024,
            max_buffered_bytes: 64 * MIB,
            max_clock_skew: Duration::from_millis(100),
            max_running: None,
            max_queued: 16,
        }
    }
}

/// The largest clock-skew allowance (a larger one would let requests start far past their
/// callers' deadlines).
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// One setting's names: in code, and as an environment variable.
#[derive(Clone, Copy)]
enum Setting {
    MaxConnections,
    MaxPending,
    MaxPendingPerIp,
    HandshakeTimeout,
    MaxFrame,
    MaxConcurrent,
    MaxBuffered,
    MaxClockSkew,
    MaxRunning,
    MaxQueued,
}

impl Setting {
    fn name(self, from_env: bool) -> &'static str {
        match (self, from_env) {
            (Setting::MaxConnections, false) => "ServerLimits::max_connections",
            (Setting::MaxConnections, true) => "CLUSTER_RPC_MAX_CONNECTIONS",
            (Setting::MaxPending, false) => "ServerLimits::max_pending_handshakes",
            (Setting::MaxPending, true) => "CLUSTER_RPC_MAX_PENDING_HANDSHAKES",
            (Setting::MaxPendingPerIp, false) => "ServerLimits::max_pending_per_ip",
            (Setting::MaxPendingPerIp, true) => "CLUSTER_RPC_MAX_PENDING_PER_IP",
            (Setting::HandshakeTimeout, _) => "ServerLimits::handshake_timeout",
            (Setting::MaxFrame, false) => "ServerLimits::max_frame",
            (Setting::MaxFrame, true) => "CLUSTER_RPC_MAX_FRAME",
            (Setting::MaxConcurrent, false) => "ServerLimits::max_concurrent_requests",
            (Setting::MaxConcurrent, true) => "CLUSTER_RPC_MAX_CONCURRENT_REQUESTS",
            (Setting::MaxBuffered, false) => "ServerLimits::max_buffered_bytes",
            (Setting::MaxBuffered, true) => "CLUSTER_RPC_MAX_BUFFERED_BYTES",
            (Setting::MaxClockSkew, false) => "ServerLimits::max_clock_skew",
            (Setting::MaxClockSkew, true) => "CLUSTER_RPC_MAX_CLOCK_SKEW",
            (Setting::MaxRunning, false) => "ServerLimits::max_running",
            (Setting::MaxRunning, true) => "CLUSTER_RPC_MAX_RUNNING",
            (Setting::MaxQueued, false) => "ServerLimits::max_queued",
            (Setting::MaxQueued, true) => "CLUSTER_RPC_MAX_QUEUED",
        }
    }
}

fn invalid(setting: Setting, from_env: bool, value: String, expected: &'static str) -> Error {
    Error::InvalidConfig {
        setting: setting.name(from_env),
        value,
        expected,
    }
}

impl ServerLimits {
    /// The environment variables [`NodeBuilder::from_env`](crate::NodeBuilder::from_env)
    /// reads into server limits. Counts are plain numbers; byte sizes are a number with an
    /// optional binary unit (`4194304`, `4MiB`, `4M`, `512KiB`, `1GiB`);
    /// `CLUSTER_RPC_MAX_CONNECTIONS` may also be `auto` (the default).
    pub const ENV_VARS: &'static [&'static str] = &[
        "CLUSTER_RPC_MAX_CONNECTIONS",
        "CLUSTER_RPC_MAX_PENDING_HANDSHAKES",
        "CLUSTER_RPC_MAX_PENDING_PER_IP",
        "CLUSTER_RPC_MAX_FRAME",
        "CLUSTER_RPC_MAX_CONCURRENT_REQUESTS",
        "CLUSTER_RPC_MAX_BUFFERED_BYTES",
        "CLUSTER_RPC_MAX_CLOCK_SKEW",
        "CLUSTER_RPC_MAX_RUNNING",
        "CLUSTER_RPC_MAX_QUEUED",
    ];

    /// Sets [`max_connections`](ServerLimits::max_connections) to a fixed number.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// Sets [`max_pending_handshakes`](ServerLimits::max_pending_handshakes).
    pub fn max_pending_handshakes(mut self, max: usize) -> Self {
        self.max_pending_handshakes = max;
        self
    }

    /// Sets [`max_pending_per_ip`](ServerLimits::max_pending_per_ip).
    pub fn max_pending_per_ip(mut self, max: usize) -> Self {
        self.max_pending_per_ip = max;
        self
    }

    /// Sets [`handshake_timeout`](ServerLimits::handshake_timeout).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets [`max_frame`](ServerLimits::max_frame).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Sets [`max_concurrent_requests`](ServerLimits::max_concurrent_requests).
    pub fn max_concurrent_requests(mut self, max: usize) -> Self {
        self.max_concurrent_requests = max;
        self
    }

    /// Sets [`max_running`](ServerLimits::max_running) to a fixed number.
    pub fn max_running(mut self, max: usize) -> Self {
        self.max_running = Some(max);
        self
    }

    /// Sets [`max_queued`](ServerLimits::max_queued).
    pub fn max_queued(mut self, max: usize) -> Self {
        self.max_queued = max;
        self
    }

    /// Sets [`max_clock_skew`](ServerLimits::max_clock_skew).
    pub fn max_clock_skew(mut self, skew: Duration) -> Self {
        self.max_clock_skew = skew;
        self
    }

    /// Sets [`max_buffered_bytes`](ServerLimits::max_buffered_bytes).
    pub fn max_buffered_bytes(mut self, bytes: usize) -> Self {
        self.max_buffered_bytes = bytes;
        self
    }

    /// Refuses limits no server could work with, naming the setting (as the environment
    /// variable when `from_env`).
    pub(crate) fn validate(&self, from_env: bool) -> Result<(), Error> {
        let at_least_one = [
            (Setting::MaxConnections, self.max_connections.unwrap_or(1)),
            (Setting::MaxPending, self.max_pending_handshakes),
            (Setting::MaxPendingPerIp, self.max_pending_per_ip),
            (Setting::MaxConcurrent, self.max_concurrent_requests),
            (Setting::MaxRunning, self.max_running.unwrap_or(1)),
        ];
        for (setting, value) in at_least_one {
            if value == 0 {
                return Err(invalid(
                    setting,
                    from_env,
                    "0".into(),
                    "a number of at least 1",
                ));
            }
        }
        if self.handshake_timeout.is_zero() {
            return Err(invalid(
                Setting::HandshakeTimeout,
                from_env,
                format!("{:?}", self.handshake_timeout),
                "a positive duration",
            ));
        }
        if !(MIN_FRAME..=MAX_FRAME).contains(&self.max_frame) {
            return Err(invalid(
                Setting::MaxFrame,
                from_env,
                self.max_frame.to_string(),
                "a size from 1KiB to 4GiB minus one byte (e.g. 4MiB)",
            ));
        }
        if self.max_clock_skew > MAX_CLOCK_SKEW {
            return Err(invalid(
                Setting::MaxClockSkew,
                from_env,
                format!("{:?}", self.max_clock_skew),
                "a duration of at most 1 minute (e.g. 100ms)",
            ));
        }
        if self.max_buffered_bytes < self.max_frame {
            return Err(invalid(
                Setting::MaxBuffered,
                from_env,
                self.max_buffered_bytes.to_string(),
                "a size of at least the frame limit (max_frame, CLUSTER_RPC_MAX_FRAME), \
                 so that a frame of the largest size can be received",
            ));
        }
        Ok(())
    }

    /// The limits the variables `get` returns a value for set over the defaults (blank
    /// values count as unset); `None` if none is set. Errors name the variable.
    pub(crate) fn from_vars(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<ServerLimits>, Error> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        if !Self::ENV_VARS.iter().any(|name| var(name).is_some()) {
            return Ok(None);
        }
        let mut limits = ServerLimits::default();
        if let Some(v) = var("CLUSTER_RPC_MAX_CONNECTIONS") {
            limits.max_connections = match v.trim() {
                "auto" => None,
                n => Some(parse_count(Setting::MaxConnections, n)?),
            };
        }
        if let Some(v) = var("CLUSTER_RPC_MAX_PENDING_HANDSHAKES") {
            limits.max_pending_handshakes = parse_count(Setting::MaxPending, &v)?;
        }
        if let Some(v) = var("CLUSTER_RPC_MAX_PENDING_PER_IP") {
            limits.max_pending_per_ip = parse_count(Setting::MaxPendingPerIp, &v)?;
        }
        if let Some(v) = var("CLUSTER_RPC_MAX_FRAME") {
            limits.max_frame = parse_size(Setting::MaxFrame, &v)?;
        }
        if let Some(v) = var("CLUSTER_RPC_MAX_CONCURRENT_REQUESTS") {
            limits.max_concurrent_requests = parse_count(Setting::MaxConcurrent, &v)?;
        }
        if let Some(v) = var("CLUSTER_RPC_MAX_BUFFERED_BYTES") {
            limits.max_buffered_bytes = parse_size(Setting::MaxBuffered, &v)?;
        }
        if let Some(v) = var("CLUSTER_RPC_MAX_RUNNING") {
            limits.max_running = match v.trim() {
                "off" | "none" => None,
                n => Some(parse_count(Setting::MaxRunning, n)?),
            };
        }
        if let Some(v) = var("CLUSTER_RPC_MAX_QUEUED") {
            limits.max_queued = v.trim().parse::<usize>().map_err(|_| {
                invalid(
                    Setting::MaxQueued,
                    true,
                    v.clone(),
                    "a whole number (0: refuse at once when the node runs its maximum)",
                )
            })?;
        }
        if let Some(v) = var("CLUSTER_RPC_MAX_CLOCK_SKEW") {
            limits.max_clock_skew = parse_millis(Setting::MaxClockSkew, &v)?;
        }
        // Show a value out of range as it was written.
        limits.validate(true).map_err(|e| match e {
            Error::InvalidConfig {
                setting, expected, ..
            } => Error::InvalidConfig {
                setting,
                value: get(setting).unwrap_or_default(),
                expected,
            },
            other => other,
        })?;
        Ok(Some(limits))
    }

    /// The connection cap in force: the one set, else 80 % of the open-file limit `nofile`.
    pub(crate) fn connection_cap(&self, nofile: Option<u64>) -> usize {
        if let Some(max) = self.max_connections {
            return max;
        }
        match nofile {
            Some(n) if n < u64::MAX / FD_SHARE_PERCENT => {
                usize::try_from(n * FD_SHARE_PERCENT / 100)
                    .unwrap_or(FALLBACK_MAX_CONNECTIONS)
                    .max(1)
            }
            _ => FALLBACK_MAX_CONNECTIONS,
        }
    }
}

/// A duration: `250ms`, `2s` or a bare number of milliseconds.
fn parse_millis(setting: Setting, v: &str) -> Result<Duration, Error> {
    let t = v.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1000)
    } else {
        (t, 1)
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .map(Duration::from_millis)
        .ok_or_else(|| {
            invalid(
                setting,
                true,
                v.to_owned(),
                "a duration in whole milliseconds or seconds (e.g. 100ms, 1s)",
            )
        })
}

/// A count of at least 1.
fn parse_count(setting: Setting, v: &str) -> Result<usize, Error> {
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid(setting, true, v.to_owned(), "a whole number of at least 1"))
}

/// A size in bytes: a number with an optional binary unit (`K`/`KiB`, `M`/`MiB`, `G`/`GiB`).
fn parse_size(setting: Setting, v: &str) -> Result<usize, Error> {
    let fail = || {
        invalid(
            setting,
            true,
            v.to_owned(),
            "a size in bytes: a whole number with an optional unit KiB, MiB or GiB (e.g. 4MiB)",
        )
    };
    let t = v.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = match unit.trim() {
        "" | "B" => 1,
        "K" | "k" | "KiB" => KIB,
        "M" | "MiB" => MIB,
        "G" | "GiB" => GIB,
        _ => return Err(fail()),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| *n > 0)
        .ok_or_else(fail)
}

/// Raises the process's soft open-file limit to its hard limit (once per process) and
/// returns the soft limit then in force; `None` where there is no such limit (not unix) or
/// it cannot be read.
pub(crate) fn raise_open_file_limit() -> Option<u64> {
    static RAISED: OnceLock<Option<u64>> = OnceLock::new();
    *RAISED.get_or_init(|| {
        #[cfg(unix)]
        {
            match rlimit::increase_nofile_limit(u64::MAX) {
                Ok(soft) => {
                    tracing::debug!(open_file_limit = soft, "open-file limit raised");
                    Some(soft)
                }
                Err(e) => {
                    tracing::debug!("cannot raise the open-file limit: {e}");
                    rlimit::getrlimit(rlimit::Resource::NOFILE)
                        .ok()
                        .map(|(soft, _)| soft)
                }
            }
        }
        #[cfg(not(unix))]
        {
            None
        }
    })
}

/// Why a connection was closed as soon as it was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server holds [`ServerLimits::max_connections`] connections.
    Connections,
    /// [`ServerLimits::max_pending_handshakes`] handshakes are under way.
    Pending,
    /// [`ServerLimits::max_pending_per_ip`] handshakes from its address are under way.
    PendingPerIp,
    /// The process ran out of file descriptors (accepted on the spare one, then closed).
    Descriptors,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Connections => "the server holds its maximum of connections",
            Refusal::Pending => "the server has its maximum of pending handshakes",
            Refusal::PendingPerIp => "its address has its maximum of pending handshakes",
            Refusal::Descriptors => "the process is out of file descriptors",
        })
    }
}

/// The limits in force on one node's server, what they hold now, and what they refused.
#[derive(Debug)]
pub(crate) struct Bounds {
    pub(crate) limits: ServerLimits,
    /// [`ServerLimits::connection_cap`] at start.
    pub(crate) max_connections: usize,
    /// Connections the server holds (pending and authenticated).
    pub(crate) connections: AtomicUsize,
    /// Pending handshakes, in all and per source address (changed together, under the lock:
    /// once per connection, never per request).
    pending: Mutex<Pending>,
    pending_now: AtomicUsize,
    pub(crate) budget: Arc<FrameBudget>,
    pub(crate) refused_connections: AtomicUsize,
    pub(crate) refused_pending: AtomicUsize,
    pub(crate) refused_per_ip: AtomicUsize,
    pub(crate) refused_descriptors: AtomicUsize,
    /// Requests answered "not run: overloaded" (over the per-connection cap).
    pub(crate) refused_requests: AtomicUsize,
    /// Requests answered "not run: expired" (their caller's deadline passed before they
    /// could start).
    pub(crate) expired_requests: AtomicUsize,
    /// The node-wide cap on running requests and its queue, if one is set.
    pub(crate) admission: Option<Admission>,
}

#[derive(Debug, Default)]
struct Pending {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Bounds {
    pub(crate) fn new(limits: ServerLimits, nofile: Option<u64>) -> Self {
        let admission = limits
            .max_running
            .map(|max| Admission::new(max, limits.max_queued));
        Bounds {
            max_connections: limits.connection_cap(nofile),
            budget: Arc::new(FrameBudget::new(limits.max_buffered_bytes)),
            limits,
            connections: AtomicUsize::new(0),
            pending: Mutex::new(Pending::default()),
            pending_now: AtomicUsize::new(0),
            refused_connections: AtomicUsize::new(0),
            refused_pending: AtomicUsize::new(0),
            refused_per_ip: AtomicUsize::new(0),
            refused_descriptors: AtomicUsize::new(0),
            refused_requests: AtomicUsize::new(0),
            expired_requests: AtomicUsize::new(0),
            admission,
        }
    }

    /// Admits a just accepted connection from `ip`, or says why it must be closed (and
    /// counts it).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refusal> {
        let refused = |counter: &AtomicUsize, why| {
            counter.fetch_add(1, Ordering::Relaxed);
            Err(why)
        };
        if self.connections.load(Ordering::Relaxed) >= self.max_connections {
            return refused(&self.refused_connections, Refusal::Connections);
        }
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.total >= self.limits.max_pending_handshakes {
                drop(pending);
                return refused(&self.refused_pending, Refusal::Pending);
            }
            let from_ip = pending.per_ip.entry(ip).or_insert(0);
            if *from_ip >= self.limits.max_pending_per_ip {
                drop(pending);
                return refused(&self.refused_per_ip, Refusal::PendingPerIp);
            }
            *from_ip += 1;
            pending.total += 1;
            self.pending_now.store(pending.total, Ordering::Relaxed);
        }
        self.connections.fetch_add(1, Ordering::Relaxed);
        Ok(Admitted {
            bounds: self.clone(),
            pending: Some(ip),
        })
    }

    /// Counts a connection refused because descriptors ran out.
    pub(crate) fn refuse_descriptors(&self) {
        self.refused_descriptors.fetch_add(1, Ordering::Relaxed);
    }

    /// Handshakes under way now.
    pub(crate) fn pending(&self) -> usize {
        self.pending_now.load(Ordering::Relaxed)
    }

    fn end_pending(&self, ip: IpAddr) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.total = pending.total.saturating_sub(1);
        if let Some(n) = pending.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                pending.per_ip.remove(&ip);
            }
        }
        self.pending_now.store(pending.total, Ordering::Relaxed);
    }
}

/// An admitted connection's places: among the connections while it lives, among the pending
/// handshakes until [`handshaken`](Admitted::handshaken).
#[derive(Debug)]
pub(crate) struct Admitted {
    bounds: Arc<Bounds>,
    /// The source address while the handshake is pending.
    pending: Option<IpAddr>,
}

impl Admitted {
    /// The handshake is over (either way): the connection no longer counts as pending.
    pub(crate) fn handshaken(&mut self) {
        if let Some(ip) = self.pending.take() {
            self.bounds.end_pending(ip);
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.handshaken();
        self.bounds.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The node's budget for partially received frames (see [`ServerLimits::max_buffered_bytes`]),
/// and the count of connections closed by the frame limits.
#[derive(Debug)]
pub(crate) struct FrameBudget {
    cap: usize,
    used: AtomicUsize,
    /// Connections closed because a frame did not fit in the budget.
    pub(crate) over_budget: AtomicUsize,
    /// Connections closed because a frame was over the frame limit.
    pub(crate) too_large: AtomicUsize,
}

impl FrameBudget {
    pub(crate) fn new(cap: usize) -> Self {
        FrameBudget {
            cap,
            used: AtomicUsize::new(0),
            over_budget: AtomicUsize::new(0),
            too_large: AtomicUsize::new(0),
        }
    }

    /// Takes `n` bytes if what is left covers them (else counts a refusal).
    pub(crate) fn try_take(&self, n: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.cap)
            })
            .is_ok();
        if !taken {
            self.over_budget.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// Gives back `n` bytes taken before.
    pub(crate) fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Counts a frame over the frame limit.
    pub(crate) fn count_too_large(&self) {
        self.too_large.fetch_add(1, Ordering::Relaxed);
    }

    /// The bytes taken now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Option<ServerLimits>, Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ServerLimits::from_vars(|k| vars.get(k).cloned())
    }

    fn err(vars: &[(&str, &str)]) -> String {
        env(vars).expect_err("refused").to_string()
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let d = ServerLimits::default();
        d.validate(false).unwrap();
        assert_eq!(d.max_frame, 4 * 1024 * 1024);
        assert_eq!(d.max_buffered_bytes, 64 * 1024 * 1024);
        assert_eq!(d.max_pending_handshakes, 256);
        assert_eq!(d.max_pending_per_ip, 16);
        assert_eq!(d.max_concurrent_requests, 1024);
        assert_eq!(d.handshake_timeout, Duration::from_secs(5));
        assert_eq!(d.max_connections, None);
    }

    #[test]
    fn the_connection_cap_is_80_percent_of_the_open_file_limit_unless_set() {
        let d = ServerLimits::default();
        assert_eq!(d.connection_cap(Some(1024)), 819);
        assert_eq!(d.connection_cap(Some(1_048_576)), 838_860);
        assert_eq!(d.connection_cap(Some(1)), 1);
        assert_eq!(d.connection_cap(Some(u64::MAX)), FALLBACK_MAX_CONNECTIONS);
        assert_eq!(d.connection_cap(None), FALLBACK_MAX_CONNECTIONS);
        assert_eq!(d.max_connections(7).connection_cap(Some(1024)), 7);
    }

    #[test]
    fn env_sets_limits_over_the_defaults() {
        assert_eq!(env(&[]).unwrap(), None);
        assert_eq!(env(&[("CLUSTER_RPC_MAX_FRAME", "  ")]).unwrap(), None);
        let l = env(&[
            ("CLUSTER_RPC_MAX_CONNECTIONS", "900"),
            ("CLUSTER_RPC_MAX_PENDING_HANDSHAKES", "64"),
            ("CLUSTER_RPC_MAX_PENDING_PER_IP", " 4 "),
            ("CLUSTER_RPC_MAX_FRAME", "16MiB"),
            ("CLUSTER_RPC_MAX_CONCURRENT_REQUESTS", "10"),
            ("CLUSTER_RPC_MAX_BUFFERED_BYTES", "1G"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            l,
            ServerLimits::default()
                .max_connections(900)
                .max_pending_handshakes(64)
                .max_pending_per_ip(4)
                .max_frame(16 * MIB)
                .max_concurrent_requests(10)
                .max_buffered_bytes(GIB)
        );
        let l = env(&[("CLUSTER_RPC_MAX_CONNECTIONS", "auto")])
            .unwrap()
            .unwrap();
        assert_eq!(l, ServerLimits::default());
        for (v, bytes) in [
            ("65536", 65536),
            ("512KiB", 512 * KIB),
            ("512k", 512 * KIB),
            ("2M", 2 * MIB),
            ("3 MiB", 3 * MIB),
        ] {
            let l = env(&[("CLUSTER_RPC_MAX_FRAME", v)]).unwrap().unwrap();
            assert_eq!(l.max_frame, bytes, "{v}");
        }
    }

    #[test]
    fn bad_env_values_name_the_variable_and_what_was_expected() {
        for (var, value, expected) in [
            ("CLUSTER_RPC_MAX_CONNECTIONS", "many", "whole number"),
            ("CLUSTER_RPC_MAX_CONNECTIONS", "0", "at least 1"),
            ("CLUSTER_RPC_MAX_PENDING_HANDSHAKES", "-1", "whole number"),
            ("CLUSTER_RPC_MAX_PENDING_PER_IP", "0", "at least 1"),
            ("CLUSTER_RPC_MAX_CONCURRENT_REQUESTS", "1.5", "whole number"),
            ("CLUSTER_RPC_MAX_FRAME", "4MB", "KiB, MiB or GiB"),
            ("CLUSTER_RPC_MAX_FRAME", "0", "size in bytes"),
            ("CLUSTER_RPC_MAX_FRAME", "100", "from 1KiB"),
            ("CLUSTER_RPC_MAX_FRAME", "4G", "from 1KiB"),
            (
                "CLUSTER_RPC_MAX_FRAME",
                "99999999999999999999G",
                "size in bytes",
            ),
            (
                "CLUSTER_RPC_MAX_BUFFERED_BYTES",
                "1MiB",
                "at least the frame",
            ),
        ] {
            let e = err(&[(var, value)]);
            assert!(
                e.contains(var) && e.contains(value) && e.contains(expected),
                "{var}={value}: {e}"
            );
        }
    }

    #[test]
    fn bad_code_values_name_the_field() {
        let e = ServerLimits::default()
            .max_buffered_bytes(MIB)
            .validate(false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ServerLimits::max_buffered_bytes"), "{e}");
        let e = ServerLimits::default()
            .handshake_timeout(Duration::ZERO)
            .validate(false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ServerLimits::handshake_timeout"), "{e}");
        let e = ServerLimits::default()
            .max_connections(0)
            .validate(false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ServerLimits::max_connections"), "{e}");
    }

    #[test]
    fn admission_counts_pending_in_all_and_per_address_and_connections() {
        let limits = ServerLimits::default()
            .max_connections(5)
            .max_pending_handshakes(3)
            .max_pending_per_ip(2);
        let bounds = Arc::new(Bounds::new(limits, None));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let mut a1 = bounds.admit(a).unwrap();
        let a2 = bounds.admit(a).unwrap();
        assert_eq!(bounds.admit(a).unwrap_err(), Refusal::PendingPerIp);
        let mut b1 = bounds.admit(b).unwrap();
        assert_eq!(bounds.pending(), 3);
        assert_eq!(bounds.admit(c).unwrap_err(), Refusal::Pending);
        // A finished handshake frees its pending place, not its connection.
        a1.handshaken();
        b1.handshaken();
        assert_eq!(bounds.pending(), 1);
        let _a3 = bounds.admit(a).unwrap();
        let _c1 = bounds.admit(c).unwrap();
        assert_eq!(bounds.connections.load(Ordering::Relaxed), 5);
        assert_eq!(bounds.admit(b).unwrap_err(), Refusal::Connections);
        drop(a2);
        drop(b1);
        assert_eq!(bounds.connections.load(Ordering::Relaxed), 3);
        let _b2 = bounds.admit(b).unwrap();
        assert_eq!(bounds.refused_per_ip.load(Ordering::Relaxed), 1);
        assert_eq!(bounds.refused_pending.load(Ordering::Relaxed), 1);
        assert_eq!(bounds.refused_connections.load(Ordering::Relaxed), 1);
        drop((a1, _a3, _c1, _b2));
        assert_eq!(bounds.pending(), 0);
        assert_eq!(bounds.connections.load(Ordering::Relaxed), 0);
        let pending = bounds.pending.lock().unwrap();
        assert!(pending.per_ip.is_empty(), "{pending:?}");
    }

    #[test]
    fn the_budget_takes_what_is_left_and_no_more() {
        let budget = FrameBudget::new(10);
        assert!(budget.try_take(6));
        assert!(!budget.try_take(5));
        assert!(budget.try_take(4));
        assert!(!budget.try_take(1));
        assert!(!budget.try_take(usize::MAX));
        budget.give_back(6);
        assert_eq!(budget.used(), 4);
        assert!(budget.try_take(6));
        assert_eq!(budget.over_budget.load(Ordering::Relaxed), 3);
    }
}
