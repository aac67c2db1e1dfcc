//! A fresh node's first copy of the market (`/jangteo/bulk/1`, SPEC §8.9) between in-process
//! nodes (RocksDB, libp2p on loopback): it takes everything from one peer in large pages,
//! then reconciles, and says caught up only after both; a peer that serves forged objects
//! in bulk is refused and banned, nothing of it is stored, and the node still catches up
//! from an honest peer.

use std::time::Duration;

use jangteo_node::ingest::{Ingested, ingest, now_ms};
use jangteo_node::sync::SyncStatus;
use jangteo_node::sync::bootstrap::BulkState;
use jangteo_node::{Node, NodeEvent};
use jangteo_protocol::{Kind, ObjectId, SignedObject};
use jangteo_testnet::search_bench::{generate, sellers};
use jangteo_testnet::{Cluster, Topology, tcp_addr, wait_for};
use rand::SeedableRng;

const WAIT: Duration = Duration::from_secs(60);

/// Signs `n` generated listings and stores them on `node` through the node's ingest path.
fn fill(node: &Node, n: usize, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let keys = sellers(50);
    let now = now_ms();
    for i in 0..n {
        let l = generate(&mut rng, i + seed as usize * 1_000_000, now);
        let o = SignedObject::sign(Kind::Listing, l.encode(), &keys[i % keys.len()]);
        match ingest(&node.store, o.bytes(), Some(Kind::Listing), now, false).expect("ingest") {
            Ingested::Stored { .. } => {}
            other => panic!("not stored: {other:?}"),
        }
    }
}

/// Writes `n` listings with broken signatures straight into `node`'s store, past the
/// ingest path (a lying peer's store); returns their ids.
fn forge(node: &Node, n: usize, seed: u64) -> Vec<ObjectId> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let keys = sellers(50);
    let now = now_ms();
    (0..n)
        .map(|i| {
            let l = generate(&mut rng, i + seed as usize * 1_000_000, now);
            let o = SignedObject::sign(Kind::Listing, l.encode(), &keys[i % keys.len()]);
            let mut envelope = o.envelope().clone();
            envelope.signature[0] ^= 0x55;
            let forged = SignedObject::decode_stored(&envelope.encode()).expect("decode");
            node.store
                .put_listing(&forged, &l, now, false)
                .expect("store forged");
            forged.id()
        })
        .collect()
}

async fn caught_up_holding(node: &Node, n: u64, what: &str) -> jangteo_node::sync::SyncInfo {
    wait_for(WAIT, what, || async {
        let s = node.network.info().await.ok()?.sync;
        (s.status == SyncStatus::CaughtUp && node.store.listing_count().ok()? == n).then_some(s)
    })
    .await
    .unwrap_or_else(|e| panic!("{what}: {e} (holds {:?})", node.store.listing_count()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_node_copies_the_market_from_one_peer_and_is_caught_up_only_after() {
    let mut cluster = Cluster::start(1, Topology::Star).await.expect("cluster");
    fill(&cluster.nodes[0], 3_000, 1);
    let boot = tcp_addr(&cluster.nodes[0]).await.expect("addr");
    let fresh = cluster.add_node(vec![boot]).await.expect("fresh node");
    let node = &cluster.nodes[fresh];
    let mut events = node.subscribe();
    // Every announcement of "caught up" comes when the node holds the whole market.
    let store = node.store.clone();
    let watcher = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(NodeEvent::SyncProgress {
                    status: SyncStatus::CaughtUp,
                    ..
                }) => return store.listing_count().ok(),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return None,
            }
        }
    });
    let info = caught_up_holding(node, 3_000, "the fresh node to hold the market").await;
    let bulk = info.bulk.clone().expect("a bulk copy was tried");
    assert_eq!(bulk.state, BulkState::Done, "{bulk:?}");
    assert_eq!(bulk.stored, 3_000, "{bulk:?}");
    assert_eq!(
        info.objects_fetched, 3_000,
        "reconciliation found nothing left: {info:?}"
    );
    assert!(info.peers_reconciled >= 1, "{info:?}");
    let at_caught_up = tokio::time::timeout(WAIT, watcher)
        .await
        .expect("a caught-up event")
        .expect("watcher");
    assert_eq!(at_caught_up, Some(3_000), "caught up announced early");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_serving_forged_objects_in_bulk_is_banned_and_the_node_catches_up_elsewhere() {
    let mut cluster = Cluster::start(1, Topology::Star).await.expect("cluster");
    fill(&cluster.nodes[0], 1_500, 1);
    let honest = tcp_addr(&cluster.nodes[0]).await.expect("addr");
    let liar = cluster.add_node(vec![]).await.expect("liar");
    let forged = forge(&cluster.nodes[liar], 1_200, 2);
    let liar_id = cluster.nodes[liar].peer_id.clone();
    let liar_addr = tcp_addr(&cluster.nodes[liar]).await.expect("addr");
    let fresh = cluster.add_node(vec![liar_addr]).await.expect("fresh");
    let node = &cluster.nodes[fresh];
    let refused = wait_for(WAIT, "the lying bulk copy to be refused", || async {
        let s = node.network.info().await.ok()?.sync;
        s.bulk.filter(|b| b.state == BulkState::Refused)
    })
    .await
    .expect("refused");
    assert_eq!(refused.stored, 0, "{refused:?}");
    assert_eq!(node.store.listing_count().expect("count"), 0);
    wait_for(WAIT, "the liar to be banned", || async {
        let info = node.network.info().await.ok()?;
        info.banned.contains(&liar_id).then_some(())
    })
    .await
    .expect("banned");

    node.network
        .dial(honest.parse().expect("multiaddr"))
        .await
        .expect("network")
        .expect("dial");
    let info = caught_up_holding(node, 1_500, "the node to catch up from the honest peer").await;
    for id in &forged {
        assert!(
            node.store.object(id).expect("store").is_none(),
            "a forged object was stored"
        );
    }
    assert!(info.peers_reconciled >= 1, "{info:?}");
    cluster.shutdown().await;
}
