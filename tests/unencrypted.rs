//! Calls without the record layer's encryption, the explicit opt-out
//! (`NodeBuilder::unencrypted_calls`, `CLUSTER_RPC_ENCRYPTION=off`), with real nodes on
//! loopback: two nodes that both opted out make calls, whose arguments and replies a capture
//! of the stream shows in clear (and a capture of the default mode does not); nodes set
//! differently refuse each other's connections with a clear error while the server keeps
//! serving the others; gossip between them still works (it is sealed in both modes); a bad
//! value of the variable is refused, naming it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use easy_rpc::{ClientOptions, Node, NodeBuilder, RejectReason, RpcError};
use easy_rpc_tests::cluster::{TEST_SECRET, init_logs, unique_cluster, wait_until};
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
const CANARY: &str = "canary-argument-5e1b7d-in-clear-only-when-asked-zxcvbnmasdfghj-02";

/// How a node's calls are set.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// The default.
    Sealed,
    /// `unencrypted_calls()` in code.
    OffInCode,
    /// `CLUSTER_RPC_ENCRYPTION=off`.
    OffInEnv,
}

/// A TCP relay on loopback that records the bytes of every connection it relays (both
/// directions, all connections, in one buffer).
struct Relay {
    addr: SocketAddr,
    listener: Option<TcpListener>,
    seen: Arc<Mutex<Vec<u8>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    /// Binds the relay's port (so that a node can advertise it before it relays).
    async fn bind() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Relay {
            addr: listener.local_addr().unwrap(),
            listener: Some(listener),
            seen: Arc::default(),
            task: None,
        }
    }

    /// Relays every connection to `target`.
    fn start(&mut self, target: SocketAddr) {
        let listener = self.listener.take().expect("started once");
        let record = self.seen.clone();
        self.task = Some(tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, record.clone()));
                tokio::spawn(pump(sr, cw, record.clone()));
            }
        }));
    }

    fn bytes(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    seen: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        seen.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A node of cluster `c`, its calls set as `mode`.
fn builder(c: &str, name: &str, mode: Mode) -> NodeBuilder {
    let b = Node::builder()
        .cluster(c)
        .name(name)
        .listen("127.0.0.1:0")
        .secret(TEST_SECRET)
        .gossip_interval(Duration::from_millis(100))
        .leave_grace(Duration::from_millis(500))
        .default_node(false)
        .client_options(ClientOptions::default().timeout(Duration::from_secs(5)));
    match mode {
        Mode::Sealed => b,
        Mode::OffInCode => b.unencrypted_calls(),
        Mode::OffInEnv => b
            .from_vars([("CLUSTER_RPC_ENCRYPTION", "off")])
            .expect("off is a valid value"),
    }
}

/// A server of Vault (role "vault") set as `mode`, advertising `rpc_via` as its RPC address
/// if given.
async fn server(c: &str, name: &str, mode: Mode, rpc_via: Option<SocketAddr>) -> Node {
    let mut b = builder(c, name, mode);
    if let Some(via) = rpc_via {
        b = b
            .from_vars([("CLUSTER_RPC_ADVERTISE", via.to_string())])
            .unwrap();
    }
    b.roles(["vault"])
        .serve(VaultImpl.serve())
        .start()
        .await
        .unwrap()
}

/// A calling node set as `mode`, seeded with `seed`, once it sees the vault.
async fn client(c: &str, name: &str, mode: Mode, seed: &Node) -> Node {
    let node = builder(c, name, mode)
        .seeds([seed.gossip_addr().to_string()])
        .start()
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(10),
        &format!("{name} sees the vault (gossip works whatever the call mode)"),
        || node.nodes_with_role("vault").len() == 1,
    )
    .await;
    node
}

