//! The measured service, `add(i64, i64) -> i64`, as an easy-rpc service and as a plain tarpc
//! one with the same codec (postcard over length-delimited frames), and the server processes
//! of both. The client processes are in `client.rs`; what is measured, in `timing.rs` and
//! `instr.rs`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use easy_rpc::Node;
use futures::StreamExt;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tarpc::server::{BaseChannel, Channel};

/// Counts allocations (the `allocs_per_call` a client reports); on both sides alike.
#[global_allocator]
pub(crate) static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// The service measured through easy-rpc.
#[easy_rpc::service]
pub trait Adder {
    /// Adds two numbers.
    async fn add(a: i64, b: i64) -> i64;
    /// This node's name.
    async fn whoami() -> String;
}

struct AdderImpl(String);

impl Adder for AdderImpl {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    async fn whoami(&self) -> String {
        self.0.clone()
    }
}

/// The same method through plain tarpc.
#[tarpc::service]
pub trait PlainAdder {
    /// Adds two numbers.
    async fn add(a: i64, b: i64) -> i64;
}

#[derive(Clone)]
struct PlainImpl;

impl PlainAdder for PlainImpl {
    async fn add(self, _: tarpc::context::Context, a: i64, b: i64) -> i64 {
        a + b
    }
}

type Items<I, O> = std::marker::PhantomData<(fn() -> I, fn(O))>;

/// postcard for plain tarpc, as easy-rpc uses.
pub(crate) struct Postcard<I, O>(Items<I, O>);
impl<I, O> Default for Postcard<I, O> {
    fn default() -> Self {
        Postcard(std::marker::PhantomData)
    }
}
impl<I: serde::de::DeserializeOwned, O> tokio_serde::Deserializer<I> for Postcard<I, O> {
    type Error = std::io::Error;
    fn deserialize(self: Pin<&mut Self>, src: &bytes::BytesMut) -> Result<I, Self::Error> {
        postcard::from_bytes(src).map_err(std::io::Error::other)
    }
}
impl<I, O: serde::Serialize> tokio_serde::Serializer<O> for Postcard<I, O> {
    type Error = std::io::Error;
    fn serialize(self: Pin<&mut Self>, item: &O) -> Result<bytes::Bytes, Self::Error> {
        postcard::to_stdvec(item)
            .map(Into::into)
            .map_err(std::io::Error::other)
    }
}

/// A single-threaded runtime: every process of the RPC benchmark runs on one.
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The gossip interval of every node when instructions are counted: long enough that no
/// gossip round falls inside a measurement, so that the counts are the calls' alone.
pub(crate) const QUIET_GOSSIP: Duration = Duration::from_secs(30);

/// The flag of a server or client process whose node's calls are unencrypted
/// ([`easy_rpc::NodeBuilder::unencrypted_calls`]): the fourth side of `bench rpc`.
pub(crate) const UNENCRYPTED: &str = "--unencrypted";

/// `BENCH_SPANS=1` in the environment: this process (an easy-rpc server or client, the only
/// ones that build a node) records the spans of its calls and requests, as a process that
/// exports traces does: a subscriber that wants `easy_rpc` at `debug` (where call and request
/// spans are), keeps them in its registry and writes nothing. Plain and sealed tarpc's
/// processes build no node and are not affected.
fn spans_if_asked() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if std::env::var("BENCH_SPANS").is_ok_and(|v| v == "1") {
        ONCE.call_once(|| {
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::util::SubscriberInitExt;
            let _ = tracing_subscriber::registry()
                .with(tracing_subscriber::EnvFilter::new("easy_rpc=debug"))
                .try_init();
        });
    }
}

/// A node of the RPC benchmark: loopback, this run's secret; `unencrypted`: its calls are
/// unencrypted after the handshake (the processes' [`UNENCRYPTED`] flag). With
/// `CLUSTER_TRACE_SAMPLE` in the environment (and `BENCH_SPANS=1`), that share of the calls
/// is traced.
pub(crate) fn node_builder(
    cluster: &str,
    name: &str,
    quiet: bool,
    unencrypted: bool,
) -> easy_rpc::NodeBuilder {
    spans_if_asked();
    let mut b = Node::builder()
        .cluster(cluster)
        .name(name)
        .listen("127.0.0.1:0")
        .secret(crate::secret::secret());
    if unencrypted {
        b = b.unencrypted_calls();
    }
    if let Ok(ratio) = std::env::var("CLUSTER_TRACE_SAMPLE") {
        let ratio: f64 = ratio
            .parse()
            .expect("CLUSTER_TRACE_SAMPLE: a share of calls, 0 to 1");
        b = b.trace_sample(ratio);
    }
    if quiet {
        b.gossip_interval(QUIET_GOSSIP)
    } else {
        b
    }
}

