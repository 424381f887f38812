//! RPC figures: easy-rpc against plain tarpc, both measured in the same run, same placement,
//! same codec (postcard), server and client in separate processes on loopback.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use easy_rpc::Node;
use futures::StreamExt;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tarpc::server::{BaseChannel, Channel};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

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
struct Postcard<I, O>(Items<I, O>);
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

/// A single-threaded runtime, as the anchors' placement uses.
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// `bench rpc-server easy <cluster> <name> [seed]` or `bench rpc-server tarpc`: prints its
/// address, serves until killed.
pub fn server(args: &[String]) {
    rt().block_on(async move {
        match args.first().map(String::as_str) {
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
            Some("easy") => {
                let cluster = &args[1];
                let name = &args[2];
                let mut b = Node::builder()
                    .cluster(cluster)
                    .name(name)
                    .listen("127.0.0.1:0")
                    .secret(easy_rpc_tests::TEST_SECRET)
                    .roles(["adder"])
                    .serve(AdderImpl(name.clone()).serve());
                if let Some(seed) = args.get(3) {
                    b = b.seeds([seed.as_str()]);
                }
                let node = b.start().await.unwrap();
                println!("{}", node.gossip_addr());
                std::future::pending::<()>().await;
            }
            _ => panic!("rpc-server easy|tarpc"),
        }
    });
}

struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_server(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg("rpc-server")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server");
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_owned())
}

/// Sequential calls for `secs`: (calls per second, p50 latency in µs).
async fn sequential<F, Fut>(secs: f64, mut call: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..1000 {
        call().await;
    }
    let mut lat = Vec::with_capacity(200_000);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        call().await;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let rate = lat.len() as f64 / start.elapsed().as_secs_f64();
    lat.sort_unstable();
    (rate, lat[lat.len() / 2] as f64 / 1e3)
}

/// `inflight` concurrent loops for `secs`: calls per second.
async fn concurrent<F, Fut>(secs: f64, inflight: usize, call: F) -> f64
where
    F: Fn() -> Fut + Clone,
    Fut: Future<Output = ()>,
{
    let count = std::cell::Cell::new(0u64);
    let start = Instant::now();
    let loops = (0..inflight).map(|_| {
        let call = call.clone();
        let count = &count;
        async move {
            while start.elapsed().as_secs_f64() < secs {
                call().await;
                count.set(count.get() + 1);
            }
        }
    });
    futures::future::join_all(loops).await;
    count.get() as f64 / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `a` and `b` alternately `rounds` times each and returns the medians of each: the two
/// sides see the same machine conditions, and one noisy second does not decide a ratio.
async fn interleaved<A, B, FA, FB>(rounds: usize, mut a: A, mut b: B) -> ((f64, f64), (f64, f64))
where
    A: FnMut() -> FA,
    B: FnMut() -> FB,
    FA: Future<Output = (f64, f64)>,
    FB: Future<Output = (f64, f64)>,
{
    let (mut a1, mut a2, mut b1, mut b2) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (x, y) = a().await;
        a1.push(x);
        a2.push(y);
        let (x, y) = b().await;
        b1.push(x);
        b2.push(y);
    }
    ((median(a1), median(a2)), (median(b1), median(b2)))
}

/// Allocations per call over `n` sequential calls.
async fn allocs<F, Fut>(n: usize, mut call: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..100 {
        call().await;
    }
    let region = Region::new(GLOBAL);
    for _ in 0..n {
        call().await;
    }
    region.change().allocations as f64 / n as f64
}

/// A naïve role-aware wrapper over plain tarpc: what one writes without a framework.
struct Naive {
    clients: Mutex<std::collections::HashMap<String, Vec<PlainAdderClient>>>,
}

