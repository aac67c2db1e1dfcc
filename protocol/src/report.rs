//! The `report` kind: a signed complaint about one listing or one key, and the caps every
//! node applies to the reports of one author.
//!
//! A report names the key it is about (for a listing: its seller), the listing when it is
//! about one, a reason from a fixed list, optional free text and a time. Whether a report
//! counts for anything is each node's own business (it weighs the report by its trust in the
//! author, SPEC §7.2); this module owns only what every node checks the same way: the body,
//! its limits, that nobody reports themselves, and which of one author's reports a node
//! keeps ([`admit`]). It knows nothing of storage or trust.

use ciborium::value::Value;

use crate::cbor::{self, Fields, canonical_map, uint};
use crate::error::{DecodeError, FieldError};
use crate::ids::{ObjectId, PublicKey};
use crate::limits::{EARLIEST_MS, MAX_CLOCK_SKEW_MS};

pub use crate::limits::{
    REPORT_DAY_MS, REPORT_TEXT_MAX_BYTES, REPORTS_HELD_MAX, REPORTS_PER_DAY_MAX,
};

/// Why a listing or a key is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReportReason {
    /// A fraud: the item does not exist, payment is taken and nothing sent.
    Scam,
    /// Goods or services the market does not allow.
    Prohibited,
    /// Repeated, meaningless or advertising posts.
    Spam,
    /// Posted in the wrong category.
    Miscategorized,
    /// The same item posted more than once.
    Duplicate,
}

/// Every reason, in wire order.
pub const REPORT_REASONS: [ReportReason; 5] = [
    ReportReason::Scam,
    ReportReason::Prohibited,
    ReportReason::Spam,
    ReportReason::Miscategorized,
    ReportReason::Duplicate,
];

impl ReportReason {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            ReportReason::Scam => "scam",
            ReportReason::Prohibited => "prohibited",
            ReportReason::Spam => "spam",
            ReportReason::Miscategorized => "miscategorized",
            ReportReason::Duplicate => "duplicate",
        }
    }

    /// Parses a wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        REPORT_REASONS.into_iter().find(|r| r.name() == name)
    }

    /// One byte for records (its index in [`REPORT_REASONS`]).
    pub fn code(self) -> u8 {
        REPORT_REASONS.iter().position(|r| *r == self).unwrap_or(0) as u8
    }

    /// The reason of a record byte.
    pub fn from_code(code: u8) -> Option<Self> {
        REPORT_REASONS.get(usize::from(code)).copied()
    }
}

/// The expected text of `reason` when it is not one of [`REPORT_REASONS`].
pub const REASON_EXPECTED: &str = "scam, prohibited, spam, miscategorized or duplicate";

/// A report body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The key reported; for a report of a listing, the listing's seller.
    pub about: PublicKey,
    /// The listing reported (its listing id), if the report is about one listing.
    pub listing: Option<[u8; 32]>,
    /// Why.
    pub reason: ReportReason,
    /// Free text (what happened); empty when none.
    pub text: String,
    /// When it was signed (unix ms).
    pub at: u64,
}

impl Report {
    /// The deterministic CBOR body.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = vec![
            ("about", Value::Bytes(self.about.0.to_vec())),
            ("reason", Value::Text(self.reason.name().into())),
            ("at", uint(self.at)),
        ];
        if let Some(l) = self.listing {
            e.push(("listing", Value::Bytes(l.to_vec())));
        }
        if !self.text.is_empty() {
            e.push(("text", Value::Text(self.text.clone())));
        }
        cbor::to_vec(&canonical_map(e))
    }

    /// Decodes a body.
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut f = Fields::from_value(cbor::from_slice_canonical(body)?)?;
        let key32 = |b: Vec<u8>, field: &'static str| {
            <[u8; 32]>::try_from(b).map_err(|_| DecodeError::WrongType {
                field,
                expected: "32 bytes",
            })
        };
        let about = key32(f.bytes("about")?, "about")?;
        let listing = f
            .opt_bytes("listing")?
            .map(|b| key32(b, "listing"))
            .transpose()?;
        let reason = f.text("reason")?;
        let reason = ReportReason::from_name(&reason).ok_or(DecodeError::WrongType {
            field: "reason",
            expected: REASON_EXPECTED,
        })?;
        let r = Report {
            about: PublicKey(about),
            listing,
            reason,
            text: f.opt_text("text")?.unwrap_or_default(),
            at: f.u64("at")?,
        };
        f.finish()?;
        Ok(r)
    }

    /// Checks the rules every node applies: nobody reports themselves, the text's limits,
    /// the time.
    pub fn validate(&self, author: &PublicKey, now_ms: u64) -> Result<(), FieldError> {
        if self.about == *author {
            return Err(FieldError::new(
                "about",
                "a report about its own author (or the author's own listing) is refused",
            ));
        }
        crate::text::check_free_text("text", &self.text, REPORT_TEXT_MAX_BYTES, &['\n'])?;
        if self.at < EARLIEST_MS {
            return Err(FieldError::new(
                "at",
                "before 2024-01-01 (seconds sent as ms?)",
            ));
        }
        if self.at > now_ms.saturating_add(MAX_CLOCK_SKEW_MS) {
            return Err(FieldError::dated_in_future("at"));
        }
        Ok(())
    }

    /// What the report is about, as one 32-byte id: the listing id, else the key.
    pub fn target(&self) -> [u8; 32] {
        self.listing.unwrap_or(self.about.0)
    }

    /// The UTC day of `at` (days since the unix epoch).
    pub fn day(&self) -> u64 {
        self.at / REPORT_DAY_MS
    }
}