/// `bench rpc-server tarpc` or `bench rpc-server easy <cluster> <name> <role,role..> [seed]
/// [--quiet] [--unencrypted]`: prints its address (plain tarpc: the RPC address; easy-rpc:
/// the gossip address, to seed others with), serves on this thread until its stdin closes.
pub fn server(args: &[String]) {
    crate::procs::exit_on_stdin_close();
    let quiet = args.iter().any(|a| a == "--quiet");
    let unencrypted = args.iter().any(|a| a == UNENCRYPTED);
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    rt().block_on(async move {
        match args.first().copied() {
            Some("tarpc") => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                println!("{}", listener.local_addr().unwrap());
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    stream.set_nodelay(true).unwrap();
                    let framed = tokio_util::codec::Framed::new(
                        stream,
                        tokio_util::codec::LengthDelimitedCodec::new(),
                    );
                    let transport = tarpc::serde_transport::new(framed, Postcard::default());
                    tokio::spawn(
                        BaseChannel::with_defaults(transport)
                            .execute(PlainImpl.serve())
                            .for_each(|f| async move {
                                tokio::spawn(f);
                            }),
                    );
                }
            }
            Some("tarpc-sealed") => {
                // Plain tarpc over the stream a node's connection uses after its handshake:
                // every frame sealed (Noise, AES-GCM), so that the ratio against it is what
                // easy-rpc adds beyond the encryption.
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                println!("{}", listener.local_addr().unwrap());
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    stream.set_nodelay(true).unwrap();
                    tokio::spawn(async move {
                        let Ok(sealed) =
                            easy_rpc::__private::handshake_accept(stream, &sealed_key()).await
                        else {
                            return;
                        };
                        let framed = tokio_util::codec::Framed::new(
                            sealed,
                            tokio_util::codec::LengthDelimitedCodec::new(),
                        );
                        let transport = tarpc::serde_transport::new(framed, Postcard::default());
                        BaseChannel::with_defaults(transport)
                            .execute(PlainImpl.serve())
                            .for_each(|f| async move {
                                tokio::spawn(f);
                            })
                            .await;
                    });
                }
            }
            Some("easy") => {
                let (cluster, name, roles) = (args[1], args[2], args[3]);
                let mut b = node_builder(cluster, name, quiet, unencrypted)
                    .roles(roles.split(','))
                    .serve(AdderImpl(name.to_owned()).serve());
                if let Some(seed) = args.get(4) {
                    b = b.seeds([*seed]);
                }
                let node = b.start().await.unwrap();
                println!("{}", node.gossip_addr());
                std::future::pending::<()>().await;
            }
            _ => panic!("rpc-server easy|tarpc|tarpc-sealed"),
        }
    });
}

/// The pre-shared key of the sealed plain-tarpc baseline (`tarpc-sealed`): derived from this
/// run's secret as a node derives its RPC key.
pub(crate) fn sealed_key() -> [u8; 32] {
    let secret: cluster_helper::Secret = crate::secret::secret().parse().expect("the secret");
    *cluster_helper::ClusterKey::derive(
        secret.expose(),
        "bench-tarpc-sealed",
        easy_rpc::__private::RPC_KEY_PURPOSE,
    )
    .as_bytes()
}

/// One call of `add`, as a caller task of the benchmark makes it back to back.
pub(crate) trait Caller: Clone + Send + Sync + 'static {
    /// Calls `add(1, 2)` once and checks the answer.
    fn call(&self) -> impl Future<Output = ()> + Send + '_;
}

impl Caller for PlainAdderClient {
    async fn call(&self) {
        let r = self.add(tarpc::context::current(), 1, 2).await.unwrap();
        assert_eq!(r, 3);
    }
}

impl Caller for easy_rpc::Any {
    async fn call(&self) {
        let r = self.add(1, 2).await.unwrap();
        assert_eq!(r, 3);
    }
}

/// `all(role).add(1, 2)`, checked to answer from `nodes` nodes.
pub(crate) async fn call_all(all: &easy_rpc::All, nodes: usize) {
    let r = all.add(1, 2).await.unwrap();
    assert_eq!(r.len(), nodes);
}

