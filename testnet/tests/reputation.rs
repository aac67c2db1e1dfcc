//! In-process reputation tests: real nodes (RocksDB, libp2p on loopback) in one process.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use jangteo_node::Node;
use jangteo_node::api::types::ReputationView;
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
