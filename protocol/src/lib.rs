//! `jangteo-protocol`: the wire format of jangteo, and nothing else.
//!
//! It owns the signed envelope, the object kinds and their deterministic CBOR bodies, content
//! ids, validation limits, and (in later modules) trade transitions and trust math. Everything
//! here is a pure function: no I/O, no clock (callers pass `now`), no async, no libp2p.
#![deny(missing_docs, unreachable_pub)]

pub mod attestation;
pub mod blob;
pub mod cbor;
pub mod currency;
pub mod envelope;
pub mod error;
pub mod ids;
pub mod limits;
pub mod listing;
pub mod mailbox;
pub mod message;
pub mod profile;
pub mod report;
pub mod stamp;
pub mod text;
pub mod trade;
pub mod trust;

#[cfg(test)]
mod vectors;

pub use envelope::{
    Envelope, Kind, MAX_ANY_OBJECT_BYTES, MAX_OBJECT_BYTES, ObjectId, PublicKey, SignedObject,
    peer_id_string, public_key_from_peer_id,
};
pub use error::{DecodeError, FieldError, ObjectError};
pub use listing::{Condition, Listing, ListingId, ListingStatus, Location};
pub use profile::Profile;

pub use limits::MAX_CLOCK_SKEW_MS;

/// A decoded, verified and validated object of any kind.
#[derive(Debug, Clone)]
pub enum Object {
    /// A listing version.
    Listing(Listing),
    /// A profile.
    Profile(Profile),
    /// A trade message.
    Trade(trade::TradeMessage),
    /// An attestation with the completed trade it proves.
    Attestation(Box<attestation::Attested>),
    /// A checked proof that a key signed two messages at the same point of a trade.
    Equivocation(Box<(trade::Equivocation, trade::EquivocationFacts)>),
    /// A report about a listing or a key.
    Report(report::Report),
    /// A direct message (never gossiped; travels sealed between two people).
    Message(message::DirectMessage),
    /// A receipt for direct messages.
    Receipt(message::Receipt),
}

/// Decodes an envelope, checks its signature, decodes its body for its kind and validates
/// every field against `now_ms`. The only way bytes from the network become an [`Object`].
pub fn verify_object(bytes: &[u8], now_ms: u64) -> Result<(SignedObject, Object), ObjectError> {
    let signed = SignedObject::decode_and_verify(bytes)?;
    let object = decode_body(&signed, now_ms)?;
    Ok((signed, object))
}

/// [`verify_object`] for many objects at once, with exactly its outcomes, one per object in
/// order: the signatures are checked together by [`envelope::verify_batch`] (ZIP-215, whose
/// batch and single checks always agree), which costs about half as much per signature.
pub fn verify_objects<B: AsRef<[u8]>>(
    objects: &[B],
    now_ms: u64,
) -> Vec<Result<(SignedObject, Object), ObjectError>> {
    let decoded: Vec<Result<Envelope, ObjectError>> = objects
        .iter()
        .map(|b| Envelope::decode(b.as_ref()).map_err(ObjectError::from))
        .collect();
    let envelopes: Vec<&Envelope> = decoded.iter().filter_map(|d| d.as_ref().ok()).collect();
    let mut checked = envelope::verify_batch(&envelopes).into_iter();
    objects
        .iter()
        .zip(decoded)
        .map(|(bytes, d)| {
            let env = d?;
            // One outcome per decoded envelope, in the same order.
            checked.next().unwrap_or(Err(ObjectError::BadSignature))?;
            let signed = SignedObject::verified(bytes.as_ref(), env);
            let object = decode_body(&signed, now_ms)?;
            Ok((signed, object))
        })
        .collect()
}

/// Decodes and validates the body of an object whose signature is already verified.
pub fn decode_body(signed: &SignedObject, now_ms: u64) -> Result<Object, ObjectError> {
    let env = signed.envelope();
    Ok(match env.kind {
        Kind::Listing => {
            let l = Listing::decode(&env.body)?;
            l.validate(now_ms)?;
            l.check_moderators(&env.author)?;
            Object::Listing(l)
        }
        Kind::Profile => {
            let p = Profile::decode(&env.body)?;
            p.validate(now_ms)?;
            Object::Profile(p)
        }
        Kind::Attestation => {
            let a = attestation::Attestation::decode(&env.body)?;
            Object::Attestation(Box::new(a.verify(&env.author, now_ms)?))
        }
        Kind::Equivocation => {
            let e = trade::Equivocation::decode(&env.body)?;
            let facts = e.check(now_ms)?;
            Object::Equivocation(Box::new((e, facts)))
        }
        Kind::Report => {
            let r = report::Report::decode(&env.body)?;
            r.validate(&env.author, now_ms)?;
            Object::Report(r)
        }
        Kind::Message => {
            let m = message::DirectMessage::decode(&env.body)?;
            m.validate(&env.author, now_ms)?;
            Object::Message(m)
        }
        Kind::Receipt => {
            let r = message::Receipt::decode(&env.body)?;
            r.validate(&env.author, now_ms)?;
            Object::Receipt(r)
        }
        kind => {
            let m = trade::TradeMessage::decode(kind, &env.body)?;
            m.validate(kind, &env.author, now_ms)?;
            Object::Trade(m)
        }
    })
}

#[cfg(test)]
mod properties {
    use super::*;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    fn listing_strategy() -> impl Strategy<Value = Listing> {
        (
            any::<[u8; 16]>(),
            1u64..1_000,
            "\\PC{1,60}",
            0u64..=listing::PRICE_MAX,
            proptest::sample::select(&currency::ISO_4217[..]),
            0u64..=listing::QUANTITY_MAX,
            proptest::option::of((-90_000_000i32..=90_000_000, -180_000_000i32..=180_000_000)),
        )
            .prop_map(
                |(nonce, seq, title, price, currency, quantity, loc)| Listing {
                    stamp: None,
                    nonce,
                    seq,
                    created_at: 1_760_000_000_000,
                    updated_at: 1_760_000_000_000,
                    expires_at: 1_760_000_000_000 + listing::LIFETIME_DEFAULT_MS,
                    status: ListingStatus::Active,
                    title: title
                        .trim()
                        .chars()
                        .filter(|c| !c.is_control())
                        .collect::<String>(),
                    description: String::new(),
                    category: "general".into(),
                    condition: None,
                    price,
                    currency: currency.to_owned(),
                    quantity,
                    images: vec![],
                    location: loc.map(|(lat_e6, lon_e6)| Location { lat_e6, lon_e6 }),
                    moderators: vec![],
                },
            )
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = verify_object(&bytes, 1_760_000_000_000);
            let _ = Listing::decode(&bytes);
        }

        #[test]
        fn signed_listings_roundtrip_and_any_bit_flip_is_refused(l in listing_strategy(), flip in any::<prop::sample::Index>()) {
            prop_assume!(text::check_line("title", &l.title, limits::TITLE_MAX_CHARS).is_ok());
            let key = SigningKey::from_bytes(&[42; 32]);
            let obj = SignedObject::sign(Kind::Listing, l.encode(), &key);
            let (back, Object::Listing(decoded)) = verify_object(obj.bytes(), 1_760_000_000_000).expect("valid") else {
                panic!("kind");
            };
            prop_assert_eq!(back.id(), obj.id());
            prop_assert_eq!(decoded, l);
            let mut bad = obj.bytes().to_vec();
            let i = flip.index(bad.len());
            bad[i] ^= 0x01;
            prop_assert!(verify_object(&bad, 1_760_000_000_000).is_err());
        }
    }
}
