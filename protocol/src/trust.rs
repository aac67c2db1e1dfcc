//! Personalized trust, version 2: an EigenTrust-style iteration over the graph of rated,
//! completed trades, seen from one node, that weighs complaints from trusted raters, recent
//! trades more than old ones, and proven equivocation.
//!
//! Owns the trust math only: no I/O, no clock (the caller passes `now`), no currencies (the
//! caller passes the ratings of one currency where amounts matter).
//!
//! The rules, each with the attack it answers:
//!
//! - **A rating is evidence in proportion to its trade**, and no more: its weight is the score
//!   (5 → +1, 4 → +½, 3 → 0, 2 → −½, 1 → −1) times the trade's value weight (logarithmic and
//!   capped at [`VALUE_WEIGHT_MAX`], so one huge claimed price buys no more than an ordinary
//!   big trade) times its age decay (halved every [`HALF_LIFE_MS`]: recent trades count most,
//!   as Karrot's manner temperature counts the last year). A camouflaged cheat cannot live on
//!   old good behaviour.
//! - **Per pair, diminishing**: a rater's ratings of one peer are summed into positive and
//!   negative evidence; the pair is a positive edge when `pos − PAIR_NEGATIVE_WEIGHT·neg > 0`,
//!   weighted `ln(1 + net)`, so many trades between the same two keys add less and less; and
//!   a negative edge in the opposite case.
//! - **Propagation** (EigenTrust, Kamvar et al. 2003): trust is the stationary distribution of
//!   `t = (1 − α)·flow(t) + (returned)·p` where `p` is this node's own seed (its own positive
//!   ratings and the keys its user trusts). Each rater hands its trust on along its positive
//!   edges, normalized; a rating of a *buyer* (by a seller) passes only [`BUYER_RATING_PASS`]
//!   of it, since paying well proves less than delivering well. Everything not handed on
//!   returns to the seeds, so a ring that only trades with itself starts from zero and stays
//!   there.
//! - **Standing: a trusted complaint outweighs praise** (asymmetric). Each rater also spreads
//!   its trust over its negative edges (normalized separately, so an honest buyer's few
//!   complaints are concentrated while a badmouthing cheat's many are thin). A peer's
//!   standing is `I / (I + NEGATIVE_WEIGHT·D)`, with `I` the trust flowing in along positive
//!   edges and `D` along negative ones, and the trust it receives *and passes on* is scaled by
//!   it. A camouflaged cheat complained about by the trusted buyers it cheated loses its trust,
//!   and so does the collective it was feeding (model C); a spy's five-star ratings of cheats
//!   that trusted buyers complain about pass almost nothing on (model D): the mass returns to
//!   the seeds instead.
//! - **Proven equivocation** (two signed histories of one trade: a proof anyone can check) is
//!   this node's own evidence: standing 0 and no voice, whatever others say.
//!
//! Pure and deterministic: the same inputs give the same numbers on every node.

use std::collections::{BTreeSet, HashMap};

use crate::ids::PublicKey;

/// The largest weight one trade's value can give a rating (reached at a value of 10⁶ minor
/// units); more value buys no more trust.
pub const VALUE_WEIGHT_MAX: f64 = 3.0;
/// A rating's weight halves every this many milliseconds (180 days).
pub const HALF_LIFE_MS: u64 = 180 * 24 * 3600 * 1000;
/// In one rater's own experience of a peer, one unit of negative evidence cancels this many of
/// positive evidence.
pub const PAIR_NEGATIVE_WEIGHT: f64 = 2.0;
/// In a peer's standing, trust flowing in along complaints weighs this many times trust
/// flowing in along praise.
pub const NEGATIVE_WEIGHT: f64 = 4.0;
/// Share of a rater's trust that its rating of a buyer passes on (a rating of a seller passes
/// all of it).
pub const BUYER_RATING_PASS: f64 = 0.5;
/// The amount gate: a seller's trust supports trades up to this many times the value that
/// trusted raters have vouched for (Bisq 2 ties the largest sell amount to reputation the same
/// way).
pub const SUPPORT_MULTIPLE: u64 = 2;

/// One rating of a completed trade, as the trust computation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rating {
    /// Who rated.
    pub rater: PublicKey,
    /// Who was rated.
    pub subject: PublicKey,
    /// 1-5.
    pub score: u8,
    /// The trade's total value, minor units of its currency.
    pub value: u64,
    /// When the rating was signed (unix ms).
    pub at: u64,
    /// Whether the rated party was the trade's seller (a buyer rating its seller); false for a
    /// seller rating its buyer.
    pub about_seller: bool,
}

/// Tuning of the computation.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Share of trust handed back to the seeds at every step (α).
    pub damping: f64,
    /// Stop after this many steps.
    pub max_iterations: usize,
    /// Stop when the L1 change of a step is below this.
    pub tolerance: f64,
    /// The time ages are measured at (unix ms); 0: no decay.
    pub now: u64,
    /// A rating's weight halves every this many ms (0: no decay).
    pub half_life_ms: u64,
    /// See [`NEGATIVE_WEIGHT`].
    pub negative_weight: f64,
    /// See [`PAIR_NEGATIVE_WEIGHT`].
    pub pair_negative_weight: f64,
    /// See [`BUYER_RATING_PASS`].
    pub buyer_rating_pass: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            damping: 0.5,
            max_iterations: 200,
            tolerance: 1e-12,
            now: 0,
            half_life_ms: HALF_LIFE_MS,
            negative_weight: NEGATIVE_WEIGHT,
            pair_negative_weight: PAIR_NEGATIVE_WEIGHT,
            buyer_rating_pass: BUYER_RATING_PASS,
        }
    }
}

