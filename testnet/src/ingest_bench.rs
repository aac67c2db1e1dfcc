//! `ingest`: in one process, no network. The same signed listings are (1) checked one by one
//! with ed25519 `verify_strict` on one core, the bare cost of the signatures (and with the
//! node's rule, ZIP-215, one by one and in batches, on one core), and (2) taken
//! through the node's whole ingest path into a fresh data folder: decode, verify, validate
//! and store in RocksDB ([`jangteo_node::ingest::ingest_batch`], pages as sync delivers
//! them), and indexed by the node's indexer running beside it, until the index is
//! committed. The batch path without the indexer, and the one-by-one path
//! ([`jangteo_node::ingest::ingest`]), are timed too. With `--saved-searches N`, the whole
//! path runs again with N saved searches the indexer matches every listing against (the
//! alerts written with its commits), and the matching alone is timed per listing. The two
//! (without and with searches) run `rounds` times each, interleaved and in alternating order
//! (without-with, with-without, ...), each into a fresh data folder, so that a slow moment of
//! the machine or the page cache's warming falls on both sides alike; each round's ratio,
//! their median and the ratio of the summed times are reported.

use std::time::Instant;

use anyhow::{Result, bail};
use ed25519_dalek::{Signature, VerifyingKey};
use jangteo_node::Store;
use jangteo_node::ingest::{Ingested, VERIFY_CHUNK, ingest, ingest_batch, now_ms};
use jangteo_node::services::search::SearchIndex;
use jangteo_protocol::envelope::verify_batch;
use jangteo_protocol::{Envelope, Kind, SignedObject};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use crate::search_bench;

/// Clock ticks a second of `/proc/<pid>/stat` (USER_HZ, 100 on Linux).
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// Objects per [`ingest_batch`] call: one sync page.
pub const PAGE: usize = jangteo_node::net::SYNC_PAGE_MAX_OBJECTS;

/// Signed listings, encoded as they travel.
pub fn signed_listings(count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = search_bench::sellers(1000);
    let now = now_ms();
    (0..count)
        .map(|i| {
            let l = search_bench::generate(&mut rng, i, now);
            SignedObject::sign(Kind::Listing, l.encode(), &keys[i % keys.len()])
                .bytes()
                .to_vec()
        })
        .collect()
}

fn count_stored(out: &[Ingested]) -> usize {
    out.iter()
        .filter(|o| matches!(o, Ingested::Stored { .. }))
        .count()
}

/// The whole ingest path (batch pages, the indexer beside it) into a fresh data folder,
/// with `saved` saved searches matched by the indexer: (seconds, alerts raised, CPU seconds
/// of this process meanwhile, all threads).
fn whole_path(
    objects: &[Vec<u8>],
    saved: usize,
    seed: u64,
    pairs: bool,
) -> Result<(f64, usize, f64)> {
    let count = objects.len();
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("store"))?;
    let index = SearchIndex::open(&dir.path().join("index"), &store)?;
    for s in search_bench::saved_searches(saved, seed, pairs) {
        // Saved at time 0: every listing version is dated after it, so none is skipped.
        index
            .add_saved_search(&store, s, 0)
            .map_err(|e| anyhow::anyhow!("saved search: {e}"))?;
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    let cpu = crate::abuse::cpu_ticks(std::process::id())?;
    let t = Instant::now();
    let (stored, indexed, alerts) = std::thread::scope(|s| -> Result<(usize, usize, usize)> {
        let indexer = s.spawn(|| -> Result<(usize, usize)> {
            let (mut n, mut alerts) = (0, 0);
            loop {
                let finished = done.load(std::sync::atomic::Ordering::Acquire);
                let (got, raised) = index.drain_queue_alerting(&store)?;
                n += got;
                alerts += raised.len();
                if finished && got == 0 {
                    return Ok((n, alerts));
                }
                if got == 0 {
                    std::thread::yield_now();
                }
            }
        });
        let mut stored = 0;
        let now = now_ms();
        for page in objects.chunks(PAGE) {
            stored += count_stored(&ingest_batch(
                &store,
                page,
                Some(Kind::Listing),
                now,
                false,
            )?);
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        let (indexed, alerts) = match indexer.join() {
            Ok(r) => r?,
            Err(p) => std::panic::resume_unwind(p),
        };
        Ok((stored, indexed, alerts))
    })?;
    let secs = t.elapsed().as_secs_f64();
    let cpu = (crate::abuse::cpu_ticks(std::process::id())? - cpu) as f64 / CLOCK_TICKS_PER_S;
    if stored != count || indexed != count {
        bail!("stored {stored} and indexed {indexed} of {count}");
    }
    Ok((secs, alerts, cpu))
}

/// The cost of matching one listing against the saved searches, alone: tokenizing its
/// text and comparing it with the searches its tokens name, over every listing of
/// `objects` (decoded beforehand). Returns (µs per listing, listings that matched any).
fn matching_only(
    objects: &[Vec<u8>],
    saved: usize,
    seed: u64,
    pairs: bool,
) -> Result<(f64, usize)> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("store"))?;
    let index = SearchIndex::open(&dir.path().join("index"), &store)?;
    for s in search_bench::saved_searches(saved, seed, pairs) {
        index
            .add_saved_search(&store, s, 0)
            .map_err(|e| anyhow::anyhow!("saved search: {e}"))?;
    }
    let now = now_ms();
    ingest_batch(&store, objects, Some(Kind::Listing), now, false)?;
    let mut listings = Vec::with_capacity(objects.len());
    store.for_each_listing(None, |l| {
        listings.push(l);
        true
    })?;
    let mut reader = jangteo_node::services::alerts::TokenReader::default();
    let t = Instant::now();
    let mut matched = 0;
    for l in &listings {
        matched += usize::from(!index.saved_matches(l, &mut reader, now).is_empty());
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / listings.len().max(1) as f64;
    Ok((us, matched))
}

