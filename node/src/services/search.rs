//! The local search engine: a tantivy index over the listings this node holds.
//!
//! It owns the index folder, the text analysis (English stemming; Korean and Japanese by
//! overlapping CJK bigrams, see [`MarketTokenizer`]), query building from a
//! [`SearchQuery`], and the indexer that follows the store through its index queue (an
//! outbox written in the same RocksDB batch as each listing version, so a crash never leaves
//! the index silently behind). The indexer also matches each listing it applies against the
//! saved searches ([`crate::services::alerts`]) and writes their alerts with the batch that
//! empties the outbox. The store stays the source of truth: results are read back from it,
//! and a missing or damaged index is rebuilt from it at start.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jangteo_protocol::{Condition, ListingId, Location, PublicKey, public_key_from_peer_id};
use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::tokenizer::{
    LowerCaser, RemoveLongFilter, Stemmer, TextAnalyzer, Token, TokenStream, Tokenizer,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Score, Searcher,
    TantivyDocument, Term, doc,
};
use tokio::sync::{broadcast, watch};
use unicode_normalization::UnicodeNormalization;

use crate::NodeEvent;
use crate::api::types::{NewSavedSearch, NotificationView, SavedSearchView};
use crate::clock::now_ms;
use crate::error::StoreError;
use crate::services::alerts::{
    AlertError, SAVED_SEARCHES_MAX, SavedSearches, TokenReader, alert_notification,
};
use crate::store::{Alert, NOTIFICATIONS_PRUNED_TO, Store, StoredListing};

/// Longest search text accepted, in characters.
pub const QUERY_MAX_CHARS: usize = 256;
/// Most results one search returns.
pub const SEARCH_LIMIT_MAX: usize = 500;
/// Results when no limit is given.
pub const SEARCH_LIMIT_DEFAULT: usize = 50;
/// Deepest page offset accepted.
pub const SEARCH_OFFSET_MAX: usize = 10_000;
/// Candidates examined for an exact distance filter or sort (after the bounding box).
pub const DISTANCE_CANDIDATES_MAX: usize = 20_000;
/// Largest search radius (half the earth's circumference).
pub const RADIUS_MAX_KM: f64 = 20_040.0;
/// Memory the index writer may use before flushing a segment.
pub const WRITER_MEMORY_BYTES: usize = 40_000_000;
/// Most queued listings indexed in one commit.
pub const INDEX_BATCH_MAX: usize = 10_000;
/// Tokens this long or longer are not indexed (noise such as pasted hashes).
pub const TOKEN_MAX_BYTES: usize = 40;
/// Name of the analyzer registered for text fields.
pub const ANALYZER: &str = "jangteo_market";
/// Bump when the schema or the analysis changes: the index is rebuilt from the store.
pub const INDEX_VERSION: &str = "1";
const VERSION_FILE: &str = "jangteo-index-version";

/// Errors of the search engine.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query or its filters are malformed; the message says what is wrong.
    #[error("{0}")]
    BadQuery(String),
    /// tantivy failed.
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// File system failure.
    #[error("search index folder {0}: {1}")]
    Io(String, std::io::Error),
}

pub use crate::api::types::SearchQuery;

/// One search hit: the listing as held, and its distance when searching near a place.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The listing.
    pub listing: StoredListing,
    /// Distance from the search point, km.
    pub distance_km: Option<f64>,
}

/// Whether a character is written without spaces between words (Hangul, kana, Han).
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF | 0x3130..=0x318F | 0xA960..=0xA97F | 0xAC00..=0xD7AF | 0xD7B0..=0xD7FF // Hangul
        | 0x3040..=0x309F | 0x30A0..=0x30FF | 0x31F0..=0x31FF | 0xFF66..=0xFF9F // kana
        | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FFFF // Han
        | 0x3005 // 々
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Cjk,
    Letter,
    Digit,
    Other,
}

fn class(c: char) -> Class {
    if is_cjk(c) {
        Class::Cjk
    } else if c.is_numeric() {
        Class::Digit
    } else if c.is_alphanumeric() {
        Class::Letter
    } else {
        Class::Other
    }
}

/// Splits marketplace text into tokens: runs of letters and runs of digits are words
/// (`iPhone13` → `iphone`, `13`), and runs of Hangul, kana or Han characters become
/// overlapping bigrams (`자전거를` → `자전`, `전거`, `거를`; a single character stays a
/// unigram), so a word matches inside unspaced text and with particles attached. Text is
/// NFKC-normalized first (full-width Latin and half-width kana become their usual forms).
#[derive(Debug, Clone, Default)]
pub struct MarketTokenizer {
    tokens: Vec<Token>,
}

/// The token stream of a [`MarketTokenizer`].
#[derive(Debug)]
pub struct MarketTokenStream<'a> {
    tokens: &'a mut Vec<Token>,
    next: usize,
}

impl TokenStream for MarketTokenStream<'_> {
    fn advance(&mut self) -> bool {
        if self.next < self.tokens.len() {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        &self.tokens[self.next.saturating_sub(1)]
    }

    fn token_mut(&mut self) -> &mut Token {
        let i = self.next.saturating_sub(1);
        &mut self.tokens[i]
    }
}

