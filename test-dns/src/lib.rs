//! # easy-rpc-test-dns
//!
//! A real DNS server for tests, running in-process on `127.0.0.1` (UDP and TCP on one port).
//!
//! Its records are held in memory and can be changed while it runs, so tests can model a
//! Kubernetes headless service whose pods come and go:
//!
//! ```no_run
//! # async fn demo() {
//! use easy_rpc_test_dns::TestDns;
//!
//! let dns = TestDns::start().await;
//! dns.set_a("billing.test", &["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()], 1);
//! dns.set_srv("_gossip._udp.billing.test", &[("billing-0.billing.test", 7946)], 1);
//! // point a resolver at dns.addr() ...
//! # }
//! ```
//!
//! Answers: the A / AAAA / SRV records of a known name (SRV answers carry the targets' known
//! A/AAAA records as additionals); `NOERROR` with no answer for a known name lacking the asked
//! type; `NXDOMAIN` for an unknown name. Negative answers carry an SOA record whose TTL and
//! minimum are [`NEGATIVE_TTL`] seconds. The server can also be made to fail
//! ([`TestDns::set_servfail`]), to stop answering ([`TestDns::set_silent`]) or to leave out SRV
//! additionals ([`TestDns::set_srv_additionals`]); dropping it closes its sockets.
//!
//! It is used by `cluster-helper`'s discovery tests (a dev-dependency) and by the workspace's
//! integration tests; it is not published.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

/// TTL (and SOA minimum) of negative answers, in seconds.
pub const NEGATIVE_TTL: u32 = 1;

/// An in-process DNS server on `127.0.0.1:<random port>`; dropping it stops the server.
pub struct TestDns {
    addr: SocketAddr,
    state: Arc<State>,
    server: Server<Handler>,
}

impl TestDns {
    /// Binds UDP and TCP on `127.0.0.1` with a port chosen by the system and starts serving.
    ///
    /// Must be called inside a tokio runtime. Panics if no port can be bound.
    pub async fn start() -> TestDns {
        let state = Arc::new(State::default());
        let mut server = Server::new(Handler {
            state: state.clone(),
        });
        let (udp, tcp) = bind_pair().await;
        let addr = udp.local_addr().expect("test DNS: UDP local address");
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        TestDns {
            addr,
            state,
            server,
        }
    }

    /// The address (UDP and TCP) to send queries to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the A and AAAA records of `name` with one record per address (A for IPv4,
    /// AAAA for IPv6), all with `ttl` seconds. An empty slice removes them; a name left with no
    /// records at all disappears (`NXDOMAIN`).
    pub fn set_a(&self, name: &str, ips: &[IpAddr], ttl: u32) {
        let key = key(name);
        let mut names = self.state.names();
        let entry = names.entry(key.clone()).or_default();
        entry.addrs = ips.to_vec();
        entry.addr_ttl = ttl;
        if entry.is_empty() {
            names.remove(&key);
        }
    }

    /// Replaces the SRV records of `name` with one record per `(target, port)`, priority 0,
    /// weight 10, all with `ttl` seconds. An empty slice removes them; a name left with no
    /// records at all disappears (`NXDOMAIN`).
    pub fn set_srv(&self, name: &str, targets: &[(&str, u16)], ttl: u32) {
        let key = key(name);
        let targets: Vec<(Name, u16)> = targets
            .iter()
            .map(|(target, port)| (fqdn(target), *port))
            .collect();
        let mut names = self.state.names();
        let entry = names.entry(key.clone()).or_default();
        entry.srv = targets;
        entry.srv_ttl = ttl;
        if entry.is_empty() {
            names.remove(&key);
        }
    }

    /// Removes every record of `name`: it answers `NXDOMAIN` from now on.
    pub fn remove(&self, name: &str) {
        self.state.names().remove(&key(name));
    }

