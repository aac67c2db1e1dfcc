//! In-process reputation tests: real nodes (RocksDB, libp2p on loopback) in one process.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use jangteo_node::Node;
use jangteo_node::api::types::{ReputationView, SupportedAmount, TradeView, TrustBasis};
use jangteo_node::services::listings::NewListing;
use jangteo_node::services::reputation::{NewRating, ReputationError};
use jangteo_node::services::search::SearchQuery;
use jangteo_node::services::trades::{NewOffer, TradeAction};
use jangteo_protocol::attestation::Attestation;
use jangteo_protocol::listing::ListingId;
use jangteo_protocol::trade::{Role, Terms, TradeMessage};
use jangteo_protocol::{Envelope, Kind, PublicKey, SignedObject};
use jangteo_testnet::{Cluster, Topology, tcp_addr, wait_for};

const WAIT: Duration = Duration::from_secs(20);

async fn post(seller: &Node, title: &str) -> String {
    seller
        .listings
        .post(NewListing {
            title: title.into(),
            price: 50_000,
            currency: "KRW".into(),
            description: None,
            category: None,
            condition: None,
            quantity: Some(5),
            location: None,
            moderators: vec![],
            expires_in_days: None,
            images: vec![],
        })
        .await
        .expect("post")
        .id
}

async fn state_is(node: &Node, trade: &str, state: &str) {
    jangteo_testnet::trade_state_is(node, trade, state, WAIT)
        .await
        .expect("state");
}

async fn act(node: &Node, trade: &str, action: &str) {
    node.trades
        .act(trade, action, TradeAction::default())
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"));
}

/// Runs a trade on `listing` up to (and including) `last`.
async fn trade_until(seller: &Node, buyer: &Node, listing: &str, last: &str) -> String {
    let l = listing.to_owned();
    wait_for(WAIT, "the listing at the buyer", || async {
        buyer.listings.show(&l).ok().map(|_| ())
    })
    .await
    .expect("listing");
    let v = buyer
        .trades
        .offer(NewOffer {
            listing: listing.into(),
            price: None,
            quantity: None,
            message: None,
            moderators: vec![],
        })
        .await
        .expect("offer");
    let trade = v.id;
    for (who, action, state) in [
        (seller, "accept", "accepted"),
        (buyer, "paid", "paid"),
        (seller, "shipped", "shipped"),
        (buyer, "received", "completed"),
    ] {
        let other = if std::ptr::eq(who, seller) {
            buyer
        } else {
            seller
        };
        let before = match action {
            "accept" => "offered",
            "paid" => "accepted",
            "shipped" => "paid",
            _ => "shipped",
        };
        state_is(who, &trade, before).await;
        act(who, &trade, action).await;
        state_is(other, &trade, state).await;
        if action == last {
            break;
        }
    }
    trade
}

fn rating(trade: &str, score: u8) -> NewRating {
    NewRating {
        trade: trade.into(),
        score,
        comment: Some("물건 상태 좋아요".into()),
    }
}

