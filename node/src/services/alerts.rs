//! Saved searches and the alerts they raise, and the notification list the API reads.
//!
//! A saved search is the text and filters of a search. It is checked when saved by the
//! search engine's own query parser (so what `search` refuses is refused here, with the same
//! reason), then compiled into [`SavedSearches`]: a small matcher that evaluates the query
//! the way tantivy does (conjunction by default, OR, -word, "phrases", title: and body:)
//! over the tokens of one listing, made by the same analyzer as the index
//! ([`market_analyzer`]), so Korean and Japanese match as they do in `search`. Each search
//! is filed under one token that any listing it matches must contain (a token -> searches
//! map), so a listing is compared only with the few searches its own tokens name, plus the
//! searches without text; the filters are plain comparisons on the listing.
//!
//! The search indexer runs the matcher on every listing version it indexes (from gossip,
//! sync, import alike) and writes the alerts in the batch that empties its queue; this
//! module does no store writes of its own beyond saving and removing searches, and marking
//! notifications read.

use std::collections::HashMap;
use std::sync::Arc;

use jangteo_protocol::{Condition, Location, PublicKey, public_key_from_peer_id};
use tantivy::query_grammar::{Occur, UserInputAst, UserInputLeaf};
use tantivy::tokenizer::TextAnalyzer;
use tokio::sync::broadcast;

use crate::NodeEvent;
use crate::api::types::{
    MarkRead, MarkedRead, NewSavedSearch, NotificationKind, NotificationList, NotificationView,
    NotificationsQuery, SavedSearchView,
};
use crate::clock::now_ms;
use crate::error::StoreError;
use crate::services::search::{
    SearchError, SearchIndex, TOKEN_MAX_BYTES, for_each_market_word, market_analyzer,
};
use crate::store::{Store, StoredListing};

/// Most saved searches a node holds (the benchmark shows 1,000 cost ingest under 10%).
pub const SAVED_SEARCHES_MAX: usize = 1000;
/// Most notifications one request lists.
pub const NOTIFICATIONS_LIST_MAX: usize = 1000;
/// Notifications listed when no limit is given.
pub const NOTIFICATIONS_LIST_DEFAULT: usize = 100;
/// Longest filter value of a saved search (a category, a peer id, `LAT,LON`).
pub const FILTER_MAX_BYTES: usize = 100;
/// Most ids one mark-read request names.
pub const MARK_READ_IDS_MAX: usize = 1000;
/// A listing version dated this much before a search was saved still alerts it (clocks
/// differ between nodes); older ones do not, so a node catching up with the whole market
/// is not flooded with alerts for what was on sale before the search existed.
pub const ALERT_CLOCK_SLACK_MS: u64 = jangteo_protocol::MAX_CLOCK_SKEW_MS;

/// Why a saved-search or notification request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The query or a filter is malformed; says which.
    #[error("{0}")]
    BadQuery(String),
    /// The node holds as many saved searches as it takes.
    #[error(
        "this node holds {0} saved searches, the most it keeps; remove one with `jangteo alert rm ID` first"
    )]
    TooMany(usize),
    /// No saved search or notification with that id.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SearchError> for AlertError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::BadQuery(m) => AlertError::BadQuery(m),
            SearchError::Store(s) => AlertError::Store(s),
            other => AlertError::BadQuery(other.to_string()),
        }
    }
}

/// Which text fields a literal looks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fields {
    Both,
    Title,
    Body,
}

/// A compiled query text, evaluated as tantivy's `BooleanQuery`, `TermQuery` and
/// `PhraseQuery` are. Its tokens are `T`: their text when compiled, their number in the
/// vocabulary of [`SavedSearches`] once held there.
#[derive(Debug, Clone)]
enum Text<T = String> {
    /// Every listing (`*`).
    All,
    /// The tokens at their offsets (one token: a term) in one of `fields`.
    Literal {
        fields: Fields,
        tokens: Vec<(usize, T)>,
    },
    /// `must` all match and `must_not` none; with no `must`, at least one `should`.
    Clause {
        must: Vec<Text<T>>,
        should: Vec<Text<T>>,
        must_not: Vec<Text<T>>,
    },
}

