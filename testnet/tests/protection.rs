//! Protection and sharding between in-process nodes (RocksDB, libp2p on loopback): a peer
//! that floods invalid objects is banned while honest listings keep flowing; a node that
//! follows some categories receives only those by gossip.

use std::time::{Duration, Instant};

use jangteo_node::NodeEvent;
use jangteo_node::services::listings::NewListing;
use jangteo_testnet::flood::{Flooder, invalid_objects};
use jangteo_testnet::{Cluster, Topology, tcp_addr, wait_event, wait_for};

const WAIT: Duration = Duration::from_secs(30);

fn item(title: &str, category: &str) -> NewListing {
    NewListing {
        title: title.into(),
        price: 10_000,
        currency: "KRW".into(),
        description: None,
        category: Some(category.into()),
        condition: None,
        quantity: None,
        location: None,
        moderators: vec![],
        expires_in_days: None,
        images: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_banned_while_honest_listings_keep_flowing() {
    // 1 - 0 - 2: the flooder targets the hub, node 0.
    let cluster = Cluster::start(3, Topology::Star).await.expect("cluster");
    let (hub, a, b) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let mut hub_events = hub.subscribe();
    let target = tcp_addr(hub).await.expect("addr");
    let flooder = Flooder::start(&[target], invalid_objects(3_000, 7), 1_000)
        .await
        .expect("flooder");
    let flooder_id = flooder.peer_id.clone();

    // Honest traffic during the flood: every listing from a reaches b through the hub.
    let mut rx_b = b.subscribe();
    let started = Instant::now();
    for i in 0..5 {
        let posted = a
            .listings
            .post(item(&format!("honest kettle {i}"), "home"))
            .await
            .expect("post");
        let id = posted.id.clone();
        wait_event(
            &mut rx_b,
            WAIT,
            |e| matches!(e, NodeEvent::ListingStored { listing } if *listing == id),
        )
        .await
        .expect("honest listing crosses the hub during the flood");
    }
    let honest_ms = started.elapsed().as_millis();

    // The hub bans the flooder.
    let f = flooder_id.clone();
    wait_event(
        &mut hub_events,
        WAIT,
        move |e| matches!(e, NodeEvent::PeerBanned { peer } if *peer == f),
    )
    .await
    .expect("the flooder is banned");
    let info = wait_for(WAIT, "the flooder disconnected", || async {
        let info = hub.network.info().await.ok()?;
        (!info.peers.iter().any(|p| p.peer_id == flooder_id)).then_some(info)
    })
    .await
    .expect("disconnected");
    assert!(info.banned.contains(&flooder_id));
    let stats = flooder.stop().await.expect("stop");
    assert!(stats.sent >= 20, "the flooder sent {} objects", stats.sent);
    // Nothing invalid was stored: the hub holds exactly the five honest listings.
    assert_eq!(hub.store.listing_count().expect("count"), 5);
    // The hub still answers and still relays after the ban.
    let mut rx_b = b.subscribe();
    let last = a
        .listings
        .post(item("after the ban", "home"))
        .await
        .expect("post");
    wait_event(
        &mut rx_b,
        WAIT,
        |e| matches!(e, NodeEvent::ListingStored { listing } if *listing == last.id),
    )
    .await
    .expect("still relaying");
    eprintln!("five honest listings crossed the hub during the flood in {honest_ms} ms");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_following_some_categories_gets_only_those_by_gossip() {
    let mut cluster = Cluster::start(2, Topology::Star).await.expect("cluster");
    let hub = tcp_addr(&cluster.nodes[0]).await.expect("addr");
    let bikes_only = cluster
        .add_node_with(vec![hub], |c| c.follow = vec!["bikes".into()])
        .await
        .expect("node");
    let info = cluster.nodes[bikes_only]
        .network
        .info()
        .await
        .expect("info");
    assert_eq!(info.following, vec!["bikes"]);
    let (seller, all, picky) = (
        &cluster.nodes[1],
        &cluster.nodes[0],
        &cluster.nodes[bikes_only],
    );
    wait_for(WAIT, "the picky node to have a gossip peer", || async {
        (picky.network.info().await.ok()?.gossip_peers > 0).then_some(())
    })
    .await
    .expect("gossip peer");
    let mut rx_all = all.subscribe();
    let mut rx_picky = picky.subscribe();
    let book = seller
        .listings
        .post(item("토지 전집", "books"))
        .await
        .expect("post");
    let bike = seller
        .listings
        .post(item("Brompton", "bikes"))
        .await
        .expect("post");
    for rx in [&mut rx_all, &mut rx_picky] {
        let id = bike.id.clone();
        wait_event(
            rx,
            WAIT,
            move |e| matches!(e, NodeEvent::ListingStored { listing } if *listing == id),
        )
        .await
        .expect("the bike reaches both");
    }
    let id = book.id.clone();
    wait_for(
        WAIT,
        "the book at the node following everything",
        || async { all.listings.show(&id).ok().map(|_| ()) },
    )
    .await
    .expect("the book reaches the node following everything");
    // The book was posted before the bike on the same links: had it been sent to the picky
    // node, it would have arrived first.
    assert!(
        picky.listings.show(&book.id).is_err(),
        "the picky node got a book"
    );
    cluster.shutdown().await;
}
