//! End-to-end: the posting limits of SPEC §3.1 on real node processes running a network
//! difficulty of their own. A post is stamped by its node, which says at what difficulty and
//! how long it took; the listing reaches another node; a listing whose stamp is worth less
//! than the network asks (a forged one: another listing's stamp; a cheap one) is refused on
//! import with the reason and not stored; quick edits go out at once (dated ahead to keep the
//! interval) and a retraction follows at any time.

mod common;

use common::{jangteo, json_as, json_try_as, start_node_with, tcp_addr, wait_for};
use jangteo_node::api::types::{ImportReport, ListingRef, ListingView, StatusView};
use jangteo_protocol::stamp::{LISTING_CONTEXT, Worker};
use jangteo_protocol::{Envelope, Kind, Listing, PublicKey, SignedObject};

/// The test network's difficulty: cheap, yet far above what a random stamp is worth.
const BITS: &str = "14";

fn post(dir: &std::path::Path, title: &str) -> ListingRef {
    json_as(
        dir,
        &[
            "post",
            "--title",
            title,
            "--price",
            "9000",
            "--currency",
            "KRW",
        ],
    )
}

/// Writes `objects` as a CBOR sequence (each object is one CBOR item) and imports it into
/// the node of `dir`; returns the report and the exit code.
fn import(dir: &std::path::Path, objects: &[Vec<u8>]) -> (ImportReport, Option<i32>) {
    let file = dir.with_extension("cborseq");
    std::fs::write(&file, objects.concat()).expect("write");
    let out = jangteo(
        dir,
        &["--json", "import", file.to_str().expect("utf-8 path")],
    );
    let report = serde_json::from_slice(&out.stdout).expect("an import report");
    (report, out.status.code())
}

#[test]
fn posts_are_stamped_and_cheap_or_forged_stamps_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a, a_id) = start_node_with(&a_dir, None, &["--listing-stamp-bits", BITS]);
    let (b, _) = start_node_with(
        &b_dir,
        Some(&tcp_addr(&a_id)),
        &["--listing-stamp-bits", BITS],
    );
    for n in [&a, &b] {
        wait_for("a gossip peer", || {
            let s: StatusView = json_try_as(&n.dir, &["status"])?;
            (s.gossip_peers > 0).then_some(())
        });
    }

    // The post says what its stamp cost; the text output says it too.
    let first = post(&a_dir, "Stamped kettle");
    assert_eq!(first.stamp_bits, Some(14), "{first:?}");
    assert!(first.stamp_ms.is_some(), "{first:?}");
    let out = jangteo(
        &a_dir,
        &[
            "post",
            "--title",
            "Stamped teapot",
            "--price",
            "8000",
            "--currency",
            "KRW",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("stamped: 14 bits of work in"),
        "the CLI says how long the stamp took: {text}"
    );
    let seen = wait_for("the stamped listing on b", || {
        json_try_as::<ListingView>(&b_dir, &["show", &first.id])
    });
    assert_eq!(seen.title, "Stamped kettle");

    // Forge listings with a's key (the key file is in its data folder).
    let (key, _) = jangteo_node::keys::load_or_create(&a_dir).expect("a's key");
    let author = PublicKey(key.verifying_key().to_bytes());
    let exported = tmp.path().join("a.cborseq");
    json_as::<serde_json::Value>(
        &a_dir,
        &[
            "export",
            "--kind",
            "listing",
            "--out",
            exported.to_str().expect("path"),
        ],
    );
    let bytes = std::fs::read(&exported).expect("export");
    let (items, _) = jangteo_node::api::objects::split_sequence(&bytes);
    let held: Listing = items
        .iter()
        .map(|(_, o)| Listing::decode(&Envelope::decode(o).expect("envelope").body).expect("body"))
        .find(|l| l.title == "Stamped kettle")
        .expect("the kettle exported");
    assert!(held.stamp_work(&author) >= 14);
    // Another listing carrying the kettle's stamp: worth (almost surely) nothing on it.
    let mut forged = held.clone();
    forged.nonce[0] ^= 0x55;
    forged.title = "Forged stamp".into();
    let forged_work = forged.stamp_work(&author);
    assert!(
        forged_work < 14,
        "this one happens to be worth {forged_work}"
    );
    // A listing of its own with a stamp worth exactly 10 bits.
    let mut cheap = held.clone();
    cheap.nonce[0] ^= 0xaa;
    cheap.title = "Cheap stamp".into();
    let w = Worker::new(LISTING_CONTEXT, &cheap.stamp_subject(&author));
    cheap.stamp = (0..).find(|&n| w.bits(n) == 10);
    let sign = |l: &Listing| {
        SignedObject::sign(Kind::Listing, l.encode(), &key)
            .bytes()
            .to_vec()
    };
    let (report, code) = import(&b_dir, &[sign(&forged), sign(&cheap)]);
    assert_eq!(code, Some(1), "{report:?}");
    assert_eq!((report.stored, report.refused), (0, 2), "{report:?}");
    assert!(
        report.errors[0].reason.contains(&format!(
            "worth {forged_work} bits of work on this listing, 14 needed"
        )),
        "{report:?}"
    );
    assert!(
        report.errors[1].reason.contains("worth 10 bits"),
        "{report:?}"
    );
    for l in [&forged, &cheap] {
        let id = l.id(&author).to_hex();
        let out = jangteo(&b_dir, &["show", &id]);
        assert!(!out.status.success(), "{} is not stored", l.title);
    }

    // Two quick edits go out at once (the second dated 10 s after the first); b takes both.
    let v2: ListingRef = json_as(&a_dir, &["update", &first.id, "--price", "8500"]);
    let v3: ListingRef = json_as(&a_dir, &["update", &first.id, "--price", "8000"]);
    assert_eq!((v2.seq, v3.seq), (2, 3));
    assert_eq!(v3.stamp_bits, None, "an edit carries the listing's stamp");
    let on_b = wait_for("the third version on b", || {
        json_try_as::<ListingView>(&b_dir, &["show", &first.id]).filter(|v| v.seq == 3)
    });
    assert_eq!(on_b.price, 8000);
    let shown: ListingView = json_as(&a_dir, &["show", &first.id]);
    assert!(shown.updated_at >= shown.created_at + 20_000, "{shown:?}");
    // A retraction right after: no interval.
    let gone: ListingRef = json_as(&a_dir, &["retract", &first.id]);
    assert_eq!(gone.seq, 4);
    wait_for("the retraction on b", || {
        json_try_as::<ListingView>(&b_dir, &["show", &first.id]).filter(|v| v.seq == 4)
    });
}
