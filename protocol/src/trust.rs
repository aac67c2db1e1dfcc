//! Personalized trust: an EigenTrust-style iteration over the graph of rated, completed
//! trades, seen from one node.
//!
//! Every rating is an edge from the rater to the rated party, weighted by the trade's value
//! (logarithmically: a huge claimed price buys little) and by the score (5 → +1, 4 → +½,
//! 3 → 0, 2 → −½, 1 → −1). A rater's edges to one peer are summed, negative sums count as
//! nothing, and the sum is damped (`ln(1 + s)`, so many trades between the same two keys add
//! less and less); each rater's outgoing weights are then normalized into a distribution.
//!
//! The seed distribution `p` comes from this node alone: the peers it traded with (its own
//! ratings) and the keys its user chose to trust. Trust is the stationary distribution of
//! `t = (1 − α)·Cᵀt + α·p`, where peers that rated no one (and this node itself) hand their
//! trust back to the seeds. Trust enters a group of accounts only along ratings from peers
//! that already hold trust, so a ring that only trades among itself starts from zero and stays
//! there, however many trades and five-star ratings it signs.
//!
//! Pure and deterministic: the same ratings and seeds give the same numbers on every node.

use std::collections::HashMap;

use crate::ids::PublicKey;

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
}

/// Tuning of the iteration.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Share of trust handed back to the seeds at every step (α).
    pub damping: f64,
    /// Stop after this many steps.
    pub max_iterations: usize,
    /// Stop when the L1 change of a step is below this.
    pub tolerance: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            damping: 0.5,
            max_iterations: 200,
            tolerance: 1e-12,
        }
    }
}

/// What one node concludes about one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeerTrust {
    /// The peer's share of this node's trust (all shares sum to 1).
    pub trust: f64,
    /// `trust` relative to the most trusted peer: 0..=1.
    pub score: f64,
    /// How much independent, trusted evidence stands behind the score: 0..1.
    pub confidence: f64,
    /// Mean of the stars the peer received (unweighted), if rated.
    pub rating: Option<f64>,
    /// Distinct raters.
    pub raters: u32,
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
}

