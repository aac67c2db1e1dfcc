//! The one rate limiter every protocol uses: a fixed window per peer, counting requests (or
//! bytes), in a table of bounded size; and [`Tiered`], which counts each request against its
//! peer, its address and its subnet.
//!
//! It owns only counters; it never refuses on its own behalf (the caller answers the peer)
//! and it reads the clock only through the `now` it is given, so it is tested without
//! waiting. Counters outlive connections: reconnecting does not reset them.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use super::peers::{Origin, Penalties, Subnet};

/// Most keys a limiter remembers unless told otherwise.
pub const RATE_TABLE_MAX: usize = 4096;

/// Counts what each key spends per window; refuses past `max`.
#[derive(Debug)]
pub struct RateLimiter<K = PeerId> {
    window: Duration,
    max: u64,
    capacity: usize,
    spent: HashMap<K, (Instant, u64)>,
}

impl<K: Eq + Hash + Copy> RateLimiter<K> {
    /// A limiter allowing `max` per `window` to each key, remembering [`RATE_TABLE_MAX`]
    /// keys.
    pub fn new(max: u64, window: Duration) -> Self {
        Self::with_capacity(max, window, RATE_TABLE_MAX)
    }

    /// A limiter remembering at most `capacity` keys.
    pub fn with_capacity(max: u64, window: Duration, capacity: usize) -> Self {
        Self {
            window,
            max,
            capacity: capacity.max(1),
            spent: HashMap::new(),
        }
    }

    /// Counts one request of `key` at `now`; true when it is within the limit.
    pub fn allow(&mut self, key: K, now: Instant) -> bool {
        self.spend(key, 1, now)
    }

    /// Counts `cost` for `key` at `now`; true when the key had not yet used up its window
    /// before this call (so one large item is still allowed once).
    pub fn spend(&mut self, key: K, cost: u64, now: Instant) -> bool {
        if !self.spent.contains_key(&key) && self.spent.len() >= self.capacity {
            let window = self.window;
            self.spent
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
            if self.spent.len() >= self.capacity
                && let Some(oldest) = self.spent.iter().min_by_key(|(_, (start, _))| *start)
            {
                // Every remembered key is active: the window that started first (the one
                // nearest its end) makes room. Refusing instead would lock every new peer
                // out for as long as the table stays full.
                let oldest = *oldest.0;
                self.spent.remove(&oldest);
            }
        }
        let entry = self.spent.entry(key).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        let within = entry.1 < self.max;
        entry.1 = entry.1.saturating_add(cost);
        within
    }

    /// Whether `key` has used up its window at `now`, without counting anything.
    pub fn exhausted(&self, key: &K, now: Instant) -> bool {
        self.spent.get(key).is_some_and(|(start, n)| {
            now.saturating_duration_since(*start) < self.window && *n >= self.max
        })
    }

    /// What `key` has spent in its current window at `now` (0 when its window is over).
    pub fn spent(&self, key: &K, now: Instant) -> u64 {
        self.spent
            .get(key)
            .filter(|(start, _)| now.saturating_duration_since(*start) < self.window)
            .map_or(0, |(_, n)| *n)
    }

    /// Gives `key` back `cost` of what it spent in its current window at `now` (nothing
    /// when its window is over: the new window starts afresh anyway).
    pub fn refund(&mut self, key: &K, cost: u64, now: Instant) {
        if let Some((start, n)) = self.spent.get_mut(key)
            && now.saturating_duration_since(*start) < self.window
        {
            *n = n.saturating_sub(cost);
        }
    }

    /// Keys remembered.
    pub fn len(&self) -> usize {
        self.spent.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.spent.is_empty()
    }
}

/// How many times one peer's budget an address gets: a household or a small NAT.
pub const IP_RATE_FACTOR: u64 = 4;
/// How many times one peer's budget a subnet (/24, /48) gets: a provider's block.
pub const SUBNET_RATE_FACTOR: u64 = 16;

/// Which budget refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The peer's own.
    Peer,
    /// Its address's (shared by every peer id behind it).
    Address,
    /// Its subnet's.
    Subnet,
}

impl Refused {
    /// Whose budget it was, for the refusal the peer reads.
    pub fn whose(self) -> &'static str {
        match self {
            Refused::Peer => "from you",
            Refused::Address => "from your address",
            Refused::Subnet => "from your network",
        }
    }
}

