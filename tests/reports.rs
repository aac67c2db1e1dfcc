//! End-to-end: reports and moderation across three real node processes. C reports a listing
//! of A; B, which neither trusts C nor subscribed to it, lists the report with weight 0 and
//! changes nothing; once B trusts C, and then once it subscribes to C as a moderator, the
//! listing is hidden on B (left out of search, `show` says why); C's report of A's key hides
//! A's other listings too. Bad input is refused with its reason. A flood of reports from one
//! throw-away key, split between A and C, stops at the cap on B, which gets both halves over
//! the network, and then on A and C: every node ends holding the same ten.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    cli_error, jangteo, json_as, json_try_as, start_node, start_node_with, tcp_addr, wait_for,
    wait_for_within,
};
use ed25519_dalek::SigningKey;
use jangteo_node::api::types::{
    ImportReport, ListingRef, ListingView, ModerationView, ModeratorChange, ReportBasis,
    ReportMade, ReportView, TrustChange,
};
use jangteo_protocol::report::{REPORT_DAY_MS, REPORTS_PER_DAY_MAX, Report, ReportReason};
use jangteo_protocol::{Kind, PublicKey, SignedObject};

/// Long enough for a catch-up sync round (every 60 s) after gossip missed something.
const SYNC_WAIT: Duration = Duration::from_secs(150);

fn post(dir: &Path, title: &str) -> ListingRef {
    json_as(
        dir,
        &[
            "post",
            "--title",
            title,
            "--price",
            "250000",
            "--currency",
            "KRW",
            "--category",
            "digital",
        ],
    )
}

fn moderation(dir: &Path, id: &str) -> Option<ModerationView> {
    json_try_as::<ListingView>(dir, &["show", id]).and_then(|v| v.moderation)
}

fn search_ids(dir: &Path) -> Vec<String> {
    json_as::<Vec<ListingView>>(dir, &["search"])
        .into_iter()
        .map(|v| v.id)
        .collect()
}

fn reports_by(dir: &Path, peer: &str) -> Vec<String> {
    let mut ids: Vec<String> = json_as::<Vec<ReportView>>(dir, &["reports", "--by", peer])
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    ids
}