impl Params {
    /// The defaults, with ages measured at `now` (unix ms).
    pub fn at(now: u64) -> Self {
        Self {
            now,
            ..Self::default()
        }
    }
}

/// What one node concludes about one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeerTrust {
    /// The peer's share of this node's trust (all shares sum to at most 1).
    pub trust: f64,
    /// `trust` relative to the most trusted peer: 0..=1.
    pub score: f64,
    /// How much independent, trusted evidence stands behind the score: 0..1.
    pub confidence: f64,
    /// 0..=1: how little of the trusted evidence about the peer is complaints (1: none;
    /// 0: proven equivocation, or nothing but complaints).
    pub standing: f64,
    /// 0..=1: how much this peer's own ratings count, as a fraction of a fully trusted rater.
    pub voice: f64,
    /// Mean of the stars the peer received (unweighted), if rated.
    pub rating: Option<f64>,
    /// Distinct raters.
    pub raters: u32,
    /// Distinct raters whose experience of the peer is negative on balance.
    pub negative_raters: u32,
    /// Ratings received.
    pub ratings: u32,
}

/// The trust of every peer known, from one node's point of view.
#[derive(Debug, Clone, Default)]
pub struct TrustView {
    peers: HashMap<PublicKey, PeerTrust>,
    /// Whether the node had any seed (own trades or trusted keys); without seeds every trust
    /// is zero.
    pub seeded: bool,
    /// Steps the iteration took.
    pub iterations: usize,
    /// Distinct rater → subject edges.
    pub edges: usize,
    /// The ages were measured at this time, with this half-life (for [`supported_value`]).
    now: u64,
    half_life_ms: u64,
}

impl TrustView {
    /// What this view says about `peer` (zeros, standing 1, for an unknown peer).
    pub fn get(&self, peer: &PublicKey) -> PeerTrust {
        self.peers.get(peer).copied().unwrap_or(PeerTrust {
            standing: 1.0,
            ..PeerTrust::default()
        })
    }

    /// Every peer known.
    pub fn iter(&self) -> impl Iterator<Item = (&PublicKey, &PeerTrust)> {
        self.peers.iter()
    }
}

/// The signed weight of one score.
pub fn score_weight(score: u8) -> f64 {
    (f64::from(score.clamp(1, 5)) - 3.0) / 2.0
}

/// The weight of a trade's value: 1 for a trade of no value, growing with its logarithm, at
/// most [`VALUE_WEIGHT_MAX`].
pub fn value_weight(value: u64) -> f64 {
    (1.0 + (1.0 + value as f64).log10() / 3.0).min(VALUE_WEIGHT_MAX)
}

/// How much a rating signed at `at` still counts at `now`: 1 when new, halving every
/// `half_life_ms` (1 when either is 0, or `at` is in the future).
pub fn decay(at: u64, now: u64, half_life_ms: u64) -> f64 {
    if now == 0 || half_life_ms == 0 || at >= now {
        return 1.0;
    }
    0.5f64.powf((now - at) as f64 / half_life_ms as f64)
}

/// Confidence from an amount of evidence (each unit one fully trusted independent witness).
pub fn confidence(evidence: f64) -> f64 {
    1.0 - (-evidence / 3.0).exp()
}

/// One rater's evidence about one peer.
#[derive(Debug, Clone, Copy, Default)]
struct Pair {
    /// Positive evidence.
    pos: f64,
    /// Positive evidence, each rating scaled by the share it passes on.
    pos_pass: f64,
    /// Negative evidence.
    neg: f64,
}

