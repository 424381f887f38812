//! The tasks that keep a node's registry current: the registry loop (rebuild on every gossip
//! change, greet new nodes), announcing local changes, readiness, and the join loop that feeds
//! discovered addresses to gossip.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chitchat::{ChitchatConfig, ChitchatId, FailureDetectorConfig, ProtocolVersion};
use tokio::sync::watch;

use crate::config::Config;
use crate::id::{NodeId, check_node_name};
use crate::local::change;
use crate::member::{KEY_STATUS, Member, NodeStatus};
use crate::node::Inner;

/// Sends a gossip round (SYN) to every live peer, so that a local change reaches everyone in
/// one round trip instead of spreading over several gossip intervals. Beyond
/// [`PUSH_TO_ALL_PEERS`] live peers, only to [`push_budget`] of them, picked at random: gossip
/// carries the change on from there.
pub(crate) async fn announce(inner: &Inner) {
    let mut peers: Vec<SocketAddr> = {
        let cc = inner.chitchat.lock().await;
        let me = cc.self_chitchat_id().clone();
        cc.live_nodes()
            .filter(|id| **id != me)
            .map(|id| id.gossip_advertise_addr)
            .collect()
    };
    let budget = push_budget(peers.len());
    pick_at_random(&mut peers, budget);
    for addr in peers {
        let _ = inner.handle.gossip(addr);
    }
}

/// Up to this many peers, a node pushes to all of them: it announces a local change to every
/// live peer, and greets every node it learns of.
pub(crate) const PUSH_TO_ALL_PEERS: usize = 32;

/// Beyond [`PUSH_TO_ALL_PEERS`], the peers one push reaches are this divided by the number of
/// peers: each exchange carries a digest with an entry per member, so a push costs about this
/// many digest entries in all, whatever N is.
const PUSH_EXCHANGES: usize = 1024;

/// How many peers a node pushes to (announcing a local change), or greets per gossip interval,
/// when it has `peers` peers: all of them up to [`PUSH_TO_ALL_PEERS`], then
/// `PUSH_EXCHANGES / peers`, at least 1 (32 at 32 peers, 10 at 100, 2 at 500, 1 at 1000).
///
/// Without a bound, every node greeting every node it learns of made forming a cluster cost
/// N^2 exchanges, each with an N-entry digest: N^3 in all, which is what kept N = 1000 from
/// forming in one process.
pub(crate) fn push_budget(peers: usize) -> usize {
    if peers <= PUSH_TO_ALL_PEERS {
        usize::MAX
    } else {
        (PUSH_EXCHANGES / peers).max(1)
    }
}

/// Keeps `n` of `items`, picked at random (all of them if there are no more than `n`).
fn pick_at_random<T>(items: &mut Vec<T>, n: usize) {
    if items.len() > n {
        use rand::seq::SliceRandom;
        items.shuffle(&mut rand::rng());
        items.truncate(n);
    }
}

/// The longest a dead node's state is kept, whatever [`Config::dead_node_grace`] says (chitchat
/// adds it to an `Instant`, which must not overflow).
const MAX_DEAD_NODE_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// How many gossip intervals a live node whose heartbeats stopped coming stays suspected, and
/// probed directly (in place of some random gossip picks), before it is declared dead (see
/// `chitchat::FailureDetector::suspect_nodes`). From 49 live peers on a node gossips with one
/// peer per round, and a live node's heartbeat then sometimes takes more rounds to come round
/// than the failure detector allows: without the probe, a cluster of 100 declared a live node
/// down every few seconds somewhere. The price is these rounds on top of every crash's
/// detection. A node that announced its leave is not suspected (`departing_predicate` below).
const SUSPICION_ROUNDS: u32 = 3;