async fn reputation_where(
    node: &Node,
    peer: &str,
    what: &str,
    ok: impl Fn(&ReputationView) -> bool,
) -> ReputationView {
    let r = node.reputation.clone();
    let p = peer.to_owned();
    wait_for(WAIT, what, || {
        let r = r.clone();
        let p = p.clone();
        let ok = &ok;
        async move {
            let v = tokio::task::spawn_blocking(move || r.reputation(&p))
                .await
                .ok()?
                .ok()?;
            ok(&v).then_some(v)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{what}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_node_sees_a_sellers_reputation_grow_from_real_trades() {
    let mut cluster = Cluster::start(3, Topology::Star).await.expect("cluster");
    let seller_id = cluster.nodes[0].peer_id.clone();
    let buyer_id = cluster.nodes[1].peer_id.clone();
    {
        let (seller, buyer, observer) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
        // The observer knows the buyer personally.
        observer.reputation.trust(&buyer_id).expect("trust");
        let before = observer
            .reputation
            .reputation(&seller_id)
            .expect("reputation");
        assert_eq!(before.score, 0.0);
        assert_eq!(before.attestations, 0);

        let listing = post(seller, "Brompton M6L").await;
        let trade = trade_until(seller, buyer, &listing, "received").await;
        let v = buyer
            .reputation
            .rate(rating(&trade, 5))
            .await
            .expect("rate");
        assert_eq!(v.about, seller_id.as_str());

        let first = reputation_where(observer, &seller_id, "the rating at the observer", |v| {
            v.attestations == 1 && v.score > 0.0
        })
        .await;
        assert_eq!(first.completed_trades, 1);
        assert_eq!(first.rating, Some(5.0));
        let c1 = first.confidence;
        assert!(c1 > 0.0);

        // The seller may rate the buyer too; the observer's trust in the buyer holds.
        seller
            .reputation
            .rate(rating(&trade, 4))
            .await
            .expect("seller rates");
        // A second rating of the same trade by the buyer replaces the first.
        buyer
            .reputation
            .rate(rating(&trade, 3))
            .await
            .expect("re-rate");
        reputation_where(observer, &seller_id, "the replaced rating", |v| {
            v.attestations == 1 && v.rating == Some(3.0)
        })
        .await;

        // Another completed, well-rated trade: more evidence, more confidence.
        let trade2 = trade_until(seller, buyer, &listing, "received").await;
        buyer
            .reputation
            .rate(rating(&trade2, 5))
            .await
            .expect("rate 2");
        let second = reputation_where(observer, &seller_id, "the second rating", |v| {
            v.attestations == 2 && v.completed_trades == 2
        })
        .await;
        assert!(second.score > 0.0);

        // Search shows the seller's trust, and sorting by trust puts the trusted seller's
        // listing ahead of a newer one from a seller no one vouches for (the observer's own).
        let own = post(observer, "Brompton M6L spare tyre").await;
        let l = listing.clone();
        wait_for(WAIT, "the listing in the observer's index", || async {
            let q = SearchQuery {
                q: Some("Brompton".into()),
                sort: Some("trust".into()),
                ..Default::default()
            };
            let hits = observer.reputation.search(&observer.listings, &q).ok()?;
            (hits.len() == 2).then_some(hits)
        })
        .await
        .map(|hits| {
            assert_eq!(hits[0].id, l, "trusted seller first");
            assert!(hits[0].seller_score > Some(0.0));
            assert_eq!(hits[1].id, own);
            assert_eq!(hits[1].seller_score, Some(0.0));
        })
        .expect("search by trust");
        let recent = observer
            .reputation
            .search(
                &observer.listings,
                &SearchQuery {
                    q: Some("Brompton".into()),
                    sort: Some("recent".into()),
                    ..Default::default()
                },
            )
            .expect("recent");
        assert_eq!(recent[0].id, own, "the newer listing first by date");
    }
    // A node that joins later gets the attestations by catch-up sync.
    let boot = tcp_addr(&cluster.nodes[0]).await.expect("addr");
    let late = cluster.add_node(vec![boot]).await.expect("late node");
    let late = &cluster.nodes[late];
    late.reputation.trust(&buyer_id).expect("trust");
    let v = reputation_where(late, &seller_id, "attestations at the late node", |v| {
        v.attestations == 2
    })
    .await;
    assert!(v.score > 0.0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratings_of_unfinished_or_foreign_trades_are_refused_with_the_reason() {
    let cluster = Cluster::start(3, Topology::Star).await.expect("cluster");
    let (seller, buyer, stranger) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let listing = post(seller, "Nintendo Switch").await;
    let trade = trade_until(seller, buyer, &listing, "shipped").await;
    let e = buyer
        .reputation
        .rate(rating(&trade, 5))
        .await
        .expect_err("shipped, not completed");
    assert!(matches!(e, ReputationError::Refused(_)), "{e}");
    assert!(e.to_string().contains("only a completed trade"), "{e}");
    let e = stranger
        .reputation
        .rate(rating(&trade, 5))
        .await
        .expect_err("not a party");
    assert!(matches!(e, ReputationError::NotFound(_)), "{e}");
    for bad in [0u8, 6] {
        let e = buyer
            .reputation
            .rate(rating(&trade, bad))
            .await
            .expect_err("score");
        assert!(e.to_string().contains("1-5"), "{e}");
    }
    let e = buyer
        .reputation
        .rate(rating("zz", 5))
        .await
        .expect_err("bad id");
    assert!(matches!(e, ReputationError::Invalid(_)), "{e}");
    let e = stranger
        .reputation
        .trust("not-a-peer")
        .expect_err("bad peer");
    assert!(e.to_string().contains("not a peer id"), "{e}");
    assert_eq!(buyer.store.attestation_count().expect("count"), 0);
    cluster.shutdown().await;
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn pk(n: u8) -> PublicKey {
    PublicKey(key(n).verifying_key().to_bytes())
}

/// A trade between keys `b` (buyer) and `s` (seller), signed for real, up to `kinds`.
fn chain(b: u8, s: u8, kinds: &[Kind]) -> Vec<Vec<u8>> {
    let now = jangteo_node::ingest::now_ms() - 60_000;
    let terms = Terms {
        listing: ListingId([s; 32]),
        listing_seq: 1,
        price: 10_000,
        currency: "KRW".into(),
        quantity: 1,
    };
    let offer = TradeMessage {
        trade: None,
        prev: None,
        at: now,
        seller: Some(pk(s)),
        terms: Some(terms.clone()),
        moderators: vec![],
        note: String::new(),
        outcome: None,
    };
    let first = SignedObject::sign(Kind::Offer, offer.encode(), &key(b));
    let (trade, mut prev) = (first.id(), first.id());
    let mut out = vec![first.bytes().to_vec()];
    for (i, kind) in kinds.iter().enumerate() {
        let mut m = TradeMessage::follow(trade, prev, now + 1000 * (i as u64 + 1));
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

fn attestation(author: u8, about: u8, chain: Vec<Vec<u8>>) -> SignedObject {
    let a = Attestation {
        chain,
        about: pk(about),
        role: Role::Buyer,
        score: 5,
        comment: String::new(),
        at: jangteo_node::ingest::now_ms(),
        stamp: None,
    };
    SignedObject::sign(Kind::Attestation, a.encode(), &key(author))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_attestations_are_neither_stored_nor_forwarded_and_cost_their_sender() {
    // a - b - c: a gossips attestations that break the rules; b refuses them.
    let cluster = Cluster::start(3, Topology::Chain).await.expect("cluster");
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let complete = [Kind::Accept, Kind::Paid, Kind::Shipped, Kind::Received];
    // Unfinished trade, rated anyway.
    let unfinished = attestation(11, 12, chain(11, 12, &complete[..3]));
    // A stranger rating someone else's trade.
    let stranger = attestation(13, 12, chain(11, 12, &complete));
    // A valid attestation with its body tampered after signing.
    let mut env =
        Envelope::decode(attestation(11, 12, chain(11, 12, &complete)).bytes()).expect("decode");
    let n = env.body.len();
    env.body[n - 3] ^= 1;
    let tampered = env.encode();
    for bytes in [
        unfinished.bytes().to_vec(),
        stranger.bytes().to_vec(),
        tampered,
    ] {
        a.network
            .publish(Kind::Attestation, bytes)
            .await
            .expect("network")
            .expect("published");
    }
    // Then a valid one, which must reach c: the invalid ones, sent first, did not.
    let valid = attestation(21, 22, chain(21, 22, &complete));
    a.store
        .put_attestation(
            &valid,
            &match jangteo_protocol::verify_object(valid.bytes(), jangteo_node::ingest::now_ms())
                .expect("valid")
                .1
            {
                jangteo_protocol::Object::Attestation(x) => *x,
                _ => unreachable!(),
            },
            jangteo_node::ingest::now_ms(),
            false,
        )
        .expect("store");
    a.network
        .publish(Kind::Attestation, valid.bytes().to_vec())
        .await
        .expect("network")
        .expect("published");
    wait_for(WAIT, "the valid attestation at c", || async {
        (c.store.attestation_count().ok()? == 1).then_some(())
    })
    .await
    .expect("valid attestation travels");
    for node in [b, c] {
        for bad in [&unfinished, &stranger] {
            assert!(
                node.store.object(&bad.id()).expect("read").is_none(),
                "an invalid attestation was stored"
            );
        }
        assert!(node.store.attestation_count().expect("count") <= 1);
    }
    // b forwarded none of the invalid ones: c holds nothing against b.
    let info = c.network.info().await.expect("info");
    if let Some(p) = info.peers.iter().find(|p| p.peer_id == b.peer_id) {
        assert!(
            p.score.unwrap_or(0.0) >= 0.0,
            "b forwarded invalid attestations to c"
        );
    }
    let score = wait_for(WAIT, "a's score at b to drop", || async {
        let info = b.network.info().await.ok()?;
        let p = info.peers.into_iter().find(|p| p.peer_id == a.peer_id)?;
        p.score.filter(|s| *s < 0.0)
    })
    .await
    .expect("score");
    assert!(score < 0.0);
    cluster.shutdown().await;
}

async fn offer(buyer: &Node, listing: &str, quantity: u64) -> TradeView {
    let v = buyer
        .trades
        .offer(NewOffer {
            listing: listing.into(),
            price: None,
            quantity: Some(quantity),
            message: None,
            moderators: vec![],
        })
        .await
        .expect("offer");
    let r = buyer.reputation.clone();
    tokio::task::spawn_blocking(move || r.gate(v))
        .await
        .expect("gate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_shows_the_evidence_and_offers_above_the_sellers_trust_carry_a_warning() {
    let cluster = Cluster::start(3, Topology::Star).await.expect("cluster");
    let seller_id = cluster.nodes[0].peer_id.clone();
    let buyer_id = cluster.nodes[1].peer_id.clone();
    {
        let (seller, buyer, observer) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
        let listing = post(seller, "Brompton M6L").await;
        let trade = trade_until(seller, buyer, &listing, "received").await;
        buyer
            .reputation
            .rate(rating(&trade, 5))
            .await
            .expect("rate");

        // Cold start: the observer has no trades and trusts no key. It shows the evidence it
        // holds, says it is not yet personal, and how to seed.
        let cold = reputation_where(observer, &seller_id, "the rating at the observer", |v| {
            v.attestations == 1
        })
        .await;
        assert_eq!(cold.basis, TrustBasis::NotYetPersonal);
        assert!(!cold.seeded);
        assert_eq!(cold.score, 0.0);
        assert_eq!((cold.completed_trades, cold.raters), (1, 1));
        assert!(cold.first_seen_at.is_some());
        assert_eq!(cold.key_age_days, Some(0));
        let advice = cold.advice.expect("advice");
        assert!(
            advice.contains("jangteo trust") && advice.contains("complete"),
            "{advice}"
        );
        // No one it trusts vouched for the seller: any offer carries a warning.
        let l = listing.clone();
        wait_for(WAIT, "the listing at the observer", || async {
            observer.listings.show(&l).ok().map(|_| ())
        })
        .await
        .expect("listing");
        let check = offer(observer, &listing, 1)
            .await
            .amount_check
            .expect("check");
        assert!(check.above && check.supported == 0, "{check:?}");
        assert!(check.warning.expect("warning").contains("no one"));

        // The observer trusts the buyer, who paid 50 000 KRW to the seller and rated it 5:
        // the seller's trust now supports trades up to twice that.
        observer.reputation.trust(&buyer_id).expect("trust");
        let warm = reputation_where(observer, &seller_id, "a personal view", |v| v.seeded).await;
        assert_eq!(warm.basis, TrustBasis::Personal);
        assert_eq!(warm.advice, None);
        assert!(warm.score > 0.0);
        assert_eq!(warm.standing, 1.0);
        assert_eq!(
            warm.supports,
            vec![SupportedAmount {
                currency: "KRW".into(),
                value: 100_000
            }]
        );
        let one = offer(observer, &listing, 1).await;
        let check = one.amount_check.expect("check");
        assert_eq!((check.total, check.supported), (50_000, 100_000));
        assert!(!check.above && check.warning.is_none());
        let three = offer(observer, &listing, 3).await;
        let check = three.amount_check.expect("check");
        assert!(check.above, "{check:?}");
        assert!(check.warning.expect("warning").contains("100000 KRW"));
        // The seller sees no amount check on the offers it receives.
        let t = seller.trades.clone();
        let id = three.id.clone();
        let at_seller = wait_for(WAIT, "the offer at the seller", || async {
            let t = t.clone();
            let id = id.clone();
            tokio::task::spawn_blocking(move || t.view(&id).ok())
                .await
                .ok()
                .flatten()
        })
        .await
        .expect("seller's view");
        let r = seller.reputation.clone();
        let seen = tokio::task::spawn_blocking(move || r.gate(at_seller))
            .await
            .expect("gate");
        assert_eq!(seen.amount_check, None);
        // A listing shows what its seller's trust supports.
        let (r, ls, l) = (
            observer.reputation.clone(),
            observer.listings.clone(),
            listing.clone(),
        );
        let shown = tokio::task::spawn_blocking(move || r.show(&ls, &l))
            .await
            .expect("join")
            .expect("show");
        assert_eq!(shown.seller_supports, Some(100_000));
    }
    cluster.shutdown().await;
}
