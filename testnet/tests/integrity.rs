//! Trade integrity against a lying party, in-process (real RocksDB, libp2p on loopback): a
//! seller who signs a second accept and a cancel on top to rewrite a paid trade, a seller who
//! tries to erase a dispute with a late `shipped`, and strangers who send offers and disputes
//! a node must not store. Keys are seeded, so the test can sign as the liar.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use jangteo_node::Node;
use jangteo_node::api::types::TradeView;
use jangteo_node::net::{TradeRequest, TradeResponse};
use jangteo_node::services::listings::NewListing;
use jangteo_node::services::trades::{NewOffer, TradeAction};
use jangteo_protocol::trade::{Terms, TradeMessage};
use jangteo_protocol::{Kind, ListingId, ObjectId, PublicKey, SignedObject};
use jangteo_testnet::{Cluster, Topology, tcp_addr, wait_for};
use libp2p::PeerId;
use serde_bytes::ByteBuf;

const WAIT: Duration = Duration::from_secs(20);
const SELLER: u8 = 21;
const BUYER: u8 = 22;
const OBSERVER: u8 = 23;
const STRANGER: u8 = 24;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn pk(seed: u8) -> PublicKey {
    PublicKey(key(seed).verifying_key().to_bytes())
}

/// Starts a node whose identity key is `seed`, dialing `bootstrap`.
async fn node_with_key(cluster: &mut Cluster, seed: u8, bootstrap: Vec<String>) -> usize {
    cluster
        .add_node_with(bootstrap, |cfg| {
            std::fs::create_dir_all(&cfg.data_dir).expect("data dir");
            jangteo_node::keys::write_secret_file(
                &cfg.data_dir.join(jangteo_node::keys::KEY_FILE),
                &[seed; 32],
            )
            .expect("key file");
        })
        .await
        .expect("node")
}

async fn state_is(node: &Node, trade: &str, state: &str) -> TradeView {
    jangteo_testnet::trade_state_is(node, trade, state, WAIT)
        .await
        .expect("state")
}

async fn act(node: &Node, trade: &str, action: &str, a: TradeAction) -> TradeView {
    node.trades
        .act(trade, action, a)
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"))
}

fn chain_of(node: &Node, trade: &str) -> Vec<SignedObject> {
    node.store
        .trade_messages(&ObjectId::from_hex(trade).expect("id"))
        .expect("messages")
        .iter()
        .map(|b| SignedObject::decode_and_verify(b).expect("valid"))
        .collect()
}

async fn send(from: &Node, to: &Node, messages: &[&SignedObject]) -> TradeResponse {
    let peer: PeerId = to.peer_id.parse().expect("peer id");
    from.network
        .send_trade(
            peer,
            TradeRequest {
                messages: messages
                    .iter()
                    .map(|m| ByteBuf::from(m.bytes().to_vec()))
                    .collect(),
            },
        )
        .await
        .expect("network")
        .expect("answer")
}

async fn post(seller: &Node, quantity: u64, moderators: Vec<String>) -> String {
    seller
        .listings
        .post(NewListing {
            title: "캠핑 의자 2개".into(),
            price: 30_000,
            currency: "KRW".into(),
            description: None,
            category: None,
            condition: None,
            quantity: Some(quantity),
            location: None,
            moderators,
            expires_in_days: None,
            images: vec![],
        })
        .await
        .expect("post")
        .id
}

async fn offer(buyer: &Node, listing: &str) -> String {
    let l = listing.to_owned();
    wait_for(WAIT, "the listing to reach the buyer", || async {
        buyer.listings.show(&l).ok()
    })
    .await
    .expect("listing arrives");
    buyer
        .trades
        .offer(NewOffer {
            listing: listing.into(),
            price: None,
            quantity: None,
            message: Some("Saturday?".into()),
            moderators: vec![],
        })
        .await
        .expect("offer")
        .id
}

