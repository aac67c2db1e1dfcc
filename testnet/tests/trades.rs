//! In-process trade tests: real nodes (RocksDB, libp2p on loopback) in one process.

use std::time::Duration;

use jangteo_node::api::types::{DeliveryStatus, TradeView};
use jangteo_node::services::listings::NewListing;
use jangteo_node::services::trades::{NewOffer, TradeAction};
use jangteo_node::{Node, NodeEvent};
use jangteo_testnet::{Cluster, Topology, tcp_addr, wait_event, wait_for};

const WAIT: Duration = Duration::from_secs(20);

async fn post(seller: &Node, title: &str, quantity: u64) -> String {
    seller
        .listings
        .post(NewListing {
            title: title.into(),
            price: 150_000,
            currency: "KRW".into(),
            description: None,
            category: None,
            condition: None,
            quantity: Some(quantity),
            location: None,
            moderators: vec![],
            expires_in_days: None,
            images: vec![],
        })
        .await
        .expect("post")
        .id
}

async fn held_by(node: &Node, listing: &str) {
    let l = listing.to_owned();
    wait_for(WAIT, "the listing to reach the buyer", || async {
        node.listings.show(&l).ok().map(|_| ())
    })
    .await
    .expect("listing arrives");
}

async fn offer(buyer: &Node, listing: &str, price: Option<u64>) -> String {
    let v = buyer
        .trades
        .offer(NewOffer {
            listing: listing.into(),
            price,
            quantity: None,
            message: Some("this weekend?".into()),
            moderators: vec![],
        })
        .await
        .expect("offer");
    v.id
}

async fn state_is(node: &Node, trade: &str, state: &str) -> TradeView {
    jangteo_testnet::trade_state_is(node, trade, state, WAIT)
        .await
        .expect("state")
}

