//! The DHT's record store: libp2p's in-memory store, written through to a [`KadBacking`]
//! (the node's RocksDB store) and loaded from it at start, so a restarted node still knows
//! who provides which photo and still answers for the records it held. Kademlia republishes
//! what the store holds on its own schedule (its provider records every 12 hours, values
//! every hour), and entries past their expiry are neither loaded nor served.
//!
//! Layout of the backing entries: `r` || key → a record, `p` || key → the key's whole
//! provider list (rewritten on every change, so the stored list is always the kept one).
//! Values are JSON with byte strings in hex and expiries as wall-clock milliseconds.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::kad::store::{MemoryStore, MemoryStoreConfig, RecordStore, Result as StoreResult};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

/// One stored DHT entry: (key, value).
pub type Entry = (Vec<u8>, Vec<u8>);

/// Where the DHT's entries are kept between runs.
pub trait KadBacking: Send + Sync + std::fmt::Debug + 'static {
    /// Every entry held.
    fn load(&self) -> Vec<Entry>;
    /// Writes `puts` and deletes `deletes`, together.
    fn write(&self, puts: &[Entry], deletes: &[Vec<u8>]);
}

#[derive(Serialize, Deserialize)]
struct StoredRecord {
    value: String,
    publisher: Option<String>,
    expires_ms: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct StoredProvider {
    provider: String,
    expires_ms: Option<u64>,
    addrs: Vec<String>,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An `Instant` as wall-clock milliseconds.
fn to_wall(t: Instant) -> u64 {
    let now = Instant::now();
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if t >= now {
        wall_ms().saturating_add(ms(t - now))
    } else {
        wall_ms().saturating_sub(ms(now - t))
    }
}

/// Wall-clock milliseconds as an `Instant`, or `None` when that time has passed.
fn from_wall(ms: u64) -> Option<Instant> {
    let now = wall_ms();
    (ms > now).then(|| Instant::now() + Duration::from_millis(ms - now))
}

fn record_key(key: &RecordKey) -> Vec<u8> {
    let mut k = vec![b'r'];
    k.extend_from_slice(key.as_ref());
    k
}

fn providers_key(key: &RecordKey) -> Vec<u8> {
    let mut k = vec![b'p'];
    k.extend_from_slice(key.as_ref());
    k
}

/// The record store the node's Kademlia uses.
pub struct PersistentStore {
    mem: MemoryStore,
    backing: Option<Arc<dyn KadBacking>>,
}

impl std::fmt::Debug for PersistentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentStore")
            .field("records", &self.mem.records().count())
            .field("persistent", &self.backing.is_some())
            .finish()
    }
}

impl PersistentStore {
    /// A store for `local`, loaded from `backing` (memory only when `None`). Entries that
    /// cannot be read or have expired are dropped from the backing.
    pub fn new(
        local: PeerId,
        config: MemoryStoreConfig,
        backing: Option<Arc<dyn KadBacking>>,
    ) -> Self {
        let mut store = Self {
            mem: MemoryStore::with_config(local, config),
            backing: None,
        };
        let Some(b) = backing else {
            return store;
        };
        let mut stale = Vec::new();
        let (mut records, mut providers) = (0usize, 0usize);
        for (k, v) in b.load() {
            let ok = match k.split_first() {
                Some((b'r', key)) => store.load_record(key, &v).inspect(|_| records += 1),
                Some((b'p', key)) => store.load_providers(key, &v).inspect(|n| providers += n),
                _ => None,
            };
            if ok.is_none() {
                stale.push(k);
            }
        }
        if !stale.is_empty() {
            b.write(&[], &stale);
        }
        tracing::info!(
            records,
            providers,
            dropped = stale.len(),
            "DHT records loaded"
        );
        store.backing = Some(b);
        store
    }

    fn load_record(&mut self, key: &[u8], v: &[u8]) -> Option<usize> {
        let s: StoredRecord = serde_json::from_slice(v).ok()?;
        let expires = match s.expires_ms {
            Some(ms) => Some(from_wall(ms)?),
            None => None,
        };
        let publisher = match s.publisher {
            Some(p) => Some(p.parse::<PeerId>().ok()?),
            None => None,
        };
        let record = Record {
            key: RecordKey::new(&key),
            value: hex::decode(s.value).ok()?,
            publisher,
            expires,
        };
        self.mem.put(record).ok()?;
        Some(1)
    }

    fn load_providers(&mut self, key: &[u8], v: &[u8]) -> Option<usize> {
        let list: Vec<StoredProvider> = serde_json::from_slice(v).ok()?;
        let mut n = 0;
        for p in list {
            let expires = match p.expires_ms {
                Some(ms) => match from_wall(ms) {
                    Some(t) => Some(t),
                    None => continue,
                },
                None => None,
            };
            let Ok(provider) = p.provider.parse::<PeerId>() else {
                continue;
            };
            let record = ProviderRecord {
                key: RecordKey::new(&key),
                provider,
                expires,
                addresses: p
                    .addrs
                    .iter()
                    .filter_map(|a| a.parse::<Multiaddr>().ok())
                    .collect(),
            };
            if self.mem.add_provider(record).is_ok() {
                n += 1;
            }
        }
        (n > 0).then_some(n)
    }

