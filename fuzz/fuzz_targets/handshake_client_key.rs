//! The client side of the RPC handshake over an in-memory stream, facing a server that holds
//! the key: it answers the client's real first message with a valid second one (made with
//! the key); the answer's payload and what follows are fuzzed. Chunks (see the crate's
//! docs): 0 the payload of the answer (the first such chunk; default "accept"), 1 a record
//! sealed with the connection's keys, 2 raw bytes after the answer, 3 the protocol version of
//! the server's preamble (the first such chunk, 2 bytes). What follows the handshake is read
//! as the client reads responses.

#![no_main]

use easy_rpc::__fuzz::{self as f, PSK};
use easy_rpc::RejectReason;
use easy_rpc_fuzz::{BillingService, SERVICE, chunks, run, sealed_tail};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

fuzz_target!(|data: &[u8]| server(data));

fn server(input: &[u8]) {
    let chunks = chunks(input, 4);
    let accept = f::accept_verdict();
    let verdict = chunks
        .iter()
        .find(|c| c.kind == 0)
        .map_or(&accept[..], |c| c.body);
    let ours = u16::from_be_bytes([f::preamble()[4], f::preamble()[5]]);
    let version = chunks.iter().find(|c| c.kind == 3).map_or(ours, |c| {
        easy_rpc_fuzz::be_u64(&c.body[..c.body.len().min(2)]) as u16
    });
    run(async {
        let (client, mut peer) = duplex(1 << 20);
        let client = f::handshake_client(client, &PSK, SERVICE);
        let server = async {
            let mut preamble = [0u8; 6];
            peer.read_exact(&mut preamble).await.unwrap();
            assert_eq!(preamble, f::preamble());
            let len = usize::from(peer.read_u16().await.unwrap());
            let mut msg1 = vec![0u8; len];
            peer.read_exact(&mut msg1).await.unwrap();
            let mut hs = f::noise(&PSK, false);
            let mut payload = vec![0u8; len];
            let n = hs
                .read_message(&msg1, &mut payload)
                .expect("the client's msg1 opens");
            assert_eq!(&payload[..n], SERVICE.as_bytes());
            let mut wire = f::preamble().to_vec();
            wire[4..].copy_from_slice(&version.to_be_bytes());
            let mut msg2 = vec![0u8; 65535];
            // Over Noise's 64 KiB a message cannot be made: send an empty frame instead.
            let n = hs.write_message(verdict, &mut msg2).unwrap_or(0);
            wire.extend_from_slice(&(n as u16).to_be_bytes());
            wire.extend_from_slice(&msg2[..n]);
            let wire = sealed_tail(wire, hs.into_transport_mode().unwrap(), &chunks).await;
            peer.write_all(&wire).await.unwrap();
            peer.shutdown().await.unwrap();
            peer
        };
        let (r, _peer) = tokio::join!(client, server);
        if version != ours {
            assert!(
                matches!(r, Err(Some(RejectReason::WrongVersion { .. }))),
                "another version was not refused"
            );
            return;
        }
        let Ok(sealed) = r else {
            return;
        };
        let _ = f::read_responses::<BillingService>(sealed, 4 << 20).await;
    });
}