/// Walks the words of `text` as [`MarketTokenizer`] splits it, calling `word(text, from,
/// to, position)` for each (offsets into the NFKC form of `text`); allocates nothing when
/// the text is already NFKC.
pub fn for_each_market_word(text: &str, mut word: impl FnMut(&str, usize, usize, usize)) {
    // Most text is already in NFKC (ASCII, precomposed Hangul, plain kana): skip the copy.
    let norm: std::borrow::Cow<'_, str> = if unicode_normalization::is_nfkc_quick(text.chars())
        == unicode_normalization::IsNormalized::Yes
    {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(text.nfkc().collect())
    };
    let norm: &str = &norm;
    let mut emit = |from: usize, to: usize, position: &mut usize| {
        word(&norm[from..to], from, to, *position);
        *position += 1;
    };
    let mut position = 0usize;
    let mut chars = norm.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let cls = class(c);
        match cls {
            Class::Other => {}
            Class::Letter | Class::Digit => {
                let mut end = start + c.len_utf8();
                while let Some(&(at, d)) = chars.peek() {
                    if class(d) != cls {
                        break;
                    }
                    end = at + d.len_utf8();
                    chars.next();
                }
                emit(start, end, &mut position);
            }
            Class::Cjk => {
                // Overlapping bigrams; a lone character is a unigram.
                let (mut from, mut pairs) = (start, 0);
                while let Some(&(at, d)) = chars.peek() {
                    if class(d) != Class::Cjk {
                        break;
                    }
                    chars.next();
                    emit(from, at + d.len_utf8(), &mut position);
                    (from, pairs) = (at, pairs + 1);
                }
                if pairs == 0 {
                    emit(start, start + c.len_utf8(), &mut position);
                }
            }
        }
    }
}

impl MarketTokenizer {
    fn split(&mut self, text: &str) {
        self.tokens.clear();
        let tokens = &mut self.tokens;
        for_each_market_word(text, |word, from, to, position| {
            tokens.push(Token {
                offset_from: from,
                offset_to: to,
                position,
                text: word.to_owned(),
                position_length: 1,
            });
        });
    }
}

impl Tokenizer for MarketTokenizer {
    type TokenStream<'a> = MarketTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> MarketTokenStream<'a> {
        self.split(text);
        MarketTokenStream {
            tokens: &mut self.tokens,
            next: 0,
        }
    }
}

/// Below this many listings a batch is matched against the saved searches on the indexing
/// thread itself; from it on, on a thread of its own beside the indexing.
const ALERT_THREAD_MIN: usize = 64;

/// Listings handed to the matching thread at a time (one wake-up per this many, not one
/// per listing).
const ALERT_HANDOFF: usize = 32;

/// An alert found while matching, its notification not yet written out.
struct Pending {
    listing: ListingId,
    expires_at: u64,
    /// The listing and the searches it matched; dropped once more alerts follow than the
    /// notification list keeps (those listings only get their mark).
    source: Option<(StoredListing, Vec<u64>)>,
}

/// Matches listings against the saved searches, collecting one alert per listing that
/// matches any and was never alerted.
struct AlertMatcher<'a> {
    store: &'a Store,
    saved: &'a SavedSearches,
    now: u64,
    reader: &'a mut TokenReader,
    alerts: Vec<Pending>,
}

impl<'a> AlertMatcher<'a> {
    fn new(
        store: &'a Store,
        saved: &'a SavedSearches,
        now: u64,
        reader: &'a mut TokenReader,
    ) -> Self {
        Self {
            store,
            saved,
            now,
            reader,
            alerts: Vec::new(),
        }
    }

    fn check(&mut self, s: StoredListing) -> Result<(), SearchError> {
        let matched = self.saved.matches(&s, self.reader, self.now);
        if !matched.is_empty() && !self.store.alerted(&s.id)? {
            // The store keeps only the newest NOTIFICATIONS_PRUNED_TO of one batch: the
            // notification of an alert that many places back would be dropped unwritten.
            let keep = NOTIFICATIONS_PRUNED_TO as usize;
            if let Some(old) = self.alerts.len().checked_sub(keep) {
                self.alerts[old].source = None;
            }
            self.alerts.push(Pending {
                listing: s.id,
                expires_at: s.listing.expires_at,
                source: Some((s, matched)),
            });
        }
        Ok(())
    }

    /// The alerts, with the notifications of those the list will keep.
    fn finish(self) -> Vec<Alert> {
        let now = self.now;
        self.alerts
            .into_iter()
            .map(|p| Alert {
                listing: p.listing,
                expires_at: p.expires_at,
                notification: p.source.map(|(s, m)| alert_notification(&s, m, now)),
            })
            .collect()
    }
}

/// The analyzer for listing text: [`MarketTokenizer`], long-token removal, lowercasing and
/// English stemming (which leaves Hangul, kana and Han untouched).
pub fn market_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(MarketTokenizer::default())
        .filter(RemoveLongFilter::limit(TOKEN_MAX_BYTES))
        .filter(LowerCaser)
        .filter(Stemmer::new(tantivy::tokenizer::Language::English))
        .build()
}

#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    title: Field,
    body: Field,
    category: Field,
    condition: Field,
    seller: Field,
    currency: Field,
    price: Field,
    created: Field,
    expires: Field,
    open: Field,
    lat: Field,
    lon: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let f = Fields {
        id: b.add_text_field("id", STRING | STORED),
        title: b.add_text_field("title", text.clone()),
        body: b.add_text_field("body", text),
        category: b.add_text_field("category", STRING),
        condition: b.add_text_field("condition", STRING),
        seller: b.add_text_field("seller", STRING),
        currency: b.add_text_field("currency", STRING),
        price: b.add_u64_field("price", FAST | INDEXED),
        created: b.add_u64_field("created", FAST | INDEXED),
        expires: b.add_u64_field("expires", FAST | INDEXED),
        open: b.add_u64_field("open", INDEXED),
        lat: b.add_f64_field("lat", FAST | INDEXED),
        lon: b.add_f64_field("lon", FAST | INDEXED),
    };
    (b.build(), f)
}

