//! Direct messages between two people and their receipts (SPEC §13): the `message` and
//! `receipt` kinds, the thread a message belongs to, and the stamp a first contact carries.
//!
//! A message is signed by its sender and names its recipient (`to`), the listing it is about
//! and, inside a trade, the trade. The *thread* is one per listing and pair of people, so the
//! questions before an offer and the trade that follows read as one conversation; its id is
//! derived, never sent. A receipt is the recipient's signed word that messages were
//! `delivered` (its node stored them) or `read` (the person opened the thread).
//!
//! Whether a message needs a stamp depends on what the recipient holds (a first contact
//! does), so it is the recipient's rule, not a validity rule here; but a stamp that is
//! present must be worth [`FIRST_CONTACT_STAMP_BITS`]. This module is pure: no I/O, no clock.

use ciborium::value::Value;

use crate::cbor::{self, Fields, canonical_map, uint};
use crate::error::{DecodeError, FieldError};
use crate::ids::{ObjectId, PublicKey};
use crate::limits::MAX_CLOCK_SKEW_MS;
use crate::listing::ListingId;
use crate::stamp;

pub use crate::limits::{
    FIRST_CONTACT_STAMP_BITS, MESSAGE_PHOTOS_MAX, MESSAGE_TEXT_MAX_CHARS, RECEIPT_MESSAGES_MAX,
};

/// Domain tag of a thread id.
const THREAD_TAG: &[u8] = b"jangteo/v1/thread";

/// The thread of `listing` between the keys `a` and `b` (in either order):
/// `blake3("jangteo/v1/thread" || listing || lower key || higher key)`.
pub fn thread_id(listing: &ListingId, a: &PublicKey, b: &PublicKey) -> ObjectId {
    let (lo, hi) = if a.0 <= b.0 { (a, b) } else { (b, a) };
    let mut h = blake3::Hasher::new();
    h.update(THREAD_TAG);
    h.update(&listing.0);
    h.update(&lo.0);
    h.update(&hi.0);
    ObjectId(*h.finalize().as_bytes())
}

fn bytes32(b: Vec<u8>, field: &'static str) -> Result<[u8; 32], DecodeError> {
    b.try_into().map_err(|_| DecodeError::WrongType {
        field,
        expected: "32 bytes",
    })
}

fn ids(items: Vec<Value>, field: &'static str, max: usize) -> Result<Vec<[u8; 32]>, DecodeError> {
    if items.len() > max {
        return Err(DecodeError::WrongType {
            field,
            expected: "fewer items",
        });
    }
    items
        .into_iter()
        .map(|v| match v {
            Value::Bytes(b) => bytes32(b, field),
            _ => Err(DecodeError::WrongType {
                field,
                expected: "bytes",
            }),
        })
        .collect()
}

fn distinct(ids: &[[u8; 32]]) -> bool {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.windows(2).all(|w| w[0] != w[1])
}

/// The body of a direct message (`kind = "message"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectMessage {
    /// The recipient's key; never the author.
    pub to: PublicKey,
    /// The listing the conversation is about (by the author or the recipient).
    pub listing: ListingId,
    /// Inside a trade: the trade (its offer's id).
    pub trade: Option<ObjectId>,
    /// When it was written (unix ms).
    pub at: u64,
    /// The text: 1 to [`MESSAGE_TEXT_MAX_CHARS`] code points, at least one visible.
    pub text: String,
    /// The last message of the thread (from either side) the author had seen.
    pub seen: Option<ObjectId>,
    /// Photos: blob ids, at most [`MESSAGE_PHOTOS_MAX`], distinct.
    pub photos: Vec<[u8; 32]>,
    /// The proof-of-work stamp of a first contact (SPEC §12, §13).
    pub stamp: Option<u64>,
}

