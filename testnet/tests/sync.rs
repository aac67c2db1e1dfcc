//! Catch-up sync between in-process nodes (RocksDB, libp2p on loopback): a node that was
//! offline while many listings were posted catches up by range-based set reconciliation,
//! moving little more than the missing objects; two halves of a partition converge when it
//! heals; a node reconciles only the categories it follows.

use std::time::{Duration, Instant};

use jangteo_node::Node;
use jangteo_node::ingest::{Ingested, ingest, now_ms};
use jangteo_protocol::{Kind, SignedObject};
use jangteo_testnet::search_bench::{generate, sellers};
use jangteo_testnet::{Cluster, Topology, tcp_addr, wait_for};
use rand::SeedableRng;

const WAIT: Duration = Duration::from_secs(60);

/// Signs `n` generated listings and stores them on `node` through the node's ingest path
/// (no gossip: as if they had arrived while the other node was away). Returns their bytes.
fn fill(node: &Node, n: usize, seed: u64) -> u64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let keys = sellers(50);
    let now = now_ms();
    let mut bytes = 0;
    for i in 0..n {
        let l = generate(&mut rng, i + seed as usize * 1_000_000, now);
        let o = SignedObject::sign(Kind::Listing, l.encode(), &keys[i % keys.len()]);
        match ingest(&node.store, o.bytes(), Some(Kind::Listing), now, false).expect("ingest") {
            Ingested::Stored { .. } => bytes += o.bytes().len() as u64,
            other => panic!("not stored: {other:?}"),
        }
    }
    bytes
}