/// chitchat's settings for this node: gossip every `gossip_interval`, the failure detector's
/// prior is the gossip interval, intervals over 20 gossip intervals (at least 2 s) are ignored,
/// no chitchat seeds (the join loop feeds discovered addresses), protocol V1.
pub(crate) fn gossip_config(
    config: &Config,
    id: &NodeId,
    gossip_addr: SocketAddr,
    bound: SocketAddr,
) -> ChitchatConfig {
    let interval = config.gossip_interval;
    ChitchatConfig {
        chitchat_id: ChitchatId::new(id.name(), id.incarnation(), gossip_addr),
        cluster_id: config.cluster.clone(),
        gossip_interval: interval,
        listen_addr: bound,
        seed_nodes: Vec::new(),
        failure_detector_config: FailureDetectorConfig {
            phi_threshold: config.phi_threshold,
            sampling_window_size: 200,
            max_interval: interval.saturating_mul(20).max(Duration::from_secs(2)),
            initial_interval: interval,
            dead_node_grace_period: config.dead_node_grace.min(MAX_DEAD_NODE_GRACE),
            suspicion: interval.saturating_mul(SUSPICION_ROUNDS),
        },
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        // A node that announced its leave is declared dead as soon as its heartbeats stop
        // long enough, not suspected and probed like one that may be alive.
        departing_predicate: Some(Box::new(|state| {
            state.get(KEY_STATUS) == Some(NodeStatus::Leaving.as_str())
        })),
        protocol_version: ProtocolVersion::V1,
        gossip_fanout: config
            .gossip_fanout
            .and_then(|n| std::num::NonZeroUsize::new(n as usize)),
    }
}

/// The members last read from gossip, by chitchat id, with the state version they were read
/// at: a node whose state has not changed since is not read again.
pub(crate) type MemberCache = HashMap<ChitchatId, (u64, Arc<Member>)>;

/// Reads chitchat's live nodes into the registry. Holding the member cache's lock from the
/// read to the publication orders refreshes: a refresh never publishes a read older than the
/// one before it, so the registry never goes back to an older state.
pub(crate) async fn refresh(inner: &Inner) {
    let mut cache = inner.members.lock().await;
    let members = read_members(inner, &mut cache).await;
    inner.registry.publish(members);
}

/// Reads chitchat's live nodes into members, re-evaluating liveness first so that heartbeats
/// that just arrived count now rather than at the next gossip tick. A node whose state did not
/// change since the last read is taken from `cache`.
///
/// A peer whose name is not a valid node name (only a broken or hostile peer holding the
/// cluster key sends one) is left out, and so is a peer seen for the first time in the middle
/// of a change too large for one gossip message (see [`Member::from_gossip`]).
async fn read_members(inner: &Inner, cache: &mut MemberCache) -> Vec<Arc<Member>> {
    let mut cc = inner.chitchat.lock().await;
    cc.update_nodes_liveness();
    let mut members = Vec::new();
    let mut seen = HashSet::new();
    for cid in cc.live_nodes() {
        if check_node_name(&cid.node_id).is_err() {
            continue;
        }
        let Some(state) = cc.node_state(cid) else {
            continue;
        };
        seen.insert(cid.clone());
        let version = state.max_version();
        let previous = match cache.get(cid) {
            Some((v, m)) if *v == version => {
                members.push(m.clone());
                continue;
            }
            Some((_, m)) => Some(m.clone()),
            None => None,
        };
        let read = Member::from_gossip(
            NodeId::from_parts(cid.node_id.clone(), cid.generation_id),
            cid.gossip_advertise_addr,
            state.key_values(),
            previous.as_deref(),
        );
        if let Some(member) = read {
            let member = match previous {
                Some(p) if *p == member => p,
                _ => Arc::new(member),
            };
            cache.insert(cid.clone(), (version, member.clone()));
            members.push(member);
        }
    }
    cache.retain(|cid, _| seen.contains(cid));
    members
}

/// Rebuilds the registry whenever chitchat's set of live nodes or any node's state changes, and
/// greets the nodes it learns of.
///
/// Rebuilds are at least an eighth of a gossip interval apart: a change that comes sooner is
/// read at the end of that time, together with whatever else came meanwhile. While a cluster
/// forms, every node's state changes many times per interval, and each rebuild reads every
/// member. (A local change does not wait: it rebuilds the registry itself before it returns.)
pub(crate) async fn registry_loop(weak: Weak<Inner>) {
    let Some(inner) = weak.upgrade() else { return };
    let mut live = inner.chitchat.lock().await.live_nodes_change_watcher();
    let kick = inner.kick.clone();
    let apart = inner.config.gossip_interval / 8;
    let mut greeter = Greeter::new(inner.config.gossip_interval);
    drop(inner);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let rebuilt = tokio::time::Instant::now();
        greeter.greet_new_nodes(&inner).await;
        refresh(&inner).await;
        let others = (inner.registry.snapshot().members())
            .filter(|m| m.id != inner.id)
            .count();
        if others > 0 && !inner.registry.is_ready() {
            become_ready(&inner).await;
        }
        drop(inner);
        tokio::time::sleep_until(rebuilt + apart).await;
        tokio::select! {
            changed = live.changed() => if changed.is_err() { return },
            _ = kick.notified() => {}
        }
    }
}