impl Naive {
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

fn rand_index(n: usize) -> usize {
    (Instant::now().elapsed().subsec_nanos() as usize) % n
}

pub fn run(quick: bool, same_core: bool) {
    if same_core {
        // Pin this process (and so every child) to core 0, before any thread starts.
        let ok = Command::new("taskset")
            .args(["-a", "-p", "-c", "0", &std::process::id().to_string()])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "taskset failed: install util-linux");
    }
    // Seconds per figure and side, split into interleaved rounds.
    let secs = if quick { 1.5 } else { 5.0 };
    rt().block_on(async move {
        let cluster = format!("bench-rpc-{}", std::process::id());
        let mut servers = Servers(Vec::new());
        let (tarpc_child, tarpc_addr) = spawn_server(&["tarpc"]);
        servers.0.push(tarpc_child);
        let (first, seed) = spawn_server(&["easy", &cluster, "adder-0"]);
        servers.0.push(first);

        let addr: SocketAddr = tarpc_addr.parse().unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let transport = tarpc::serde_transport::new(
            tokio_util::codec::Framed::new(stream, tokio_util::codec::LengthDelimitedCodec::new()),
            Postcard::default(),
        );
        let mut cfg = tarpc::client::Config::default();
        cfg.max_in_flight_requests = 100_000;
        let plain = PlainAdderClient::new(cfg, transport).spawn();

        let node = Node::builder()
            .cluster(&cluster)
            .name("bench-client")
            .listen("127.0.0.1:0")
            .secret(easy_rpc_tests::TEST_SECRET)
            .seeds([seed.as_str()])
            .start()
            .await
            .unwrap();
        while node.nodes_with_role("adder").is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let any = node.any("adder");

        println!(
            "# easy-rpc figures\n\nplacement: {}; client and servers single-threaded tokio runtimes, separate processes, loopback TCP, postcard for both; {secs} s per figure and side, in alternating rounds (median)\n",
            if same_core { "same core (taskset -c 0)" } else { "unpinned (2 vCPUs)" }
        );
        println!("| figure | plain tarpc | easy-rpc | ratio | goal |\n| --- | --- | --- | --- | --- |");

        let rounds = if quick { 3 } else { 5 };
        let secs = secs / rounds as f64;
        let ((t_rate, t_p50), (e_rate, e_p50)) = interleaved(
            rounds,
            || {
                sequential(secs, || {
                    let p = plain.clone();
                    async move {
                        p.add(tarpc::context::current(), 1, 2).await.unwrap();
                    }
                })
            },
            || {
                sequential(secs, || {
                    let a = any.clone();
                    async move {
                        a.add(1, 2).await.unwrap();
                    }
                })
            },
        )
        .await;
        println!(
            "| 1 in flight, calls/s | {t_rate:.0} | {e_rate:.0} | {:.2}x | >= 0.9x |",
            e_rate / t_rate
        );
        println!(
            "| 1 in flight, p50 latency | {t_p50:.1} µs | {e_p50:.1} µs | {:.2}x | <= 1.1x |",
            e_p50 / t_p50
        );

        let ((t64, _), (e64, _)) = interleaved(
            rounds,
            || async {
                let r = concurrent(secs, 64, || {
                    let p = plain.clone();
                    async move {
                        p.add(tarpc::context::current(), 1, 2).await.unwrap();
                    }
                })
                .await;
                (r, 0.0)
            },
            || async {
                let r = concurrent(secs, 64, || {
                    let a = any.clone();
                    async move {
                        a.add(1, 2).await.unwrap();
                    }
                })
                .await;
                (r, 0.0)
            },
        )
        .await;
        println!(
            "| 64 in flight, one server, calls/s | {t64:.0} | {e64:.0} | {:.2}x | >= 0.9x |",
            e64 / t64
        );

        // Allocations per call, client side.
        let t_alloc = allocs(10_000, || {
            let p = plain.clone();
            async move {
                p.add(tarpc::context::current(), 1, 2).await.unwrap();
            }
        })
        .await;
        let naive = Naive {
            clients: Mutex::new([("adder".to_string(), vec![plain.clone()])].into()),
        };
        let n_alloc = allocs(10_000, || {
            let f = naive.add("adder", 1, 2);
            async move {
                f.await.unwrap();
            }
        })
        .await;
        let e_alloc = allocs(10_000, || {
            let a = any.clone();
            async move {
                a.add(1, 2).await.unwrap();
            }
        })
        .await;
        println!(
            "| allocations per call (client) | {t_alloc:.1} (naive role wrapper: {n_alloc:.1}) | {e_alloc:.1} | | < naive wrapper |"
        );

        // Four servers.
        for i in 1..4 {
            let (c, _) = spawn_server(&["easy", &cluster, &format!("adder-{i}"), &seed]);
            servers.0.push(c);
        }
        while node.nodes_with_role("adder").len() < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let e64x4 = concurrent(secs, 64, || {
            let a = any.clone();
            async move {
                a.add(1, 2).await.unwrap();
            }
        })
        .await;
        println!(
            "| any over 4 servers, 64 in flight, calls/s | {t64:.0} (1 server) | {e64x4:.0} | {:.2}x | >= 0.9x plain tarpc at 64 |",
            e64x4 / t64
        );

        // Eight servers: all vs one any.
        for i in 4..8 {
            let (c, _) = spawn_server(&["easy", &cluster, &format!("adder-{i}"), &seed]);
            servers.0.push(c);
        }
        while node.nodes_with_role("adder").len() < 8 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let all = node.all("adder");
        let (_, all_p50) = sequential(secs, || {
            let a = all.clone();
            async move {
                let r = a.add(1, 2).await;
                assert_eq!(r.unwrap().len(), 8);
            }
        })
        .await;
        let (_, one_p50) = sequential(secs, || {
            let a = any.clone();
            async move {
                a.add(1, 2).await.unwrap();
            }
        })
        .await;
        println!(
            "| all over 8 servers, p50 | one any: {one_p50:.1} µs | {all_p50:.1} µs | {:.2}x | <= 3x one any |",
            all_p50 / one_p50
        );
        node.kill();
        drop(servers);
    });
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