/// One report of an author that a node holds, as [`admit`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldReport {
    /// Its object id.
    pub id: ObjectId,
    /// What it is about ([`Report::target`]).
    pub target: [u8; 32],
    /// Its `at`.
    pub at: u64,
}

impl HeldReport {
    fn day(&self) -> u64 {
        self.at / REPORT_DAY_MS
    }

    /// Newer first: a higher `at`, then a lower id.
    fn recency(&self) -> (u64, std::cmp::Reverse<ObjectId>) {
        (self.at, std::cmp::Reverse(self.id))
    }
}

/// What a node does with a new report, given the reports of its author it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Keep it, deleting these held reports (superseded, or pushed out by a cap).
    Take {
        /// Ids of held reports to delete in the same write.
        evict: Vec<ObjectId>,
    },
    /// Do not keep it; why. Not an offense of whoever sent it: a node that saw the author's
    /// reports in another order may hold it.
    Refuse(&'static str),
}

/// The caps every node applies to one author's reports (SPEC §7.2), so that a node that has
/// seen the same reports holds the same ones, whatever the order they came in:
///
/// 1. one report per author and target counts: the latest (`at`, ties: the lowest id)
///    replaces the others;
/// 2. at most [`REPORTS_PER_DAY_MAX`] dated within one UTC day: the lowest ids are kept;
/// 3. at most [`REPORTS_HELD_MAX`] in all: the latest are kept.
pub fn admit(held: &[HeldReport], new: HeldReport) -> Admission {
    let mut evict = Vec::new();
    let mut rest: Vec<HeldReport> = Vec::with_capacity(held.len());
    for h in held {
        if h.id == new.id {
            return Admission::Refuse("held already");
        }
        if h.target == new.target {
            if h.recency() >= new.recency() {
                return Admission::Refuse(
                    "a later report by the same author about the same listing or key is held",
                );
            }
            evict.push(h.id);
        } else {
            rest.push(*h);
        }
    }
    let same_day: Vec<&HeldReport> = rest.iter().filter(|h| h.day() == new.day()).collect();
    if same_day.len() >= REPORTS_PER_DAY_MAX {
        let Some(highest) = same_day.iter().map(|h| h.id).max() else {
            return Admission::Refuse("the author's reports of that day are at the cap");
        };
        if new.id > highest {
            return Admission::Refuse(
                "the author's reports dated that day are at the cap (10 a day), and this one is not among the lowest ids",
            );
        }
        evict.push(highest);
        rest.retain(|h| h.id != highest);
    }
    if rest.len() >= REPORTS_HELD_MAX {
        let Some(oldest) = rest.iter().min_by_key(|h| h.recency()).copied() else {
            return Admission::Refuse("the author's reports are at the cap");
        };
        if new.recency() < oldest.recency() {
            return Admission::Refuse(
                "the author's reports held are at the cap (100), and this one is older than all of them",
            );
        }
        evict.push(oldest.id);
    }
    Admission::Take { evict }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_767_225_600_000;

    fn report() -> Report {
        Report {
            about: PublicKey([7; 32]),
            listing: Some([9; 32]),
            reason: ReportReason::Scam,
            text: "asked for payment first, then vanished".into(),
            at: T,
        }
    }

    #[test]
    fn roundtrip_and_rules() {
        let r = report();
        assert_eq!(Report::decode(&r.encode()).expect("decodes"), r);
        let author = PublicKey([1; 32]);
        r.validate(&author, T).expect("valid");
        // A key report, no text.
        let k = Report {
            listing: None,
            text: String::new(),
            ..r.clone()
        };
        assert_eq!(Report::decode(&k.encode()).expect("decodes"), k);
        k.validate(&author, T).expect("valid");
        assert_eq!(k.target(), [7; 32]);
        assert_eq!(r.target(), [9; 32]);
        // About oneself.
        assert_eq!(
            r.validate(&PublicKey([7; 32]), T).expect_err("self").field,
            "about"
        );
        // Text too long, or with a bidi control.
        for text in ["x".repeat(REPORT_TEXT_MAX_BYTES + 1), "\u{202E}abc".into()] {
            let bad = Report { text, ..r.clone() };
            assert_eq!(bad.validate(&author, T).expect_err("text").field, "text");
        }
        // Dated in the future, by this clock only.
        let future = Report {
            at: T + MAX_CLOCK_SKEW_MS + 1,
            ..r.clone()
        };
        let e = future.validate(&author, T).expect_err("future");
        assert!(e.is_clock_dependent());
        assert_eq!(
            Report {
                at: 1_000,
                ..r.clone()
            }
            .validate(&author, T)
            .expect_err("seconds")
            .field,
            "at"
        );
    }

    #[test]
    fn unknown_reason_and_bad_sizes_are_refused_on_decode() {
        let body = |reason: &str, listing: Vec<u8>| {
            cbor::to_vec(&canonical_map(vec![
                ("about", Value::Bytes(vec![7; 32])),
                ("reason", Value::Text(reason.into())),
                ("at", uint(T)),
                ("listing", Value::Bytes(listing)),
            ]))
        };
        assert!(Report::decode(&body("scam", vec![1; 32])).is_ok());
        assert!(matches!(
            Report::decode(&body("rude", vec![1; 32])),
            Err(DecodeError::WrongType {
                field: "reason",
                ..
            })
        ));
        assert!(matches!(
            Report::decode(&body("spam", vec![1; 31])),
            Err(DecodeError::WrongType {
                field: "listing",
                ..
            })
        ));
        for r in REPORT_REASONS {
            assert_eq!(ReportReason::from_name(r.name()), Some(r));
            assert_eq!(ReportReason::from_code(r.code()), Some(r));
        }
    }

    fn held(id: u8, target: u8, at: u64) -> HeldReport {
        HeldReport {
            id: ObjectId([id; 32]),
            target: [target; 32],
            at,
        }
    }

    /// Takes `reports` one by one in `order`, as a node would.
    fn hold(reports: &[HeldReport], order: impl Iterator<Item = usize>) -> Vec<ObjectId> {
        let mut held: Vec<HeldReport> = Vec::new();
        for i in order {
            if let Admission::Take { evict } = admit(&held, reports[i]) {
                held.retain(|h| !evict.contains(&h.id));
                held.push(reports[i]);
            }
        }
        let mut ids: Vec<ObjectId> = held.iter().map(|h| h.id).collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_later_report_of_the_same_target_replaces_the_earlier() {
        let a = held(5, 1, T);
        let b = held(6, 1, T + 1);
        assert_eq!(admit(&[a], b), Admission::Take { evict: vec![a.id] });
        assert!(matches!(admit(&[b], a), Admission::Refuse(_)));
        assert!(matches!(admit(&[a], a), Admission::Refuse(_)));
    }

    #[test]
    fn the_day_cap_keeps_the_lowest_ids_whatever_the_order() {
        let n = REPORTS_PER_DAY_MAX + 5;
        let reports: Vec<HeldReport> = (0..n)
            .map(|i| held(200 - i as u8, i as u8, T + i as u64))
            .collect();
        let forward = hold(&reports, 0..n);
        let backward = hold(&reports, (0..n).rev());
        assert_eq!(forward.len(), REPORTS_PER_DAY_MAX);
        assert_eq!(forward, backward);
        let mut lowest: Vec<ObjectId> = reports.iter().map(|h| h.id).collect();
        lowest.sort();
        lowest.truncate(REPORTS_PER_DAY_MAX);
        assert_eq!(forward, lowest);
        // Another day has its own cap.
        let next_day = held(250, 250, T + REPORT_DAY_MS);
        let held_now: Vec<HeldReport> = reports
            .iter()
            .filter(|h| forward.contains(&h.id))
            .copied()
            .collect();
        assert_eq!(
            admit(&held_now, next_day),
            Admission::Take { evict: vec![] }
        );
    }

    #[test]
    fn the_held_cap_keeps_the_latest() {
        // Ten a day over many days: more than the held cap.
        let n = REPORTS_HELD_MAX + 20;
        let reports: Vec<HeldReport> = (0..n)
            .map(|i| HeldReport {
                id: ObjectId(*blake3::hash(&(i as u64).to_be_bytes()).as_bytes()),
                target: *blake3::hash(&(i as u64 + 1_000_000).to_be_bytes()).as_bytes(),
                at: T + (i as u64 / 5) * REPORT_DAY_MS,
            })
            .collect();
        let forward = hold(&reports, 0..n);
        let backward = hold(&reports, (0..n).rev());
        assert_eq!(forward.len(), REPORTS_HELD_MAX);
        assert_eq!(forward, backward);
        let oldest_kept = reports
            .iter()
            .filter(|h| forward.contains(&h.id))
            .map(|h| h.at)
            .min();
        assert_eq!(oldest_kept, Some(T + 4 * REPORT_DAY_MS));
    }
}
