//! The `attestation` kind: one party's rating of the other after a completed trade.
//!
//! An attestation carries the whole signed trade chain it is about (offer first, ending in
//! `received`), so any node can check, with nothing but the attestation, that both parties
//! signed a trade that completed, that the author is one of them and that the subject is the
//! other. One attestation counts per author per trade: a later one (higher `at`) from the
//! same author about the same trade supersedes the earlier.
//!
//! An attestation carries a proof-of-work stamp (SPEC §7.1, §12) bound to its author, its
//! trade and its `at`, so that minting ratings between two keys of one's own costs CPU time
//! that every node checks with one hash, before any signature.

use ciborium::value::Value;

use crate::cbor::{self, Fields, canonical_map, uint};
use crate::envelope::SignedObject;
use crate::error::{DecodeError, FieldError};
use crate::ids::{ObjectId, PublicKey};
use crate::limits::{CHAIN_MAX, MAX_CLOCK_SKEW_MS};
use crate::trade::{ChainMessage, Role, Terms, TradeChain, TradeState};

pub use crate::limits::{
    ATTESTATION_CHAIN_MIN, ATTESTATION_STAMP_BITS, COMMENT_MAX_BYTES, MAX_ATTESTATION_BYTES,
};

/// The difficulty, in bits, an attestation's stamp must have on a network whose listing
/// difficulty is `network_bits` (SPEC §7.1): that minus ([`crate::limits::LISTING_STAMP_BITS`]
/// − [`ATTESTATION_STAMP_BITS`]), 22 on the public network, 0 (no stamp asked) where
/// listings ask for 2 bits or fewer.
pub fn stamp_bits(network_bits: u32) -> u32 {
    network_bits
        .saturating_sub(crate::limits::LISTING_STAMP_BITS - ATTESTATION_STAMP_BITS)
        .min(crate::stamp::MAX_BITS)
}

/// The subject of an attestation's stamp (SPEC §7.1): blake3 of the tag
/// `jangteo/v1/attestation-stamp`, the author's key, the trade id (the id of the chain's
/// first envelope) and `at` (8 bytes, little-endian). A stamp serves one rating of one trade
/// by one author at one time: not the other party's, not a re-signed one with a later `at`.
pub fn stamp_subject(author: &PublicKey, trade: &ObjectId, at: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"jangteo/v1/attestation-stamp");
    h.update(&author.0);
    h.update(&trade.0);
    h.update(&at.to_le_bytes());
    *h.finalize().as_bytes()
}

/// An attestation body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The trade's messages as signed envelopes, offer first, the last one `received`.
    pub chain: Vec<Vec<u8>>,
    /// The party rated (the other party of the trade).
    pub about: PublicKey,
    /// The author's role in the trade.
    pub role: Role,
    /// 1 (bad) to 5 (excellent).
    pub score: u8,
    /// Free text.
    pub comment: String,
    /// When it was signed (unix ms).
    pub at: u64,
    /// The proof-of-work stamp (SPEC §7.1); None: no stamp (worth 0 bits).
    pub stamp: Option<u64>,
}

/// What an attestation proves, once its chain has been checked.
#[derive(Debug, Clone)]
pub struct Attested {
    /// The attestation.
    pub attestation: Attestation,
    /// The trade id (the offer's id).
    pub trade: ObjectId,
    /// Who wrote it.
    pub author: PublicKey,
    /// The buyer of the trade.
    pub buyer: PublicKey,
    /// The seller of the trade.
    pub seller: PublicKey,
    /// The terms the trade completed on.
    pub terms: Terms,
    /// When the buyer signed `received`.
    pub completed_at: u64,
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Buyer => "buyer",
        Role::Seller => "seller",
        Role::Moderator => "moderator",
    }
}

