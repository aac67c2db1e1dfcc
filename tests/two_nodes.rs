//! End-to-end: the real `jangteo` binary as separate processes on loopback.
//!
//! Two nodes: post with the CLI on one, find it with the CLI on the other; bad input is
//! refused with exit 1 naming the field; no node running is exit 2; an acknowledged post
//! survives `kill -9`.

mod common;

use std::time::Instant;

use common::{cli_error, jangteo, json_as, json_try_as, start_node, tcp_addr, wait_for};
use jangteo_node::api::types::{
    ApiAddrFile, BlobView, ErrorBody, ErrorCode, InitView, ListingRef, ListingState, ListingView,
    NewListing, PeerView, StatusView,
};

#[test]
fn a_listing_posted_on_one_node_is_found_on_another() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a, a_id) = start_node(&a_dir, None);
    let (b, b_id) = start_node(&b_dir, Some(&tcp_addr(&a_id)));
    assert_ne!(a_id.peer_id, b_id.peer_id);
    for n in [&a, &b] {
        wait_for("a gossip peer", || {
            let s: StatusView = json_try_as(&n.dir, &["status"])?;
            (s.gossip_peers > 0).then_some(())
        });
    }
    let peers: Vec<PeerView> = json_as(&b.dir, &["peers"]);
    assert!(peers.iter().any(|p| p.peer_id == a_id.peer_id));

    let start = Instant::now();
    let posted: ListingRef = json_as(
        &a.dir,
        &[
            "post",
            "--title",
            "Brompton folding bike",
            "--price",
            "1500000",
            "--currency",
            "KRW",
            "--category",
            "bikes",
            "--condition",
            "good",
            "--description",
            "2019 model, pickup in Mapo",
            "--location",
            "37.5563,126.9220",
        ],
    );
    let id = posted.id;
    let found = wait_for("the listing on node b", || {
        let hits: Vec<ListingView> = json_try_as(&b.dir, &["search", "brompton"])?;
        hits.into_iter().find(|h| h.id == id)
    });
    eprintln!(
        "listing crossed from a to b in {} ms (CLI round trips included)",
        start.elapsed().as_millis()
    );
    assert_eq!(found.seller, a_id.peer_id, "b sees who sells it");
    assert_eq!(found.price, 1_500_000);

    let shown: ListingView = json_as(&b.dir, &["show", &id]);
    assert_eq!(shown.title, "Brompton folding bike");
    assert_eq!(shown.currency, "KRW");
    assert_eq!(shown.category, "bikes");
    assert_eq!(shown.seller, a_id.peer_id);
    assert_eq!(shown.seq, 1);

    // Korean and Japanese words inside unspaced text, found on the other node.
    let ko: ListingRef = json_as(
        &a.dir,
        &[
            "post",
            "--title",
            "중고 자전거를 팝니다",
            "--price",
            "150000",
            "--currency",
            "KRW",
        ],
    );
    let ja: ListingRef = json_as(
        &a.dir,
        &[
            "post",
            "--title",
            "中古の自転車を売ります",
            "--price",
            "8000",
            "--currency",
            "JPY",
        ],
    );
    let ko_hit = wait_for(
        "the Korean listing by a word with its particle stripped",
        || {
            let hits: Vec<ListingView> = json_try_as(&b.dir, &["search", "자전거"])?;
            (hits.len() == 1).then(|| hits[0].id.clone())
        },
    );
    assert_eq!(ko_hit, ko.id);
    let ja_hits = wait_for("the Japanese listing", || {
        let hits: Vec<ListingView> = json_try_as(&b.dir, &["search", "自転車"])?;
        (hits.len() == 1).then_some(hits)
    });
    assert_eq!(ja_hits[0].id, ja.id);
    assert_eq!(ja_hits[0].seller, a_id.peer_id);
    let out = jangteo(&b.dir, &["search", "\"unbalanced"]);
    assert_eq!(out.status.code(), Some(1), "a malformed query is refused");

    // Filters over the other node's store.
    let near: Vec<ListingView> = json_as(
        &b.dir,
        &[
            "search",
            "--near",
            "37.5665,126.9780",
            "--radius-km",
            "10",
            "--max-price",
            "2000000",
        ],
    );
    assert_eq!(near.len(), 1);
    assert!(near[0].distance_km.expect("distance") < 10.0);
    let too_cheap: Vec<ListingView> = json_as(
        &b.dir,
        &["search", "--max-price", "1000", "--currency", "KRW"],
    );
    assert_eq!(too_cheap.len(), 0);

    // Update and retract travel too.
    let upd: ListingRef = json_as(&a.dir, &["update", &id, "--price", "1200000"]);
    assert_eq!(upd.seq, 2);
    wait_for("version 2 on b", || {
        let v: ListingView = json_try_as(&b.dir, &["show", &id])?;
        (v.seq == 2).then_some(())
    });
    assert_eq!(
        json_as::<ListingView>(&b.dir, &["show", &id]).price,
        1_200_000
    );
    // Only the seller can change it.
    let out = jangteo(&b.dir, &["update", &id, "--price", "1"]);
    assert_eq!(out.status.code(), Some(1));
    let retracted: ListingRef = json_as(&a.dir, &["retract", &id]);
    assert_eq!(retracted.seq, 3);
    wait_for("the retraction on b", || {
        let v: ListingView = json_try_as(&b.dir, &["show", &id])?;
        (v.status == ListingState::Retracted).then_some(())
    });
    assert_eq!(
        json_as::<Vec<ListingView>>(&b.dir, &["search", "brompton"]).len(),
        0
    );
}