impl DirectMessage {
    fn entries(&self, with_stamp: bool) -> Vec<(&'static str, Value)> {
        let mut e: Vec<(&'static str, Value)> = vec![
            ("at", uint(self.at)),
            ("to", Value::Bytes(self.to.0.to_vec())),
            ("text", Value::Text(self.text.clone())),
            ("listing", Value::Bytes(self.listing.0.to_vec())),
        ];
        if let Some(t) = self.trade {
            e.push(("trade", Value::Bytes(t.0.to_vec())));
        }
        if let Some(s) = self.seen {
            e.push(("seen", Value::Bytes(s.0.to_vec())));
        }
        if !self.photos.is_empty() {
            e.push((
                "photos",
                Value::Array(
                    self.photos
                        .iter()
                        .map(|p| Value::Bytes(p.to_vec()))
                        .collect(),
                ),
            ));
        }
        if with_stamp && let Some(s) = self.stamp {
            e.push(("stamp", uint(s)));
        }
        e
    }

    /// The deterministic CBOR body.
    pub fn encode(&self) -> Vec<u8> {
        cbor::to_vec(&canonical_map(self.entries(true)))
    }

    /// The body without its `stamp` field (what the stamp's subject hashes).
    pub fn encode_unstamped(&self) -> Vec<u8> {
        cbor::to_vec(&canonical_map(self.entries(false)))
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut f = Fields::from_value(cbor::from_slice_canonical(body)?)?;
        let m = DirectMessage {
            at: f.u64("at")?,
            to: PublicKey(bytes32(f.bytes("to")?, "to")?),
            text: f.text("text")?,
            listing: ListingId(bytes32(f.bytes("listing")?, "listing")?),
            trade: f
                .opt_bytes("trade")?
                .map(|b| bytes32(b, "trade").map(ObjectId))
                .transpose()?,
            seen: f
                .opt_bytes("seen")?
                .map(|b| bytes32(b, "seen").map(ObjectId))
                .transpose()?,
            photos: match f.opt_array("photos")? {
                Some(items) => ids(items, "photos", MESSAGE_PHOTOS_MAX)?,
                None => Vec::new(),
            },
            stamp: f.opt_u64("stamp")?,
        };
        f.finish()?;
        Ok(m)
    }

    /// The subject its stamp is computed over: `blake3(author || body without stamp)`, so a
    /// stamp belongs to one author's one message and cannot be moved to another.
    pub fn stamp_subject(&self, author: &PublicKey) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(&author.0);
        h.update(&self.encode_unstamped());
        *h.finalize().as_bytes()
    }

    /// Solves and sets the stamp a first contact needs. Blocking: about
    /// 2^[`FIRST_CONTACT_STAMP_BITS`] hashes (run it off any async runtime).
    pub fn solve_stamp(&mut self, author: &PublicKey) {
        self.stamp = None;
        let subject = self.stamp_subject(author);
        self.stamp = Some(stamp::solve(
            stamp::MESSAGE_CONTEXT,
            &subject,
            FIRST_CONTACT_STAMP_BITS,
        ));
    }

    /// Whether the message carries a stamp worth [`FIRST_CONTACT_STAMP_BITS`].
    pub fn check_stamp(&self, author: &PublicKey) -> Result<(), FieldError> {
        let Some(nonce) = self.stamp else {
            return Err(FieldError::new(
                "stamp",
                format!(
                    "a first message to someone you have not talked or traded with needs a stamp of {FIRST_CONTACT_STAMP_BITS} bits"
                ),
            ));
        };
        stamp::check(
            stamp::MESSAGE_CONTEXT,
            &self.stamp_subject(author),
            nonce,
            FIRST_CONTACT_STAMP_BITS,
        )
        .map_err(|e| FieldError::new("stamp", e.to_string()))
    }

    /// The thread it belongs to.
    pub fn thread(&self, author: &PublicKey) -> ObjectId {
        thread_id(&self.listing, author, &self.to)
    }

    /// Checks the fields against the rules of SPEC §13.
    pub fn validate(&self, author: &PublicKey, now_ms: u64) -> Result<(), FieldError> {
        if self.at > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(FieldError::dated_in_future("at"));
        }
        if self.to == *author {
            return Err(FieldError::new("to", "a message to oneself"));
        }
        check_text(&self.text)?;
        if !distinct(&self.photos) {
            return Err(FieldError::new("photos", "named twice"));
        }
        if self.stamp.is_some() {
            self.check_stamp(author)?;
        }
        Ok(())
    }
}

