//! The server side of the RPC handshake over an in-memory stream, facing a stranger: the
//! input is what the other side sends. The handshake must fail, and the stranger must get
//! nothing but the server's preamble (whatever it sent, it learns nothing else). The variant
//! with a valid first message is `handshake_server_key`.

#![no_main]

use easy_rpc::__fuzz::{self as f, PSK};
use easy_rpc_fuzz::{SERVICE, run};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

/// Another key of the server's ring, tried first.
const OTHER: [u8; 32] = [0x11; 32];

fuzz_target!(|data: &[u8]| stranger(data));

fn stranger(bytes: &[u8]) {
    run(async {
        let (mut peer, server) = duplex(1 << 20);
        peer.write_all(bytes).await.unwrap();
        peer.shutdown().await.unwrap();
        let r = f::handshake_server(server, &[OTHER, PSK], &[SERVICE]).await;
        assert!(r.is_err(), "a stranger completed the handshake");
        drop(r);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert!(
            got.is_empty() || got == f::preamble(),
            "a stranger was told {got:?}"
        );
    });
}