/// Computes the trust of every rated peer as seen by `me`, whose user trusts `trusted`.
/// `me`'s own ratings (its completed trades) seed the computation alongside `trusted`;
/// `equivocators` are keys proven to have signed two histories of one trade.
pub fn compute(
    me: &PublicKey,
    ratings: &[Rating],
    trusted: &[PublicKey],
    equivocators: &[PublicKey],
    params: &Params,
) -> TrustView {
    // Index every key; `me` is index 0.
    let mut index: HashMap<PublicKey, usize> = HashMap::new();
    let mut keys: Vec<PublicKey> = Vec::new();
    fn id(
        k: &PublicKey,
        index: &mut HashMap<PublicKey, usize>,
        keys: &mut Vec<PublicKey>,
    ) -> usize {
        *index.entry(*k).or_insert_with(|| {
            keys.push(*k);
            keys.len() - 1
        })
    }
    id(me, &mut index, &mut keys);
    let pass = params.buyer_rating_pass.clamp(0.0, 1.0);
    let mut pairs: HashMap<(usize, usize), Pair> = HashMap::new();
    let mut stars: HashMap<usize, (u64, u32)> = HashMap::new();
    for r in ratings {
        if r.rater == r.subject {
            continue;
        }
        let i = id(&r.rater, &mut index, &mut keys);
        let j = id(&r.subject, &mut index, &mut keys);
        let sw = score_weight(r.score);
        let w = sw.abs() * value_weight(r.value) * decay(r.at, params.now, params.half_life_ms);
        let pair = pairs.entry((i, j)).or_default();
        if sw > 0.0 {
            pair.pos += w;
            pair.pos_pass += if r.about_seller { w } else { w * pass };
        } else if sw < 0.0 {
            pair.neg += w;
        }
        let s = stars.entry(j).or_default();
        s.0 += u64::from(r.score.clamp(1, 5));
        s.1 += 1;
    }
    for k in trusted {
        id(k, &mut index, &mut keys);
    }
    let n = keys.len();
    let mut equivocal = vec![false; n];
    for k in equivocators {
        if let Some(&j) = index.get(k)
            && j != 0
        {
            equivocal[j] = true;
        }
    }
    // Positive rows (target, weight, share passed on) and negative rows, in a
    // deterministic order.
    let mut sorted: Vec<((usize, usize), Pair)> = pairs.into_iter().collect();
    sorted.sort_by_key(|a| a.0);
    let edges = sorted.len();
    let mut pos_rows: Vec<Vec<(usize, f64, f64)>> = vec![Vec::new(); n];
    let mut neg_rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    let mut raters_of: HashMap<usize, BTreeSet<usize>> = HashMap::new();
    let mut complainers_of: HashMap<usize, BTreeSet<usize>> = HashMap::new();
    let kp = params.pair_negative_weight.max(0.0);
    for ((i, j), pair) in sorted {
        raters_of.entry(j).or_default().insert(i);
        let net = pair.pos - kp * pair.neg;
        if net > 0.0 {
            if !equivocal[i] && !equivocal[j] {
                pos_rows[i].push((j, (1.0 + net).ln(), pair.pos_pass / pair.pos));
            }
        } else if net < 0.0 {
            complainers_of.entry(j).or_default().insert(i);
            if !equivocal[i] && !equivocal[j] {
                neg_rows[i].push((j, (1.0 - net).ln()));
            }
        }
    }
    // Seeds: own positive ratings, and trusted keys at the weight of the best own one.
    let mut p = vec![0.0f64; n];
    let own_best = pos_rows[0]
        .iter()
        .map(|&(_, w, _)| w)
        .fold(0.0f64, f64::max);
    for &(j, w, _) in &pos_rows[0] {
        p[j] += w;
    }
    let mut seed = vec![false; n];
    for k in trusted {
        if let Some(&j) = index.get(k)
            && j != 0
            && !equivocal[j]
        {
            p[j] += own_best.max(1.0);
            seed[j] = true;
        }
    }
    let total: f64 = p.iter().sum();
    let seeded = total > 0.0;
    if seeded {
        p.iter_mut().for_each(|x| *x /= total);
    }
    // This node's own complaints, as a distribution like its seeds.
    let mut d = vec![0.0f64; n];
    let own_neg: f64 = neg_rows[0].iter().map(|&(_, w)| w).sum();
    for &(j, w) in &neg_rows[0] {
        d[j] += w / own_neg;
    }
    pos_rows[0].clear(); // this node hands its trust to the seeds
    neg_rows[0].clear(); // and speaks through `d`
    for row in &mut pos_rows {
        let s: f64 = row.iter().map(|&(_, w, _)| w).sum();
        row.iter_mut().for_each(|(_, w, _)| *w /= s);
    }
    for row in &mut neg_rows {
        let s: f64 = row.iter().map(|&(_, w)| w).sum();
        row.iter_mut().for_each(|(_, w)| *w /= s);
    }
    // Power iteration, the standing of every peer updated at every step.
    let alpha = params.damping.clamp(0.0, 1.0);
    let k = params.negative_weight.max(0.0);
    let mut t = p.clone();
    let mut next = vec![0.0f64; n];
    let mut praise = vec![0.0f64; n];
    let mut flow = vec![0.0f64; n];
    let mut against = vec![0.0f64; n];
    let mut standing = vec![1.0f64; n];
    let mut iterations = 0;
    let step = |t: &[f64],
                praise: &mut [f64],
                flow: &mut [f64],
                against: &mut [f64],
                standing: &mut [f64]| {
        praise.iter_mut().for_each(|x| *x = 0.0);
        flow.iter_mut().for_each(|x| *x = 0.0);
        against.iter_mut().for_each(|x| *x = 0.0);
        for i in 0..n {
            let ti = t[i];
            if ti == 0.0 {
                continue;
            }
            for &(j, w, share) in &pos_rows[i] {
                praise[j] += ti * w;
                flow[j] += ti * w * share;
            }
            for &(j, w) in &neg_rows[i] {
                against[j] += ti * w;
            }
        }
        for j in 0..n {
            let inflow = (1.0 - alpha) * praise[j] + alpha * p[j];
            let complaints = (1.0 - alpha) * against[j] + alpha * d[j];
            let weighed = inflow + k * complaints;
            standing[j] = if equivocal[j] {
                0.0
            } else if j == 0 || complaints == 0.0 || weighed <= 0.0 {
                1.0
            } else {
                inflow / weighed
            };
        }
    };
    if seeded {
        for _ in 0..params.max_iterations {
            iterations += 1;
            step(&t, &mut praise, &mut flow, &mut against, &mut standing);
            let mut kept = 0.0;
            for j in 0..n {
                next[j] = (1.0 - alpha) * standing[j] * flow[j];
                kept += next[j];
            }
            // Everything not handed on (damping, peers that rated no one, what standing and
            // buyer ratings held back) returns to the seeds.
            let returned = (1.0 - kept).max(0.0);
            let mut diff = 0.0;
            for j in 0..n {
                next[j] += returned * p[j];
                diff += (next[j] - t[j]).abs();
            }
            std::mem::swap(&mut t, &mut next);
            if diff < params.tolerance {
                break;
            }
        }
        step(&t, &mut praise, &mut flow, &mut against, &mut standing);
    } else {
        for j in 0..n {
            standing[j] = if equivocal[j] { 0.0 } else { 1.0 };
        }
    }
    // Scores, voices and confidence.
    let max_other = t.iter().skip(1).copied().fold(0.0f64, f64::max);
    let reached = t.iter().skip(1).filter(|&&x| x > 0.0).count().max(1);
    let fair_share = 1.0 / reached as f64;
    let voice: Vec<f64> = (0..n)
        .map(|j| {
            if equivocal[j] || !seeded {
                0.0
            } else if j == 0 || seed[j] {
                1.0
            } else {
                (t[j] / fair_share).min(1.0)
            }
        })
        .collect();
    let empty = BTreeSet::new();
    let mut peers = HashMap::with_capacity(n);
    for (j, key) in keys.iter().enumerate() {
        let raters = raters_of.get(&j).unwrap_or(&empty);
        let complainers = complainers_of.get(&j).unwrap_or(&empty);
        let mut evidence = if seed[j] { 1.0 } else { 0.0 };
        evidence += raters.iter().map(|&r| voice[r]).sum::<f64>();
        let (sum, count) = stars.get(&j).copied().unwrap_or((0, 0));
        peers.insert(
            *key,
            PeerTrust {
                trust: t[j],
                score: if max_other > 0.0 && j != 0 {
                    t[j] / max_other
                } else {
                    0.0
                },
                confidence: if seeded { confidence(evidence) } else { 0.0 },
                standing: standing[j],
                voice: voice[j],
                rating: (count > 0).then(|| sum as f64 / f64::from(count)),
                raters: raters.len() as u32,
                negative_raters: complainers.len() as u32,
                ratings: count,
            },
        );
    }
    TrustView {
        peers,
        seeded,
        iterations,
        edges,
        now: params.now,
        half_life_ms: params.half_life_ms,
    }
}

