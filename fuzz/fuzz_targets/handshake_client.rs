//! The client side of the RPC handshake over an in-memory stream, facing a server that does
//! not hold the key: the input is what that server sends. The handshake must fail. The
//! variant with a valid answer is `handshake_client_key`.

#![no_main]

use easy_rpc::__fuzz::{self as f, PSK};
use easy_rpc_fuzz::{SERVICE, run};
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;
use tokio::io::duplex;

fuzz_target!(|data: &[u8]| stranger(data));

fn stranger(bytes: &[u8]) {
    run(async {
        let (client, mut peer) = duplex(1 << 20);
        peer.write_all(bytes).await.unwrap();
        peer.shutdown().await.unwrap();
        let r = f::handshake_client(client, &PSK, SERVICE).await;
        assert!(r.is_err(), "a stranger server completed the handshake");
    });
}
