//! Runs the independent Python implementation of SPEC.md (`tests/independent/jangteo_check.py`,
//! written from the text alone) over every vector in SPEC.md: each object vector must be
//! valid, each reject vector refused with the error SPEC names. And the checker must be able
//! to fail: a tampered object in a CBOR sequence is caught.
//!
//! Needs the Python venv of `.ci/deps` (`$JANGTEO_VENV`, default `~/.cache/jangteo-venv`);
//! without it this test fails, it does not skip.

use std::path::PathBuf;
use std::process::Command;

const SPEC: &str = include_str!("../SPEC.md");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
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
        "no Python venv at {}: run .ci/deps (it installs cbor2 and blake3)",
        venv.display()
    );
    py
}

/// Runs the checker; returns its exit code and its JSON lines.
fn check(args: &[&str]) -> (i32, Vec<serde_json::Value>) {
    let out = Command::new(python())
        .arg(root().join("tests/independent/jangteo_check.py"))
        .args(args)
        .output()
        .expect("run the Python checker");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        out.stderr.is_empty() || out.status.code() == Some(1),
        "checker stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), lines)
}

fn envelope(n: usize) -> Vec<u8> {
    let block = SPEC
        .split(&format!("### Vector {n}:"))
        .nth(1)
        .expect("vector");
    let hex_str = block
        .lines()
        .find_map(|l| l.strip_prefix("- envelope: `"))
        .expect("envelope");
    hex::decode(hex_str.trim_end_matches('`')).expect("hex")
}

#[test]
fn the_independent_checker_agrees_with_every_spec_vector() {
    let spec = root().join("protocol/SPEC.md");
    let (code, lines) = check(&["--spec", spec.to_str().expect("utf-8 path")]);
    let objects = SPEC.matches("\n### Vector ").count();
    let rejects = SPEC.matches("\n### Reject vector ").count();
    // Signature vectors (§10.1): some valid (where ZIP-215 and verify_strict differ), some not.
    let signatures = SPEC.matches("\n### Signature vector ").count();
    let signatures_refused = SPEC
        .split("\n### Signature vector ")
        .skip(1)
        .filter(|b| !b.contains("- verdict: `valid`"))
        .count();
    assert!(
        objects >= 12 && rejects >= 10 && signatures >= 5 && signatures_refused >= 2,
        "{objects} object, {rejects} reject and {signatures} signature vectors"
    );
    assert_eq!(
        lines.len(),
        objects + rejects + signatures,
        "one verdict per vector"
    );
    for l in &lines {
        assert_eq!(l["as_expected"], true, "Python disagrees with SPEC.md: {l}");
    }
    assert_eq!(code, 0);
    let refused = lines.iter().filter(|l| l["valid"] == false).count();
    assert_eq!(refused, rejects + signatures_refused);
}

