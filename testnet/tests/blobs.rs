//! Blobs between in-process nodes (RocksDB, libp2p on loopback): fetch and verify, a lying
//! peer caught at its first bad chunk, listings naming their images.

use std::time::Duration;

use jangteo_node::services::blobs::{BlobServiceError, Blobs};
use jangteo_node::services::listings::NewListing;
use jangteo_protocol::blob::CHUNK_BYTES;
use jangteo_testnet::{Cluster, Topology, tcp_addr, wait_for};

const WAIT: Duration = Duration::from_secs(20);

fn photo(len: usize) -> Vec<u8> {
    // Deterministic, incompressible-looking bytes.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_is_fetched_verified_and_a_lying_peer_is_caught_at_its_first_bad_chunk() {
    // node 0 fetches; node 1 is the honest seller; node 2 holds a corrupted copy.
    let mut cluster = Cluster::start(3, Topology::Star).await.expect("cluster");
    let data = photo(2 * CHUNK_BYTES + 12_345);
    let added = cluster.nodes[1].blobs.add(data.clone()).await.expect("add");
    let id = added.id;
    assert_eq!(added.bytes, data.len() as u64);
    let blob_id = Blobs::parse_id(&id).expect("id");

    // The seller names the image in a listing; an image it does not hold is refused.
    let listing = |images: Vec<String>| NewListing {
        title: "필름 카메라 Pentax MX".into(),
        price: 180_000,
        currency: "KRW".into(),
        description: None,
        category: None,
        condition: None,
        quantity: None,
        location: None,
        moderators: vec![],
        expires_in_days: None,
        images,
    };
    let posted = cluster.nodes[1]
        .listings
        .post(listing(vec![id.clone()]))
        .await
        .expect("post with image");
    assert_eq!(posted.images, vec![id.clone()]);
    let missing = "ab".repeat(32);
    let e = cluster.nodes[1]
        .listings
        .post(listing(vec![missing]))
        .await
        .expect_err("unknown image");
    assert!(e.to_string().contains("not stored on this node"), "{e}");

    // The liar holds the same blob, then one chunk of it goes bad.
    cluster.nodes[2].blobs.add(data.clone()).await.expect("add");
    cluster.nodes[2]
        .store
        .corrupt_blob_chunk_for_tests(&blob_id, 1, &vec![0u8; CHUNK_BYTES])
        .expect("corrupt");

    // With the honest seller offline, only the liar answers: refused, nothing stored.
    cluster.stop(1).await.expect("stop");
    let e = cluster.nodes[0]
        .blobs
        .get(&id)
        .await
        .expect_err("liar only");
    assert!(matches!(e, BlobServiceError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("chunk 1 does not match"), "{e}");
    assert!(
        cluster.nodes[0]
            .store
            .blob(&blob_id)
            .expect("read")
            .is_none()
    );

    // The seller comes back: the fetch succeeds with the right bytes, whoever is asked first.
    let hub = tcp_addr(&cluster.nodes[0]).await.expect("addr");
    cluster.start_again(1, 1, vec![hub]).await.expect("restart");
    let seller = cluster.nodes[1].peer_id.clone();
    wait_for(WAIT, "the seller to reconnect", || async {
        let info = cluster.nodes[0].network.info().await.ok()?;
        info.peers.iter().any(|p| p.peer_id == seller).then_some(())
    })
    .await
    .expect("reconnected");
    let got = cluster.nodes[0].blobs.get(&id).await.expect("fetch");
    assert_eq!(got, data);
    assert_eq!(
        cluster.nodes[0].store.blob(&blob_id).expect("read"),
        Some(data.clone())
    );
    // Garbage collection keeps what a listing names and deletes the rest (recently added
    // blobs are kept by the node's own pass; the store-level pass here keeps nothing extra).
    let stray = cluster.nodes[1].blobs.add(photo(1_000)).await.expect("add");
    let stray = Blobs::parse_id(&stray.id).expect("id");
    assert_eq!(
        cluster.nodes[1].blobs.gc().expect("gc"),
        0,
        "recent blobs are kept"
    );
    let deleted = cluster.nodes[1]
        .store
        .gc_blobs(&Default::default())
        .expect("gc");
    assert_eq!(deleted, 1);
    assert!(cluster.nodes[1].store.blob(&stray).expect("read").is_none());
    assert_eq!(
        cluster.nodes[1].store.blob(&blob_id).expect("read"),
        Some(data.clone()),
        "the listing's photo stays"
    );
    // Too large or empty: refused with the reason.
    let e = cluster.nodes[0]
        .blobs
        .add(vec![1u8; jangteo_protocol::blob::MAX_BLOB_BYTES + 1])
        .await
        .expect_err("too big");
    assert!(
        e.to_string().contains("at most") || e.to_string().contains("5242880"),
        "{e}"
    );
    cluster.shutdown().await;
}