/// The rules of a message's text: not empty, at least one visible character, at most
/// [`MESSAGE_TEXT_MAX_CHARS`] code points, no control characters but `\n` and `\t`, no
/// bidirectional controls.
pub fn check_text(text: &str) -> Result<(), FieldError> {
    if text.chars().count() > MESSAGE_TEXT_MAX_CHARS {
        return Err(FieldError::new(
            "text",
            format!("longer than {MESSAGE_TEXT_MAX_CHARS} characters"),
        ));
    }
    crate::text::check_free_text("text", text, 4 * MESSAGE_TEXT_MAX_CHARS, &['\n', '\t'])?;
    if !text.chars().any(crate::text::is_visible) {
        return Err(FieldError::new("text", "must not be empty"));
    }
    Ok(())
}

/// What a receipt says of the messages it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReceiptStatus {
    /// The recipient's node stored them.
    Delivered,
    /// The recipient opened the thread and saw them.
    Read,
}

impl ReceiptStatus {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            ReceiptStatus::Delivered => "delivered",
            ReceiptStatus::Read => "read",
        }
    }
}

/// The body of a receipt (`kind = "receipt"`), signed by the recipient of the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The messages' sender, to whom the receipt goes.
    pub to: PublicKey,
    /// When it was signed (unix ms).
    pub at: u64,
    /// Delivered or read.
    pub status: ReceiptStatus,
    /// The message ids, 1 to [`RECEIPT_MESSAGES_MAX`], distinct.
    pub messages: Vec<ObjectId>,
}

impl Receipt {
    /// The deterministic CBOR body.
    pub fn encode(&self) -> Vec<u8> {
        cbor::to_vec(&canonical_map(vec![
            ("at", uint(self.at)),
            ("to", Value::Bytes(self.to.0.to_vec())),
            (
                "msgs",
                Value::Array(
                    self.messages
                        .iter()
                        .map(|m| Value::Bytes(m.0.to_vec()))
                        .collect(),
                ),
            ),
            ("status", Value::Text(self.status.name().into())),
        ]))
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut f = Fields::from_value(cbor::from_slice_canonical(body)?)?;
        let status = match f.text("status")?.as_str() {
            "delivered" => ReceiptStatus::Delivered,
            "read" => ReceiptStatus::Read,
            _ => {
                return Err(DecodeError::WrongType {
                    field: "status",
                    expected: "delivered or read",
                });
            }
        };
        let r = Receipt {
            at: f.u64("at")?,
            to: PublicKey(bytes32(f.bytes("to")?, "to")?),
            messages: ids(f.array("msgs")?, "msgs", RECEIPT_MESSAGES_MAX)?
                .into_iter()
                .map(ObjectId)
                .collect(),
            status,
        };
        f.finish()?;
        Ok(r)
    }

