//! Checks the test vectors printed in `protocol/SPEC.md` against this implementation, so
//! the document and the code cannot drift apart.

use ed25519_dalek::SigningKey;

use crate::PublicKey;
use crate::attestation::Attestation;
use crate::listing::{Condition, Listing, ListingStatus, Location};
use crate::profile::Profile;
use crate::report::{Report, ReportReason};
use crate::trade::{Equivocation, Role, Terms, TradeMessage};
use crate::{Kind, SignedObject, verify_object};

const SPEC: &str = include_str!("../SPEC.md");
const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
/// The time every vector is checked at (SPEC §9's reference time): T0 + 1 hour.
const REFERENCE_NOW: u64 = T0 + 3_600_000;

/// The objects the vectors are made of: (title, secret key seed, kind, body).
fn vector_objects() -> Vec<(&'static str, [u8; 32], Kind, Vec<u8>)> {
    let bike = Listing {
        stamp: None,
        nonce: *b"jangteo-vector-1",
        seq: 1,
        created_at: T0,
        updated_at: T0,
        expires_at: T0 + 30 * 86_400_000,
        status: ListingStatus::Active,
        title: "중고 자전거를 팝니다".into(),
        description: "2019년식, 마포구 직거래".into(),
        category: "bikes".into(),
        condition: Some(Condition::Good),
        price: 150_000,
        currency: "KRW".into(),
        quantity: 1,
        images: vec![*blake3::hash(b"photo-1").as_bytes()],
        location: Location::from_degrees(37.5563, 126.9220),
        moderators: vec![],
    };
    let pot = Listing {
        stamp: None,
        nonce: *b"jangteo-vector-2",
        seq: 1,
        created_at: T0 + 1,
        updated_at: T0 + 1,
        expires_at: T0 + 7 * 86_400_000,
        status: ListingStatus::Active,
        title: "中古の自転車を売ります".into(),
        description: String::new(),
        category: "general".into(),
        condition: None,
        price: 8_000,
        currency: "JPY".into(),
        quantity: 2,
        images: vec![],
        location: None,
        moderators: vec![],
    };
    let retracted = Listing {
        seq: 2,
        updated_at: T0 + 3_600_000,
        status: ListingStatus::Retracted,
        ..bike.clone()
    };
    let profile = Profile {
        name: "Mapo flea market".into(),
        bio: "Weekend seller.".into(),
        updated_at: T0,
    };
    let seller = PublicKey(SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes());
    let terms = Terms {
        listing: bike.id(&seller),
        listing_seq: 1,
        price: 140_000,
        currency: "KRW".into(),
        quantity: 1,
    };
    let offer = TradeMessage {
        trade: None,
        prev: None,
        at: T0 + 60_000,
        seller: Some(seller),
        terms: Some(terms.clone()),
        moderators: vec![],
        note: "토요일에 망원역에서 가능할까요?".into(),
        outcome: None,
    };
    let offer_id = SignedObject::sign(
        Kind::Offer,
        offer.encode(),
        &SigningKey::from_bytes(&[4; 32]),
    )
    .id();
    let mut accept = TradeMessage::follow(offer_id, offer_id, T0 + 120_000);
    accept.terms = Some(terms);
    // The rest of that trade, to completion, and the buyer's rating of the seller.
    let buyer_key = SigningKey::from_bytes(&[4; 32]);
    let seller_key = SigningKey::from_bytes(&[1; 32]);
    let mut chain = vec![
        SignedObject::sign(Kind::Offer, offer.encode(), &buyer_key),
        SignedObject::sign(Kind::Accept, accept.encode(), &seller_key),
    ];
    for (i, (kind, key)) in [
        (Kind::Paid, &buyer_key),
        (Kind::Shipped, &seller_key),
        (Kind::Received, &buyer_key),
    ]
    .into_iter()
    .enumerate()
    {
        let prev = chain.last().map(SignedObject::id).unwrap_or(offer_id);
        let mut m = TradeMessage::follow(offer_id, prev, T0 + 180_000 + 60_000 * i as u64);
        if kind == Kind::Shipped {
            m.outcome = Some("handed-over".into());
        }
        chain.push(SignedObject::sign(kind, m.encode(), key));
    }
    // An equivocation: the seller signs a second accept of the same offer.
    let mut accept2 = TradeMessage::follow(offer_id, offer_id, T0 + 150_000);
    accept2.terms = accept.terms.clone();
    let proof = Equivocation {
        first: SignedObject::sign(Kind::Accept, accept.encode(), &seller_key),
        second: SignedObject::sign(Kind::Accept, accept2.encode(), &seller_key),
    };
    // A race: the buyer cancels the offer while the seller's accept is on its way.
    let cancel = TradeMessage::follow(offer_id, offer_id, T0 + 120_000);
    // Listing rules: an active version after the retraction, and expires moved earlier.
    let revived = Listing {
        seq: 3,
        updated_at: T0 + 3_600_000,
        ..bike.clone()
    };
    let shortened = Listing {
        seq: 2,
        updated_at: T0 + 3_600_000,
        expires_at: T0 + 10 * 86_400_000,
        ..bike.clone()
    };
    let rating = Attestation {
        chain: chain.iter().map(|o| o.bytes().to_vec()).collect(),
        about: seller,
        role: Role::Buyer,
        score: 5,
        comment: "친절하고 물건 상태도 좋아요".into(),
        at: T0 + 600_000,
        stamp: None,
    };
    // Reports: vector 4's author reports vector 1's listing, then its seller's key.
    let report_listing = Report {
        about: seller,
        listing: Some(bike.id(&seller).0),
        reason: ReportReason::Scam,
        text: "선입금을 요구하고 연락이 끊겼어요".into(),
        at: T0 + 1_800_000,
    };
    let report_key = Report {
        about: seller,
        listing: None,
        reason: ReportReason::Spam,
        text: String::new(),
        at: T0 + 1_860_000,
    };
    vec![
        (
            "listing, Korean title, location and image",
            [1; 32],
            Kind::Listing,
            bike.encode(),
        ),
        (
            "listing, Japanese title, no optional fields",
            [2; 32],
            Kind::Listing,
            pot.encode(),
        ),
        (
            "listing retraction (seq 2 of vector 1)",
            [1; 32],
            Kind::Listing,
            retracted.encode(),
        ),
        ("profile", [3; 32], Kind::Profile, profile.encode()),
        (
            "trade offer on vector 1's listing",
            [4; 32],
            Kind::Offer,
            offer.encode(),
        ),
        (
            "trade accept of that offer by the seller",
            [1; 32],
            Kind::Accept,
            accept.encode(),
        ),
        (
            "attestation by the buyer of that trade, completed, about the seller",
            [4; 32],
            Kind::Attestation,
            rating.encode(),
        ),
        (
            "a second accept of vector 5's offer by the seller (equivocation with vector 6)",
            [1; 32],
            Kind::Accept,
            accept2.encode(),
        ),
        (
            "equivocation proof of vectors 6 and 8, found and signed by the buyer",
            [4; 32],
            Kind::Equivocation,
            proof.encode(),
        ),
        (
            "the buyer's cancel of vector 5's offer, racing vector 6 (the accept wins)",
            [4; 32],
            Kind::Cancel,
            cancel.encode(),
        ),
        (
            "listing seq 3 of vector 1, active again after vector 3's retraction (ignored)",
            [1; 32],
            Kind::Listing,
            revived.encode(),
        ),
        (
            "listing seq 2 of vector 1 moving expires earlier (ignored)",
            [1; 32],
            Kind::Listing,
            shortened.encode(),
        ),
        (
            "report of vector 1's listing (scam, with text) by vector 4's author",
            [3; 32],
            Kind::Report,
            report_listing.encode(),
        ),
        (
            "report of vector 1's seller key (spam, no text) by vector 4's author",
            [3; 32],
            Kind::Report,
            report_key.encode(),
        ),
    ]
}