#[test]
fn the_independent_checker_reads_a_cbor_sequence_and_catches_tampering() {
    let dir = std::env::temp_dir().join(format!("jangteo-independent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let good: Vec<u8> = (1..=12).flat_map(envelope).collect();
    let path = dir.join("good.cbors");
    std::fs::write(&path, &good).expect("write");
    let now = "1767229200000";
    let (code, lines) = check(&[path.to_str().expect("path"), "--now", now]);
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines.len(), 12);
    assert_eq!(lines[0]["kind"], "listing");
    assert_eq!(
        lines[0]["id"],
        "fa30ee28383265cde21e7032d163adfd9e758230a26a9aa0f9297b909644f2a7"
    );

    // One flipped bit in the signature of the second object.
    let mut bad = envelope(2);
    let n = bad.len();
    bad[n - 5] ^= 0x10;
    let seq = [envelope(1), bad, envelope(4)].concat();
    std::fs::write(&path, &seq).expect("write");
    let (code, lines) = check(&[path.to_str().expect("path"), "--now", now]);
    assert_eq!(code, 1);
    let verdicts: Vec<_> = lines.iter().map(|l| l["valid"].clone()).collect();
    assert_eq!(verdicts, [true, false, true]);
    assert_eq!(lines[1]["error"], "bad-signature");

    // A listing dated after `now` (vector 1 checked a year early) is refused.
    std::fs::write(&path, envelope(1)).expect("write");
    let (code, lines) = check(&[path.to_str().expect("path"), "--now", "1735689600000"]);
    assert_eq!(
        (code, lines[0]["error"].clone()),
        (1, "invalid:updated_at".into())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Objects made now by this implementation's types (a listing with a Korean title, a profile,
/// a completed trade and its rating), written as one CBOR sequence the way `jangteo export`
/// writes one, are all valid to the independent checker at the current time.
#[test]
fn objects_signed_now_pass_the_independent_checker() {
    use ed25519_dalek::SigningKey;
    use jangteo_protocol::attestation::Attestation;
    use jangteo_protocol::trade::{Role, Terms, TradeMessage};
    use jangteo_protocol::{Kind, Listing, ListingStatus, Location, Profile, SignedObject};

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
        - 60_000;
    let seller = SigningKey::from_bytes(&[21; 32]);
    let buyer = SigningKey::from_bytes(&[22; 32]);
    let seller_pk = jangteo_protocol::PublicKey(seller.verifying_key().to_bytes());
    let listing = Listing {
        stamp: None,
        nonce: *b"independent-e2e1",
        seq: 1,
        created_at: now,
        updated_at: now,
        expires_at: now + jangteo_protocol::limits::LIFETIME_DEFAULT_MS,
        status: ListingStatus::Active,
        title: "한정판 전기 주전자, 거의 새것".into(),
        description: "망원동 직거래\n상자 있음".into(),
        category: "appliances".into(),
        condition: None,
        price: 35_000,
        currency: "KRW".into(),
        quantity: 1,
        images: vec![],
        location: Location::from_degrees(37.5559, 126.9105),
        moderators: vec![],
    };
    let mut objects = vec![
        SignedObject::sign(Kind::Listing, listing.encode(), &seller),
        SignedObject::sign(
            Kind::Profile,
            Profile {
                name: "망원 장터".into(),
                bio: String::new(),
                updated_at: now,
            }
            .encode(),
            &seller,
        ),
    ];
    let terms = Terms {
        listing: listing.id(&seller_pk),
        listing_seq: 1,
        price: 35_000,
        currency: "KRW".into(),
        quantity: 1,
    };
    let offer = TradeMessage {
        trade: None,
        prev: None,
        at: now,
        seller: Some(seller_pk),
        terms: Some(terms.clone()),
        moderators: vec![],
        note: "오늘 저녁 가능해요".into(),
        outcome: None,
    };
    let offer = SignedObject::sign(Kind::Offer, offer.encode(), &buyer);
    let trade = offer.id();
    let mut chain = vec![offer];
    for (i, (kind, key)) in [
        (Kind::Accept, &seller),
        (Kind::Paid, &buyer),
        (Kind::Received, &buyer),
    ]
    .into_iter()
    .enumerate()
    {
        let prev = chain.last().expect("offer").id();
        let mut m = TradeMessage::follow(trade, prev, now + i as u64 + 1);
        if kind == Kind::Accept {
            m.terms = Some(terms.clone());
        }
        chain.push(SignedObject::sign(kind, m.encode(), key));
    }
    let rating = Attestation {
        chain: chain.iter().map(|o| o.bytes().to_vec()).collect(),
        about: seller_pk,
        role: Role::Buyer,
        score: 5,
        comment: "좋은 거래였습니다".into(),
        at: now + 10,
        stamp: None,
    };
    objects.extend(chain);
    objects.push(SignedObject::sign(
        Kind::Attestation,
        rating.encode(),
        &buyer,
    ));
    let dir = std::env::temp_dir().join(format!("jangteo-independent-now-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("objects.cbors");
    let seq: Vec<u8> = objects.iter().flat_map(|o| o.bytes().to_vec()).collect();
    std::fs::write(&path, seq).expect("write");
    let (code, lines) = check(&[path.to_str().expect("path")]);
    assert_eq!(code, 0, "{lines:#?}");
    let kinds: Vec<_> = lines
        .iter()
        .map(|l| l["kind"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "listing",
            "profile",
            "offer",
            "accept",
            "paid",
            "received",
            "attestation"
        ]
    );
    for (l, o) in lines.iter().zip(&objects) {
        assert_eq!(l["id"], o.id().to_hex());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
