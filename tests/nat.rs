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
    // Each side shows the other through the relay's circuit: one of them dialed, the other
    // took the circuit in (which arrives from a bare `/p2p/<peer>` and is shown as the
    // relay it came through).
    for (node, other) in [(&buyer, &s_id), (&seller, &b_id)] {
        let peers: Vec<PeerView> = json_as(&node.dir, &["peers"]);
        let via = peers
            .iter()
            .find(|p| p.peer_id == other.peer_id)
            .expect("the buyer and the seller are connected");
        let circuit = format!("/p2p/{relay_peer}/p2p-circuit/p2p/{}", other.peer_id);
        assert!(
            !via.addrs.is_empty() && via.addrs.iter().all(|a| a.ends_with(&circuit)),
            "the connection is relayed through {relay_peer}: {via:?}"
        );
    }
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

/// Issue 16 part 3, behind real NAT: a relay on the public bridge and two home nodes, each in
/// its own network namespace behind its own NAT router (nftables masquerade, nothing let in
/// unasked). Both learn they are private (AutoNAT) and reserve on the relay; the buyer's offer
/// reaches the seller over a circuit, DCUtR upgrades it to a direct connection through both
/// NATs, and the trade goes on. Needs root, iproute2 and nftables (`.ci/deps` installs
/// nftables): where namespaces cannot be made, the test fails saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_behind_real_nat_punch_a_hole_and_trade_directly() {
    use std::sync::Arc;
    use std::time::Duration;

    use jangteo_node::api::types::{HolePunchOutcome, NewOffer, TradeAction, TradeActionName};
    use jangteo_testnet::holepunch::{follow_events, outcome_about, wait_reserved};
    use jangteo_testnet::netns::{self, Netem};
    use jangteo_testnet::procs::ProcNet;

    if let Err(why) = netns::nat_available() {
        panic!(
            "this test needs network namespaces and nftables (run it as root with iproute2 \
             and the nftables package; .ci/deps installs it): {why}"
        );
    }
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_jangteo"));
    let netem = Netem {
        delay_ms: 0,
        loss_pct: 0.0,
    };
    let mut net = ProcNet::with_netns(bin, Some(netem)).expect("namespaces");
    net.add_with(&[], &["--relay"]).await.expect("relay");
    let relay = vec![net.nodes[0].addr.clone()];
    let seller = net.add_behind_nat(&relay, &[]).await.expect("seller");
    let buyer = net.add_behind_nat(&relay, &[]).await.expect("buyer");
    let (s_api, b_api) = (
        net.nodes[seller].api().expect("api").clone(),
        net.nodes[buyer].api().expect("api").clone(),
    );
    let (s_seen, b_seen) = (Arc::default(), Arc::default());
    let followers = [
        follow_events(&s_api, Arc::clone(&s_seen))
            .await
            .expect("events"),
        follow_events(&b_api, Arc::clone(&b_seen))
            .await
            .expect("events"),
    ];
    // Each home node listens on its private LAN address only, behind a router of its own.
    for i in [seller, buyer] {
        assert!(
            net.nodes[i].addr.starts_with("/ip4/10."),
            "{}",
            net.nodes[i].addr
        );
        assert!(net.router_name(i).is_some(), "node {i} has no router");
    }
    wait_reserved(&s_api, "the seller")
        .await
        .expect("seller reserved");
    wait_reserved(&b_api, "the buyer")
        .await
        .expect("buyer reserved");

    let listing = s_api
        .post_listing("NAT 너머 자전거", 120_000, 1)
        .await
        .expect("post");
    jangteo_testnet::wait_for(
        Duration::from_secs(60),
        "the listing at the buyer",
        || async { b_api.has_listing(&listing).await.ok()?.then_some(()) },
    )
    .await
    .expect("listing");
    let trade = b_api
        .offer(&NewOffer {
            listing,
            ..NewOffer::default()
        })
        .await
        .expect("offer")
        .id;
    let (s_peer, b_peer) = (
        net.nodes[seller].peer_id.clone(),
        net.nodes[buyer].peer_id.clone(),
    );
    let (at_seller, at_buyer) =
        jangteo_testnet::wait_for(Duration::from_secs(60), "hole punching to end", || async {
            let at_seller = outcome_about(&s_seen, &b_peer);
            let at_buyer = outcome_about(&b_seen, &s_peer);
            (at_seller.1.is_some() || at_buyer.1.is_some()).then_some((at_seller, at_buyer))
        })
        .await
        .expect("a hole punching outcome");
    assert!(
        at_seller.0 || at_buyer.0,
        "the connection was not relayed first"
    );
    let direct = [&at_seller, &at_buyer]
        .iter()
        .find_map(|o| o.1.clone().filter(|p| p.0 == HolePunchOutcome::Direct));
    let Some((_, ms, _)) = direct else {
        panic!("hole punching failed: seller saw {at_seller:?}, buyer saw {at_buyer:?}");
    };
    println!("hole punched through two NATs in {ms:?} ms");

    // The buyer now holds a connection to the seller that is not through the relay: its
    // address is the seller's router's public address.
    let peers = b_api.peers().await.expect("peers");
    let to_seller = peers
        .iter()
        .find(|p| p.peer_id == s_peer)
        .expect("connected to the seller");
    assert!(
        to_seller.addrs.iter().any(|a| !a.contains("/p2p-circuit")),
        "no direct connection to the seller: {to_seller:?}"
    );

    // The trade flows.
    jangteo_testnet::wait_for(
        Duration::from_secs(30),
        "the offer at the seller",
        || async { s_api.trade(&trade).await.ok()?.map(|_| ()) },
    )
    .await
    .expect("offer delivered");
    s_api
        .act(&trade, TradeActionName::Accept, &TradeAction::default())
        .await
        .expect("accept");
    jangteo_testnet::wait_for(
        Duration::from_secs(30),
        "the accept at the buyer",
        || async {
            let v = b_api.trade(&trade).await.ok()??;
            (v.state == jangteo_node::api::types::TradeStateName::Accepted).then_some(())
        },
    )
    .await
    .expect("accepted at the buyer");

    for f in followers {
        f.abort();
    }
    let names: Vec<String> = [seller, buyer]
        .into_iter()
        .filter_map(|i| net.router_name(i))
        .collect();
    net.shutdown().await.expect("shutdown");
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    let left = String::from_utf8_lossy(&left.stdout);
    for name in names {
        assert!(
            !left
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&name)),
            "router namespace {name} left behind"
        );
    }
}
