//! Saved searches over a real RocksDB store and a real tantivy index on disk: they alert on
//! exactly the listings `search` finds with the same text and filters (Korean, Japanese,
//! English, phrases, OR, -word, category, condition, prices, currency, distance), once per
//! listing, and bad ones are refused with the reason.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::SigningKey;
use jangteo_node::Store;
use jangteo_node::api::types::{NewSavedSearch, NotificationKind, NotificationView};
use jangteo_node::ingest::now_ms;
use jangteo_node::services::alerts::{AlertError, SAVED_SEARCHES_MAX};
use jangteo_node::services::search::SearchIndex;
use jangteo_protocol::{Condition, Kind, Listing, ListingStatus, Location, SignedObject};

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

struct Market {
    _dir: tempfile::TempDir,
    store: Store,
    index: SearchIndex,
    now: u64,
}

impl Market {
    fn new(owner: Option<u8>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let owner = owner.map(|s| jangteo_protocol::PublicKey(key(s).verifying_key().to_bytes()));
        let index = SearchIndex::open_for(&dir.path().join("index"), &store, owner).expect("index");
        Market {
            _dir: dir,
            store,
            index,
            now: now_ms(),
        }
    }

    fn save(&self, s: NewSavedSearch) -> u64 {
        self.index
            .add_saved_search(&self.store, s, self.now - 60_000)
            .expect("saved")
            .id
    }

    /// Stores a listing version and runs the indexer; returns the listing id and the alerts
    /// the indexer raised.
    fn put(&self, seller: u8, l: &Listing) -> (String, Vec<NotificationView>) {
        let obj = SignedObject::sign(Kind::Listing, l.encode(), &key(seller));
        assert!(
            self.store
                .put_listing(&obj, l, self.now, false)
                .expect("put")
                .stored()
        );
        let (_, raised) = self.index.drain_queue_alerting(&self.store).expect("index");
        (l.id(&obj.envelope().author).to_hex(), raised)
    }
}

fn listing(n: u8, title: &str, description: &str, price: u64) -> Listing {
    let now = now_ms();
    Listing {
        nonce: [n; 16],
        seq: 1,
        created_at: now - 10_000,
        updated_at: now - 10_000,
        expires_at: now + 86_400_000,
        status: ListingStatus::Active,
        title: title.into(),
        description: description.into(),
        category: "general".into(),
        condition: None,
        price,
        currency: "KRW".into(),
        quantity: 1,
        images: vec![],
        location: None,
        moderators: vec![],
        stamp: None,
    }
}

/// Title, description, price, currency, category, condition, place.
type Row = (
    &'static str,
    &'static str,
    u64,
    &'static str,
    &'static str,
    Option<Condition>,
    Option<Location>,
);