/// A naïve role-aware wrapper over plain tarpc, what one writes without a framework: a `Vec`
/// of clients per role under a lock, cloned per call, a boxed future. Only its allocations
/// per call are reported.
#[derive(Clone)]
pub(crate) struct Naive {
    clients: std::sync::Arc<Mutex<std::collections::HashMap<String, Vec<PlainAdderClient>>>>,
}

impl Naive {
    pub(crate) fn new(client: PlainAdderClient) -> Self {
        Naive {
            clients: std::sync::Arc::new(Mutex::new([("adder".to_string(), vec![client])].into())),
        }
    }

    fn add(
        &self,
        role: &str,
        a: i64,
        b: i64,
    ) -> Pin<Box<dyn Future<Output = Result<i64, String>> + Send>> {
        let list = self.clients.lock().unwrap().get(role).cloned();
        Box::pin(async move {
            let list = list.ok_or_else(|| "no node".to_string())?;
            let c = &list[rand_index(list.len())];
            c.add(tarpc::context::current(), a, b)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

impl Caller for Naive {
    fn call(&self) -> impl Future<Output = ()> + Send + '_ {
        let f = self.add("adder", 1, 2);
        async move {
            assert_eq!(f.await.unwrap(), 3);
        }
    }
}

fn rand_index(n: usize) -> usize {
    (Instant::now().elapsed().subsec_nanos() as usize) % n
}

/// `bench codec`: encoding and decoding one request and one response of `add(i64, i64)` as
/// they travel (tarpc's `ClientMessage` / `Response` envelopes), in each candidate format.
pub fn codec() {
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    let req = tarpc::ClientMessage::Request(tarpc::Request {
        context: tarpc::context::current(),
        id: 12_345,
        message: AdderRequest::Add { a: 1_000, b: -7 },
    });
    let resp: tarpc::Response<AdderResponse> = tarpc::Response {
        request_id: 12_345,
        message: Ok(AdderResponse::Add(993)),
    };
    fn measure<Q: Serialize + DeserializeOwned, P: Serialize + DeserializeOwned>(
        name: &str,
        req: &Q,
        resp: &P,
        enc: impl Fn(&dyn erased::Ser) -> Vec<u8>,
        dec_q: impl Fn(&[u8]) -> Q,
        dec_p: impl Fn(&[u8]) -> P,
    ) {
        let iters = 200_000;
        let q = enc(&erased::wrap(req));
        let p = enc(&erased::wrap(resp));
        let start = Instant::now();
        for _ in 0..iters {
            let q = enc(&erased::wrap(std::hint::black_box(req)));
            std::hint::black_box(dec_q(&q));
            let p = enc(&erased::wrap(std::hint::black_box(resp)));
            std::hint::black_box(dec_p(&p));
        }
        let ns = start.elapsed().as_nanos() as f64 / iters as f64;
        println!("| {name} | {} + {} | {ns:.0} ns |", q.len(), p.len());
    }
    println!("| format | bytes (request + response) | encode + decode both |\n| --- | --- | --- |");
    measure(
        "postcard (chosen)",
        &req,
        &resp,
        |v| v.postcard(),
        |b| postcard::from_bytes(b).unwrap(),
        |b| postcard::from_bytes(b).unwrap(),
    );
    measure(
        "MessagePack (rmp-serde, compact)",
        &req,
        &resp,
        |v| v.msgpack(),
        |b| rmp_serde::from_slice(b).unwrap(),
        |b| rmp_serde::from_slice(b).unwrap(),
    );
    measure(
        "JSON (serde_json)",
        &req,
        &resp,
        |v| v.json(),
        |b| serde_json::from_slice(b).unwrap(),
        |b| serde_json::from_slice(b).unwrap(),
    );
}

/// Calls each format's serializer on a borrowed value of any serializable type.
mod erased {
    use serde::Serialize;

    pub trait Ser {
        fn postcard(&self) -> Vec<u8>;
        fn msgpack(&self) -> Vec<u8>;
        fn json(&self) -> Vec<u8>;
    }

    pub struct Wrap<'a, T>(&'a T);

    pub fn wrap<T: Serialize>(v: &T) -> Wrap<'_, T> {
        Wrap(v)
    }

    impl<T: Serialize> Ser for Wrap<'_, T> {
        fn postcard(&self) -> Vec<u8> {
            postcard::to_stdvec(self.0).unwrap()
        }
        fn msgpack(&self) -> Vec<u8> {
            rmp_serde::to_vec(self.0).unwrap()
        }
        fn json(&self) -> Vec<u8> {
            serde_json::to_vec(self.0).unwrap()
        }
    }
}