/// Most sellers whose peer ids [`SellerIds`] keeps; past it, it starts afresh.
const SELLER_IDS_MAX: usize = 4096;

/// Sellers' peer ids as the index writes them, kept while the indexer works through a
/// queue: most listings of a batch come from sellers already seen in it.
#[derive(Default)]
struct SellerIds(HashMap<PublicKey, String>);

impl SellerIds {
    fn peer_id(&mut self, key: &PublicKey) -> String {
        if self.0.len() >= SELLER_IDS_MAX {
            self.0.clear();
        }
        self.0.entry(*key).or_insert_with(|| key.peer_id()).clone()
    }
}

/// The search index of one node.
pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    parser: QueryParser,
    dir: PathBuf,
    /// The saved searches, compiled; matched against every listing the indexer applies.
    saved: RwLock<SavedSearches>,
    /// This node's key: its own listings raise no alerts.
    owner: Option<PublicKey>,
    /// The indexer's reader of listings for matching, kept from batch to batch (it
    /// remembers what words analyze to).
    words: Mutex<TokenReader>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn sort_key(s: Option<&str>, has_text: bool) -> Result<&'static str, SearchError> {
    Ok(
        match s.unwrap_or(if has_text { "relevance" } else { "recent" }) {
            "relevance" => "relevance",
            "price" => "price",
            "price-desc" => "price-desc",
            "recent" => "recent",
            "distance" => "distance",
            "trust" => {
                return Err(SearchError::BadQuery(
                    "sort trust is done by the reputation service over the best matches; the index alone cannot".into(),
                ));
            }
            other => {
                return Err(SearchError::BadQuery(format!(
                    "unknown sort {other:?}: use relevance, price, price-desc, recent, distance or trust"
                )));
            }
        },
    )
}

/// Parses `LAT,LON` in degrees.
pub fn parse_lat_lon(s: &str) -> Option<Location> {
    let (a, b) = s.split_once(',')?;
    Location::from_degrees(a.trim().parse().ok()?, b.trim().parse().ok()?)
}

impl SearchIndex {
    /// Opens the index in `dir`, or rebuilds it from `store` when it is missing, damaged or
    /// of an older version; then indexes whatever the store queued while the node was down.
    /// An index left by a killed process can open and then fail at its first write (a
    /// half-written commit's files are still there): then it is rebuilt from the store too.
    pub fn open(dir: &Path, store: &Store) -> Result<Self, SearchError> {
        Self::open_for(dir, store, None)
    }

    /// [`open`](Self::open) for the node whose key is `owner`: its own listings raise no
    /// saved-search alerts.
    pub fn open_for(
        dir: &Path,
        store: &Store,
        owner: Option<PublicKey>,
    ) -> Result<Self, SearchError> {
        match Self::open_with(dir, store, false, owner) {
            Ok(this) => Ok(this),
            Err(e) => {
                tracing::warn!(error = %e, "search index cannot be used; rebuilding it from the store");
                Self::open_with(dir, store, true, owner)
            }
        }
    }

