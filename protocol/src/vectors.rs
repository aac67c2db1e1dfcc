//! Checks the test vectors printed in `protocol/SPEC.md` against this implementation, so
//! the document and the code cannot drift apart.

use ed25519_dalek::SigningKey;

use crate::PublicKey;
use crate::attestation::Attestation;
use crate::listing::{Condition, Listing, ListingStatus, Location};
use crate::profile::Profile;
use crate::trade::{Equivocation, Role, Terms, TradeMessage};
use crate::{Kind, SignedObject, verify_object};

const SPEC: &str = include_str!("../SPEC.md");
const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// The objects the vectors are made of: (title, secret key seed, kind, body).
fn vector_objects() -> Vec<(&'static str, [u8; 32], Kind, Vec<u8>)> {
    let bike = Listing {
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
    ]
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
        "SPEC.md has no vectors yet; generate them with `cargo test -p jangteo-protocol print_vectors -- --ignored --nocapture`"
    );
    let blocks: Vec<&str> = SPEC.split("### Vector ").skip(1).collect();
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
        verify_object(&hexf("envelope"), T0 + 3_600_000).unwrap_or_else(|e| panic!("{title}: {e}"));
    }
}

#[test]
#[ignore = "prints the vectors section of SPEC.md"]
fn print_vectors() {
    println!("{}", markdown());
}
