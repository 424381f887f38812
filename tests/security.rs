//! What an attacker on the network sees of and can do to RPC connections, with real nodes on
//! loopback and a TCP relay the test owns between them: calls are sealed (a capture holds no
//! argument, reply or cluster name), an altered or injected byte ends the connection with an
//! error and never a wrong reply, a stranger gets the same bytes whatever it got wrong, and a
//! server accepts every key of its ring.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use easy_rpc::cluster_helper::{ClusterKey, Secret};
use easy_rpc::{ClientOptions, Node, RejectReason, RpcError};
use easy_rpc_tests::cluster::{OTHER_SECRET, TEST_SECRET, init_logs, unique_cluster, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A service whose arguments and replies are easy to look for in a capture.
#[easy_rpc::service]
pub trait Vault {
    /// Answers `text` in upper case.
    async fn shout(text: String) -> String;
}

struct VaultImpl;

impl Vault for VaultImpl {
    async fn shout(&self, text: String) -> String {
        text.to_uppercase()
    }
}

/// 64 bytes that appear nowhere by chance; the reply is its upper case.
const CANARY: &str = "canary-argument-7f3a9c-do-not-leak-qwertyuiopasdfghjklzxcvbnm-01";

/// Something the relay does to the next chunk of one direction (once).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Tamper {
    None,
    /// Flip a bit of the last byte of the next server -> client chunk (inside a record).
    FlipToClient,
    /// Insert a forged record before the next client -> server chunk.
    InjectToServer,
}

/// The bytes of one relayed connection, each direction.
#[derive(Default)]
struct Capture {
    to_server: Mutex<Vec<u8>>,
    to_client: Mutex<Vec<u8>>,
}

/// A TCP relay on loopback that records what crosses it and may tamper with it.
struct Relay {
    addr: SocketAddr,
    listener: Mutex<Option<TcpListener>>,
    conns: Arc<Mutex<Vec<Arc<Capture>>>>,
    tamper: Arc<Mutex<Tamper>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Relay {
    async fn bind() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Relay {
            addr: listener.local_addr().unwrap(),
            listener: Mutex::new(Some(listener)),
            conns: Arc::default(),
            tamper: Arc::new(Mutex::new(Tamper::None)),
            task: Mutex::new(None),
        }
    }

    /// Starts relaying every connection to `target`.
    fn start(&self, target: SocketAddr) {
        let listener = self.listener.lock().unwrap().take().unwrap();
        let conns = self.conns.clone();
        let tamper = self.tamper.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let capture = Arc::new(Capture::default());
                conns.lock().unwrap().push(capture.clone());
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, capture.clone(), tamper.clone(), true));
                tokio::spawn(pump(sr, cw, capture, tamper.clone(), false));
            }
        });
        *self.task.lock().unwrap() = Some(task);
    }

    fn arm(&self, t: Tamper) {
        *self.tamper.lock().unwrap() = t;
    }

    fn captures(&self) -> Vec<Arc<Capture>> {
        self.conns.lock().unwrap().clone()
    }

    /// Everything that crossed, both directions, all connections.
    fn all_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for c in self.captures() {
            all.extend_from_slice(&c.to_server.lock().unwrap());
            all.extend_from_slice(&c.to_client.lock().unwrap());
        }
        all
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    capture: Arc<Capture>,
    tamper: Arc<Mutex<Tamper>>,
    to_server: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = buf[..n].to_vec();
        {
            let mut t = tamper.lock().unwrap();
            match (*t, to_server) {
                (Tamper::FlipToClient, false) => {
                    *chunk.last_mut().unwrap() ^= 0x01;
                    *t = Tamper::None;
                }
                (Tamper::InjectToServer, true) => {
                    let mut forged = vec![0u8, 40];
                    forged.extend_from_slice(&[0x5a; 40]);
                    forged.extend_from_slice(&chunk);
                    chunk = forged;
                    *t = Tamper::None;
                }
                _ => {}
            }
        }
        if to_server {
            capture.to_server.lock().unwrap().extend_from_slice(&chunk);
        } else {
            capture.to_client.lock().unwrap().extend_from_slice(&chunk);
        }
        if to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A node of cluster `c` with secret `TEST_SECRET`; `serving` ones serve Vault with role