/// Which nodes a node has greeted, and how many greetings it has left this gossip interval.
pub(crate) struct Greeter {
    /// Every known node, greeted or passed over when it was new.
    greeted: HashSet<ChitchatId>,
    /// The gossip interval: the budget's period.
    interval: Duration,
    /// When the current period began.
    period: tokio::time::Instant,
    /// Greetings sent in the current period.
    spent: usize,
}

impl Greeter {
    pub(crate) fn new(interval: Duration) -> Greeter {
        Greeter {
            greeted: HashSet::new(),
            interval,
            period: tokio::time::Instant::now(),
            spent: 0,
        }
    }

    /// How many of `wanted` new nodes may be greeted now, with `known` nodes known; they count
    /// against this gossip interval's budget.
    fn take(&mut self, known: usize, wanted: usize) -> usize {
        let now = tokio::time::Instant::now();
        if now >= self.period + self.interval {
            self.period = now;
            self.spent = 0;
        }
        let allowed = wanted.min(push_budget(known).saturating_sub(self.spent));
        self.spent += allowed;
        allowed
    }

    /// Gossips at once, twice, with the nodes this node has just learned of (from a peer's
    /// state, before they are considered live). The two rounds give the other node's failure
    /// detector the two heartbeats it needs to declare this node live, so a joining node is
    /// seen by everyone after one exchange instead of after several random gossip rounds;
    /// likewise the nodes that learn of a joiner greet it back.
    ///
    /// Up to [`PUSH_TO_ALL_PEERS`] known nodes, every new node is greeted. Beyond, at most
    /// [`push_budget`] new nodes per gossip interval, picked at random; the others are left to
    /// gossip (they greet this node when they learn of it, within their own budget).
    pub(crate) async fn greet_new_nodes(&mut self, inner: &Arc<Inner>) {
        let (mut fresh, known) = {
            let cc = inner.chitchat.lock().await;
            let me = cc.self_chitchat_id();
            let known: HashSet<&ChitchatId> =
                cc.node_states().keys().filter(|id| *id != me).collect();
            self.greeted.retain(|id| known.contains(id));
            let fresh: Vec<SocketAddr> = known
                .iter()
                .filter(|id| self.greeted.insert((**id).clone()))
                .map(|id| id.gossip_advertise_addr)
                .collect();
            (fresh, known.len())
        };
        if fresh.is_empty() {
            return;
        }
        let allowed = self.take(known, fresh.len());
        pick_at_random(&mut fresh, allowed);
        if fresh.is_empty() {
            return;
        }
        for addr in &fresh {
            let _ = inner.handle.gossip(*addr);
        }
        let weak = Arc::downgrade(inner);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(25)).await;
            if let Some(inner) = weak.upgrade() {
                for addr in &fresh {
                    let _ = inner.handle.gossip(*addr);
                }
            }
            // Heartbeats alone do not wake the registry (only state changes do): look again
            // while the greeted nodes' answers come in.
            for wait_ms in [25, 75, 150] {
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                match weak.upgrade() {
                    Some(inner) => inner.kick.notify_one(),
                    None => return,
                }
            }
        });
    }
}

/// Marks the node ready: its status goes from `joining` to `serving` (through the node's one
/// ordered path, so it never overwrites a later `leaving`), the registry shows it serving, and
/// only then does anyone waiting on readiness wake up.
pub(crate) async fn become_ready(inner: &Inner) {
    if inner.registry.is_ready() {
        return;
    }
    let _ = change(inner, |l| {
        if l.status == NodeStatus::Joining {
            l.status = NodeStatus::Serving;
            true
        } else {
            false
        }
    })
    .await;
    refresh(inner).await;
    inner.registry.set_ready();
    announce(inner).await;
    tracing::info!(node = %inner.id, "node is ready");
}

