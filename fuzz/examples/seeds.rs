//! Writes the seed corpus, `fuzz/seeds/<target>/*`: valid and nearly valid inputs of each
//! target, so that the fuzzer starts from the shapes of real traffic. Run from `fuzz/` with
//! `cargo run --example seeds` (a plain build; the seeds are committed).

use std::path::Path;

use easy_rpc::__fuzz as rpc;
use easy_rpc::__private::tarpc::{self, Response};
use easy_rpc_fuzz::{BillingError, BillingRequest, BillingResponse, Receipt, SERVICE};
use easy_rpc_fuzz::{frame, push_chunk, request_frame};
use serde::Serialize;

/// The response envelope as it is on the wire (variant order and types of easy-rpc's).
#[derive(Serialize)]
enum Reply<R> {
    Ok(R),
    NotRun(u64),
    Failed(String),
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("seeds").join(target);
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    std::fs::write(dir.join(name), bytes).expect("write a seed");
}

fn requests() -> Vec<Vec<u8>> {
    vec![
        request_frame(
            1,
            BillingRequest::Balance {
                account: "acct-1".into(),
            },
        ),
        request_frame(
            2,
            BillingRequest::Charge {
                account: "acct-2".into(),
                cents: 1250,
                tags: vec!["a".into(), "b".into()],
                memo: Some("memo".into()),
            },
        ),
        request_frame(
            3,
            BillingRequest::Upload {
                name: "f".into(),
                data: vec![0, 1, 2, 3, 255],
            },
        ),
        request_frame(4, BillingRequest::Ping {}),
        frame(
            &postcard::to_stdvec(&tarpc::ClientMessage::<BillingRequest>::Cancel {
                trace_context: Default::default(),
                request_id: 2,
            })
            .unwrap(),
        ),
    ]
}

fn responses() -> Vec<Vec<u8>> {
    let response = |id, reply: Reply<BillingResponse>| {
        frame(
            &postcard::to_stdvec(&Response {
                request_id: id,
                message: Ok(reply),
            })
            .unwrap(),
        )
    };
    vec![
        response(1, Reply::Ok(BillingResponse::Balance(1250))),
        response(
            2,
            Reply::Ok(BillingResponse::Charge(Ok(Receipt {
                account: "acct-2".into(),
                cents: 1250,
                tags: vec!["a".into()],
            }))),
        ),
        response(
            2,
            Reply::Ok(BillingResponse::Charge(Err(BillingError::OverLimit {
                limit: 10_000,
            }))),
        ),
        response(3, Reply::Ok(BillingResponse::Upload((5, vec![9; 8])))),
        response(4, Reply::Ok(BillingResponse::Ping(()))),
        response(5, Reply::NotRun(1)),
        response(6, Reply::Failed("panicked".into())),
    ]
}

fn gossip() {
    let messages = cluster_helper::__fuzz::sample_messages();
    for (i, m) in messages.iter().enumerate() {
        write("gossip_message", &format!("message-{i}"), m);
    }
    // One sender's round, a replay, a changed byte, a cut, a stale one, a forged one.
    let sealed = |sender: u8, skew: i16, counter: u64, plaintext: &[u8]| {
        let mut b = vec![sender];
        b.extend_from_slice(&skew.to_be_bytes());
        b.extend_from_slice(&counter.to_be_bytes());
        b.extend_from_slice(plaintext);
        b
    };
    let mut s = vec![0u8];
    push_chunk(&mut s, 1, &sealed(1, 0, 0, &messages[0]));
    push_chunk(&mut s, 1, &sealed(1, -50, 1, &messages[1]));
    push_chunk(&mut s, 3, &[0]);
    push_chunk(&mut s, 2, &[1, 0, 40, 0x80]);
    push_chunk(&mut s, 4, &[0, 0, 30]);
    push_chunk(&mut s, 1, &sealed(2, -15_000, 7, &messages[2]));
    push_chunk(&mut s, 1, &sealed(2, 100, 1_000_000, &messages[3]));
    push_chunk(&mut s, 1, &sealed(2, 0, 999_100, &messages[3]));
    let mut forged = b"ERG\x02".to_vec();
    forged.extend_from_slice(&[0u8; 24 + 16 + 8]);
    push_chunk(&mut s, 0, &forged);
    write("gossip_packet", "round", &s);
    // Several senders into a small table.
    let mut s = vec![2u8];
    for sender in 0..5 {
        push_chunk(&mut s, 1, &sealed(sender, 0, 0, &messages[3]));
    }
    push_chunk(&mut s, 3, &[0]);
    push_chunk(&mut s, 3, &[4]);
    write("gossip_packet", "senders", &s);
}