impl Attestation {
    /// The deterministic CBOR body.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = vec![
            (
                "chain",
                Value::Array(self.chain.iter().map(|b| Value::Bytes(b.clone())).collect()),
            ),
            ("about", Value::Bytes(self.about.0.to_vec())),
            ("role", Value::Text(role_name(self.role).into())),
            ("score", uint(u64::from(self.score))),
            ("at", uint(self.at)),
        ];
        if !self.comment.is_empty() {
            e.push(("comment", Value::Text(self.comment.clone())));
        }
        if let Some(n) = self.stamp {
            e.push(("stamp", uint(n)));
        }
        cbor::to_vec(&canonical_map(e))
    }

    /// Decodes a body (structure only; [`Attestation::verify`] checks the chain).
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut f = Fields::from_value(cbor::from_slice_canonical(body)?)?;
        let chain = f
            .array("chain")?
            .into_iter()
            .map(|v| match v {
                Value::Bytes(b) => Ok(b),
                _ => Err(DecodeError::WrongType {
                    field: "chain",
                    expected: "array of envelopes (bytes)",
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let about: [u8; 32] = f
            .bytes("about")?
            .try_into()
            .map_err(|_| DecodeError::WrongType {
                field: "about",
                expected: "32 bytes",
            })?;
        let role = match f.text("role")?.as_str() {
            "buyer" => Role::Buyer,
            "seller" => Role::Seller,
            _ => {
                return Err(DecodeError::WrongType {
                    field: "role",
                    expected: "buyer or seller",
                });
            }
        };
        let score = u8::try_from(f.u64("score")?).map_err(|_| DecodeError::WrongType {
            field: "score",
            expected: "1-5",
        })?;
        let a = Attestation {
            chain,
            about: PublicKey(about),
            role,
            score,
            comment: f.opt_text("comment")?.unwrap_or_default(),
            at: f.u64("at")?,
            stamp: f.opt_u64("stamp")?,
        };
        f.finish()?;
        Ok(a)
    }

    /// The trade id the chain names: the id of its first envelope (read without checking it;
    /// [`Attestation::verify`] checks that it is the trade's offer). All zeros without a chain.
    pub fn trade_id(&self) -> ObjectId {
        self.chain
            .first()
            .map_or(ObjectId([0; 32]), |b| ObjectId::of(b))
    }

    /// The subject of this attestation's stamp by `author` (see [`stamp_subject`]).
    pub fn stamp_subject(&self, author: &PublicKey) -> [u8; 32] {
        stamp_subject(author, &self.trade_id(), self.at)
    }

    /// What the stamp is worth, in bits, for `author` (0 without a stamp): one hash of the
    /// subject and one of the first envelope, no signature, so a node can drop a cheap one
    /// before any other check.
    pub fn stamp_work(&self, author: &PublicKey) -> u32 {
        self.stamp.map_or(0, |n| {
            crate::stamp::work(
                crate::stamp::ATTESTATION_CONTEXT,
                &self.stamp_subject(author),
                n,
            )
        })
    }

    /// Finds the lowest stamp worth `bits` for this attestation by `author` and sets it
    /// (none when `bits` is 0). Blocking: 2^`bits` hashes on average (run it off an async
    /// runtime); set `at` first, as the stamp covers it.
    pub fn solve_stamp(&mut self, author: &PublicKey, bits: u32) {
        if bits == 0 {
            self.stamp = None;
            return;
        }
        let subject = self.stamp_subject(author);
        self.stamp = Some(crate::stamp::solve(
            crate::stamp::ATTESTATION_CONTEXT,
            &subject,
            bits,
        ));
    }

    /// Checks the limits and the embedded trade: every message verifies, the messages form
    /// one chain in order from the offer to `received`, `author` is a party with the role
    /// claimed and `about` is the other party.
    pub fn verify(self, author: &PublicKey, now_ms: u64) -> Result<Attested, FieldError> {
        if !(1..=5).contains(&self.score) {
            return Err(FieldError::new("score", "must be 1-5"));
        }
        crate::text::check_free_text("comment", &self.comment, COMMENT_MAX_BYTES, &['\n'])?;
        if self.at > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(FieldError::dated_in_future("at"));
        }
        if self.chain.len() < ATTESTATION_CHAIN_MIN || self.chain.len() > CHAIN_MAX {
            return Err(FieldError::new(
                "chain",
                format!(
                    "must hold the trade's {ATTESTATION_CHAIN_MIN}-{CHAIN_MAX} messages (offer, accept, paid, received at least)"
                ),
            ));
        }
        let mut messages = Vec::with_capacity(self.chain.len());
        for (i, bytes) in self.chain.iter().enumerate() {
            let m = SignedObject::decode_and_verify(bytes)
                .and_then(|o| ChainMessage::new(o, now_ms))
                .map_err(|e| FieldError::new("chain", format!("message {}: {e}", i + 1)))?;
            messages.push(m);
        }
        let mut it = messages.into_iter();
        let first = it.next().ok_or_else(|| FieldError::new("chain", "empty"))?;
        let mut trade = TradeChain::start(first)
            .map_err(|_| FieldError::new("chain", "must start with the trade's offer"))?;
        for (i, m) in it.enumerate() {
            trade
                .apply(m)
                .map_err(|e| FieldError::new("chain", format!("message {}: {e}", i + 2)))?;
        }
        if trade.state != TradeState::Completed {
            return Err(FieldError::new(
                "chain",
                format!(
                    "the trade is {}, not completed: only a trade that ended in received can be rated",
                    trade.state.name()
                ),
            ));
        }
        let completed_at = trade.messages.last().map_or(0, |m| m.message.at);
        let (role, other) = if *author == trade.buyer {
            (Role::Buyer, trade.seller)
        } else if *author == trade.seller {
            (Role::Seller, trade.buyer)
        } else {
            return Err(FieldError::new(
                "author",
                "only the buyer or the seller of the trade may rate it",
            ));
        };
        if role != self.role {
            return Err(FieldError::new(
                "role",
                format!("the author is the {} of this trade", role_name(role)),
            ));
        }
        if self.about != other {
            return Err(FieldError::new(
                "about",
                "must be the other party of the trade",
            ));
        }
        if self.at < completed_at {
            return Err(FieldError::new("at", "earlier than the trade's completion"));
        }
        Ok(Attested {
            trade: trade.id,
            author: *author,
            buyer: trade.buyer,
            seller: trade.seller,
            terms: trade.terms.clone(),
            completed_at,
            attestation: self,
        })
    }
}

impl Attested {
    /// Whether `other` supersedes `self` (same author and trade, later; ties: lower id).
    pub fn superseded_by(&self, self_id: &ObjectId, other: &Attested, other_id: &ObjectId) -> bool {
        other.trade == self.trade
            && other.author == self.author
            && (other.attestation.at, std::cmp::Reverse(*other_id))
                > (self.attestation.at, std::cmp::Reverse(*self_id))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::envelope::Kind;
    use crate::listing::ListingId;
    use crate::trade::TradeMessage;
    use crate::{Object, verify_object};
    use ed25519_dalek::SigningKey;

    pub(crate) const T: u64 = 1_767_225_600_000;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }
    fn pk(n: u8) -> PublicKey {
        PublicKey(key(n).verifying_key().to_bytes())
    }

    /// A chain signed by buyer `b` and seller `s`, of the given kinds after the offer.
    pub(crate) fn chain(b: u8, s: u8, price: u64, kinds: &[Kind]) -> Vec<Vec<u8>> {
        let terms = Terms {
            listing: ListingId([s; 32]),
            listing_seq: 1,
            price,
            currency: "KRW".into(),
            quantity: 1,
        };
        let offer = TradeMessage {
            trade: None,
            prev: None,
            at: T,
            seller: Some(pk(s)),
            terms: Some(terms.clone()),
            moderators: vec![],
            note: String::new(),
            outcome: None,
        };
        let first = SignedObject::sign(Kind::Offer, offer.encode(), &key(b));
        let trade = first.id();
        let mut prev = trade;
        let mut out = vec![first.bytes().to_vec()];
        for (i, kind) in kinds.iter().enumerate() {
            let mut m = TradeMessage::follow(trade, prev, T + 1000 * (i as u64 + 1));
            let by = match kind {
                Kind::Accept => {
                    m.terms = Some(terms.clone());
                    s
                }
                Kind::Shipped => {
                    m.outcome = Some("shipped".into());
                    s
                }
                _ => b,
            };
            let o = SignedObject::sign(*kind, m.encode(), &key(by));
            prev = o.id();
            out.push(o.bytes().to_vec());
        }
        out
    }

    pub(crate) const COMPLETE: &[Kind] = &[Kind::Accept, Kind::Paid, Kind::Shipped, Kind::Received];

    fn rate(author: u8, about: u8, role: Role, chain: Vec<Vec<u8>>) -> Vec<u8> {
        let a = Attestation {
            chain,
            about: pk(about),
            role,
            score: 5,
            comment: "빠른 거래 감사합니다".into(),
            at: T + 10_000,
            stamp: None,
        };
        SignedObject::sign(Kind::Attestation, a.encode(), &key(author))
            .bytes()
            .to_vec()
    }

    fn check(bytes: &[u8]) -> Result<Attested, String> {
        match verify_object(bytes, T + 3_600_000) {
            Ok((_, Object::Attestation(a))) => Ok(*a),
            Ok(_) => Err("not an attestation".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn both_parties_may_rate_a_completed_trade() {
        let c = chain(1, 2, 10_000, COMPLETE);
        let by_buyer = check(&rate(1, 2, Role::Buyer, c.clone())).expect("buyer rates seller");
        assert_eq!(by_buyer.seller, pk(2));
        assert_eq!(by_buyer.attestation.about, pk(2));
        assert_eq!(by_buyer.terms.total(), 10_000);
        check(&rate(2, 1, Role::Seller, c)).expect("seller rates buyer");
    }

    #[test]
    fn refused_without_a_completed_trade() {
        let unfinished = chain(1, 2, 10_000, &[Kind::Accept, Kind::Paid, Kind::Shipped]);
        let e = check(&rate(1, 2, Role::Buyer, unfinished)).expect_err("unfinished");
        assert!(e.contains("not completed"), "{e}");
        let e = check(&rate(1, 2, Role::Buyer, vec![])).expect_err("no trade");
        assert!(e.contains("chain"), "{e}");
    }

    #[test]
    fn refused_from_a_stranger_or_about_the_wrong_peer() {
        let c = chain(1, 2, 10_000, COMPLETE);
        let e = check(&rate(3, 2, Role::Buyer, c.clone())).expect_err("stranger");
        assert!(e.contains("only the buyer or the seller"), "{e}");
        let e = check(&rate(1, 3, Role::Buyer, c.clone())).expect_err("wrong subject");
        assert!(e.contains("about"), "{e}");
        let e = check(&rate(1, 2, Role::Seller, c.clone())).expect_err("wrong role");
        assert!(e.contains("role"), "{e}");
        let e = check(&rate(1, 1, Role::Buyer, c)).expect_err("self rating");
        assert!(e.contains("about"), "{e}");
    }

    #[test]
    fn refused_with_a_forged_or_reordered_chain() {
        let mut c = chain(1, 2, 10_000, COMPLETE);
        // The buyer forges the seller's accept with their own key: the seller never signed.
        let forged = chain(1, 9, 10_000, COMPLETE);
        c[1] = forged[1].clone();
        assert!(check(&rate(1, 2, Role::Buyer, c)).is_err());
        // A flipped bit inside a message breaks its signature.
        let mut c = chain(1, 2, 10_000, COMPLETE);
        let n = c[2].len();
        c[2][n - 70] ^= 1;
        let e = check(&rate(1, 2, Role::Buyer, c)).expect_err("tampered");
        assert!(e.contains("message 3"), "{e}");
        // Messages out of order do not form the chain.
        let mut c = chain(1, 2, 10_000, COMPLETE);
        c.swap(2, 3);
        assert!(check(&rate(1, 2, Role::Buyer, c)).is_err());
        // A ring's own completed trade is valid evidence of a trade (trust decides its worth).
        check(&rate(7, 8, Role::Buyer, chain(7, 8, 10_000, COMPLETE))).expect("ring trade");
    }

    #[test]
    fn limits() {
        let c = chain(1, 2, 10_000, COMPLETE);
        for score in [0u8, 6] {
            let a = Attestation {
                chain: c.clone(),
                about: pk(2),
                role: Role::Buyer,
                score,
                comment: String::new(),
                at: T + 10_000,
                stamp: None,
            };
            let o = SignedObject::sign(Kind::Attestation, a.encode(), &key(1));
            assert!(check(o.bytes()).expect_err("score").contains("score"));
        }
        let a = Attestation {
            chain: c,
            about: pk(2),
            role: Role::Buyer,
            score: 4,
            comment: "x".repeat(COMMENT_MAX_BYTES + 1),
            at: T + 10_000,
            stamp: None,
        };
        let o = SignedObject::sign(Kind::Attestation, a.encode(), &key(1));
        assert!(check(o.bytes()).expect_err("comment").contains("comment"));
    }

    #[test]
    fn later_supersedes_earlier() {
        let c = chain(1, 2, 10_000, COMPLETE);
        let mk = |at: u64, score: u8| {
            let a = Attestation {
                chain: c.clone(),
                about: pk(2),
                role: Role::Buyer,
                score,
                comment: String::new(),
                at,
                stamp: None,
            };
            let o = SignedObject::sign(Kind::Attestation, a.encode(), &key(1));
            let id = o.id();
            (id, check(o.bytes()).expect("valid"))
        };
        let (id1, a1) = mk(T + 10_000, 2);
        let (id2, a2) = mk(T + 20_000, 5);
        assert!(a1.superseded_by(&id1, &a2, &id2));
        assert!(!a2.superseded_by(&id2, &a1, &id1));
    }

    fn stamped(
        author: u8,
        about: u8,
        role: Role,
        chain: Vec<Vec<u8>>,
        at: u64,
        bits: u32,
    ) -> Attestation {
        let mut a = Attestation {
            chain,
            about: pk(about),
            role,
            score: 5,
            comment: String::new(),
            at,
            stamp: None,
        };
        a.solve_stamp(&pk(author), bits);
        a
    }

    /// SPEC §7.1: the stamp binds author, trade and `at`; a liar's stamp is worth (almost
    /// surely) nothing once any of them changes, and it survives encoding.
    #[test]
    fn a_stamp_serves_one_author_one_trade_one_time() {
        const BITS: u32 = 12;
        let c = chain(1, 2, 10_000, COMPLETE);
        let a = stamped(1, 2, Role::Buyer, c.clone(), T + 10_000, BITS);
        assert!(a.stamp_work(&pk(1)) >= BITS);
        let back = Attestation::decode(&a.encode()).expect("decode");
        assert_eq!(back, a);
        assert!(back.stamp_work(&pk(1)) >= BITS);
        // No stamp is worth nothing; bits 0 asks for none and makes none.
        let bare = Attestation {
            stamp: None,
            ..a.clone()
        };
        assert_eq!(bare.stamp_work(&pk(1)), 0);
        assert_eq!(
            stamped(1, 2, Role::Buyer, c.clone(), T + 10_000, 0).stamp,
            None
        );
        // The other party copying the buyer's stamp onto its own rating of the same trade.
        let theirs = Attestation {
            about: pk(1),
            role: Role::Seller,
            ..a.clone()
        };
        assert!(theirs.stamp_work(&pk(2)) < BITS);
        // Re-signed later with the old stamp (to supersede without paying).
        let later = Attestation {
            at: T + 20_000,
            ..a.clone()
        };
        assert!(later.stamp_work(&pk(1)) < BITS);
        // Moved onto another trade between the same keys.
        let other = Attestation {
            chain: chain(1, 2, 20_000, COMPLETE),
            ..a.clone()
        };
        assert!(other.stamp_work(&pk(1)) < BITS);
        // Score and comment are not in the subject: changing them makes a rival of the same
        // author, trade and time, of which only one counts (the lowest id).
        let rival = Attestation {
            score: 1,
            ..a.clone()
        };
        assert!(rival.stamp_work(&pk(1)) >= BITS);
        // The difficulty follows the network's listing difficulty.
        assert_eq!(
            stamp_bits(crate::limits::LISTING_STAMP_BITS),
            ATTESTATION_STAMP_BITS
        );
        assert_eq!(stamp_bits(0), 0);
        assert_eq!(stamp_bits(12), 10);
    }
}
