//! End-to-end NAT traversal: a seller and a buyer that listen on no address at all (so
//! neither can be dialed directly, as behind a NAT without port forwarding) reach each other
//! through a community relay's circuit relay v2 and complete a trade, with photos.

mod common;

use common::trade_state_is as state_is;
use common::{jangteo, json_as, json_try_as, start_node_args, start_node_with, tcp_addr, wait_for};
use jangteo_node::api::types::{
    BlobView, DeliveryStatus, ListingRef, ListingView, OfferMade, PeerView, Reachability,
    StatusView, TradeRef, TradeStateName, TradeView,
};

#[test]
fn two_nodes_that_cannot_dial_each_other_trade_through_a_relay() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (r_dir, s_dir, b_dir) = (
        tmp.path().join("relay"),
        tmp.path().join("seller"),
        tmp.path().join("buyer"),
    );
    let (_relay, r_id) = start_node_with(&r_dir, None, &["--relay"]);
    let relay_addr = tcp_addr(&r_id);
    let relay_peer = r_id.peer_id.clone();
    // Both listen nowhere: their only addresses are through the relay.
    let (seller, s_id) = start_node_args(&s_dir, &["--no-listen", "--bootstrap", &relay_addr]);
    let (buyer, b_id) = start_node_args(&b_dir, &["--no-listen", "--bootstrap", &relay_addr]);
    for id in [&s_id, &b_id] {
        for a in &id.addrs {
            assert!(
                a.contains("/p2p-circuit") && a.contains(&relay_peer),
                "only relayed addresses, got {a}"
            );
        }
    }
    let status: StatusView = json_as(&seller.dir, &["status"]);
    assert_eq!(status.reachability, Reachability::Private);
    assert_eq!(status.relayed_addrs.len(), 1);

    // The seller posts with a photo; the buyer finds it through the relay.
    let photo: Vec<u8> = (0u32..300_000).map(|i| (i * 7 + i / 13) as u8).collect();
    let file = tmp.path().join("bike.jpg");
    std::fs::write(&file, &photo).expect("write");
    let posted: ListingRef = json_as(
        &seller.dir,
        &[
            "post",
            "--title",
            "접이식 자전거",
            "--price",
            "300000",
            "--currency",
            "KRW",
            "--image",
            file.to_str().expect("path"),
        ],
    );
    let listing = posted.id;
    wait_for("the listing at the buyer", || {
        let hits: Vec<ListingView> = json_try_as(&buyer.dir, &["search", "자전거"])?;
        (hits.len() == 1).then_some(())
    });

    // The offer goes straight to the seller over a relayed connection, not to a mailbox.
    let trade = json_as::<OfferMade>(&buyer.dir, &["offer", &listing]).id;
    state_is(&seller.dir, &trade, TradeStateName::Offered);
    let seller_peer = s_id.peer_id.as_str();
    let peers: Vec<PeerView> = json_as(&buyer.dir, &["peers"]);
    let via = peers
        .iter()
        .find(|p| p.peer_id == seller_peer)
        .expect("the buyer is connected to the seller");
    assert!(
        via.addrs.iter().all(|a| a.contains("/p2p-circuit")),
        "the connection to the seller is relayed: {via:?}"
    );
    // The buyer records the delivery when the seller's answer arrives, which may be just
    // after the seller shows the offer.
    wait_for("the buyer to see its offer delivered", || {
        let at_buyer: TradeView = json_try_as(&buyer.dir, &["trade", &trade])?;
        (at_buyer.history.first()?.delivery.status == DeliveryStatus::Delivered).then_some(())
    });

    // The photo crosses the relay too, verified chunk by chunk.
    let shown: ListingView = json_as(&buyer.dir, &["show", &listing]);
    let image = shown.images.first().expect("image").to_owned();
    let out = tmp.path().join("got.jpg");
    json_as::<BlobView>(
        &buyer.dir,
        &["blob", "get", &image, "--out", out.to_str().expect("path")],
    );
    assert_eq!(std::fs::read(&out).expect("read"), photo);

    // And the trade completes.
    json_as::<TradeRef>(&seller.dir, &["accept", &trade]);
    state_is(&buyer.dir, &trade, TradeStateName::Accepted);
    json_as::<TradeRef>(&buyer.dir, &["paid", &trade]);
    state_is(&seller.dir, &trade, TradeStateName::Paid);
    json_as::<TradeRef>(&seller.dir, &["shipped", &trade]);
    state_is(&buyer.dir, &trade, TradeStateName::Shipped);
    json_as::<TradeRef>(&buyer.dir, &["received", &trade]);
    state_is(&seller.dir, &trade, TradeStateName::Completed);
    // Nothing was left in the relay's mailboxes: every message went over the circuit.
    let relay_status: StatusView = json_as(&r_dir, &["status"]);
    assert_eq!(relay_status.mailbox.items, 0, "{relay_status:?}");
    assert_eq!(jangteo(&buyer.dir, &["status"]).status.code(), Some(0));
}