    fn open_with(
        dir: &Path,
        store: &Store,
        fresh: bool,
        owner: Option<PublicKey>,
    ) -> Result<Self, SearchError> {
        let io = |e| SearchError::Io(dir.display().to_string(), e);
        let (schema, fields) = schema();
        let version_ok = !fresh
            && std::fs::read_to_string(dir.join(VERSION_FILE))
                .is_ok_and(|v| v.trim() == INDEX_VERSION);
        let existing = if version_ok {
            match tantivy::directory::MmapDirectory::open(dir)
                .map_err(tantivy::TantivyError::from)
                .and_then(Index::open)
            {
                Ok(idx) if idx.schema() == schema => Some(idx),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "search index unreadable; rebuilding it from the store");
                    None
                }
            }
        } else {
            None
        };
        let rebuild = existing.is_none();
        let index = match existing {
            Some(i) => i,
            None => {
                if dir.exists() {
                    std::fs::remove_dir_all(dir).map_err(io)?;
                }
                std::fs::create_dir_all(dir).map_err(io)?;
                let idx = Index::create_in_dir(dir, schema)?;
                std::fs::write(dir.join(VERSION_FILE), INDEX_VERSION).map_err(io)?;
                idx
            }
        };
        index.tokenizers().register(ANALYZER, market_analyzer());
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY_BYTES)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let mut parser = QueryParser::for_index(&index, vec![fields.title, fields.body]);
        parser.set_conjunction_by_default();
        parser.set_field_boost(fields.title, 3.0);
        let this = Self {
            index,
            reader,
            writer: Mutex::new(writer),
            fields,
            parser,
            dir: dir.to_owned(),
            saved: RwLock::new(SavedSearches::default()),
            owner,
            words: Mutex::new(TokenReader::default()),
        };
        this.reload_saved(store)?;
        if rebuild {
            this.rebuild(store)?;
        } else {
            this.drain_queue(store)?;
            let held = store.listing_count()?;
            let indexed = this.reader.searcher().num_docs();
            if held != indexed {
                tracing::warn!(
                    held,
                    indexed,
                    "search index disagrees with the store; rebuilding it"
                );
                this.rebuild(store)?;
            }
        }
        Ok(this)
    }

    /// The listing's document; `sellers` keeps the sellers' peer ids (base58, whose encoding
    /// costs more than the rest of the document's fields together) across a batch.
    fn document(&self, s: &StoredListing, sellers: &mut SellerIds) -> TantivyDocument {
        let f = &self.fields;
        let l = &s.listing;
        let mut d = doc!(
            f.id => s.id.to_hex(),
            f.title => l.title.as_str(),
            f.body => format!("{}\n{}", l.description, l.category.replace('-', " ")),
            f.category => l.category.as_str(),
            f.seller => sellers.peer_id(&s.author),
            f.currency => l.currency.as_str(),
            f.price => l.price,
            f.created => l.created_at,
            f.expires => l.expires_at,
            // Expiry is checked at query time against `expires`; `open` is the rest of it.
            f.open => u64::from(l.status == jangteo_protocol::ListingStatus::Active && l.quantity > 0),
        );
        if let Some(c) = l.condition {
            d.add_text(f.condition, c.name());
        }
        if let Some(p) = l.location {
            d.add_f64(f.lat, p.lat());
            d.add_f64(f.lon, p.lon());
        }
        d
    }

    fn writer(&self) -> Result<std::sync::MutexGuard<'_, IndexWriter>, SearchError> {
        self.writer
            .lock()
            .map_err(|_| SearchError::Store(StoreError::Poisoned))
    }

    /// Drops the index and indexes every listing head of the store again.
    pub fn rebuild(&self, store: &Store) -> Result<u64, SearchError> {
        let total = store.listing_count()?;
        eprintln!("jangteo: building the search index from {total} stored listings");
        let started = std::time::Instant::now();
        let mut w = self.writer()?;
        w.delete_all_documents()?;
        let mut n = 0u64;
        let mut failed: Option<tantivy::TantivyError> = None;
        let mut sellers = SellerIds::default();
        store.for_each_listing(None, |s| {
            if let Err(e) = w.add_document(self.document(&s, &mut sellers)) {
                failed = Some(e);
                return false;
            }
            n += 1;
            if n.is_multiple_of(20_000) {
                eprintln!("jangteo: search index {n}/{total}");
            }
            true
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        w.commit()?;
        drop(w);
        store.clear_index_queue()?;
        self.reader.reload()?;
        eprintln!(
            "jangteo: search index ready: {n} listings in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(n)
    }

    /// Indexes queued listings (one commit per batch) until the queue is empty; returns how
    /// many entries were applied.
    pub fn drain_queue(&self, store: &Store) -> Result<usize, SearchError> {
        self.drain_queue_alerting(store).map(|(n, _)| n)
    }

    /// [`drain_queue`](Self::drain_queue), matching every listing applied against the saved
    /// searches: a listing of someone else that matches any, and never alerted before, raises
    /// one alert naming them all, written with the batch that empties the queue (so a crash
    /// before it indexes and matches the listing again). Returns the entries applied and the
    /// notifications written.
    pub fn drain_queue_alerting(
        &self,
        store: &Store,
    ) -> Result<(usize, Vec<NotificationView>), SearchError> {
        let mut applied = 0;
        let mut raised = Vec::new();
        let mut sellers = SellerIds::default();
        // Only what words analyze to: after a panic elsewhere it is emptied, not refused.
        let mut reader = self.words.lock().unwrap_or_else(|poisoned| {
            let mut r = poisoned.into_inner();
            *r = TokenReader::default();
            r
        });
        let reader: &mut TokenReader = &mut reader;
        loop {
            let batch = store.index_queue(INDEX_BATCH_MAX)?;
            if batch.is_empty() {
                return Ok((applied, raised));
            }
            let saved = self
                .saved
                .read()
                .map_err(|_| SearchError::Store(StoreError::Poisoned))?;
            let saved: &SavedSearches = &saved;
            let now = now_ms();
            let alerts = if saved.is_empty() {
                self.index_batch(store, &batch, &mut sellers, |_| Ok(()))?;
                Vec::new()
            } else if batch.len() < ALERT_THREAD_MIN {
                let mut m = AlertMatcher::new(store, saved, now, &mut *reader);
                self.index_batch(store, &batch, &mut sellers, |s| m.check(s))?;
                m.finish()
            } else {
                // Matching runs on a thread of its own beside the indexing, fed the listings
                // as they are indexed, a few at a time; its alerts are written with the batch
                // all the same.
                std::thread::scope(|scope| {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<StoredListing>>(8);
                    let reader = &mut *reader;
                    let matcher = scope.spawn(move || {
                        let mut m = AlertMatcher::new(store, saved, now, reader);
                        for chunk in rx {
                            for s in chunk {
                                m.check(s)?;
                            }
                        }
                        Ok::<_, SearchError>(m.finish())
                    });
                    let mut chunk = Vec::with_capacity(ALERT_HANDOFF);
                    let indexed = self.index_batch(store, &batch, &mut sellers, |s| {
                        chunk.push(s);
                        if chunk.len() == ALERT_HANDOFF {
                            // A matcher gone has failed: its error is the one returned below.
                            let full =
                                std::mem::replace(&mut chunk, Vec::with_capacity(ALERT_HANDOFF));
                            let _ = tx.send(full);
                        }
                        Ok(())
                    });
                    if !chunk.is_empty() {
                        let _ = tx.send(chunk);
                    }
                    drop(tx);
                    let alerts = matcher
                        .join()
                        .map_err(|_| SearchError::Store(StoreError::Poisoned))?;
                    indexed?;
                    alerts
                })?
            };
            self.reader.reload()?;
            raised.extend(store.index_queue_done(&batch, &alerts)?);
            applied += batch.len();
        }
    }

    /// Indexes the listings of `batch` (their heads as the store holds them now; one gone is
    /// only deleted) and commits; hands each listing of someone else to `then`.
    fn index_batch(
        &self,
        store: &Store,
        batch: &[(ListingId, Vec<u8>)],
        sellers: &mut SellerIds,
        mut then: impl FnMut(StoredListing) -> Result<(), SearchError>,
    ) -> Result<(), SearchError> {
        let mut w = self.writer()?;
        for (id, _) in batch {
            w.delete_term(Term::from_field_text(self.fields.id, &id.to_hex()));
            let Some(s) = store.listing(id)? else {
                continue;
            };
            w.add_document(self.document(&s, sellers))?;
            if self.owner != Some(s.author) {
                then(s)?;
            }
        }
        w.commit()?;
        Ok(())
    }

    /// Compiles the saved searches held in `store` again.
    fn reload_saved(&self, store: &Store) -> Result<(), SearchError> {
        let compiled = SavedSearches::compile(self, &store.saved_searches()?);
        *self
            .saved
            .write()
            .map_err(|_| SearchError::Store(StoreError::Poisoned))? = compiled;
        Ok(())
    }

    /// Saves a search after checking it by the rules of [`search`](Self::search) (and
    /// those of saved searches: a query or a filter, words not ranges), at most
    /// [`SAVED_SEARCHES_MAX`]; listings indexed from now on are matched against it.
    pub fn add_saved_search(
        &self,
        store: &Store,
        s: NewSavedSearch,
        now: u64,
    ) -> Result<SavedSearchView, AlertError> {
        let checked = crate::services::alerts::check(self, &s)?;
        // Stored and compiled under the lock, so the indexer sees it once it is stored.
        let mut saved = self
            .saved
            .write()
            .map_err(|_| AlertError::Store(StoreError::Poisoned))?;
        let view = store
            .add_saved_search(s, now, SAVED_SEARCHES_MAX)?
            .ok_or(AlertError::TooMany(SAVED_SEARCHES_MAX))?;
        saved.insert(&view, checked);
        Ok(view)
    }

    /// Removes a saved search.
    pub fn remove_saved_search(
        &self,
        store: &Store,
        id: u64,
    ) -> Result<SavedSearchView, AlertError> {
        let view = store.remove_saved_search(id)?.ok_or_else(|| {
            AlertError::NotFound(format!(
                "no saved search {id} on this node; `jangteo alerts` lists them"
            ))
        })?;
        self.reload_saved(store)?;
        Ok(view)
    }

    /// The saved searches a listing matches now (what the indexer does for each listing it
    /// applies, without the store): for benchmarks and tests.
    pub fn saved_matches(&self, s: &StoredListing, reader: &mut TokenReader, now: u64) -> Vec<u64> {
        let Ok(saved) = self.saved.read() else {
            return Vec::new();
        };
        saved.matches(s, reader, now)
    }

    /// Saved searches compiled now.
    pub fn saved_search_count(&self) -> usize {
        self.saved.read().map_or(0, |s| s.len())
    }

    /// Checks a search by every rule [`search`](Self::search) applies (lengths, syntax,
    /// filters), without running it.
    pub fn check_query(&self, q: &SearchQuery) -> Result<(), SearchError> {
        let c = check_query(q)?;
        self.query(q, &c, now_ms()).map(|_| ())
    }

    /// Runs the indexer until `shutdown`, woken by store writes (and once a minute, in case
    /// a wakeup was missed).
    pub async fn run_indexer(
        self: Arc<Self>,
        store: Arc<Store>,
        events: broadcast::Sender<NodeEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let this = self.clone();
            let s = store.clone();
            match tokio::task::spawn_blocking(move || this.drain_queue_alerting(&s)).await {
                Ok(Ok((0, _))) => {}
                Ok(Ok((n, raised))) => {
                    let _ = events.send(NodeEvent::Indexed { count: n });
                    for notification in raised {
                        let _ = events.send(NodeEvent::Notification {
                            notification: Box::new(notification),
                        });
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "indexing failed"),
                Err(e) => tracing::error!(error = %e, "indexer task failed"),
            }
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = store.index_wakeup().notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
        }
    }

    /// Listings matching `q`, read back from the store, in the requested order.
    pub fn search(&self, store: &Store, q: &SearchQuery) -> Result<Vec<Hit>, SearchError> {
        self.search_at(store, q, now_ms())
    }

    /// [`search`](Self::search) as of `now` (unix ms), which decides what has expired.
    pub fn search_at(
        &self,
        store: &Store,
        q: &SearchQuery,
        now: u64,
    ) -> Result<Vec<Hit>, SearchError> {
        let c = check_query(q)?;
        let query = self.query(q, &c, now)?;
        let searcher = self.reader.searcher();
        // With a distance, more candidates are read and cut to the page after the exact
        // distance filter.
        let (window, skip) = if c.near.is_some() {
            (DISTANCE_CANDIDATES_MAX, 0)
        } else {
            (c.limit, c.offset)
        };
        let addrs = top_docs(&searcher, &query, c.sort, window, skip)?;
        let mut hits: Vec<(DocAddress, Option<f64>)> = match c.near {
            None => addrs.into_iter().map(|a| (a, None)).collect(),
            Some(p) => within(&searcher, addrs, p, q.radius_km, c.sort == "distance")?
                .into_iter()
                .skip(c.offset)
                .take(c.limit)
                .collect(),
        };
        hits.truncate(c.limit);
        self.load_hits(store, &searcher, hits, q.all.unwrap_or(false), now)
    }

    /// The tantivy query of `q`: text, exact fields, price range, open and unexpired unless
    /// `all`, and a bounding box around `near` (the exact distance is checked after).
    fn query(
        &self,
        q: &SearchQuery,
        c: &Checked<'_>,
        now: u64,
    ) -> Result<Box<dyn Query>, SearchError> {
        let bad = |m: String| SearchError::BadQuery(m);
        let text = c.text;
        let near = c.near;
        let f = &self.fields;
        let mut must: Vec<Box<dyn Query>> = Vec::new();
        if !text.is_empty() {
            let parsed = self
                .parser
                .parse_query(text)
                .map_err(|e| bad(format!("query {text:?}: {e}")))?;
            must.push(parsed);
        }
        let term = |field: Field, v: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, v),
                IndexRecordOption::Basic,
            ))
        };
        if let Some(c) = q.category.as_deref() {
            must.push(term(f.category, c));
        }
        if let Some(c) = q.condition.as_deref() {
            let c = Condition::from_name(c).ok_or_else(|| {
                bad(format!(
                    "condition {c:?}: use new, like-new, good, fair or poor"
                ))
            })?;
            must.push(term(f.condition, c.name()));
        }
        if let Some(s) = q.seller.as_deref() {
            public_key_from_peer_id(s)
                .ok_or_else(|| bad(format!("seller {s:?} is not a peer id")))?;
            must.push(term(f.seller, s));
        }
        if let Some(c) = q.currency.as_deref() {
            must.push(term(f.currency, &c.to_ascii_uppercase()));
        }
        if q.min_price.is_some() || q.max_price.is_some() {
            let lo = q.min_price.map_or(Bound::Unbounded, |p| {
                Bound::Included(Term::from_field_u64(f.price, p))
            });
            let hi = q.max_price.map_or(Bound::Unbounded, |p| {
                Bound::Included(Term::from_field_u64(f.price, p))
            });
            must.push(Box::new(RangeQuery::new(lo, hi)));
        }
        if !q.all.unwrap_or(false) {
            must.push(Box::new(TermQuery::new(
                Term::from_field_u64(f.open, 1),
                IndexRecordOption::Basic,
            )));
            must.push(Box::new(RangeQuery::new(
                Bound::Excluded(Term::from_field_u64(f.expires, now)),
                Bound::Unbounded,
            )));
        }
        if let (Some(p), Some(r)) = (near, q.radius_km) {
            // Bounding box first (cheap, indexed), exact great-circle distance after.
            let dlat = r / 111.0;
            let dlon = r / (111.0 * p.lat().to_radians().cos().max(0.01));
            let range = |field, lo: f64, hi: f64| -> Box<dyn Query> {
                Box::new(RangeQuery::new(
                    Bound::Included(Term::from_field_f64(field, lo)),
                    Bound::Included(Term::from_field_f64(field, hi)),
                ))
            };
            must.push(range(f.lat, p.lat() - dlat, p.lat() + dlat));
            if p.lon() - dlon >= -180.0 && p.lon() + dlon <= 180.0 {
                must.push(range(f.lon, p.lon() - dlon, p.lon() + dlon));
            }
        }
        Ok(if must.is_empty() {
            Box::new(AllQuery)
        } else {
            Box::new(BooleanQuery::new(
                must.into_iter().map(|q| (Occur::Must, q)).collect(),
            ))
        })
    }

    /// Reads the hits' listings from the store, the truth: an entry the indexer has not
    /// caught up with yet (a listing just retracted, sold out or expired) is left out of open
    /// results.
    fn load_hits(
        &self,
        store: &Store,
        searcher: &Searcher,
        hits: Vec<(DocAddress, Option<f64>)>,
        all: bool,
        now: u64,
    ) -> Result<Vec<Hit>, SearchError> {
        let f = &self.fields;
        let mut results = Vec::with_capacity(hits.len());
        for (addr, distance_km) in hits {
            let d: TantivyDocument = searcher.doc(addr)?;
            let Some(id) = d
                .get_first(f.id)
                .and_then(|v| v.as_str())
                .and_then(ListingId::from_hex)
            else {
                continue;
            };
            if let Some(listing) = store
                .listing(&id)?
                .filter(|l| all || l.listing.is_open(now))
            {
                results.push(Hit {
                    listing,
                    distance_km,
                });
            }
        }
        Ok(results)
    }

    /// Listings the index holds as open (active, in stock, not expired at `now`): a count
    /// from the index, without reading the store.
    pub fn open_count(&self, now: u64) -> Result<u64, SearchError> {
        let f = &self.fields;
        let q = BooleanQuery::new(vec![
            (
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_u64(f.open, 1),
                    IndexRecordOption::Basic,
                )) as Box<dyn Query>,
            ),
            (
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Excluded(Term::from_field_u64(f.expires, now)),
                    Bound::Unbounded,
                )),
            ),
        ]);
        Ok(self
            .reader
            .searcher()
            .search(&q, &tantivy::collector::Count)? as u64)
    }

    /// Documents in the index.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the index takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// The index (for tests and benchmarks).
    pub fn index(&self) -> &Index {
        &self.index
    }
}