/// SPEC §7.1's vector: the stamp subject of vector 7's attestation (by the buyer, seed `04`
/// × 32) and the lowest 16-bit stamp on it; printed with `--nocapture` when SPEC differs.
#[test]
fn spec_attestation_stamp_vector() {
    use crate::stamp::{ATTESTATION_CONTEXT, Worker, solve};
    let (_, seed, kind, body) = vector_objects().swap_remove(6);
    assert_eq!(kind, Kind::Attestation);
    let a = Attestation::decode(&body).expect("vector 7");
    let author = PublicKey(SigningKey::from_bytes(&seed).verifying_key().to_bytes());
    let subject = a.stamp_subject(&author);
    let nonce = solve(ATTESTATION_CONTEXT, &subject, 16);
    let hash = hex::encode(Worker::new(ATTESTATION_CONTEXT, &subject).hash(nonce));
    let text = format!(
        "subject `{}`, stamp `{nonce}`, work hash `{hash}`",
        hex::encode(subject)
    );
    println!("{text}");
    assert!(SPEC.contains(&text), "SPEC §7.1 should say: {text}");
}

/// The verdicts SPEC.md gives for vectors 8-12.
#[test]
fn spec_vector_verdicts_hold() {
    use crate::listing::{HeadChoice, choose_head};
    use crate::trade::{ChainMessage, TradeChain, TradeState};
    let objs: Vec<SignedObject> = vector_objects()
        .into_iter()
        .map(|(_, seed, kind, body)| SignedObject::sign(kind, body, &SigningKey::from_bytes(&seed)))
        .collect();
    let cm = |i: usize| ChainMessage::new(objs[i - 1].clone(), T0 + 3_600_000).expect("valid");
    // Equivocation: whichever the node held first stays, and the proof names the seller.
    let r = TradeChain::replay(cm(5), vec![cm(6), cm(8)]).expect("replay");
    assert_eq!(
        (r.chain.state, r.chain.head()),
        (TradeState::Accepted, objs[5].id())
    );
    assert_eq!(r.equivocations.len(), 1);
    let (_, crate::Object::Equivocation(e)) =
        verify_object(objs[8].bytes(), T0 + 3_600_000).expect("vector 9 verifies")
    else {
        panic!("vector 9 is an equivocation proof");
    };
    assert_eq!(e.1.author, objs[5].envelope().author);
    // The race resolves to the accept in either order.
    for others in [vec![cm(6), cm(10)], vec![cm(10), cm(6)]] {
        let r = TradeChain::replay(cm(5), others).expect("replay");
        assert_eq!(
            (r.chain.state, r.chain.head()),
            (TradeState::Accepted, objs[5].id())
        );
        assert!(r.equivocations.is_empty());
    }
    let listing = |i: usize| match crate::decode_body(&objs[i - 1], T0 + 3_600_000).expect("valid")
    {
        crate::Object::Listing(l) => l,
        _ => panic!("vector {i} is a listing"),
    };
    assert!(matches!(
        choose_head(&listing(3), &listing(11)),
        HeadChoice::Refused(_)
    ));
    assert_eq!(choose_head(&listing(11), &listing(3)), HeadChoice::Replace);
    assert!(matches!(
        choose_head(&listing(1), &listing(12)),
        HeadChoice::Refused(_)
    ));
}