async fn act(node: &Node, trade: &str, action: &str) -> TradeView {
    node.trades
        .act(trade, action, TradeAction::default())
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_trade_from_offer_to_completed_on_both_sides() {
    let cluster = Cluster::start(2, Topology::Star).await.expect("cluster");
    let (seller, buyer) = (&cluster.nodes[0], &cluster.nodes[1]);
    let listing = post(seller, "Brompton M6L", 1).await;
    held_by(buyer, &listing).await;
    let trade = offer(buyer, &listing, None).await;
    let at_seller = state_is(seller, &trade, "offered").await;
    assert_eq!(at_seller.role.as_str(), "seller");
    assert_eq!(at_seller.counterparty, buyer.peer_id);
    // The buyer records the delivery when the seller's answer arrives, which may be just
    // after the seller holds the offer.
    let t = trade.clone();
    wait_for(WAIT, "the buyer to see its offer delivered", || async {
        (buyer.trades.view(&t).ok()?.history.first()?.delivery.status == DeliveryStatus::Delivered)
            .then_some(())
    })
    .await
    .expect("delivered");

    act(seller, &trade, "accept").await;
    state_is(buyer, &trade, "accepted").await;
    // Accepting reserved the only unit: the listing's next version is sold out, everywhere.
    assert_eq!(seller.listings.show(&listing).expect("listing").quantity, 0);
    let l = listing.clone();
    wait_for(WAIT, "the sold-out version at the buyer", || async {
        (buyer.listings.show(&l).ok()?.status.as_str() == "sold").then_some(())
    })
    .await
    .expect("sold out");

    act(buyer, &trade, "paid").await;
    state_is(seller, &trade, "paid").await;
    act(seller, &trade, "shipped").await;
    state_is(buyer, &trade, "shipped").await;
    act(buyer, &trade, "received").await;
    let done = state_is(seller, &trade, "completed").await;
    let kinds: Vec<&str> = done.history.iter().map(|h| h.kind.as_str()).collect();
    assert_eq!(kinds, ["offer", "accept", "paid", "shipped", "received"]);
    assert_eq!(
        buyer.trades.view(&trade).expect("view").state.as_str(),
        "completed"
    );
    // Nothing follows a completed trade, and the refusal says so.
    let err = buyer
        .trades
        .act(
            &trade,
            "dispute",
            TradeAction {
                reason: Some("late".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("over");
    assert!(err.to_string().contains("you may now: nothing"), "{err}");
    // Each step of the other party was notified, stored with the step; one's own steps were
    // not; the buyer's receipt is the seller's sale.
    let notes = |n: &Node| -> Vec<String> {
        let (list, unread) = n.store.notifications(false, 100).expect("notifications");
        assert_eq!(unread as usize, list.len());
        list.into_iter()
            .rev()
            .map(|v| format!("{}:{}", v.kind.as_str(), v.step.unwrap_or_default()))
            .collect()
    };
    assert_eq!(
        notes(seller),
        ["trade_step:offer", "trade_step:paid", "listing_sold:"]
    );
    assert_eq!(notes(buyer), ["trade_step:accept", "trade_step:shipped"]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_then_accept_and_invalid_steps_are_refused() {
    let cluster = Cluster::start(2, Topology::Star).await.expect("cluster");
    let (seller, buyer) = (&cluster.nodes[0], &cluster.nodes[1]);
    let listing = post(seller, "Fender Stratocaster", 2).await;
    held_by(buyer, &listing).await;
    let trade = offer(buyer, &listing, Some(100_000)).await;
    state_is(seller, &trade, "offered").await;
    // The buyer may not accept their own offer, nor pay before acceptance.
    let err = buyer
        .trades
        .act(&trade, "paid", TradeAction::default())
        .await
        .expect_err("too early");
    assert!(err.to_string().contains("you may now: cancel"), "{err}");
    seller
        .trades
        .act(
            &trade,
            "counter",
            TradeAction {
                price: Some(130_000),
                ..Default::default()
            },
        )
        .await
        .expect("counter");
    let v = state_is(buyer, &trade, "countered").await;
    assert_eq!(v.price, 130_000);
    assert!(
        seller
            .trades
            .act(&trade, "accept", TradeAction::default())
            .await
            .is_err(),
        "the proposer cannot accept"
    );
    act(buyer, &trade, "accept").await;
    let v = state_is(seller, &trade, "accepted").await;
    assert_eq!(v.price, 130_000);
    // The seller's node reserved one of the two units when the buyer's accept arrived.
    let l = listing.clone();
    wait_for(WAIT, "one unit reserved", || async {
        (seller.listings.show(&l).ok()?.quantity == 1).then_some(())
    })
    .await
    .expect("reserved");
    // Unknown trade ids are refused.
    assert!(buyer.trades.view(&"00".repeat(32)).is_err());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_unit_goes_to_one_buyer_and_the_other_offer_is_rejected() {
    let cluster = Cluster::start(3, Topology::Star).await.expect("cluster");
    let (seller, b1, b2) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let listing = post(seller, "last kettle", 1).await;
    held_by(b1, &listing).await;
    held_by(b2, &listing).await;
    let t1 = offer(b1, &listing, None).await;
    let t2 = offer(b2, &listing, None).await;
    state_is(seller, &t1, "offered").await;
    state_is(seller, &t2, "offered").await;
    // Two accepts race for one unit: exactly one succeeds.
    let (r1, r2) = tokio::join!(
        seller.trades.act(&t1, "accept", TradeAction::default()),
        seller.trades.act(&t2, "accept", TradeAction::default())
    );
    assert_eq!(
        u8::from(r1.is_ok()) + u8::from(r2.is_ok()),
        1,
        "{r1:?} / {r2:?}"
    );
    let (won, lost, loser) = if r1.is_ok() {
        (&t1, &t2, b2)
    } else {
        (&t2, &t1, b1)
    };
    assert_eq!(
        seller.trades.view(won).expect("view").state.as_str(),
        "accepted"
    );
    let v = state_is(loser, lost, "rejected").await;
    let last = v.history.last().cloned().expect("last");
    assert!(last.note.contains("sold out"), "{last:?}");
    assert_eq!(seller.listings.show(&listing).expect("listing").quantity, 0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_resumes_the_trade_and_an_offer_waits_for_an_offline_seller() {
    let mut cluster = Cluster::start(2, Topology::Star).await.expect("cluster");
    let listing = post(&cluster.nodes[0], "camping chair", 3).await;
    held_by(&cluster.nodes[1], &listing).await;
    let trade = offer(&cluster.nodes[1], &listing, None).await;
    state_is(&cluster.nodes[0], &trade, "offered").await;
    act(&cluster.nodes[0], &trade, "accept").await;
    state_is(&cluster.nodes[1], &trade, "accepted").await;

    // The seller restarts mid-trade; the buyer pays; the seller picks up where it was.
    let buyer_addr = tcp_addr(&cluster.nodes[1]).await.expect("addr");
    cluster
        .restart(0, vec![buyer_addr.clone()])
        .await
        .expect("restart");
    assert_eq!(
        cluster.nodes[0]
            .trades
            .view(&trade)
            .expect("after restart")
            .state
            .as_str(),
        "accepted"
    );
    act(&cluster.nodes[1], &trade, "paid").await;
    state_is(&cluster.nodes[0], &trade, "paid").await;

    // The seller goes offline; an offer made now is queued, and reaches the seller after it
    // comes back.
    cluster.stop(0).await.expect("stop");
    let second = offer(&cluster.nodes[0], &listing, None).await;
    let queued = cluster.nodes[0].trades.view(&second).expect("view");
    assert_eq!(
        queued.history[0].delivery.status,
        DeliveryStatus::Queued,
        "{queued:?}"
    );
    assert!(
        queued.history[0]
            .delivery
            .reason
            .as_deref()
            .is_some_and(|r| !r.is_empty())
    );
    let mut events = cluster.nodes[0].subscribe();
    cluster
        .start_again(0, 0, vec![buyer_addr])
        .await
        .expect("seller back");
    wait_event(&mut events, WAIT, |e| {
        matches!(
            e,
            NodeEvent::Delivery {
                status: DeliveryStatus::Delivered,
                ..
            }
        )
    })
    .await
    .expect("delivered");
    state_is(&cluster.nodes[0], &second, "offered").await;
    assert_eq!(
        cluster.nodes[1].trades.view(&second).expect("view").history[0]
            .delivery
            .status,
        DeliveryStatus::Delivered
    );
    cluster.shutdown().await;
}

async fn start(dir: &std::path::Path, bootstrap: Vec<String>, relay: bool) -> Node {
    let mut cfg = jangteo_node::NodeConfig::new(dir);
    cfg.listing_stamp_bits = jangteo_node::TEST_NETWORK_STAMP_BITS;
    cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    cfg.mdns = false;
    cfg.relay = relay;
    cfg.bootstrap = bootstrap;
    Node::start(cfg).await.expect("node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_to_an_offline_seller_waits_sealed_in_a_relay_mailbox() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let relay = start(dirs[0].path(), vec![], true).await;
    let relay_addr = tcp_addr(&relay).await.expect("relay addr");
    let seller = start(dirs[1].path(), vec![relay_addr.clone()], false).await;
    let buyer = start(dirs[2].path(), vec![relay_addr.clone()], false).await;
    let listing = post(&seller, "offline seller's desk", 1).await;
    held_by(&buyer, &listing).await;
    wait_for(WAIT, "the buyer to know the relay", || async {
        (!buyer.network.relays().await.ok()?.is_empty()).then_some(())
    })
    .await
    .expect("relay known");

    // The seller goes offline; the buyer offers; the offer is sealed into the relay's mailbox.
    seller.shutdown().await;
    let trade = offer(&buyer, &listing, Some(120_000)).await;
    let v = buyer.trades.view(&trade).expect("view");
    let delivery = &v.history[0].delivery;
    assert_eq!(delivery.status, DeliveryStatus::Queued, "{v:?}");
    assert!(
        delivery
            .reason
            .as_deref()
            .expect("reason")
            .contains("mailbox of relay"),
        "{v:?}"
    );
    assert_eq!(
        relay.store.mailbox_stats().expect("stats").0,
        1,
        "the relay holds one sealed item"
    );
    // The relay cannot read it: the offer's bytes are not in what it holds.
    let held = relay
        .store
        .mailbox_fetch(
            &jangteo_protocol::public_key_from_peer_id(&seller_peer(&dirs[1]))
                .expect("key")
                .0,
            0,
            10,
            1 << 20,
        )
        .expect("fetch");
    assert_eq!(held.len(), 1);
    assert!(!held[0].1.windows(5).any(|w| w == b"desk!" || w == b"offer"));

    // The buyer goes offline too; the seller comes back and finds the offer in its mailbox.
    buyer.shutdown().await;
    let seller = start(dirs[1].path(), vec![relay_addr.clone()], false).await;
    state_is(&seller, &trade, "offered").await;
    let r = &relay;
    wait_for(
        WAIT,
        "the relay to delete the acknowledged item",
        || async { (r.store.mailbox_stats().ok()?.0 == 0).then_some(()) },
    )
    .await
    .expect("acked");
    // The buyer comes back: its queued offer is now delivered (directly, once it finds the seller).
    let buyer = start(dirs[2].path(), vec![relay_addr], false).await;
    let b = &buyer;
    let t = trade.clone();
    wait_for(WAIT, "the buyer to see its offer delivered", || async {
        (b.trades.view(&t).ok()?.history.first()?.delivery.status == DeliveryStatus::Delivered)
            .then_some(())
    })
    .await
    .expect("delivered");
    act(&seller, &trade, "accept").await;
    state_is(&buyer, &trade, "accepted").await;
    for n in [relay, seller, buyer] {
        n.shutdown().await;
    }
}

fn seller_peer(dir: &tempfile::TempDir) -> String {
    let (key, _) = jangteo_node::keys::load_or_create(dir.path()).expect("key");
    jangteo_protocol::peer_id_string(&key.verifying_key().to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispute_is_closed_by_the_moderator_the_listing_named_and_redelivery_changes_nothing() {
    let cluster = Cluster::start(3, Topology::Star).await.expect("cluster");
    let (seller, buyer, moderator) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let listing = seller
        .listings
        .post(NewListing {
            title: "road bike".into(),
            price: 300_000,
            currency: "KRW".into(),
            description: None,
            category: None,
            condition: None,
            quantity: None,
            location: None,
            expires_in_days: None,
            images: vec![],
            moderators: vec![moderator.peer_id.clone()],
        })
        .await
        .expect("post")
        .id;
    held_by(buyer, &listing).await;
    let trade = offer(buyer, &listing, None).await;
    let v = buyer.trades.view(&trade).expect("view");
    assert_eq!(
        v.moderators[0],
        moderator.peer_id.as_str(),
        "the offer names the listing's moderator"
    );
    state_is(seller, &trade, "offered").await;
    act(seller, &trade, "accept").await;
    state_is(buyer, &trade, "accepted").await;
    act(buyer, &trade, "paid").await;
    state_is(seller, &trade, "paid").await;

    // Redelivering the whole chain changes nothing and is answered as accepted.
    let raw = buyer
        .store
        .trade_messages(&jangteo_protocol::ObjectId::from_hex(&trade).expect("id"))
        .expect("chain");
    let again = jangteo_node::net::TradeRequest {
        messages: raw.into_iter().map(serde_bytes::ByteBuf::from).collect(),
    };
    assert_eq!(
        seller.trades.receive(again).await,
        jangteo_node::net::TradeResponse::Accepted
    );
    assert_eq!(seller.trades.view(&trade).expect("view").history.len(), 3);

    buyer
        .trades
        .act(
            &trade,
            "dispute",
            TradeAction {
                reason: Some("frame is cracked".into()),
                ..Default::default()
            },
        )
        .await
        .expect("dispute");
    state_is(moderator, &trade, "disputed").await;
    // Only the moderator may resolve; the parties may not.
    assert!(
        seller
            .trades
            .act(
                &trade,
                "resolve",
                TradeAction {
                    outcome: Some("release".into()),
                    ..Default::default()
                }
            )
            .await
            .is_err()
    );
    moderator
        .trades
        .act(
            &trade,
            "resolve",
            TradeAction {
                outcome: Some("refund".into()),
                ..Default::default()
            },
        )
        .await
        .expect("resolve");
    state_is(buyer, &trade, "resolved").await;
    state_is(seller, &trade, "resolved").await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_buyers_accepting_counters_for_the_last_unit_get_it_once_and_stock_stays_right() {
    let cluster = Cluster::start(3, Topology::Star).await.expect("cluster");
    let (seller, b1, b2) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let listing = post(seller, "last guitar", 1).await;
    held_by(b1, &listing).await;
    held_by(b2, &listing).await;
    let (t1, t2) = (
        offer(b1, &listing, Some(100_000)).await,
        offer(b2, &listing, Some(100_000)).await,
    );
    for t in [&t1, &t2] {
        state_is(seller, t, "offered").await;
        seller
            .trades
            .act(
                t,
                "counter",
                TradeAction {
                    price: Some(120_000),
                    ..Default::default()
                },
            )
            .await
            .expect("counter");
    }
    state_is(b1, &t1, "countered").await;
    state_is(b2, &t2, "countered").await;
    // Both buyers accept the seller's counter at once: both contracts reach the seller.
    let (r1, r2) = tokio::join!(act(b1, &t1, "accept"), act(b2, &t2, "accept"));
    // Each accept is taken; the loser's node may already have heard the seller's "sold out"
    // cancellation by the time its own accept returns.
    for r in [&r1, &r2] {
        assert!(
            matches!(r.state.as_str(), "accepted" | "cancelled"),
            "{r:?}"
        );
    }
    // The seller's node keeps one and cancels the other as sold out, and the unit is not
    // handed back by that cancellation.
    let (s1, s2) = (seller.trades.clone(), seller.trades.clone());
    let (a, b) = (t1.clone(), t2.clone());
    let states = wait_for(WAIT, "one accepted and one cancelled at the seller", || {
        let (s1, s2, a, b) = (s1.clone(), s2.clone(), a.clone(), b.clone());
        async move {
            let x = s1.view(&a).ok()?.state.as_str().to_owned();
            let y = s2.view(&b).ok()?.state.as_str().to_owned();
            let mut v = [x, y];
            v.sort();
            (v == ["accepted", "cancelled"]).then_some(v)
        }
    })
    .await
    .expect("settled");
    assert_eq!(states, ["accepted", "cancelled"]);
    assert_eq!(
        seller.listings.show(&listing).expect("listing").quantity,
        0,
        "sold once, not restored"
    );
    cluster.shutdown().await;
}