#[test]
fn bad_input_is_refused_with_the_field_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("n");
    let (node, _) = start_node(&dir, None);
    let cases: [(&[&str], &str); 5] = [
        (
            &["post", "--title", "", "--price", "1", "--currency", "KRW"],
            "title",
        ),
        (
            &[
                "post",
                "--title",
                "kettle",
                "--price",
                "1",
                "--currency",
                "krw",
            ],
            "currency",
        ),
        (
            &[
                "post",
                "--title",
                "kettle",
                "--price",
                "1",
                "--currency",
                "KRW",
                "--category",
                "Home Goods",
            ],
            "category",
        ),
        (
            &[
                "post",
                "--title",
                "kettle",
                "--price",
                "1",
                "--currency",
                "KRW",
                "--location",
                "91,10",
            ],
            "location",
        ),
        (
            &[
                "post",
                "--title",
                "kettle",
                "--price",
                "1",
                "--currency",
                "KRW",
                "--condition",
                "broken",
            ],
            "condition",
        ),
    ];
    for (args, field) in cases {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = jangteo(&node.dir, &all);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(field),
            "{args:?}: stderr {stderr:?} does not name {field}"
        );
        let v = cli_error(&out);
        assert!(v.error.message.contains(field), "{v:?}");
    }
    let long_title = "가".repeat(121);
    let out = jangteo(
        &node.dir,
        &[
            "post",
            "--title",
            &long_title,
            "--price",
            "1",
            "--currency",
            "KRW",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("title"));
    // Nothing was stored by the refused posts.
    assert_eq!(
        json_as::<Vec<ListingView>>(&node.dir, &["search", "--all"]).len(),
        0
    );
    // Unknown id, malformed id, bad search.
    let out = jangteo(&node.dir, &["show", &"ab".repeat(32)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no listing"));
    assert_eq!(jangteo(&node.dir, &["show", "nope"]).status.code(), Some(1));
    let out = jangteo(
        &node.dir,
        &["search", "--min-price", "10", "--max-price", "5"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("min-price"));
    assert_eq!(
        jangteo(&node.dir, &["search", "--sort", "cheapest"])
            .status
            .code(),
        Some(1)
    );
    // Usage errors are exit 2.
    assert_eq!(
        jangteo(
            &node.dir,
            &["post", "--title", "x", "--price", "-5", "--currency", "KRW"]
        )
        .status
        .code(),
        Some(2)
    );
    // A wrong API token is refused.
    std::fs::write(node.dir.join("api.token"), "0".repeat(64)).expect("overwrite token");
    let out = jangteo(&node.dir, &["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"));
}

#[test]
fn no_node_running_is_exit_2_saying_how_to_start_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = jangteo(tmp.path(), &["--json", "status"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("node"), "{stderr}");
    assert!(stderr.contains("jangteo --data-dir"), "{stderr}");
    let v = cli_error(&out);
    assert_eq!(v.error.code, "node_unreachable", "{v:?}");
}

#[test]
fn init_creates_a_private_key_once() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let first: InitView = json_as(tmp.path(), &["init"]);
    assert!(first.created);
    let mode = std::fs::metadata(tmp.path().join("identity.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again: InitView = json_as(tmp.path(), &["init"]);
    assert!(!again.created);
    assert_eq!(first.peer_id, again.peer_id);
}

#[test]
fn an_acknowledged_post_survives_kill_9() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("n");
    let (mut node, _) = start_node(&dir, None);
    let mut ids = Vec::new();
    for i in 0..5 {
        let v: ListingRef = json_as(
            &dir,
            &[
                "post",
                "--title",
                &format!("crash test item {i}"),
                "--price",
                "100",
                "--currency",
                "USD",
            ],
        );
        ids.push(v.id);
    }
    // SIGKILL: no clean shutdown, no flush.
    node.child.kill().expect("kill -9");
    node.child.wait().expect("reap");
    let token_before = std::fs::read_to_string(dir.join("api.token")).expect("token");
    // Lose the search index too: the node rebuilds it from the store, saying so on stderr.
    std::fs::remove_dir_all(dir.join("index")).expect("delete the index folder");
    let (_node, _) = start_node(&dir, None);
    let log = std::fs::read_to_string(dir.with_extension("log")).expect("node log");
    assert!(log.contains("search index ready: 5 listings"), "{log}");
    let found: Vec<ListingView> = json_as(&dir, &["search", "crash test item", "--limit", "10"]);
    assert_eq!(found.len(), 5);
    for id in &ids {
        let v: ListingView = json_as(&dir, &["show", id]);
        assert_eq!(v.currency, "USD");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("api.token")).expect("token"),
        token_before
    );
    let status: StatusView = json_as(&dir, &["status"]);
    assert_eq!(status.listings, 5);
}

#[test]
fn the_api_is_local_token_guarded_and_answers_errors_in_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("n");
    let (_node, _) = start_node(&dir, None);
    let api: ApiAddrFile =
        serde_json::from_str(&std::fs::read_to_string(dir.join("api.json")).expect("api.json"))
            .expect("api.json");
    let addr = api.addr;
    assert!(
        addr.starts_with("127.0.0.1:"),
        "API must listen on loopback by default, got {addr}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("api.token"))
        .expect("token")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(dir.join("api.token")).expect("token");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let url = |p: &str| format!("http://{addr}{p}");
        let check = |resp: reqwest::Response, status: u16, code: ErrorCode| async move {
            assert_eq!(resp.status().as_u16(), status);
            let v: ErrorBody = resp.json().await.expect("JSON error body");
            assert_eq!(v.error.code, code, "{v:?}");
            assert!(!v.error.message.is_empty());
        };
        check(
            http.get(url("/v1/status")).send().await.expect("send"),
            401,
            ErrorCode::Unauthorized,
        )
        .await;
        check(
            http.get(url("/v1/status"))
                .bearer_auth("wrong")
                .send()
                .await
                .expect("send"),
            401,
            ErrorCode::Unauthorized,
        )
        .await;
        let authed = |r: reqwest::RequestBuilder| r.bearer_auth(token.trim());
        let kettle = |title: &str, price: u64| NewListing {
            title: title.into(),
            price,
            currency: "KRW".into(),
            ..NewListing::default()
        };
        let huge = NewListing {
            description: Some("x".repeat(100_000)),
            ..kettle("x", 1)
        };
        check(
            authed(http.post(url("/v1/listings")))
                .json(&huge)
                .send()
                .await
                .expect("send"),
            413,
            ErrorCode::TooLarge,
        )
        .await;
        let malformed = authed(http.post(url("/v1/listings")))
            .header("content-type", "application/json")
            .body("{\"title\": ")
            .send()
            .await
            .expect("send");
        check(malformed, 400, ErrorCode::BadRequest).await;
        // Raw JSON on purpose: a field the contract does not have cannot be written with
        // `NewListing`, and refusing it is what is tested.
        let unknown =
            serde_json::json!({"title": "x", "price": 1, "currency": "KRW", "colour": "red"});
        check(
            authed(http.post(url("/v1/listings")))
                .json(&unknown)
                .send()
                .await
                .expect("send"),
            400,
            ErrorCode::BadRequest,
        )
        .await;
        check(
            authed(http.get(url("/v1/nowhere")))
                .send()
                .await
                .expect("send"),
            404,
            ErrorCode::NoRoute,
        )
        .await;
        check(
            authed(http.delete(url("/v1/listings")))
                .send()
                .await
                .expect("send"),
            405,
            ErrorCode::MethodNotAllowed,
        )
        .await;
        let untyped = authed(http.post(url("/v1/listings")))
            .body("{}")
            .send()
            .await
            .expect("send");
        check(untyped, 415, ErrorCode::UnsupportedMediaType).await;
        check(
            authed(http.get(url("/v1/listings?limit=-1")))
                .send()
                .await
                .expect("send"),
            400,
            ErrorCode::BadQuery,
        )
        .await;
        // The API's document needs no token, and is the one kept in docs/.
        let doc = http
            .get(url("/v1/openapi.json"))
            .send()
            .await
            .expect("send");
        assert_eq!(doc.status().as_u16(), 200);
        assert_eq!(
            doc.text().await.expect("text"),
            jangteo_node::api::openapi_json()
        );
        let ok = authed(http.post(url("/v1/listings")))
            .json(&kettle("kettle", 15000))
            .send()
            .await
            .expect("send");
        assert_eq!(ok.status().as_u16(), 201);
    });
}