/// The rewrite reproduced against the old release: offer, accept, paid; then the seller signs
/// a second accept of the offer and a cancel on top and delivers both. The buyer's node keeps
/// the payment, refuses the forgery as equivocation, shows who did it, and the proof reaches
/// a third node, whose trust then gives the seller nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_cannot_rewrite_a_paid_trade_and_the_equivocation_is_proven_everywhere() {
    let mut cluster = Cluster::start(0, Topology::Star).await.expect("cluster");
    let s = node_with_key(&mut cluster, SELLER, vec![]).await;
    let hub = tcp_addr(&cluster.nodes[s]).await.expect("addr");
    let b = node_with_key(&mut cluster, BUYER, vec![hub.clone()]).await;
    let o = node_with_key(&mut cluster, OBSERVER, vec![hub]).await;
    let (seller, buyer, observer) = (&cluster.nodes[s], &cluster.nodes[b], &cluster.nodes[o]);
    observer
        .reputation
        .trust(&buyer.peer_id)
        .expect("observer trusts the buyer");

    let listing = post(seller, 1, vec![]).await;
    let trade = offer(buyer, &listing).await;
    state_is(seller, &trade, "offered").await;
    act(seller, &trade, "accept", TradeAction::default()).await;
    state_is(buyer, &trade, "accepted").await;
    act(
        buyer,
        &trade,
        "paid",
        TradeAction {
            reference: Some("bank 1234".into()),
            ..Default::default()
        },
    )
    .await;
    state_is(seller, &trade, "paid").await;

    let held = chain_of(buyer, &trade);
    let offer_obj = held
        .iter()
        .find(|o| o.id().to_hex() == trade)
        .expect("offer")
        .clone();
    let accept = held
        .iter()
        .find(|o| o.envelope().kind == Kind::Accept)
        .expect("accept")
        .clone();
    let tid = offer_obj.id();
    let accept_body =
        TradeMessage::decode(Kind::Accept, &accept.envelope().body).expect("accept body");
    // Forged: a second accept (a later `at`, so another id) and a cancel on top of it. At
    // least four, and more until one has a lower id than the real accept (the old rule's
    // winner); each id is lower with even odds, so 64 tries fail to find one with odds 2^-64.
    let mut forged = Vec::new();
    for n in 1..=64u64 {
        if forged.len() >= 4
            && forged
                .iter()
                .any(|(a2, _): &(SignedObject, SignedObject)| a2.id() < accept.id())
        {
            break;
        }
        let mut a2 = TradeMessage::follow(tid, tid, accept_body.at + n);
        a2.terms = accept_body.terms.clone();
        let a2 = SignedObject::sign(Kind::Accept, a2.encode(), &key(SELLER));
        let mut c = TradeMessage::follow(tid, a2.id(), accept_body.at + n + 1);
        c.note = "changed my mind".into();
        let c = SignedObject::sign(Kind::Cancel, c.encode(), &key(SELLER));
        forged.push((a2, c));
    }
    assert!(
        forged.iter().any(|(a2, _)| a2.id() < accept.id()),
        "one forgery wins the old tie-break"
    );
    // Sent: the first three and the first that wins the old tie-break, at most four. Each
    // is an offense by the seller, and a node bans a peer after ten (BAN_AFTER_INVALID): all
    // 64 could close the connection before the last answer, which is not what this tests.
    let winner = forged
        .iter()
        .position(|(a2, _)| a2.id() < accept.id())
        .expect("a winner");
    let sent: Vec<&(SignedObject, SignedObject)> = forged
        .iter()
        .take(3)
        .chain(forged.get(winner).filter(|_| winner >= 3))
        .collect();
    for (a2, c) in sent {
        match send(seller, buyer, &[&offer_obj, a2, c]).await {
            TradeResponse::Refused(why) => assert!(why.contains("equivocation"), "{why}"),
            other => panic!("the forgery was taken: {other:?}"),
        }
    }
    let v = buyer.trades.view(&trade).expect("view");
    assert_eq!(v.state.as_str(), "paid", "the buyer's payment stands");
    let kinds: Vec<&str> = v.history.iter().map(|h| h.kind.as_str()).collect();
    assert_eq!(kinds, ["offer", "accept", "paid"]);
    let eq = &v.equivocations;
    assert_eq!(eq.len(), 1, "one proof per trade and equivocator: {eq:?}");
    assert_eq!(eq[0].by, seller.peer_id.as_str());
    assert_eq!(eq[0].role.as_str(), "seller");
    // Of the forgeries, only the first second-accept is kept (with the real one it is the
    // proof); the cancels and the other accepts are not stored.
    let log = chain_of(buyer, &trade);
    assert_eq!(log.len(), 4, "offer, accept, paid and one forged accept");
    assert!(!log.iter().any(|o| o.envelope().kind == Kind::Cancel));

    // The proof is gossiped; a node that never saw the trade checks it and stores it.
    let seller_key = pk(SELLER);
    wait_for(WAIT, "the proof to reach the observer", || async {
        observer
            .store
            .equivocators()
            .ok()
            .filter(|e| e.contains(&seller_key))
    })
    .await
    .expect("proof gossiped");
    let r = observer
        .reputation
        .reputation(&seller.peer_id)
        .expect("reputation");
    assert!(r.equivocated);
    assert_eq!(r.score, 0.0);

    // A dispute is never erased by a `shipped` the seller signs afterwards.
    act(
        buyer,
        &trade,
        "dispute",
        TradeAction {
            reason: Some("never arrived".into()),
            ..Default::default()
        },
    )
    .await;
    state_is(seller, &trade, "disputed").await;
    let paid = chain_of(buyer, &trade)
        .into_iter()
        .find(|o| o.envelope().kind == Kind::Paid)
        .expect("paid");
    for n in 0..4u64 {
        let mut m = TradeMessage::follow(tid, paid.id(), accept_body.at + 100 + n);
        m.outcome = Some("handed-over".into());
        let shipped = SignedObject::sign(Kind::Shipped, m.encode(), &key(SELLER));
        let _ = send(seller, buyer, &[&offer_obj, &accept, &paid, &shipped]).await;
        // Delivered straight into the seller's own node too: it cannot outrank the dispute.
        let _ = seller
            .trades
            .receive(TradeRequest {
                messages: vec![
                    ByteBuf::from(offer_obj.bytes().to_vec()),
                    ByteBuf::from(shipped.bytes().to_vec()),
                ],
            })
            .await;
    }
    assert_eq!(
        buyer.trades.view(&trade).expect("view").state.as_str(),
        "disputed"
    );
    assert_eq!(
        seller.trades.view(&trade).expect("view").state.as_str(),
        "disputed"
    );

    // Junk from a fresh key after the offer, and a pair of the seller's own on top of it:
    // self-incrimination must not disqualify the seller's accept and so erase the payment
    // and the dispute; none of it is stored.
    let log_before = chain_of(buyer, &trade).len();
    for n in 0..4u64 {
        let z = |kind: Kind, k: u64| {
            let mut m = TradeMessage::follow(tid, tid, accept_body.at + 200 + n * 10 + k);
            m.note = "junk".into();
            if kind == Kind::Counter {
                m.terms = accept_body.terms.clone();
            }
            SignedObject::sign(kind, m.encode(), &key(STRANGER))
        };
        let (z1, z2) = (z(Kind::Cancel, 1), z(Kind::Counter, 2));
        let s1 = SignedObject::sign(
            Kind::Cancel,
            TradeMessage::follow(tid, z2.id(), accept_body.at + 300 + n).encode(),
            &key(SELLER),
        );
        let mut r = TradeMessage::follow(tid, z2.id(), accept_body.at + 400 + n);
        r.note = "no".into();
        let s2 = SignedObject::sign(Kind::Reject, r.encode(), &key(SELLER));
        let answer = send(seller, buyer, &[&offer_obj, &z1, &z2, &s1, &s2]).await;
        assert!(matches!(answer, TradeResponse::Refused(_)), "{answer:?}");
    }
    assert_eq!(
        buyer.trades.view(&trade).expect("view").state.as_str(),
        "disputed"
    );
    assert_eq!(
        chain_of(buyer, &trade).len(),
        log_before,
        "junk is never stored"
    );
    cluster.shutdown().await;
}