fn spec_field<'a>(block: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("- {name}: `");
    block
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|r| r.strip_suffix('`'))
}

fn markdown() -> String {
    let mut out = String::new();
    for (i, (title, seed, kind, body)) in vector_objects().into_iter().enumerate() {
        let obj = SignedObject::sign(kind, body.clone(), &SigningKey::from_bytes(&seed));
        out.push_str(&format!(
            "### Vector {}: {title}\n\n- secret key: `{}`\n- author peer id: `{}`\n- body: `{}`\n- envelope: `{}`\n- signature: `{}`\n- id: `{}`\n\n",
            i + 1,
            hex::encode(seed),
            obj.envelope().author.peer_id(),
            hex::encode(&body),
            hex::encode(obj.bytes()),
            hex::encode(obj.envelope().signature),
            obj.id()
        ));
    }
    out
}

#[test]
fn spec_vectors_match_the_implementation() {
    assert!(
        !SPEC.contains("VECTORS_PLACEHOLDER"),
        "SPEC.md has no vectors yet; generate them with `cargo test --release -p jangteo-protocol print_vectors -- --ignored --nocapture`"
    );
    let blocks: Vec<&str> = SPEC
        .split("### Vector ")
        .skip(1)
        .map(|b| b.split("\n#").next().unwrap_or(b))
        .collect();
    let objects = vector_objects();
    assert!(
        blocks.len() >= 3 && blocks.len() == objects.len(),
        "{} vector blocks",
        blocks.len()
    );
    for (block, (title, seed, kind, body)) in blocks.iter().zip(objects) {
        let hexf = |name| {
            hex::decode(spec_field(block, name).unwrap_or_else(|| panic!("{title}: no {name}")))
                .expect("hex")
        };
        assert_eq!(hexf("secret key"), seed, "{title}");
        assert_eq!(hexf("body"), body, "{title}: body bytes");
        // Signing is deterministic (RFC 8032): same key and body, same signature and bytes.
        let obj = SignedObject::sign(kind, body, &SigningKey::from_bytes(&seed));
        assert_eq!(hexf("envelope"), obj.bytes(), "{title}: envelope bytes");
        assert_eq!(
            hexf("signature"),
            obj.envelope().signature,
            "{title}: signature"
        );
        assert_eq!(
            spec_field(block, "id"),
            Some(obj.id().to_hex().as_str()),
            "{title}: id"
        );
        assert_eq!(
            spec_field(block, "author peer id"),
            Some(obj.envelope().author.peer_id().as_str())
        );
        // And the envelope from the document verifies and validates on its own.
        verify_object(&hexf("envelope"), REFERENCE_NOW).unwrap_or_else(|e| panic!("{title}: {e}"));
    }
}

