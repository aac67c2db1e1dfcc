//! Identifiers every other module names: content ids ([`ObjectId`]) and author keys
//! ([`PublicKey`], with the libp2p peer id form).
//!
//! This module owns only the byte forms and their text forms (hex, base58). It depends on no
//! other module of the crate, so the CBOR layer, the envelope and every kind can name keys and
//! ids without importing one another.

/// A 32-byte blake3 content id of an object's exact bytes. Displayed in lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ObjectId(pub [u8; 32]);

impl ObjectId {
    /// The id of the given bytes.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl std::fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An author's ed25519 public key (32 bytes), the same key as the node's libp2p identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The libp2p peer id (base58, `12D3KooW…`) of this key.
    pub fn peer_id(&self) -> String {
        peer_id_string(&self.0)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.peer_id())
    }
}

/// The prefix of a peer id's bytes before the key: identity multihash (0x00, length 36) of
/// the protobuf-encoded public key (type ed25519 = 1, 32 bytes of data).
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// The libp2p peer id string of an ed25519 public key: base58 of the identity multihash of
/// the protobuf-encoded key (`00 24 08 01 12 20 || key`).
pub fn peer_id_string(key: &[u8; 32]) -> String {
    let mut buf = Vec::with_capacity(38);
    buf.extend_from_slice(&PEER_ID_PREFIX);
    buf.extend_from_slice(key);
    bs58::encode(buf).into_string()
}

/// Parses a peer id string back to the ed25519 key it embeds.
pub fn public_key_from_peer_id(s: &str) -> Option<PublicKey> {
    let raw = bs58::decode(s).into_vec().ok()?;
    if raw.len() != 38 || raw[..6] != PEER_ID_PREFIX {
        return None;
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&raw[6..]);
    Some(PublicKey(key))
}