#[test]
fn a_photo_posted_with_a_listing_is_fetched_and_verified_by_another_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a, a_id) = start_node(&a_dir, None);
    let (b, _) = start_node(&b_dir, Some(&tcp_addr(&a_id)));
    // 700 KB of bytes that do not compress: three chunks.
    let photo: Vec<u8> = (0u32..700_000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let file = tmp.path().join("camera.jpg");
    std::fs::write(&file, &photo).expect("write photo");
    let posted: ListingRef = json_as(
        &a.dir,
        &[
            "post",
            "--title",
            "필름 카메라",
            "--price",
            "180000",
            "--currency",
            "KRW",
            "--image",
            file.to_str().expect("path"),
        ],
    );
    let listing = posted.id;
    let shown = wait_for("the listing at b", || {
        json_try_as::<ListingView>(&b.dir, &["show", &listing])
    });
    let image = shown.images.first().expect("image id").to_owned();
    let out_file = tmp.path().join("fetched.jpg");
    let got: BlobView = json_as(
        &b.dir,
        &[
            "blob",
            "get",
            &image,
            "--out",
            out_file.to_str().expect("path"),
        ],
    );
    assert_eq!(got.id, image);
    assert_eq!(got.bytes, photo.len() as u64);
    assert_eq!(std::fs::read(&out_file).expect("read"), photo);
    // An unknown blob: exit 1 with the reason; a bad id: exit 1.
    let out = jangteo(
        &b.dir,
        &["blob", "get", &"cd".repeat(32), "--out", "/dev/null"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no peer delivered it"));
    assert_eq!(
        jangteo(&b.dir, &["blob", "get", "xyz", "--out", "/dev/null"])
            .status
            .code(),
        Some(1)
    );
    // A file over 5 MiB is refused before anything is sent.
    let big = tmp.path().join("big.jpg");
    std::fs::write(&big, vec![0u8; 5 * 1024 * 1024 + 1]).expect("write");
    let out = jangteo(
        &a.dir,
        &[
            "post",
            "--title",
            "too big",
            "--price",
            "1",
            "--currency",
            "KRW",
            "--image",
            big.to_str().expect("path"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most"));
}