fn handshake() {
    let preamble = rpc::preamble();
    let framed = |msg: &[u8]| {
        let mut out = preamble.to_vec();
        out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        out.extend_from_slice(msg);
        out
    };
    // Strangers: garbage, another version, a frame over the limit, a first message made
    // with another key.
    let stranger = |name: &str, bytes: &[u8]| write("handshake_server", name, bytes);
    stranger("http", b"GET / HTTP/1.1\r\n\r\n");
    stranger("version", b"ERPC\x00\x02");
    let mut big = preamble.to_vec();
    big.extend_from_slice(&u16::MAX.to_be_bytes());
    stranger("too-large", &big);
    let mut hs = rpc::noise(&[9; 32], true);
    let mut m = [0u8; 1024];
    let n = hs.write_message(SERVICE.as_bytes(), &mut m).unwrap();
    stranger("wrong-key", &framed(&m[..n]));
    stranger("garbage-frame", &framed(&[0x55; 60]));

    // Authenticated clients: calls, an unknown service, a bad record, a frame over records.
    let reqs = requests();
    let mut s = Vec::new();
    push_chunk(&mut s, 0, SERVICE.as_bytes());
    for r in &reqs {
        push_chunk(&mut s, 1, r);
    }
    write("handshake_server_key", "calls", &s);
    let mut s = Vec::new();
    push_chunk(&mut s, 0, b"Nope");
    write("handshake_server_key", "unknown-service", &s);
    let mut s = Vec::new();
    push_chunk(&mut s, 0, &[0xff, 0xfe]);
    write("handshake_server_key", "not-utf8", &s);
    let mut s = Vec::new();
    push_chunk(&mut s, 1, &reqs[0]);
    push_chunk(&mut s, 2, &[0, 40, 1, 2, 3]);
    write("handshake_server_key", "bad-record", &s);
    let mut s = Vec::new();
    let (a, b) = reqs[1].split_at(7);
    push_chunk(&mut s, 1, a);
    push_chunk(&mut s, 1, b);
    write("handshake_server_key", "split-frame", &s);

    // The client: stranger servers, then servers that hold the key.
    let client_stranger = |name: &str, bytes: &[u8]| write("handshake_client", name, bytes);
    client_stranger("http", b"HTTP/1.1 400 Bad Request\r\n\r\n");
    client_stranger("version", b"ERPC\x00\x09");
    client_stranger("garbage-frame", &framed(&[0x55; 60]));
    let resps = responses();
    let mut s = Vec::new();
    push_chunk(&mut s, 0, &rpc::accept_verdict());
    for r in &resps {
        push_chunk(&mut s, 1, r);
    }
    write("handshake_client_key", "replies", &s);
    // Reject(UnknownService { service }), Reject(Leaving), garbage.
    for (name, verdict) in [
        ("reject-unknown", &[1u8, 0, 4, b'N', b'o', b'p', b'e'][..]),
        ("reject-1", &[1, 1][..]),
        ("verdict-garbage", &[7, 7, 7][..]),
    ] {
        let mut s = Vec::new();
        push_chunk(&mut s, 0, verdict);
        write("handshake_client_key", name, &s);
    }
    let mut s = Vec::new();
    push_chunk(&mut s, 3, &2u16.to_be_bytes());
    write("handshake_client_key", "other-version", &s);
    let mut s = Vec::new();
    push_chunk(&mut s, 1, &resps[0]);
    push_chunk(&mut s, 2, &[0xff; 20]);
    write("handshake_client_key", "bad-record", &s);
}