/// One budget counted three ways: per peer id, per address ([`IP_RATE_FACTOR`] times
/// larger) and per subnet ([`SUBNET_RATE_FACTOR`] times larger). Fresh peer ids cost nothing;
/// addresses do, so many keys from one address share its budget. A request from an address
/// or subnet with a penalty costs more against those two budgets (never the peer's).
#[derive(Debug)]
pub struct Tiered {
    peer: RateLimiter<PeerId>,
    ip: RateLimiter<IpAddr>,
    subnet: RateLimiter<Subnet>,
}

impl Tiered {
    /// `max` per `window` for one peer; the multiples for its address and subnet.
    pub fn new(max: u64, window: Duration) -> Self {
        Self {
            peer: RateLimiter::new(max, window),
            ip: RateLimiter::new(max.saturating_mul(IP_RATE_FACTOR), window),
            subnet: RateLimiter::new(max.saturating_mul(SUBNET_RATE_FACTOR), window),
        }
    }

    /// Counts one request of `peer`, connected from `origin` (None: not counted by address,
    /// as for relayed or loopback connections), at `now`; which budget refused it, if one
    /// did. A request the peer's own budget refuses is not charged to its address.
    pub fn allow(
        &mut self,
        peer: PeerId,
        origin: Option<Origin>,
        penalties: &Penalties,
        now: Instant,
    ) -> Result<(), Refused> {
        if !self.peer.allow(peer, now) {
            return Err(Refused::Peer);
        }
        let Some(o) = origin else {
            return Ok(());
        };
        if !self.ip.spend(o.ip, penalties.ip_cost(&o.ip, now), now) {
            return Err(Refused::Address);
        }
        if !self
            .subnet
            .spend(o.subnet, penalties.subnet_cost(&o.subnet, now), now)
        {
            return Err(Refused::Subnet);
        }
        Ok(())
    }

    /// Gives back a request [`Tiered::allow`] let through at `now` but that was not served
    /// after all (the server was busy): to its peer, address and subnet, at what the
    /// penalties charged.
    pub fn refund(
        &mut self,
        peer: PeerId,
        origin: Option<Origin>,
        penalties: &Penalties,
        now: Instant,
    ) {
        self.peer.refund(&peer, 1, now);
        if let Some(o) = origin {
            self.ip.refund(&o.ip, penalties.ip_cost(&o.ip, now), now);
            self.subnet
                .refund(&o.subnet, penalties.subnet_cost(&o.subnet, now), now);
        }
    }

