//! Picking one node of a role: the strategies ([`Strategy`]) and rendezvous routing by key,
//! over the role's nodes minus those already tried, skipping nodes marked down unless every
//! one is. Pure: the random source and the time are given, so every choice can be tested
//! without sockets (see the tests below, in the style of tower's `balance/p2c/test.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cluster_helper::NodeId;
use tower::load::Load;
use tower::util::rng::Rng;

use super::key::score;
use super::peer::Peer;
use crate::options::Strategy;

/// How a call picks its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// By a balancing strategy.
    Balanced(Strategy),
    /// To the owner of a key hash (rendezvous hashing).
    Key(u64),
    /// A hedged call's pick under the default strategy ([`Strategy::P2c`]): p2c by the
    /// peak-EWMA cost (latency estimate times calls in flight plus one), as
    /// [`Strategy::P2cPeakEwma`] picks. A node that answers far slower than its peers is
    /// avoided by the first request, so hedging is left with the tail. Calls that do not hedge
    /// still pick by pending requests; the nodes a hedged call looked at record their
    /// latencies from then on (as under `P2cPeakEwma`).
    Hedged,
}

/// Something the picker can choose: it has a [`Peer`].
pub(crate) trait Candidate {
    /// What the picker knows of the node.
    fn peer(&self) -> &Peer;
}

impl Candidate for Peer {
    fn peer(&self) -> &Peer {
        self
    }
}

impl<T: Candidate + ?Sized> Candidate for Arc<T> {
    fn peer(&self) -> &Peer {
        (**self).peer()
    }
}

/// The process's thread-local random generator, as tower's [`Rng`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ThreadRandom;

impl Rng for ThreadRandom {
    fn next_u64(&mut self) -> u64 {
        rand::random()
    }
}

/// Picks one of `nodes` not in `tried` by `route`, at `now_ms` (for down marks and latency
/// decay), drawing from `rng`; `next` is the role's round-robin position.
///
/// Nodes marked down are skipped unless every untried node is down, then they are all
/// candidates again (better to try a node that failed a moment ago than to fail the call).
/// Ties go to the first candidate drawn (p2c), or the greater node id (rendezvous). p2c draws
/// and compares as tower's `p2c::Balance` does: given the candidates in the same order, the
/// same random numbers and the same loads, both choose the same node (tested below).
pub(crate) fn pick<'a, T: Candidate>(
    nodes: &'a [T],
    route: Route,
    tried: &[NodeId],
    now_ms: u64,
    rng: &mut impl Rng,
    next: &AtomicUsize,
) -> Option<&'a T> {
    // Without allocating: the candidates are the untried nodes that are up, or, if none is
    // up, every untried one.
    let untried = |e: &&T| !tried.contains(&e.peer().node);
    let any_up = nodes
        .iter()
        .filter(untried)
        .any(|e| !e.peer().is_down(now_ms));
    let candidates = || {
        nodes
            .iter()
            .filter(untried)
            .filter(move |e| !any_up || !e.peer().is_down(now_ms))
    };
    let strategy = match route {
        Route::Key(key) => {
            return candidates().max_by(|a, b| {
                let (a, b) = (a.peer(), b.peer());
                (score(key, a.name_hash), &a.node).cmp(&(score(key, b.name_hash), &b.node))
            });
        }
        Route::Balanced(strategy) => strategy,
        Route::Hedged => Strategy::P2cPeakEwma,
    };
    let n = candidates().count();
    let nth = |i: usize| candidates().nth(i).expect("index below the count");
    match n {
        0 => return None,
        1 => return Some(nth(0)),
        _ => {}
    }
    // Two distinct nodes, drawn exactly as tower's p2c `Balance` draws them (its
    // `sample_floyd2`: the first index below n - 1, the second below n, and on a collision the
    // first becomes n - 1), so the same draws give the same pair as tower's balancer. Two
    // draws, one comparison: what the former draw cost.
    let mut two = || {
        let a = rng.next_range(0..n as u64 - 1);
        let b = rng.next_range(0..n as u64);
        let a = if a == b { n as u64 - 1 } else { a };
        (nth(a as usize), nth(b as usize))
    };
    let chosen = match strategy {
        Strategy::P2c => {
            let (a, b) = two();
            less_loaded(a, b, |e| e.peer().pending.load())
        }
        Strategy::P2cPeakEwma => {
            let (a, b) = two();
            for e in [a, b] {
                e.peer().ewma.start_measuring();
            }
            less_loaded(a, b, |e| {
                let peer = e.peer();
                peer.ewma.at(&peer.pending, now_ms).load()
            })
        }
        Strategy::RoundRobin => nth(next.fetch_add(1, Ordering::Relaxed) % n),
        Strategy::Random => nth(rng.next_range(0..n as u64) as usize),
        Strategy::LocalFirst => match candidates().find(|e| e.peer().local) {
            Some(local) => local,
            None => {
                let (a, b) = two();
                less_loaded(a, b, |e| e.peer().pending.load())
            }
        },
    };
    Some(chosen)
}

