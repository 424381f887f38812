//! Entry points for the fuzz targets in `fuzz/` at the repository root (feature `fuzzing`):
//! thin wrappers that hand fuzzed bytes to the decoders a peer's packet or an operator's
//! setting reaches. Not part of the API: hidden, and only built with the feature.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chitchat::{
    Chitchat, ChitchatConfig, ChitchatEnvelope, ChitchatId, ChitchatMessage, FailureDetectorConfig,
    ProtocolVersion,
};

use crate::address::Address;
use crate::error::Error;
use crate::id::{NodeId, Role, ServiceName, check_node_name};
use crate::keyring::Keyring;
use crate::local::LocalState;
use crate::member::{Member, NodeStatus};
use crate::secret::Secret;
use crate::seed::{Seed, parse_seed_list};
use crate::settings::Settings;
use crate::transport::{
    Counters, Freshness, Origin, open_packet, receive_packet, seal_packet, unix_ms,
};

/// The cluster name of the fixed keyring.
pub const CLUSTER: &str = "fuzz";
/// The secret of the fixed keyring.
pub const SECRET: [u8; 32] = [0x5a; 32];
/// How far a packet's clock may be from the receiver's (a node's default).
pub const MAX_AGE: Duration = Duration::from_secs(10);

/// What the counters of a [`Gossip`] receiver say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Packets accepted and decoded.
    pub received: u64,
    /// Packets refused: not authentic, or unreadable.
    pub rejected: u64,
    /// Authentic packets refused as stale.
    pub stale: u64,
    /// Authentic packets refused as replays.
    pub replayed: u64,
}

/// One node's gossip receiving side (the keyring, the freshness checks and the counters of
/// its transport) with a fixed keyring, without a socket.
#[derive(Debug)]
pub struct Gossip {
    keyring: Arc<Keyring>,
    freshness: Freshness,
    counters: Arc<Counters>,
}

impl Gossip {
    /// A receiver with the fixed keyring that tracks at most `max_senders` senders.
    pub fn new(max_senders: usize) -> Gossip {
        let counters = Arc::new(Counters::default());
        Gossip {
            keyring: Arc::new(Keyring::new(CLUSTER, vec![Secret::from_bytes(SECRET)])),
            freshness: Freshness::new(counters.clone(), MAX_AGE, max_senders.max(1)),
            counters,
        }
    }

    /// A packet as the transport seals it with the fixed key: from `sender`, stamped
    /// `skew_ms` from this machine's clock, with packet counter `counter`.
    pub fn seal(&self, sender: u64, skew_ms: i64, counter: u64, plaintext: &[u8]) -> Vec<u8> {
        let origin = Origin {
            sender,
            sent_ms: unix_ms().saturating_add_signed(skew_ms),
            counter,
        };
        seal_packet(&self.keyring, origin, plaintext).expect("sealing with a valid key")
    }

    /// Whether `packet` opens with the fixed keyring (before the freshness checks).
    pub fn opens(&self, packet: &[u8]) -> bool {
        open_packet(&self.keyring, packet).is_some()
    }

    /// What the transport does with a datagram: the message if it is authentic, fresh and
    /// readable (dropped and counted otherwise).
    pub fn receive(&mut self, packet: &[u8]) -> Option<ChitchatEnvelope> {
        let from = SocketAddr::from(([192, 0, 2, 1], 7946));
        receive_packet(
            &self.keyring,
            &mut self.freshness,
            &self.counters,
            packet,
            from,
        )
    }

    /// The counters so far.
    pub fn counts(&self) -> Counts {
        let c = &self.counters;
        Counts {
            received: c.packets_received.load(Ordering::Relaxed),
            rejected: c.packets_rejected.load(Ordering::Relaxed),
            stale: c.packets_stale.load(Ordering::Relaxed),
            replayed: c.packets_replayed.load(Ordering::Relaxed),
        }
    }
}

/// A chitchat state as a node runs it (this node's gossip settings), with no peers yet.
pub fn chitchat() -> Chitchat {
    node("fuzz-0", 7946, Vec::new())
}

/// A chitchat state named `name`, on port `port`, holding `kvs`.
fn node(name: &str, port: u16, kvs: Vec<(String, String)>) -> Chitchat {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let interval = Duration::from_millis(500);
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new(name, 1, addr),
        cluster_id: CLUSTER.to_owned(),
        gossip_interval: interval,
        listen_addr: addr,
        seed_nodes: Vec::new(),
        failure_detector_config: FailureDetectorConfig {
            phi_threshold: 8.0,
            sampling_window_size: 200,
            max_interval: Duration::from_secs(10),
            initial_interval: interval,
            dead_node_grace_period: Duration::from_secs(60),
            suspicion: Duration::ZERO,
        },
        marked_for_deletion_grace_period: Duration::from_secs(3600),
        catchup_callback: None,
        extra_liveness_predicate: None,
        departing_predicate: None,
        protocol_version: ProtocolVersion::V1,
        gossip_fanout: None,
    };
    let (_seeds_tx, seeds) = tokio::sync::watch::channel(HashSet::new());
    Chitchat::with_chitchat_id_and_seeds(config, seeds, kvs)
}

