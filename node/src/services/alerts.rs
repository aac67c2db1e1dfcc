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

use std::collections::{HashMap, HashSet};
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
use crate::services::search::{SearchError, SearchIndex, market_analyzer};
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
/// `PhraseQuery` are.
#[derive(Debug, Clone)]
enum Text {
    /// Every listing (`*`).
    All,
    /// The tokens at their offsets (one token: a term) in one of `fields`.
    Literal {
        fields: Fields,
        tokens: Vec<(usize, String)>,
    },
    /// `must` all match and `must_not` none; with no `must`, at least one `should`.
    Clause {
        must: Vec<Text>,
        should: Vec<Text>,
        must_not: Vec<Text>,
    },
}

/// Token positions of one field of a listing.
type Positions = HashMap<String, Vec<usize>>;

/// The text of one listing as the index sees it: token positions in title and body.
#[derive(Debug, Default)]
pub struct ListingTokens {
    title: Positions,
    body: Positions,
}

impl ListingTokens {
    /// Analyzes a listing's title and body (description and category, as indexed). With
    /// `vocabulary`, only its tokens are kept: a token no saved search names cannot change
    /// whether one matches (a phrase needs all its tokens, `-word` needs its word absent).
    pub fn of(
        s: &StoredListing,
        analyzer: &mut TextAnalyzer,
        vocabulary: Option<&HashSet<String>>,
    ) -> Self {
        let l = &s.listing;
        let body = format!("{}\n{}", l.description, l.category.replace('-', " "));
        Self {
            title: positions(analyzer, &l.title, vocabulary),
            body: positions(analyzer, &body, vocabulary),
        }
    }

    fn field(&self, f: Fields) -> [Option<&Positions>; 2] {
        match f {
            Fields::Both => [Some(&self.title), Some(&self.body)],
            Fields::Title => [Some(&self.title), None],
            Fields::Body => [Some(&self.body), None],
        }
    }

    /// Every distinct token.
    fn tokens(&self) -> impl Iterator<Item = &str> {
        self.title
            .keys()
            .chain(self.body.keys().filter(|k| !self.title.contains_key(*k)))
            .map(String::as_str)
    }
}

fn positions(
    analyzer: &mut TextAnalyzer,
    text: &str,
    vocabulary: Option<&HashSet<String>>,
) -> Positions {
    let mut out = Positions::default();
    let mut s = analyzer.token_stream(text);
    while s.advance() {
        let t = s.token();
        if vocabulary.is_some_and(|v| !v.contains(&t.text)) {
            continue;
        }
        match out.get_mut(&t.text) {
            Some(at) => at.push(t.position),
            None => {
                out.insert(t.text.clone(), vec![t.position]);
            }
        }
    }
    out
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

/// Whether the phrase `tokens` (offsets, texts) occurs in `field`.
fn phrase_in(field: &Positions, tokens: &[(usize, String)]) -> bool {
    let Some(((first_off, first), rest)) = tokens.split_first() else {
        return false;
    };
    let Some(starts) = field.get(first) else {
        return false;
    };
    starts.iter().any(|&p| {
        rest.iter().all(|(off, t)| {
            (p + off)
                .checked_sub(*first_off)
                .is_some_and(|want| field.get(t).is_some_and(|ps| ps.contains(&want)))
        })
    })
}

impl Text {
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

    /// Adds every token this text names to `out`.
    fn vocabulary(&self, out: &mut HashSet<String>) {
        match self {
            Text::All => {}
            Text::Literal { tokens, .. } => out.extend(tokens.iter().map(|(_, t)| t.clone())),
            Text::Clause {
                must,
                should,
                must_not,
            } => {
                for t in must.iter().chain(should).chain(must_not) {
                    t.vocabulary(out);
                }
            }
        }
    }

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
    text: Option<Text>,
    filters: Filters,
}

/// The saved searches of a node, compiled for matching listings as they arrive.
#[derive(Debug, Default)]
pub struct SavedSearches {
    searches: Vec<Compiled>,
    /// Token -> the searches filed under it.
    by_token: HashMap<String, Vec<usize>>,
    /// Searches every listing is compared with (no text, or `*`).
    always: Vec<usize>,
    /// Every token any search names: the only ones of a listing matching looks at.
    vocabulary: HashSet<String>,
}

impl SavedSearches {
    /// Compiles saved searches (as stored; each was checked when saved). One that no longer
    /// compiles is left out with a warning.
    pub fn compile(index: &SearchIndex, views: &[SavedSearchView]) -> Self {
        let mut analyzer = market_analyzer();
        let mut this = Self::default();
        for v in views {
            match compile_one(index, &v.search, &mut analyzer) {
                Ok((text, filters)) => this.push(Compiled {
                    id: v.id,
                    created_at: v.created_at,
                    text,
                    filters,
                }),
                Err(e) => tracing::warn!(search = v.id, error = %e, "saved search left out"),
            }
        }
        this
    }

    /// Adds a search saved just now (checked by [`check`]).
    pub(crate) fn insert(&mut self, v: &SavedSearchView, c: Checked) {
        self.push(Compiled {
            id: v.id,
            created_at: v.created_at,
            text: c.0,
            filters: c.1,
        });
    }

    fn push(&mut self, c: Compiled) {
        let i = self.searches.len();
        if let Some(t) = &c.text {
            t.vocabulary(&mut self.vocabulary);
        }
        match c.text.as_ref().and_then(Text::trigger) {
            None => self.always.push(i),
            Some(tokens) => {
                for t in tokens {
                    let v = self.by_token.entry(t).or_default();
                    if v.last() != Some(&i) {
                        v.push(i);
                    }
                }
            }
        }
        self.searches.push(c);
    }

    /// The tokens of `s` that matching looks at (those some search names).
    pub fn tokens_of(&self, s: &StoredListing, analyzer: &mut TextAnalyzer) -> ListingTokens {
        ListingTokens::of(s, analyzer, Some(&self.vocabulary))
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
    pub fn matches(&self, s: &StoredListing, tokens: &ListingTokens, now: u64) -> Vec<u64> {
        if self.searches.is_empty() || !s.listing.is_open(now) {
            return Vec::new();
        }
        let mut candidates: Vec<usize> = self.always.clone();
        for t in tokens.tokens() {
            if let Some(v) = self.by_token.get(t) {
                candidates.extend_from_slice(v);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .filter_map(|i| self.searches.get(i))
            .filter(|c| {
                s.listing.updated_at.saturating_add(ALERT_CLOCK_SLACK_MS) >= c.created_at
                    && c.filters.matches(s)
                    && c.text.as_ref().is_none_or(|t| t.matches(tokens))
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