/// A small market in three languages with every field a filter reads.
fn corpus() -> Vec<Listing> {
    let seoul = Location::from_degrees(37.5665, 126.9780);
    let busan = Location::from_degrees(35.1796, 129.0756);
    let tokyo = Location::from_degrees(35.6762, 139.6503);
    let rows: Vec<Row> = vec![
        (
            "중고 자전거를 팝니다",
            "출퇴근용, 상태 좋아요",
            150_000,
            "KRW",
            "bikes",
            Some(Condition::Good),
            seoul,
        ),
        (
            "어린이 자전거",
            "보조바퀴 포함",
            40_000,
            "KRW",
            "bikes",
            Some(Condition::LikeNew),
            busan,
        ),
        (
            "전기 자전거 배터리",
            "자전거 부품",
            250_000,
            "KRW",
            "bikes",
            None,
            seoul,
        ),
        (
            "자동차 충전기",
            "전기 자동차용",
            300_000,
            "KRW",
            "vehicles",
            Some(Condition::New),
            None,
        ),
        (
            "中古の自転車を売ります",
            "通勤用",
            8_000,
            "JPY",
            "bikes",
            Some(Condition::Fair),
            tokyo,
        ),
        (
            "電気ケトル 美品",
            "ほぼ新品の電気ケトル",
            2_000,
            "JPY",
            "home",
            Some(Condition::LikeNew),
            tokyo,
        ),
        (
            "Two kids bikes for sale",
            "red and blue bikes",
            40_000,
            "KRW",
            "bikes",
            None,
            seoul,
        ),
        (
            "Road bike, carbon frame",
            "fast bike, light",
            900_000,
            "KRW",
            "bikes",
            Some(Condition::Good),
            busan,
        ),
        (
            "Walnut desk",
            "solid walnut, no scratches",
            90_000,
            "KRW",
            "furniture",
            Some(Condition::Good),
            seoul,
        ),
        (
            "Standing desk frame",
            "electric, no top",
            120_000,
            "KRW",
            "furniture",
            None,
            None,
        ),
        (
            "아이폰 iPhone13 급처",
            "배터리 89%",
            500_000,
            "KRW",
            "digital",
            Some(Condition::Good),
            seoul,
        ),
        (
            "iPhone 13 case",
            "clear case for iphone13",
            5_000,
            "KRW",
            "digital",
            Some(Condition::New),
            None,
        ),
        (
            "Bike helmet",
            "kids size",
            15_000,
            "USD",
            "sports",
            Some(Condition::Fair),
            None,
        ),
        (
            "자전거 헬멧",
            "성인용",
            20_000,
            "KRW",
            "sports",
            None,
            busan,
        ),
    ];
    rows.into_iter()
        .enumerate()
        .map(|(i, (t, d, p, c, cat, cond, loc))| {
            let mut l = listing(i as u8 + 1, t, d, p);
            l.currency = c.into();
            l.category = cat.into();
            l.condition = cond;
            l.location = loc;
            l
        })
        .collect()
}

fn saved(q: Option<&str>) -> NewSavedSearch {
    NewSavedSearch {
        q: q.map(str::to_owned),
        ..NewSavedSearch::default()
    }
}

/// The searches compared: text alone, and text with each filter.
fn searches() -> Vec<NewSavedSearch> {
    let text = [
        "자전거",
        "자전거 -전기",
        "自転車",
        "ケトル",
        "bike",
        "bikes",
        "\"kids bikes\"",
        "desk OR 헬멧",
        "iphone 13",
        "아이폰",
        "title:desk",
        "body:walnut",
        "bike -helmet",
        "(bike OR 자전거) AND kids",
        "*",
        "nothing-here",
    ];
    let mut out: Vec<NewSavedSearch> = text.iter().map(|q| saved(Some(q))).collect();
    out.push(NewSavedSearch {
        max_price: Some(200_000),
        ..saved(Some("자전거"))
    });
    out.push(NewSavedSearch {
        min_price: Some(50_000),
        max_price: Some(1_000_000),
        currency: Some("krw".into()),
        ..saved(Some("bike OR 자전거"))
    });
    out.push(NewSavedSearch {
        category: Some("bikes".into()),
        ..saved(None)
    });
    out.push(NewSavedSearch {
        condition: Some("like-new".into()),
        ..saved(None)
    });
    out.push(NewSavedSearch {
        near: Some("37.56,126.97".into()),
        radius_km: Some(30.0),
        ..saved(Some("자전거 OR desk OR 아이폰"))
    });
    out.push(NewSavedSearch {
        near: Some("35.6,139.6".into()),
        ..saved(None)
    });
    out.push(NewSavedSearch {
        currency: Some("JPY".into()),
        max_price: Some(5_000),
        ..saved(None)
    });
    out
}