/// Runs the benchmark; with `saved` > 0, also the whole path with that many saved searches
/// matched on ingest, and the matching alone.
pub fn run(count: usize, seed: u64, saved: usize, rounds: usize, pairs: bool) -> Result<Value> {
    let objects = signed_listings(count, seed);

    // (1) verify_strict alone, one core; decoding and key parsing done beforehand.
    let prepared: Vec<(VerifyingKey, Vec<u8>, Signature)> = objects
        .iter()
        .map(|b| {
            let e = Envelope::decode(b)?;
            let key = VerifyingKey::from_bytes(&e.author.0)?;
            Ok((
                key,
                e.kind.signing_input(&e.body),
                Signature::from_bytes(&e.signature),
            ))
        })
        .collect::<Result<_>>()?;
    let t = Instant::now();
    let mut ok = 0usize;
    for (key, msg, sig) in &prepared {
        ok += usize::from(key.verify_strict(msg, sig).is_ok());
    }
    let verify_s = t.elapsed().as_secs_f64();
    if ok != count {
        bail!("{} of {count} signatures failed", count - ok);
    }
    // (1z) the node's rule (ZIP-215 and the author-key check), one core: one by one, and in
    // batches of one verifying thread's chunk, as `ingest_batch` checks them.
    let envelopes: Vec<Envelope> = objects
        .iter()
        .map(|b| Envelope::decode(b))
        .collect::<Result<_, _>>()?;
    let t = Instant::now();
    let ok = envelopes.iter().filter(|e| e.verify().is_ok()).count();
    let zip215_s = t.elapsed().as_secs_f64();
    if ok != count {
        bail!("ZIP-215: {} of {count} signatures failed", count - ok);
    }
    let refs: Vec<&Envelope> = envelopes.iter().collect();
    let t = Instant::now();
    let ok: usize = refs
        .chunks(VERIFY_CHUNK)
        .map(|c| verify_batch(c).iter().filter(|r| r.is_ok()).count())
        .sum();
    let zip215_batch_s = t.elapsed().as_secs_f64();
    if ok != count {
        bail!("ZIP-215 batch: {} of {count} signatures failed", count - ok);
    }

    // (2) the whole path, batch: store pages with ingest_batch while the indexer drains.
    let (ingest_s, _, ingest_cpu) = whole_path(&objects, 0, seed, pairs)?;
    // (2s) the same with saved searches, interleaved with runs without them (this first
    // round's without is the run above), and the matching alone.
    let with_saved = if saved > 0 {
        let rounds = rounds.max(1);
        let (mut without, mut with, mut alerts) = (vec![ingest_s], Vec::new(), Vec::new());
        let (mut cpu_without, mut cpu_with) = (vec![ingest_cpu], Vec::new());
        let mut run_with = || -> Result<()> {
            let (secs, raised, cpu) = whole_path(&objects, saved, seed, pairs)?;
            with.push(secs);
            alerts.push(raised);
            cpu_with.push(cpu);
            Ok(())
        };
        let mut run_without = |without: &mut Vec<f64>| -> Result<()> {
            let (secs, _, cpu) = whole_path(&objects, 0, seed, pairs)?;
            without.push(secs);
            cpu_without.push(cpu);
            Ok(())
        };
        for round in 0..rounds {
            if round % 2 == 1 {
                run_with()?;
                run_without(&mut without)?;
            } else {
                if round > 0 {
                    run_without(&mut without)?;
                }
                run_with()?;
            }
        }
        let ratios: Vec<f64> = without.iter().zip(&with).map(|(a, b)| a / b).collect();
        let mut sorted = ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let median = if sorted.len() % 2 == 1 {
            sorted[sorted.len() / 2]
        } else {
            (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
        };
        let (sum_without, sum_with): (f64, f64) = (without.iter().sum(), with.iter().sum());
        let rate = |secs: &Vec<f64>| secs.iter().map(|s| count as f64 / s).collect::<Vec<_>>();
        let (us, matched) = matching_only(&objects, saved, seed, pairs)?;
        let cpu_us = |cpu: &Vec<f64>| cpu.iter().sum::<f64>() * 1e6 / (count * rounds) as f64;
        Some(json!({
            "cpu_us_per_listing_without": cpu_us(&cpu_without),
            "cpu_us_per_listing_with": cpu_us(&cpu_with),
            "saved_searches": saved,
            "two_word_searches": pairs,
            "rounds": rounds,
            "ingest_per_s": count as f64 * rounds as f64 / sum_with,
            "ingest_without_saved_searches_per_s": count as f64 * rounds as f64 / sum_without,
            "ratio": sum_without / sum_with,
            "ratio_median": median,
            "ratio_min": sorted[0],
            "ratio_max": sorted[sorted.len() - 1],
            "ratios": ratios,
            "rounds_without_per_s": rate(&without),
            "rounds_with_per_s": rate(&with),
            "alerts": alerts,
            "matching_us_per_listing": us,
            "listings_matching_any": matched,
        }))
    } else {
        None
    };

    // (2b) the batch path without the indexer: decode, verify, validate, store.
    let dir_b = tempfile::tempdir()?;
    let store_b = Store::open(&dir_b.path().join("store"))?;
    let t = Instant::now();
    let mut stored_b = 0;
    let now = now_ms();
    for page in objects.chunks(PAGE) {
        stored_b += count_stored(&ingest_batch(
            &store_b,
            page,
            Some(Kind::Listing),
            now,
            false,
        )?);
    }
    let store_b_s = t.elapsed().as_secs_f64();
    if stored_b != count {
        bail!("batch without index: stored {stored_b} of {count}");
    }
    drop(store_b);

    // (3) the same, one object at a time on one thread (the path before batches).
    let dir1 = tempfile::tempdir()?;
    let store1 = Store::open(&dir1.path().join("store"))?;
    let index1 = SearchIndex::open(&dir1.path().join("index"), &store1)?;
    let t = Instant::now();
    let now = now_ms();
    let mut stored1 = 0;
    for b in &objects {
        if matches!(
            ingest(&store1, b, Some(Kind::Listing), now, false)?,
            Ingested::Stored { .. }
        ) {
            stored1 += 1;
        }
    }
    let store1_s = t.elapsed().as_secs_f64();
    let indexed1 = index1.drain_queue(&store1)?;
    let one_s = t.elapsed().as_secs_f64();
    if stored1 != count || indexed1 != count {
        bail!("one by one: stored {stored1} and indexed {indexed1} of {count}");
    }

    Ok(json!({
        "count": count,
        "verify_only_per_s": count as f64 / verify_s,
        "zip215_single_per_s": count as f64 / zip215_s,
        "zip215_batch_per_s": count as f64 / zip215_batch_s,
        "batch": VERIFY_CHUNK,
        "ingest_per_s": count as f64 / ingest_s,
        "ratio_to_verify_strict": verify_s / ingest_s,
        "ingest_without_index_per_s": count as f64 / store_b_s,
        "one_by_one_ingest_per_s": count as f64 / one_s,
        "one_by_one_store_only_per_s": count as f64 / store1_s,
        "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "page": PAGE,
        "saved_searches": with_saved,
    }))
}
