//! `search-bench`: the search engine at market size, in-process (real RocksDB, real
//! tantivy, no network): indexing rate, query latency over a mix of text and filters,
//! index size on disk and the process's memory.

use std::time::Instant;

use anyhow::Result;
use ed25519_dalek::SigningKey;
use jangteo_node::Store;
use jangteo_node::ingest::now_ms;
use jangteo_node::services::search::{SearchIndex, SearchQuery};
use jangteo_protocol::{Condition, Kind, Listing, ListingStatus, Location, SignedObject};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const KO: &[&str] = &[
    "자전거",
    "냉장고",
    "아이폰",
    "노트북",
    "책상",
    "의자",
    "유모차",
    "카메라",
    "기타",
    "운동화",
    "가방",
    "모니터",
    "전자레인지",
    "청소기",
    "텐트",
    "골프채",
    "세탁기",
    "소파",
    "캠핑의자",
    "원피스",
];
const KO_TAIL: &[&str] = &[
    "를 팝니다",
    " 판매합니다",
    " 급처",
    " 새상품",
    " 직거래",
    "이 필요 없어서 팔아요",
];
const KO_HEAD: &[&str] = &["중고", "거의 새것", "깨끗한", "이사 정리", ""];
const JA: &[&str] = &[
    "自転車",
    "冷蔵庫",
    "炊飯器",
    "電子レンジ",
    "カメラ",
    "ギター",
    "本棚",
    "ソファ",
    "掃除機",
    "腕時計",
    "スニーカー",
    "ベビーカー",
    "ノートパソコン",
    "テント",
    "椅子",
];
const JA_TAIL: &[&str] = &[
    "を売ります",
    "を譲ります",
    " 美品",
    " 中古",
    "、引き取りのみ",
];
const EN: &[&str] = &[
    "bike",
    "fridge",
    "laptop",
    "desk",
    "chair",
    "stroller",
    "camera",
    "guitar",
    "sneakers",
    "bag",
    "monitor",
    "microwave",
    "vacuum",
    "tent",
    "golf clubs",
    "sofa",
    "kettle",
    "headphones",
];
const EN_HEAD: &[&str] = &[
    "used",
    "vintage",
    "barely used",
    "kids",
    "almost new",
    "cheap",
];
const CATEGORIES: &[&str] = &[
    "bikes",
    "electronics",
    "furniture",
    "home",
    "kids",
    "fashion",
    "sports",
    "music",
    "books",
    "outdoor",
    "appliances",
    "general",
];
const CITIES: &[(f64, f64, &str)] = &[
    (37.5665, 126.9780, "KRW"),
    (35.1796, 129.0756, "KRW"),
    (35.6762, 139.6503, "JPY"),
    (34.6937, 135.5023, "JPY"),
    (40.7128, -74.0060, "USD"),
];

fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[rng.gen_range(0..xs.len())]
}

/// Listing `i` of the generated market, created up to 20 days before `now`.
pub fn generate(rng: &mut StdRng, i: usize, now: u64) -> Listing {
    let city = CITIES[rng.gen_range(0..CITIES.len())];
    let title = match city.2 {
        "KRW" if rng.gen_bool(0.2) => format!(
            "{} {} {}",
            pick(rng, KO),
            pick(rng, EN),
            pick(rng, KO_TAIL).trim()
        ),
        "KRW" => format!(
            "{} {}{}",
            pick(rng, KO_HEAD),
            pick(rng, KO),
            pick(rng, KO_TAIL)
        )
        .trim()
        .to_owned(),
        "JPY" => format!("{}{}", pick(rng, JA), pick(rng, JA_TAIL)),
        _ => format!("{} {}", pick(rng, EN_HEAD), pick(rng, EN)),
    };
    let price = match city.2 {
        "KRW" => rng.gen_range(1..2_000) * 1_000,
        "JPY" => rng.gen_range(1..2_000) * 100,
        _ => rng.gen_range(100..200_000),
    };
    let created = now - rng.gen_range(0..20 * 86_400_000u64);
    Listing {
        stamp: None,
        nonce: {
            let mut n = [0u8; 16];
            n[..8].copy_from_slice(&(i as u64).to_be_bytes());
            n
        },
        seq: 1,
        created_at: created,
        updated_at: created,
        expires_at: created + 30 * 86_400_000,
        status: ListingStatus::Active,
        title,
        description: format!("{} {} {}", pick(rng, EN_HEAD), pick(rng, EN), pick(rng, KO)),
        category: pick(rng, CATEGORIES).to_owned(),
        condition: [
            Condition::New,
            Condition::LikeNew,
            Condition::Good,
            Condition::Fair,
        ]
        .get(rng.gen_range(0..5))
        .copied(),
        price,
        currency: city.2.to_owned(),
        quantity: 1,
        images: vec![],
        moderators: vec![],
        location: Location::from_degrees(
            city.0 + rng.gen_range(-0.3..0.3),
            city.1 + rng.gen_range(-0.3..0.3),
        ),
    }
}