/// The number of a token in the vocabulary of [`SavedSearches`].
type TokenId = u32;

/// The vocabulary tokens of one field of a listing, with their positions, sorted (so a
/// token's positions are found by binary search, whatever the listing repeats).
type Positions = Vec<(TokenId, u32)>;

/// The text of one listing as matching sees it: the positions in title and body of the
/// tokens some saved search names (a phrase needs all its tokens, `-word` needs its word
/// absent, so no other token can change whether a search matches).
#[derive(Debug, Default)]
pub struct ListingTokens {
    title: Positions,
    body: Positions,
}

impl ListingTokens {
    fn field(&self, f: Fields) -> [Option<&Positions>; 2] {
        match f {
            Fields::Both => [Some(&self.title), Some(&self.body)],
            Fields::Title => [Some(&self.title), None],
            Fields::Body => [Some(&self.body), None],
        }
    }

    /// Every token, once per field it is in (a word repeated is one token: the positions
    /// are sorted by token).
    fn tokens(&self) -> impl Iterator<Item = TokenId> + '_ {
        [&self.title, &self.body]
            .into_iter()
            .flat_map(|f| f.chunk_by(|a, b| a.0 == b.0).map(|same| same[0].0))
    }
}

/// Most distinct words a [`TokenReader`] remembers (each shorter than [`TOKEN_MAX_BYTES`]);
/// past it, it starts afresh.
pub const TOKEN_READER_WORDS_MAX: usize = 65_536;

/// Reads listings into [`ListingTokens`] for one [`SavedSearches`]. It splits text into
/// words as the index does ([`for_each_market_word`]) and remembers what each word
/// analyzes to (lowercased, stemmed: [`market_analyzer`]) and whether a search names it, so
/// each distinct word is analyzed once, not once per listing; a market's words recur.
pub struct TokenReader {
    analyzer: TextAnalyzer,
    /// Word as split -> its vocabulary token, or None when no search names it.
    words: HashMap<Box<str>, Option<TokenId>>,
    /// The [`SavedSearches::generation`] `words` was filled for.
    generation: u64,
}

impl Default for TokenReader {
    fn default() -> Self {
        Self {
            analyzer: market_analyzer(),
            words: HashMap::new(),
            generation: 0,
        }
    }
}

impl std::fmt::Debug for TokenReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReader")
            .field("words", &self.words.len())
            .finish_non_exhaustive()
    }
}

impl TokenReader {
    /// The tokens of `s` that matching `saved` looks at: title, and body (description and
    /// category, as indexed).
    pub fn read(&mut self, s: &StoredListing, saved: &SavedSearches) -> ListingTokens {
        if self.generation != saved.generation {
            self.words.clear();
            self.generation = saved.generation;
        }
        let l = &s.listing;
        // The index's body is the description, a line break and the category with its
        // hyphens as spaces: the same words at the same positions as these two, walked on.
        ListingTokens {
            title: self.positions(&[&l.title], saved),
            body: self.positions(&[&l.description, &l.category], saved),
        }
    }

    /// The vocabulary tokens of `texts` read as one, with their positions, sorted.
    fn positions(&mut self, texts: &[&str], saved: &SavedSearches) -> Positions {
        let mut out = Positions::new();
        let (words, analyzer) = (&mut self.words, &mut self.analyzer);
        let mut base = 0;
        for text in texts {
            let mut next = base;
            for_each_market_word(text, |word, _, _, at| {
                let position = base + at;
                next = position + 1;
                let token = match words.get(word) {
                    Some(t) => *t,
                    None => {
                        // A word is one token of the analyzer, or none (too long).
                        let mut stream = analyzer.token_stream(word);
                        let t = if stream.advance() {
                            saved.vocabulary.get(&stream.token().text).copied()
                        } else {
                            None
                        };
                        // A word too long to index is not kept: what is kept stays small.
                        if word.len() < TOKEN_MAX_BYTES {
                            if words.len() >= TOKEN_READER_WORDS_MAX {
                                words.clear();
                            }
                            words.insert(word.into(), t);
                        }
                        t
                    }
                };
                if let Some(t) = token {
                    out.push((t, u32::try_from(position).unwrap_or(u32::MAX)));
                }
            });
            base = next;
        }
        out.sort_unstable();
        out
    }
}

fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut s = analyzer.token_stream(text);
    while s.advance() {
        let t = s.token();
        out.push((t.position, t.text.clone()));
    }
    out
}

/// Whether `token` is at `position` in `field`.
fn at(field: &Positions, token: TokenId, position: usize) -> bool {
    u32::try_from(position).is_ok_and(|p| field.binary_search(&(token, p)).is_ok())
}

/// Whether the phrase `tokens` (offsets, tokens) occurs in `field`.
fn phrase_in(field: &Positions, tokens: &[(usize, TokenId)]) -> bool {
    let Some((&(first_off, first), rest)) = tokens.split_first() else {
        return false;
    };
    let from = field.partition_point(|&(t, _)| t < first);
    field[from..]
        .iter()
        .take_while(|&&(t, _)| t == first)
        .any(|&(_, p)| {
            rest.iter().all(|&(off, t)| {
                (p as usize + off)
                    .checked_sub(first_off)
                    .is_some_and(|want| at(field, t, want))
            })
        })
}

impl<T> Text<T> {
    /// The same text with each token mapped by `f`.
    fn map<U>(self, f: &mut impl FnMut(T) -> U) -> Text<U> {
        let mut all = |v: Vec<Text<T>>| v.into_iter().map(|t| t.map(&mut *f)).collect();
        match self {
            Text::All => Text::All,
            Text::Literal { fields, tokens } => Text::Literal {
                fields,
                tokens: tokens.into_iter().map(|(o, t)| (o, f(t))).collect(),
            },
            Text::Clause {
                must,
                should,
                must_not,
            } => Text::Clause {
                must: all(must),
                should: all(should),
                must_not: all(must_not),
            },
        }
    }
}

impl Text<TokenId> {
    fn matches(&self, doc: &ListingTokens) -> bool {
        match self {
            Text::All => true,
            Text::Literal { fields, tokens } => doc
                .field(*fields)
                .into_iter()
                .flatten()
                .any(|f| phrase_in(f, tokens)),
            Text::Clause {
                must,
                should,
                must_not,
            } => {
                must.iter().all(|t| t.matches(doc))
                    && (!must.is_empty() || should.iter().any(|t| t.matches(doc)))
                    && !must_not.iter().any(|t| t.matches(doc))
            }
        }
    }
}

impl Text {
    /// Tokens one of which every listing this text matches contains (None: no such set,
    /// as for `*`). An empty set: it matches nothing.
    fn trigger(&self) -> Option<Vec<String>> {
        match self {
            Text::All => None,
            // Every token must be there: the longest is the likeliest to be rare.
            Text::Literal { tokens, .. } => Some(
                tokens
                    .iter()
                    .max_by_key(|(_, t)| t.len())
                    .map(|(_, t)| vec![t.clone()])
                    .unwrap_or_default(),
            ),
            Text::Clause { must, should, .. } if !must.is_empty() => {
                must.iter().filter_map(Text::trigger).min_by_key(Vec::len)
            }
            Text::Clause { should, .. } => {
                let mut all = Vec::new();
                for s in should {
                    all.extend(s.trigger()?);
                }
                Some(all)
            }
        }
    }
}