#[test]
#[ignore = "prints the vectors section of SPEC.md"]
fn print_vectors() {
    println!("{}", markdown());
    println!("{}", reject_markdown());
}

/// A must-reject vector: its title, its bytes and the error code every implementation must
/// give (SPEC §10).
struct RejectVector {
    title: &'static str,
    bytes: Vec<u8>,
    error: &'static str,
}

/// Vector 2's listing body with one field changed (`None` removes it), signed by its key.
fn listing_variant(
    edit: impl FnOnce(&mut Vec<(ciborium::value::Value, ciborium::value::Value)>),
) -> Vec<u8> {
    let (_, seed, kind, body) = vector_objects().swap_remove(1);
    let mut value = crate::cbor::from_slice_canonical(&body).expect("vector 2 is canonical");
    if let ciborium::value::Value::Map(entries) = &mut value {
        edit(entries);
    }
    let body = crate::cbor::to_vec(&value);
    SignedObject::sign(kind, body, &SigningKey::from_bytes(&seed))
        .bytes()
        .to_vec()
}

/// Sets the text field `key` of a body map.
fn set_text(
    entries: &mut [(ciborium::value::Value, ciborium::value::Value)],
    key: &str,
    text: &str,
) {
    for (k, v) in entries.iter_mut() {
        if k.as_text() == Some(key) {
            *v = ciborium::value::Value::Text(text.into());
        }
    }
}

/// Inserts `key` in canonical position.
fn insert(
    entries: &mut Vec<(ciborium::value::Value, ciborium::value::Value)>,
    key: &str,
    value: ciborium::value::Value,
) {
    let pos = entries
        .iter()
        .position(|(k, _)| {
            let k = k.as_text().unwrap_or("");
            (k.len(), k.as_bytes()) > (key.len(), key.as_bytes())
        })
        .unwrap_or(entries.len());
    entries.insert(pos, (ciborium::value::Value::Text(key.into()), value));
}