    /// Number of queries answered so far (over UDP and TCP, including negative and SERVFAIL
    /// answers, excluding queries ignored while [silent](TestDns::set_silent)).
    pub fn queries(&self) -> u64 {
        self.state.queries.load(Ordering::SeqCst)
    }

    /// While `true`, every query is answered with `SERVFAIL`.
    pub fn set_servfail(&self, servfail: bool) {
        self.state.servfail.store(servfail, Ordering::SeqCst);
    }

    /// While `true`, queries are read and dropped without an answer, so clients time out.
    pub fn set_silent(&self, silent: bool) {
        self.state.silent.store(silent, Ordering::SeqCst);
    }

    /// Whether SRV answers carry the targets' A/AAAA records as additionals (the default,
    /// like Kubernetes' CoreDNS). With `false`, clients must look the targets up themselves.
    pub fn set_srv_additionals(&self, include: bool) {
        self.state
            .omit_additionals
            .store(!include, Ordering::SeqCst);
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        // Stop accepting; dropping `server` (its JoinSet) then aborts the tasks and closes the
        // sockets.
        self.server.shutdown_token().cancel();
    }
}

impl std::fmt::Debug for TestDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDns")
            .field("addr", &self.addr)
            .field("queries", &self.queries())
            .finish_non_exhaustive()
    }
}

/// Binds a UDP socket on `127.0.0.1:0` and a TCP listener on the same port.
async fn bind_pair() -> (UdpSocket, TcpListener) {
    let mut last_error = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("test DNS: bind UDP 127.0.0.1:0");
        let addr = udp.local_addr().expect("test DNS: UDP local address");
        match TcpListener::bind(addr).await {
            Ok(tcp) => return (udp, tcp),
            // The port is free for UDP but taken for TCP: try another one.
            Err(e) => last_error = Some(e),
        }
    }
    panic!("test DNS: no port free for both UDP and TCP: {last_error:?}");
}

/// `name` as a fully qualified, lower-case name (the map key).
fn key(name: &str) -> LowerName {
    LowerName::from(fqdn(name))
}

/// `name` as a fully qualified name; panics on a malformed name (a bug in the test).
fn fqdn(name: &str) -> Name {
    let mut name =
        Name::from_ascii(name).unwrap_or_else(|e| panic!("test DNS: bad name {name:?}: {e}"));
    name.set_fqdn(true);
    name
}

/// The records of one name.
#[derive(Default)]
struct Entry {
    addrs: Vec<IpAddr>,
    addr_ttl: u32,
    srv: Vec<(Name, u16)>,
    srv_ttl: u32,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.addrs.is_empty() && self.srv.is_empty()
    }

    /// The A (`v4`) or AAAA (`!v4`) records of this entry, owned by `name`.
    fn addr_records(&self, name: &Name, v4: bool) -> impl Iterator<Item = Record> + '_ {
        let name = name.clone();
        self.addrs.iter().filter_map(move |ip| {
            let data = match (ip, v4) {
                (IpAddr::V4(ip), true) => RData::A(A(*ip)),
                (IpAddr::V6(ip), false) => RData::AAAA(AAAA(*ip)),
                _ => return None,
            };
            Some(Record::from_rdata(name.clone(), self.addr_ttl, data))
        })
    }

    fn srv_records(&self, name: &Name) -> impl Iterator<Item = Record> + '_ {
        let name = name.clone();
        self.srv.iter().map(move |(target, port)| {
            Record::from_rdata(
                name.clone(),
                self.srv_ttl,
                RData::SRV(SRV::new(0, 10, *port, target.clone())),
            )
        })
    }
}

/// State shared by the handle and the server tasks.
#[derive(Default)]
struct State {
    names: Mutex<HashMap<LowerName, Entry>>,
    queries: AtomicU64,
    servfail: AtomicBool,
    silent: AtomicBool,
    omit_additionals: AtomicBool,
}