/// Strangers: offers for a listing the seller does not have, for a listing that is not the
/// node's, beyond the per-buyer cap, and a dispute naming the node as a moderator it never
/// agreed to. Each is refused with a reason, and nothing is stored or queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_cannot_make_a_node_store_or_retry() {
    let mut cluster = Cluster::start(0, Topology::Star).await.expect("cluster");
    let v = node_with_key(&mut cluster, SELLER, vec![]).await;
    let hub = tcp_addr(&cluster.nodes[v]).await.expect("addr");
    let t = node_with_key(&mut cluster, STRANGER, vec![hub]).await;
    let (victim, stranger) = (&cluster.nodes[v], &cluster.nodes[t]);
    let listing = post(victim, 5, vec![]).await;
    let lid = ListingId::from_hex(&listing).expect("listing id");
    let before = victim.trades.counts().expect("counts");

    let terms = |listing: ListingId, quantity: u64| Terms {
        listing,
        listing_seq: 1,
        price: 30_000,
        currency: "KRW".into(),
        quantity,
    };
    let offer = |by: &SigningKey, seller: PublicKey, terms: Terms, n: u64, mods: Vec<PublicKey>| {
        let m = TradeMessage {
            trade: None,
            prev: None,
            at: jangteo_node::ingest::now_ms() - 1000 + n,
            seller: Some(seller),
            terms: Some(terms),
            moderators: mods,
            note: String::new(),
            outcome: None,
        };
        SignedObject::sign(Kind::Offer, m.encode(), by)
    };
    let mut refusals = Vec::new();
    // An unknown listing, from fresh keys.
    for n in 0..10u8 {
        let o = offer(
            &key(100 + n),
            pk(SELLER),
            terms(ListingId([n; 32]), 1),
            u64::from(n),
            vec![],
        );
        refusals.push(send(stranger, victim, &[&o]).await);
    }
    // More units than there are.
    let o = offer(&key(120), pk(SELLER), terms(lid, 6), 0, vec![]);
    refusals.push(send(stranger, victim, &[&o]).await);
    // A dispute chain between two throw-away keys naming the victim as moderator.
    let (b, s) = (key(121), key(122));
    let o = offer(
        &b,
        PublicKey(s.verifying_key().to_bytes()),
        terms(ListingId([7; 32]), 1),
        0,
        vec![pk(SELLER)],
    );
    let mut a = TradeMessage::follow(o.id(), o.id(), jangteo_node::ingest::now_ms() - 500);
    a.terms = Some(terms(ListingId([7; 32]), 1));
    let a = SignedObject::sign(Kind::Accept, a.encode(), &s);
    let p = SignedObject::sign(
        Kind::Paid,
        TradeMessage::follow(o.id(), a.id(), jangteo_node::ingest::now_ms() - 400).encode(),
        &b,
    );
    let mut d = TradeMessage::follow(o.id(), p.id(), jangteo_node::ingest::now_ms() - 300);
    d.note = "scam".into();
    let d = SignedObject::sign(Kind::Dispute, d.encode(), &b);
    refusals.push(send(stranger, victim, &[&o, &a, &p, &d]).await);
    // An offer and its withdrawal in one delivery: nothing to keep.
    let o3 = offer(&key(123), pk(SELLER), terms(lid, 1), 3, vec![]);
    let mut c3 = TradeMessage::follow(o3.id(), o3.id(), jangteo_node::ingest::now_ms() - 100);
    c3.note = "never mind".into();
    let c3 = SignedObject::sign(Kind::Cancel, c3.encode(), &key(123));
    assert_eq!(
        send(stranger, victim, &[&o3, &c3]).await,
        TradeResponse::Accepted
    );
    // A trade that does not name the victim at all.
    let o2 = offer(
        &b,
        PublicKey(s.verifying_key().to_bytes()),
        terms(ListingId([8; 32]), 1),
        1,
        vec![],
    );
    refusals.push(send(stranger, victim, &[&o2]).await);
    for r in &refusals {
        assert!(matches!(r, TradeResponse::Refused(_)), "{r:?}");
    }
    // Within the per-buyer cap, offers on the real listing are taken; beyond it, refused.
    let mut taken = 0;
    for n in 0..8u64 {
        let o = offer(&key(130), pk(SELLER), terms(lid, 1), n, vec![]);
        if send(stranger, victim, &[&o]).await == TradeResponse::Accepted {
            taken += 1;
        }
    }
    assert_eq!(taken, jangteo_node::services::trades::OPEN_OFFERS_PER_BUYER);
    let after = victim.trades.counts().expect("counts");
    // Signed lies count against the peer that delivers them: a tampered signature, ten
    // times within the offense window, and the stranger is banned.
    let good = offer(&key(140), pk(SELLER), terms(lid, 1), 0, vec![]);
    let mut forged = good.bytes().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let peer: PeerId = victim.peer_id.parse().expect("peer id");
    for _ in 0..jangteo_node::net::BAN_AFTER_INVALID {
        let _ = stranger
            .network
            .send_trade(
                peer,
                TradeRequest {
                    messages: vec![ByteBuf::from(forged.clone())],
                },
            )
            .await;
    }
    let stranger_id = stranger.peer_id.clone();
    wait_for(WAIT, "the stranger to be banned", || async {
        victim
            .network
            .info()
            .await
            .ok()
            .filter(|i| i.banned.contains(&stranger_id))
    })
    .await
    .expect("banned for signed lies");
    assert_eq!(
        after.0 - before.0,
        taken as u64,
        "only the capped real offers are stored"
    );
    assert_eq!(after.2, 0, "nothing queued for strangers");
    cluster.shutdown().await;
}