    /// Writes the key's provider list as memory holds it now (or deletes it when empty).
    fn persist_providers(&self, key: &RecordKey) {
        let Some(b) = &self.backing else { return };
        let list: Vec<StoredProvider> = self
            .mem
            .providers(key)
            .into_iter()
            .map(|p| StoredProvider {
                provider: p.provider.to_string(),
                expires_ms: p.expires.map(to_wall),
                addrs: p.addresses.iter().map(ToString::to_string).collect(),
            })
            .collect();
        let k = providers_key(key);
        if list.is_empty() {
            b.write(&[], &[k]);
        } else if let Ok(v) = serde_json::to_vec(&list) {
            b.write(&[(k, v)], &[]);
        }
    }
}

impl RecordStore for PersistentStore {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        self.mem.get(k)
    }

    fn put(&mut self, r: Record) -> StoreResult<()> {
        let stored = StoredRecord {
            value: hex::encode(&r.value),
            publisher: r.publisher.map(|p| p.to_string()),
            expires_ms: r.expires.map(to_wall),
        };
        let key = record_key(&r.key);
        self.mem.put(r)?;
        if let (Some(b), Ok(v)) = (&self.backing, serde_json::to_vec(&stored)) {
            b.write(&[(key, v)], &[]);
        }
        Ok(())
    }

    fn remove(&mut self, k: &RecordKey) {
        self.mem.remove(k);
        if let Some(b) = &self.backing {
            b.write(&[], &[record_key(k)]);
        }
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.mem.records()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> StoreResult<()> {
        let key = record.key.clone();
        self.mem.add_provider(record)?;
        self.persist_providers(&key);
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.mem.providers(key)
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.mem.provided()
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        self.mem.remove_provider(k, p);
        self.persist_providers(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct MemBacking(Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>);

    impl KadBacking for MemBacking {
        fn load(&self) -> Vec<Entry> {
            self.0
                .lock()
                .expect("lock")
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }
        fn write(&self, puts: &[Entry], deletes: &[Vec<u8>]) {
            let mut m = self.0.lock().expect("lock");
            for k in deletes {
                m.remove(k);
            }
            for (k, v) in puts {
                m.insert(k.clone(), v.clone());
            }
        }
    }

    #[test]
    fn records_and_providers_survive_a_restart_and_expired_ones_do_not() {
        let local = PeerId::random();
        let other = PeerId::random();
        let backing: Arc<dyn KadBacking> = Arc::new(MemBacking::default());
        let key = RecordKey::new(&[7u8; 32]);
        let gone = RecordKey::new(&[8u8; 32]);
        {
            let mut s =
                PersistentStore::new(local, MemoryStoreConfig::default(), Some(backing.clone()));
            let mut r = Record::new(key.clone(), b"value".to_vec());
            r.expires = Some(Instant::now() + Duration::from_secs(3600));
            s.put(r).expect("put");
            let mut old = Record::new(gone.clone(), b"old".to_vec());
            old.expires = Instant::now().checked_sub(Duration::from_secs(1));
            s.put(old).expect("put");
            for p in [local, other] {
                s.add_provider(ProviderRecord {
                    key: key.clone(),
                    provider: p,
                    expires: Some(Instant::now() + Duration::from_secs(3600)),
                    addresses: vec!["/ip4/127.0.0.1/tcp/4001".parse().expect("addr")],
                })
                .expect("provider");
            }
            s.remove_provider(&key, &other);
        }
        // Restarted: what had expired is not loaded.
        let s = PersistentStore::new(local, MemoryStoreConfig::default(), Some(backing.clone()));
        assert_eq!(
            s.get(&key).map(|r| r.value.clone()),
            Some(b"value".to_vec())
        );
        assert!(s.get(&gone).is_none(), "expired while down: not loaded");
        let provs = s.providers(&key);
        assert_eq!(provs.len(), 1, "the removed provider stays removed");
        assert_eq!(provs[0].provider, local);
        assert_eq!(
            s.provided().count(),
            1,
            "our own provider record, to republish"
        );
        assert!(
            !backing.load().iter().any(|(k, _)| k == &record_key(&gone)),
            "the expired entry is deleted from the backing"
        );
    }

    #[test]
    fn unreadable_entries_are_dropped_not_fatal() {
        let backing = Arc::new(MemBacking::default());
        backing.write(
            &[
                (b"rkey".to_vec(), b"not json".to_vec()),
                (b"xjunk".to_vec(), vec![1]),
            ],
            &[],
        );
        let b: Arc<dyn KadBacking> = backing.clone();
        let s = PersistentStore::new(PeerId::random(), MemoryStoreConfig::default(), Some(b));
        assert_eq!(s.records().count(), 0);
        assert!(backing.load().is_empty());
    }
}
