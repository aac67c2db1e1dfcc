//! A relay's mailboxes under throw-away keys, between in-process nodes (RocksDB, libp2p on
//! loopback): four keys flooding one victim's mailbox stop at their share while an honest
//! sender's item is stored; a relay full to its global cap refuses with a reason the
//! sender reads; many fresh peer ids from one address share that address's put budget.

use std::time::Duration;

use jangteo_node::Node;
use jangteo_node::net::{IP_RATE_FACTOR, MAILBOX_PUT_RATE_MAX, MailboxRequest, MailboxResponse};
use jangteo_node::services::mailbox::sender_holder;
use jangteo_testnet::{Cluster, Topology, tcp_addr, wait_for};
use libp2p::PeerId;
use rand::RngCore;
use serde_bytes::ByteBuf;

const WAIT: Duration = Duration::from_secs(30);

/// A relay (node 0, tuned by `tune`) and `senders` nodes connected to it, each knowing it
/// holds mailboxes.
async fn relay_and_senders(
    senders: usize,
    tune: impl FnOnce(&mut jangteo_node::NodeConfig),
) -> (Cluster, PeerId) {
    let mut cluster = Cluster::start(0, Topology::Star).await.expect("cluster");
    cluster
        .add_node_with(vec![], |c| {
            c.relay = true;
            tune(c);
        })
        .await
        .expect("relay");
    let relay_addr = tcp_addr(&cluster.nodes[0]).await.expect("relay addr");
    for _ in 0..senders {
        cluster
            .add_node(vec![relay_addr.clone()])
            .await
            .expect("sender");
    }
    let relay: PeerId = cluster.nodes[0].peer_id.parse().expect("peer id");
    for (i, n) in cluster.nodes.iter().enumerate().skip(1) {
        wait_for(WAIT, &format!("sender {i} to know the relay"), || async {
            n.network
                .relays()
                .await
                .ok()?
                .contains(&relay)
                .then_some(())
        })
        .await
        .expect("relay known");
    }
    (cluster, relay)
}

fn sealed(len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut b);
    b
}

async fn put(node: &Node, relay: PeerId, to: [u8; 32], len: usize) -> MailboxResponse {
    let req = MailboxRequest::Put {
        to: ByteBuf::from(to.to_vec()),
        sealed: ByteBuf::from(sealed(len)),
    };
    match node.network.mailbox(relay, req).await {
        Ok(Ok(r)) => r,
        other => panic!("no answer from the relay: {other:?}"),
    }
}

fn refusal(r: &MailboxResponse) -> Option<&str> {
    match r {
        MailboxResponse::Refused(why) => Some(why),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_throw_away_keys_flooding_a_mailbox_do_not_keep_an_honest_message_out() {
    let (cluster, relay) = relay_and_senders(5, |_| {}).await;
    let victim = [0x5a; 32];
    let big = jangteo_protocol::mailbox::SEALED_MAX_BYTES;
    // Each attacker: a burst of 8 at once (its queue holds 4), then one at a time until its
    // share is used up. 8 × 256 KiB per key would fill the 8 MiB mailbox with four keys.
    for (k, attacker) in cluster.nodes[1..5].iter().enumerate() {
        let burst =
            futures::future::join_all((0..8).map(|_| put(attacker, relay, victim, big))).await;
        let mut stored = burst
            .iter()
            .filter(|r| **r == MailboxResponse::Stored)
            .count();
        let mut share_refused = burst
            .iter()
            .filter_map(refusal)
            .any(|w| w.contains("your share"));
        for _ in 0..8 {
            if share_refused {
                break;
            }
            match put(attacker, relay, victim, big).await {
                MailboxResponse::Stored => stored += 1,
                r => {
                    let why = refusal(&r).expect("a refusal").to_owned();
                    share_refused |= why.contains("your share");
                }
            }
        }
        assert!(share_refused, "attacker {k} was stopped at its share");
        assert_eq!(stored, 4, "attacker {k}: 1 MiB of 256 KiB items");
        let me: PeerId = attacker.peer_id.parse().expect("peer id");
        let held = cluster.nodes[0]
            .store
            .mailbox_usage(&victim, Some(&sender_holder(&me)))
            .expect("usage");
        assert_eq!(held.items, 4);
    }
    // The honest sender's message still gets in, large as it is.
    let honest = &cluster.nodes[5];
    assert_eq!(
        put(honest, relay, victim, big).await,
        MailboxResponse::Stored
    );
    let mailbox = cluster.nodes[0]
        .store
        .mailbox_usage(&victim, None)
        .expect("usage");
    assert_eq!(mailbox.items, 17);
    assert!(mailbox.bytes <= 8 * 1024 * 1024);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_full_to_its_cap_refuses_with_a_reason() {
    let (cluster, relay) = relay_and_senders(1, |c| c.mailbox_cap_bytes = 1024 * 1024).await;
    let sender = &cluster.nodes[1];
    let mut stored = 0;
    let mut why = None;
    // 200 KiB items to distinct recipients: five fit in 1 MiB.
    for i in 0..8u8 {
        match put(sender, relay, [i; 32], 200 * 1024).await {
            MailboxResponse::Stored => stored += 1,
            r => {
                why = refusal(&r).map(str::to_owned);
                break;
            }
        }
    }
    assert_eq!(stored, 5);
    let why = why.expect("refused");
    assert!(why.contains("relay full"), "{why}");
    let (_, bytes) = cluster.nodes[0].store.mailbox_stats().expect("stats");
    assert!(bytes <= 1024 * 1024);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_from_many_fresh_peer_ids_on_one_address_are_throttled() {
    // Loopback is counted here, as if the six senders shared one public address.
    let (cluster, relay) = relay_and_senders(6, |c| c.limit_loopback = true).await;
    let per_peer = u64::from(MAILBOX_PUT_RATE_MAX) - 4;
    let mut stored = 0u64;
    let mut by_address = 0u64;
    // Each key stays under its own limit; together they are far over the address's.
    for (k, sender) in cluster.nodes[1..].iter().enumerate() {
        for i in 0..per_peer {
            let mut to = [0u8; 32];
            to[0] = k as u8;
            to[1] = i as u8;
            match put(sender, relay, to, 1000).await {
                MailboxResponse::Stored => stored += 1,
                r => {
                    let why = refusal(&r).expect("a refusal");
                    assert!(why.contains("from your address"), "{why}");
                    by_address += 1;
                }
            }
        }
    }
    let sent = 6 * per_peer;
    // The address's budget is four peers': the rest is refused (a window may end during
    // the test and let some more in).
    let budget = u64::from(MAILBOX_PUT_RATE_MAX) * IP_RATE_FACTOR;
    assert!(stored >= budget.min(sent), "stored {stored}");
    assert!(stored < sent, "nothing was throttled");
    assert_eq!(stored + by_address, sent);
    cluster.shutdown().await;
}