fn reject_vectors() -> Vec<RejectVector> {
    use ciborium::value::Value;
    let objects = vector_objects();
    let sign = |i: usize, body: Vec<u8>| {
        let (_, seed, kind, _) = &objects[i - 1];
        SignedObject::sign(*kind, body, &SigningKey::from_bytes(seed))
            .bytes()
            .to_vec()
    };
    let body_of = |i: usize| objects[i - 1].3.clone();
    let replace = |bytes: Vec<u8>, from: &[u8], to: &[u8]| {
        let pos = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("pattern in vector");
        [&bytes[..pos], to, &bytes[pos + from.len()..]].concat()
    };
    let mut out = Vec::new();
    // Non-canonical CBOR.
    out.push(RejectVector {
        title: "vector 2 with `seq` as a two-byte integer (`18 01`), signed",
        bytes: sign(2, replace(body_of(2), b"\x63seq\x01", b"\x63seq\x18\x01")),
        error: "not-canonical",
    });
    out.push(RejectVector {
        title: "vector 4's profile body with its keys unsorted (`name` before `bio`), signed",
        bytes: {
            let Value::Map(mut m) = crate::cbor::from_slice_canonical(&body_of(4)).expect("map")
            else {
                unreachable!("a body is a map")
            };
            m.swap(0, 1);
            sign(4, crate::cbor::to_vec(&Value::Map(m)))
        },
        error: "not-canonical",
    });
    out.push(RejectVector {
        title: "vector 4's envelope as an indefinite-length array (`9f … ff`)",
        bytes: {
            let env = sign(4, body_of(4));
            [&[0x9f][..], &env[1..], &[0xff]].concat()
        },
        error: "not-canonical",
    });
    out.push(RejectVector {
        title: "vector 2 with `location: [[[0]], 0]` (five levels), signed",
        bytes: listing_variant(|e| {
            insert(
                e,
                "location",
                Value::Array(vec![
                    Value::Array(vec![Value::Array(vec![crate::cbor::uint(0)])]),
                    crate::cbor::uint(0),
                ]),
            )
        }),
        error: "too-deep",
    });
    out.push(RejectVector {
        title: "vector 2 with an explicit empty `desc: \"\"`, signed",
        bytes: listing_variant(|e| insert(e, "desc", Value::Text(String::new()))),
        error: "empty-optional",
    });
    out.push(RejectVector {
        title: "vector 2 with an unknown field `color: \"red\"`, signed",
        bytes: listing_variant(|e| insert(e, "color", Value::Text("red".into()))),
        error: "unknown-field",
    });
    // Signatures and keys.
    out.push(RejectVector {
        title: "vector 4's profile body signed under the tag `jangteo/v1/listing`, sent as a profile",
        bytes: {
            let key = SigningKey::from_bytes(&objects[3].1);
            let mut env = crate::Envelope::sign(Kind::Listing, body_of(4), &key);
            env.kind = Kind::Profile;
            env.encode()
        },
        error: "bad-signature",
    });
    out.push(RejectVector {
        title: "a profile by the small-order key `0100…00` (the identity point), zero signature",
        bytes: crate::Envelope {
            kind: Kind::Profile,
            author: PublicKey({
                let mut k = [0u8; 32];
                k[0] = 1;
                k
            }),
            body: body_of(4),
            signature: [0; 64],
        }
        .encode(),
        error: "bad-author-key",
    });
    // A broken trade chain: vector 7 with `paid` and `shipped` swapped.
    out.push(RejectVector {
        title: "vector 7's attestation with the chain's `paid` and `shipped` swapped, signed",
        bytes: {
            let a = Attestation::decode(&body_of(7)).expect("vector 7");
            let mut chain = a.chain.clone();
            chain.swap(2, 3);
            sign(7, Attestation { chain, ..a }.encode())
        },
        error: "invalid:chain",
    });
    out.push(RejectVector {
        title: "vector 7's attestation carrying only the offer, accept and paid, signed",
        bytes: {
            let a = Attestation::decode(&body_of(7)).expect("vector 7");
            let chain = a.chain[..3].to_vec();
            sign(7, Attestation { chain, ..a }.encode())
        },
        error: "invalid:chain",
    });
    // Field rules (SPEC §1.1, §3).
    for (title, key, text, error) in [
        (
            "vector 2 with the currency `ZZZ`, signed",
            "currency",
            "ZZZ",
            "invalid:currency",
        ),
        (
            "vector 2 with a title holding a right-to-left override (U+202E), signed",
            "title",
            "\u{202E}中古の自転車",
            "invalid:title",
        ),
        (
            "vector 2 with a title of zero-width spaces only (U+200B U+200B), signed",
            "title",
            "\u{200B}\u{200B}",
            "invalid:title",
        ),
        (
            "vector 2 with a title of combining marks only (U+0301 U+0302), signed",
            "title",
            "\u{0301}\u{0302}",
            "invalid:title",
        ),
        (
            "vector 2 with a title ending in an ideographic space (U+3000), signed",
            "title",
            "中古の自転車\u{3000}",
            "invalid:title",
        ),
        (
            "vector 2 with a title ending in a no-break space (U+00A0), signed",
            "title",
            "bike\u{00A0}",
            "invalid:title",
        ),
    ] {
        out.push(RejectVector {
            title,
            bytes: listing_variant(|e| set_text(e, key, text)),
            error,
        });
    }
    out.push(RejectVector {
        title: "vector 2 naming its own seller as moderator (`mods: [author]`), signed",
        bytes: listing_variant(|e| {
            let me = SigningKey::from_bytes(&[2; 32]).verifying_key().to_bytes();
            insert(e, "mods", Value::Array(vec![Value::Bytes(me.to_vec())]))
        }),
        error: "invalid:moderator",
    });
    // Too large: a listing whose description makes the envelope exceed 32 768 bytes.
    out.push(RejectVector {
        title: "vector 2 with a 32 800-byte description (`a` × 32 800), signed",
        bytes: listing_variant(|e| insert(e, "desc", Value::Text("a".repeat(32_800)))),
        error: "too-large",
    });
    // Reports (SPEC §7.2): vector 13 changed, signed by its key.
    let report = |edit: &dyn Fn(&mut Report)| {
        let mut r = Report::decode(&body_of(13)).expect("vector 13");
        edit(&mut r);
        sign(13, r.encode())
    };
    out.push(RejectVector {
        title: "vector 13 with `about` set to its own author (a report about oneself), signed",
        bytes: report(&|r| {
            r.about = PublicKey(SigningKey::from_bytes(&[3; 32]).verifying_key().to_bytes());
            r.listing = None;
        }),
        error: "invalid:about",
    });
    out.push(RejectVector {
        title: "vector 13 with the reason `rude` (not one of the five), signed",
        bytes: {
            let Value::Map(mut m) = crate::cbor::from_slice_canonical(&body_of(13)).expect("map")
            else {
                unreachable!("a body is a map")
            };
            set_text(&mut m, "reason", "rude");
            sign(13, crate::cbor::to_vec(&Value::Map(m)))
        },
        error: "wrong-type",
    });
    out.push(RejectVector {
        title: "vector 13 with a 501-byte text (`a` × 501), signed",
        bytes: report(&|r| r.text = "a".repeat(501)),
        error: "invalid:text",
    });
    out.push(RejectVector {
        title: "vector 13 dated one hour after the reference time, signed",
        bytes: report(&|r| r.at = REFERENCE_NOW + 3_600_000),
        error: "invalid:at",
    });
    out
}

