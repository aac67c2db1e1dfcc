//! The search engine over a real RocksDB store and a real tantivy index on disk.

use std::path::Path;

use ed25519_dalek::SigningKey;
use jangteo_node::Store;
use jangteo_node::ingest::now_ms;
use jangteo_node::services::search::{SearchIndex, SearchQuery};
use jangteo_protocol::{Condition, Kind, Listing, ListingStatus, Location, SignedObject};

struct Market {
    _dir: tempfile::TempDir,
    store: Store,
    index: SearchIndex,
    now: u64,
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn peer(seed: u8) -> String {
    jangteo_protocol::peer_id_string(&key(seed).verifying_key().to_bytes())
}

fn listing(n: u8, title: &str, price: u64) -> Listing {
    let now = now_ms();
    Listing {
        stamp: None,
        nonce: [n; 16],
        seq: 1,
        created_at: now - 100_000 + u64::from(n) * 1000,
        updated_at: now - 100_000 + u64::from(n) * 1000,
        expires_at: now + 86_400_000,
        status: ListingStatus::Active,
        title: title.into(),
        description: String::new(),
        category: "general".into(),
        condition: None,
        price,
        currency: "KRW".into(),
        quantity: 1,
        images: vec![],
        location: None,
        moderators: vec![],
    }
}

impl Market {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let index = SearchIndex::open(&dir.path().join("index"), &store).expect("index");
        Market {
            _dir: dir,
            store,
            index,
            now: now_ms(),
        }
    }

    fn dir(&self) -> &Path {
        self._dir.path()
    }

    fn put(&self, seller: u8, l: &Listing) -> String {
        let obj = SignedObject::sign(Kind::Listing, l.encode(), &key(seller));
        assert!(
            self.store
                .put_listing(&obj, l, self.now, false)
                .expect("put")
                .stored()
        );
        self.index.drain_queue(&self.store).expect("index");
        l.id(&obj.envelope().author).to_hex()
    }

    fn find(&self, q: SearchQuery) -> Vec<String> {
        self.index
            .search(&self.store, &q)
            .expect("search")
            .into_iter()
            .map(|h| h.listing.listing.title)
            .collect()
    }

    fn text(&self, text: &str) -> Vec<String> {
        self.find(SearchQuery {
            q: Some(text.into()),
            ..Default::default()
        })
    }
}

#[test]
fn korean_japanese_english_and_mixed_text() {
    let m = Market::new();
    m.put(1, &listing(1, "중고 자전거를 팝니다", 150_000));
    m.put(1, &listing(2, "中古の自転車を売ります", 8_000));
    m.put(1, &listing(3, "Two kids bikes for sale", 40_000));
    m.put(1, &listing(4, "아이폰 iPhone13 급처", 500_000));
    m.put(1, &listing(5, "전기 자동차 충전기", 300_000));
    m.put(1, &listing(6, "電気ケトル 美品", 2_000));

    assert_eq!(m.text("자전거"), ["중고 자전거를 팝니다"]);
    assert_eq!(m.text("自転車"), ["中古の自転車を売ります"]);
    assert_eq!(m.text("bike"), ["Two kids bikes for sale"]);
    assert_eq!(m.text("Bikes"), ["Two kids bikes for sale"]);
    assert_eq!(m.text("아이폰"), ["아이폰 iPhone13 급처"]);
    assert_eq!(m.text("iphone 13"), ["아이폰 iPhone13 급처"]);
    assert_eq!(m.text("ケトル"), ["電気ケトル 美品"]);
    // All words must match; no substring noise across unrelated words.
    assert!(m.text("자전거 kettle").is_empty());
    assert!(m.text("car").is_empty());
    assert!(m.text("자동차 자전거").is_empty());
    // A quoted phrase.
    assert_eq!(m.text("\"kids bikes\""), ["Two kids bikes for sale"]);
}

