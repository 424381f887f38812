//! The server side of the RPC handshake over an in-memory stream, facing a client that holds
//! the key: the first Noise message is valid (made with the key); its payload (the service
//! asked for) and what follows are fuzzed. Chunks (see the crate's docs): 0 the payload of the
//! first message (the first such chunk; default the service name), 1 a record sealed with
//! the connection's keys after the handshake, 2 raw bytes after the handshake. What follows
//! the handshake is read as the server reads requests.

#![no_main]

use easy_rpc::__fuzz::{self as f, PSK};
use easy_rpc_fuzz::{BillingService, SERVICE, chunks, run, sealed_tail};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

/// Another key of the server's ring, tried first.
const OTHER: [u8; 32] = [0x11; 32];
/// The largest handshake frame the server reads.
const MAX_HANDSHAKE_FRAME: usize = 1024;

fuzz_target!(|data: &[u8]| client(data));

fn client(input: &[u8]) {
    let chunks = chunks(input, 3);
    let service = chunks
        .iter()
        .find(|c| c.kind == 0)
        .map_or(SERVICE.as_bytes(), |c| c.body);
    run(async {
        let mut hs = f::noise(&PSK, true);
        let mut msg = vec![0u8; 65535];
        // Over Noise's 64 KiB a message cannot be made: nothing to send.
        let Ok(n) = hs.write_message(service, &mut msg) else {
            return;
        };
        let mut first = f::preamble().to_vec();
        first.extend_from_slice(&(n as u16).to_be_bytes());
        first.extend_from_slice(&msg[..n]);
        let (mut peer, server) = duplex(1 << 20);
        peer.write_all(&first).await.unwrap();
        let r = f::handshake_server(server, &[OTHER, PSK], &[SERVICE]).await;
        let mut preamble = [0u8; 6];
        peer.read_exact(&mut preamble).await.unwrap();
        assert_eq!(preamble, f::preamble());
        if n > MAX_HANDSHAKE_FRAME {
            assert!(r.is_err(), "a frame over the limit was read");
            return;
        }
        // An authenticated client is always answered.
        let len = usize::from(peer.read_u16().await.expect("an answer"));
        let mut msg2 = vec![0u8; len];
        peer.read_exact(&mut msg2).await.unwrap();
        let mut verdict = vec![0u8; len];
        let v = hs
            .read_message(&msg2, &mut verdict)
            .expect("the answer opens");
        // The verdict is padded with zeros to a length fixed by the first message.
        let accept = f::accept_verdict();
        let accepted =
            verdict[..v].starts_with(&accept) && verdict[accept.len()..v].iter().all(|&b| b == 0);
        assert_eq!(accepted, r.is_ok());
        let Ok((name, sealed)) = r else {
            return;
        };
        assert_eq!(name.as_bytes(), service);
        let wire = sealed_tail(Vec::new(), hs.into_transport_mode().unwrap(), &chunks).await;
        peer.write_all(&wire).await.unwrap();
        peer.shutdown().await.unwrap();
        let _ = f::read_requests::<BillingService>(sealed, 4 << 20, 64 << 20).await;
    });
}