    /// Checks the fields against the rules of SPEC §13.
    pub fn validate(&self, author: &PublicKey, now_ms: u64) -> Result<(), FieldError> {
        if self.at > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(FieldError::dated_in_future("at"));
        }
        if self.to == *author {
            return Err(FieldError::new("to", "a receipt to oneself"));
        }
        if self.messages.is_empty() {
            return Err(FieldError::new("msgs", "names no message"));
        }
        let raw: Vec<[u8; 32]> = self.messages.iter().map(|m| m.0).collect();
        if !distinct(&raw) {
            return Err(FieldError::new("msgs", "a message named twice"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Kind, SignedObject};
    use crate::{Object, verify_object};
    use ed25519_dalek::SigningKey;

    const SPEC: &str = include_str!("../SPEC.md");
    const T0: u64 = 1_767_225_600_000;
    const NOW: u64 = T0 + 3_600_000;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn pk(n: u8) -> PublicKey {
        PublicKey(key(n).verifying_key().to_bytes())
    }

    /// Vector 1's listing (SPEC §9), by the seller of seed `01`.
    fn bike() -> ListingId {
        ListingId::new(&pk(1), b"jangteo-vector-1")
    }

    fn question() -> DirectMessage {
        DirectMessage {
            to: pk(1),
            listing: bike(),
            trade: None,
            at: T0 + 60_000,
            text: "아직 판매 중인가요? 토요일에 망원역에서 볼 수 있을까요?".into(),
            seen: None,
            photos: vec![],
            stamp: None,
        }
    }

    /// The objects of SPEC §13's vectors: (title, seed, kind, body).
    fn vectors() -> Vec<(&'static str, [u8; 32], Kind, Vec<u8>)> {
        let mut q = question();
        q.solve_stamp(&pk(4));
        let asked = SignedObject::sign(Kind::Message, q.encode(), &key(4));
        let answer = DirectMessage {
            to: pk(4),
            listing: bike(),
            trade: None,
            at: T0 + 120_000,
            text: "네, 판매 중이에요.\n토요일 오후 3시 괜찮아요.".into(),
            seen: Some(asked.id()),
            photos: vec![*blake3::hash(b"photo-1").as_bytes()],
            stamp: None,
        };
        let receipt = Receipt {
            to: pk(4),
            at: T0 + 100_000,
            status: ReceiptStatus::Read,
            messages: vec![asked.id()],
        };
        vec![
            (
                "a buyer's first question about vector 1's listing, stamped",
                [4; 32],
                Kind::Message,
                q.encode(),
            ),
            (
                "the seller's answer, naming the question as seen, with a photo",
                [1; 32],
                Kind::Message,
                answer.encode(),
            ),
            (
                "the seller's receipt: the question was read",
                [1; 32],
                Kind::Receipt,
                receipt.encode(),
            ),
        ]
    }

    fn markdown() -> String {
        let mut out = String::new();
        for (i, (title, seed, kind, body)) in vectors().into_iter().enumerate() {
            let obj = SignedObject::sign(kind, body.clone(), &SigningKey::from_bytes(&seed));
            out.push_str(&format!(
                "### Message vector {}: {title}\n\n- secret key: `{}`\n- body: `{}`\n- envelope: `{}`\n- id: `{}`\n\n",
                i + 1,
                hex::encode(seed),
                hex::encode(&body),
                hex::encode(obj.bytes()),
                obj.id()
            ));
        }
        out
    }

    #[test]
    #[ignore = "prints the message vectors of SPEC §13"]
    fn print_message_vectors() {
        println!("{}", markdown());
        let q = question();
        println!("thread: {}", q.thread(&pk(4)));
    }

    #[test]
    fn spec_message_vectors_match_the_implementation() {
        assert!(
            SPEC.contains(markdown().trim()),
            "SPEC §13's message vectors are out of date; print them with `cargo test --release -p jangteo-protocol print_message_vectors -- --ignored --nocapture`"
        );
        for (title, seed, kind, body) in vectors() {
            let obj = SignedObject::sign(kind, body, &SigningKey::from_bytes(&seed));
            let (_, o) = verify_object(obj.bytes(), NOW).unwrap_or_else(|e| panic!("{title}: {e}"));
            assert!(matches!(o, Object::Message(_) | Object::Receipt(_)));
        }
        let thread = question().thread(&pk(4)).to_hex();
        assert!(SPEC.contains(&thread), "SPEC §13 names the thread {thread}");
    }

    #[test]
    fn roundtrip_and_thread_is_the_same_from_both_sides() {
        let q = question();
        assert_eq!(DirectMessage::decode(&q.encode()).expect("decodes"), q);
        assert_eq!(
            thread_id(&bike(), &pk(1), &pk(4)),
            thread_id(&bike(), &pk(4), &pk(1))
        );
        assert_ne!(
            thread_id(&bike(), &pk(1), &pk(4)),
            thread_id(&bike(), &pk(1), &pk(5))
        );
        let r = Receipt {
            to: pk(4),
            at: T0,
            status: ReceiptStatus::Delivered,
            messages: vec![ObjectId([9; 32])],
        };
        assert_eq!(Receipt::decode(&r.encode()).expect("decodes"), r);
    }

    #[test]
    fn bad_messages_are_refused_with_their_field() {
        let q = question();
        let field = |m: &DirectMessage, author: u8| {
            m.validate(&pk(author), NOW).expect_err("refused").field
        };
        assert_eq!(field(&q, 1), "to", "a message to oneself");
        for text in ["", "   ", "\u{200B}", "a\u{202E}b", "a\u{0007}"] {
            let m = DirectMessage {
                text: text.into(),
                ..q.clone()
            };
            assert_eq!(field(&m, 4), "text", "{text:?}");
        }
        let long = DirectMessage {
            text: "가".repeat(MESSAGE_TEXT_MAX_CHARS + 1),
            ..q.clone()
        };
        assert_eq!(field(&long, 4), "text");
        let just = DirectMessage {
            text: "가".repeat(MESSAGE_TEXT_MAX_CHARS),
            ..q.clone()
        };
        just.validate(&pk(4), NOW)
            .expect("2,000 characters are allowed");
        let twice = DirectMessage {
            photos: vec![[1; 32], [1; 32]],
            ..q.clone()
        };
        assert_eq!(field(&twice, 4), "photos");
        let future = DirectMessage {
            at: NOW + MAX_CLOCK_SKEW_MS + 1,
            ..q.clone()
        };
        assert_eq!(field(&future, 4), "at");
        // Five photos do not even decode.
        let mut five = q.clone();
        five.photos = (0..5u8).map(|i| [i; 32]).collect();
        assert!(DirectMessage::decode(&five.encode()).is_err());
    }

    #[test]
    fn a_stamp_binds_author_and_body_and_a_cheap_one_is_refused() {
        let mut q = question();
        assert_eq!(q.check_stamp(&pk(4)).expect_err("missing").field, "stamp");
        q.solve_stamp(&pk(4));
        q.check_stamp(&pk(4)).expect("worth 22 bits");
        q.validate(&pk(4), NOW).expect("valid");
        // Another author, or another text, makes the same nonce (almost surely) worthless.
        assert!(q.check_stamp(&pk(5)).is_err());
        let other = DirectMessage {
            text: "다른 질문".into(),
            ..q.clone()
        };
        assert!(other.check_stamp(&pk(4)).is_err());
        assert_eq!(
            other.validate(&pk(4), NOW).expect_err("cheap").field,
            "stamp"
        );
    }

    #[test]
    fn receipts_name_one_to_sixty_four_distinct_messages() {
        let r = Receipt {
            to: pk(4),
            at: T0,
            status: ReceiptStatus::Read,
            messages: vec![],
        };
        assert_eq!(r.validate(&pk(1), NOW).expect_err("empty").field, "msgs");
        let twice = Receipt {
            messages: vec![ObjectId([1; 32]), ObjectId([1; 32])],
            ..r.clone()
        };
        assert_eq!(
            twice.validate(&pk(1), NOW).expect_err("twice").field,
            "msgs"
        );
        assert_eq!(
            Receipt {
                messages: vec![ObjectId([1; 32])],
                ..r.clone()
            }
            .validate(&pk(4), NOW)
            .expect_err("to oneself")
            .field,
            "to"
        );
        let many = Receipt {
            messages: (0..=RECEIPT_MESSAGES_MAX as u8)
                .map(|i| ObjectId([i; 32]))
                .collect(),
            ..r
        };
        assert!(Receipt::decode(&many.encode()).is_err());
    }
}