/// Feeds discovered addresses to gossip, and decides readiness when no peer can be found.
pub(crate) async fn join_loop(
    weak: Weak<Inner>,
    mut discovery: Option<watch::Receiver<Arc<BTreeSet<SocketAddr>>>>,
    bound: SocketAddr,
) {
    let Some(inner) = weak.upgrade() else { return };
    let interval = inner.config.gossip_interval;
    // A join timeout too large to add (e.g. `Duration::MAX`) means "never".
    let join_deadline = tokio::time::Instant::now().checked_add(inner.config.join_timeout);
    let own: HashSet<SocketAddr> = [inner.gossip_addr, bound].into_iter().collect();
    drop(inner);
    let mut first = true;
    // When the node last said it is alone while seeds name other addresses (at most once
    // every `ALONE_WARN_EVERY`).
    let mut warned_alone: Option<tokio::time::Instant> = None;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if *inner.stop.borrow() {
            return;
        }
        let discovered: Vec<SocketAddr> = discovery
            .as_ref()
            .map(|d| d.borrow().iter().copied().collect())
            .unwrap_or_default();
        let others: Vec<SocketAddr> = discovered
            .into_iter()
            .filter(|a| !own.contains(a))
            .collect();
        if !inner.registry.is_ready()
            && (others.is_empty() && first
                || join_deadline.is_some_and(|d| tokio::time::Instant::now() >= d))
        {
            if !others.is_empty() {
                warned_alone = Some(tokio::time::Instant::now());
                warn_alone(&inner, &others, "no seed answered within the join timeout");
            }
            become_ready(&inner).await;
        } else if inner.registry.is_ready()
            && !others.is_empty()
            && warned_alone.is_some_and(|t| t.elapsed() >= ALONE_WARN_EVERY)
            && inner
                .registry
                .snapshot()
                .members()
                .all(|m| m.id == inner.id)
        {
            warned_alone = Some(tokio::time::Instant::now());
            warn_alone(&inner, &others, "still no answer from any seed");
        }
        first = false;
        // Gossip with discovered addresses that are not (yet) live members: this is how a node
        // joins, and how separated parts of a cluster find each other again.
        let known: HashSet<SocketAddr> = {
            let cc = inner.chitchat.lock().await;
            cc.live_nodes().map(|id| id.gossip_advertise_addr).collect()
        };
        for addr in others.iter().filter(|a| !known.contains(a)) {
            let _ = inner.handle.gossip(*addr);
        }
        let ready = inner.registry.is_ready();
        drop(inner);
        // Before joining, knock often; afterwards, discovered strangers are rare.
        let pause = if ready {
            interval.saturating_mul(4).max(Duration::from_secs(1))
        } else {
            interval
        };
        match discovery.as_mut() {
            Some(d) => {
                tokio::select! {
                    changed = d.changed() => if changed.is_err() { discovery = None },
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            None => tokio::time::sleep(pause).await,
        }
    }
}

/// How often a node that started alone says again that its seeds do not answer.
const ALONE_WARN_EVERY: Duration = Duration::from_secs(60);

/// Says that the node runs alone although its seeds name other addresses, and what to check.
fn warn_alone(inner: &Inner, seeds: &[SocketAddr], what: &str) {
    let rejected = crate::GossipStats::read(&inner.counters).packets_rejected;
    tracing::warn!(
        node = %inner.id,
        cluster = %inner.config.cluster,
        seeds = ?seeds,
        rejected_packets = rejected,
        "{what}; running as a cluster of one. Check that every node has the same secret \
         (CLUSTER_SECRET) and cluster name (CLUSTER_NAME): a node with another one is ignored \
         without an answer{}; and that the seeds are reachable over UDP on their gossip port. \
         Said again every {}s while alone",
        if rejected > 0 {
            " (this node dropped packets sealed with another secret or cluster name)"
        } else {
            ""
        },
        ALONE_WARN_EVERY.as_secs()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_reach_every_peer_up_to_32_then_share_1024_exchanges() {
        for peers in [0, 1, 2, 31, 32] {
            assert_eq!(push_budget(peers), usize::MAX, "{peers} peers");
        }
        assert_eq!(push_budget(33), 31);
        assert_eq!(push_budget(100), 10);
        assert_eq!(push_budget(500), 2);
        assert_eq!(push_budget(1000), 1);
        assert_eq!(push_budget(100_000), 1, "never none");
        // The exchanges of one push stay about the same whatever N is.
        for peers in [33, 64, 100, 250, 1000] {
            assert!(
                push_budget(peers) * peers <= PUSH_EXCHANGES,
                "{peers} peers"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn greetings_beyond_32_peers_are_budgeted_per_gossip_interval() {
        let interval = Duration::from_secs(4);
        let mut greeter = Greeter::new(interval);
        assert_eq!(greeter.take(20, 20), 20, "a small cluster: every new node");
        assert_eq!(greeter.take(20, 20), 20, "and again: no budget up to 32");
        let mut greeter = Greeter::new(interval);
        assert_eq!(greeter.take(100, 4), 4);
        assert_eq!(
            greeter.take(100, 50),
            6,
            "10 per interval at 100 known nodes"
        );
        assert_eq!(greeter.take(100, 50), 0, "spent");
        tokio::time::advance(interval / 2).await;
        assert_eq!(greeter.take(100, 50), 0, "still the same interval");
        tokio::time::advance(interval / 2).await;
        assert_eq!(greeter.take(100, 50), 10, "a new interval, a new budget");
        tokio::time::advance(interval * 3).await;
        assert_eq!(greeter.take(1000, 50), 1, "1 per interval at 1000");
        assert_eq!(greeter.take(1000, 0), 0);
    }

    #[test]
    fn a_pick_keeps_that_many_distinct_items_or_all() {
        let mut all: Vec<u32> = (0..10).collect();
        pick_at_random(&mut all, usize::MAX);
        assert_eq!(
            all,
            (0..10).collect::<Vec<_>>(),
            "nothing to drop: kept in order"
        );
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let mut some: Vec<u32> = (0..10).collect();
            pick_at_random(&mut some, 3);
            assert_eq!(some.len(), 3);
            assert_eq!(some.iter().collect::<HashSet<_>>().len(), 3, "{some:?}");
            seen.extend(some);
        }
        assert_eq!(seen.len(), 10, "every item gets picked at some point");
        let mut none: Vec<u32> = (0..10).collect();
        pick_at_random(&mut none, 0);
        assert!(none.is_empty());
    }

    #[test]
    fn huge_durations_saturate_in_the_gossip_config() {
        let config = Config {
            dead_node_grace: Duration::MAX,
            gossip_interval: Duration::from_secs(60),
            ..Config::default()
        };
        let id = NodeId::new("n", 1).unwrap();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let cc = gossip_config(&config, &id, addr, addr);
        let fd = &cc.failure_detector_config;
        assert_eq!(fd.dead_node_grace_period, MAX_DEAD_NODE_GRACE);
        // chitchat adds these to instants: they must fit.
        let now = std::time::Instant::now();
        assert!(now.checked_add(fd.dead_node_grace_period).is_some());
        assert_eq!(fd.max_interval, Duration::from_secs(20 * 60));
        assert_eq!(fd.initial_interval, Duration::from_secs(60));
    }

    #[tokio::test]
    async fn a_node_with_duration_max_settings_starts_and_leaves() {
        let node = crate::Node::builder()
            .cluster("duration-max")
            .listen("127.0.0.1:0")
            .secret_key(crate::Secret::generate())
            .join_timeout(Duration::MAX)
            .dns_interval(Duration::from_secs(1), Duration::MAX)
            .leave_grace(Duration::ZERO)
            .config(Config {
                dead_node_grace: Duration::MAX,
                ..Config::default()
            })
            .start()
            .await
            .unwrap();
        // No seeds: ready at once, even though the join deadline is "never".
        tokio::time::timeout(Duration::from_secs(5), node.ready())
            .await
            .expect("ready without panicking on Instant + Duration::MAX");
        node.shutdown().await;
    }
}