/// The markdown of SPEC §10. A vector with a run of 256 or more equal bytes is written as
/// the bytes before the run, the run, and the bytes after it.
fn reject_markdown() -> String {
    let mut out = String::new();
    for (i, v) in reject_vectors().into_iter().enumerate() {
        out.push_str(&format!("### Reject vector {}: {}\n\n", i + 1, v.title));
        let (start, len) = longest_run(&v.bytes);
        if len >= 256 {
            out.push_str(&format!(
                "- bytes before: `{}`\n- then: `{:02x}` × {len}\n- bytes after: `{}`\n",
                hex::encode(&v.bytes[..start]),
                v.bytes[start],
                hex::encode(&v.bytes[start + len..])
            ));
        } else {
            out.push_str(&format!("- bytes: `{}`\n", hex::encode(&v.bytes)));
        }
        out.push_str(&format!("- error: `{}`\n\n", v.error));
    }
    out
}

fn longest_run(bytes: &[u8]) -> (usize, usize) {
    let (mut best, mut i) = ((0, 0), 0);
    while i < bytes.len() {
        let j = bytes[i..].iter().take_while(|b| **b == bytes[i]).count();
        if j > best.1 {
            best = (i, j);
        }
        i += j;
    }
    best
}

/// Reads a reject vector's bytes back from its SPEC block.
fn reject_bytes(block: &str) -> Option<Vec<u8>> {
    if let Some(h) = spec_field(block, "bytes") {
        return hex::decode(h).ok();
    }
    let before = hex::decode(spec_field(block, "bytes before")?).ok()?;
    let after = hex::decode(spec_field(block, "bytes after")?).ok()?;
    let then = block.lines().find_map(|l| l.strip_prefix("- then: `"))?;
    let (byte, count) = then.split_once("` × ")?;
    let fill = vec![u8::from_str_radix(byte, 16).ok()?; count.parse().ok()?];
    Some([before, fill, after].concat())
}

#[test]
fn spec_reject_vectors_are_refused_with_their_error() {
    let blocks: Vec<&str> = SPEC
        .split("### Reject vector ")
        .skip(1)
        .map(|b| b.split("\n#").next().unwrap_or(b))
        .collect();
    let vectors = reject_vectors();
    assert_eq!(
        blocks.len(),
        vectors.len(),
        "SPEC.md's reject vectors are out of date; print them with `cargo test --release -p jangteo-protocol print_vectors -- --ignored --nocapture`"
    );
    for (block, v) in blocks.iter().zip(vectors) {
        let title = v.title;
        assert_eq!(
            reject_bytes(block).as_deref(),
            Some(&v.bytes[..]),
            "{title}: bytes"
        );
        assert_eq!(spec_field(block, "error"), Some(v.error), "{title}: error");
        match verify_object(&v.bytes, REFERENCE_NOW) {
            Ok(_) => panic!("{title}: accepted"),
            Err(e) => assert_eq!(e.code(), v.error, "{title}: {e}"),
        }
    }
}

/// A signature edge-case vector (SPEC §10.1): a profile whose signature sits where
/// ZIP-215 and `verify_strict` part ways, or on the edge of the key and `S` rules.
struct SignatureVector {
    title: &'static str,
    bytes: Vec<u8>,
    /// `valid`, or the error code.
    verdict: &'static str,
    /// What ed25519-dalek's `verify_strict` (the rule before ZIP-215) says: `valid` or
    /// `refused`.
    strict: &'static str,
}

/// The secret scalar of an RFC 8032 seed: the clamped low half of SHA-512(seed).
fn secret_scalar(seed: &[u8; 32]) -> curve25519_dalek::Scalar {
    use sha2::Digest;
    let h = sha2::Sha512::digest(seed);
    let mut a = [0u8; 32];
    a.copy_from_slice(&h[..32]);
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    curve25519_dalek::Scalar::from_bytes_mod_order(a)
}

