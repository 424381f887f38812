//! A message of a peer holding the cluster key: the input is the plaintext, sealed with the
//! key (so it gets past authentication), received as the transport does (opened, checked
//! fresh, decoded as chitchat's envelope), then processed by a node's chitchat state (digests,
//! deltas, zstd-compressed blocks) and every node it then holds read as a member, as the
//! registry does.

#![no_main]

use cluster_helper::__fuzz::{Gossip, chitchat, process};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut g = Gossip::new(4096);
    let packet = g.seal(1, 0, 0, data);
    let Some(envelope) = g.receive(&packet) else {
        let c = g.counts();
        assert_eq!(
            c.rejected, 1,
            "an authentic, fresh datagram is only refused as unreadable"
        );
        return;
    };
    let mut state = chitchat();
    process(&mut state, envelope);
});
