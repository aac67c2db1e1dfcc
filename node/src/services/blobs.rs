//! Blobs (listing images): add local files, serve them to peers, fetch them from peers.
//!
//! Serving: requests on `/jangteo/blob/1` arrive from the swarm task (already counted by the
//! per-peer limit) and are answered from the store on a blocking thread, a few at a time.
//!
//! Owns the fetch strategy: ask the peers we are connected to and the providers the DHT names,
//! one at a time; take the manifest only if it hashes to the id and each chunk only if it
//! hashes to its manifest entry, dropping a peer at its first bad chunk and going on with the
//! next. A blob is stored only once every chunk is verified, and then announced in the DHT.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jangteo_protocol::ObjectId;
use jangteo_protocol::blob::{BlobError, Manifest};
use libp2p::PeerId;
use serde_bytes::ByteBuf;

use crate::api::types::BlobView;
use crate::error::{NodeError, StoreError};
use crate::net::{BlobRequest, BlobResponse, Client, InboundBlob, Response, serve_inbound};
use crate::store::Store;

/// How long a DHT provider lookup may take.
pub const PROVIDER_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Most peers asked for one blob.
pub const FETCH_PEERS_MAX: usize = 16;
/// Blob requests answered at once.
pub const BLOB_SERVE_WORKERS: usize = 4;

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobServiceError {
    /// Not a blob id.
    #[error("{0:?} is not a blob id (64 hex digits)")]
    BadId(String),
    /// Empty or too large.
    #[error(transparent)]
    Invalid(#[from] BlobError),
    /// No peer had it (or every one that claimed to lied).
    #[error("blob {id} is not held here and no peer delivered it ({tried} peers asked{detail})")]
    NotFound {
        /// Blob id.
        id: String,
        /// Peers asked.
        tried: usize,
        /// What went wrong with them.
        detail: String,
    },
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The network task is gone.
    #[error(transparent)]
    Network(#[from] NodeError),
}

/// Blobs added or fetched this recently are kept by garbage collection even when no listing
/// names them yet (a photo is added before the listing that names it is posted).
pub const RECENT_KEEP: Duration = Duration::from_secs(24 * 3600);

/// The blob service.
#[derive(Debug, Clone)]
pub struct Blobs {
    store: Arc<Store>,
    network: Client,
    recent: Arc<std::sync::Mutex<std::collections::HashMap<[u8; 32], std::time::Instant>>>,
}

impl Blobs {
    /// A service over the node's store and network.
    pub fn new(store: Arc<Store>, network: Client) -> Self {
        Self {
            store,
            network,
            recent: Default::default(),
        }
    }

    /// Whole blobs held here.
    pub fn count(&self) -> Result<u64, StoreError> {
        self.store.blob_count()
    }

    fn touch(&self, id: ObjectId) {
        if let Ok(mut r) = self.recent.lock() {
            r.retain(|_, t| t.elapsed() < RECENT_KEEP);
            r.insert(id.0, std::time::Instant::now());
        }
    }

    /// Deletes blobs that no listing held here names, except recent ones. Blocking.
    pub fn gc(&self) -> Result<u64, StoreError> {
        let keep: HashSet<[u8; 32]> = self
            .recent
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|(_, t)| t.elapsed() < RECENT_KEEP)
                    .map(|(k, _)| *k)
                    .collect()
            })
            .unwrap_or_default();
        self.store.gc_blobs(&keep)
    }

    /// Parses a blob id.
    pub fn parse_id(id: &str) -> Result<ObjectId, BlobServiceError> {
        ObjectId::from_hex(id.trim()).ok_or_else(|| BlobServiceError::BadId(id.to_owned()))
    }

    /// Stores `data` as a blob (synced) and announces it. Returns its id and size.
    pub async fn add(&self, data: Vec<u8>) -> Result<BlobView, BlobServiceError> {
        let manifest = Manifest::of(&data)?;
        let chunks: Vec<Vec<u8>> = data
            .chunks(jangteo_protocol::blob::CHUNK_BYTES)
            .map(<[u8]>::to_vec)
            .collect();
        let store = self.store.clone();
        let m2 = manifest.clone();
        let id = tokio::task::spawn_blocking(move || store.put_blob(&m2, &chunks))
            .await
            .map_err(|_| StoreError::Poisoned)??;
        self.touch(id);
        self.network.provide(id).await?;
        Ok(BlobView {
            id: id.to_hex(),
            bytes: data.len() as u64,
        })
    }

    /// The blob's bytes: from the store, else fetched from peers, verified and stored.
    pub async fn get(&self, id: &str) -> Result<Vec<u8>, BlobServiceError> {
        let id = Self::parse_id(id)?;
        let store = self.store.clone();
        if let Some(b) = tokio::task::spawn_blocking(move || store.blob(&id))
            .await
            .map_err(|_| StoreError::Poisoned)??
        {
            return Ok(b);
        }
        self.fetch(id).await
    }

    /// Fetches (if missing) every image a stored listing names. Relays do this so that
    /// photos stay available while their sellers are offline.
    pub async fn mirror_listing_images(&self, listing: &str) {
        let Some(lid) = jangteo_protocol::ListingId::from_hex(listing) else {
            return;
        };
        let store = self.store.clone();
        let images = match tokio::task::spawn_blocking(move || store.listing(&lid)).await {
            Ok(Ok(Some(l))) => l.listing.images,
            _ => return,
        };
        for image in images {
            let id = ObjectId(image);
            if matches!(self.store.blob_manifest(&id), Ok(Some(_))) {
                continue;
            }
            if let Err(e) = self.fetch(id).await {
                tracing::info!(blob = %id, error = %e, "could not mirror a listing image yet");
            }
        }
    }

    /// Answers peers' blob requests that the swarm task routes here,
    /// [`BLOB_SERVE_WORKERS`] at a time, until `shutdown`.
    pub async fn serve(
        self,
        inbound: tokio::sync::mpsc::Receiver<InboundBlob>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        serve_inbound(inbound, BLOB_SERVE_WORKERS, shutdown, move |req| {
            let this = self.clone();
            async move {
                let store = this.store.clone();
                let request = req.request;
                let response = tokio::task::spawn_blocking(move || answer(&store, &request))
                    .await
                    .unwrap_or_else(|e| BlobResponse::Refused(format!("internal: {e}")));
                let _ = this
                    .network
                    .respond(Response::Blob(req.channel, response))
                    .await;
                // The peer's place in the queue is free once it is answered.
                drop(req.slot);
            }
        })
        .await;
    }

    async fn candidates(&self, id: ObjectId) -> Result<Vec<PeerId>, BlobServiceError> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let info = self.network.info().await?;
        for p in info.peers {
            if let Ok(peer) = p.peer_id.parse::<PeerId>()
                && seen.insert(peer)
            {
                out.push(peer);
            }
        }
        if let Ok(Ok(found)) =
            tokio::time::timeout(PROVIDER_LOOKUP_TIMEOUT, self.network.providers(id)).await
        {
            // Providers first: they announced that they hold it.
            let mut first = Vec::new();
            for p in found {
                if seen.insert(p) {
                    first.push(p);
                } else if let Some(i) = out.iter().position(|x| *x == p) {
                    out.remove(i);
                    first.push(p);
                }
            }
            first.extend(out);
            out = first;
        }
        out.truncate(FETCH_PEERS_MAX);
        Ok(out)
    }

    async fn fetch(&self, id: ObjectId) -> Result<Vec<u8>, BlobServiceError> {
        let peers = self.candidates(id).await?;
        let mut problems = Vec::new();
        for peer in &peers {
            match self.fetch_from(*peer, id).await {
                Ok((manifest, chunks)) => {
                    let data = chunks.concat();
                    let store = self.store.clone();
                    tokio::task::spawn_blocking(move || store.put_blob(&manifest, &chunks))
                        .await
                        .map_err(|_| StoreError::Poisoned)??;
                    self.touch(id);
                    self.network.provide(id).await?;
                    tracing::info!(blob = %id, peer = %peer, bytes = data.len(), "blob fetched and verified");
                    return Ok(data);
                }
                Err(FetchError::NotHeld) => {}
                Err(FetchError::Lied(why)) => {
                    tracing::warn!(blob = %id, peer = %peer, reason = %why, "peer sent a bad blob part; trying the next");
                    problems.push(format!("{peer}: {why}"));
                }
                Err(FetchError::Failed(why)) => problems.push(format!("{peer}: {why}")),
            }
        }
        Err(BlobServiceError::NotFound {
            id: id.to_hex(),
            tried: peers.len(),
            detail: if problems.is_empty() {
                String::new()
            } else {
                format!("; {}", problems.join("; "))
            },
        })
    }

    async fn fetch_from(
        &self,
        peer: PeerId,
        id: ObjectId,
    ) -> Result<(Manifest, Vec<Vec<u8>>), FetchError> {
        let idb = ByteBuf::from(id.0.to_vec());
        let manifest = match self
            .ask(peer, BlobRequest::Manifest { id: idb.clone() })
            .await?
        {
            BlobResponse::Manifest(m) => {
                Manifest::decode_for(&id, &m).map_err(|e| FetchError::Lied(e.to_string()))?
            }
            BlobResponse::NotFound => return Err(FetchError::NotHeld),
            BlobResponse::Refused(r) => return Err(FetchError::Failed(r)),
            BlobResponse::Chunk(_) => {
                return Err(FetchError::Lied("a chunk instead of the manifest".into()));
            }
        };
        let mut chunks = Vec::with_capacity(manifest.chunks.len());
        for i in 0..manifest.chunks.len() {
            let req = BlobRequest::Chunk {
                id: idb.clone(),
                index: i as u32,
            };
            match self.ask(peer, req).await? {
                BlobResponse::Chunk(c) => {
                    manifest
                        .verify_chunk(i, &c)
                        .map_err(|e| FetchError::Lied(e.to_string()))?;
                    chunks.push(c.into_vec());
                }
                BlobResponse::NotFound => {
                    return Err(FetchError::Lied(format!(
                        "offered the manifest but not chunk {i}"
                    )));
                }
                BlobResponse::Refused(r) => return Err(FetchError::Failed(r)),
                BlobResponse::Manifest(_) => {
                    return Err(FetchError::Lied("a manifest instead of a chunk".into()));
                }
            }
        }
        Ok((manifest, chunks))
    }

    async fn ask(&self, peer: PeerId, req: BlobRequest) -> Result<BlobResponse, FetchError> {
        match self.network.blob(peer, req).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(FetchError::Failed(e)),
            Err(e) => Err(FetchError::Failed(e.to_string())),
        }
    }
}

enum FetchError {
    NotHeld,
    Lied(String),
    Failed(String),
}

/// The answer to one blob request. Blocking (reads the store).
pub fn answer(store: &Store, request: &BlobRequest) -> BlobResponse {
    let (id, index) = match request {
        BlobRequest::Manifest { id } => (id, None),
        BlobRequest::Chunk { id, index } => (id, Some(*index)),
    };
    let Ok(id) = <[u8; 32]>::try_from(id.as_slice()) else {
        return BlobResponse::Refused("id: not 32 bytes".into());
    };
    let id = ObjectId(id);
    let r = match index {
        None => store
            .blob_manifest(&id)
            .map(|o| o.map(|b| BlobResponse::Manifest(ByteBuf::from(b)))),
        Some(i) => store
            .blob_chunk(&id, i)
            .map(|o| o.map(|b| BlobResponse::Chunk(ByteBuf::from(b)))),
    };
    match r {
        Ok(Some(resp)) => resp,
        Ok(None) => BlobResponse::NotFound,
        Err(e) => BlobResponse::Refused(format!("store: {e}")),
    }
}
