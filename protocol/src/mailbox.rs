//! Sealing mailbox items: a trade delivery encrypted to its recipient's key, so the relay
//! that holds it while the recipient is offline cannot read it.
//!
//! Construction (an anonymous sealed box): the sender picks an ephemeral X25519 key; the
//! shared secret is X25519(ephemeral, recipient), where the recipient's X25519 key is the
//! Montgomery form of its ed25519 identity key; the AEAD key is
//! `blake3::derive_key("jangteo/v1 mailbox seal", shared || ephemeral public || recipient
//! ed25519 key)`; the payload is sealed with ChaCha20-Poly1305 under a zero nonce (each key
//! is used once). Wire form: `ephemeral public (32) || ciphertext || tag (16)`. The caller
//! supplies the ephemeral secret, so this stays a pure function.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ciborium::value::Value;
use curve25519_dalek::MontgomeryPoint;
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::cbor;
use crate::error::DecodeError;
use crate::ids::PublicKey;

pub use crate::limits::SEALED_MAX_BYTES;
const CONTEXT: &str = "jangteo/v1 mailbox seal";

/// Why an item could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The recipient key is not a valid ed25519 key.
    #[error("recipient key is not a valid ed25519 key")]
    BadRecipient,
    /// Too short, not for this key, or tampered with.
    #[error("sealed item cannot be opened with this key")]
    CannotOpen,
    /// The opened payload is not a bundle of messages.
    #[error("sealed payload malformed: {0}")]
    Payload(String),
}

fn aead_key(
    shared: &MontgomeryPoint,
    eph: &MontgomeryPoint,
    recipient: &PublicKey,
) -> ChaCha20Poly1305 {
    let mut material = Vec::with_capacity(96);
    material.extend_from_slice(shared.as_bytes());
    material.extend_from_slice(eph.as_bytes());
    material.extend_from_slice(&recipient.0);
    let key = blake3::derive_key(CONTEXT, &material);
    ChaCha20Poly1305::new(Key::from_slice(&key))
}

/// Seals `plaintext` to `recipient` with the given ephemeral secret (32 random bytes).
pub fn seal(
    recipient: &PublicKey,
    ephemeral_secret: [u8; 32],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let vk = VerifyingKey::from_bytes(&recipient.0).map_err(|_| SealError::BadRecipient)?;
    let eph = MontgomeryPoint::mul_base_clamped(ephemeral_secret);
    let shared = vk.to_montgomery().mul_clamped(ephemeral_secret);
    let ct = aead_key(&shared, &eph, recipient)
        .encrypt(Nonce::from_slice(&[0u8; 12]), plaintext)
        .map_err(|_| SealError::CannotOpen)?;
    let mut out = Vec::with_capacity(32 + ct.len());
    out.extend_from_slice(eph.as_bytes());
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens an item sealed to `key`.
pub fn open(key: &SigningKey, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    if sealed.len() < 32 + 16 || sealed.len() > SEALED_MAX_BYTES {
        return Err(SealError::CannotOpen);
    }
    let mut e = [0u8; 32];
    e.copy_from_slice(&sealed[..32]);
    let eph = MontgomeryPoint(e);
    let shared = eph.mul_clamped(key.to_scalar_bytes());
    let me = PublicKey(key.verifying_key().to_bytes());
    aead_key(&shared, &eph, &me)
        .decrypt(Nonce::from_slice(&[0u8; 12]), &sealed[32..])
        .map_err(|_| SealError::CannotOpen)
}

/// Encodes a bundle of envelopes (a trade chain) as the plaintext of a mailbox item.
pub fn encode_bundle(objects: &[Vec<u8>]) -> Vec<u8> {
    cbor::to_vec(&Value::Array(
        objects.iter().map(|o| Value::Bytes(o.clone())).collect(),
    ))
}

/// Decodes a bundle.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<Vec<u8>>, SealError> {
    let v = cbor::from_slice_canonical(bytes)
        .map_err(|e: DecodeError| SealError::Payload(e.to_string()))?;
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::Bytes(b) => Ok(b),
                _ => Err(SealError::Payload("bundle items must be bytes".into())),
            })
            .collect(),
        _ => Err(SealError::Payload("bundle must be an array".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_recipient_opens_and_tampering_is_caught() {
        let alice = SigningKey::from_bytes(&[11; 32]);
        let bob = SigningKey::from_bytes(&[12; 32]);
        let to_alice = PublicKey(alice.verifying_key().to_bytes());
        let bundle = encode_bundle(&[b"offer".to_vec(), b"accept".to_vec()]);
        let sealed = seal(&to_alice, [7; 32], &bundle).expect("seal");
        assert!(
            !sealed.windows(5).any(|w| w == b"offer"),
            "plaintext visible"
        );
        let opened = open(&alice, &sealed).expect("open");
        assert_eq!(
            decode_bundle(&opened).expect("bundle"),
            vec![b"offer".to_vec(), b"accept".to_vec()]
        );
        assert_eq!(open(&bob, &sealed), Err(SealError::CannotOpen));
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(open(&alice, &bad), Err(SealError::CannotOpen));
        assert_eq!(open(&alice, &sealed[..20]), Err(SealError::CannotOpen));
    }
}