    /// What `peer` has spent against its own budget in its current window at `now`.
    pub fn peer_spent(&self, peer: &PeerId, now: Instant) -> u64 {
        self.peer.spent(peer, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(10);

    #[test]
    fn allows_max_per_window_then_refuses_until_the_window_ends() {
        let mut r = RateLimiter::<u32>::new(3, W);
        let t0 = Instant::now();
        assert!(r.allow(1, t0));
        assert!(r.allow(1, t0));
        assert!(r.allow(1, t0 + Duration::from_secs(9)));
        assert!(!r.allow(1, t0 + Duration::from_secs(9)));
        assert!(r.exhausted(&1, t0 + Duration::from_secs(9)));
        // The refused request is counted too; nothing is once the window is over.
        assert_eq!(r.spent(&1, t0 + Duration::from_secs(9)), 4);
        assert_eq!(r.spent(&1, t0 + W), 0);
        assert_eq!(r.spent(&7, t0), 0);
        // A refund gives back within the window only.
        r.refund(&1, 1, t0 + Duration::from_secs(9));
        assert_eq!(r.spent(&1, t0 + Duration::from_secs(9)), 3);
        r.refund(&7, 1, t0);
        assert_eq!(r.spent(&7, t0), 0);
        // Another key has its own budget.
        assert!(r.allow(2, t0));
        // A new window starts afresh.
        assert!(r.allow(1, t0 + W));
        assert!(!r.exhausted(&1, t0 + W));
    }

    #[test]
    fn spending_counts_cost_and_lets_one_large_item_through() {
        let mut r = RateLimiter::<u32>::new(100, W);
        let t0 = Instant::now();
        assert!(r.spend(1, 60, t0));
        assert!(r.spend(1, 60, t0), "40 left: one more item may go");
        assert!(!r.spend(1, 1, t0), "120 spent of 100");
    }

    #[test]
    fn the_table_is_bounded_and_stale_keys_make_room() {
        let mut r = RateLimiter::<u32>::with_capacity(5, W, 3);
        let t0 = Instant::now();
        for k in 0..3 {
            assert!(r.allow(k, t0));
        }
        // Once their windows are over, the old keys are dropped.
        assert!(r.allow(9, t0 + W));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_table_full_of_active_keys_still_admits_a_newcomer() {
        let mut r = RateLimiter::<u32>::with_capacity(5, W, 3);
        let t0 = Instant::now();
        for k in 0..3 {
            assert!(r.allow(k, t0 + Duration::from_secs(k.into())));
        }
        // Every key is within its window; the newcomer is still admitted and counted.
        let now = t0 + Duration::from_secs(5);
        assert!(r.allow(9, now));
        assert_eq!(r.len(), 3, "the table does not grow");
        for _ in 1..5 {
            assert!(r.allow(9, now));
        }
        assert!(!r.allow(9, now), "its budget is counted like any other");
        assert!(r.exhausted(&9, now));
        // The key whose window started first made room; the others kept their counts.
        assert!(!r.spent.contains_key(&0));
        assert!(r.spent.contains_key(&1) && r.spent.contains_key(&2));
    }

    #[test]
    fn a_byte_budget_is_counted_for_a_newcomer_when_the_table_is_full() {
        let mut r = RateLimiter::<u32>::with_capacity(100, W, 2);
        let t0 = Instant::now();
        assert!(r.spend(1, 10, t0));
        assert!(r.spend(2, 10, t0));
        assert!(r.spend(3, 500, t0 + Duration::from_secs(1)));
        // Recorded: the newcomer cannot be served again within its window.
        assert!(r.exhausted(&3, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn fresh_peer_ids_from_one_address_share_its_budget() {
        let mut t = Tiered::new(5, W);
        let pen = Penalties::default();
        let now = Instant::now();
        let addr: libp2p::Multiaddr = "/ip4/203.0.113.5/tcp/1".parse().expect("addr");
        let o = super::super::peers::origin_of(&addr, false);
        let mut allowed = 0;
        let mut refused_by = None;
        for _ in 0..40 {
            let key = PeerId::random();
            for _ in 0..3 {
                match t.allow(key, o, &pen, now) {
                    Ok(()) => allowed += 1,
                    Err(r) => refused_by = Some(r),
                }
            }
        }
        assert_eq!(
            allowed,
            5 * IP_RATE_FACTOR,
            "the address's budget, not 40 peers'"
        );
        assert_eq!(refused_by, Some(Refused::Address));
        // A neighbour on another address of the subnet has its own address budget.
        let near: libp2p::Multiaddr = "/ip4/203.0.113.6/tcp/1".parse().expect("addr");
        let near = super::super::peers::origin_of(&near, false);
        assert_eq!(t.allow(PeerId::random(), near, &pen, now), Ok(()));
        // Without an origin (relayed, loopback) only the peer is counted.
        let p = PeerId::random();
        for _ in 0..5 {
            assert_eq!(t.allow(p, None, &pen, now), Ok(()));
        }
        assert_eq!(t.allow(p, None, &pen, now), Err(Refused::Peer));
    }

    #[test]
    fn a_penalized_address_is_throttled_not_shut() {
        let mut t = Tiered::new(8, W);
        let mut pen = Penalties::default();
        let now = Instant::now();
        let addr: libp2p::Multiaddr = "/ip4/203.0.113.5/tcp/1".parse().expect("addr");
        let o = super::super::peers::origin_of(&addr, false);
        for _ in 0..3 {
            pen.add(o.expect("origin"), now);
        }
        let allowed = (0..100)
            .filter(|_| t.allow(PeerId::random(), o, &pen, now).is_ok())
            .count() as u64;
        // Each request costs 4 against 32: 8 go through (one more request is let in while
        // budget remains, as for any spend).
        assert_eq!(allowed, 8 * IP_RATE_FACTOR / 4);
        assert!(allowed > 0);
    }
}
