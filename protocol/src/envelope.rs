//! The signed envelope every object travels in, its content id, and author identities.
//!
//! Wire form: a CBOR array `[kind, author, body, sig]` (text, 32-byte key, body bytes, 64-byte
//! signature). The signature covers `"jangteo/v1/<kind>" || body`, so a signature for one kind
//! is never valid for another. The id is blake3 of the exact envelope bytes, which are stored
//! and forwarded byte for byte. This module does not look inside bodies.

use ciborium::value::Value;
use ed25519_dalek::{Signer, SigningKey};

use crate::cbor;
use crate::error::{DecodeError, ObjectError};
use crate::limits::{MAX_ATTESTATION_BYTES, MAX_EQUIVOCATION_BYTES};

pub use crate::ids::{ObjectId, PublicKey, peer_id_string, public_key_from_peer_id};
pub use crate::limits::{MAX_ANY_OBJECT_BYTES, MAX_OBJECT_BYTES};

/// Prefix of every signature's domain tag; the kind's name follows it.
pub const DOMAIN_PREFIX: &str = "jangteo/v1/";

/// Every kind this version knows.
pub const ALL_KINDS: [Kind; 17] = [
    Kind::Listing,
    Kind::Profile,
    Kind::Attestation,
    Kind::Offer,
    Kind::Counter,
    Kind::Accept,
    Kind::Reject,
    Kind::Cancel,
    Kind::Paid,
    Kind::Shipped,
    Kind::Received,
    Kind::Dispute,
    Kind::Resolution,
    Kind::Equivocation,
    Kind::Report,
    Kind::Message,
    Kind::Receipt,
];

/// The kinds of object this version knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A seller's listing version.
    Listing,
    /// A node's public profile.
    Profile,
    /// A party's rating of the other after a completed trade.
    Attestation,
    /// Trade: a buyer's offer (its id is the trade id).
    Offer,
    /// Trade: other terms proposed.
    Counter,
    /// Trade: the proposed terms accepted (the contract).
    Accept,
    /// Trade: a proposal refused.
    Reject,
    /// Trade: called off before payment.
    Cancel,
    /// Trade: the buyer says they paid.
    Paid,
    /// Trade: the seller says they shipped or handed over.
    Shipped,
    /// Trade: the buyer received the goods.
    Received,
    /// Trade: a party raises a dispute.
    Dispute,
    /// Trade: a moderator closes a dispute.
    Resolution,
    /// Proof that one key signed two different messages at the same point of a trade.
    Equivocation,
    /// A signed complaint about a listing or a key.
    Report,
    /// A direct message from one person to another, sealed, never gossiped (SPEC §13).
    Message,
    /// A signed acknowledgement that direct messages were delivered or read (SPEC §13).
    Receipt,
}

impl Kind {
    /// The kind's wire name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Listing => "listing",
            Kind::Profile => "profile",
            Kind::Attestation => "attestation",
            Kind::Offer => "offer",
            Kind::Counter => "counter",
            Kind::Accept => "accept",
            Kind::Reject => "reject",
            Kind::Cancel => "cancel",
            Kind::Paid => "paid",
            Kind::Shipped => "shipped",
            Kind::Received => "received",
            Kind::Dispute => "dispute",
            Kind::Resolution => "resolution",
            Kind::Equivocation => "equivocation",
            Kind::Report => "report",
            Kind::Message => "message",
            Kind::Receipt => "receipt",
        }
    }

    /// Largest encoded envelope of this kind.
    pub fn max_bytes(self) -> usize {
        match self {
            Kind::Attestation => MAX_ATTESTATION_BYTES,
            Kind::Equivocation => MAX_EQUIVOCATION_BYTES,
            _ => MAX_OBJECT_BYTES,
        }
    }

    /// Parses a wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        ALL_KINDS.into_iter().find(|k| k.name() == name)
    }

    /// The bytes a signature of this kind covers: the domain tag followed by the body.
    pub fn signing_input(self, body: &[u8]) -> Vec<u8> {
        let mut msg = Vec::with_capacity(DOMAIN_PREFIX.len() + 8 + body.len());
        msg.extend_from_slice(DOMAIN_PREFIX.as_bytes());
        msg.extend_from_slice(self.name().as_bytes());
        msg.extend_from_slice(body);
        msg
    }
}

/// The decoded parts of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// What the body is.
    pub kind: Kind,
    /// Who signed it.
    pub author: PublicKey,
    /// The body, exactly as signed.
    pub body: Vec<u8>,
    /// ed25519 signature over `kind.signing_input(body)`.
    pub signature: [u8; 64],
}

impl Envelope {
    /// Signs a body of the given kind with `key`.
    pub fn sign(kind: Kind, body: Vec<u8>, key: &SigningKey) -> Self {
        let signature = key.sign(&kind.signing_input(&body)).to_bytes();
        Self {
            kind,
            author: PublicKey(key.verifying_key().to_bytes()),
            body,
            signature,
        }
    }

