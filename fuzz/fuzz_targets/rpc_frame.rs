//! The bytes after the handshake, on a sealed connection with known keys: the sealed record
//! reader, then the framing and codec of the server (requests) or of the client (responses).
//!
//! Input: one byte (bit 0: 0 the server reads requests, 1 the client reads responses; bits
//! 1-3: the frame limit; bits 4-5: the server's budget for partial frames), then chunks (see
//! the crate's docs): 0 a record sealed with the connection's keys, 1 raw bytes.
//!
//! The session's keys are made once (a handshake costs more than a run) and reused: each run
//! starts the reading side at the writing side's next nonce, as a new connection would.

#![no_main]

use std::cell::RefCell;
use std::io::Cursor;

use easy_rpc::__fuzz as f;
use easy_rpc_fuzz::{BillingService, chunks, run};
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;

const FRAME_LIMITS: [usize; 8] = [4 << 20, 0, 16, 100, 1024, 65536, 1 << 20, 16 << 20];
const BUDGETS: [usize; 4] = [64 << 20, 0, 50, 100_000];

thread_local! {
    static SESSION: RefCell<Option<(snow::TransportState, snow::TransportState)>> =
        const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let responses = mode & 1 == 1;
    let max_frame = FRAME_LIMITS[usize::from(mode >> 1) & 7];
    let budget = BUDGETS[usize::from(mode >> 4) & 3];
    let (initiator, responder) = SESSION
        .with(|s| s.borrow_mut().take())
        .unwrap_or_else(f::session);
    // Requests go from the initiator (client) to the responder (server); responses back.
    let (writer, mut reader) = if responses {
        (responder, initiator)
    } else {
        (initiator, responder)
    };
    reader.set_receiving_nonce(writer.sending_nonce());
    let (writer, reader) = run(async {
        let mut out = f::sealed(Vec::new(), writer);
        for c in chunks(rest, 2) {
            if c.kind == 0 {
                out.write_all(c.body).await.unwrap();
                out.flush().await.unwrap();
            } else {
                let (mut wire, keys) = f::unseal(out);
                wire.extend_from_slice(c.body);
                out = f::sealed(wire, keys);
            }
        }
        let (wire, writer) = f::unseal(out);
        let mut input = f::sealed(Cursor::new(wire), reader);
        if responses {
            f::read_responses::<BillingService>(&mut input, max_frame).await;
        } else {
            f::read_requests::<BillingService>(&mut input, max_frame, budget).await;
        }
        (writer, f::unseal(input).1)
    });
    let pair = if responses {
        (reader, writer)
    } else {
        (writer, reader)
    };
    SESSION.with(|s| *s.borrow_mut() = Some(pair));
});