/// The amount gate: the largest trade value (minor units of the currency of `ratings`) that
/// `view`'s trust in `seller` supports.
///
/// Each rater who vouched for the seller *as a seller* (its experience positive on balance)
/// contributes the largest value it entrusted to the seller, decayed by age, times its voice;
/// the sum is scaled by the seller's standing and by [`SUPPORT_MULTIPLE`]. One rater repeating
/// trades adds nothing, strangers add nothing, complaints take away. `ratings` must all be in
/// one currency (the caller filters them).
pub fn supported_value(view: &TrustView, seller: &PublicKey, ratings: &[Rating]) -> u64 {
    let standing = view.get(seller).standing;
    if standing <= 0.0 {
        return 0;
    }
    let mut per_rater: HashMap<PublicKey, (f64, f64, f64)> = HashMap::new();
    for r in ratings {
        if r.subject != *seller || r.rater == *seller || !r.about_seller {
            continue;
        }
        let age = decay(r.at, view.now, view.half_life_ms);
        let sw = score_weight(r.score);
        let e = per_rater.entry(r.rater).or_default();
        let w = sw.abs() * value_weight(r.value) * age;
        if sw > 0.0 {
            e.0 += w;
            e.2 = e.2.max(r.value as f64 * age);
        } else if sw < 0.0 {
            e.1 += w;
        }
    }
    let mut raters: Vec<(PublicKey, (f64, f64, f64))> = per_rater.into_iter().collect();
    raters.sort_by_key(|a| a.0);
    let vouched: f64 = raters
        .iter()
        .filter(|(_, (pos, neg, _))| pos - PAIR_NEGATIVE_WEIGHT * neg > 0.0)
        .map(|(rater, (_, _, largest))| view.get(rater).voice * largest)
        .sum();
    // Rounded (a rating a moment old has decayed by a hair); `as` saturates, so an absurd
    // sum is u64::MAX, not a wrap.
    (vouched * standing * SUPPORT_MULTIPLE as f64).round() as u64
}

/// Through whom this node's trust reaches a peer (the seller page's "trusted through 3 of
/// your trade partners").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustPaths {
    /// This node's trade partners (peers it rated well on balance, its seeds) from which a
    /// chain of positive ratings reaches the peer; the peer itself counts when it is one.
    pub partners: u32,
    /// Keys the user trusts from which such a chain reaches the peer (itself included).
    pub trusted: u32,
}