/// "vault" and advertise `rpc_via` as their RPC address.
async fn node(c: &str, name: &str, seed: Option<&Node>, serving: Option<&Relay>) -> Node {
    let mut b = Node::builder()
        .cluster(c)
        .name(name)
        .listen("127.0.0.1:0")
        .secret(TEST_SECRET)
        .gossip_interval(Duration::from_millis(100))
        .leave_grace(Duration::from_millis(1500))
        .default_node(false)
        .client_options(ClientOptions::default().timeout(Duration::from_secs(5)));
    if let Some(relay) = serving {
        b = b
            .from_vars([("CLUSTER_RPC_ADVERTISE", relay.addr.to_string())])
            .unwrap()
            .roles(["vault"])
            .serve(VaultImpl.serve());
    }
    if let Some(seed) = seed {
        b = b.seeds([seed.gossip_addr().to_string()]);
    }
    b.start().await.unwrap()
}

/// A server behind a relay, and `clients` nodes that see it.
async fn setup(test: &str, clients: usize) -> (String, Relay, Node, Vec<Node>) {
    init_logs();
    let c = unique_cluster(test);
    let relay = Relay::bind().await;
    let server = node(&c, "server", None, Some(&relay)).await;
    // RPC listens on the gossip address's port (TCP).
    relay.start(server.gossip_addr());
    let mut cs = Vec::new();
    for i in 0..clients {
        let client = node(&c, &format!("client-{i}"), Some(&server), None).await;
        wait_until(Duration::from_secs(5), "the client sees the vault", || {
            client.nodes_with_role("vault").len() == 1
        })
        .await;
        cs.push(client);
    }
    (c, relay, server, cs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_of_a_call_holds_no_argument_reply_or_cluster_name() {
    let (c, relay, server, clients) = setup("sec-capture", 1).await;
    let reply = clients[0]
        .any("vault")
        .shout(CANARY.to_owned())
        .await
        .unwrap();
    assert_eq!(reply, CANARY.to_uppercase());
    // A large argument too (several records).
    let big = CANARY.repeat(3000);
    let reply = clients[0].any("vault").shout(big.clone()).await.unwrap();
    assert_eq!(reply, big.to_uppercase());

    let all = relay.all_bytes();
    assert!(
        all.len() > 2 * big.len(),
        "the relay saw the calls ({} bytes)",
        all.len()
    );
    assert!(contains(&all, b"ERPC"), "the clear preamble is captured");
    assert!(!contains(&all, CANARY.as_bytes()), "the argument leaked");
    assert!(
        !contains(&all, CANARY.to_uppercase().as_bytes()),
        "the reply leaked"
    );
    assert!(!contains(&all, c.as_bytes()), "the cluster name leaked");
    assert!(!contains(&all, b"Vault"), "the service name leaked");
    for n in clients.into_iter().chain([server]) {
        n.shutdown().await;
    }
}

/// `result` is the end of a call whose connection was tampered with.
fn assert_broken(result: Result<String, RpcError>) {
    match result {
        Err(RpcError::NodeDown { .. } | RpcError::Unreachable { .. }) => {}
        other => panic!("a tampered connection must end the call with NodeDown: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_or_injected_byte_ends_the_connection_never_a_wrong_reply() {
    let (c, relay, server, clients) = setup("sec-tamper", 3).await;
    for client in &clients {
        assert_eq!(
            client.any("vault").shout("warm".into()).await.unwrap(),
            "WARM"
        );
    }
    let accepted = server.accepted_connections();

    // A reply altered on its way to the client.
    relay.arm(Tamper::FlipToClient);
    assert_broken(clients[0].any("vault").shout("one".into()).await);
    // A forged record injected on the way to the server.
    relay.arm(Tamper::InjectToServer);
    assert_broken(clients[1].any("vault").shout("two".into()).await);
    wait_until(
        Duration::from_secs(5),
        "the server closed the tampered connections",
        || server.open_connections() <= accepted - 2,
    )
    .await;

    // The server keeps serving: another client, on its open connection and on a new one.
    assert_eq!(
        clients[2].any("vault").shout("three".into()).await.unwrap(),
        "THREE"
    );
    let late = node(&c, "late", Some(&server), None).await;
    wait_until(Duration::from_secs(5), "late sees the vault", || {
        late.nodes_with_role("vault").len() == 1
    })
    .await;
    assert_eq!(
        late.any("vault").shout("four".into()).await.unwrap(),
        "FOUR"
    );
    for n in clients.into_iter().chain([late, server]) {
        n.shutdown().await;
    }
}

/// The RPC key of `secret` (base64, or any other text taken as raw bytes) in `cluster`.
fn key(secret: &str, cluster: &str) -> ClusterKey {
    let bytes = match secret.parse::<Secret>() {
        Ok(s) => s.expose().to_vec(),
        Err(_) => secret.as_bytes().to_vec(),
    };
    ClusterKey::derive(&bytes, cluster, easy_rpc::__private::RPC_KEY_PURPOSE)
}

/// A raw handshake through the relay; returns its outcome and what the server sent.
async fn handshake_via(
    relay: &Relay,
    key: &ClusterKey,
    service: &str,
) -> (Result<(), Option<RejectReason>>, Vec<u8>) {
    let before = relay.captures().len();
    let mut s = TcpStream::connect(relay.addr).await.unwrap();
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        easy_rpc::__private::handshake_client(&mut s, key.as_bytes(), service),
    )
    .await
    .expect("the handshake ends");
    drop(s);
    let captures = relay.captures();
    assert_eq!(captures.len(), before + 1, "one relayed connection");
    let sent = captures[before].to_client.lock().unwrap().clone();
    (outcome, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_learn_nothing_and_peers_learn_why() {
    let (c, relay, server, clients) = setup("sec-stranger", 0).await;
    let rejected = server.rejected_connections();

    let (wrong_secret, secret_bytes) = handshake_via(&relay, &key(OTHER_SECRET, &c), "Vault").await;
    let (wrong_cluster, cluster_bytes) =
        handshake_via(&relay, &key(TEST_SECRET, &format!("{c}-x")), "Vault").await;
    assert_eq!(wrong_secret, Err(Some(RejectReason::Unauthenticated)));
    assert_eq!(wrong_cluster, Err(Some(RejectReason::Unauthenticated)));
    assert_eq!(secret_bytes, cluster_bytes, "the same bytes for both");
    let mut preamble = b"ERPC".to_vec();
    preamble.extend_from_slice(&easy_rpc::PROTOCOL_VERSION.to_be_bytes());
    assert_eq!(secret_bytes, preamble, "only the preamble, then the close");
    wait_until(Duration::from_secs(5), "both strangers counted", || {
        server.rejected_connections() >= rejected + 2
    })
    .await;

    // Authenticated peers are told why.
    let right = key(TEST_SECRET, &c);
    let (ok, ok_bytes) = handshake_via(&relay, &right, "Vault").await;
    assert_eq!(ok, Ok(()));
    assert!(ok_bytes.len() > preamble.len());
    let (unknown, _) = handshake_via(&relay, &right, "Nope").await;
    assert_eq!(
        unknown,
        Err(Some(RejectReason::UnknownService {
            service: "Nope".into()
        }))
    );
    let leaving = {
        let server = server.clone();
        tokio::spawn(async move { server.shutdown().await })
    };
    // The node refuses new connections from the start of its leave.
    let mut outcome = Ok(());
    for _ in 0..100 {
        outcome = handshake_via(&relay, &right, "Vault").await.0;
        if outcome.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(outcome, Err(Some(RejectReason::Leaving)));
    leaving.await.unwrap();
    assert!(clients.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_accepts_every_key_of_its_ring() {
    let (c, _relay, server, clients) = setup("sec-ring", 3).await;
    let (k1, k2, k3) = (key("k1", &c), key("k2", &c), key("k3", &c));
    server.set_rpc_keys(&[k2.clone(), k1.clone()]);
    clients[0].set_rpc_keys(&[k1]);
    clients[1].set_rpc_keys(&[k2]);
    clients[2].set_rpc_keys(&[k3]);
    for client in &clients[..2] {
        assert_eq!(
            client.any("vault").shout("ring".into()).await.unwrap(),
            "RING",
            "{}",
            client.id()
        );
    }
    match clients[2].any("vault").shout("ring".into()).await {
        Err(RpcError::Rejected {
            reason: RejectReason::Unauthenticated,
            ..
        }) => {}
        other => panic!("a key outside the ring must be refused: {other:?}"),
    }
    for n in clients.into_iter().chain([server]) {
        n.shutdown().await;
    }
}
