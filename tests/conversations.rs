//! End-to-end conversations: three real `jangteo` processes (a relay, a seller, a buyer) on
//! loopback, driven only through the CLI: a question, its answer, an offer and the trade
//! that follows, all in one conversation, with each message's status; bad input refused.

mod common;

use common::{jangteo, json_as, json_try_as, start_node, start_node_with, tcp_addr, wait_for};
use jangteo_node::api::types::{
    BlobView, BlockChange, BlockedView, ListingRef, ListingView, MessageSent, MessageStatus,
    OfferMade, ThreadSummary, ThreadView, TradeRef, TradeStateName,
};

#[test]
fn ask_reply_offer_and_trade_in_one_conversation_through_the_cli() {
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

    let listing: ListingRef = json_as(
        &seller.dir,
        &[
            "post",
            "--title",
            "망원동 원목 식탁",
            "--price",
            "90000",
            "--currency",
            "KRW",
        ],
    );
    let listing = listing.id;
    wait_for("the listing at the buyer", || {
        let hits: Vec<ListingView> = json_try_as(&buyer.dir, &["search", "식탁"])?;
        (hits.len() == 1).then_some(())
    });

    // The buyer asks; the seller's inbox shows it unread.
    let asked: MessageSent = json_as(
        &buyer.dir,
        &["ask", &listing, "아직 있나요? 토요일에 볼 수 있을까요?"],
    );
    // The buyer's node has not met the seller's yet: the first attempt may leave it sealed
    // with the relay (saying so) while it looks the seller up; either way it arrives.
    assert!(
        asked.status == MessageStatus::Delivered
            || asked
                .reason
                .as_deref()
                .unwrap_or("")
                .contains("mailbox of relay"),
        "{asked:?}"
    );
    let thread = asked.thread.clone();
    let inbox: Vec<ThreadSummary> = wait_for("the question at the seller", || {
        let v: Vec<ThreadSummary> = json_try_as(&seller.dir, &["inbox"])?;
        (v.len() == 1).then_some(v)
    });
    assert_eq!(inbox[0].thread, thread);
    assert_eq!(inbox[0].peer, b_id.peer_id);
    assert_eq!(inbox[0].unread, 1);
    assert_eq!(inbox[0].title.as_deref(), Some("망원동 원목 식탁"));

    // The seller opens it (the buyer sees it read) and answers in the same thread.
    let opened: ThreadView = json_as(&seller.dir, &["chat", &thread]);
    assert_eq!(opened.messages.len(), 1);
    assert_eq!(opened.messages[0].status, MessageStatus::Received);
    wait_for("the buyer to see its question read", || {
        let v: ThreadView = json_try_as(&buyer.dir, &["chat", &thread])?;
        (v.messages.first()?.status == MessageStatus::Read).then_some(())
    });
    // With a photo of the meeting place: the buyer's node fetches it from the seller's.
    let map: Vec<u8> = (0u32..70_000).map(|i| (i * 13 + i / 7) as u8).collect();
    let map_file = tmp.path().join("map.jpg");
    std::fs::write(&map_file, &map).expect("write");
    let answer: MessageSent = json_as(
        &seller.dir,
        &[
            "say",
            &thread,
            "네, 토요일 3시 망원역 어때요?",
            "--image",
            map_file.to_str().expect("path"),
        ],
    );
    assert_eq!(answer.thread, thread);
    let at_buyer: ThreadView = wait_for("the answer at the buyer", || {
        let v: ThreadView = json_try_as(&buyer.dir, &["chat", &thread])?;
        (v.messages.len() == 2).then_some(v)
    });
    let photos = &at_buyer.messages[1].photos;
    assert_eq!(photos.len(), 1, "{:?}", at_buyer.messages[1]);
    let got = tmp.path().join("got.jpg");
    json_as::<BlobView>(
        &buyer.dir,
        &[
            "blob",
            "get",
            &photos[0],
            "--out",
            got.to_str().expect("path"),
        ],
    );
    assert_eq!(std::fs::read(&got).expect("read"), map);

    // The offer and the trade that follows are the same conversation.
    let offer: OfferMade = json_as(&buyer.dir, &["offer", &listing, "--price", "85000"]);
    let trade = offer.id;
    common::trade_state_is(&seller.dir, &trade, TradeStateName::Offered);
    assert_eq!(
        json_as::<TradeRef>(&seller.dir, &["accept", &trade]).state,
        TradeStateName::Accepted
    );
    common::trade_state_is(&buyer.dir, &trade, TradeStateName::Accepted);
    let meet: MessageSent = json_as(&buyer.dir, &["say", &thread, "좋아요, 3시에 봬요!"]);
    assert_eq!(meet.thread, thread);
    let at_seller: ThreadView = wait_for("the meetup message at the seller", || {
        let v: ThreadView = json_try_as(&seller.dir, &["chat", &thread])?;
        (v.messages.len() == 3).then_some(v)
    });
    assert_eq!(at_seller.trade.as_deref(), Some(trade.as_str()));
    let last = at_seller.messages.last().expect("a message");
    assert_eq!(last.trade.as_deref(), Some(trade.as_str()));
    assert_eq!(last.from, b_id.peer_id);
    let inbox: Vec<ThreadSummary> = json_as(&seller.dir, &["inbox"]);
    assert_eq!(
        inbox.len(),
        1,
        "one conversation for the question and the trade"
    );
    assert_eq!(inbox[0].unread, 0);
    assert_eq!(inbox[0].trade.as_deref(), Some(trade.as_str()));

    // Bad input: exit 1 with the reason.
    for (args, says) in [
        (vec!["say", thread.as_str(), " "], "text"),
        (vec!["chat", &"ab".repeat(32)], "no conversation"),
        (vec!["ask", listing.as_str(), "to myself"], "yourself"),
    ] {
        let dir = if args[0] == "ask" {
            &seller.dir
        } else {
            &buyer.dir
        };
        let out = jangteo(dir, &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let long = "가".repeat(2001);
    let out = jangteo(&buyer.dir, &["say", &thread, &long]);
    assert_eq!(out.status.code(), Some(1));

    // Blocks, through the CLI.
    let b: BlockChange = json_as(&seller.dir, &["block", &b_id.peer_id]);
    assert!(b.blocked && b.changed);
    let blocked: Vec<BlockedView> = json_as(&seller.dir, &["blocked"]);
    assert_eq!(blocked[0].peer_id, b_id.peer_id);
    let refused: MessageSent = json_as(&buyer.dir, &["say", &thread, "hello?"]);
    assert_eq!(refused.status, MessageStatus::Failed, "{refused:?}");
    assert!(refused.reason.unwrap_or_default().contains("blocked"));
    let b: BlockChange = json_as(&seller.dir, &["unblock", &b_id.peer_id]);
    assert!(!b.blocked && b.changed);
    assert_eq!(s_id.peer_id, seller_peer(&seller.dir));
}

fn seller_peer(dir: &std::path::Path) -> String {
    json_as::<jangteo_node::api::types::IdView>(dir, &["id"]).peer_id
}