#[test]
fn a_listing_with_photos_stays_reachable_after_its_seller_behind_nat_goes_offline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (r_dir, s_dir, b_dir) = (
        tmp.path().join("relay"),
        tmp.path().join("seller"),
        tmp.path().join("buyer"),
    );
    let (_relay, r_id) = start_node_with(&r_dir, None, &["--relay"]);
    let relay_addr = tcp_addr(&r_id);
    let (seller, _) = start_node_args(&s_dir, &["--no-listen", "--bootstrap", &relay_addr]);
    let photo: Vec<u8> = (0u32..400_000).map(|i| (i * 31 + i / 7) as u8).collect();
    let file = tmp.path().join("lamp.jpg");
    std::fs::write(&file, &photo).expect("write");
    let posted: ListingRef = json_as(
        &seller.dir,
        &[
            "post",
            "--title",
            "빈티지 스탠드 조명",
            "--price",
            "45000",
            "--currency",
            "KRW",
            "--image",
            file.to_str().expect("path"),
        ],
    );
    let listing = posted.id;
    // The relay keeps the listing and mirrors its photo.
    wait_for("the relay to hold the photo", || {
        let s: StatusView = json_try_as(&r_dir, &["status"])?;
        (s.blobs == 1).then_some(())
    });
    drop(seller);

    // A buyer arriving later, also behind NAT, finds the listing and sees the photo...
    let (buyer, _) = start_node_args(&b_dir, &["--no-listen", "--bootstrap", &relay_addr]);
    wait_for("the listing at the buyer", || {
        let hits: Vec<ListingView> = json_try_as(&buyer.dir, &["search", "조명"])?;
        (hits.len() == 1).then_some(())
    });
    let shown: ListingView = json_as(&buyer.dir, &["show", &listing]);
    let image = shown.images.first().expect("image").to_owned();
    let out = tmp.path().join("got.jpg");
    json_as::<BlobView>(
        &buyer.dir,
        &["blob", "get", &image, "--out", out.to_str().expect("path")],
    );
    assert_eq!(std::fs::read(&out).expect("read"), photo);
    // ...and reaches the offline seller's mailbox on the relay.
    let trade = json_as::<OfferMade>(&buyer.dir, &["offer", &listing]).id;
    let v = wait_for("the offer held in the relay's mailbox", || {
        let v: TradeView = json_try_as(&buyer.dir, &["trade", &trade])?;
        v.history
            .first()?
            .delivery
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("mailbox"))
            .then_some(v)
    });
    assert_eq!(
        v.history.first().expect("the offer").delivery.status,
        DeliveryStatus::Queued,
        "{v:?}"
    );
    assert_eq!(json_as::<StatusView>(&r_dir, &["status"]).mailbox.items, 1);
}
