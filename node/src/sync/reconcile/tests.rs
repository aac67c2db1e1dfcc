//! Unit and property tests of reconciliation: random sets on both sides converge, the
//! rounds and bytes stay bounded, malformed messages are errors.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;

const NOW: u64 = 1_760_000_000_000;

#[derive(Debug, Default)]
struct Outcome {
    need: BTreeSet<[u8; 32]>,
    have: BTreeSet<[u8; 32]>,
    rounds: usize,
    up: usize,
    down: usize,
    largest: usize,
}

/// Runs a whole session, A initiating, B responding; checks frame sizes and that no id
/// is reported twice.
fn sync(a: &[Item], b: &[Item]) -> Outcome {
    sync_with(a, b, MAX_ROUNDS)
}

fn sync_with(a: &[Item], b: &[Item], max_rounds: usize) -> Outcome {
    let responder = ItemSet::new(b.to_vec());
    let (mut init, first) = Initiator::with_max_rounds(a.to_vec(), max_rounds).unwrap();
    let mut out = Outcome {
        up: first.len(),
        largest: first.len(),
        ..Outcome::default()
    };
    let mut msg = first;
    loop {
        assert!(msg.len() <= FRAME_MAX_BYTES);
        let reply = responder.respond(&msg).unwrap();
        assert!(reply.len() <= FRAME_MAX_BYTES);
        // The stateless free function gives the same reply for unsorted input.
        if b.len() <= 1000 {
            let mut shuffled = b.to_vec();
            shuffled.reverse();
            assert_eq!(respond(&shuffled, &msg).unwrap(), reply);
        }
        out.down += reply.len();
        out.largest = out.largest.max(reply.len());
        out.rounds += 1;
        let step = init.step(&reply).unwrap();
        for id in step.need {
            assert!(out.need.insert(id), "need reported twice");
        }
        for id in step.have {
            assert!(out.have.insert(id), "have reported twice");
        }
        match step.next {
            Some(m) => {
                out.up += m.len();
                out.largest = out.largest.max(m.len());
                msg = m;
            }
            None => break,
        }
    }
    assert_eq!(init.rounds(), out.rounds);
    assert_eq!(init.bytes(), (out.up, out.down));
    assert!(matches!(init.step(&[0x61]), Err(ReconcileError::Finished)));
    out
}

fn ids(items: &[Item]) -> BTreeSet<[u8; 32]> {
    items.iter().map(|i| i.1).collect()
}