fn rpc_frames() {
    // mode: bit 0 responses, bits 1-3 frame limit (0: 4 MiB, 2: 16 bytes, 5: 64 KiB), bits
    // 4-5 budget (0: 64 MiB, 2: 50 bytes).
    let chunked = |mode: u8, frames: &[Vec<u8>], split: bool| {
        let mut s = vec![mode];
        for f in frames {
            if split && f.len() > 3 {
                let (a, b) = f.split_at(f.len() / 2);
                push_chunk(&mut s, 0, a);
                push_chunk(&mut s, 0, b);
            } else {
                push_chunk(&mut s, 0, f);
            }
        }
        s
    };
    let reqs = requests();
    let resps = responses();
    write("rpc_frame", "requests", &chunked(0, &reqs, false));
    write("rpc_frame", "requests-split", &chunked(0, &reqs, true));
    write(
        "rpc_frame",
        "requests-small-budget",
        &chunked(2 << 4, &reqs, true),
    );
    write(
        "rpc_frame",
        "requests-small-limit",
        &chunked(2 << 1, &reqs, false),
    );
    write("rpc_frame", "responses", &chunked(1, &resps, false));
    write(
        "rpc_frame",
        "responses-split",
        &chunked(1 | 5 << 1, &resps, true),
    );
    let mut s = chunked(0, &reqs[..1], false);
    push_chunk(&mut s, 1, &[0, 30, 9, 9, 9]);
    write("rpc_frame", "raw-after-record", &s);
    // A deadline of u64::MAX seconds.
    let mut hostile = vec![0u8];
    hostile.extend_from_slice(&postcard::to_stdvec(&std::time::Duration::MAX).unwrap());
    let (_, rest) = postcard::take_from_bytes::<(u8, std::time::Duration)>(&reqs[0][4..]).unwrap();
    hostile.extend_from_slice(rest);
    write(
        "rpc_frame",
        "huge-deadline",
        &chunked(0, &[frame(&hostile)], false),
    );
}

fn config() {
    let secret = cluster_helper::Secret::generate();
    let seeds = [
        (
            "env",
            "CLUSTER_NAME=prod\nCLUSTER_NODE_NAME=node-1\nCLUSTER_ROLES=billing, audit\n\
             CLUSTER_SEEDS=10.0.0.1:7946,dns:billing.svc:7946,srv:_gossip._udp.svc\n\
             CLUSTER_LISTEN=0.0.0.0:7946\nCLUSTER_ADVERTISE=10.0.0.7\n\
             CLUSTER_RPC_LISTEN=same\nCLUSTER_RPC_ADVERTISE=[fd00::7]:7000\n\
             CLUSTER_INSECURE=no\nCLUSTER_GOSSIP_MAX_PACKET_AGE_MS=10s\n\
             CLUSTER_DNS_SERVER=10.0.0.53\nCLUSTER_GOSSIP_INTERVAL=250ms\n\
             CLUSTER_PHI_THRESHOLD=8\nCLUSTER_LEAVE_GRACE=2s\nCLUSTER_JOIN_TIMEOUT=1m\n\
             CLUSTER_DNS_MIN_INTERVAL=1s\nCLUSTER_DNS_MAX_INTERVAL=30000\n"
                .to_owned(),
        ),
        (
            "secret",
            format!(
                "CLUSTER_SECRET={},{}\nsecret={}\n",
                secret.to_base64(),
                secret.to_hex(),
                secret.to_hex()
            ),
        ),
        (
            "secret-file",
            format!(
                "CLUSTER_SECRET_FILE=# keys\\n{}\\n\\n{}\\n",
                secret.to_base64(),
                secret.to_hex()
            ),
        ),
        (
            "limits",
            "CLUSTER_RPC_MAX_CONNECTIONS=auto\nCLUSTER_RPC_MAX_PENDING_HANDSHAKES=256\n\
             CLUSTER_RPC_MAX_PENDING_PER_IP=8\nCLUSTER_RPC_MAX_FRAME=4MiB\n\
             CLUSTER_RPC_MAX_CONCURRENT_REQUESTS=128\nCLUSTER_RPC_MAX_BUFFERED_BYTES=64M\n"
                .to_owned(),
        ),
        (
            "parsers",
            "seeds=a.example:1, [::1]:7946,,DNS:x:2,srv:_a._udp.b\naddress=node-0.example:7946\n\
             bare=fd00::7\naddress=[::]:0\n"
                .to_owned(),
        ),
        (
            "seed-list",
            "10.0.0.1:7946,dns:billing.ns.svc:7946".to_owned(),
        ),
        ("secret-base64", secret.to_base64()),
    ];
    for (name, text) in seeds {
        write("config", name, text.as_bytes());
    }
}

fn main() {
    gossip();
    handshake();
    rpc_frames();
    config();
    println!("seeds written under fuzz/seeds/");
}