#[test]
fn filters_sorting_distance_and_paging() {
    let m = Market::new();
    let seoul = Location::from_degrees(37.5665, 126.9780);
    let near_seoul = Location::from_degrees(37.5563, 126.9220); // ~5 km
    let busan = Location::from_degrees(35.1796, 129.0756); // ~325 km
    let mut a = listing(1, "bike red", 100_000);
    a.category = "bikes".into();
    a.condition = Some(Condition::Good);
    a.location = near_seoul;
    let mut b = listing(2, "bike blue", 50_000);
    b.category = "bikes".into();
    b.condition = Some(Condition::New);
    b.location = busan;
    let mut c = listing(3, "kettle", 30_000);
    c.category = "home".into();
    c.location = seoul;
    let mut d = listing(4, "usd item", 9_999);
    d.currency = "USD".into();
    d.description = "a bike, a bike, a bike".into();
    m.put(1, &a);
    m.put(2, &b);
    m.put(2, &c);
    m.put(1, &d);

    let q = |f: fn(&mut SearchQuery)| {
        let mut q = SearchQuery::default();
        f(&mut q);
        m.find(q)
    };
    assert_eq!(q(|q| q.category = Some("bikes".into())).len(), 2);
    assert_eq!(q(|q| q.condition = Some("new".into())), ["bike blue"]);
    assert_eq!(q(|q| q.currency = Some("usd".into())), ["usd item"]);
    assert_eq!(
        q(|q| {
            q.min_price = Some(40_000);
            q.max_price = Some(100_000);
            q.currency = Some("KRW".into());
            q.sort = Some("price".into());
        }),
        ["bike blue", "bike red"]
    );
    assert_eq!(q(|q| q.sort = Some("price-desc".into()))[0], "bike red");
    // Newest first when nothing is asked.
    assert_eq!(q(|_| {}), ["usd item", "kettle", "bike blue", "bike red"]);
    // A title match outranks description matches.
    let by_relevance = m.text("bike");
    assert_eq!(by_relevance.len(), 3);
    assert_eq!(by_relevance[2], "usd item", "{by_relevance:?}");
    // Distance: within 10 km of Seoul city hall, nearest first, distance reported.
    let hits = m
        .index
        .search(
            &m.store,
            &SearchQuery {
                near: Some("37.5665,126.9780".into()),
                radius_km: Some(10.0),
                sort: Some("distance".into()),
                ..Default::default()
            },
        )
        .expect("search");
    let got: Vec<(&str, f64)> = hits
        .iter()
        .map(|h| {
            (
                h.listing.listing.title.as_str(),
                h.distance_km.expect("distance"),
            )
        })
        .collect();
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        ["kettle", "bike red"]
    );
    assert!(got[0].1 < 0.01 && (4.0..7.0).contains(&got[1].1), "{got:?}");
    assert_eq!(
        q(|q| {
            q.near = Some("37.5665,126.9780".into());
            q.radius_km = Some(400.0);
            q.q = Some("bike".into());
        })
        .len(),
        2
    );
    // Seller.
    let mine = q(|q| q.seller = Some(peer(2)));
    assert_eq!(mine.len(), 2);
    assert!(mine.contains(&"kettle".to_string()));
    // Paging: two pages of two cover everything once.
    let p1 = q(|q| {
        q.limit = Some(2);
    });
    let p2 = q(|q| {
        q.limit = Some(2);
        q.offset = Some(2);
    });
    assert_eq!(p1.len() + p2.len(), 4);
    assert!(p1.iter().all(|t| !p2.contains(t)));
}

#[test]
fn new_versions_replace_old_ones_and_closed_listings_leave_results() {
    let m = Market::new();
    let mut l = listing(1, "vintage camera", 200_000);
    m.put(1, &l);
    assert_eq!(m.text("camera").len(), 1);
    // Versions of one listing are at least 10 s apart (SPEC §3.1).
    let step = jangteo_protocol::limits::LISTING_VERSION_INTERVAL_MS;
    l.seq = 2;
    l.updated_at += step;
    l.title = "vintage film camera".into();
    m.put(1, &l);
    assert_eq!(
        m.text("camera"),
        ["vintage film camera"],
        "one entry, the new version"
    );
    assert_eq!(m.index.len(), 1);
    l.seq = 3;
    l.updated_at += step;
    l.quantity = 0;
    m.put(1, &l);
    assert!(m.text("camera").is_empty(), "sold out");
    assert_eq!(
        m.find(SearchQuery {
            q: Some("camera".into()),
            all: Some(true),
            ..Default::default()
        })
        .len(),
        1
    );
    l.seq = 4;
    l.quantity = 1;
    l.status = ListingStatus::Retracted;
    m.put(1, &l);
    assert!(m.text("camera").is_empty(), "retracted");

    let e = listing(2, "kettle that expires", 1000);
    m.put(1, &e);
    assert_eq!(m.text("kettle").len(), 1);
    let later = e.expires_at + 1;
    let q = SearchQuery {
        q: Some("kettle".into()),
        ..Default::default()
    };
    assert!(
        m.index
            .search_at(&m.store, &q, later)
            .expect("search")
            .is_empty(),
        "expired"
    );
    let all = SearchQuery {
        all: Some(true),
        ..q
    };
    assert_eq!(
        m.index
            .search_at(&m.store, &all, later)
            .expect("search")
            .len(),
        1
    );
}

