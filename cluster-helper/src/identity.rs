//! How this process names its nodes: the default node name and the incarnation of each start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static LAST_INCARNATION: AtomicU64 = AtomicU64::new(0);
static NODES_IN_PROCESS: AtomicU64 = AtomicU64::new(0);

/// A new incarnation: the wall clock in microseconds, strictly increasing within the process.
pub(crate) fn next_incarnation() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1);
    let prev = LAST_INCARNATION
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(0);
    now.max(prev + 1)
}

pub(crate) fn default_node_name() -> String {
    let host = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| {
            h.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .collect::<String>()
        })
        .filter(|h| crate::id::check_node_name(h).is_ok())
        .unwrap_or_else(|| "node".to_owned());
    let pid = std::process::id();
    let mut name = if pid == 1 {
        host
    } else {
        format!("{host}-{pid}")
    };
    let n = NODES_IN_PROCESS.fetch_add(1, Ordering::Relaxed);
    if n > 0 {
        name.push_str(&format!("-{n}"));
    }
    name.truncate(crate::id::MAX_NODE_NAME_LEN);
    name
}