/// `k = SHA-512(R || A || M)` reduced modulo the group order, with `R` and `A` as given.
fn challenge(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> curve25519_dalek::Scalar {
    use sha2::Digest;
    let h = sha2::Sha512::new()
        .chain_update(r)
        .chain_update(a)
        .chain_update(msg)
        .finalize();
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&h);
    curve25519_dalek::Scalar::from_bytes_mod_order_wide(&wide)
}

fn signature_vectors() -> Vec<SignatureVector> {
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
    let objects = vector_objects();
    let (_, seed, kind, body) = objects[3].clone();
    assert_eq!(kind, Kind::Profile);
    let msg = kind.signing_input(&body);
    let key = SigningKey::from_bytes(&seed);
    let author = key.verifying_key().to_bytes();
    let a = secret_scalar(&seed);
    assert_eq!((a * B).compress().to_bytes(), author);
    let envelope = |author: [u8; 32], r: [u8; 32], s: [u8; 32]| {
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&r);
        signature[32..].copy_from_slice(&s);
        crate::Envelope {
            kind,
            author: PublicKey(author),
            body: body.clone(),
            signature,
        }
        .encode()
    };
    // `R` a small-order point, given as `r_bytes`; `S = k·a` makes the cofactored equation
    // hold ([8]S·B = [8]k·A) while the cofactorless one needs R = 0 exactly.
    let small_r = |r: [u8; 32]| envelope(author, r, (challenge(&r, &author, &msg) * a).to_bytes());
    let mut identity = [0u8; 32];
    identity[0] = 1;
    // 2^255 - 18 = p + 1: the identity point's y written without reducing it modulo p.
    let mut identity_high = [0xffu8; 32];
    identity_high[0] = 0xee;
    identity_high[31] = 0x7f;
    // A key with a torsion component: A' = a·B + T8. An honest signature under `a` meets
    // the cofactored equation; the cofactorless one unless k is a multiple of 8.
    let mixed = (a * B + EIGHT_TORSION[1]).compress().to_bytes();
    // The first nonce (from 7, 8, …) whose k is not a multiple of 8, so k·T8 does not vanish.
    let (r, big_r, k) = (7u8..)
        .map(|n| {
            let r = challenge(&[n; 32], &[n; 32], b"jangteo signature vector nonce");
            let big_r = (r * B).compress().to_bytes();
            (r, big_r, challenge(&big_r, &mixed, &msg))
        })
        .find(|(_, _, k)| k.to_bytes()[0] % 8 != 0)
        .expect("a nonce");
    // An honest signature with S + l: the same point, S not canonical.
    let honest = SignedObject::sign(kind, body.clone(), &key);
    let sig = honest.envelope().signature;
    let mut s_plus_l = [0u8; 32];
    let mut carry = 0u16;
    // l, the order of the base point, little-endian.
    let l = hex::decode("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
        .expect("hex");
    for (i, l) in l.iter().enumerate() {
        let t = u16::from(sig[32 + i]) + u16::from(*l) + carry;
        s_plus_l[i] = t as u8;
        carry = t >> 8;
    }
    let mut r_honest = [0u8; 32];
    r_honest.copy_from_slice(&sig[..32]);
    vec![
        SignatureVector {
            title: "vector 4's profile, `R` the identity point `0100…00` (small order), `S = k·a`",
            bytes: small_r(identity),
            verdict: "valid",
            strict: "refused",
        },
        SignatureVector {
            title: "vector 4's profile, `R` the identity point written unreduced (`ee ff … ff 7f`, y = p + 1), `S = k·a`",
            bytes: small_r(identity_high),
            verdict: "valid",
            strict: "refused",
        },
        SignatureVector {
            title: "vector 4's profile by the mixed-order key `a·B + T8` (vector 4's scalar plus a point of order 8), signed with `a`",
            bytes: envelope(mixed, big_r, (r + k * a).to_bytes()),
            verdict: "valid",
            strict: "refused",
        },
        SignatureVector {
            title: "vector 4 with `S + l` in place of `S` (the same point, `S` not canonical)",
            bytes: envelope(author, r_honest, s_plus_l),
            verdict: "bad-signature",
            strict: "refused",
        },
        SignatureVector {
            title: "vector 4's profile by the identity point written unreduced (`ee ff … ff 7f`) as author key, `R` = B, `S` = 1",
            bytes: envelope(identity_high, B.compress().to_bytes(), {
                let mut one = [0u8; 32];
                one[0] = 1;
                one
            }),
            verdict: "bad-author-key",
            strict: "refused",
        },
    ]
}