/// A server set as `server_mode` behind a relay and a client set as `client_mode`: the
/// client calls it with the canary, small and large (several frames); returns the replies'
/// check and everything the relay saw.
async fn capture_of_calls(test: &str, server_mode: Mode, client_mode: Mode) -> (String, Vec<u8>) {
    init_logs();
    let c = unique_cluster(test);
    let mut relay = Relay::bind().await;
    let srv = server(&c, "server", server_mode, Some(relay.addr)).await;
    assert_eq!(srv.encrypts_calls(), server_mode == Mode::Sealed);
    // RPC listens on the gossip address's port (TCP).
    relay.start(srv.gossip_addr());
    let cli = client(&c, "client", client_mode, &srv).await;
    assert_eq!(cli.encrypts_calls(), client_mode == Mode::Sealed);
    let reply = cli.any("vault").shout(CANARY.to_owned()).await.unwrap();
    assert_eq!(reply, CANARY.to_uppercase());
    let big = CANARY.repeat(3000);
    let reply = cli.any("vault").shout(big.clone()).await.unwrap();
    assert_eq!(reply, big.to_uppercase());
    let seen = relay.bytes();
    assert!(
        seen.len() > 2 * big.len(),
        "the relay saw the calls ({} bytes)",
        seen.len()
    );
    cli.shutdown().await;
    srv.shutdown().await;
    (c, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_both_opted_out_call_in_clear_and_sealed_ones_do_not() {
    // Opted out in code on one side, by the variable on the other.
    let (c, clear) = capture_of_calls("plain-capture", Mode::OffInCode, Mode::OffInEnv).await;
    assert!(contains(&clear, b"ERPC"), "the handshake ran");
    assert!(
        contains(&clear, CANARY.as_bytes()),
        "the argument crosses in clear"
    );
    assert!(
        contains(&clear, CANARY.to_uppercase().as_bytes()),
        "the reply crosses in clear"
    );
    // The handshake is the same as ever: it still tells nothing of the cluster.
    assert!(!contains(&clear, c.as_bytes()), "the cluster name leaked");

    // The default mode, the same calls: nothing in clear.
    let (_, sealed) = capture_of_calls("sealed-capture", Mode::Sealed, Mode::Sealed).await;
    assert!(contains(&sealed, b"ERPC"), "the handshake ran");
    assert!(!contains(&sealed, CANARY.as_bytes()), "the argument leaked");
    assert!(
        !contains(&sealed, CANARY.to_uppercase().as_bytes()),
        "the reply leaked"
    );
}

/// `client_mode` against a server set as `server_mode` (they differ): the call is refused at
/// the handshake with `EncryptionDiffers`, and the server keeps serving a client set as it is.
async fn disagreement(test: &str, server_mode: Mode, client_mode: Mode) {
    init_logs();
    let c = unique_cluster(test);
    let srv = server(&c, "server", server_mode, None).await;
    let odd = client(&c, "odd", client_mode, &srv).await;
    let same = client(&c, "same", server_mode, &srv).await;
    let rejected = srv.rejected_connections();

    let refused = odd.any("vault").shout("hello".into()).await;
    let server_encrypts = server_mode == Mode::Sealed;
    match &refused {
        Err(RpcError::Rejected {
            reason: RejectReason::EncryptionDiffers { server_encrypts: s },
            ..
        }) if *s == server_encrypts => {}
        other => panic!("{client_mode:?} against {server_mode:?} must be refused: {other:?}"),
    }
    let message = refused.unwrap_err().to_string();
    assert!(
        message.contains("encryption") && message.contains("CLUSTER_RPC_ENCRYPTION"),
        "a clear error: {message}"
    );
    wait_until(
        Duration::from_secs(5),
        "the server counted the refusal",
        || srv.rejected_connections() > rejected,
    )
    .await;

    // The server keeps serving the others, on new connections.
    assert_eq!(
        same.any("vault").shout("still".into()).await.unwrap(),
        "STILL"
    );
    assert_eq!(srv.open_connections(), 1, "only the agreeing client's");
    for n in [odd, same, srv] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opted_out_client_is_refused_by_a_sealed_server_which_serves_on() {
    disagreement("plain-client", Mode::Sealed, Mode::OffInCode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_client_is_refused_by_an_opted_out_server_which_serves_on() {
    disagreement("plain-server", Mode::OffInEnv, Mode::Sealed).await;
}

#[test]
fn a_bad_encryption_value_names_the_variable() {
    for bad in ["maybe", "false", "0", "disabled"] {
        let e = Node::builder()
            .from_vars([("CLUSTER_RPC_ENCRYPTION", bad)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("CLUSTER_RPC_ENCRYPTION"), "{bad}: {e}");
        assert!(e.contains(bad), "{bad}: {e}");
        assert!(e.contains("on") && e.contains("off"), "{bad}: {e}");
    }
    for good in ["on", "off", "OFF", " on ", ""] {
        assert!(
            Node::builder()
                .from_vars([("CLUSTER_RPC_ENCRYPTION", good)])
                .is_ok(),
            "{good:?}"
        );
    }
}