/// `k` saved searches over the generated market's words: one word (Korean, Japanese or
/// English) each, with a random mix of the filters people add (category, highest price,
/// condition, currency, 20 km around a city).
///
/// With `pairs`, each search asks for two words (both must be there), so that few listings
/// match any search, as in a market where alerts are for what is rare; without, one word, so
/// that nearly every generated listing matches some search (the worst case for alerts).
pub fn saved_searches(
    k: usize,
    seed: u64,
    pairs: bool,
) -> Vec<jangteo_node::api::types::NewSavedSearch> {
    use rand::SeedableRng;
    let mut rng = StdRng::seed_from_u64(seed);
    (0..k)
        .map(|_| {
            let rng = &mut rng;
            let word = |rng: &mut StdRng| match rng.gen_range(0..3) {
                0 => pick(rng, KO),
                1 => pick(rng, JA),
                _ => pick(rng, EN),
            };
            let q = if pairs {
                format!("{} {}", word(rng), word(rng))
            } else {
                word(rng).to_owned()
            };
            let city = CITIES[rng.gen_range(0..CITIES.len())];
            let near = rng.gen_bool(0.2);
            jangteo_node::api::types::NewSavedSearch {
                q: Some(q),
                category: rng.gen_bool(0.5).then(|| pick(rng, CATEGORIES).to_owned()),
                condition: rng
                    .gen_bool(0.3)
                    .then(|| pick(rng, &["new", "like-new", "good", "fair"]).to_owned()),
                currency: rng.gen_bool(0.3).then(|| city.2.to_owned()),
                max_price: rng
                    .gen_bool(0.5)
                    .then(|| rng.gen_range(1..2_000u64) * 1_000),
                near: near.then(|| format!("{},{}", city.0, city.1)),
                radius_km: near.then_some(20.0),
                ..Default::default()
            }
        })
        .collect()
}

fn query(rng: &mut StdRng) -> (&'static str, SearchQuery) {
    let word = |rng: &mut StdRng| match rng.gen_range(0..3) {
        0 => pick(rng, KO),
        1 => pick(rng, JA),
        _ => pick(rng, EN),
    };
    let city = CITIES[rng.gen_range(0..CITIES.len())];
    let near = format!("{},{}", city.0, city.1);
    let limit = Some(20);
    match rng.gen_range(0..6) {
        0 => (
            "text",
            SearchQuery {
                q: Some(word(rng).into()),
                limit,
                ..Default::default()
            },
        ),
        1 => (
            "text+category",
            SearchQuery {
                q: Some(word(rng).into()),
                category: Some(pick(rng, CATEGORIES).into()),
                limit,
                ..Default::default()
            },
        ),
        2 => (
            "text+price",
            SearchQuery {
                q: Some(word(rng).into()),
                currency: Some(city.2.into()),
                min_price: Some(10_000),
                max_price: Some(500_000),
                sort: Some("price".into()),
                limit,
                ..Default::default()
            },
        ),
        3 => (
            "near+distance",
            SearchQuery {
                near: Some(near),
                radius_km: Some(10.0),
                sort: Some("distance".into()),
                limit,
                ..Default::default()
            },
        ),
        4 => (
            "category+price-sort",
            SearchQuery {
                category: Some(pick(rng, CATEGORIES).into()),
                sort: Some("price".into()),
                limit,
                ..Default::default()
            },
        ),
        _ => (
            "text+near",
            SearchQuery {
                q: Some(word(rng).into()),
                near: Some(near),
                radius_km: Some(25.0),
                limit,
                ..Default::default()
            },
        ),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// The process's resident and peak memory in bytes, from /proc.
pub fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    walk(p).unwrap_or(0)
}

fn walk(p: &std::path::Path) -> std::io::Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(p)? {
        let e = e?;
        let m = e.metadata()?;
        n += if m.is_dir() {
            walk(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(n)
}

/// `n` seller keys, the same in every run.
pub fn sellers(n: u32) -> Vec<SigningKey> {
    (0..n)
        .map(|i| {
            let mut s = [7u8; 32];
            s[..4].copy_from_slice(&i.to_be_bytes());
            SigningKey::from_bytes(&s)
        })
        .collect()
}

/// Runs the benchmark and returns its report.
pub fn run(listings: usize, queries: usize, seed: u64) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("store"))?;
    let index = SearchIndex::open(&dir.path().join("index"), &store)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let sellers = sellers(1000);
    let now = now_ms();
    let t = Instant::now();
    for i in 0..listings {
        let l = generate(&mut rng, i, now);
        let obj = SignedObject::sign(Kind::Listing, l.encode(), &sellers[i % sellers.len()]);
        store.put_listing(&obj, &l, now, false)?;
    }
    let store_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let indexed = index.drain_queue(&store)?;
    let index_s = t.elapsed().as_secs_f64();
    let mut by_kind: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    let mut all = Vec::with_capacity(queries);
    let mut results = 0usize;
    for _ in 0..queries {
        let (kind, q) = query(&mut rng);
        let t = Instant::now();
        let hits = index.search(&store, &q)?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        results += hits.len();
        all.push(ms);
        by_kind.entry(kind).or_default().push(ms);
    }
    all.sort_by(f64::total_cmp);
    let kinds: serde_json::Map<String, Value> = by_kind
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(f64::total_cmp);
            (k.to_owned(), json!({"queries": v.len(), "p50_ms": percentile(&v, 0.5), "p99_ms": percentile(&v, 0.99)}))
        })
        .collect();
    let (rss, peak) = memory();
    Ok(json!({
        "listings": listings,
        "indexed": indexed,
        "store_and_sign_per_s": listings as f64 / store_s,
        "index_per_s": indexed as f64 / index_s,
        "queries": queries,
        "mean_results": results as f64 / queries.max(1) as f64,
        "p50_ms": percentile(&all, 0.50),
        "p95_ms": percentile(&all, 0.95),
        "p99_ms": percentile(&all, 0.99),
        "by_kind": kinds,
        "index_bytes": dir_bytes(&dir.path().join("index")),
        "store_bytes": dir_bytes(&dir.path().join("store")),
        "rss_bytes": rss,
        "peak_rss_bytes": peak,
    }))
}