#[test]
fn saved_searches_alert_on_exactly_what_search_finds() {
    let m = Market::new(None);
    let specs = searches();
    let ids: Vec<u64> = specs.iter().map(|s| m.save(s.clone())).collect();
    let mut alerted: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut per_listing = BTreeMap::new();
    for (i, l) in corpus().iter().enumerate() {
        let (id, raised) = m.put(2 + (i % 3) as u8, l);
        assert!(raised.len() <= 1, "one alert per listing: {raised:?}");
        for n in raised {
            assert_eq!(n.kind, NotificationKind::SavedSearch);
            assert_eq!(n.listing.as_deref(), Some(id.as_str()));
            for s in &n.searches {
                alerted.entry(*s).or_default().insert(id.clone());
            }
            per_listing.insert(id.clone(), n.searches.clone());
        }
    }
    let mut compared = 0;
    for (spec, id) in specs.iter().zip(&ids) {
        let mut q = spec.as_query();
        q.limit = Some(500);
        let found: BTreeSet<String> = m
            .index
            .search(&m.store, &q)
            .expect("search")
            .into_iter()
            .map(|h| h.listing.id.to_hex())
            .collect();
        let got = alerted.get(id).cloned().unwrap_or_default();
        assert_eq!(
            got, found,
            "saved search {spec:?} alerted on what search does not find, or missed some"
        );
        compared += usize::from(!found.is_empty());
    }
    // The comparison means something: most searches find some listings, and Korean and
    // Japanese ones match inside unspaced text.
    assert!(
        compared >= specs.len() - 2,
        "{compared} of {} found something",
        specs.len()
    );
    let korean = alerted.get(&ids[0]).map_or(0, BTreeSet::len);
    assert_eq!(korean, 4, "자전거 in titles and descriptions");
    assert_eq!(alerted.get(&ids[2]).map_or(0, BTreeSet::len), 1, "自転車");
    // Each alert is stored and listed.
    let (held, unread) = m.store.notifications(false, 100).expect("list");
    assert_eq!(held.len(), per_listing.len());
    assert_eq!(unread as usize, per_listing.len());
}

#[test]
fn one_alert_per_listing_ever_and_none_for_own_or_closed_listings() {
    let m = Market::new(Some(1));
    let bikes = m.save(NewSavedSearch {
        max_price: Some(200_000),
        ..saved(Some("자전거"))
    });
    let cheap = m.save(NewSavedSearch {
        max_price: Some(100_000),
        ..saved(None)
    });
    // Too dear at first: no alert; a price cut brings it in: one alert naming both searches.
    let mut l = listing(1, "중고 자전거를 팝니다", "", 250_000);
    let (id, raised) = m.put(2, &l);
    assert!(raised.is_empty(), "{raised:?}");
    // Versions of one listing are at least 10 s apart (SPEC §3.1).
    let step = jangteo_protocol::limits::LISTING_VERSION_INTERVAL_MS;
    l.seq = 2;
    l.updated_at += step;
    l.price = 90_000;
    let (_, raised) = m.put(2, &l);
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].searches, vec![bikes, cheap]);
    assert_eq!(raised[0].listing.as_deref(), Some(id.as_str()));
    assert_eq!(raised[0].price, Some(90_000));
    // Another cut of the same listing: no second alert.
    l.seq = 3;
    l.updated_at += step;
    l.price = 80_000;
    assert!(m.put(2, &l).1.is_empty());
    // This node's own listing, and a sold-out one, raise none.
    assert!(
        m.put(1, &listing(2, "자전거 팝니다", "", 1_000))
            .1
            .is_empty()
    );
    let mut sold = listing(3, "자전거", "", 1_000);
    sold.quantity = 0;
    assert!(m.put(2, &sold).1.is_empty());
    // A listing dated well before the search was saved (an old one learned by sync) raises
    // none; one dated a little before it (another clock) does.
    let mut old = listing(4, "자전거 old", "", 1_000);
    old.created_at = m.now - 3_600_000;
    old.updated_at = old.created_at;
    assert!(m.put(3, &old).1.is_empty());
    // Removing a search stops its alerts.
    m.index
        .remove_saved_search(&m.store, bikes)
        .expect("removed");
    let (_, raised) = m.put(3, &listing(5, "자전거 new", "", 150_000_000));
    assert!(raised.is_empty(), "{raised:?}");
    let (_, raised) = m.put(3, &listing(6, "자전거 new", "", 50_000));
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].searches, vec![cheap]);
    // The alerts survive a reopen, and so do the searches.
    let dir = m._dir;
    drop(m.index);
    drop(m.store);
    let store = Store::open(&dir.path().join("store")).expect("reopen");
    assert_eq!(store.saved_searches().expect("list").len(), 1);
    assert_eq!(store.notifications(false, 10).expect("list").0.len(), 2);
}