/// A query's parameters, checked.
struct Checked<'a> {
    text: &'a str,
    near: Option<Location>,
    sort: &'static str,
    limit: usize,
    offset: usize,
}

/// Checks every parameter of `q` and says which one is wrong.
fn check_query(q: &SearchQuery) -> Result<Checked<'_>, SearchError> {
    let bad = |m: String| SearchError::BadQuery(m);
    let text = q.q.as_deref().unwrap_or("").trim();
    if text.chars().count() > QUERY_MAX_CHARS {
        return Err(bad(format!(
            "query longer than {QUERY_MAX_CHARS} characters"
        )));
    }
    if let (Some(lo), Some(hi)) = (q.min_price, q.max_price)
        && lo > hi
    {
        return Err(bad(format!("min-price {lo} is above max-price {hi}")));
    }
    let near = match q.near.as_deref() {
        None => None,
        Some(s) => Some(parse_lat_lon(s).ok_or_else(|| {
            bad(format!(
                "near {s:?}: expected LAT,LON with latitude within ±90 and longitude within ±180"
            ))
        })?),
    };
    if let Some(r) = q.radius_km {
        if !(r.is_finite() && r > 0.0 && r <= RADIUS_MAX_KM) {
            return Err(bad(format!(
                "radius-km {r}: must be above 0 and at most {RADIUS_MAX_KM}"
            )));
        }
        if near.is_none() {
            return Err(bad("radius-km needs --near LAT,LON".into()));
        }
    }
    let sort = sort_key(q.sort.as_deref(), !text.is_empty())?;
    if sort == "distance" && near.is_none() {
        return Err(bad("sort distance needs --near LAT,LON".into()));
    }
    let limit = q.limit.unwrap_or(SEARCH_LIMIT_DEFAULT);
    if limit == 0 || limit > SEARCH_LIMIT_MAX {
        return Err(bad(format!("limit {limit}: must be 1-{SEARCH_LIMIT_MAX}")));
    }
    let offset = q.offset.unwrap_or(0);
    if offset > SEARCH_OFFSET_MAX {
        return Err(bad(format!("offset {offset}: at most {SEARCH_OFFSET_MAX}")));
    }

    Ok(Checked {
        text,
        near,
        sort,
        limit,
        offset,
    })
}

