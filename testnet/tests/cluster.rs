//! In-process multi-node tests: real nodes (RocksDB, libp2p TCP on loopback) in one process.

use std::time::Duration;

use jangteo_node::NodeEvent;
use jangteo_node::services::listings::NewListing;
use jangteo_protocol::{Envelope, Kind};
use jangteo_testnet::{Cluster, Topology, tcp_addr, wait_event, wait_for};

const WAIT: Duration = Duration::from_secs(20);

fn item(title: &str, price: u64) -> NewListing {
    NewListing {
        title: title.into(),
        price,
        currency: "KRW".into(),
        description: Some("pickup near Hongdae station".into()),
        category: Some("bikes".into()),
        condition: Some("good".into()),
        quantity: None,
        location: None,
        moderators: vec![],
        expires_in_days: None,
        images: vec![],
    }
}

fn is_listing(id: &str) -> impl FnMut(&NodeEvent) -> bool + '_ {
    move |e| matches!(e, NodeEvent::ListingStored { listing } if listing == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_reaches_all_five_nodes_of_a_chain() {
    let cluster = Cluster::start(5, Topology::Chain).await.expect("cluster");
    let mut rxs: Vec<_> = cluster.nodes.iter().map(|n| n.subscribe()).collect();
    let posted = cluster.nodes[0]
        .listings
        .post(item("중고 자전거를 팝니다", 150_000))
        .await
        .expect("post");
    for (i, rx) in rxs.iter_mut().enumerate().skip(1) {
        wait_event(rx, WAIT, is_listing(&posted.id))
            .await
            .unwrap_or_else(|e| panic!("node {i}: {e}"));
        let seen = cluster.nodes[i].listings.show(&posted.id).expect("held");
        assert_eq!(seen.title, "중고 자전거를 팝니다");
        assert_eq!(seen.seller, cluster.nodes[0].peer_id);
        assert_eq!(seen.price, 150_000);
    }
    // A new version replaces the old one everywhere.
    let mut rxs: Vec<_> = cluster.nodes.iter().map(|n| n.subscribe()).collect();
    let updated = cluster.nodes[0]
        .listings
        .update(
            &posted.id,
            jangteo_node::services::listings::ListingUpdate {
                price: Some(120_000),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.seq, 2);
    for (i, rx) in rxs.iter_mut().enumerate().skip(1) {
        wait_event(rx, WAIT, is_listing(&posted.id))
            .await
            .unwrap_or_else(|e| panic!("node {i}: {e}"));
        let seen = cluster.nodes[i].listings.show(&posted.id).expect("held");
        assert_eq!((seen.seq, seen.price), (2, 120_000), "node {i}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_listing_is_neither_stored_nor_forwarded_and_costs_its_sender() {
    // a - b - c: a gossips a tampered listing; b must refuse it and not pass it to c.
    let cluster = Cluster::start(3, Topology::Chain).await.expect("cluster");
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);

    // Take a valid listing of a's, change the price in the signed body, keep the signature.
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) = jangteo_node::keys::load_or_create(dir.path()).expect("key");
    let good = jangteo_protocol::SignedObject::sign(
        Kind::Listing,
        {
            let now = jangteo_node::ingest::now_ms();
            jangteo_protocol::Listing {
                stamp: None,
                nonce: [5; 16],
                seq: 1,
                created_at: now,
                updated_at: now,
                expires_at: now + 86_400_000,
                status: jangteo_protocol::ListingStatus::Active,
                title: "forged kettle".into(),
                description: String::new(),
                category: "home".into(),
                condition: None,
                price: 1000,
                currency: "KRW".into(),
                quantity: 1,
                images: vec![],
                location: None,
                moderators: vec![],
            }
            .encode()
        },
        &key,
    );
    let mut env = Envelope::decode(good.bytes()).expect("decode");
    let listing_id = jangteo_protocol::Listing::decode(&env.body)
        .expect("body")
        .id(&env.author)
        .to_hex();
    let pos = env.body.len() - 1;
    env.body[pos] ^= 1;
    let forged = env.encode();
    // An oversize object as well.
    let oversize = vec![0u8; jangteo_protocol::MAX_OBJECT_BYTES + 10];

    let mut rx_b = b.subscribe();
    a.network
        .publish(Kind::Listing, forged)
        .await
        .expect("network")
        .expect("published");
    let _ = a
        .network
        .publish(Kind::Listing, oversize)
        .await
        .expect("network");
    // Then a valid one: once it reached c, the forged one (sent first on the same links)
    // would have too if b had forwarded it.
    let mut rx_c = c.subscribe();
    let honest = a
        .listings
        .post(item("honest bicycle", 90_000))
        .await
        .expect("post");
    wait_event(&mut rx_c, WAIT, is_listing(&honest.id))
        .await
        .expect("honest listing reaches c");

    assert!(
        b.listings.show(&listing_id).is_err(),
        "b stored a forged listing"
    );
    assert!(
        c.listings.show(&listing_id).is_err(),
        "c got a forged listing"
    );
    while let Ok(ev) = rx_b.try_recv() {
        assert_ne!(
            ev,
            NodeEvent::ListingStored {
                listing: listing_id.clone()
            }
        );
    }
    // b's gossipsub score of a dropped below zero.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_late_gets_what_it_missed() {
    let mut cluster = Cluster::start(2, Topology::Star).await.expect("cluster");
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            cluster.nodes[i % 2]
                .listings
                .post(item(&format!("late item {i}"), 1000 + i as u64))
                .await
                .expect("post")
                .id,
        );
    }
    let retracted = cluster.nodes[0]
        .listings
        .retract(&ids[0])
        .await
        .expect("retract");
    assert_eq!(retracted.status.as_str(), "retracted");
    let boot = tcp_addr(&cluster.nodes[1]).await.expect("addr");
    let late = cluster.add_node(vec![boot]).await.expect("late node");
    let mut rx = cluster.nodes[late].subscribe();
    wait_event(&mut rx, WAIT, |e| matches!(e, NodeEvent::Synced { .. }))
        .await
        .expect("synced");
    for id in &ids {
        let v = cluster.nodes[late]
            .listings
            .show(id)
            .expect("late node holds every listing");
        if *id == ids[0] {
            assert_eq!(
                (v.status.as_str(), v.seq),
                ("retracted", 2),
                "the retraction, not the old version"
            );
        }
    }
    // Searchable once the indexer caught up; the retracted one is not in results.
    let late_node = &cluster.nodes[late];
    let open = wait_for(
        WAIT,
        "the late node's index to hold the 4 open listings",
        || async {
            let hits = late_node.listings.search(&Default::default()).ok()?;
            (hits.len() == 4).then_some(hits)
        },
    )
    .await
    .expect("search");
    assert!(
        open.iter().all(|v| v.id != ids[0]),
        "retracted listing is not in results"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_cross_over_quic() {
    use jangteo_node::{Node, NodeConfig};
    let quic = vec!["/ip4/127.0.0.1/udp/0/quic-v1".to_string()];
    let (d1, d2) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let mut c1 = NodeConfig::new(d1.path());
    c1.listing_stamp_bits = jangteo_node::TEST_NETWORK_STAMP_BITS;
    c1.listen = quic.clone();
    c1.mdns = false;
    let n1 = Node::start(c1).await.expect("node 1");
    let addr = wait_for(WAIT, "a QUIC listen address", || async {
        n1.network
            .info()
            .await
            .ok()?
            .listen_addrs
            .into_iter()
            .find(|a| a.contains("/quic-v1/"))
    })
    .await
    .expect("addr");
    let mut c2 = NodeConfig::new(d2.path());
    c2.listing_stamp_bits = jangteo_node::TEST_NETWORK_STAMP_BITS;
    c2.listen = quic;
    c2.mdns = false;
    c2.bootstrap = vec![addr];
    let n2 = Node::start(c2).await.expect("node 2");
    for n in [&n1, &n2] {
        wait_for(WAIT, "a gossip peer", || async {
            (n.network.info().await.ok()?.gossip_peers > 0).then_some(())
        })
        .await
        .expect("peer");
    }
    let info = n2.network.info().await.expect("info");
    assert!(
        info.peers[0].addrs.iter().all(|a| a.contains("/quic-v1")),
        "{:?}",
        info.peers
    );
    let mut rx = n2.subscribe();
    let posted = n1
        .listings
        .post(item("自転車 over QUIC", 8_000))
        .await
        .expect("post");
    wait_event(&mut rx, WAIT, is_listing(&posted.id))
        .await
        .expect("arrives over QUIC");
    assert_eq!(
        n2.listings.show(&posted.id).expect("held").seller,
        n1.peer_id
    );
    n1.shutdown().await;
    n2.shutdown().await;
}