async fn holds(node: &Node, n: u64, what: &str) {
    wait_for(WAIT, what, || async {
        (node.store.listing_count().ok()? == n).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{what}: {e} (holds {:?})", node.store.listing_count()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_from_offline_catches_up_moving_little_more_than_what_it_missed() {
    let mut cluster = Cluster::start(2, Topology::Star).await.expect("cluster");
    // Something both already hold.
    fill(&cluster.nodes[0], 200, 1);
    let boot = tcp_addr(&cluster.nodes[0]).await.expect("addr");
    cluster
        .restart(1, vec![boot.clone()])
        .await
        .expect("restart");
    holds(&cluster.nodes[1], 200, "the first 200 at node 1").await;
    let before = cluster.nodes[1].network.info().await.expect("info").sync;

    // Node 1 goes away; 3,000 listings are posted meanwhile.
    cluster.stop(1).await.expect("stop");
    let missing_bytes = fill(&cluster.nodes[0], 3_000, 2);
    let started = Instant::now();
    cluster.start_again(1, 1, vec![boot]).await.expect("back");
    let back = &cluster.nodes[1];
    holds(back, 3_200, "node 1 to catch up").await;
    let took = started.elapsed();
    let info = wait_for(WAIT, "the sync to finish", || async {
        let s = back.network.info().await.ok()?.sync;
        (s.in_progress == 0 && s.to_fetch == 0 && s.peers_reconciled >= 1).then_some(s)
    })
    .await
    .expect("sync state");
    // The node restarted, so its counters cover exactly this catch-up.
    let moved = info.bytes_sent + info.bytes_received;
    eprintln!(
        "caught up 3000 listings in {} ms; moved {moved} bytes for {missing_bytes} bytes of objects ({:.3}x); before: {before:?}",
        took.as_millis(),
        moved as f64 / missing_bytes as f64
    );
    assert!(info.objects_fetched >= 3_000, "{info:?}");
    assert!(
        (moved as f64) <= 1.5 * missing_bytes as f64,
        "moved {moved} bytes for {missing_bytes} bytes of missing objects"
    );
    assert!(info.last_sync_ms_ago.is_some());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_halves_of_a_partition_converge_when_it_heals() {
    let left = Cluster::start(2, Topology::Star).await.expect("left");
    let right = Cluster::start(2, Topology::Star).await.expect("right");
    // Each half trades on its own while apart: posts gossip within the half only.
    for (half, n, tag) in [(&left, 30, "left"), (&right, 50, "right")] {
        for i in 0..n {
            half.nodes[i % 2]
                .listings
                .post(jangteo_node::services::listings::NewListing {
                    title: format!("{tag} listing {i}"),
                    price: 1_000 + i as u64,
                    currency: "KRW".into(),
                    description: None,
                    category: Some(["bikes", "books", "home"][i % 3].into()),
                    condition: None,
                    quantity: None,
                    location: None,
                    moderators: vec![],
                    expires_in_days: None,
                    images: vec![],
                })
                .await
                .expect("post");
        }
    }
    for n in left.nodes.iter() {
        holds(n, 30, "the left half to agree").await;
    }
    for n in right.nodes.iter() {
        holds(n, 50, "the right half to agree").await;
    }
    // Heal: one link between the halves.
    let addr = tcp_addr(&right.nodes[0]).await.expect("addr");
    left.nodes[1]
        .network
        .dial(addr.parse().expect("multiaddr"))
        .await
        .expect("network")
        .expect("dial");
    for (i, n) in left.nodes.iter().chain(right.nodes.iter()).enumerate() {
        holds(n, 80, &format!("node {i} to hold both halves")).await;
    }
    left.shutdown().await;
    right.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reconciles_only_the_categories_it_follows() {
    let mut cluster = Cluster::start(1, Topology::Star).await.expect("cluster");
    let seller = &cluster.nodes[0];
    for (title, cat) in [
        ("Brompton", "bikes"),
        ("Trek", "bikes"),
        ("토지 전집", "books"),
    ] {
        seller
            .listings
            .post(jangteo_node::services::listings::NewListing {
                title: title.into(),
                price: 1_000,
                currency: "KRW".into(),
                description: None,
                category: Some(cat.into()),
                condition: None,
                quantity: None,
                location: None,
                moderators: vec![],
                expires_in_days: None,
                images: vec![],
            })
            .await
            .expect("post");
    }
    let boot = tcp_addr(&cluster.nodes[0]).await.expect("addr");
    let picky = cluster
        .add_node_with(vec![boot], |c| c.follow = vec!["bikes".into()])
        .await
        .expect("node");
    let picky = &cluster.nodes[picky];
    wait_for(WAIT, "the picky node to reconcile", || async {
        let s = picky.network.info().await.ok()?.sync;
        (s.peers_reconciled >= 1 && s.to_fetch == 0 && s.in_progress == 0).then_some(())
    })
    .await
    .expect("reconciled");
    assert_eq!(picky.store.listing_count().expect("count"), 2, "bikes only");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_speak_sync_is_not_counted_as_caught_up() {
    let cluster = Cluster::start(1, Topology::Star).await.expect("cluster");
    let node = &cluster.nodes[0];
    // A plain libp2p peer: gossipsub on the listings topic, no `/jangteo/sync/1`.
    let plain = jangteo_testnet::flood::Flooder::start(
        &[tcp_addr(node).await.expect("addr")],
        Vec::new(),
        1,
    )
    .await
    .expect("plain peer");
    let sync = wait_for(WAIT, "the catch-up attempt with it to end", || async {
        let s = node.network.info().await.ok()?.sync;
        (s.in_progress == 0 && (s.failed_attempts > 0 || s.peers_reconciled > 0)).then_some(s)
    })
    .await
    .expect("attempt ended");
    assert_eq!(sync.peers_reconciled, 0, "nothing was compared: {sync:?}");
    assert_eq!(sync.last_sync_ms_ago, None, "{sync:?}");
    assert_eq!(sync.status, jangteo_node::sync::SyncStatus::NotReconciled);
    // Raw JSON on purpose: the state's name as it travels (`/v1/status`), not its Rust name.
    let status = serde_json::to_value(&sync).expect("json");
    assert_eq!(status["status"], "not_reconciled");
    drop(plain);
    cluster.shutdown().await;
}
