//! In-process conversation tests: real nodes (RocksDB, libp2p on loopback) in one process.
//! A question and its answer; a message to an offline seller through a relay, delivered and
//! read once the seller is back; first-contact stamps; what 1,000 unstamped strangers cost;
//! blocking; a forged copy sent before the real message; receipts for messages never sent.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use jangteo_node::api::types::MessageStatus;
use jangteo_node::net::DmResponse;
use jangteo_node::services::listings::NewListing;
use jangteo_node::services::trades::{NewOffer, TradeAction};
use jangteo_node::{Node, NodeEvent};
use jangteo_protocol::message::{DirectMessage, Receipt, ReceiptStatus};
use jangteo_protocol::{Kind, ListingId, ObjectId, PublicKey, SignedObject};
use jangteo_testnet::{Cluster, Topology, tcp_addr, wait_event, wait_for};

const WAIT: Duration = Duration::from_secs(30);

async fn post(seller: &Node, title: &str) -> String {
    seller
        .listings
        .post(NewListing {
            title: title.into(),
            price: 150_000,
            currency: "KRW".into(),
            description: None,
            category: None,
            condition: None,
            quantity: Some(1),
            location: None,
            moderators: vec![],
            expires_in_days: None,
            images: vec![],
        })
        .await
        .expect("post")
        .id
}

async fn held_by(node: &Node, listing: &str) {
    let l = listing.to_owned();
    wait_for(WAIT, "the listing to reach the buyer", || async {
        node.listings.show(&l).ok().map(|_| ())
    })
    .await
    .expect("listing arrives");
}

fn key_of(node: &Node) -> PublicKey {
    jangteo_protocol::public_key_from_peer_id(&node.peer_id).expect("ed25519 peer id")
}

/// A message by `from` to `to` about `listing`, stamped or not.
fn message(
    from: &SigningKey,
    to: PublicKey,
    listing: &str,
    text: &str,
    stamp: bool,
) -> SignedObject {
    let author = PublicKey(from.verifying_key().to_bytes());
    let mut m = DirectMessage {
        to,
        listing: ListingId::from_hex(listing).expect("listing id"),
        trade: None,
        at: jangteo_node::clock::now_ms(),
        text: text.into(),
        seen: None,
        photos: vec![],
        stamp: None,
    };
    if stamp {
        m.solve_stamp(&author);
    }
    SignedObject::sign(Kind::Message, m.encode(), from)
}

