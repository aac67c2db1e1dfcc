//! End-to-end NAT traversal: a seller and a buyer that listen on no address at all (so
//! neither can be dialed directly, as behind a NAT without port forwarding) reach each other
//! through a community relay's circuit relay v2 and complete a trade, with photos.

mod common;

use common::trade_state_is as state_is;
use common::{jangteo, json_ok, json_try, start_node_args, start_node_with, tcp_addr, wait_for};

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
    let status = json_ok(&seller.dir, &["status"]);
    assert_eq!(status["reachability"], "private");
    assert_eq!(status["relayed_addrs"].as_array().map(Vec::len), Some(1));

    // The seller posts with a photo; the buyer finds it through the relay.
    let photo: Vec<u8> = (0u32..300_000).map(|i| (i * 7 + i / 13) as u8).collect();
    let file = tmp.path().join("bike.jpg");
    std::fs::write(&file, &photo).expect("write");
    let posted = json_ok(
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
    let listing = posted["id"].as_str().expect("id").to_owned();
    wait_for("the listing at the buyer", || {
        let hits = json_try(&buyer.dir, &["search", "자전거"])?;
        (hits.as_array()?.len() == 1).then_some(())
    });

    // The offer goes straight to the seller over a relayed connection, not to a mailbox.
    let offer = json_ok(&buyer.dir, &["offer", &listing]);
    let trade = offer["id"].as_str().expect("trade").to_owned();
    state_is(&seller.dir, &trade, "offered");
    let seller_peer = s_id.peer_id.as_str();
    let peers = json_ok(&buyer.dir, &["peers"]);
    let via = peers
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["peer_id"] == seller_peer)
        .expect("the buyer is connected to the seller");
    assert!(
        via["addrs"]
            .as_array()
            .expect("addrs")
            .iter()
            .all(|a| a.as_str().is_some_and(|a| a.contains("/p2p-circuit"))),
        "the connection to the seller is relayed: {via}"
    );
    // The buyer records the delivery when the seller's answer arrives, which may be just
    // after the seller shows the offer.
    wait_for("the buyer to see its offer delivered", || {
        let at_buyer = json_try(&buyer.dir, &["trade", &trade])?;
        (at_buyer["history"][0]["delivery"]["status"] == "delivered").then_some(())
    });

    // The photo crosses the relay too, verified chunk by chunk.
    let shown = json_ok(&buyer.dir, &["show", &listing]);
    let image = shown["images"][0].as_str().expect("image").to_owned();
    let out = tmp.path().join("got.jpg");
    json_ok(
        &buyer.dir,
        &["blob", "get", &image, "--out", out.to_str().expect("path")],
    );
    assert_eq!(std::fs::read(&out).expect("read"), photo);

    // And the trade completes.
    json_ok(&seller.dir, &["accept", &trade]);
    state_is(&buyer.dir, &trade, "accepted");
    json_ok(&buyer.dir, &["paid", &trade]);
    state_is(&seller.dir, &trade, "paid");
    json_ok(&seller.dir, &["shipped", &trade]);
    state_is(&buyer.dir, &trade, "shipped");
    json_ok(&buyer.dir, &["received", &trade]);
    state_is(&seller.dir, &trade, "completed");
    // Nothing was left in the relay's mailboxes: every message went over the circuit.
    let relay_status = json_ok(&r_dir, &["status"]);
    assert_eq!(relay_status["mailbox"]["items"], 0, "{relay_status}");
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
    let posted = json_ok(
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
    let listing = posted["id"].as_str().expect("id").to_owned();
    // The relay keeps the listing and mirrors its photo.
    wait_for("the relay to hold the photo", || {
        (json_try(&r_dir, &["status"])?["blobs"] == 1).then_some(())
    });
    drop(seller);

    // A buyer arriving later, also behind NAT, finds the listing and sees the photo...
    let (buyer, _) = start_node_args(&b_dir, &["--no-listen", "--bootstrap", &relay_addr]);
    wait_for("the listing at the buyer", || {
        let hits = json_try(&buyer.dir, &["search", "조명"])?;
        (hits.as_array()?.len() == 1).then_some(())
    });
    let shown = json_ok(&buyer.dir, &["show", &listing]);
    let image = shown["images"][0].as_str().expect("image").to_owned();
    let out = tmp.path().join("got.jpg");
    json_ok(
        &buyer.dir,
        &["blob", "get", &image, "--out", out.to_str().expect("path")],
    );
    assert_eq!(std::fs::read(&out).expect("read"), photo);
    // ...and reaches the offline seller's mailbox on the relay.
    let offer = json_ok(&buyer.dir, &["offer", &listing]);
    let trade = offer["id"].as_str().expect("trade").to_owned();
    let v = wait_for("the offer held in the relay's mailbox", || {
        let v = json_try(&buyer.dir, &["trade", &trade])?;
        v["history"][0]["delivery"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("mailbox"))
            .then_some(v)
    });
    assert_eq!(v["history"][0]["delivery"]["status"], "queued", "{v}");
    assert_eq!(json_ok(&r_dir, &["status"])["mailbox"]["items"], 1);
}