#[test]
fn a_deleted_or_damaged_index_is_rebuilt_from_the_store() {
    let Market {
        _dir, store, index, ..
    } = {
        let m = Market::new();
        m.put(1, &listing(1, "중고 자전거를 팝니다", 1));
        m.put(1, &listing(2, "bike", 1));
        m
    };
    drop(index);
    std::fs::remove_dir_all(_dir.path().join("index")).expect("delete index");
    let index = SearchIndex::open(&_dir.path().join("index"), &store).expect("rebuilt");
    assert_eq!(index.len(), 2);
    let q = SearchQuery {
        q: Some("자전거".into()),
        ..Default::default()
    };
    assert_eq!(index.search(&store, &q).expect("search").len(), 1);
    drop(index);
    // Damage: overwrite the index's meta file.
    std::fs::write(_dir.path().join("index").join("meta.json"), b"{ not json").expect("damage");
    let index = SearchIndex::open(&_dir.path().join("index"), &store).expect("rebuilt again");
    assert_eq!(index.search(&store, &q).expect("search").len(), 1);
}

#[test]
fn listings_stored_but_not_yet_indexed_are_indexed_at_the_next_start() {
    let m = Market::new();
    let l = listing(1, "kettle", 1000);
    let obj = SignedObject::sign(Kind::Listing, l.encode(), &key(1));
    // Stored, the indexer never ran (as after a crash between the two).
    m.store.put_listing(&obj, &l, m.now, true).expect("put");
    assert!(m.text("kettle").is_empty());
    let Market {
        _dir, store, index, ..
    } = m;
    drop(index);
    let index = SearchIndex::open(&_dir.path().join("index"), &store).expect("reopen");
    let q = SearchQuery {
        q: Some("kettle".into()),
        ..Default::default()
    };
    assert_eq!(index.search(&store, &q).expect("search").len(), 1);
    assert!(store.index_queue(10).expect("queue").is_empty());
}

#[test]
fn malformed_queries_are_refused_with_a_reason() {
    let m = Market::new();
    m.put(1, &listing(1, "kettle", 1000));
    let cases: Vec<(SearchQuery, &str)> = vec![
        (
            SearchQuery {
                q: Some("\"unbalanced".into()),
                ..Default::default()
            },
            "query",
        ),
        (
            SearchQuery {
                q: Some("x".repeat(300)),
                ..Default::default()
            },
            "longer",
        ),
        (
            SearchQuery {
                min_price: Some(10),
                max_price: Some(5),
                ..Default::default()
            },
            "min-price",
        ),
        (
            SearchQuery {
                near: Some("1,2".into()),
                radius_km: Some(1e9),
                ..Default::default()
            },
            "radius",
        ),
        (
            SearchQuery {
                radius_km: Some(5.0),
                ..Default::default()
            },
            "near",
        ),
        (
            SearchQuery {
                near: Some("100,2".into()),
                ..Default::default()
            },
            "near",
        ),
        (
            SearchQuery {
                sort: Some("cheapest".into()),
                ..Default::default()
            },
            "sort",
        ),
        (
            SearchQuery {
                sort: Some("distance".into()),
                ..Default::default()
            },
            "distance",
        ),
        (
            SearchQuery {
                limit: Some(0),
                ..Default::default()
            },
            "limit",
        ),
        (
            SearchQuery {
                limit: Some(100_000),
                ..Default::default()
            },
            "limit",
        ),
        (
            SearchQuery {
                offset: Some(1_000_000),
                ..Default::default()
            },
            "offset",
        ),
        (
            SearchQuery {
                seller: Some("nobody".into()),
                ..Default::default()
            },
            "seller",
        ),
        (
            SearchQuery {
                condition: Some("broken".into()),
                ..Default::default()
            },
            "condition",
        ),
    ];
    for (q, word) in cases {
        let err = m.index.search(&m.store, &q).expect_err(word).to_string();
        assert!(err.contains(word), "{err:?} should mention {word}");
    }
    let _ = m.dir();
}
