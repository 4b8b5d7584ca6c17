//! The bodies hubbub replicas exchange over RabbitMQ (`hubbub_amqp::wire`):
//! length-prefixed JSON and the binary attachments after it.
//!
//! Properties: decoding never panics and allocates no more than the input
//! announces and holds; an accepted body has exactly the attachments its JSON
//! counts, each no larger than the input; re-encoded the way a replica
//! publishes it (`encode_broadcast` with its attachments, `encode` otherwise),
//! it decodes to the same body and attachments.
#![no_main]

use bytes::Bytes;
use hubbub_amqp::wire::{self, Body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let Ok((body, binary)) = wire::decode(&input) else {
        return;
    };
    let bins = match &body {
        Body::Broadcast { bins, .. } => *bins,
        _ => 0,
    };
    assert_eq!(binary.len(), bins);
    assert!(binary.iter().map(|b| b.len() + 4).sum::<usize>() <= data.len());
    let encoded = match &body {
        Body::Broadcast { nsp, sel, data, .. } => wire::encode_broadcast(nsp, sel, data, &binary),
        other => wire::encode(other),
    };
    let (again, again_binary) =
        wire::decode(&Bytes::from(encoded)).expect("a re-encoded body decodes");
    assert_eq!(again, body);
    assert_eq!(again_binary, binary);
});