#[test]
fn a_search_saved_later_matches_words_the_indexer_has_already_read() {
    // The indexer remembers what each word it read analyzes to, and whether a search names
    // it: a search saved or removed later must still see every word.
    let m = Market::new(None);
    let lamp = m.save(saved(Some("lamp")));
    let (_, raised) = m.put(2, &listing(1, "walnut desk", "with a drawer", 50_000));
    assert!(raised.is_empty(), "{raised:?}");
    // The same words again, as written before: read anew, they match the new search.
    let desk = m.save(saved(Some("desks")));
    let (_, raised) = m.put(2, &listing(2, "walnut desk", "with a drawer", 60_000));
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].searches, vec![desk]);
    // After a removal the tokens are numbered anew (`desk` was second, it is first): the
    // words read under the old numbers are read again.
    m.index
        .remove_saved_search(&m.store, lamp)
        .expect("removed");
    let (_, raised) = m.put(2, &listing(3, "walnut desk", "with a drawer", 10_000));
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0].searches, vec![desk]);
    // Phrases see repeated words at their positions, in order.
    let phrase = m.save(saved(Some("\"desk drawer\"")));
    let (_, raised) = m.put(
        2,
        &listing(4, "drawer desk desk", "desk desk desk drawer", 1),
    );
    assert_eq!(raised[0].searches, vec![desk, phrase]);
    let (_, raised) = m.put(2, &listing(5, "drawer desk", "desk, and a drawer", 1));
    assert_eq!(raised[0].searches, vec![desk]);
    // The body is the description, then the category's words, as the index reads it: a
    // phrase runs on from one into the other, as `search` finds it.
    let kids = m.save(saved(Some("\"kids road bikes\"")));
    let mut l = listing(6, "helmet", "sized for kids", 1);
    l.category = "road-bikes".into();
    let (id, raised) = m.put(2, &l);
    assert_eq!(raised[0].searches, vec![kids]);
    let found = m
        .index
        .search(&m.store, &saved(Some("\"kids road bikes\"")).as_query())
        .expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].listing.id.to_hex(), id);
}

#[test]
fn bad_saved_searches_are_refused_with_the_reason() {
    let m = Market::new(None);
    let refused = |s: NewSavedSearch| -> String {
        match m.index.add_saved_search(&m.store, s, m.now) {
            Err(AlertError::BadQuery(why)) => why,
            other => panic!("not refused as a bad query: {other:?}"),
        }
    };
    for (q, says) in [
        ("price:[1 TO 5]", "range"),
        ("category:bikes", "filters"),
        ("\"자전거 팝니다\"~2", "slop"),
        ("%%% ,,,", "query"),
        ("-자전거", ""),
    ] {
        let why = refused(saved(Some(q)));
        assert!(why.contains(says), "{q}: {why}");
    }
    assert!(refused(saved(Some(&"자".repeat(300)))).contains("longer"));
    assert!(refused(saved(None)).contains("at least one filter"));
    assert!(
        refused(NewSavedSearch {
            min_price: Some(10),
            max_price: Some(5),
            ..saved(None)
        })
        .contains("min-price")
    );
    assert!(
        refused(NewSavedSearch {
            condition: Some("mint".into()),
            ..saved(None)
        })
        .contains("condition")
    );
    assert!(
        refused(NewSavedSearch {
            near: Some("north".into()),
            ..saved(None)
        })
        .contains("near")
    );
    assert!(
        refused(NewSavedSearch {
            seller: Some("someone".into()),
            ..saved(None)
        })
        .contains("peer id")
    );
    assert!(
        refused(NewSavedSearch {
            category: Some("x".repeat(200)),
            ..saved(None)
        })
        .contains("longer")
    );
    // Nothing refused was stored.
    assert!(m.store.saved_searches().expect("list").is_empty());
    // The cap.
    for i in 0..SAVED_SEARCHES_MAX {
        m.index
            .add_saved_search(&m.store, saved(Some(&format!("word{i}"))), m.now)
            .expect("under the cap");
    }
    assert!(matches!(
        m.index.add_saved_search(&m.store, saved(Some("one more")), m.now),
        Err(AlertError::TooMany(n)) if n == SAVED_SEARCHES_MAX
    ));
    assert!(matches!(
        m.index.remove_saved_search(&m.store, 999_999),
        Err(AlertError::NotFound(_))
    ));
}
