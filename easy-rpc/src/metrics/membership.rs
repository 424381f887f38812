//! Counting membership changes from the registry's events: joins, leaves, and failures (a
//! node gone without announcing it leaves).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use cluster_helper::{ClusterEvent, EventsError, NodeId, Registry};
use tokio::sync::watch;

use super::Metrics;

/// Counts `registry`'s membership events into `metrics` until `stop` turns true or the
/// registry closes.
pub(crate) fn count_membership(
    metrics: Arc<Metrics>,
    registry: &Registry,
    mut stop: watch::Receiver<bool>,
) {
    // The snapshot and the events that follow it exactly: the members already serving when
    // the counter starts (the node's start can see peers before this runs) count as joins
    // once, and none twice.
    let (snapshot, mut events) = registry.snapshot_and_events();
    let serving = snapshot
        .members()
        .filter(|m| m.status == cluster_helper::NodeStatus::Serving)
        .count();
    metrics.joins.fetch_add(
        u64::try_from(serving).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    tokio::spawn(async move {
        // Nodes that announced they leave: their going down is not a failure.
        let mut leaving: HashSet<NodeId> = HashSet::new();
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                _ = stop.wait_for(|s| *s) => return,
            };
            match event {
                Ok(ClusterEvent::NodeUp(_)) => {
                    metrics.joins.fetch_add(1, Ordering::Relaxed);
                }
                Ok(ClusterEvent::NodeLeaving(m)) => {
                    metrics.leaves.fetch_add(1, Ordering::Relaxed);
                    leaving.insert(m.id.clone());
                }
                Ok(ClusterEvent::NodeDown(m)) => {
                    if !leaving.remove(&m.id) {
                        metrics.failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(_) => {}
                Err(EventsError::Lagged(n)) => {
                    metrics.events_missed.fetch_add(n, Ordering::Relaxed);
                }
                Err(_) => return,
            }
        }
    });
}