impl TrustView {
    /// What this view says about `peer` (zeros for an unknown peer).
    pub fn get(&self, peer: &PublicKey) -> PeerTrust {
        self.peers.get(peer).copied().unwrap_or_default()
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

/// The weight of a trade's value: 1 for a trade of no value, growing with its logarithm.
pub fn value_weight(value: u64) -> f64 {
    1.0 + (1.0 + value as f64).log10() / 3.0
}

/// Confidence from an amount of evidence (each unit one fully trusted independent witness).
pub fn confidence(evidence: f64) -> f64 {
    1.0 - (-evidence / 3.0).exp()
}

/// Computes the trust of every rated peer as seen by `me`, whose user trusts `trusted`.
/// `me`'s own ratings (its completed trades) seed the computation alongside `trusted`.
pub fn compute(
    me: &PublicKey,
    ratings: &[Rating],
    trusted: &[PublicKey],
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
    // Sum the signed weight per (rater, subject) pair, in a deterministic order.
    let mut pairs: HashMap<(usize, usize), f64> = HashMap::new();
    let mut stars: HashMap<usize, (u64, u32)> = HashMap::new();
    let mut raters_of: HashMap<usize, std::collections::BTreeSet<usize>> = HashMap::new();
    for r in ratings {
        if r.rater == r.subject {
            continue;
        }
        let i = id(&r.rater, &mut index, &mut keys);
        let j = id(&r.subject, &mut index, &mut keys);
        *pairs.entry((i, j)).or_default() += score_weight(r.score) * value_weight(r.value);
        let s = stars.entry(j).or_default();
        s.0 += u64::from(r.score.clamp(1, 5));
        s.1 += 1;
        raters_of.entry(j).or_default().insert(i);
    }
    for k in trusted {
        id(k, &mut index, &mut keys);
    }
    let n = keys.len();
    // Rows of C: outgoing normalized weights, sorted for determinism.
    let mut rows: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    let mut sorted: Vec<((usize, usize), f64)> = pairs.into_iter().collect();
    sorted.sort_by_key(|a| a.0);
    let edges = sorted.len();
    let mut positive: HashMap<(usize, usize), bool> = HashMap::new();
    for ((i, j), s) in sorted {
        positive.insert((i, j), s > 0.0);
        if s > 0.0 {
            rows[i].push((j, (1.0 + s).ln()));
        }
    }
    // Seeds: own positive ratings, and trusted keys at the weight of the best own one.
    let mut p = vec![0.0f64; n];
    let own_best = rows[0].iter().map(|&(_, w)| w).fold(0.0f64, f64::max);
    for &(j, w) in &rows[0] {
        p[j] += w;
    }
    for k in trusted {
        if let Some(&j) = index.get(k)
            && j != 0
        {
            p[j] += own_best.max(1.0);
        }
    }
    let total: f64 = p.iter().sum();
    let seeded = total > 0.0;
    if seeded {
        p.iter_mut().for_each(|x| *x /= total);
    }
    rows[0].clear(); // this node hands its trust to the seeds
    for row in &mut rows {
        let s: f64 = row.iter().map(|&(_, w)| w).sum();
        row.iter_mut().for_each(|(_, w)| *w /= s);
    }
    // Power iteration.
    let alpha = params.damping.clamp(0.0, 1.0);
    let mut t = p.clone();
    let mut next = vec![0.0f64; n];
    let mut iterations = 0;
    if seeded {
        for _ in 0..params.max_iterations {
            iterations += 1;
            next.iter_mut().for_each(|x| *x = 0.0);
            let mut dangling = 0.0;
            for (i, row) in rows.iter().enumerate() {
                let ti = t[i];
                if ti == 0.0 {
                    continue;
                }
                if row.is_empty() {
                    dangling += ti;
                } else {
                    for &(j, w) in row {
                        next[j] += ti * w;
                    }
                }
            }
            let mut diff = 0.0;
            for j in 0..n {
                let v = (1.0 - alpha) * (next[j] + dangling * p[j]) + alpha * p[j];
                diff += (v - t[j]).abs();
                next[j] = v;
            }
            std::mem::swap(&mut t, &mut next);
            if diff < params.tolerance {
                break;
            }
        }
    }
    // Scores and confidence.
    let max_other = t.iter().skip(1).copied().fold(0.0f64, f64::max);
    let reached = t.iter().skip(1).filter(|&&x| x > 0.0).count().max(1);
    let fair_share = 1.0 / reached as f64;
    let trusted_idx: Vec<usize> = trusted
        .iter()
        .filter_map(|k| index.get(k).copied())
        .collect();
    let mut peers = HashMap::with_capacity(n);
    for (j, key) in keys.iter().enumerate() {
        let mut evidence = if trusted_idx.contains(&j) { 1.0 } else { 0.0 };
        let empty = std::collections::BTreeSet::new();
        let list = raters_of.get(&j).unwrap_or(&empty);
        for &r in list {
            if !positive.get(&(r, j)).copied().unwrap_or(false) {
                continue;
            }
            evidence += if r == 0 {
                1.0
            } else {
                (t[r] / fair_share).min(1.0)
            };
        }
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
                rating: (count > 0).then(|| sum as f64 / f64::from(count)),
                raters: list.len() as u32,
                ratings: count,
            },
        );
    }
    TrustView {
        peers,
        seeded,
        iterations,
        edges,
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
        }
    }
    const ME: u32 = 0;

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
    fn unseeded_node_trusts_no_one() {
        let v = compute(&k(ME), &honest()[1..], &[], &Params::default());
        assert!(!v.seeded);
        assert_eq!(v.get(&k(5)).trust, 0.0);
        assert_eq!(v.get(&k(5)).confidence, 0.0);
        assert_eq!(v.get(&k(5)).rating, Some(5.0));
    }

    #[test]
    fn trust_is_a_distribution_and_deterministic() {
        let a = compute(&k(ME), &honest(), &[], &Params::default());
        let mut shuffled = honest();
        shuffled.reverse();
        let b = compute(&k(ME), &shuffled, &[], &Params::default());
        let sum: f64 = a.iter().map(|(_, p)| p.trust).sum();
        assert!((sum - 1.0).abs() < 1e-9, "{sum}");
        for i in 1..=20 {
            assert!((a.get(&k(i)).trust - b.get(&k(i)).trust).abs() < 1e-12);
            assert!(a.get(&k(i)).trust > 0.0);
        }
    }

    #[test]
    fn seeds_dominate() {
        let v = compute(&k(ME), &honest(), &[], &Params::default());
        let seed = v.get(&k(1));
        for i in 2..=20 {
            assert!(seed.trust > v.get(&k(i)).trust, "seed vs {i}");
        }
        assert_eq!(seed.score, 1.0);
    }

    #[test]
    fn a_disconnected_ring_scores_near_zero() {
        let mut ratings = honest();
        // 30 fake accounts, each with 50 five-star trades of huge value with every other.
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
        let v = compute(&k(ME), &ratings, &[], &Params::default());
        for a in 100..130 {
            let p = v.get(&k(a));
            assert_eq!(p.trust, 0.0, "ring member {a}");
            assert_eq!(p.confidence, 0.0);
            assert_eq!(p.rating, Some(5.0), "the stars are there, the trust is not");
        }
        // One honest peer rating one ring member once lets in only a little.
        ratings.push(r(20, 100, 5));
        let v = compute(&k(ME), &ratings, &[], &Params::default());
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
        let v = compute(&k(ME), &ratings, &[k(40)], &Params::default());
        assert_eq!(v.get(&k(50)).trust, 0.0, "only bad ratings");
        assert!(v.get(&k(40)).trust > 0.0, "trusted key holds trust");
        assert!(v.get(&k(40)).confidence > 0.0);
        // A trusted key's ratings pass trust on.
        ratings.push(r(40, 60, 5));
        let v = compute(&k(ME), &ratings, &[k(40)], &Params::default());
        assert!(v.get(&k(60)).trust > 0.0);
    }

    #[test]
    fn more_honest_evidence_raises_confidence() {
        let mut ratings = honest();
        let one = compute(&k(ME), &ratings, &[], &Params::default());
        ratings.push(r(2, 30, 5));
        let c1 = compute(&k(ME), &ratings, &[], &Params::default())
            .get(&k(30))
            .confidence;
        for i in 3..=10 {
            ratings.push(r(i, 30, 5));
        }
        let c2 = compute(&k(ME), &ratings, &[], &Params::default())
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
        let c3 = compute(&k(ME), &ratings, &[], &Params::default())
            .get(&k(30))
            .confidence;
        assert!((c3 - c2).abs() < 1e-9, "{c2} vs {c3}");
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
        let v = compute(&k(ME), &ratings, &[], &Params::default());
        assert!(v.iterations < Params::default().max_iterations);
        assert!(v.edges >= 90_000);
    }
}