/// The error code of a command that must fail with exit 1.
fn refused(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = jangteo(dir, &all);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{args:?} must be refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    cli_error(&out).error.code
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

#[test]
fn reports_are_weighed_by_each_nodes_trust_and_a_flood_stops_at_the_cap_everywhere() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a_dir, b_dir, c_dir) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );

    // A flood: fifteen reports by one throw-away key, all dated today (UTC), each about
    // another key. A gets five of them, C the other ten, before either meets anyone.
    let flooder = SigningKey::from_bytes(&[0xf1; 32]);
    let flooder_id = PublicKey(flooder.verifying_key().to_bytes()).peer_id();
    let now = now_ms();
    let at = now - now % REPORT_DAY_MS;
    let mut flood: Vec<SignedObject> = (0..15u8)
        .map(|i| {
            let about = PublicKey(
                SigningKey::from_bytes(&[0x40 + i; 32])
                    .verifying_key()
                    .to_bytes(),
            );
            let r = Report {
                about,
                listing: None,
                reason: ReportReason::Spam,
                text: String::new(),
                at,
            };
            SignedObject::sign(Kind::Report, r.encode(), &flooder)
        })
        .collect();
    flood.sort_by_key(|o| o.id());
    let mut lowest: Vec<String> = flood
        .iter()
        .take(REPORTS_PER_DAY_MAX)
        .map(|o| o.id().to_hex())
        .collect();
    lowest.sort();
    // A gets the five lowest ids, C the ten above them: no node holds the final ten at first.
    let to_a: Vec<u8> = flood[..5].iter().flat_map(|o| o.bytes().to_vec()).collect();
    let to_c: Vec<u8> = flood[5..].iter().flat_map(|o| o.bytes().to_vec()).collect();
    let (file_a, file_c) = (tmp.path().join("flood-a"), tmp.path().join("flood-c"));
    std::fs::write(&file_a, to_a).expect("write");
    std::fs::write(&file_c, to_c).expect("write");

    let (_a, a_id) = start_node(&a_dir, None);
    let (_c, c_id) = start_node(&c_dir, None);
    let imported: ImportReport = json_as(&a_dir, &["import", file_a.to_str().expect("utf-8 path")]);
    assert_eq!((imported.stored, imported.refused), (5, 0));
    let imported: ImportReport = json_as(&c_dir, &["import", file_c.to_str().expect("utf-8 path")]);
    assert_eq!((imported.stored, imported.refused), (10, 0));
    assert_eq!(reports_by(&c_dir, &flooder_id).len(), 10);

    // B meets both: it is offered all fifteen, and keeps the ten with the lowest ids.
    let (_b, _) = start_node_with(
        &b_dir,
        Some(&tcp_addr(&a_id)),
        &["--bootstrap", &tcp_addr(&c_id)],
    );
    wait_for_within(
        SYNC_WAIT,
        "B to hold the ten lowest reports of the flood",
        || (reports_by(&b_dir, &flooder_id) == lowest).then_some(()),
    );

    // A's listing reaches C (through B).
    let listing = post(&a_dir, "Galaxy S21, barely used");
    wait_for("C to hold A's listing", || {
        json_try_as::<ListingView>(&c_dir, &["show", &listing.id])
    });

    // Bad input, each refused with its reason.
    assert_eq!(
        refused(&c_dir, &["report", &listing.id, "--reason", "rude"]),
        "invalid"
    );
    assert_eq!(
        refused(
            &c_dir,
            &[
                "report",
                &listing.id,
                "--reason",
                "scam",
                "--text",
                &"x".repeat(501)
            ]
        ),
        "invalid"
    );
    assert_eq!(
        refused(&c_dir, &["report", &"ab".repeat(32), "--reason", "scam"]),
        "not_found",
        "a listing this node does not hold"
    );
    let stranger = PublicKey(
        SigningKey::from_bytes(&[0x77; 32])
            .verifying_key()
            .to_bytes(),
    );
    assert_eq!(
        refused(&c_dir, &["report", &stranger.peer_id(), "--reason", "spam"]),
        "not_found",
        "a key this node knows nothing of"
    );
    assert_eq!(
        refused(&c_dir, &["report", &c_id.peer_id, "--reason", "spam"]),
        "refused",
        "oneself"
    );
    assert_eq!(
        refused(&a_dir, &["report", &listing.id, "--reason", "spam"]),
        "refused",
        "one's own listing"
    );

    // C reports the listing.
    let made: ReportMade = json_as(
        &c_dir,
        &[
            "report",
            &listing.id,
            "--reason",
            "scam",
            "--text",
            "asked for payment before meeting, then stopped answering",
        ],
    );
    assert_eq!(made.listing.as_deref(), Some(listing.id.as_str()));
    assert_eq!(made.about, a_id.peer_id);

    // B trusts no one: the report is listed with weight 0 and changes nothing.
    let m = wait_for_within(SYNC_WAIT, "B to hold C's report", || {
        moderation(&b_dir, &listing.id)
    });
    assert_eq!(m.reports.len(), 1, "{m:?}");
    let r = &m.reports[0];
    assert_eq!(
        (r.id.as_str(), r.by.as_str(), r.reason.as_str()),
        (made.id.as_str(), c_id.peer_id.as_str(), "scam")
    );
    assert_eq!((r.weight, r.basis), (0.0, ReportBasis::Trust));
    assert!(r.text.contains("payment before meeting"));
    assert!(!m.hidden && !m.warning && m.weight == 0.0, "{m:?}");
    assert!(search_ids(&b_dir).contains(&listing.id));
    // The seller sees the report too.
    let on_a = wait_for("A to hold C's report", || moderation(&a_dir, &listing.id));
    assert_eq!(on_a.reports[0].by, c_id.peer_id);

    // B trusts C: C's report weighs in full, the listing is hidden, and says why.
    let t: TrustChange = json_as(&b_dir, &["trust", &c_id.peer_id]);
    assert!(t.trusted);
    let m = wait_for("B to hide the listing", || {
        moderation(&b_dir, &listing.id).filter(|m| m.hidden)
    });
    assert_eq!(m.reasons, vec!["scam".to_owned()]);
    assert_eq!(m.reports[0].weight, 1.0);
    assert!(
        !search_ids(&b_dir).contains(&listing.id),
        "hidden from search"
    );
    // A does not trust C: nothing changes there.
    let on_a = moderation(&a_dir, &listing.id).expect("A's view");
    assert!(!on_a.hidden && on_a.weight == 0.0);
    assert!(search_ids(&a_dir).contains(&listing.id));

    // Instead of trusting C, B subscribes to C as a moderator: the same, as its own.
    let _: TrustChange = json_as(&b_dir, &["distrust", &c_id.peer_id]);
    let m = moderation(&b_dir, &listing.id).expect("B's view");
    assert!(!m.hidden && m.weight == 0.0, "no longer trusted: {m:?}");
    let change: ModeratorChange = json_as(&b_dir, &["moderators", "add", &c_id.peer_id]);
    assert!(change.moderator && change.changed);
    let mods: Vec<String> = json_as(&b_dir, &["moderators"]);
    assert_eq!(mods, vec![c_id.peer_id.clone()]);
    let m = moderation(&b_dir, &listing.id).expect("B's view");
    assert!(m.hidden, "{m:?}");
    assert_eq!(m.reports[0].basis, ReportBasis::Moderator);
    assert!(!search_ids(&b_dir).contains(&listing.id));

    // C reports A's key: A's other listings are hidden on B as well.
    let key_report: ReportMade = json_as(&c_dir, &["report", &a_id.peer_id, "--reason", "spam"]);
    assert_eq!(key_report.listing, None);
    let second = post(&a_dir, "iPad mini 6");
    let m = wait_for_within(SYNC_WAIT, "B to hide A's second listing", || {
        moderation(&b_dir, &second.id).filter(|m| m.hidden)
    });
    assert_eq!(m.reports.len(), 1);
    assert_eq!(m.reports[0].listing, None, "the report of the key");
    assert_eq!(m.reasons, vec!["spam".to_owned()]);

    // Dropping the moderator undoes it all.
    let _: ModeratorChange = json_as(&b_dir, &["moderators", "rm", &c_id.peer_id]);
    let m = moderation(&b_dir, &listing.id).expect("B's view");
    assert!(!m.hidden && !m.warning, "{m:?}");
    assert_eq!(m.reports.len(), 2, "the listing's report and the key's");
    wait_for("both of A's listings in B's search again", || {
        let ids = search_ids(&b_dir);
        (ids.contains(&listing.id) && ids.contains(&second.id)).then_some(())
    });

    // The flood: A and C end with the same ten as B.
    for (dir, name) in [(&a_dir, "A"), (&c_dir, "C")] {
        wait_for_within(
            SYNC_WAIT,
            &format!("{name} to hold the ten lowest reports of the flood"),
            || (reports_by(dir, &flooder_id) == lowest).then_some(()),
        );
    }
}