/// The power of two choices: of two nodes, the one whose load (a tower [`Load`] metric) is
/// lower; `a` on a tie. The comparison is tower's (`aload <= bload`), so the two agree even on
/// incomparable metrics.
fn less_loaded<'a, T, M: PartialOrd>(a: &'a T, b: &'a T, load: impl Fn(&'a T) -> M) -> &'a T {
    if load(a) <= load(b) { a } else { b }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::hash::{BuildHasherDefault, DefaultHasher};
    use std::time::Duration;

    use tower::util::rng::HasherRng;

    use super::*;
    use crate::client::load::Pending;

    /// Draws the given numbers, in order.
    struct Script(Vec<u64>);

    impl Rng for Script {
        fn next_u64(&mut self) -> u64 {
            assert!(!self.0.is_empty(), "the test scripted enough draws");
            self.0.remove(0)
        }
    }

    fn draws(v: &[u64]) -> Script {
        Script(v.to_vec())
    }

    fn seeded() -> HasherRng<BuildHasherDefault<DefaultHasher>> {
        HasherRng::with_hasher(BuildHasherDefault::default())
    }

    fn peers(names: &[&str]) -> Vec<Peer> {
        names
            .iter()
            .map(|n| Peer::new(NodeId::new(n, 1).unwrap(), false))
            .collect()
    }

    /// Gives `peer` `n` calls in flight (until the returned guards drop).
    fn busy(peer: &Peer, n: usize) -> Vec<Pending<'_>> {
        (0..n).map(|_| peer.pending.start()).collect()
    }

    fn name<T: Candidate>(t: Option<&T>) -> Option<&str> {
        t.map(|t| t.peer().node.name())
    }

    const P2C: Route = Route::Balanced(Strategy::P2c);

    #[test]
    fn empty_and_single() {
        let rr = AtomicUsize::new(0);
        let none: Vec<Peer> = Vec::new();
        assert!(pick(&none, P2C, &[], 0, &mut draws(&[]), &rr).is_none());
        let one = peers(&["a"]);
        // One candidate: no draw at all.
        assert_eq!(
            name(pick(&one, P2C, &[], 0, &mut draws(&[]), &rr)),
            Some("a")
        );
        // Tried already: nothing left.
        let tried = [one[0].node.clone()];
        assert!(pick(&one, P2C, &tried, 0, &mut draws(&[]), &rr).is_none());
    }

    #[test]
    fn p2c_takes_the_less_loaded_of_two_draws() {
        let rr = AtomicUsize::new(0);
        let ps = peers(&["a", "b", "c"]);
        let _a = busy(&ps[0], 2);
        let _b = busy(&ps[1], 1);
        // First draw 0 % 2 = a; second 1 % 3 = b: b has fewer calls.
        assert_eq!(
            name(pick(&ps, P2C, &[], 0, &mut draws(&[0, 1]), &rr)),
            Some("b")
        );
        // Draws a (0 % 2) and c (2 % 3): c has none.
        assert_eq!(
            name(pick(&ps, P2C, &[], 0, &mut draws(&[0, 2]), &rr)),
            Some("c")
        );
        // The two are always different nodes: 1 % 2 = b, then 1 % 3 = b again, so the first
        // becomes the last node, c.
        assert_eq!(
            name(pick(&ps, P2C, &[], 0, &mut draws(&[1, 1]), &rr)),
            Some("c")
        );
    }

    #[test]
    fn p2c_tie_goes_to_the_first_draw() {
        let rr = AtomicUsize::new(0);
        let ps = peers(&["a", "b", "c"]);
        // 0 and 0 collide: the first is c.
        assert_eq!(
            name(pick(&ps, P2C, &[], 0, &mut draws(&[0, 0]), &rr)),
            Some("c")
        );
        assert_eq!(
            name(pick(&ps, P2C, &[], 0, &mut draws(&[0, 1]), &rr)),
            Some("a")
        );
    }

    #[test]
    fn p2c_over_many_seeded_draws_never_picks_the_busiest() {
        let rr = AtomicUsize::new(0);
        let ps = peers(&["a", "b", "c"]);
        let _b = busy(&ps[1], 5);
        let _c = busy(&ps[2], 10);
        let mut rng = seeded();
        let mut count: BTreeMap<&str, u32> = BTreeMap::new();
        for _ in 0..3_000 {
            *count
                .entry(name(pick(&ps, P2C, &[], 0, &mut rng, &rr)).unwrap())
                .or_default() += 1;
        }
        // a wins every pair it is in (2/3), b the pair (b, c) (1/3), c never.
        assert!((1_850..2_150).contains(&count["a"]), "{count:?}");
        assert!((850..1_150).contains(&count["b"]), "{count:?}");
        assert_eq!(count.get("c"), None, "{count:?}");
    }

    #[test]
    fn nodes_marked_down_are_skipped_until_every_node_is_down() {
        let rr = AtomicUsize::new(0);
        let ps = peers(&["a", "b", "c"]);
        ps[1].mark_down(0, Duration::from_millis(1_000));
        // b is down: the candidates are a and c. Draws 0 % 1 = a, 1 % 2 = c.
        let _a = busy(&ps[0], 1);
        assert_eq!(
            name(pick(&ps, P2C, &[], 10, &mut draws(&[0, 1]), &rr)),
            Some("c")
        );
        for strategy in [
            Strategy::RoundRobin,
            Strategy::Random,
            Strategy::P2cPeakEwma,
        ] {
            let mut rng = seeded();
            for _ in 0..50 {
                let got = name(pick(&ps, Route::Balanced(strategy), &[], 10, &mut rng, &rr));
                assert_ne!(got, Some("b"), "{strategy:?}");
            }
        }
        // Rendezvous skips it too, whatever the key.
        for key in 0..50 {
            assert_ne!(
                name(pick(&ps, Route::Key(key), &[], 10, &mut draws(&[]), &rr)),
                Some("b")
            );
        }
        // Its mark expires.
        let mut seen_b = false;
        let mut rng = seeded();
        for _ in 0..50 {
            seen_b |= name(pick(
                &ps,
                Route::Balanced(Strategy::Random),
                &[],
                1_000,
                &mut rng,
                &rr,
            )) == Some("b");
        }
        assert!(seen_b);
        // Every untried node down: they are all tried anyway.
        ps[0].mark_down(0, Duration::from_millis(1_000));
        ps[2].mark_down(0, Duration::from_millis(1_000));
        let tried = [ps[2].node.clone()];
        // Candidates a and b (c tried): 0 % 1 = a, then 1 % 2 = b; b has fewer calls.
        assert_eq!(
            name(pick(&ps, P2C, &tried, 10, &mut draws(&[0, 1]), &rr)),
            Some("b")
        );
        // One node left untried and it is down: it is still picked.
        let tried = [ps[0].node.clone(), ps[2].node.clone()];
        assert_eq!(
            name(pick(&ps, P2C, &tried, 10, &mut draws(&[]), &rr)),
            Some("b")
        );
    }

    #[test]
    fn round_robin_takes_each_in_turn_and_random_is_uniform_draws() {
        let rr = AtomicUsize::new(0);
        let ps = peers(&["a", "b", "c"]);
        let route = Route::Balanced(Strategy::RoundRobin);
        let seq: Vec<_> = (0..6)
            .map(|_| name(pick(&ps, route, &[], 0, &mut draws(&[]), &rr)).unwrap())
            .collect();
        assert_eq!(seq, ["a", "b", "c", "a", "b", "c"]);
        let route = Route::Balanced(Strategy::Random);
        for (draw, want) in [(0, "a"), (4, "b"), (5, "c")] {
            assert_eq!(
                name(pick(&ps, route, &[], 0, &mut draws(&[draw]), &rr)),
                Some(want)
            );
        }
    }

    #[test]
    fn local_first_takes_this_node_else_p2c() {
        let rr = AtomicUsize::new(0);
        let mut ps = peers(&["a", "b"]);
        ps.push(Peer::new(NodeId::new("me", 1).unwrap(), true));
        let _me = busy(&ps[2], 100);
        let route = Route::Balanced(Strategy::LocalFirst);
        assert_eq!(
            name(pick(&ps, route, &[], 0, &mut draws(&[]), &rr)),
            Some("me")
        );
        // Tried (or down): p2c over the others.
        let tried = [ps[2].node.clone()];
        let _a = busy(&ps[0], 1);
        assert_eq!(
            name(pick(&ps, route, &tried, 0, &mut draws(&[0, 0]), &rr)),
            Some("b")
        );
        ps[2].mark_down(0, Duration::from_secs(1));
        assert_eq!(
            name(pick(&ps, route, &[], 0, &mut draws(&[0, 1]), &rr)),
            Some("b")
        );
    }

    #[test]
    fn peak_ewma_avoids_the_slow_node_until_its_estimate_decays() {
        let rr = AtomicUsize::new(0);
        let ps = peers(&["slow", "fast"]);
        let route = Route::Balanced(Strategy::P2cPeakEwma);
        ps[0].ewma.observe(0, Duration::from_millis(50));
        ps[1].ewma.observe(0, Duration::from_millis(5));
        // Whichever is drawn first, the fast one wins: (0, 0) collide, so the pair is
        // (fast, slow); (0, 1) is (slow, fast).
        for d in [[0, 0], [0, 1]] {
            assert_eq!(
                name(pick(&ps, route, &[], 100, &mut draws(&d), &rr)),
                Some("fast")
            );
        }
        // Both were looked at: from now on their latencies are recorded.
        assert!(ps.iter().all(|p| p.ewma.is_measured()));
        // A fast node with many calls in flight costs more than a slow idle one.
        let _fast = busy(&ps[1], 20);
        assert_eq!(
            name(pick(&ps, route, &[], 100, &mut draws(&[1, 0]), &rr)),
            Some("slow")
        );
        drop(_fast);
        // Ten seconds later both estimates have decayed below the floor: a tie, the first
        // draw wins, so the slow node is tried again.
        assert_eq!(
            name(pick(&ps, route, &[], 10_000, &mut draws(&[0, 1]), &rr)),
            Some("slow")
        );
        assert_eq!(
            name(pick(&ps, route, &[], 10_000, &mut draws(&[0, 0]), &rr)),
            Some("fast")
        );
    }

    #[test]
    fn a_hedged_pick_compares_latency_where_an_unhedged_one_compares_calls_in_flight() {
        let rr = AtomicUsize::new(0);
        let ps = peers(&["slow", "fast"]);
        ps[0].ewma.observe(0, Duration::from_millis(100));
        ps[1].ewma.observe(0, Duration::from_millis(5));
        // By pending requests the two are equal and the first draw wins: the slow one...
        assert_eq!(
            name(pick(&ps, P2C, &[], 100, &mut draws(&[0, 1]), &rr)),
            Some("slow")
        );
        // ...by latency the fast one, whichever is drawn first.
        for d in [[0, 0], [0, 1]] {
            assert_eq!(
                name(pick(&ps, Route::Hedged, &[], 100, &mut draws(&d), &rr)),
                Some("fast")
            );
        }
        // From now on their latencies are recorded (as after a `P2cPeakEwma` pick).
        assert!(ps.iter().all(|p| p.ewma.is_measured()));
    }

    fn owners(ps: &[Peer], keys: u64) -> Vec<String> {
        let rr = AtomicUsize::new(0);
        (0..keys)
            .map(|k| {
                let key = crate::client::KeyHasher::hash(&k);
                name(pick(ps, Route::Key(key), &[], 0, &mut draws(&[]), &rr))
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn rendezvous_owner_is_stable_and_only_a_changed_nodes_keys_move() {
        let names = ["n0", "n1", "n2", "n3", "n4"];
        let five = peers(&names);
        let before = owners(&five, 5_000);
        // The order of the role's nodes does not matter, nor does load.
        let mut reversed = peers(&names);
        reversed.reverse();
        let _busy = busy(&reversed[0], 10);
        assert_eq!(owners(&reversed, 5_000), before);
        // Spread: each node owns about a fifth.
        for n in names {
            let share = before.iter().filter(|o| *o == n).count();
            assert!((800..1_200).contains(&share), "{n}: {share}");
        }
        // One leaves: only its keys move.
        let four = peers(&["n0", "n1", "n3", "n4"]);
        let after = owners(&four, 5_000);
        for (b, a) in before.iter().zip(&after) {
            if b != "n2" {
                assert_eq!(b, a);
            }
        }
        // One joins: keys move only to it, about a sixth of them.
        let six = peers(&["n0", "n1", "n2", "n3", "n4", "n5"]);
        let joined = owners(&six, 5_000);
        let moved = before.iter().zip(&joined).filter(|(b, a)| b != a);
        assert!(moved.clone().all(|(_, a)| a == "n5"));
        let moved = moved.count();
        assert!((600..1_100).contains(&moved), "{moved}");
    }

    #[test]
    fn rendezvous_falls_to_the_next_score_when_the_owner_is_tried_or_down() {
        let rr = AtomicUsize::new(0);
        let ps = peers(&["n0", "n1", "n2"]);
        let key = 42;
        let first = name(pick(&ps, Route::Key(key), &[], 0, &mut draws(&[]), &rr)).unwrap();
        let owner = ps.iter().find(|p| p.node.name() == first).unwrap();
        let tried = [owner.node.clone()];
        let second = name(pick(&ps, Route::Key(key), &tried, 0, &mut draws(&[]), &rr)).unwrap();
        assert_ne!(first, second);
        owner.mark_down(0, Duration::from_secs(1));
        assert_eq!(
            name(pick(&ps, Route::Key(key), &[], 0, &mut draws(&[]), &rr)),
            Some(second)
        );
    }

    #[test]
    fn rendezvous_ties_go_to_the_greater_node_id() {
        let rr = AtomicUsize::new(0);
        // Two incarnations of one name hash alike: the later incarnation owns its keys.
        let ps = vec![
            Peer::new(NodeId::new("pod", 1).unwrap(), false),
            Peer::new(NodeId::new("pod", 2).unwrap(), false),
        ];
        for key in 0..20 {
            let got = pick(&ps, Route::Key(key), &[], 0, &mut draws(&[]), &rr).unwrap();
            assert_eq!(got.peer().node.incarnation(), 2);
        }
    }

    /// easy-rpc's picker against tower's own `p2c::Balance`: the same random numbers and the
    /// same loads give the same choices, round after round.
    mod against_tower {
        use std::convert::Infallible;
        use std::future::{Ready, ready};
        use std::sync::Mutex;
        use std::sync::atomic::AtomicU64;
        use std::task::{Context, Poll};

        use tower::balance::p2c::Balance;
        use tower::discover::ServiceList;
        use tower::{Service, ServiceExt};

        use super::*;

        /// splitmix64: a small deterministic generator; two copies of it give the two
        /// balancers the same draws.
        #[derive(Clone, Debug)]
        struct SplitMix(u64);

        impl Rng for SplitMix {
            fn next_u64(&mut self) -> u64 {
                self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = self.0;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            }
        }

        /// One node behind tower's balancer: always ready; its load is easy-rpc's own measure
        /// of the same [`Peer`] (through tower's [`Load`]), so both balancers see the same
        /// numbers; a call records which node it went to.
        struct Backend {
            peer: Arc<Peer>,
            strategy: Strategy,
            now_ms: Arc<AtomicU64>,
            calls: Arc<Mutex<Vec<NodeId>>>,
        }

        impl Service<()> for Backend {
            type Response = ();
            type Error = Infallible;
            type Future = Ready<Result<(), Infallible>>;

            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }

            fn call(&mut self, (): ()) -> Self::Future {
                self.calls.lock().unwrap().push(self.peer.node.clone());
                ready(Ok(()))
            }
        }

        impl Load for Backend {
            type Metric = f64;

            fn load(&self) -> f64 {
                let peer = &self.peer;
                match self.strategy {
                    Strategy::P2c => peer.pending.load() as f64,
                    Strategy::P2cPeakEwma => {
                        let now = self.now_ms.load(Ordering::Relaxed);
                        peer.ewma.at(&peer.pending, now).load()
                    }
                    other => unreachable!("not a p2c strategy: {other:?}"),
                }
            }
        }

        /// `rounds` picks over `n` nodes whose loads change at random before every pick (few
        /// distinct values, so that ties are frequent); returns how many picks compared two
        /// equal loads.
        async fn same_choices(strategy: Strategy, n: usize, rounds: usize, seed: u64) -> usize {
            let peers: Vec<Arc<Peer>> = (0..n)
                .map(|i| Arc::new(Peer::new(NodeId::new(format!("n{i}"), 1).unwrap(), false)))
                .collect();
            let now_ms = Arc::new(AtomicU64::new(0));
            let calls = Arc::new(Mutex::new(Vec::new()));
            let backend = |i: usize| Backend {
                peer: peers[i].clone(),
                strategy,
                now_ms: now_ms.clone(),
                calls: calls.clone(),
            };
            let list = ServiceList::new((0..n).map(backend).collect::<Vec<_>>());
            let mut theirs = Balance::from_rng(list, SplitMix(seed));
            let mut ours = SplitMix(seed);
            let mut loads = SplitMix(!seed);
            let rr = AtomicUsize::new(0);
            // The order of tower's ready set, which its draws index: the nodes in the order
            // discovered; a called node is swap-removed and comes back ready at the end.
            let mut order: Vec<usize> = (0..n).collect();
            let mut ties = 0;
            for round in 0..rounds {
                let mut guards = Vec::new();
                for peer in &peers {
                    guards.extend((0..loads.next_range(0..3)).map(|_| peer.pending.start()));
                }
                let mut now = now_ms.load(Ordering::Relaxed);
                if strategy == Strategy::P2cPeakEwma {
                    now += loads.next_range(0..300);
                    now_ms.store(now, Ordering::Relaxed);
                    let peer = &peers[loads.next_range(0..n as u64) as usize];
                    let rtt = Duration::from_millis(1 + loads.next_range(0..4));
                    peer.ewma.observe(now, rtt);
                }
                let view: Vec<Arc<Peer>> = order.iter().map(|&i| peers[i].clone()).collect();
                // The pair both draw (floyd's two indexes), to count the ties among them.
                let mut probe = ours.clone();
                let (a, b) = (
                    probe.next_range(0..n as u64 - 1),
                    probe.next_range(0..n as u64),
                );
                let a = if a == b { n as u64 - 1 } else { a };
                let load = |at: u64| backend(order[at as usize]).load();
                ties += usize::from(load(a) == load(b));

                let route = Route::Balanced(strategy);
                let mine = pick(&view, route, &[], now, &mut ours, &rr).unwrap();
                let mine = mine.node.clone();
                theirs.ready().await.unwrap();
                theirs.call(()).await.unwrap();
                let tower_chose = calls.lock().unwrap().pop().unwrap();
                assert_eq!(
                    mine, tower_chose,
                    "{strategy:?}, {n} nodes, round {round}: easy-rpc and tower chose apart"
                );

                let at = order.iter().position(|&i| peers[i].node == mine).unwrap();
                let called = order.swap_remove(at);
                order.push(called);
                drop(guards);
            }
            ties
        }

        #[tokio::test]
        async fn p2c_chooses_as_towers_balance_does() {
            for n in [2, 3, 5, 8] {
                let ties = same_choices(Strategy::P2c, n, 2_000, 7 + n as u64).await;
                // The loads tie often, so the tie rule is checked too.
                assert!(ties > 100, "{n} nodes: only {ties} rounds with a tie");
            }
        }

        #[tokio::test]
        async fn peak_ewma_chooses_as_towers_balance_does() {
            for n in [2, 3, 5, 8] {
                same_choices(Strategy::P2cPeakEwma, n, 2_000, 11 + n as u64).await;
            }
        }
    }
}
