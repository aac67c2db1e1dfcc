//! A relay's mailboxes under throw-away keys, between in-process nodes (RocksDB, libp2p on
//! loopback): four keys flooding one victim's mailbox stop at their share while an honest
//! sender's item is stored; a relay full to its global cap refuses with a reason the
//! sender reads; many fresh peer ids from one address share that address's put budget; a
//! sender that keeps putting after refusals is banned (its connection closed, so what it
//! sends is no longer read), fresh peer ids from an address whose refusals are spent are
//! banned at half their own refusal budget, and an honest sender, even behind the
//! flooders' address, is still served or refused but never banned.

use std::time::Duration;

use jangteo_node::Node;
use jangteo_node::net::{
    IP_RATE_FACTOR, MAILBOX_INBOUND_PER_PEER, MAILBOX_PUT_RATE_MAX, MAILBOX_REFUSED_PUTS_MAX,
    MailboxRequest, MailboxResponse,
};
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

/// Puts `len`-byte items from `node` on the relay 4 at a time, ignoring refusals, as a
/// flooder would, until a whole batch finds no relay to answer it (or `batches` ran);
/// returns how many puts the relay answered.
async fn flood(node: &Node, relay: PeerId, len: usize, batches: usize) -> u64 {
    let mut answered = 0u64;
    for b in 0..batches {
        let batch = futures::future::join_all((0..4u8).map(|i| {
            let mut to = [0u8; 32];
            to[..8].copy_from_slice(&(b as u64).to_be_bytes());
            to[8] = i;
            let req = MailboxRequest::Put {
                to: ByteBuf::from(to.to_vec()),
                sealed: ByteBuf::from(sealed(len)),
            };
            node.network.mailbox(relay, req)
        }))
        .await;
        let n = batch.iter().filter(|r| matches!(r, Ok(Ok(_)))).count() as u64;
        answered += n;
        if n == 0 {
            break;
        }
    }
    answered
}

async fn wait_banned(relay: &Node, peer: &str) {
    wait_for(WAIT, &format!("the relay to ban {peer}"), || async {
        relay
            .network
            .info()
            .await
            .ok()?
            .banned
            .iter()
            .any(|b| b == peer)
            .then_some(())
    })
    .await
    .expect("banned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_keeps_putting_after_refusals_is_banned_and_others_are_still_served() {
    let (cluster, relay) = relay_and_senders(3, |_| {}).await;
    let big = jangteo_protocol::mailbox::SEALED_MAX_BYTES;
    // Two flooders: their puts within the rate limit are answered, then the refusals up to
    // the limit on refused puts, then the ban closes their connection and nothing more is
    // read (what was in flight may still be answered).
    let most = u64::from(MAILBOX_PUT_RATE_MAX + MAILBOX_REFUSED_PUTS_MAX) + 4;
    for flooder in &cluster.nodes[1..3] {
        let answered = flood(flooder, relay, big, 200).await;
        assert!(
            answered >= u64::from(MAILBOX_PUT_RATE_MAX),
            "answered {answered}"
        );
        assert!(answered <= most, "answered {answered} of at most {most}");
        wait_banned(&cluster.nodes[0], &flooder.peer_id).await;
    }
    // An honest sender, one item at a time, is still served, large as its item is.
    let honest = &cluster.nodes[3];
    assert_eq!(
        put(honest, relay, [0x77; 32], big).await,
        MailboxResponse::Stored
    );
    let banned = cluster.nodes[0].network.info().await.expect("info").banned;
    assert!(!banned.contains(&honest.peer_id), "{banned:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_peer_ids_flooding_from_one_address_are_banned_and_an_honest_neighbour_is_not() {
    // Loopback is counted here, as if the eight flooders and the honest node (the last)
    // shared one public address, as behind a carrier-grade NAT.
    let (cluster, relay) = relay_and_senders(9, |c| c.limit_loopback = true).await;
    let mut answered = Vec::new();
    for flooder in &cluster.nodes[1..9] {
        answered.push(flood(flooder, relay, 1000, 200).await);
        wait_banned(&cluster.nodes[0], &flooder.peer_id).await;
    }
    // The address's put budget is spent by the first few; its refusals (4 peers' worth)
    // soon after. From then on a fresh peer id is banned once half its own refusal budget
    // is spent: it gets at most that and what it had in flight answered.
    let late = u64::from(MAILBOX_REFUSED_PUTS_MAX / 2) + MAILBOX_INBOUND_PER_PEER as u64;
    let address_refusals = u64::from(MAILBOX_REFUSED_PUTS_MAX) * IP_RATE_FACTOR;
    let address_puts = u64::from(MAILBOX_PUT_RATE_MAX) * IP_RATE_FACTOR;
    assert!(
        answered.iter().sum::<u64>() <= address_puts + address_refusals + late * 8,
        "{answered:?}"
    );
    assert!(
        answered[5..].iter().all(|n| *n <= late),
        "the last fresh ids got more than {late} answers: {answered:?}"
    );
    // The honest neighbour behind the same address puts one item at a time, fewer than
    // the refusals that ban: the flooders spent the address's budgets, so it is refused,
    // but never banned for their refusals.
    let honest = &cluster.nodes[9];
    let mut refused = 0;
    for i in 0..MAILBOX_REFUSED_PUTS_MAX / 2 - 1 {
        let r = put(honest, relay, [i as u8; 32], 1000).await;
        if let Some(why) = refusal(&r) {
            assert!(why.starts_with("rate limit"), "{why}");
            refused += 1;
        }
    }
    let banned = cluster.nodes[0].network.info().await.expect("info").banned;
    assert!(!banned.contains(&honest.peer_id), "{banned:?}");
    assert!(
        refused > 0,
        "the address's budget was spent, so the neighbour is refused"
    );
    assert!(
        !honest.network.relays().await.expect("relays").is_empty(),
        "the neighbour keeps its connection to the relay"
    );
    cluster.shutdown().await;
}
