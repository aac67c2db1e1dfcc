//! End-to-end trades: three real `jangteo` processes (a relay, a seller, a buyer) on
//! loopback, driven only through the CLI.

mod common;

use std::time::Instant;

use common::{
    NodeProc, jangteo, json_as, json_try_as, start_node, start_node_with, tcp_addr, wait_for,
};
use jangteo_node::api::types::{
    DeliveryStatus, ListingRef, ListingView, OfferMade, RatingView, ReputationView, TradeRef,
    TradeRole, TradeStateName, TradeSummary, TradeView, TrustChange,
};

fn state_is(node: &NodeProc, trade: &str, state: TradeStateName) -> TradeView {
    common::trade_state_is(&node.dir, trade, state)
}

#[test]
fn a_whole_trade_through_the_cli_and_an_offer_that_waits_for_an_offline_seller() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (r_dir, s_dir, b_dir) = (
        tmp.path().join("relay"),
        tmp.path().join("seller"),
        tmp.path().join("buyer"),
    );
    let (_relay, r_id) = start_node_with(&r_dir, None, &["--relay"]);
    let relay_addr = tcp_addr(&r_id);
    let (seller, s_id) = start_node(&s_dir, Some(&relay_addr));
    let (buyer, b_id) = start_node(&b_dir, Some(&relay_addr));

    let listing: ListingRef = json_as(
        &seller.dir,
        &[
            "post",
            "--title",
            "Brompton folding bike",
            "--price",
            "1500000",
            "--currency",
            "KRW",
            "--quantity",
            "2",
        ],
    );
    let listing = listing.id;
    wait_for("the listing at the buyer", || {
        let hits: Vec<ListingView> = json_try_as(&buyer.dir, &["search", "brompton"])?;
        (hits.len() == 1).then_some(())
    });

    let started = Instant::now();
    let offer: OfferMade = json_as(
        &buyer.dir,
        &[
            "offer",
            &listing,
            "--price",
            "1400000",
            "--message",
            "Saturday at Mangwon station?",
        ],
    );
    assert_eq!(offer.state, TradeStateName::Offered);
    let trade = offer.id;
    let at_seller = state_is(&seller, &trade, TradeStateName::Offered);
    assert_eq!(at_seller.role, TradeRole::Seller);
    assert_eq!(at_seller.price, 1_400_000);
    assert_eq!(
        json_as::<TradeRef>(&seller.dir, &["accept", &trade]).state,
        TradeStateName::Accepted
    );
    state_is(&buyer, &trade, TradeStateName::Accepted);
    assert_eq!(
        json_as::<TradeRef>(&buyer.dir, &["paid", &trade, "--reference", "KB 1234-56"]).state,
        TradeStateName::Paid
    );
    state_is(&seller, &trade, TradeStateName::Paid);
    assert_eq!(
        json_as::<TradeRef>(&seller.dir, &["shipped", &trade]).state,
        TradeStateName::Shipped
    );
    state_is(&buyer, &trade, TradeStateName::Shipped);
    assert_eq!(
        json_as::<TradeRef>(&buyer.dir, &["received", &trade]).state,
        TradeStateName::Completed
    );
    let done = state_is(&seller, &trade, TradeStateName::Completed);
    eprintln!(
        "a whole trade took {} ms across processes (CLI round trips and polling included)",
        started.elapsed().as_millis()
    );
    let kinds: Vec<&str> = done.history.iter().map(|h| h.kind.as_str()).collect();
    assert_eq!(kinds, ["offer", "accept", "paid", "shipped", "received"]);
    // Every message the buyer sent shows as delivered (the buyer records it when the
    // seller's answer arrives, which may be just after the seller shows the new state).
    wait_for("every message the buyer sent to show as delivered", || {
        let at_buyer: TradeView = json_try_as(&buyer.dir, &["trade", &trade])?;
        let mine: Vec<_> = at_buyer
            .history
            .iter()
            .filter(|h| h.role == TradeRole::Buyer)
            .collect();
        (!mine.is_empty()
            && mine
                .iter()
                .all(|h| h.delivery.status == DeliveryStatus::Delivered))
        .then_some(())
    });
    // The accept reserved one of two units.
    assert_eq!(
        json_as::<ListingView>(&seller.dir, &["show", &listing]).quantity,
        1
    );
    // Invalid transitions: exit 1, saying what is allowed.
    let out = jangteo(&buyer.dir, &["cancel", &trade]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("you may now"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        jangteo(&buyer.dir, &["accept", &"ab".repeat(32)])
            .status
            .code(),
        Some(1)
    );
    let trades: Vec<TradeSummary> = json_as(&seller.dir, &["trades"]);
    let newest = trades.first().expect("a trade");
    assert_eq!(newest.id, trade);
    assert_eq!(newest.role, TradeRole::Seller);

    // The buyer rates the seller. The relay, a third node whose user knows the buyer, sees
    // the seller's reputation grow.
    let (seller_peer, buyer_peer) = (s_id.peer_id.clone(), b_id.peer_id.clone());
    let before: ReputationView = json_as(&r_dir, &["reputation", &seller_peer]);
    assert_eq!(before.attestations, 0);
    assert_eq!(before.score, 0.0);
    json_as::<TrustChange>(&r_dir, &["trust", &buyer_peer]);
    let rated: RatingView = json_as(
        &buyer.dir,
        &[
            "rate",
            &trade,
            "--score",
            "5",
            "--comment",
            "빠르고 친절해요",
        ],
    );
    assert_eq!(rated.about, seller_peer);
    assert_eq!(rated.id.len(), 64);
    let rep = wait_for("the rating at the relay", || {
        let v: ReputationView = json_try_as(&r_dir, &["reputation", &seller_peer])?;
        (v.attestations == 1).then_some(v)
    });
    assert_eq!(rep.peer_id, seller_peer);
    assert_eq!(rep.completed_trades, 1);
    assert!(rep.score > 0.0, "{rep:?}");
    assert!(rep.confidence > 0.0, "{rep:?}");
    // The relay's search shows the seller's trust, and sorts by it.
    let hits: Vec<ListingView> = json_as(&r_dir, &["search", "brompton", "--sort", "trust"]);
    let top = hits.first().expect("a hit");
    assert_eq!(top.seller, seller_peer, "{hits:?}");
    assert!(top.seller_score > Some(0.0), "{hits:?}");
    assert!(top.seller_confidence > Some(0.0), "{hits:?}");
    // The buyer's own view of the seller (its completed trade seeds it) shows next to the listing.
    let shown: ListingView = json_as(&buyer.dir, &["show", &listing]);
    assert!(shown.seller_score > Some(0.0), "{shown:?}");
    // Its reason: the buyer's trust reaches the seller through one trade partner (the seller
    // itself, rated well); the relay's, which traded with no one, through the one key it
    // trusts (the buyer, who rated the seller).
    let mine: ReputationView = json_as(&buyer.dir, &["reputation", &seller_peer]);
    assert_eq!(
        (mine.through.partners, mine.through.trusted_keys),
        (1, 0),
        "{mine:?}"
    );
    assert_eq!(
        (rep.through.partners, rep.through.trusted_keys),
        (0, 1),
        "{rep:?}"
    );
    // A score out of range: exit 1 with the reason.
    let out = jangteo(&buyer.dir, &["rate", &trade, "--score", "9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1-5"));
    // The seller cannot rate as someone who was not in the trade: the relay has no such trade.
    let out = jangteo(&r_dir, &["rate", &trade, "--score", "1"]);
    assert_eq!(out.status.code(), Some(1));

    // The seller goes offline. An offer now is sealed into the relay's mailbox...
    drop(seller);
    let second = json_as::<OfferMade>(&buyer.dir, &["offer", &listing]).id;
    let v: TradeView = json_as(&buyer.dir, &["trade", &second]);
    let d = &v
        .history
        .first()
        .expect("the offer in the history")
        .delivery;
    assert_eq!(d.status, DeliveryStatus::Queued, "{v:?}");
    assert_eq!(
        d.relays,
        vec![r_id.peer_id.clone()],
        "held by the relay: {v:?}"
    );
    // An offer is not a completed trade: rating it is refused with the reason.
    let out = jangteo(&buyer.dir, &["rate", &second, "--score", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only a completed trade"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        d.reason.as_deref().expect("reason").contains("mailbox"),
        "{v:?}"
    );
    // ...and reaches the seller when it comes back.
    let (seller, again) = start_node(&s_dir, Some(&relay_addr));
    assert_eq!(again.peer_id, s_id.peer_id);
    state_is(&seller, &second, TradeStateName::Offered);
    wait_for("the buyer to see the offer delivered", || {
        let v: TradeView = json_try_as(&buyer.dir, &["trade", &second])?;
        (v.history.first()?.delivery.status == DeliveryStatus::Delivered).then_some(())
    });
}
