//! End-to-end trades: three real `jangteo` processes (a relay, a seller, a buyer) on
//! loopback, driven only through the CLI.

mod common;

use std::time::Instant;

use common::{
    NodeProc, jangteo, json_ok, json_try, start_node, start_node_with, tcp_addr, wait_for,
};
use jangteo_node::api::types::TradeView;
use serde_json::Value;

fn state_is(node: &NodeProc, trade: &str, state: &str) -> TradeView {
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

    let listing = json_ok(
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
    let listing = listing["id"].as_str().expect("id").to_owned();
    wait_for("the listing at the buyer", || {
        let hits = json_try(&buyer.dir, &["search", "brompton"])?;
        (hits.as_array()?.len() == 1).then_some(())
    });

    let started = Instant::now();
    let offer = json_ok(
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
    assert_eq!(offer["state"], "offered");
    let trade = offer["id"].as_str().expect("trade id").to_owned();
    let at_seller = state_is(&seller, &trade, "offered");
    assert_eq!(at_seller.role.as_str(), "seller");
    assert_eq!(at_seller.price, 1_400_000);
    assert_eq!(
        json_ok(&seller.dir, &["accept", &trade])["state"],
        "accepted"
    );
    state_is(&buyer, &trade, "accepted");
    assert_eq!(
        json_ok(&buyer.dir, &["paid", &trade, "--reference", "KB 1234-56"])["state"],
        "paid"
    );
    state_is(&seller, &trade, "paid");
    assert_eq!(
        json_ok(&seller.dir, &["shipped", &trade])["state"],
        "shipped"
    );
    state_is(&buyer, &trade, "shipped");
    assert_eq!(
        json_ok(&buyer.dir, &["received", &trade])["state"],
        "completed"
    );
    let done = state_is(&seller, &trade, "completed");
    eprintln!(
        "a whole trade took {} ms across processes (CLI round trips and polling included)",
        started.elapsed().as_millis()
    );
    let kinds: Vec<&str> = done.history.iter().map(|h| h.kind.as_str()).collect();
    assert_eq!(kinds, ["offer", "accept", "paid", "shipped", "received"]);
    // Every message the buyer sent shows as delivered (the buyer records it when the
    // seller's answer arrives, which may be just after the seller shows the new state).
    wait_for("every message the buyer sent to show as delivered", || {
        let at_buyer = json_try(&buyer.dir, &["trade", &trade])?;
        let mine: Vec<&Value> = at_buyer["history"]
            .as_array()?
            .iter()
            .filter(|h| h["role"] == "buyer")
            .collect();
        (!mine.is_empty() && mine.iter().all(|h| h["delivery"]["status"] == "delivered"))
            .then_some(())
    });
    // The accept reserved one of two units.
    assert_eq!(json_ok(&seller.dir, &["show", &listing])["quantity"], 1);
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
    let trades = json_ok(&seller.dir, &["trades"]);
    assert_eq!(trades[0]["id"], trade.as_str());
    assert_eq!(trades[0]["role"], "seller");

    // The buyer rates the seller. The relay, a third node whose user knows the buyer, sees
    // the seller's reputation grow.
    let (seller_peer, buyer_peer) = (s_id.peer_id.clone(), b_id.peer_id.clone());
    let before = json_ok(&r_dir, &["reputation", &seller_peer]);
    assert_eq!(before["attestations"], 0);
    assert_eq!(before["score"], 0.0);
    json_ok(&r_dir, &["trust", &buyer_peer]);
    let rated = json_ok(
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
    assert_eq!(rated["about"], seller_peer.as_str());
    assert_eq!(rated["id"].as_str().map(str::len), Some(64));
    let rep = wait_for("the rating at the relay", || {
        let v = json_try(&r_dir, &["reputation", &seller_peer])?;
        (v["attestations"] == 1).then_some(v)
    });
    assert_eq!(rep["peer_id"], seller_peer.as_str());
    assert_eq!(rep["completed_trades"], 1);
    assert!(rep["score"].as_f64() > Some(0.0), "{rep}");
    assert!(rep["confidence"].as_f64() > Some(0.0), "{rep}");
    // The relay's search shows the seller's trust, and sorts by it.
    let hits = json_ok(&r_dir, &["search", "brompton", "--sort", "trust"]);
    assert_eq!(hits[0]["seller"], seller_peer.as_str(), "{hits}");
    assert!(hits[0]["seller_score"].as_f64() > Some(0.0), "{hits}");
    assert!(hits[0]["seller_confidence"].as_f64() > Some(0.0), "{hits}");
    // The buyer's own view of the seller (its completed trade seeds it) shows next to the listing.
    let shown = json_ok(&buyer.dir, &["show", &listing]);
    assert!(shown["seller_score"].as_f64() > Some(0.0), "{shown}");
    // A score out of range: exit 1 with the reason.
    let out = jangteo(&buyer.dir, &["rate", &trade, "--score", "9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1-5"));
    // The seller cannot rate as someone who was not in the trade: the relay has no such trade.
    let out = jangteo(&r_dir, &["rate", &trade, "--score", "1"]);
    assert_eq!(out.status.code(), Some(1));

    // The seller goes offline. An offer now is sealed into the relay's mailbox...
    drop(seller);
    let second = json_ok(&buyer.dir, &["offer", &listing]);
    let second = second["id"].as_str().expect("id").to_owned();
    let v = json_ok(&buyer.dir, &["trade", &second]);
    let d = &v["history"][0]["delivery"];
    assert_eq!(d["status"], "queued", "{v}");
    // An offer is not a completed trade: rating it is refused with the reason.
    let out = jangteo(&buyer.dir, &["rate", &second, "--score", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only a completed trade"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        d["reason"].as_str().expect("reason").contains("mailbox"),
        "{v}"
    );
    // ...and reaches the seller when it comes back.
    let (seller, again) = start_node(&s_dir, Some(&relay_addr));
    assert_eq!(again.peer_id, s_id.peer_id);
    state_is(&seller, &second, "offered");
    wait_for("the buyer to see the offer delivered", || {
        (json_try(&buyer.dir, &["trade", &second])?["history"][0]["delivery"]["status"]
            == "delivered")
            .then_some(())
    });
}