/// Waits for the status of our message `id` to become `status`, collecting every status
/// event seen for it on the way.
async fn statuses_until(
    rx: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    id: &str,
    status: MessageStatus,
    seen: &mut Vec<MessageStatus>,
) {
    wait_event(rx, WAIT * 2, |e| match e {
        NodeEvent::MessageStatus {
            message, status: s, ..
        } if message == id => {
            if seen.last() != Some(s) {
                seen.push(*s);
            }
            *s == status
        }
        _ => false,
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: statuses so far {seen:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_and_its_answer_with_delivered_and_read_receipts() {
    let cluster = Cluster::start(2, Topology::Star).await.expect("cluster");
    let (seller, buyer) = (&cluster.nodes[0], &cluster.nodes[1]);
    let listing = post(seller, "접이식 자전거").await;
    held_by(buyer, &listing).await;
    let mut at_seller = seller.subscribe();
    let mut at_buyer = buyer.subscribe();

    let asked = buyer
        .conversations
        .ask(&listing, "아직 판매 중인가요?".into(), vec![])
        .await
        .expect("ask");
    assert_eq!(asked.status, MessageStatus::Delivered, "{asked:?}");
    wait_event(
        &mut at_seller,
        WAIT,
        |e| matches!(e, NodeEvent::MessageReceived { message, .. } if *message == asked.message),
    )
    .await
    .expect("the seller is told");
    // The message raised a notification, stored in the message's own batch.
    let (notes, unread) = seller
        .store
        .notifications(false, 10)
        .expect("notifications");
    let note = notes
        .iter()
        .find(|n| n.kind == jangteo_node::api::types::NotificationKind::Message)
        .expect("a message notification");
    assert_eq!(note.thread.as_deref(), Some(asked.thread.as_str()));
    assert_eq!(note.message.as_deref(), Some(asked.message.as_str()));
    assert_eq!(note.peer.as_deref(), Some(buyer.peer_id.as_str()));
    assert!(unread >= 1);
    let (mine, _) = buyer.store.notifications(false, 10).expect("notifications");
    assert!(
        mine.iter()
            .all(|n| n.kind != jangteo_node::api::types::NotificationKind::Message),
        "my own message notifies nobody but the recipient"
    );
    let inbox = seller.conversations.inbox().expect("inbox");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].thread, asked.thread, "both sides name one thread");
    assert_eq!(inbox[0].unread, 1);
    assert_eq!(inbox[0].peer, buyer.peer_id);
    assert_eq!(inbox[0].title.as_deref(), Some("접이식 자전거"));
    let first = seller.conversations.view(&asked.thread).expect("view");
    assert!(first.messages[0].stamped, "a first contact carries a stamp");

    // The seller opens the thread: the buyer sees its question read.
    let opened = seller
        .conversations
        .read(&asked.thread)
        .await
        .expect("read");
    assert_eq!(opened.unread, 0);
    let mut seen = vec![MessageStatus::Delivered];
    statuses_until(
        &mut at_buyer,
        &asked.message,
        MessageStatus::Read,
        &mut seen,
    )
    .await;
    assert_eq!(seller.conversations.inbox().expect("inbox")[0].unread, 0);

    // The answer needs no stamp (the buyer wrote first), and lands in the same thread.
    let answer = seller
        .conversations
        .say(
            &asked.thread,
            "네, 토요일 망원역 3시 어때요?".into(),
            vec![],
        )
        .await
        .expect("say");
    assert_eq!(answer.thread, asked.thread);
    assert_eq!(answer.status, MessageStatus::Delivered);
    wait_event(
        &mut at_buyer,
        WAIT,
        |e| matches!(e, NodeEvent::MessageReceived { message, .. } if *message == answer.message),
    )
    .await
    .expect("the buyer is told");
    let at_b = buyer.conversations.read(&asked.thread).await.expect("read");
    let texts: Vec<(&str, bool, MessageStatus, bool)> = at_b
        .messages
        .iter()
        .map(|m| (m.text.as_str(), m.mine, m.status, m.stamped))
        .collect();
    assert_eq!(
        texts,
        [
            ("아직 판매 중인가요?", true, MessageStatus::Read, true),
            (
                "네, 토요일 망원역 3시 어때요?",
                false,
                MessageStatus::Received,
                false
            ),
        ]
    );
    // Bad input is refused with its reason, and nothing is stored.
    let err = |r: Result<_, jangteo_node::services::conversations::ChatError>| {
        r.expect_err("refused").to_string()
    };
    let empty = err(buyer
        .conversations
        .say(&asked.thread, "  ".into(), vec![])
        .await);
    assert!(empty.contains("text"), "{empty}");
    let long = err(buyer
        .conversations
        .say(&asked.thread, "가".repeat(2001), vec![])
        .await);
    assert!(long.contains("2000"), "{long}");
    let unknown = err(buyer
        .conversations
        .say(&"ab".repeat(32), "hi".into(), vec![])
        .await);
    assert!(unknown.contains("no conversation"), "{unknown}");
    let own = err(seller
        .conversations
        .ask(&listing, "hi".into(), vec![])
        .await);
    assert!(own.contains("yourself"), "{own}");
    assert_eq!(
        buyer
            .conversations
            .view(&asked.thread)
            .expect("view")
            .messages
            .len(),
        2
    );
    cluster.shutdown().await;
}

async fn start(dir: &std::path::Path, bootstrap: Vec<String>, relay: bool) -> Node {
    let mut cfg = jangteo_node::NodeConfig::new(dir);
    cfg.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    cfg.mdns = false;
    cfg.relay = relay;
    cfg.bootstrap = bootstrap;
    Node::start(cfg).await.expect("node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_an_offline_seller_is_delivered_then_read_through_a_relay() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("dir")).collect();
    let relay = start(dirs[0].path(), vec![], true).await;
    let relay_addr = tcp_addr(&relay).await.expect("relay addr");
    let seller = start(dirs[1].path(), vec![relay_addr.clone()], false).await;
    let buyer = start(dirs[2].path(), vec![relay_addr.clone()], false).await;
    let listing = post(&seller, "원목 책상").await;
    held_by(&buyer, &listing).await;
    wait_for(WAIT, "the buyer to know the relay", || async {
        (!buyer.network.relays().await.ok()?.is_empty()).then_some(())
    })
    .await
    .expect("relay known");
    let mut at_buyer = buyer.subscribe();

    seller.shutdown().await;
    let asked = buyer
        .conversations
        .ask(
            &listing,
            "Can we meet at Mangwon station on Saturday?".into(),
            vec![],
        )
        .await
        .expect("ask");
    assert_eq!(asked.status, MessageStatus::Queued, "{asked:?}");
    let reason = asked.reason.clone().expect("why it is queued");
    assert!(reason.contains("mailbox of relay"), "{reason}");
    let v = buyer.conversations.view(&asked.thread).expect("view");
    assert_eq!(v.messages[0].relays, std::slice::from_ref(&relay.peer_id));
    assert_eq!(relay.store.mailbox_stats().expect("stats").0, 1);

    // The seller comes back, takes the message from the relay, and answers its receipt.
    let seller = start(dirs[1].path(), vec![relay_addr.clone()], false).await;
    let mut seen = vec![MessageStatus::Queued];
    statuses_until(
        &mut at_buyer,
        &asked.message,
        MessageStatus::Delivered,
        &mut seen,
    )
    .await;
    let inbox = seller.conversations.inbox().expect("inbox");
    assert_eq!((inbox.len(), inbox[0].unread), (1, 1));
    seller
        .conversations
        .read(&asked.thread)
        .await
        .expect("read");
    statuses_until(
        &mut at_buyer,
        &asked.message,
        MessageStatus::Read,
        &mut seen,
    )
    .await;
    assert_eq!(
        seen,
        [
            MessageStatus::Queued,
            MessageStatus::Delivered,
            MessageStatus::Read
        ],
        "the sender sees the statuses in order"
    );
    let r = &relay;
    wait_for(
        WAIT,
        "the relay to delete the acknowledged item",
        || async { (r.store.mailbox_stats().ok()?.0 == 0).then_some(()) },
    )
    .await
    .expect("acked");
    // Threads and statuses persist across a restart.
    buyer.shutdown().await;
    let buyer = start(dirs[2].path(), vec![relay_addr], false).await;
    let v = buyer.conversations.view(&asked.thread).expect("view");
    assert_eq!(v.messages[0].status, MessageStatus::Read);
    for n in [relay, seller, buyer] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stamp_is_needed_at_first_contact_and_not_after_a_trade() {
    let cluster = Cluster::start(2, Topology::Star).await.expect("cluster");
    let (seller, buyer) = (&cluster.nodes[0], &cluster.nodes[1]);
    let listing = post(seller, "캠핑 의자").await;
    held_by(buyer, &listing).await;
    let me = key_of(seller);
    let stranger = SigningKey::from_bytes(&[77; 32]);

    // A stranger without a stamp: refused, not an offense, nothing stored.
    let bare = message(&stranger, me, &listing, "hello?", false);
    let (r, offense) = seller.conversations.receive(None, bare.bytes()).await;
    assert!(
        matches!(&r, DmResponse::Refused(why) if why.contains("stamp")),
        "{r:?}"
    );
    assert!(!offense);
    // A stamp worth too little is a signed lie: refused as an offense.
    let mut cheap = DirectMessage::decode(&bare.envelope().body).expect("body");
    cheap.stamp = Some(
        (0..)
            .find(|n| {
                jangteo_protocol::stamp::work(
                    jangteo_protocol::stamp::MESSAGE_CONTEXT,
                    &cheap.stamp_subject(&PublicKey(stranger.verifying_key().to_bytes())),
                    *n,
                ) < 22
            })
            .expect("a cheap nonce"),
    );
    let cheap = SignedObject::sign(Kind::Message, cheap.encode(), &stranger);
    let (r, offense) = seller.conversations.receive(None, cheap.bytes()).await;
    assert!(
        matches!(&r, DmResponse::Refused(why) if why.contains("stamp")),
        "{r:?}"
    );
    assert!(offense);
    assert!(seller.conversations.inbox().expect("inbox").is_empty());
    // With its stamp it is taken.
    let stamped = message(&stranger, me, &listing, "hello?", true);
    let (r, _) = seller.conversations.receive(None, stamped.bytes()).await;
    assert!(matches!(r, DmResponse::Delivered(_)), "{r:?}");

    // The buyer offers and the seller accepts: from now on neither side stamps.
    let trade = buyer
        .trades
        .offer(NewOffer {
            listing: listing.clone(),
            price: None,
            quantity: None,
            message: None,
            moderators: vec![],
        })
        .await
        .expect("offer")
        .id;
    jangteo_testnet::trade_state_is(seller, &trade, "offered", WAIT)
        .await
        .expect("offered");
    seller
        .trades
        .act(&trade, "accept", TradeAction::default())
        .await
        .expect("accept");
    jangteo_testnet::trade_state_is(buyer, &trade, "accepted", WAIT)
        .await
        .expect("accepted");
    let asked = buyer
        .conversations
        .ask(&listing, "언제 받으러 갈까요?".into(), vec![])
        .await
        .expect("ask");
    assert_eq!(asked.status, MessageStatus::Delivered, "{asked:?}");
    let v = seller.conversations.view(&asked.thread).expect("view");
    assert!(!v.messages[0].stamped, "no stamp after a trade: {v:?}");
    assert_eq!(
        v.messages[0].trade.as_deref(),
        Some(trade.as_str()),
        "the message names the trade"
    );
    assert_eq!(v.trade.as_deref(), Some(trade.as_str()));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_unstamped_first_contacts_cost_the_recipient_no_storage() {
    let cluster = Cluster::start(1, Topology::Star).await.expect("cluster");
    let seller = &cluster.nodes[0];
    let listing = post(seller, "아이패드").await;
    let me = key_of(seller);
    let started = std::time::Instant::now();
    for i in 0..1000u32 {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&i.to_be_bytes());
        seed[4] = 1;
        let spam = message(
            &SigningKey::from_bytes(&seed),
            me,
            &listing,
            "cheap phones!",
            false,
        );
        let (r, _) = seller.conversations.receive(None, spam.bytes()).await;
        assert!(
            matches!(&r, DmResponse::Refused(why) if why.contains("stamp")),
            "{r:?}"
        );
    }
    eprintln!(
        "1000 unstamped first contacts refused in {} ms",
        started.elapsed().as_millis()
    );
    assert!(seller.conversations.inbox().expect("inbox").is_empty());
    assert!(
        seller
            .store
            .chat_scan(&[], usize::MAX)
            .expect("scan")
            .is_empty(),
        "nothing of them is stored"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_copy_first_cannot_suppress_the_real_message_and_junk_receipts_are_refused() {
    let cluster = Cluster::start(1, Topology::Star).await.expect("cluster");
    let seller = &cluster.nodes[0];
    let listing = post(seller, "필름 카메라").await;
    let me = key_of(seller);
    let buyer = SigningKey::from_bytes(&[91; 32]);
    let real = message(&buyer, me, &listing, "Is the lens included?", true);

    // A forged copy: the real body under the real author, signed by someone else.
    let forger = SigningKey::from_bytes(&[92; 32]);
    let mut env = real.envelope().clone();
    env.signature = SignedObject::sign(Kind::Message, env.body.clone(), &forger)
        .envelope()
        .signature;
    let (r, offense) = seller.conversations.receive(None, &env.encode()).await;
    assert!(
        matches!(&r, DmResponse::Refused(why) if why.contains("forged")),
        "{r:?}"
    );
    assert!(offense, "a forged signature is an offense");
    // The real one is taken after it, once; a replay changes nothing.
    for _ in 0..2 {
        let (r, offense) = seller.conversations.receive(None, real.bytes()).await;
        assert!(matches!(r, DmResponse::Delivered(_)), "{r:?}");
        assert!(!offense);
    }
    let inbox = seller.conversations.inbox().expect("inbox");
    assert_eq!((inbox.len(), inbox[0].unread), (1, 1));
    let thread = inbox[0].thread.clone();
    assert_eq!(
        seller
            .conversations
            .view(&thread)
            .expect("view")
            .messages
            .len(),
        1
    );
    // The same message replayed to someone it was not addressed to.
    let other = Cluster::start(1, Topology::Star)
        .await
        .expect("second node");
    let (r, offense) = other.nodes[0]
        .conversations
        .receive(None, real.bytes())
        .await;
    assert!(
        matches!(&r, DmResponse::Refused(why) if why.contains("not addressed")),
        "{r:?}"
    );
    assert!(offense);
    // A receipt for a message the seller never sent to this key.
    let receipt = Receipt {
        to: me,
        at: jangteo_node::clock::now_ms(),
        status: ReceiptStatus::Read,
        messages: vec![ObjectId([5; 32]), real.id()],
    };
    let receipt = SignedObject::sign(Kind::Receipt, receipt.encode(), &buyer);
    let (r, offense) = seller.conversations.receive(None, receipt.bytes()).await;
    assert!(
        matches!(&r, DmResponse::Refused(why) if why.contains("never sent")),
        "{r:?}"
    );
    assert!(offense);
    other.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_key_cannot_write_or_offer_and_its_listings_are_hidden_after_a_restart() {
    let mut cluster = Cluster::start(2, Topology::Star).await.expect("cluster");
    let listing = post(&cluster.nodes[0], "전기 자전거").await;
    let buyers_listing = post(&cluster.nodes[1], "자전거 헬멧").await;
    held_by(&cluster.nodes[1], &listing).await;
    held_by(&cluster.nodes[0], &buyers_listing).await;
    let buyer_peer = cluster.nodes[1].peer_id.clone();
    let search = |n: &Node| {
        n.listings
            .search(&jangteo_node::api::types::SearchQuery::default())
            .expect("search")
            .into_iter()
            .map(|h| h.id)
            .collect::<Vec<_>>()
    };
    // Held is not yet indexed: wait until a search finds it.
    wait_for(WAIT, "the buyer's listing to be searchable", || async {
        search(&cluster.nodes[0])
            .contains(&buyers_listing)
            .then_some(())
    })
    .await
    .expect("indexed");
    let b = cluster.nodes[0]
        .conversations
        .block(&buyer_peer, true)
        .expect("block");
    assert!(b.changed);
    // Blocks persist.
    let addr = tcp_addr(&cluster.nodes[1]).await.expect("addr");
    cluster.restart(0, vec![addr]).await.expect("restart");
    let (seller, buyer) = (&cluster.nodes[0], &cluster.nodes[1]);
    assert_eq!(
        seller.conversations.blocked().expect("blocked")[0].peer_id,
        buyer_peer
    );
    assert!(!search(seller).contains(&buyers_listing), "hidden");
    let s = seller.peer_id.clone();
    wait_for(WAIT, "the buyer to reach the seller again", || async {
        buyer
            .network
            .info()
            .await
            .ok()?
            .peers
            .iter()
            .any(|p| p.peer_id == s)
            .then_some(())
    })
    .await
    .expect("connected");
    let asked = buyer
        .conversations
        .ask(&listing, "hello?".into(), vec![])
        .await
        .expect("ask");
    assert_eq!(asked.status, MessageStatus::Failed, "{asked:?}");
    assert!(
        asked.reason.as_deref().unwrap_or("").contains("blocked"),
        "{asked:?}"
    );
    assert!(seller.conversations.inbox().expect("inbox").is_empty());
    let offer = buyer
        .trades
        .offer(NewOffer {
            listing: listing.clone(),
            price: None,
            quantity: None,
            message: None,
            moderators: vec![],
        })
        .await
        .expect("offer");
    let d = &offer.history[0].delivery;
    assert!(
        d.reason.as_deref().unwrap_or("").contains("blocked"),
        "{offer:?}"
    );
    assert!(seller.trades.list().expect("trades").is_empty());
    // Unblocked: the listing shows again and a new message gets through.
    assert!(
        seller
            .conversations
            .block(&buyer_peer, false)
            .expect("unblock")
            .changed
    );
    assert!(search(seller).contains(&buyers_listing));
    let again = buyer
        .conversations
        .ask(&listing, "hello again".into(), vec![])
        .await
        .expect("ask");
    assert_eq!(again.status, MessageStatus::Delivered, "{again:?}");
    cluster.shutdown().await;
}

/// The bug a relay's put ban could cause: an honest node with a backlog of messages for
/// offline peers comes back online and connects to several peers at once, so several retry
/// passes run together, each depositing every due message. Its puts are paced per relay
/// (one at a time, half the relay's limit per window, none after a refusal), so the relay
/// stores every message and never bans it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_online_with_a_backlog_deposits_it_all_and_is_not_banned() {
    use jangteo_node::services::mailbox::PUTS_PER_RELAY;
    const PER_SELLER: usize = 15;
    let dirs: Vec<_> = (0..7).map(|_| tempfile::tempdir().expect("dir")).collect();
    let relay = start(dirs[0].path(), vec![], true).await;
    let relay_addr = tcp_addr(&relay).await.expect("relay addr");
    // Two sellers (offline from the start) with a listing each; three more peers online.
    let mut sellers = Vec::new();
    for d in &dirs[1..3] {
        let s = start(d.path(), vec![], false).await;
        let listing = post(&s, "중고 의자").await;
        sellers.push((s.peer_id.clone(), listing));
        s.shutdown().await;
    }
    let mut peers = Vec::new();
    let mut addrs = vec![relay_addr.clone()];
    for d in &dirs[3..6] {
        let p = start(d.path(), vec![relay_addr.clone()], false).await;
        addrs.push(tcp_addr(&p).await.expect("peer addr"));
        peers.push(p);
    }
    // The buyer writes while connected to no one: its messages queue, no relay holds them.
    let buyer = start(dirs[6].path(), vec![], false).await;
    let mut sent = Vec::new();
    for (seller, listing) in &sellers {
        for i in 0..PER_SELLER {
            let m = buyer
                .conversations
                .write(listing, seller, format!("question {i}"), vec![])
                .await
                .expect("write");
            assert_eq!(m.status, MessageStatus::Queued, "{m:?}");
            sent.push(m);
        }
    }
    let written = jangteo_node::clock::now_ms();
    buyer.shutdown().await;
    assert_eq!(relay.store.mailbox_stats().expect("stats").0, 0);
    // Once every message is due for a retry (the first wait is 3 s), the buyer comes back
    // and dials the relay and three peers: each connection starts a retry pass.
    wait_for(WAIT, "the messages to be due", || async {
        (jangteo_node::clock::now_ms() > written + 3_500).then_some(())
    })
    .await
    .expect("due");
    let buyer = start(dirs[6].path(), addrs, false).await;
    let total = (2 * PER_SELLER) as u64;
    // At most PUTS_PER_RELAY a window: three windows and the retry back-off.
    let r = &relay;
    if let Err(e) = wait_for(
        Duration::from_secs(180),
        "the relay to hold every message",
        || async { (r.store.mailbox_stats().ok()?.0 >= total).then_some(()) },
    )
    .await
    {
        let banned = r.network.info().await.map(|i| i.banned);
        panic!("{e}: held {:?}, banned {banned:?}", r.store.mailbox_stats());
    }
    assert!(
        total > PUTS_PER_RELAY as u64 * 2,
        "more than two windows' worth"
    );
    assert_eq!(
        relay.store.mailbox_stats().expect("stats").0,
        total,
        "once each"
    );
    let banned = relay.network.info().await.expect("info").banned;
    assert!(!banned.contains(&buyer.peer_id), "{banned:?}");
    assert!(
        buyer
            .network
            .relays()
            .await
            .expect("relays")
            .contains(&relay.peer_id.parse().expect("peer id")),
        "still connected to the relay"
    );
    for m in &sent {
        let v = buyer.conversations.view(&m.thread).expect("view");
        let held = v
            .messages
            .iter()
            .find(|x| x.id == m.message)
            .expect("message");
        assert_eq!(
            held.relays,
            std::slice::from_ref(&relay.peer_id),
            "{held:?}"
        );
    }
    for n in peers.into_iter().chain([relay, buyer]) {
        n.shutdown().await;
    }
}