impl State {
    fn names(&self) -> MutexGuard<'_, HashMap<LowerName, Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent: keep serving.
        self.names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What to send back for one query.
struct Answer {
    code: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Answer {
    fn error(code: ResponseCode) -> Self {
        Answer {
            code,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }

    /// `NXDOMAIN` (`code`) or `NOERROR` with no answer, with an SOA for negative caching.
    fn negative(code: ResponseCode) -> Self {
        let soa = SOA::new(
            Name::from_ascii("ns.test.").unwrap_or_else(|_| Name::root()),
            Name::from_ascii("hostmaster.test.").unwrap_or_else(|_| Name::root()),
            1,
            60,
            60,
            3600,
            NEGATIVE_TTL,
        );
        Answer {
            code,
            answers: Vec::new(),
            authorities: vec![Record::from_rdata(
                Name::root(),
                NEGATIVE_TTL,
                RData::SOA(soa),
            )],
            additionals: Vec::new(),
        }
    }
}

/// The request handler: answers from [`State`].
struct Handler {
    state: Arc<State>,
}

impl Handler {
    fn answer(&self, request: &Request) -> Answer {
        if self.state.servfail.load(Ordering::SeqCst) {
            return Answer::error(ResponseCode::ServFail);
        }
        if request.metadata.op_code != OpCode::Query {
            return Answer::error(ResponseCode::NotImp);
        }
        let Ok(info) = request.request_info() else {
            return Answer::error(ResponseCode::FormErr);
        };
        let qname = info.query.name();
        let qtype = info.query.query_type();
        let name = info.query.original().name().clone();

        let names = self.state.names();
        let Some(entry) = names.get(qname) else {
            return Answer::negative(ResponseCode::NXDomain);
        };
        let mut answers = Vec::new();
        let mut additionals = Vec::new();
        match qtype {
            RecordType::A => answers.extend(entry.addr_records(&name, true)),
            RecordType::AAAA => answers.extend(entry.addr_records(&name, false)),
            RecordType::SRV => {
                answers.extend(entry.srv_records(&name));
                let targets = if self.state.omit_additionals.load(Ordering::SeqCst) {
                    &[][..]
                } else {
                    &entry.srv[..]
                };
                for (target, _) in targets {
                    if let Some(target_entry) = names.get(&LowerName::from(target)) {
                        additionals.extend(target_entry.addr_records(target, true));
                        additionals.extend(target_entry.addr_records(target, false));
                    }
                }
            }
            RecordType::ANY => {
                answers.extend(entry.addr_records(&name, true));
                answers.extend(entry.addr_records(&name, false));
                answers.extend(entry.srv_records(&name));
            }
            _ => {}
        }
        if answers.is_empty() {
            return Answer::negative(ResponseCode::NoError);
        }
        Answer {
            code: ResponseCode::NoError,
            answers,
            authorities: Vec::new(),
            additionals,
        }
    }

    async fn respond<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        if self.state.silent.load(Ordering::SeqCst) {
            // Nothing is sent; the return value is only used for logging by the server.
            metadata.response_code = ResponseCode::ServFail;
            return ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            });
        }
        self.state.queries.fetch_add(1, Ordering::SeqCst);

        let answer = self.answer(request);
        metadata.authoritative = true;
        metadata.recursion_available = true;
        metadata.response_code = answer.code;

        let response_edns = request.edns.as_ref().map(|request_edns| {
            let mut edns = Edns::new();
            edns.set_max_payload(request_edns.max_payload().max(512));
            edns
        });
        let builder = MessageResponseBuilder::new(&request.queries, response_edns.as_ref());
        let response = builder.build(
            metadata,
            answer.answers.iter(),
            answer.authorities.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(_) => {
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

// `RequestHandler` is declared with `#[async_trait]`; this is the signature that macro expects,
// written out so that this file needs no `async-trait` dependency.
impl RequestHandler for Handler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.respond(request, response_handle))
    }
}