    /// The envelope's wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        cbor::to_vec(&Value::Array(vec![
            Value::Text(self.kind.name().to_owned()),
            Value::Bytes(self.author.0.to_vec()),
            Value::Bytes(self.body.clone()),
            Value::Bytes(self.signature.to_vec()),
        ]))
    }

    /// Decodes wire bytes (size-checked, canonical) without checking the signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_ANY_OBJECT_BYTES {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                limit: MAX_ANY_OBJECT_BYTES,
            });
        }
        let value = cbor::from_slice_canonical(bytes)?;
        let Value::Array(items) = value else {
            return Err(DecodeError::WrongType {
                field: "envelope",
                expected: "array of 4",
            });
        };
        let [kind, author, body, sig]: [Value; 4] =
            items.try_into().map_err(|_| DecodeError::WrongType {
                field: "envelope",
                expected: "array of 4",
            })?;
        let Value::Text(kind) = kind else {
            return Err(DecodeError::WrongType {
                field: "kind",
                expected: "text",
            });
        };
        let kind = Kind::from_name(&kind).ok_or(DecodeError::UnknownKind(kind))?;
        if bytes.len() > kind.max_bytes() {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                limit: kind.max_bytes(),
            });
        }
        let author = fixed_bytes::<32>(author, "author")?;
        let Value::Bytes(body) = body else {
            return Err(DecodeError::WrongType {
                field: "body",
                expected: "bytes",
            });
        };
        let signature = fixed_bytes::<64>(sig, "sig")?;
        Ok(Self {
            kind,
            author: PublicKey(author),
            body,
            signature,
        })
    }

    /// Checks the author key and the signature by the rule of SPEC §2: the key must decode
    /// and not be of small order; the signature is checked by ZIP-215 (canonical `S`, `R` and
    /// the key decoded as given, the cofactored equation), so [`verify_batch`] always agrees.
    pub fn verify(&self) -> Result<(), ObjectError> {
        check_author_key(&self.author)?;
        let key = ed25519_consensus::VerificationKey::try_from(self.author.0)
            .map_err(|_| ObjectError::BadAuthorKey)?;
        key.verify(
            &ed25519_consensus::Signature::from(self.signature),
            &self.kind.signing_input(&self.body),
        )
        .map_err(|_| ObjectError::BadSignature)
    }
}

/// The author-key rule of SPEC §2: the 32 bytes decode to a point of edwards25519 (an
/// encoding of `y` at or above the field's prime is read modulo it, as ZIP-215 reads it)
/// that is not of small order. ZIP-215 alone accepts small-order keys, for which anyone can
/// sign; this protocol refuses them.
pub fn check_author_key(author: &PublicKey) -> Result<(), ObjectError> {
    let point = curve25519_dalek::edwards::CompressedEdwardsY(author.0)
        .decompress()
        .ok_or(ObjectError::BadAuthorKey)?;
    if point.is_small_order() {
        return Err(ObjectError::BadAuthorKey);
    }
    Ok(())
}

/// Checks the author keys and signatures of many envelopes at once: one outcome per
/// envelope, in order, always the outcome [`Envelope::verify`] gives for it. The
/// signatures whose keys pass are checked together by ZIP-215 batch verification (about
/// half the work of checking them one by one); only when the batch fails is each checked
/// alone, to find the bad ones. ZIP-215 is what makes the two agree: a batch accepts exactly
/// when every signature in it would be accepted alone.
pub fn verify_batch(envelopes: &[&Envelope]) -> Vec<Result<(), ObjectError>> {
    let mut out: Vec<Result<(), ObjectError>> = Vec::with_capacity(envelopes.len());
    // Keys repeat within a batch (one seller's listings): decode each once.
    let mut keys: std::collections::HashMap<[u8; 32], bool> = std::collections::HashMap::new();
    let mut batch = ed25519_consensus::batch::Verifier::new();
    let mut queued = 0usize;
    for env in envelopes {
        let key_ok = *keys
            .entry(env.author.0)
            .or_insert_with(|| check_author_key(&env.author).is_ok());
        if key_ok {
            batch.queue((
                ed25519_consensus::VerificationKeyBytes::from(env.author.0),
                ed25519_consensus::Signature::from(env.signature),
                &env.kind.signing_input(&env.body),
            ));
            queued += 1;
            out.push(Ok(()));
        } else {
            out.push(Err(ObjectError::BadAuthorKey));
        }
    }
    if queued == 0 || batch.verify(rand::thread_rng()).is_ok() {
        return out;
    }
    envelopes
        .iter()
        .zip(out)
        .map(|(env, key)| key.and_then(|()| env.verify()))
        .collect()
}