/// Messages of one gossip round (syn, syn-ack, ack) between a node with roles, services and
/// an RPC address and [`chitchat`]'s, and a bad-cluster answer, as their plaintexts (for the
/// seed corpus).
pub fn sample_messages() -> Vec<Vec<u8>> {
    let local = LocalState {
        roles: ["billing", "audit", "db/primary"]
            .into_iter()
            .map(|r| Role::new(r).expect("a role"))
            .collect(),
        services: ["Billing", "Audit"]
            .into_iter()
            .map(|s| ServiceName::new(s).expect("a service name"))
            .collect(),
        status: NodeStatus::Serving,
    };
    let rpc = SocketAddr::from(([127, 0, 0, 1], 7000));
    let mut peer = node("peer-1", 7947, local.initial_kvs(Some(rpc)));
    let mut ours = chitchat();
    let seal = |message: ChitchatMessage| {
        let envelope = ChitchatEnvelope {
            version: ProtocolVersion::V1,
            message,
        };
        (envelope.serialize_to_vec(), envelope.message)
    };
    let (syn, message) = seal(chitchat::__fuzz::syn(&peer));
    let reply = chitchat::__fuzz::process_message(&mut ours, message).expect("a syn-ack");
    let (syn_ack, message) = seal(reply);
    let reply = chitchat::__fuzz::process_message(&mut peer, message).expect("an ack");
    let (ack, _) = seal(reply);
    let (bad_cluster, _) = seal(ChitchatMessage::BadCluster);
    vec![syn, syn_ack, ack, bad_cluster]
}

/// Processes a received message in `chitchat` as the node's gossip loop does, then reads
/// every node the state now holds into a member as the registry does; returns how many
/// members were read.
pub fn process(chitchat: &mut Chitchat, envelope: ChitchatEnvelope) -> usize {
    let _reply = chitchat::__fuzz::process_message(chitchat, envelope.message);
    chitchat.update_nodes_liveness();
    let mut read = 0;
    for (cid, state) in chitchat.node_states() {
        if check_node_name(&cid.node_id).is_err() {
            continue;
        }
        let id = NodeId::from_parts(cid.node_id.clone(), cid.generation_id);
        if let Some(member) =
            Member::from_gossip(id, cid.gossip_advertise_addr, state.key_values(), None)
        {
            // Read again with itself as the previous state, as on the next refresh.
            let again = Member::from_gossip(
                member.id.clone(),
                cid.gossip_advertise_addr,
                state.key_values(),
                Some(&member),
            );
            assert!(again.is_some(), "a member read once reads again");
            read += 1;
        }
    }
    read
}

/// [`Secret::parse`]; a secret that parses shows the same secret in base64 and in hex.
pub fn parse_secret(text: &str) -> Result<Secret, Error> {
    let secret = Secret::parse(text)?;
    assert_eq!(
        Secret::parse(&secret.to_base64()).ok().as_ref(),
        Some(&secret)
    );
    assert_eq!(Secret::parse(&secret.to_hex()).ok().as_ref(), Some(&secret));
    Ok(secret)
}

/// [`parse_seed_list`]; every seed it gives parses back from its display.
pub fn parse_seeds(text: &str) -> Result<Vec<Seed>, Error> {
    let seeds = parse_seed_list(text)?;
    for seed in &seeds {
        let shown = seed.to_string();
        let back: Seed = shown
            .parse()
            .unwrap_or_else(|e| panic!("{seed:?} shows as {shown:?}, which does not parse: {e}"));
        assert_eq!(&back, seed, "{shown:?}");
    }
    Ok(seeds)
}

/// An address setting (`bare_ip_port`: a bare IP is taken with that port); an address that
/// parses parses back from its display.
pub fn parse_address(text: &str, bare_ip_port: Option<u16>) -> Result<Address, Error> {
    let addr = Address::parse("address", text, bare_ip_port)?;
    let shown = addr.to_string();
    let back = Address::parse("address", &shown, None)
        .unwrap_or_else(|e| panic!("{addr:?} shows as {shown:?}, which does not parse: {e}"));
    assert_eq!(back, addr, "{shown:?}");
    Ok(addr)
}

/// The `CLUSTER_*` environment reader over the variables `get` gives.
pub fn settings_from_env(get: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
    let settings: Settings = crate::env::settings_from_env(get)?;
    drop(settings);
    Ok(())
}