/// Compiles the parsed query (already accepted by the index's own parser) into [`Text`];
/// None when nothing in it is searchable (tantivy drops such parts).
fn compile(ast: UserInputAst, analyzer: &mut TextAnalyzer) -> Result<Option<Text>, AlertError> {
    let bad = |m: &str| AlertError::BadQuery(m.to_owned());
    match ast {
        UserInputAst::Boost(inner, _) => compile(*inner, analyzer),
        UserInputAst::Clause(children) => {
            let (mut must, mut should, mut must_not) = (Vec::new(), Vec::new(), Vec::new());
            for (occur, child) in children {
                let Some(t) = compile(child, analyzer)? else {
                    continue;
                };
                match occur.unwrap_or(Occur::Must) {
                    Occur::Must => must.push(t),
                    Occur::Should => should.push(t),
                    Occur::MustNot => must_not.push(t),
                }
            }
            Ok(
                (!(must.is_empty() && should.is_empty() && must_not.is_empty())).then_some(
                    Text::Clause {
                        must,
                        should,
                        must_not,
                    },
                ),
            )
        }
        UserInputAst::Leaf(leaf) => match *leaf {
            UserInputLeaf::All => Ok(Some(Text::All)),
            UserInputLeaf::Literal(lit) => {
                if lit.slop > 0 || lit.prefix {
                    return Err(bad(
                        "a saved search takes words and \"exact phrases\", not ~slop or * prefixes",
                    ));
                }
                let fields = match lit.field_name.as_deref() {
                    None => Fields::Both,
                    Some("title") => Fields::Title,
                    Some("body") => Fields::Body,
                    Some(other) => {
                        return Err(AlertError::BadQuery(format!(
                            "{other:?}: a saved search looks in title: and body: only; use the \
                             filters (--category, --condition, --seller, --currency, prices) for the rest"
                        )));
                    }
                };
                let tokens = analyze(analyzer, &lit.phrase);
                Ok((!tokens.is_empty()).then_some(Text::Literal { fields, tokens }))
            }
            UserInputLeaf::Range { .. }
            | UserInputLeaf::Set { .. }
            | UserInputLeaf::Exists { .. }
            | UserInputLeaf::Regex { .. } => Err(bad(
                "a saved search takes words, \"phrases\", OR and -word; ranges, sets and regexes \
                 are not taken (use --min-price and --max-price for prices)",
            )),
        },
    }
}

/// The filters of a saved search, checked, as plain comparisons on a listing.
#[derive(Debug, Clone)]
struct Filters {
    category: Option<String>,
    condition: Option<Condition>,
    seller: Option<PublicKey>,
    currency: Option<String>,
    min_price: Option<u64>,
    max_price: Option<u64>,
    near: Option<(Location, Option<f64>)>,
}

impl Filters {
    fn matches(&self, s: &StoredListing) -> bool {
        let l = &s.listing;
        self.category.as_deref().is_none_or(|c| c == l.category)
            && self.condition.is_none_or(|c| l.condition == Some(c))
            && self.seller.is_none_or(|k| k == s.author)
            && self.currency.as_deref().is_none_or(|c| c == l.currency)
            && self.min_price.is_none_or(|p| l.price >= p)
            && self.max_price.is_none_or(|p| l.price <= p)
            && self.near.is_none_or(|(p, r)| {
                l.location.is_some_and(|at| {
                    r.is_none_or(|r| within_box(p, r, at) && p.distance_km(&at) <= r)
                })
            })
    }
}

/// The search's bounding box around `p` (the index filters by it before the exact distance).
fn within_box(p: Location, r: f64, at: Location) -> bool {
    let dlat = r / 111.0;
    let dlon = r / (111.0 * p.lat().to_radians().cos().max(0.01));
    let lat_ok = at.lat() >= p.lat() - dlat && at.lat() <= p.lat() + dlat;
    let lon_ok = !(p.lon() - dlon >= -180.0 && p.lon() + dlon <= 180.0)
        || (at.lon() >= p.lon() - dlon && at.lon() <= p.lon() + dlon);
    lat_ok && lon_ok
}

/// One saved search, compiled.
#[derive(Debug, Clone)]
struct Compiled {
    id: u64,
    created_at: u64,
    text: Option<Text<TokenId>>,
    filters: Filters,
}