fn random_items(rng: &mut StdRng, n: usize) -> Vec<Item> {
    (0..n)
        .map(|_| (NOW + rng.gen_range(0..30 * 86_400_000u64), rng.r#gen()))
        .collect()
}

/// A and B share `common` items; each also has its own `only_a` / `only_b` items.
fn pair(seed: u64, common: usize, only_a: usize, only_b: usize) -> (Vec<Item>, Vec<Item>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let shared = random_items(&mut rng, common);
    let mut a = shared.clone();
    a.extend(random_items(&mut rng, only_a));
    let mut b = shared;
    b.extend(random_items(&mut rng, only_b));
    (a, b)
}

fn check(name: &str, a: &[Item], b: &[Item]) -> Outcome {
    check_with(name, a, b, MAX_ROUNDS)
}

fn check_with(name: &str, a: &[Item], b: &[Item], max_rounds: usize) -> Outcome {
    let out = sync_with(a, b, max_rounds);
    let (sa, sb) = (ids(a), ids(b));
    let b_minus_a: BTreeSet<_> = sb.difference(&sa).copied().collect();
    let a_minus_b: BTreeSet<_> = sa.difference(&sb).copied().collect();
    assert_eq!(out.need, b_minus_a, "{name}: need != B\\A");
    assert_eq!(out.have, a_minus_b, "{name}: have != A\\B");
    println!(
        "{name:<34} |A|={:>6} |B|={:>6} need={:>6} have={:>6} rounds={:>3} up={:>8} B down={:>8} B largest={:>6}",
        sa.len(),
        sb.len(),
        out.need.len(),
        out.have.len(),
        out.rounds,
        out.up,
        out.down,
        out.largest
    );
    out
}

#[test]
fn reconcile_small_and_empty_sets() {
    let (a, b) = pair(1, 0, 0, 0);
    assert_eq!(check("0 vs 0", &a, &b).rounds, 1);
    let (a, b) = pair(2, 0, 1, 0);
    check("1 vs 0", &a, &b);
    let (a, b) = pair(3, 0, 0, 1);
    check("0 vs 1", &a, &b);
    let (a, b) = pair(4, 1, 0, 0);
    check("1 = 1", &a, &b);
    let (a, b) = pair(5, 0, 1, 1);
    check("1 vs 1 disjoint", &a, &b);
    for (i, (common, oa, ob)) in [(99, 1, 1), (50, 50, 50), (0, 100, 100), (100, 0, 0)]
        .into_iter()
        .enumerate()
    {
        let (a, b) = pair(10 + i as u64, common, oa, ob);
        check(&format!("100 vs 100, {common} shared"), &a, &b);
    }
}

#[test]
fn reconcile_10k_vs_10k_with_varied_differences() {
    // 1%, 50% and 100% of each side's 10,000 items are its own.
    for (pct, seed) in [(1usize, 20u64), (50, 21), (100, 22)] {
        let own = 10_000 * pct / 100;
        let (a, b) = pair(seed, 10_000 - own, own, own);
        let out = check(&format!("10k vs 10k, {pct}% differ"), &a, &b);
        assert!(out.rounds <= MAX_ROUNDS);
    }
}

#[test]
fn reconcile_one_side_empty() {
    let (a, b) = pair(30, 0, 0, 10_000);
    let out = check("0 vs 10k (initiator empty)", &a, &b);
    // Only the responder's ids cross, one frame (~1,900 ids) per round.
    assert!(out.down < 10_000 * 32 + 8 * 1024, "down {}", out.down);
    assert!(out.up < 1024, "up {}", out.up);
    let (a, b) = pair(31, 0, 10_000, 0);
    let out = check("10k vs 0 (responder empty)", &a, &b);
    // Our own ids never have to cross for us to learn the peer lacks them.
    assert!(out.up + out.down < 4096, "{} + {}", out.up, out.down);
}

#[test]
fn bytes_for_10k_missing_are_bounded() {
    let bound = 10_000 * 32 * 3 / 2 + 16 * 1024;
    // A node that was offline while 10,000 listings were posted: it misses the newest.
    let mut rng = StdRng::seed_from_u64(40);
    let a = random_items(&mut rng, 10_000);
    let mut b = a.clone();
    for _ in 0..10_000 {
        b.push((
            NOW + 31 * 86_400_000 + rng.gen_range(0..3_600_000u64),
            rng.r#gen(),
        ));
    }
    let out = check("10k vs 20k (10k newest missing)", &a, &b);
    assert_eq!(out.need.len(), 10_000);
    assert!(
        out.up + out.down < bound,
        "{} + {} >= {bound}",
        out.up,
        out.down
    );
    // A fresh node (nothing held) against 10,000.
    let (a, b) = pair(41, 0, 0, 10_000);
    let out = check("0 vs 10k", &a, &b);
    assert!(
        out.up + out.down < bound,
        "{} + {} >= {bound}",
        out.up,
        out.down
    );
    // Same with the new items behind a larger shared history of 100,000.
    let mut a = random_items(&mut rng, 100_000);
    a.sort_unstable();
    let mut b = a.clone();
    for _ in 0..10_000 {
        b.push((
            NOW + 31 * 86_400_000 + rng.gen_range(0..3_600_000u64),
            rng.r#gen(),
        ));
    }
    let out = check("100k vs 110k (10k newest missing)", &a, &b);
    assert!(
        out.up + out.down < bound,
        "{} + {} >= {bound}",
        out.up,
        out.down
    );
}

#[test]
fn identical_100k_sets_finish_in_one_round() {
    let mut rng = StdRng::seed_from_u64(50);
    let a = random_items(&mut rng, 100_000);
    let mut b = a.clone();
    b.reverse();
    b.extend_from_slice(&a[..1000]); // duplicates do not count
    let out = check("100k = 100k", &a, &b);
    assert_eq!(out.rounds, 1);
    assert!(out.up + out.down < 600, "{} + {}", out.up, out.down);
    assert!(out.need.is_empty() && out.have.is_empty());
}

#[test]
fn max_timestamp_items_are_not_lost() {
    let a = vec![(u64::MAX, [1; 32]), (5, [2; 32])];
    let b = vec![(u64::MAX, [3; 32]), (u64::MAX - 1, [4; 32])];
    let out = check("u64::MAX timestamps", &a, &b);
    assert_eq!(out.need.len(), 2);
}

/// A real first message and reply, for the malformed-input tests.
fn sample() -> (Vec<Item>, Vec<Item>, Vec<u8>, Vec<u8>) {
    let (a, b) = pair(60, 500, 40, 40);
    let (_, first) = Initiator::new(a.clone()).unwrap();
    let reply = respond(&b, &first).unwrap();
    (a, b, first, reply)
}

#[test]
fn malformed_messages_to_respond_are_errors() {
    let (_, b, first, _) = sample();
    assert!(respond(&b, &[]).is_err());
    assert!(respond(&b, &[0x00]).is_err());
    assert!(respond(&b, &[0xff; 100]).is_err());
    // Mode 7 does not exist.
    assert!(respond(&b, &[0x61, 0x00, 0x00, 0x07]).is_err());
    // An id list claiming 2^34 ids with none following.
    assert!(respond(&b, &[0x61, 0x00, 0x00, 0x02, 0xc0, 0x80, 0x80, 0x80, 0x00]).is_err());
    // A bound with an id longer than 32 bytes.
    let mut long = vec![0x61, 0x05, 0x21];
    long.extend([7; 40]);
    assert!(respond(&b, &long).is_err());
    // Oversize, even if well formed in its prefix.
    let mut big = first.clone();
    big.resize(FRAME_MAX_BYTES + 1, 0);
    assert!(matches!(
        respond(&b, &big),
        Err(ReconcileError::Oversize(n)) if n == FRAME_MAX_BYTES + 1
    ));
    assert!(matches!(
        ItemSet::new(b.clone()).respond(&big),
        Err(ReconcileError::Oversize(_))
    ));
    // Every truncation of a real message: error or a bounded reply, never a panic.
    let mut errors = 0;
    for n in 0..first.len() {
        match respond(&b, &first[..n]) {
            Ok(r) => assert!(r.len() <= FRAME_MAX_BYTES),
            Err(_) => errors += 1,
        }
    }
    assert!(errors > first.len() / 2, "{errors} of {}", first.len());
    // Another protocol version: a one-byte reply that tells the initiator we differ.
    assert_eq!(respond(&b, &[0x62]).unwrap(), vec![0x61]);
}

#[test]
fn malformed_replies_to_step_are_errors() {
    let (a, _, _, reply) = sample();
    let fresh = || Initiator::new(a.clone()).unwrap().0;
    for bad in [
        &[][..],
        &[0x00],
        &[0x62],
        &[0xff; 64],
        &[0x61, 0x00, 0x00, 0x09],
    ] {
        assert!(fresh().step(bad).is_err(), "{bad:?}");
    }
    let mut big = reply.clone();
    big.resize(FRAME_MAX_BYTES + 1, 0);
    assert!(matches!(
        fresh().step(&big),
        Err(ReconcileError::Oversize(_))
    ));
    let mut errors = 0;
    for n in 0..reply.len() {
        let mut init = fresh();
        match init.step(&reply[..n]) {
            Ok(s) => assert!(s.next.as_ref().is_none_or(|m| m.len() <= FRAME_MAX_BYTES)),
            Err(_) => {
                errors += 1;
                // The session is over after an error.
                assert!(matches!(init.step(&reply), Err(ReconcileError::Finished)));
            }
        }
    }
    assert!(errors > 0);
    // The intact reply still works.
    assert!(fresh().step(&reply).is_ok());
}

#[test]
fn a_peer_that_never_agrees_is_cut_off_after_max_rounds() {
    let (a, _) = pair(70, 1000, 0, 0);
    let (mut init, _) = Initiator::new(a).unwrap();
    // Whole range, fingerprint mode, a fingerprint that never matches.
    let mut lie = vec![0x61, 0x00, 0x00, 0x01];
    lie.extend([0xab; 16]);
    let mut rounds = 0;
    let err = loop {
        match init.step(&lie) {
            Ok(s) => {
                assert!(s.next.is_some());
                rounds += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, ReconcileError::TooManyRounds(MAX_ROUNDS)),
        "{err}"
    );
    assert_eq!(rounds, MAX_ROUNDS - 1);
}

#[test]
fn need_never_contains_our_own_ids() {
    // A lying responder lists our own ids as if they were in another range.
    let a = vec![(10, [1; 32]), (20, [2; 32])];
    let (mut init, _) = Initiator::new(a).unwrap();
    // Range [0, 15) as an id list holding [2; 32] (which we hold at 20), then range
    // [15, ∞) holding [9; 32].
    let mut reply = vec![0x61, 0x10, 0x00, 0x02, 0x01];
    reply.extend([2; 32]);
    reply.extend([0x00, 0x00, 0x02, 0x01]);
    reply.extend([9; 32]);
    let step = init.step(&reply).unwrap();
    assert_eq!(step.need, vec![[9; 32]]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000)) {
        let items: Vec<Item> = (0..300u64).map(|i| (NOW + i * 7, [(i % 251) as u8; 32])).collect();
        if let Ok(r) = respond(&items, &bytes) {
            proptest::prop_assert!(r.len() <= FRAME_MAX_BYTES);
        }
        let (mut init, _) = Initiator::new(items).unwrap();
        if let Ok(s) = init.step(&bytes) {
            proptest::prop_assert!(s.next.is_none_or(|m| m.len() <= FRAME_MAX_BYTES));
        }
    }

    #[test]
    fn mutated_real_messages_never_panic(pos in 0usize..4096, val in proptest::prelude::any::<u8>(), cut in 0usize..4096) {
        let (a, b, first, reply) = sample();
        let mut m = first.clone();
        let i = pos % m.len();
        m[i] = val;
        m.truncate(cut.max(1));
        if let Ok(r) = respond(&b, &m) {
            proptest::prop_assert!(r.len() <= FRAME_MAX_BYTES);
        }
        let mut r = reply.clone();
        let i = pos % r.len();
        r[i] = val;
        r.truncate(cut.max(1));
        let (mut init, _) = Initiator::new(a).unwrap();
        let _ = init.step(&r);
    }

    #[test]
    fn random_small_sets_reconcile_exactly(seed in 0u64..u64::MAX, common in 0usize..300, oa in 0usize..80, ob in 0usize..80) {
        let (a, b) = pair(seed, common, oa, ob);
        let out = sync(&a, &b);
        let (sa, sb) = (ids(&a), ids(&b));
        proptest::prop_assert_eq!(out.need, sb.difference(&sa).copied().collect::<BTreeSet<_>>());
        proptest::prop_assert_eq!(out.have, sa.difference(&sb).copied().collect::<BTreeSet<_>>());
    }
}

fn listing(nonce: u8, seq: u64, category: &str) -> Listing {
    Listing {
        stamp: None,
        nonce: [nonce; 16],
        seq,
        created_at: NOW,
        updated_at: NOW + seq * 10_000 + u64::from(nonce),
        expires_at: NOW + 86_400_000,
        status: jangteo_protocol::ListingStatus::Active,
        title: format!("thing {nonce} v{seq}"),
        description: String::new(),
        category: category.into(),
        condition: None,
        price: 15_000,
        currency: "KRW".into(),
        quantity: 1,
        images: vec![],
        location: None,
        moderators: vec![],
    }
}

fn put(store: &Store, key: &ed25519_dalek::SigningKey, l: &Listing) -> [u8; 32] {
    let obj =
        jangteo_protocol::SignedObject::sign(jangteo_protocol::Kind::Listing, l.encode(), key);
    assert!(store.put_listing(&obj, l, NOW, false).unwrap().stored());
    obj.id().0
}

#[test]
fn listing_items_are_open_listings_of_the_shard_with_head_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let mut expected = Vec::new();

    // Open, in the shard.
    let l = listing(1, 1, "home");
    expected.push((l.updated_at, put(&store, &key, &l)));
    // Same nonce, other author: another listing.
    let l = listing(1, 1, "garden");
    expected.push((l.updated_at, put(&store, &other, &l)));
    // Updated: only the head (v2) counts.
    let v1 = listing(2, 1, "home");
    let v1_id = put(&store, &key, &v1);
    let v2 = listing(2, 2, "home");
    expected.push((v2.updated_at, put(&store, &key, &v2)));
    // Other category.
    put(&store, &key, &listing(3, 1, "books"));
    // Retracted.
    let mut l = listing(4, 1, "home");
    l.status = jangteo_protocol::ListingStatus::Retracted;
    put(&store, &key, &l);
    // Sold out.
    let mut l = listing(5, 1, "home");
    l.quantity = 0;
    put(&store, &key, &l);
    // Expires before the time we ask about.
    let mut l = listing(6, 1, "home");
    l.expires_at = NOW + 1000;
    put(&store, &key, &l);

    let shard = |l: &Listing| l.category == "home" || l.category == "garden";
    let mut got = listing_items(&store, shard, NOW + 5000).unwrap();
    got.sort_unstable();
    expected.sort_unstable();
    assert_eq!(got, expected);
    assert!(!got.iter().any(|i| i.1 == v1_id));
    // At NOW the short-lived one is still open.
    assert_eq!(listing_items(&store, shard, NOW).unwrap().len(), 4);
    assert_eq!(
        listing_items(&store, |l| l.category == "books", NOW)
            .unwrap()
            .len(),
        1
    );
    // And the items reconcile against another store's items.
    let (mut init, first) = Initiator::new(got.clone()).unwrap();
    let reply = respond(&expected[..1], &first).unwrap();
    let step = init.step(&reply).unwrap();
    assert_eq!(step.have.len(), 2);
    assert!(step.need.is_empty());
}

#[test]
fn attestation_items_are_at_and_object_id() {
    use jangteo_protocol::attestation::{Attestation, Attested};
    use jangteo_protocol::{ObjectId, PublicKey};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(attestation_items(&store).unwrap().is_empty());
    let key = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    let mut expected = Vec::new();
    for i in 0..3u8 {
        let obj = jangteo_protocol::SignedObject::sign(
            jangteo_protocol::Kind::Attestation,
            vec![i],
            &key,
        );
        let at = NOW + u64::from(i);
        let a = Attested {
            attestation: Attestation {
                chain: vec![],
                about: PublicKey([2; 32]),
                role: jangteo_protocol::trade::Role::Buyer,
                score: 5,
                comment: String::new(),
                at,
                stamp: None,
            },
            trade: ObjectId([i; 32]),
            author: PublicKey([1; 32]),
            buyer: PublicKey([1; 32]),
            seller: PublicKey([2; 32]),
            terms: jangteo_protocol::trade::Terms {
                listing: jangteo_protocol::ListingId([0; 32]),
                listing_seq: 1,
                price: 1,
                currency: "KRW".into(),
                quantity: 1,
            },
            completed_at: NOW,
        };
        assert!(
            store
                .put_attestation(&obj, &a, NOW, false)
                .unwrap()
                .stored()
        );
        expected.push((at, obj.id().0));
    }
    let mut got = attestation_items(&store).unwrap();
    got.sort_unstable();
    assert_eq!(got, expected);
}

/// Reconciles with a prepared responder set, nothing else timed; (time, rounds, up, down, need).
fn timed(
    a: &[Item],
    b: &ItemSet,
    max_rounds: usize,
) -> (std::time::Duration, usize, usize, usize, usize) {
    let t = std::time::Instant::now();
    let (mut init, mut msg) = Initiator::with_max_rounds(a.to_vec(), max_rounds).unwrap();
    let mut need = 0;
    loop {
        let s = init.step(&b.respond(&msg).unwrap()).unwrap();
        need += s.need.len();
        match s.next {
            Some(m) => msg = m,
            None => break,
        }
    }
    let (up, down) = init.bytes();
    (t.elapsed(), init.rounds(), up, down, need)
}

/// `cargo test --release -p jangteo-node reconcile -- --ignored --nocapture`
#[test]
#[ignore = "benchmark; run in release"]
fn bench_100k_vs_90k() {
    use std::time::Instant;
    let mut rng = StdRng::seed_from_u64(80);
    let b_items = random_items(&mut rng, 100_000);
    // A misses about 10,000 at random.
    let a_items: Vec<Item> = b_items
        .iter()
        .copied()
        .filter(|_| rng.gen_range(0..10) != 0)
        .collect();
    // Correctness of the same runs (untimed: the checks build big sets).
    check_with("bench: 90k vs 100k (random)", &a_items, &b_items, 1000);
    let mut sorted = b_items.clone();
    sorted.sort_unstable();
    check("bench: 90k vs 100k (newest)", &sorted[..90_000], &sorted);

    let t = Instant::now();
    let set = ItemSet::new(b_items.clone());
    let build_b = t.elapsed();
    let t = Instant::now();
    let (init, _) = Initiator::new(a_items.clone()).unwrap();
    let build_a = t.elapsed();
    drop(init);
    println!(
        "build: ItemSet of 100k unsorted {build_b:?}; Initiator::new over 90k unsorted {build_a:?} (includes first message)"
    );
    for (name, a, limit) in [
        ("90k vs 100k, ~10k random missing", &a_items[..], 1000),
        (
            "90k vs 100k, 10k newest missing",
            &sorted[..90_000],
            MAX_ROUNDS,
        ),
        ("100k vs 100k identical", &sorted[..], MAX_ROUNDS),
    ] {
        let (d, rounds, up, down, need) = timed(a, &set, limit);
        println!("{name}: {d:?}, {rounds} rounds, {up} B up, {down} B down, {need} needed");
    }
    // With the default limit the random case stops, having reported what it learned.
    let (mut init, mut msg) = Initiator::new(a_items.clone()).unwrap();
    let mut learned = 0;
    let err = loop {
        match init.step(&set.respond(&msg).unwrap()) {
            Ok(s) => {
                learned += s.need.len();
                match s.next {
                    Some(m) => msg = m,
                    None => break None,
                }
            }
            Err(e) => break Some(e),
        }
    };
    println!("random case with the default limit: {err:?} after learning {learned} needed ids");

    // listing_items over a real store.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    let n = 100_000u32;
    for i in 0..n {
        let mut l = listing(0, 1, if i % 2 == 0 { "home" } else { "books" });
        l.nonce[..4].copy_from_slice(&i.to_be_bytes());
        put(&store, &key, &l);
    }
    let t = Instant::now();
    let items = listing_items(&store, |l| l.category == "home", NOW).unwrap();
    let li = t.elapsed();
    assert_eq!(items.len(), n as usize / 2);
    println!("listing_items over {n} stored listings: {li:?}");
}
