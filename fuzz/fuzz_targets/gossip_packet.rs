//! Datagrams into the gossip packet opener of a node with a fixed keyring: the header and
//! length checks, the nonce (sender, clock, counter), authentication, the staleness check and
//! the replay window, then the message decoder.
//!
//! Input: one byte (how many senders the replay table tracks: 0 is a node's 4096, else 1-8),
//! then chunks (see the crate's docs), each one datagram:
//! - 0 raw: the body as it is;
//! - 1 sealed: `[sender u8][skew ms i16][counter u64][plaintext..]` sealed with the key;
//! - 2 flipped: `[which u8][at u16][xor u8]`: a sealed one with a byte changed;
//! - 3 replayed: `[which u8]`: a sealed one again;
//! - 4 cut: `[which u8][len u16]`: a sealed one cut to a length.
//!
//! Checks: only sealed datagrams are ever accepted; one that was admitted is never admitted
//! again while the replay table holds every sender (a table too small for the senders
//! forgets some, by design: only key holders create senders); every datagram is counted
//! once, as received or as dropped for one reason.

#![no_main]

use cluster_helper::__fuzz::{Counts, Gossip};
use easy_rpc_fuzz::{be_u64, chunks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let max_senders = if first == 0 {
        4096
    } else {
        1 + usize::from(first % 8)
    };
    let mut g = Gossip::new(max_senders);
    // Sealed datagrams, and whether each was admitted (fresh and new) when first received.
    let mut sealed: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut senders = std::collections::HashSet::new();
    for chunk in chunks(rest, 5) {
        let b = chunk.body;
        let pick = |sealed: &[(Vec<u8>, bool)]| -> Option<usize> {
            (!sealed.is_empty()).then(|| usize::from(*b.first().unwrap_or(&0)) % sealed.len())
        };
        let before = g.counts();
        match chunk.kind {
            0 => {
                assert!(!receive(&mut g, b), "a forged datagram was accepted");
            }
            1 => {
                let sender = u64::from(*b.first().unwrap_or(&0));
                senders.insert(sender);
                let skew = i16::from_be_bytes([*b.get(1).unwrap_or(&0), *b.get(2).unwrap_or(&0)]);
                let counter = be_u64(b.get(3..11).unwrap_or(&[]));
                let plaintext = b.get(11..).unwrap_or(&[]);
                let packet = g.seal(sender, i64::from(skew), counter, plaintext);
                assert!(g.opens(&packet));
                receive(&mut g, &packet);
                let after = g.counts();
                let admitted = after.stale == before.stale && after.replayed == before.replayed;
                sealed.push((packet, admitted));
            }
            2 => {
                let Some(i) = pick(&sealed) else { continue };
                let mut packet = sealed[i].0.clone();
                let at = usize::from(u16::from_be_bytes([
                    *b.get(1).unwrap_or(&0),
                    *b.get(2).unwrap_or(&0),
                ])) % packet.len();
                packet[at] ^= b.get(3).copied().filter(|x| *x != 0).unwrap_or(1);
                assert!(!g.opens(&packet), "a changed datagram still opens");
                assert!(!receive(&mut g, &packet), "a changed datagram was accepted");
            }
            3 => {
                let Some(i) = pick(&sealed) else { continue };
                let (packet, admitted) = sealed[i].clone();
                let got = receive(&mut g, &packet);
                if admitted && senders.len() <= max_senders {
                    assert!(!got, "a replayed datagram was accepted");
                    let after = g.counts();
                    assert_eq!(
                        after.replayed + after.stale,
                        before.replayed + before.stale + 1
                    );
                }
            }
            _ => {
                let Some(i) = pick(&sealed) else { continue };
                let packet = &sealed[i].0;
                let len = usize::from(u16::from_be_bytes([
                    *b.get(1).unwrap_or(&0),
                    *b.get(2).unwrap_or(&0),
                ]));
                if len < packet.len() {
                    assert!(
                        !receive(&mut g, &packet[..len]),
                        "a cut datagram was accepted"
                    );
                }
            }
        }
    }
});

/// Receives one datagram, checking that it is counted once.
fn receive(g: &mut Gossip, packet: &[u8]) -> bool {
    let total = |c: Counts| c.received + c.rejected + c.stale + c.replayed;
    let before = total(g.counts());
    let got = g.receive(packet).is_some();
    assert_eq!(
        total(g.counts()),
        before + 1,
        "a datagram counted other than once"
    );
    got
}