fn fixed_bytes<const N: usize>(v: Value, field: &'static str) -> Result<[u8; N], DecodeError> {
    match v {
        Value::Bytes(b) => b.try_into().map_err(|_| DecodeError::WrongType {
            field,
            expected: "fixed-size bytes",
        }),
        _ => Err(DecodeError::WrongType {
            field,
            expected: "bytes",
        }),
    }
}

/// An envelope whose signature has been verified, with its exact bytes and id.
#[derive(Debug, Clone)]
pub struct SignedObject {
    bytes: Vec<u8>,
    id: ObjectId,
    envelope: Envelope,
}

impl SignedObject {
    /// Signs a body and wraps it.
    pub fn sign(kind: Kind, body: Vec<u8>, key: &SigningKey) -> Self {
        let envelope = Envelope::sign(kind, body, key);
        let bytes = envelope.encode();
        Self {
            id: ObjectId::of(&bytes),
            bytes,
            envelope,
        }
    }

    /// Decodes bytes and verifies the signature; the only way in from outside.
    pub fn decode_and_verify(bytes: &[u8]) -> Result<Self, ObjectError> {
        let envelope = Envelope::decode(bytes)?;
        envelope.verify()?;
        Ok(Self {
            bytes: bytes.to_vec(),
            id: ObjectId::of(bytes),
            envelope,
        })
    }

    /// Wraps bytes whose envelope `envelope` was decoded from them and verified (by
    /// [`verify_batch`]).
    pub(crate) fn verified(bytes: &[u8], envelope: Envelope) -> Self {
        Self {
            bytes: bytes.to_vec(),
            id: ObjectId::of(bytes),
            envelope,
        }
    }

    /// Decodes bytes that this node verified before it stored them, without checking the
    /// signature again (a store reads its own objects back). Never for bytes from outside.
    pub fn decode_stored(bytes: &[u8]) -> Result<Self, ObjectError> {
        let envelope = Envelope::decode(bytes)?;
        Ok(Self {
            bytes: bytes.to_vec(),
            id: ObjectId::of(bytes),
            envelope,
        })
    }

    /// The exact wire bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The content id.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The decoded envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn sign_then_verify_roundtrip() {
        let obj = SignedObject::sign(Kind::Profile, vec![0xa0], &key(1));
        let back = SignedObject::decode_and_verify(obj.bytes()).expect("valid");
        assert_eq!(back.id(), obj.id());
        assert_eq!(back.envelope(), obj.envelope());
    }

    #[test]
    fn tampered_body_fails() {
        let mut env = Envelope::sign(Kind::Listing, vec![0xa1, 0x61, b'a', 0x01], &key(2));
        env.body[3] = 0x02;
        assert!(matches!(
            SignedObject::decode_and_verify(&env.encode()),
            Err(ObjectError::BadSignature)
        ));
    }

    #[test]
    fn signature_of_one_kind_is_not_valid_for_another() {
        let mut env = Envelope::sign(Kind::Profile, vec![0xa0], &key(3));
        env.kind = Kind::Listing;
        assert!(matches!(
            SignedObject::decode_and_verify(&env.encode()),
            Err(ObjectError::BadSignature)
        ));
    }

    #[test]
    fn other_author_fails() {
        let mut env = Envelope::sign(Kind::Profile, vec![0xa0], &key(4));
        env.author = PublicKey(key(5).verifying_key().to_bytes());
        assert!(SignedObject::decode_and_verify(&env.encode()).is_err());
    }

    #[test]
    fn weak_author_key_fails() {
        // The identity point (a small-order key) with an all-zero signature.
        let mut ident = [0u8; 32];
        ident[0] = 1;
        let env = Envelope {
            kind: Kind::Profile,
            author: PublicKey(ident),
            body: vec![0xa0],
            signature: [0; 64],
        };
        assert!(matches!(
            SignedObject::decode_and_verify(&env.encode()),
            Err(ObjectError::BadAuthorKey)
        ));
    }

    #[test]
    fn oversize_envelope_refused_before_decoding() {
        let big = vec![0u8; MAX_ANY_OBJECT_BYTES + 1];
        assert!(matches!(
            Envelope::decode(&big),
            Err(DecodeError::TooLarge { .. })
        ));
        // Within the attestation limit, but a listing of that size is still refused.
        let listing = Envelope::sign(Kind::Listing, vec![0u8; MAX_OBJECT_BYTES], &key(1));
        assert!(matches!(
            Envelope::decode(&listing.encode()),
            Err(DecodeError::TooLarge {
                limit: MAX_OBJECT_BYTES,
                ..
            })
        ));
    }

    #[test]
    fn peer_id_matches_libp2p_form() {
        let pk = key(7).verifying_key().to_bytes();
        let s = peer_id_string(&pk);
        assert!(s.starts_with("12D3KooW"), "{s}");
        assert_eq!(public_key_from_peer_id(&s), Some(PublicKey(pk)));
    }
}