/// Numbers each [`SavedSearches`] apart, so a [`TokenReader`] knows whose words it holds.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The saved searches of a node, compiled for matching listings as they arrive.
#[derive(Debug)]
pub struct SavedSearches {
    searches: Vec<Compiled>,
    /// Every token any search names, numbered: the only ones of a listing matching looks at.
    vocabulary: HashMap<String, TokenId>,
    /// Token -> the searches filed under it.
    by_token: Vec<Vec<u32>>,
    /// Searches every listing is compared with (no text, or `*`).
    always: Vec<u32>,
    /// Changes whenever the vocabulary does.
    generation: u64,
}

impl Default for SavedSearches {
    fn default() -> Self {
        Self {
            searches: Vec::new(),
            vocabulary: HashMap::new(),
            by_token: Vec::new(),
            always: Vec::new(),
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }
}

impl SavedSearches {
    /// Compiles saved searches (as stored; each was checked when saved). One that no longer
    /// compiles is left out with a warning.
    pub fn compile(index: &SearchIndex, views: &[SavedSearchView]) -> Self {
        let mut analyzer = market_analyzer();
        let mut this = Self::default();
        for v in views {
            match compile_one(index, &v.search, &mut analyzer) {
                Ok((text, filters)) => this.push(v, text, filters),
                Err(e) => tracing::warn!(search = v.id, error = %e, "saved search left out"),
            }
        }
        this
    }

