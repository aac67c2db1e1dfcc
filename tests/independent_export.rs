//! End-to-end: what a real node exports is valid to a second implementation of SPEC.md.
//!
//! Two `jangteo node` processes trade through the CLI (a listing with a Korean title, an
//! offer, accept, paid, received, a rating), then `jangteo export --out F` writes the
//! buyer's objects as a CBOR sequence, and the independent Python checker
//! (`tests/independent/jangteo_check.py`, written from SPEC.md alone) must find every object
//! in F valid. Needs the venv of `.ci/deps`; without it this test fails, it does not skip.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{json_as, json_try_as, start_node, tcp_addr, wait_for};
use jangteo_node::api::types::{
    ExportReport, ListingRef, ListingView, OfferMade, RatingView, TradeRef, TradeStateName,
};
use serde::Deserialize;

/// One line of the independent checker's output (`{"index", "id", "kind", "valid", "error",
/// "reason"}`, see its docstring): the checker's own format, not the node's API.
#[derive(Debug, Deserialize)]
struct Verdict {
    /// The object's kind, when it could be read.
    kind: Option<String>,
    /// Whether the object is valid.
    valid: bool,
}

fn python() -> PathBuf {
    let venv = std::env::var_os("JANGTEO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/jangteo-venv")
        });
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "no Python venv at {}: run .ci/deps (it installs cbor2, PyNaCl and blake3)",
        venv.display()
    );
    py
}

#[test]
fn a_nodes_export_passes_the_independent_checker() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (s_dir, b_dir) = (tmp.path().join("seller"), tmp.path().join("buyer"));
    let (seller, s_id) = start_node(&s_dir, None);
    let (buyer, _) = start_node(&b_dir, Some(&tcp_addr(&s_id)));

    let listing: ListingRef = json_as(
        &seller.dir,
        &[
            "post",
            "--title",
            "중고 자전거를 팝니다 — 거의 새것",
            "--description",
            "2019년식\n마포구 직거래",
            "--price",
            "150000",
            "--currency",
            "KRW",
            "--category",
            "bikes",
            "--location",
            "37.5563,126.9220",
        ],
    );
    let listing = listing.id;
    json_as::<ListingRef>(
        &seller.dir,
        &[
            "post",
            "--title",
            "電気ケトル",
            "--price",
            "2000",
            "--currency",
            "JPY",
        ],
    );
    wait_for("the listing at the buyer", || {
        json_try_as::<ListingView>(&buyer.dir, &["show", &listing]).map(|_| ())
    });
    let offer: OfferMade = json_as(
        &buyer.dir,
        &[
            "offer",
            &listing,
            "--price",
            "140000",
            "--message",
            "토요일에 가능할까요?",
        ],
    );
    let trade = offer.id;
    let state_is = |dir: &std::path::Path, state: TradeStateName| {
        common::trade_state_is(dir, &trade, state);
    };
    state_is(&seller.dir, TradeStateName::Offered);
    json_as::<TradeRef>(&seller.dir, &["accept", &trade]);
    state_is(&buyer.dir, TradeStateName::Accepted);
    json_as::<TradeRef>(
        &buyer.dir,
        &["paid", &trade, "--reference", "국민은행 이체"],
    );
    json_as::<TradeRef>(&buyer.dir, &["received", &trade]);
    state_is(&buyer.dir, TradeStateName::Completed);
    json_as::<RatingView>(
        &buyer.dir,
        &["rate", &trade, "--score", "5", "--comment", "친절해요"],
    );

    let file = tmp.path().join("export.cborseq");
    let report: ExportReport = json_as(
        &buyer.dir,
        &["export", "--out", file.to_str().expect("utf-8 path")],
    );
    let out = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/independent/jangteo_check.py"
        ))
        .arg(&file)
        .output()
        .expect("run the Python checker");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the independent checker refused the export:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<Verdict> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(
        verdicts.len() as u64,
        report.objects,
        "one verdict per exported object"
    );
    let kinds: Vec<&str> = verdicts.iter().filter_map(|v| v.kind.as_deref()).collect();
    assert!(verdicts.iter().all(|v| v.valid), "{stdout}");
    assert!(
        kinds.iter().filter(|k| **k == "listing").count() >= 2,
        "both listings exported: {kinds:?}"
    );
}
