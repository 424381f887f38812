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
/// Ties go to the first candidate drawn (p2c), or the greater node id (rendezvous).
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
    };
    let n = candidates().count();
    let nth = |i: usize| candidates().nth(i).expect("index below the count");
    match n {
        0 => return None,
        1 => return Some(nth(0)),
        _ => {}
    }
    let mut two = || {
        let a = rng.next_range(0..n as u64) as usize;
        let mut b = rng.next_range(0..n as u64 - 1) as usize;
        if b >= a {
            b += 1;
        }
        (nth(a), nth(b))
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
/// lower; `a` on a tie.
fn less_loaded<'a, T, M: PartialOrd>(a: &'a T, b: &'a T, load: impl Fn(&'a T) -> M) -> &'a T {
    if load(b) < load(a) { b } else { a }
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
        // First draw 0 % 3 = a; second 0 % 2 = 0, shifted past a = b: b has fewer calls.
        assert_eq!(
            name(pick(&ps, P2C, &[], 0, &mut draws(&[0, 0]), &rr)),
            Some("b")
        );
        // Draws c (2) and a (0): c has none.
        assert_eq!(
            name(pick(&ps, P2C, &[], 0, &mut draws(&[2, 0]), &rr)),
            Some("c")
        );
        // The two draws are always different nodes: 1 % 3 = b, then 1 % 2 = 1, past b = c.
        assert_eq!(
            name(pick(&ps, P2C, &[], 0, &mut draws(&[1, 1]), &rr)),
            Some("c")
        );
    }

    #[test]
    fn p2c_tie_goes_to_the_first_draw() {
        let rr = AtomicUsize::new(0);
        let ps = peers(&["a", "b", "c"]);
        assert_eq!(
            name(pick(&ps, P2C, &[], 0, &mut draws(&[2, 0]), &rr)),
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
        // b is down: the candidates are a and c. Draws 1 % 2 = c, 0 % 1 = a.
        let _a = busy(&ps[0], 1);
        assert_eq!(
            name(pick(&ps, P2C, &[], 10, &mut draws(&[1, 0]), &rr)),
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
        // Candidates a and b (c tried): 1 % 2 = b, then a; b has fewer calls.
        assert_eq!(
            name(pick(&ps, P2C, &tried, 10, &mut draws(&[1, 0]), &rr)),
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
            name(pick(&ps, route, &[], 0, &mut draws(&[1, 0]), &rr)),
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
        // Whichever is drawn first, the fast one wins.
        for d in [[0, 0], [1, 0]] {
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
            name(pick(&ps, route, &[], 10_000, &mut draws(&[0, 0]), &rr)),
            Some("slow")
        );
        assert_eq!(
            name(pick(&ps, route, &[], 10_000, &mut draws(&[1, 0]), &rr)),
            Some("fast")
        );
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
}