    /// Adds a search saved just now (checked by [`check`]).
    pub(crate) fn insert(&mut self, v: &SavedSearchView, c: Checked) {
        self.push(v, c.0, c.1);
        self.generation = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The number of `token`, numbering it if new.
    fn token_id(&mut self, token: String) -> TokenId {
        let next = TokenId::try_from(self.vocabulary.len()).unwrap_or(TokenId::MAX);
        *self.vocabulary.entry(token).or_insert(next)
    }

    fn push(&mut self, v: &SavedSearchView, text: Option<Text>, filters: Filters) {
        let i = u32::try_from(self.searches.len()).unwrap_or(u32::MAX);
        match text.as_ref().and_then(Text::trigger) {
            None => self.always.push(i),
            Some(tokens) => {
                for t in tokens {
                    let t = self.token_id(t) as usize;
                    if self.by_token.len() <= t {
                        self.by_token.resize_with(t + 1, Vec::new);
                    }
                    if self.by_token[t].last() != Some(&i) {
                        self.by_token[t].push(i);
                    }
                }
            }
        }
        let text = text.map(|t| t.map(&mut |token| self.token_id(token)));
        self.searches.push(Compiled {
            id: v.id,
            created_at: v.created_at,
            text,
            filters,
        });
    }

    /// Searches held.
    pub fn len(&self) -> usize {
        self.searches.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.searches.is_empty()
    }

    /// The ids of the searches `s` matches, in id order: open listings only (as `search`
    /// lists by default), dated at most [`ALERT_CLOCK_SLACK_MS`] before the search was saved.
    pub fn matches(&self, s: &StoredListing, reader: &mut TokenReader, now: u64) -> Vec<u64> {
        if self.searches.is_empty() || !s.listing.is_open(now) {
            return Vec::new();
        }
        let tokens = reader.read(s, self);
        let mut candidates: Vec<u32> = self.always.clone();
        for t in tokens.tokens() {
            if let Some(v) = self.by_token.get(t as usize) {
                candidates.extend_from_slice(v);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .filter_map(|i| self.searches.get(i as usize))
            .filter(|c| {
                s.listing.updated_at.saturating_add(ALERT_CLOCK_SLACK_MS) >= c.created_at
                    && c.filters.matches(s)
                    && c.text.as_ref().is_none_or(|t| t.matches(&tokens))
            })
            .map(|c| c.id)
            .collect()
    }
}

/// Checks a saved search with the search engine's own rules, then compiles it.
fn compile_one(
    index: &SearchIndex,
    s: &NewSavedSearch,
    analyzer: &mut TextAnalyzer,
) -> Result<(Option<Text>, Filters), AlertError> {
    // Every rule of `search` (lengths, syntax, filters' forms), with its message.
    index.check_query(&s.as_query())?;
    for (name, v) in [
        ("category", &s.category),
        ("condition", &s.condition),
        ("seller", &s.seller),
        ("currency", &s.currency),
        ("near", &s.near),
    ] {
        if v.as_ref().is_some_and(|v| v.len() > FILTER_MAX_BYTES) {
            return Err(AlertError::BadQuery(format!(
                "{name} is longer than {FILTER_MAX_BYTES} bytes"
            )));
        }
    }
    let text = match s.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        None => None,
        Some(q) => {
            let ast = tantivy::query_grammar::parse_query(q)
                .map_err(|_| AlertError::BadQuery(format!("query {q:?} is not valid syntax")))?;
            Some(compile(ast, analyzer)?.ok_or_else(|| {
                AlertError::BadQuery(format!(
                    "query {q:?} has no words to look for (letters, digits, Hangul, kana or Han)"
                ))
            })?)
        }
    };
    let bad = |m: String| AlertError::BadQuery(m);
    let filters = Filters {
        category: s.category.clone(),
        condition: match s.condition.as_deref() {
            None => None,
            Some(c) => Some(Condition::from_name(c).ok_or_else(|| {
                bad(format!(
                    "condition {c:?}: use new, like-new, good, fair or poor"
                ))
            })?),
        },
        seller: match s.seller.as_deref() {
            None => None,
            Some(p) => Some(
                public_key_from_peer_id(p)
                    .ok_or_else(|| bad(format!("seller {p:?} is not a peer id")))?,
            ),
        },
        currency: s.currency.as_deref().map(str::to_ascii_uppercase),
        min_price: s.min_price,
        max_price: s.max_price,
        near: match s.near.as_deref() {
            None => None,
            Some(n) => Some((
                crate::services::search::parse_lat_lon(n)
                    .ok_or_else(|| bad(format!("near {n:?}: expected LAT,LON")))?,
                s.radius_km,
            )),
        },
    };
    if text.is_none()
        && filters.category.is_none()
        && filters.condition.is_none()
        && filters.seller.is_none()
        && filters.currency.is_none()
        && filters.min_price.is_none()
        && filters.max_price.is_none()
        && filters.near.is_none()
    {
        return Err(bad(
            "a saved search needs a query or at least one filter; one matching every listing would alert on all of them".into(),
        ));
    }
    Ok((text, filters))
}

/// A saved search checked and compiled, not yet numbered.
#[derive(Debug)]
pub(crate) struct Checked(Option<Text>, Filters);

/// Checks and compiles one saved search, as [`SearchIndex::add_saved_search`] does before
/// storing it.
pub(crate) fn check(index: &SearchIndex, s: &NewSavedSearch) -> Result<Checked, AlertError> {
    compile_one(index, s, &mut market_analyzer()).map(|(t, f)| Checked(t, f))
}

/// The notification of a listing that matched saved searches.
pub fn alert_notification(s: &StoredListing, searches: Vec<u64>, now: u64) -> NotificationView {
    let l = &s.listing;
    let names: Vec<String> = searches.iter().map(|i| format!("#{i}")).collect();
    let mut n = NotificationView::new(
        NotificationKind::SavedSearch,
        now,
        format!(
            "new listing for your saved search {}: {:?}, {} {}",
            names.join(", "),
            l.title,
            l.price,
            l.currency
        ),
    );
    n.listing = Some(s.id.to_hex());
    n.title = Some(l.title.clone());
    n.price = Some(l.price);
    n.currency = Some(l.currency.clone());
    n.peer = Some(s.author.peer_id());
    n.searches = searches;
    n
}

/// What the API does with notifications and saved searches.
#[derive(Debug, Clone)]
pub struct Alerts {
    store: Arc<Store>,
    index: Arc<SearchIndex>,
    events: broadcast::Sender<NodeEvent>,
}

impl Alerts {
    /// The service over `store` and `index`.
    pub fn new(
        store: Arc<Store>,
        index: Arc<SearchIndex>,
        events: broadcast::Sender<NodeEvent>,
    ) -> Self {
        Self {
            store,
            index,
            events,
        }
    }

    /// Saves a search: from now on, every listing that reaches this node and matches it
    /// raises an alert (at most one per listing).
    pub fn add(&self, s: NewSavedSearch) -> Result<SavedSearchView, AlertError> {
        self.index.add_saved_search(&self.store, s, now_ms())
    }

    /// The saved searches, oldest first.
    pub fn list(&self) -> Result<Vec<SavedSearchView>, AlertError> {
        Ok(self.store.saved_searches()?)
    }

    /// Removes a saved search.
    pub fn remove(&self, id: u64) -> Result<SavedSearchView, AlertError> {
        self.index.remove_saved_search(&self.store, id)
    }

    /// Notifications, newest first.
    pub fn notifications(&self, q: &NotificationsQuery) -> Result<NotificationList, AlertError> {
        let limit = q.limit.unwrap_or(NOTIFICATIONS_LIST_DEFAULT);
        if limit == 0 || limit > NOTIFICATIONS_LIST_MAX {
            return Err(AlertError::BadQuery(format!(
                "limit {limit}: must be 1-{NOTIFICATIONS_LIST_MAX}"
            )));
        }
        let (notifications, unread) = self.store.notifications(q.unread.unwrap_or(false), limit)?;
        Ok(NotificationList {
            notifications,
            unread,
        })
    }

    /// Marks notifications read (named ones, or all).
    pub fn mark_read(&self, m: &MarkRead) -> Result<MarkedRead, AlertError> {
        if m.ids.len() > MARK_READ_IDS_MAX {
            return Err(AlertError::BadQuery(format!(
                "{} ids: at most {MARK_READ_IDS_MAX} at once (or all: true)",
                m.ids.len()
            )));
        }
        if m.ids.is_empty() && !m.all {
            return Err(AlertError::BadQuery(
                "name the notifications to mark read (ids) or all: true".into(),
            ));
        }
        match self.store.mark_read(&m.ids, m.all)? {
            Ok((marked, unread)) => Ok(MarkedRead { marked, unread }),
            Err(unknown) => Err(AlertError::NotFound(format!(
                "no notification {} on this node (nothing was marked)",
                unknown
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Where notifications are announced (for tests).
    pub fn events(&self) -> &broadcast::Sender<NodeEvent> {
        &self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_token_reader_remembers_is_bounded_whatever_the_listings_say() {
        let saved = SavedSearches::default();
        let mut reader = TokenReader::default();
        // Huge words (a hostile description) are read but not kept.
        let huge: Vec<String> = (0..50)
            .map(|i| format!("{}{}", "w".repeat(8_000), to_letters(i)))
            .collect();
        let texts: Vec<&str> = huge.iter().map(String::as_str).collect();
        assert!(reader.positions(&texts, &saved).is_empty());
        assert!(reader.words.is_empty(), "{} kept", reader.words.len());
        // Distinct short words past the cap: it starts afresh, never holds more.
        let mut most = 0;
        for chunk in 0..80 {
            let words: String = (0..1_000)
                .map(|i| format!("w{} ", to_letters(chunk * 1_000 + i)))
                .collect();
            reader.positions(&[&words], &saved);
            most = most.max(reader.words.len());
        }
        assert!(most <= TOKEN_READER_WORDS_MAX, "{most}");
        assert!(
            most > TOKEN_READER_WORDS_MAX - 1_000,
            "{most}: the cap was reached"
        );
        assert!(reader.words.keys().all(|w| w.len() < TOKEN_MAX_BYTES));
    }

    /// `n` as lowercase letters (digits would split the word in two).
    fn to_letters(mut n: usize) -> String {
        let mut s = String::new();
        loop {
            s.push(char::from(b'a' + (n % 26) as u8));
            n /= 26;
            if n == 0 {
                return s;
            }
        }
    }
}