/// The markdown of SPEC §10.1.
fn signature_markdown() -> String {
    let mut out = String::new();
    for (i, v) in signature_vectors().into_iter().enumerate() {
        out.push_str(&format!(
            "### Signature vector {}: {}\n\n- bytes: `{}`\n- verdict: `{}`\n- verify_strict: `{}`\n\n",
            i + 1,
            v.title,
            hex::encode(&v.bytes),
            v.verdict,
            v.strict
        ));
    }
    out
}

#[test]
#[ignore = "prints the signature vectors of SPEC.md §10.1"]
fn print_signature_vectors() {
    println!("{}", signature_markdown());
}

#[test]
fn spec_signature_vectors_hold_alone_and_in_a_batch() {
    let blocks: Vec<&str> = SPEC
        .split("### Signature vector ")
        .skip(1)
        .map(|b| b.split("\n#").next().unwrap_or(b))
        .collect();
    let vectors = signature_vectors();
    assert_eq!(
        blocks.len(),
        vectors.len(),
        "SPEC.md's signature vectors are out of date; print them with `cargo test --release -p jangteo-protocol print_signature_vectors -- --ignored --nocapture`"
    );
    let verdict = |r: &Result<_, crate::ObjectError>| match r {
        Ok(_) => "valid".to_string(),
        Err(e) => e.code(),
    };
    let good = vector_objects()
        .into_iter()
        .map(|(_, seed, kind, body)| {
            SignedObject::sign(kind, body, &SigningKey::from_bytes(&seed))
                .bytes()
                .to_vec()
        })
        .collect::<Vec<_>>();
    for (block, v) in blocks.iter().zip(&vectors) {
        let title = v.title;
        assert_eq!(
            spec_field(block, "bytes"),
            Some(hex::encode(&v.bytes).as_str()),
            "{title}"
        );
        assert_eq!(spec_field(block, "verdict"), Some(v.verdict), "{title}");
        assert_eq!(
            spec_field(block, "verify_strict"),
            Some(v.strict),
            "{title}"
        );
        assert_eq!(
            verdict(&verify_object(&v.bytes, REFERENCE_NOW)),
            v.verdict,
            "{title}"
        );
        // Among honest objects in a batch, it gets the same verdict and spoils none of them.
        let mut batch = good.clone();
        batch.insert(2, v.bytes.clone());
        let outcomes = crate::verify_objects(&batch, REFERENCE_NOW);
        for (bytes, got) in batch.iter().zip(&outcomes) {
            assert_eq!(
                verdict(got),
                verdict(&verify_object(bytes, REFERENCE_NOW)),
                "{title}: batch and single disagree"
            );
        }
        assert_eq!(verdict(&outcomes[2]), v.verdict, "{title}: in a batch");
        // What the rule before ZIP-215 said.
        let env = crate::Envelope::decode(&v.bytes).expect("decodes");
        let strict = ed25519_dalek::VerifyingKey::from_bytes(&env.author.0).is_ok_and(|k| {
            !k.is_weak()
                && k.verify_strict(
                    &env.kind.signing_input(&env.body),
                    &ed25519_dalek::Signature::from_bytes(&env.signature),
                )
                .is_ok()
        });
        assert_eq!(
            if strict { "valid" } else { "refused" },
            v.strict,
            "{title}"
        );
    }
}

#[test]
fn a_batch_of_honest_objects_with_forgeries_has_the_single_outcomes() {
    let mut batch: Vec<Vec<u8>> = vector_objects()
        .into_iter()
        .map(|(_, seed, kind, body)| {
            SignedObject::sign(kind, body, &SigningKey::from_bytes(&seed))
                .bytes()
                .to_vec()
        })
        .collect();
    // A flipped signature bit, a flipped body bit, garbage.
    let mut forged = batch[0].clone();
    let n = forged.len();
    forged[n - 1] ^= 1;
    batch.push(forged);
    let mut body = batch[3].clone();
    body[60] ^= 1;
    batch.push(body);
    batch.push(vec![0x84, 0x00]);
    let outcomes = crate::verify_objects(&batch, REFERENCE_NOW);
    assert_eq!(outcomes.len(), batch.len());
    for (bytes, got) in batch.iter().zip(&outcomes) {
        let single = verify_object(bytes, REFERENCE_NOW);
        assert_eq!(
            got.as_ref().map(|(s, _)| s.id()).map_err(|e| e.code()),
            single.as_ref().map(|(s, _)| s.id()).map_err(|e| e.code())
        );
    }
    assert!(outcomes[..outcomes.len() - 3].iter().all(Result::is_ok));
    assert!(outcomes[outcomes.len() - 3..].iter().all(Result::is_err));
}