/// The top `window` documents after `skip`, in the order `sort` names.
fn top_docs(
    searcher: &Searcher,
    query: &dyn Query,
    sort: &str,
    window: usize,
    skip: usize,
) -> Result<Vec<DocAddress>, SearchError> {
    let top = TopDocs::with_limit(window).and_offset(skip);
    Ok(match sort {
        "price" => searcher
            .search(query, &top.order_by_fast_field::<u64>("price", Order::Asc))?
            .into_iter()
            .map(|x| x.1)
            .collect(),
        "price-desc" => searcher
            .search(query, &top.order_by_fast_field::<u64>("price", Order::Desc))?
            .into_iter()
            .map(|x| x.1)
            .collect(),
        "recent" => searcher
            .search(
                query,
                &top.order_by_fast_field::<u64>("created", Order::Desc),
            )?
            .into_iter()
            .map(|x| x.1)
            .collect(),
        _ => searcher
            .search(query, &top.order_by_score())?
            .into_iter()
            .map(|(_, a): (Score, _)| a)
            .collect(),
    })
}

/// Of `addrs`, those within `radius_km` of `p` (all, without a radius), with their exact
/// distance; nearest first when `by_distance`.
fn within(
    searcher: &Searcher,
    addrs: Vec<DocAddress>,
    p: Location,
    radius_km: Option<f64>,
    by_distance: bool,
) -> Result<Vec<(DocAddress, Option<f64>)>, SearchError> {
    let mut cols = std::collections::HashMap::new();
    let mut out = Vec::new();
    for a in addrs {
        let (lat, lon) = match cols.entry(a.segment_ord) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let ff = searcher.segment_reader(a.segment_ord).fast_fields();
                v.insert((ff.f64("lat")?, ff.f64("lon")?))
            }
        };
        let (Some(lat), Some(lon)) = (lat.first(a.doc_id), lon.first(a.doc_id)) else {
            continue;
        };
        let Some(loc) = Location::from_degrees(lat, lon) else {
            continue;
        };
        let d = p.distance_km(&loc);
        if radius_km.is_none_or(|r| d <= r) {
            out.push((a, Some(d)));
        }
    }
    if by_distance {
        out.sort_by(|a, b| a.1.unwrap_or(f64::MAX).total_cmp(&b.1.unwrap_or(f64::MAX)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One batch that raises more alerts than the notification list keeps: on the matching
    /// thread (the batch is larger than ALERT_THREAD_MIN), every matching listing gets its
    /// mark, only the newest NOTIFICATIONS_PRUNED_TO are written as notifications (none of
    /// them twice), a listing whose text names the search's `-word` is not alerted, and a
    /// later version of an alerted listing raises nothing.
    #[test]
    fn a_large_batch_marks_every_match_and_notifies_the_newest() {
        use crate::api::types::NewSavedSearch;
        use crate::ingest::{Ingested, ingest_batch};
        use ed25519_dalek::SigningKey;
        use jangteo_protocol::{Kind, Listing, ListingStatus, SignedObject};

        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let index = SearchIndex::open(&dir.path().join("index"), &store).expect("index");
        index
            .add_saved_search(
                &store,
                NewSavedSearch {
                    q: Some("bike -broken".into()),
                    ..Default::default()
                },
                0,
            )
            .expect("saved search");
        let now = now_ms();
        let listing = |nonce: u16, seq: u64, title: String| Listing {
            stamp: None,
            nonce: {
                let mut n = [0u8; 16];
                n[..2].copy_from_slice(&nonce.to_be_bytes());
                n
            },
            seq,
            created_at: now - 100_000,
            updated_at: now - 100_000
                + (seq - 1) * jangteo_protocol::listing::LISTING_VERSION_INTERVAL_MS,
            expires_at: now + 86_400_000,
            status: ListingStatus::Active,
            title,
            description: "in Mapo".into(),
            category: "sports".into(),
            condition: None,
            price: 1000,
            currency: "KRW".into(),
            quantity: 1,
            images: vec![],
            moderators: vec![],
            location: None,
        };
        let keys: Vec<SigningKey> = (0..40u8)
            .map(|i| SigningKey::from_bytes(&[i + 1; 32]))
            .collect();
        let sign = |i: usize, l: &Listing| {
            SignedObject::sign(Kind::Listing, l.encode(), &keys[i % keys.len()])
                .bytes()
                .to_vec()
        };
        // 1,000 matching, 100 naming the excluded word, 100 about something else.
        let mut objects = Vec::new();
        for i in 0..1200u16 {
            let title = match i % 12 {
                10 => format!("broken bike {i}"),
                11 => format!("desk lamp {i}"),
                _ => format!("road bike {i}"),
            };
            objects.push(sign(usize::from(i), &listing(i, 1, title)));
        }
        let stored = ingest_batch(&store, &objects, Some(Kind::Listing), now, false)
            .expect("ingest")
            .iter()
            .filter(|o| matches!(o, Ingested::Stored { .. }))
            .count();
        assert_eq!(stored, 1200);
        let (applied, raised) = index.drain_queue_alerting(&store).expect("drain");
        assert_eq!(applied, 1200);
        assert_eq!(raised.len(), NOTIFICATIONS_PRUNED_TO as usize);
        let mut notified: Vec<String> = raised.iter().filter_map(|n| n.listing.clone()).collect();
        notified.sort();
        notified.dedup();
        assert_eq!(
            notified.len(),
            NOTIFICATIONS_PRUNED_TO as usize,
            "none twice"
        );
        let (held, unread) = store.notifications(false, 2000).expect("list");
        assert_eq!((held.len(), unread), (900, 900));
        let mut marked = 0;
        store
            .for_each_listing(None, |s| {
                let alerted = store.alerted(&s.id).expect("alerted");
                let title = &s.listing.title;
                assert_eq!(alerted, title.starts_with("road bike"), "{title}");
                if alerted {
                    marked += 1;
                } else {
                    assert!(!notified.contains(&s.id.to_hex()), "{title}");
                }
                true
            })
            .expect("listings");
        assert_eq!(marked, 1000);
        // A new version of an alerted listing: indexed again, no new alert.
        let v2 = sign(0, &listing(0, 2, "road bike 0, price cut".into()));
        ingest_batch(&store, &[v2], Some(Kind::Listing), now, false).expect("v2");
        let (applied, raised) = index.drain_queue_alerting(&store).expect("drain again");
        assert_eq!((applied, raised.len()), (1, 0));
    }

    fn tokens(text: &str) -> Vec<String> {
        let mut a = market_analyzer();
        let mut s = a.token_stream(text);
        let mut out = Vec::new();
        while s.advance() {
            out.push(s.token().text.clone());
        }
        out
    }

    #[test]
    fn each_word_the_walker_finds_is_one_token_of_the_analyzer_at_its_position() {
        // The saved-search matcher analyzes words one at a time (and remembers them): that
        // must give what the analyzer gives over the whole text.
        let long = "x".repeat(TOKEN_MAX_BYTES + 1);
        for text in [
            "중고 자전거를 팝니다, 거의 새것!",
            "中古の自転車を売ります。ｉＰｈｏｎｅ１３ ﾃﾚﾋﾞ",
            "iPhone13 Pro-Max 256GB running shoes 가 a 字",
            &format!("before {long} after 가나다라마바사"),
            &format!(
                "{} {} end",
                "y".repeat(TOKEN_MAX_BYTES),
                "z".repeat(TOKEN_MAX_BYTES - 1)
            ),
            "",
        ] {
            let mut a = market_analyzer();
            let whole: Vec<(usize, String)> = {
                let mut s = a.token_stream(text);
                std::iter::from_fn(|| {
                    s.advance()
                        .then(|| (s.token().position, s.token().text.clone()))
                })
                .collect()
            };
            let mut by_word = Vec::new();
            for_each_market_word(text, |word, _, _, position| {
                let mut s = a.token_stream(word);
                if s.advance() {
                    by_word.push((position, s.token().text.clone()));
                    assert!(!s.advance(), "{word:?} is one token");
                }
            });
            assert_eq!(by_word, whole, "{text:?}");
            assert!(text.is_empty() || !whole.is_empty());
        }
    }

    #[test]
    fn korean_bigrams_cover_words_with_particles() {
        assert_eq!(
            tokens("중고 자전거를 팝니다"),
            ["중고", "자전", "전거", "거를", "팝니", "니다"]
        );
        let q = tokens("자전거");
        let d = tokens("중고 자전거를 팝니다");
        assert!(
            d.windows(q.len()).any(|w| w == q.as_slice()),
            "{q:?} in {d:?}"
        );
    }

    #[test]
    fn japanese_bigrams_cover_words_inside_unspaced_text() {
        let d = tokens("中古の自転車を売ります");
        let q = tokens("自転車");
        assert_eq!(q, ["自転", "転車"]);
        assert!(d.windows(2).any(|w| w == q.as_slice()), "{d:?}");
    }

    #[test]
    fn english_is_stemmed_and_letters_split_from_digits() {
        assert_eq!(tokens("Bikes"), tokens("bike"));
        assert_eq!(tokens("iPhone13 Pro"), ["iphon", "13", "pro"]);
        // Full-width Latin is normalized.
        assert_eq!(tokens("ｉＰｈｏｎｅ"), tokens("iphone"));
        assert_eq!(tokens("아이폰 iPhone 13"), ["아이", "이폰", "iphon", "13"]);
    }
}