/// Counts the seeds of `me` (its trade partners, and the keys in `trusted`) from which a chain
/// of positive edges, as [`compute`] builds them (a rater's experience of a peer positive on
/// balance; no edge from or to an equivocator), reaches `subject`. Chains do not pass through
/// `me`. The trust [`compute`] gives `subject` flows only along these chains, so this is the
/// reason for it in people's words. Zero for `me` itself and for an equivocator.
pub fn trust_paths(
    me: &PublicKey,
    ratings: &[Rating],
    trusted: &[PublicKey],
    equivocators: &[PublicKey],
    subject: &PublicKey,
    params: &Params,
) -> TrustPaths {
    if subject == me || equivocators.contains(subject) {
        return TrustPaths::default();
    }
    let mut pairs: HashMap<(PublicKey, PublicKey), (f64, f64)> = HashMap::new();
    for r in ratings {
        if r.rater == r.subject {
            continue;
        }
        let sw = score_weight(r.score);
        let w = sw.abs() * value_weight(r.value) * decay(r.at, params.now, params.half_life_ms);
        let pair = pairs.entry((r.rater, r.subject)).or_default();
        if sw > 0.0 {
            pair.0 += w;
        } else if sw < 0.0 {
            pair.1 += w;
        }
    }
    let kp = params.pair_negative_weight.max(0.0);
    let mut raters_of: HashMap<PublicKey, Vec<PublicKey>> = HashMap::new();
    let mut partners: BTreeSet<PublicKey> = BTreeSet::new();
    for ((i, j), (pos, neg)) in pairs {
        if pos - kp * neg <= 0.0 || equivocators.contains(&i) || equivocators.contains(&j) {
            continue;
        }
        if i == *me {
            partners.insert(j);
        } else {
            raters_of.entry(j).or_default().push(i);
        }
    }
    // Everyone with a chain to the subject: a walk back along the edges, never through me.
    let mut reached: BTreeSet<PublicKey> = BTreeSet::from([*subject]);
    let mut stack = vec![*subject];
    while let Some(j) = stack.pop() {
        for i in raters_of.get(&j).into_iter().flatten() {
            if reached.insert(*i) {
                stack.push(*i);
            }
        }
    }
    let trusted: BTreeSet<&PublicKey> = trusted
        .iter()
        .filter(|k| *k != me && !equivocators.contains(k))
        .collect();
    TrustPaths {
        partners: partners.iter().filter(|k| reached.contains(k)).count() as u32,
        trusted: trusted.iter().filter(|k| reached.contains(k)).count() as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(n: u32) -> PublicKey {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_le_bytes());
        PublicKey(b)
    }
    fn r(rater: u32, subject: u32, score: u8) -> Rating {
        Rating {
            rater: k(rater),
            subject: k(subject),
            score,
            value: 50_000,
            at: 0,
            about_seller: true,
        }
    }
    const ME: u32 = 0;
    const DAY: u64 = 24 * 3600 * 1000;

    fn trust(ratings: &[Rating], trusted: &[u32], params: &Params) -> TrustView {
        let trusted: Vec<PublicKey> = trusted.iter().map(|&t| k(t)).collect();
        compute(&k(ME), ratings, &trusted, &[], params)
    }

    /// An honest market: peers 1..=20 trade with each other and rate well; me traded with 1.
    fn honest() -> Vec<Rating> {
        let mut v = vec![r(ME, 1, 5)];
        for i in 1..=20u32 {
            for d in [1u32, 3, 7] {
                let j = (i - 1 + d) % 20 + 1;
                v.push(r(i, j, 5));
            }
        }
        v
    }

    #[test]
    fn trust_paths_count_the_partners_and_trusted_keys_whose_chains_reach_a_peer() {
        // Me rated 1, 2 and 3 well and 4 badly; I trust key 5.
        // 1 -> 9, 2 -> 8 -> 9, 3 rated 9 badly; 4 -> 9 (a partner I complained about);
        // 5 -> 9; 6 -> 9 but no one reaches 6.
        let ratings = vec![
            r(ME, 1, 5),
            r(ME, 2, 4),
            r(ME, 3, 5),
            r(ME, 4, 1),
            r(1, 9, 5),
            r(2, 8, 5),
            r(8, 9, 5),
            r(3, 9, 1),
            r(4, 9, 5),
            r(5, 9, 5),
            r(6, 9, 5),
        ];
        let p = Params::default();
        let paths = |subject: u32, trusted: &[u32], equivocators: &[u32]| {
            let trusted: Vec<PublicKey> = trusted.iter().map(|&t| k(t)).collect();
            let eq: Vec<PublicKey> = equivocators.iter().map(|&t| k(t)).collect();
            trust_paths(&k(ME), &ratings, &trusted, &eq, &k(subject), &p)
        };
        assert_eq!(
            paths(9, &[5], &[]),
            TrustPaths {
                partners: 2,
                trusted: 1
            }
        );
        // A partner counts itself; chains never pass through me.
        assert_eq!(
            paths(1, &[], &[]),
            TrustPaths {
                partners: 1,
                trusted: 0
            }
        );
        assert_eq!(paths(6, &[5], &[]), TrustPaths::default());
        // An equivocator on the way cuts its chain; an equivocating subject has none.
        assert_eq!(paths(9, &[5], &[8]).partners, 1);
        assert_eq!(paths(9, &[5], &[9]), TrustPaths::default());
        assert_eq!(paths(ME, &[5], &[]), TrustPaths::default());
        // Peers the trust computation reaches are exactly those with a chain.
        let v = compute(&k(ME), &ratings, &[k(5)], &[], &p);
        for j in [1u32, 2, 3, 6, 8, 9] {
            let has_chain = paths(j, &[5], &[]) != TrustPaths::default();
            assert_eq!(v.get(&k(j)).trust > 0.0, has_chain, "peer {j}");
        }
    }

    #[test]
    fn unseeded_node_trusts_no_one() {
        let v = trust(&honest()[1..], &[], &Params::default());
        assert!(!v.seeded);
        assert_eq!(v.get(&k(5)).trust, 0.0);
        assert_eq!(v.get(&k(5)).confidence, 0.0);
        assert_eq!(v.get(&k(5)).rating, Some(5.0));
        assert_eq!(v.get(&k(5)).raters, 3);
        assert_eq!(supported_value(&v, &k(5), &honest()), 0);
    }

    #[test]
    fn trust_is_a_distribution_and_deterministic() {
        let a = trust(&honest(), &[], &Params::default());
        let mut shuffled = honest();
        shuffled.reverse();
        let b = trust(&shuffled, &[], &Params::default());
        let sum: f64 = a.iter().map(|(_, p)| p.trust).sum();
        assert!((sum - 1.0).abs() < 1e-9, "{sum}");
        for i in 1..=20 {
            assert!((a.get(&k(i)).trust - b.get(&k(i)).trust).abs() < 1e-12);
            assert!(a.get(&k(i)).trust > 0.0);
            assert_eq!(a.get(&k(i)).standing, 1.0);
        }
    }

    #[test]
    fn seeds_dominate() {
        let v = trust(&honest(), &[], &Params::default());
        let seed = v.get(&k(1));
        for i in 2..=20 {
            assert!(seed.trust > v.get(&k(i)).trust, "seed vs {i}");
        }
        assert_eq!(seed.score, 1.0);
    }

    #[test]
    fn a_disconnected_ring_scores_near_zero() {
        let mut ratings = honest();
        // 30 fake accounts, each with 5 five-star trades of huge value with every other.
        for a in 100..130u32 {
            for b in 100..130u32 {
                if a != b {
                    for _ in 0..5 {
                        ratings.push(Rating {
                            value: 10_000_000_000,
                            ..r(a, b, 5)
                        });
                    }
                }
            }
        }
        let v = trust(&ratings, &[], &Params::default());
        for a in 100..130 {
            let p = v.get(&k(a));
            assert_eq!(p.trust, 0.0, "ring member {a}");
            assert_eq!(p.confidence, 0.0);
            assert_eq!(p.rating, Some(5.0), "the stars are there, the trust is not");
        }
        // One honest peer rating one ring member once lets in only a little.
        ratings.push(r(20, 100, 5));
        let v = trust(&ratings, &[], &Params::default());
        let ring: f64 = (100..130).map(|a| v.get(&k(a)).trust).sum();
        let honest_total: f64 = (1..=20).map(|i| v.get(&k(i)).trust).sum();
        assert!(
            ring < honest_total / 5.0,
            "ring {ring} vs honest {honest_total}"
        );
    }

    #[test]
    fn trusted_keys_seed_and_bad_ratings_give_nothing() {
        let mut ratings = honest();
        ratings.push(r(1, 50, 1));
        ratings.push(r(2, 50, 2));
        let v = trust(&ratings, &[40], &Params::default());
        assert_eq!(v.get(&k(50)).trust, 0.0, "only bad ratings");
        assert_eq!(v.get(&k(50)).negative_raters, 2);
        assert!(v.get(&k(50)).standing < 0.01);
        assert!(v.get(&k(40)).trust > 0.0, "trusted key holds trust");
        assert!(v.get(&k(40)).confidence > 0.0);
        assert_eq!(v.get(&k(40)).voice, 1.0);
        // A trusted key's ratings pass trust on.
        ratings.push(r(40, 60, 5));
        let v = trust(&ratings, &[40], &Params::default());
        assert!(v.get(&k(60)).trust > 0.0);
    }

    #[test]
    fn more_honest_evidence_raises_confidence() {
        let mut ratings = honest();
        let one = trust(&ratings, &[], &Params::default());
        ratings.push(r(2, 30, 5));
        let c1 = trust(&ratings, &[], &Params::default())
            .get(&k(30))
            .confidence;
        for i in 3..=10 {
            ratings.push(r(i, 30, 5));
        }
        let c2 = trust(&ratings, &[], &Params::default())
            .get(&k(30))
            .confidence;
        assert_eq!(one.get(&k(30)).confidence, 0.0);
        assert!(c1 > 0.0 && c2 > c1, "{c1} then {c2}");
        // Ten ring members vouching add nothing.
        for a in 100..110u32 {
            for b in 100..110u32 {
                if a != b {
                    ratings.push(r(a, b, 5));
                }
            }
            ratings.push(r(a, 30, 5));
        }
        let c3 = trust(&ratings, &[], &Params::default())
            .get(&k(30))
            .confidence;
        assert!((c3 - c2).abs() < 1e-9, "{c2} vs {c3}");
    }

    /// Rule: a trusted complaint outweighs praise. A camouflaged cheat (peer 30) served half of
    /// the honest buyers who tried it well and cheated the other half, and is praised by a
    /// ring of ten fake accounts (100..110) that it praises back; an honest seller (peer 31)
    /// served six buyers well.
    fn camouflage_market() -> Vec<Rating> {
        let mut ratings = honest();
        for i in 2..=7 {
            ratings.push(r(i, 31, 5));
        }
        for i in 2..=13 {
            ratings.push(r(i, 30, if i % 2 == 0 { 5 } else { 1 }));
        }
        for a in 100..110u32 {
            for _ in 0..5 {
                ratings.push(r(a, 30, 5));
                ratings.push(r(30, a, 5));
            }
            ratings.push(r(a, (a % 10) + 100 + 1, 5));
        }
        ratings
    }

    #[test]
    fn a_camouflaged_seller_falls_below_an_honest_one() {
        let ratings = camouflage_market();
        let v = trust(&ratings, &[], &Params::default());
        let (cheat, honest) = (v.get(&k(30)), v.get(&k(31)));
        assert!(
            cheat.trust < honest.trust / 4.0,
            "cheat {} vs honest {}",
            cheat.trust,
            honest.trust
        );
        assert!(cheat.standing < 0.5 && honest.standing == 1.0);
        let ring: f64 = (100..110).map(|a| v.get(&k(a)).trust).sum();
        assert!(ring < honest.trust, "the ring it feeds: {ring}");
        // Without the rule (complaints weigh nothing) the same market ranks the cheat first:
        // its ring hands its trust back to it.
        let off = trust(
            &ratings,
            &[],
            &Params {
                negative_weight: 0.0,
                ..Params::default()
            },
        );
        assert!(off.get(&k(30)).trust > off.get(&k(31)).trust);
    }

    #[test]
    fn a_trusted_complaint_outweighs_praise_from_strangers() {
        // Peer 30 sold well to honest peer 2; five newcomers (200..205), each vouched for once
        // by an honest peer, praise it; a trusted key (40) complains once.
        let mut base = honest();
        base.push(r(2, 30, 5));
        for s in 200..205u32 {
            base.push(r(s - 200 + 3, s, 5));
        }
        let score =
            |ratings: &[Rating], params: &Params| trust(ratings, &[40], params).get(&k(30)).trust;
        let p = Params::default();
        let before = score(&base, &p);
        let mut praised = base.clone();
        for s in 200..205u32 {
            praised.push(r(s, 30, 5));
        }
        let mut complained = base.clone();
        complained.push(r(40, 30, 1));
        let rise = score(&praised, &p) - before;
        let drop = before - score(&complained, &p);
        assert!(rise > 0.0, "strangers' praise counts a little: {rise}");
        assert!(drop > rise, "drop {drop} vs rise {rise}");
        // Without the rule the complaint changes nothing.
        let off = Params {
            negative_weight: 0.0,
            ..p
        };
        assert!((score(&base, &off) - score(&complained, &off)).abs() < 1e-9);
    }

    #[test]
    fn one_huge_trade_buys_no_more_than_the_cap() {
        assert_eq!(value_weight(u64::MAX), VALUE_WEIGHT_MAX);
        assert_eq!(value_weight(1_000_000), VALUE_WEIGHT_MAX);
        assert!(value_weight(999_000) < VALUE_WEIGHT_MAX);
        // Honest peer 2 rated 30 for one ordinary trade and 31 for one of an absurd value:
        // 31 may get at most what a trade at the cap gives.
        let market = |huge: u64| {
            let mut v = honest();
            v.push(Rating {
                value: 20_000,
                ..r(2, 30, 5)
            });
            v.push(Rating {
                value: huge,
                ..r(2, 31, 5)
            });
            trust(&v, &[], &Params::default())
        };
        let at_cap = market(1_000_000);
        let absurd = market(1_000_000_000_000_000);
        assert_eq!(at_cap.get(&k(31)).trust, absurd.get(&k(31)).trust);
        let (small, big) = (at_cap.get(&k(30)).trust, at_cap.get(&k(31)).trust);
        assert!(big > small && big < small * 2.0, "{small} vs {big}");
    }

    #[test]
    fn recent_trades_count_more_than_old_ones() {
        let now = 1_000 * DAY;
        let p = Params::at(now);
        // Peer 2 sold well to peer 30 three times two years ago, then cheated it last week.
        let mut v = honest();
        for _ in 0..3 {
            v.push(Rating {
                at: now - 730 * DAY,
                ..r(30, 2, 5)
            });
        }
        v.push(Rating {
            at: now - 7 * DAY,
            ..r(30, 2, 1)
        });
        v.push(r(3, 30, 5));
        let with_decay = trust(&v, &[], &p);
        assert_eq!(with_decay.get(&k(2)).negative_raters, 1);
        // Without decay the old praise outweighs the new complaint.
        let without = trust(
            &v,
            &[],
            &Params {
                half_life_ms: 0,
                ..p
            },
        );
        assert_eq!(without.get(&k(2)).negative_raters, 0);
        assert!(decay(now - HALF_LIFE_MS, now, HALF_LIFE_MS) == 0.5);
        assert_eq!(decay(now + 5, now, HALF_LIFE_MS), 1.0);
    }

    #[test]
    fn a_proven_equivocator_gets_nothing_and_says_nothing() {
        let mut v = honest();
        for i in 2..=10 {
            v.push(r(i, 30, 5));
        }
        v.push(r(30, 60, 5));
        let before = trust(&v, &[], &Params::default());
        assert!(before.get(&k(30)).trust > 0.0 && before.get(&k(60)).trust > 0.0);
        let after = compute(&k(ME), &v, &[], &[k(30)], &Params::default());
        let e = after.get(&k(30));
        assert_eq!((e.trust, e.standing, e.voice), (0.0, 0.0, 0.0));
        assert_eq!(after.get(&k(60)).trust, 0.0, "its word passes nothing");
        assert_eq!(supported_value(&after, &k(30), &v), 0);
    }

    #[test]
    fn spies_vouching_for_cheats_pass_little_on() {
        // Spies 40..45 serve honest buyers well and praise cheats 100..110, whom honest
        // buyers who tried them complain about; the cheats praise the spies back.
        let mut v = honest();
        for s in 40..45u32 {
            for i in 1..=20u32 {
                if (i + s) % 4 == 0 {
                    v.push(r(i, s, 5));
                }
            }
            for c in 100..110u32 {
                v.push(r(s, c, 5));
                v.push(r(c, s, 5));
            }
        }
        for c in 100..110u32 {
            v.push(r(c - 100 + 2, c, 1));
        }
        let cheats = |view: &TrustView| (100..110).map(|c| view.get(&k(c))).collect::<Vec<_>>();
        let on = trust(&v, &[], &Params::default());
        // Without the rule (complaints weigh nothing) the spies' vouching, handed back and
        // forth, lifts every cheat above the weakest honest seller.
        let off = trust(
            &v,
            &[],
            &Params {
                negative_weight: 0.0,
                ..Params::default()
            },
        );
        let weakest_honest = (2..=20)
            .map(|i| off.get(&k(i)).trust)
            .fold(f64::MAX, f64::min);
        assert!(cheats(&off).iter().all(|c| c.trust > weakest_honest));
        let total = |v: &[PeerTrust]| v.iter().map(|c| c.trust).sum::<f64>();
        assert!(
            total(&cheats(&on)) < total(&cheats(&off)) / 4.0,
            "{} vs {}",
            total(&cheats(&on)),
            total(&cheats(&off))
        );
        for (c, (with, without)) in cheats(&on).iter().zip(cheats(&off)).enumerate() {
            assert!(
                with.standing <= 0.5,
                "cheat {c}: standing {}",
                with.standing
            );
            assert!(with.trust < without.trust / 2.0, "cheat {c}");
        }
        // The spies keep their own trust: they served honest buyers well.
        for s in 40..45 {
            assert_eq!(on.get(&k(s)).standing, 1.0);
        }
    }

    #[test]
    fn a_rating_of_a_buyer_passes_less_than_a_rating_of_a_seller() {
        let mut v = honest();
        v.push(r(2, 30, 5));
        v.push(Rating {
            about_seller: false,
            ..r(2, 31, 5)
        });
        let view = trust(&v, &[], &Params::default());
        let (seller, buyer) = (view.get(&k(30)).trust, view.get(&k(31)).trust);
        assert!(buyer > 0.0 && buyer < seller * 0.75, "{buyer} vs {seller}");
    }

    #[test]
    fn the_amount_gate_follows_trusted_vouching() {
        let mut v = honest();
        // I bought from 30 for 100 000; a stranger (300) "bought" a million's worth twice.
        v.push(Rating {
            value: 100_000,
            ..r(ME, 30, 5)
        });
        for _ in 0..2 {
            v.push(Rating {
                value: 1_000_000,
                ..r(300, 30, 5)
            });
        }
        let view = trust(&v, &[], &Params::default());
        assert_eq!(
            supported_value(&view, &k(30), &v),
            SUPPORT_MULTIPLE * 100_000
        );
        // Honest peer 2 bought twice (20 000 and 60 000): its largest counts, times its voice.
        v.push(Rating {
            value: 20_000,
            ..r(2, 30, 5)
        });
        v.push(Rating {
            value: 60_000,
            ..r(2, 30, 5)
        });
        let view = trust(&v, &[], &Params::default());
        let voice = view.get(&k(2)).voice;
        assert!(voice > 0.0, "{voice}");
        let s = supported_value(&view, &k(30), &v);
        let expect = (SUPPORT_MULTIPLE as f64 * (100_000.0 + voice * 60_000.0)).round() as u64;
        assert!(s.abs_diff(expect) <= 1, "{s} vs {expect}");
        // A complaint from someone I trust lowers it.
        v.push(r(3, 30, 1));
        let view = trust(&v, &[3], &Params::default());
        assert!(supported_value(&view, &k(30), &v) < s);
        // A rating as a buyer vouches for nothing as a seller.
        let only_buyer = vec![
            r(ME, 1, 5),
            Rating {
                about_seller: false,
                ..r(1, 31, 5)
            },
        ];
        let view = trust(&only_buyer, &[], &Params::default());
        assert_eq!(supported_value(&view, &k(31), &only_buyer), 0);
    }

    #[test]
    fn hundred_thousand_edges_compute_quickly_enough_to_test() {
        // Not a timing assertion (that is the benchmark's job); checks it converges.
        let mut ratings = vec![r(ME, 1, 5)];
        let n = 5_000u32;
        for i in 1..=n {
            for d in 1..=20u32 {
                ratings.push(r(
                    i,
                    (i * 7 + d * 13) % n + 1,
                    if d % 5 == 0 { 2 } else { 5 },
                ));
            }
        }
        let v = trust(&ratings, &[], &Params::default());
        assert!(v.iterations < Params::default().max_iterations);
        assert!(v.edges >= 90_000);
    }
}
