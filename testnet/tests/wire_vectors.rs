//! The request-response protocols of SPEC §8, to the byte: every request and response type
//! of `/jangteo/trade/1`, `/jangteo/sync/1`, `/jangteo/blob/1`, `/jangteo/mailbox/1` and
//! `/jangteo/dm/1` is encoded with the codec the node itself uses (libp2p's
//! `request_response::cbor`, which is cbor4ii's serde serializer), and the bytes must equal
//! the hex in SPEC.md's wire vectors.
//! The vectors are made from the real node types, so the document cannot drift from the code.
//! Print them with `cargo test --release -p jangteo-testnet --test wire_vectors print_wire_vectors --
//! --ignored --nocapture`.

use futures::io::Cursor;
use jangteo_node::net::{
    BLOB_REQUEST_MAX_BYTES, BLOB_RESPONSE_MAX_BYTES, BlobRequest, BlobResponse, DmRequest,
    DmResponse, MAILBOX_REQUEST_MAX_BYTES, MAILBOX_RESPONSE_MAX_BYTES, MailboxRequest,
    MailboxResponse, SYNC_REQUEST_MAX_BYTES, SYNC_RESPONSE_MAX_BYTES, SyncRequest, SyncResponse,
    TRADE_MESSAGE_MAX_BYTES, TradeRequest, TradeResponse,
};
use libp2p::StreamProtocol;
use libp2p::request_response::{Codec as _, cbor::codec::Codec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_bytes::ByteBuf;

const SPEC: &str = include_str!("../../protocol/SPEC.md");

/// The envelope hex of object vector `n` in SPEC §9.
fn object_vector(n: usize) -> Vec<u8> {
    let block = SPEC
        .split(&format!("### Vector {n}:"))
        .nth(1)
        .unwrap_or_else(|| panic!("SPEC has no vector {n}"));
    let line = block
        .lines()
        .find_map(|l| l.strip_prefix("- envelope: `"))
        .expect("envelope line");
    hex::decode(line.trim_end_matches('`')).expect("hex")
}

/// The envelope hex of message vector `n` in SPEC §13.
fn message_vector(n: usize) -> Vec<u8> {
    let block = SPEC
        .split(&format!("### Message vector {n}:"))
        .nth(1)
        .unwrap_or_else(|| panic!("SPEC has no message vector {n}"));
    let line = block
        .lines()
        .find_map(|l| l.strip_prefix("- envelope: `"))
        .expect("envelope line");
    hex::decode(line.trim_end_matches('`')).expect("hex")
}

fn id_of(bytes: &[u8]) -> ByteBuf {
    ByteBuf::from(blake3::hash(bytes).as_bytes().to_vec())
}

fn protocol() -> StreamProtocol {
    StreamProtocol::new("/jangteo/test/1")
}

/// What the node writes on a request stream.
fn request_bytes<Req, Resp>(req: Req) -> Vec<u8>
where
    Req: Serialize + DeserializeOwned + Send,
    Resp: Serialize + DeserializeOwned + Send,
{
    let mut out = Cursor::new(Vec::new());
    futures::executor::block_on(Codec::<Req, Resp>::default().write_request(
        &protocol(),
        &mut out,
        req,
    ))
    .expect("write");
    out.into_inner()
}

/// What the node writes on a response stream.
fn response_bytes<Req, Resp>(resp: Resp) -> Vec<u8>
where
    Req: Serialize + DeserializeOwned + Send,
    Resp: Serialize + DeserializeOwned + Send,
{
    let mut out = Cursor::new(Vec::new());
    futures::executor::block_on(Codec::<Req, Resp>::default().write_response(
        &protocol(),
        &mut out,
        resp,
    ))
    .expect("write");
    out.into_inner()
}

/// Reads bytes back as a request, the way the node reads a stream (to its end, capped).
fn read_request<Req, Resp>(bytes: &[u8], cap: u64) -> std::io::Result<Req>
where
    Req: Serialize + DeserializeOwned + Send,
    Resp: Serialize + DeserializeOwned + Send,
{
    let mut codec = Codec::<Req, Resp>::default().set_request_size_maximum(cap);
    futures::executor::block_on(codec.read_request(&protocol(), &mut Cursor::new(bytes)))
}

/// The mailbox seal of SPEC §6's vector: the accept chain of vectors 5 and 6, sealed to the
/// buyer's key (seed 04…) with the ephemeral secret 07….
fn sealed_item() -> Vec<u8> {
    let buyer = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    let to = jangteo_protocol::PublicKey(buyer.verifying_key().to_bytes());
    let bundle = jangteo_protocol::mailbox::encode_bundle(&[object_vector(5), object_vector(6)]);
    jangteo_protocol::mailbox::seal(&to, [7; 32], &bundle).expect("seal")
}

/// (title, bytes) of every wire vector, in SPEC order.
fn wire_vectors() -> Vec<(String, Vec<u8>)> {
    let offer = object_vector(5);
    let cancel = object_vector(10);
    let profile = object_vector(4);
    let manifest = jangteo_protocol::blob::Manifest::of(b"jangteo").expect("manifest");
    let blob_id = ByteBuf::from(manifest.id().0.to_vec());
    let sealed = sealed_item();
    let buyer = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    let buyer_key = ByteBuf::from(buyer.verifying_key().to_bytes().to_vec());
    let mut v: Vec<(String, Vec<u8>)> = Vec::new();
    v.push((
        "trade request, `TradeRequest { messages: [vector 5, vector 10] }` (an offer and its cancel)"
            .into(),
        request_bytes::<_, TradeResponse>(TradeRequest {
            messages: vec![ByteBuf::from(offer.clone()), ByteBuf::from(cancel.clone())],
        }),
    ));
    for (t, r) in [
        ("`TradeResponse::Accepted`", TradeResponse::Accepted),
        (
            "`TradeResponse::Busy(\"queue full\")`",
            TradeResponse::Busy("queue full".into()),
        ),
        (
            "`TradeResponse::Refused(\"listing not held\")`",
            TradeResponse::Refused("listing not held".into()),
        ),
    ] {
        v.push((
            format!("trade response, {t}"),
            response_bytes::<TradeRequest, _>(r),
        ));
    }
    for (t, r) in [
        (
            "`SyncRequest::Reconcile { shard: \"listings/bikes\", msg: h'61' }`",
            SyncRequest::Reconcile {
                shard: "listings/bikes".into(),
                msg: ByteBuf::from(vec![0x61]),
            },
        ),
        (
            "`SyncRequest::Fetch { ids: [id of vector 4] }`",
            SyncRequest::Fetch {
                ids: vec![id_of(&profile)],
            },
        ),
    ] {
        v.push((
            format!("sync request, {t}"),
            request_bytes::<_, SyncResponse>(r),
        ));
    }
    for (t, r) in [
        (
            "`SyncResponse::Reconciled { msg: h'61' }`",
            SyncResponse::Reconciled {
                msg: ByteBuf::from(vec![0x61]),
            },
        ),
        (
            "`SyncResponse::Objects { objects: [vector 4], next: None }`",
            SyncResponse::Objects {
                objects: vec![ByteBuf::from(profile.clone())],
                next: None,
            },
        ),
        (
            "`SyncResponse::Objects { objects: [vector 4], next: Some(id of vector 10) }`",
            SyncResponse::Objects {
                objects: vec![ByteBuf::from(profile.clone())],
                next: Some(id_of(&cancel)),
            },
        ),
        (
            "`SyncResponse::Refused(\"rate limit\")`",
            SyncResponse::Refused("rate limit".into()),
        ),
    ] {
        v.push((
            format!("sync response, {t}"),
            response_bytes::<SyncRequest, _>(r),
        ));
    }
    for (t, r) in [
        (
            "`BlobRequest::Manifest { id }` (the blob of the 7 bytes `jangteo`)",
            BlobRequest::Manifest {
                id: blob_id.clone(),
            },
        ),
        (
            "`BlobRequest::Chunk { id, index: 0 }`",
            BlobRequest::Chunk {
                id: blob_id.clone(),
                index: 0,
            },
        ),
    ] {
        v.push((
            format!("blob request, {t}"),
            request_bytes::<_, BlobResponse>(r),
        ));
    }
    for (t, r) in [
        (
            "`BlobResponse::Manifest(manifest)`",
            BlobResponse::Manifest(ByteBuf::from(manifest.encode())),
        ),
        (
            "`BlobResponse::Chunk(b\"jangteo\")`",
            BlobResponse::Chunk(ByteBuf::from(b"jangteo".to_vec())),
        ),
        ("`BlobResponse::NotFound`", BlobResponse::NotFound),
        (
            "`BlobResponse::Refused(\"rate limit\")`",
            BlobResponse::Refused("rate limit".into()),
        ),
    ] {
        v.push((
            format!("blob response, {t}"),
            response_bytes::<BlobRequest, _>(r),
        ));
    }
    for (t, r) in [
        (
            "`MailboxRequest::Put { to: buyer's key, sealed: the seal vector }`",
            MailboxRequest::Put {
                to: buyer_key.clone(),
                sealed: ByteBuf::from(sealed.clone()),
            },
        ),
        ("`MailboxRequest::Fetch`", MailboxRequest::Fetch),
        (
            "`MailboxRequest::Ack { ids: [blake3(sealed)] }`",
            MailboxRequest::Ack {
                ids: vec![id_of(&sealed)],
            },
        ),
    ] {
        v.push((
            format!("mailbox request, {t}"),
            request_bytes::<_, MailboxResponse>(r),
        ));
    }
    for (t, r) in [
        ("`MailboxResponse::Stored`", MailboxResponse::Stored),
        (
            "`MailboxResponse::Items([(blake3(sealed), sealed)])`",
            MailboxResponse::Items(vec![(id_of(&sealed), ByteBuf::from(sealed.clone()))]),
        ),
        ("`MailboxResponse::Done`", MailboxResponse::Done),
        (
            "`MailboxResponse::Refused(\"mailbox full\")`",
            MailboxResponse::Refused("mailbox full".into()),
        ),
    ] {
        v.push((
            format!("mailbox response, {t}"),
            response_bytes::<MailboxRequest, _>(r),
        ));
    }
    v.push((
        "direct message request, `DmRequest { object: message vector 1 }`".into(),
        request_bytes::<_, DmResponse>(DmRequest {
            object: ByteBuf::from(message_vector(1)),
        }),
    ));
    for (t, r) in [
        (
            "`DmResponse::Delivered(message vector 3)` (a receipt's envelope)",
            DmResponse::Delivered(ByteBuf::from(message_vector(3))),
        ),
        ("`DmResponse::Accepted`", DmResponse::Accepted),
        (
            "`DmResponse::Busy(\"rate limit\")`",
            DmResponse::Busy("rate limit".into()),
        ),
        (
            "`DmResponse::Refused(\"blocked\")`",
            DmResponse::Refused("blocked".into()),
        ),
    ] {
        v.push((
            format!("direct message response, {t}"),
            response_bytes::<DmRequest, _>(r),
        ));
    }
    v
}

fn markdown() -> String {
    let mut out = String::new();
    for (i, (title, bytes)) in wire_vectors().into_iter().enumerate() {
        out.push_str(&format!(
            "#### Wire vector {}: {title}\n\n- bytes: `{}`\n\n",
            i + 1,
            hex::encode(bytes)
        ));
    }
    out
}

#[test]
fn spec_wire_vectors_match_the_node_codec() {
    let blocks: Vec<&str> = SPEC.split("#### Wire vector ").skip(1).collect();
    let vectors = wire_vectors();
    assert_eq!(
        blocks.len(),
        vectors.len(),
        "SPEC.md's wire vectors are out of date; print them with `cargo test --release -p jangteo-testnet --test wire_vectors print_wire_vectors -- --ignored --nocapture`"
    );
    for (i, (block, (title, bytes))) in blocks.iter().zip(vectors).enumerate() {
        let heading = block.lines().next().unwrap_or_default();
        assert_eq!(
            heading,
            format!("{}: {title}", i + 1),
            "wire vector {}",
            i + 1
        );
        let hex_line = block
            .lines()
            .find_map(|l| l.strip_prefix("- bytes: `"))
            .unwrap_or_else(|| panic!("wire vector {}: no bytes", i + 1));
        assert_eq!(
            hex_line.trim_end_matches('`'),
            hex::encode(&bytes),
            "wire vector {}: {title}",
            i + 1
        );
    }
}

#[test]
fn the_seal_vector_matches() {
    let block = SPEC
        .split("### Mailbox seal vector")
        .nth(1)
        .expect("SPEC has the mailbox seal vector");
    let field = |name: &str| {
        block
            .lines()
            .find_map(|l| l.strip_prefix(&format!("- {name}: `")))
            .map(|v| v.trim_end_matches('`').to_owned())
            .unwrap_or_else(|| panic!("seal vector: no {name}"))
    };
    let sealed = sealed_item();
    assert_eq!(field("sealed"), hex::encode(&sealed));
    let plaintext = jangteo_protocol::mailbox::encode_bundle(&[object_vector(5), object_vector(6)]);
    assert_eq!(field("plaintext"), hex::encode(&plaintext));
    let buyer = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    assert_eq!(
        jangteo_protocol::mailbox::open(&buyer, &sealed).expect("opens"),
        plaintext
    );
}

/// What SPEC §8 says about reading: one CBOR item per stream, no length prefix, read to the
/// end up to the cap; a stream longer than the cap is cut there and fails to decode; bytes
/// after the item and unknown struct fields are ignored; fields may come in any order.
#[test]
fn framing_and_leniency_are_as_specified() {
    let req = TradeRequest {
        messages: vec![ByteBuf::from(vec![0u8; 1000])],
    };
    let bytes = request_bytes::<_, TradeResponse>(req);
    read_request::<TradeRequest, TradeResponse>(&bytes, TRADE_MESSAGE_MAX_BYTES).expect("fits");
    assert!(
        read_request::<TradeRequest, TradeResponse>(&bytes, bytes.len() as u64 - 1).is_err(),
        "a request longer than the cap is refused"
    );
    let big = TradeRequest {
        messages: vec![ByteBuf::from(vec![0u8; TRADE_MESSAGE_MAX_BYTES as usize])],
    };
    let big = request_bytes::<_, TradeResponse>(big);
    assert!(read_request::<TradeRequest, TradeResponse>(&big, TRADE_MESSAGE_MAX_BYTES).is_err());
    // Trailing bytes after the item are ignored.
    let mut trailing = bytes.clone();
    trailing.extend_from_slice(&[0xff, 0x00]);
    read_request::<TradeRequest, TradeResponse>(&trailing, TRADE_MESSAGE_MAX_BYTES)
        .expect("trailing bytes ignored");
    // An unknown field is ignored; fields in another order are read.
    // {"zz": 1, "messages": [h'00']}
    let mut reordered = vec![0xa2, 0x62, b'z', b'z', 0x01, 0x68];
    reordered.extend_from_slice(b"messages");
    reordered.extend_from_slice(&[0x81, 0x41, 0x00]);
    let r = read_request::<TradeRequest, TradeResponse>(&reordered, TRADE_MESSAGE_MAX_BYTES)
        .expect("lenient reader");
    assert_eq!(r.messages, vec![ByteBuf::from(vec![0u8])]);
    // A unit variant is its name as text; an unknown name is refused.
    let fetch = request_bytes::<_, MailboxResponse>(MailboxRequest::Fetch);
    assert_eq!(fetch, [&[0x65][..], b"Fetch"].concat());
    assert!(
        read_request::<MailboxRequest, MailboxResponse>(b"\x65Fetcx", 1024).is_err(),
        "unknown variant"
    );
    // The caps are what SPEC §8.4-§8.7 say.
    assert_eq!(TRADE_MESSAGE_MAX_BYTES, 524_288);
    assert_eq!(
        (SYNC_REQUEST_MAX_BYTES, SYNC_RESPONSE_MAX_BYTES),
        (65_536, 8_388_608)
    );
    assert_eq!(
        (BLOB_REQUEST_MAX_BYTES, BLOB_RESPONSE_MAX_BYTES),
        (1_024, 266_240)
    );
    assert_eq!(
        (MAILBOX_REQUEST_MAX_BYTES, MAILBOX_RESPONSE_MAX_BYTES),
        (266_240, 4_259_840)
    );
}

#[test]
#[ignore = "prints the wire vectors section of SPEC.md"]
fn print_wire_vectors() {
    println!("{}", markdown());
    let sealed = sealed_item();
    let plaintext = jangteo_protocol::mailbox::encode_bundle(&[object_vector(5), object_vector(6)]);
    println!(
        "- plaintext: `{}`\n- sealed: `{}`",
        hex::encode(plaintext),
        hex::encode(sealed)
    );
}
