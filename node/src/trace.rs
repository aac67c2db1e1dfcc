//! Per-object hop traces (issue 16): where the time of one object's trip through a node
//! goes. Off unless the `jangteo::trace` target is enabled at debug level
//! (`JANGTEO_LOG=info,jangteo::trace=debug`); then every gossip message judged here leaves one
//! `hop` record and every listing posted through the API one `publish` record, each a JSON
//! object in the message of a tracing event on [`TARGET`].
//!
//! Times are microseconds since the unix epoch, so records of different processes on one
//! machine line up; within a record they are the wall time of the first stamp plus monotonic
//! ([`Instant`]) offsets, so a wall clock step cannot reorder the stages of one record.
//!
//! A `hop` record: `received_us` (the gossipsub event reached the swarm task),
//! `validated_us` (decoded, signature and fields checked), `stored_us` (the store's verdict:
//! written, or refused as a duplicate, stale, over a limit), `forwarded_us` (the verdict
//! reported to gossipsub, which forwards an accepted message to its mesh peers at that moment).
//! A `publish` record: `api_us` (the post reached the listings service), `validated_us`
//! (checked and stamped), `stored_us` (written), `published_us` (handed to gossipsub; the
//! write is synced after it, before the post is answered).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// The tracing target of hop records.
pub const TARGET: &str = "jangteo::trace";

/// Whether hop records are wanted (the [`TARGET`] enabled at debug level).
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::DEBUG)
}

/// A wall-clock anchor: one reading of both clocks, from which later [`Instant`]s are
/// converted to wall microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Anchor {
    mono: Instant,
    wall_us: u64,
}

impl Anchor {
    /// Both clocks now.
    pub fn now() -> Self {
        Self {
            mono: Instant::now(),
            wall_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        }
    }

    /// The anchor's own wall time.
    pub fn wall_us(&self) -> u64 {
        self.wall_us
    }

    /// The wall time of `t` (the anchor's wall time plus the monotonic offset).
    pub fn wall_us_at(&self, t: Instant) -> u64 {
        let off = t.saturating_duration_since(self.mono).as_micros();
        self.wall_us
            .saturating_add(u64::try_from(off).unwrap_or(u64::MAX))
    }
}

/// The stages of one gossip message in this node, filled in as it goes.
#[derive(Debug, Clone)]
pub struct HopTrace {
    received: Anchor,
    validated: Option<Instant>,
    stored: Option<Instant>,
    listing: Option<String>,
}

#[derive(Serialize)]
struct HopRecord<'a> {
    trace: &'static str,
    listing: Option<&'a str>,
    object: &'a str,
    from: &'a str,
    verdict: &'a str,
    received_us: u64,
    validated_us: Option<u64>,
    stored_us: Option<u64>,
    forwarded_us: u64,
}

impl HopTrace {
    /// A message received now, or `None` when traces are off.
    pub fn received() -> Option<Box<Self>> {
        enabled().then(|| {
            Box::new(Self {
                received: Anchor::now(),
                validated: None,
                stored: None,
                listing: None,
            })
        })
    }

    /// Decoding, signature and field checks are done.
    pub fn validated(&mut self) {
        self.validated = Some(Instant::now());
    }

    /// The store gave its verdict; `listing` is the listing id when a listing was stored.
    pub fn stored(&mut self, listing: Option<&str>) {
        self.stored = Some(Instant::now());
        self.listing = listing.map(str::to_owned);
    }

    /// The verdict was reported to gossipsub: emits the record.
    pub fn forwarded(&self, object: &str, from: &str, verdict: &str) {
        let a = &self.received;
        let record = HopRecord {
            trace: "hop",
            listing: self.listing.as_deref(),
            object,
            from,
            verdict,
            received_us: a.wall_us(),
            validated_us: self.validated.map(|t| a.wall_us_at(t)),
            stored_us: self.stored.map(|t| a.wall_us_at(t)),
            forwarded_us: a.wall_us_at(Instant::now()),
        };
        emit(&record);
    }
}

/// The stages of one listing posted through the API.
#[derive(Debug, Clone)]
pub struct PublishTrace {
    api: Anchor,
    validated: Option<Instant>,
    stored: Option<Instant>,
}

#[derive(Serialize)]
struct PublishRecord<'a> {
    trace: &'static str,
    listing: &'a str,
    api_us: u64,
    validated_us: Option<u64>,
    stored_us: Option<u64>,
    published_us: u64,
}

impl PublishTrace {
    /// A post that starts now, or `None` when traces are off.
    pub fn start() -> Option<Self> {
        enabled().then(|| Self {
            api: Anchor::now(),
            validated: None,
            stored: None,
        })
    }

    /// Checked (and stamped).
    pub fn validated(&mut self) {
        self.validated = Some(Instant::now());
    }

    /// Written.
    pub fn stored(&mut self) {
        self.stored = Some(Instant::now());
    }

    /// Handed to gossipsub: emits the record.
    pub fn published(&self, listing: &str) {
        let a = &self.api;
        emit(&PublishRecord {
            trace: "publish",
            listing,
            api_us: a.wall_us(),
            validated_us: self.validated.map(|t| a.wall_us_at(t)),
            stored_us: self.stored.map(|t| a.wall_us_at(t)),
            published_us: a.wall_us_at(Instant::now()),
        });
    }
}

fn emit<T: Serialize>(record: &T) {
    if let Ok(json) = serde_json::to_string(record) {
        tracing::debug!(target: TARGET, "{json}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_times_follow_the_monotonic_clock() {
        let a = Anchor::now();
        let later = a.mono + std::time::Duration::from_micros(1500);
        assert_eq!(a.wall_us_at(later), a.wall_us() + 1500);
        // An instant before the anchor does not go back in time.
        assert_eq!(a.wall_us_at(a.mono), a.wall_us());
    }
}
