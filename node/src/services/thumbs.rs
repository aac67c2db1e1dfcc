//! Thumbnails of listing photos: a small JPEG of an image blob, for the cards and the gallery
//! of the web page.
//!
//! Every byte of a blob may come from a stranger's node, so this module treats it as hostile:
//! the format is sniffed from the magic bytes (JPEG, PNG, WebP, GIF; anything else, SVG and
//! HTML included, is refused), the decoder gets width, height and memory limits before it
//! allocates, a JPEG without its end marker is refused as truncated, and a panic in a decoder
//! becomes an error. The output is re-encoded from pixels only, so no metadata of the original
//! (EXIF, GPS position, ICC, comments) survives; the EXIF orientation is applied first.
//!
//! Owns the decode budget (at most [`DECODE_WORKERS`] decodes at once, each on a blocking
//! thread) and the cache record of each (blob, size) in the store, refusals included, so a
//! page asking again costs one read. It does not fetch or verify blobs: the blob service does.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, RgbImage};
use jangteo_protocol::ObjectId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::StoreError;
use crate::services::blobs::{BlobServiceError, Blobs};
use crate::store::Store;

/// Widest and tallest image decoded, in pixels (a 12-megapixel photo is 4032 × 3024).
pub const MAX_IMAGE_SIDE: u32 = 8192;
/// Most memory one decode may reserve for its pixels (a 12-megapixel RGB photo takes 36 MB;
/// 8192 × 8192 RGBA would take 256 MiB and is refused).
pub const MAX_DECODE_BYTES: u64 = 128 * 1024 * 1024;
/// Decodes running at once; the others wait their turn, so a page full of photos cannot take
/// every core of the node.
pub const DECODE_WORKERS: usize = 2;
/// JPEG quality of thumbnails (0–100).
pub const JPEG_QUALITY: u8 = 78;
/// Media type of every thumbnail.
pub const THUMB_CONTENT_TYPE: &str = "image/jpeg";
/// `Cache-Control` to serve a thumbnail with: the blob under an id never changes, so neither
/// does its thumbnail; private, as the pages and the API that serve it are behind a login.
/// Serve it with `X-Content-Type-Options: nosniff` too.
pub const THUMB_CACHE_CONTROL: &str = "private, max-age=31536000, immutable";

/// The sizes offered: the longest edge of the thumbnail's box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThumbSize {
    /// 320 px: cards on the home, search and listing pages.
    Card,
    /// 800 px: the gallery of one listing.
    Gallery,
}

impl ThumbSize {
    /// Every size offered.
    pub const ALL: [ThumbSize; 2] = [ThumbSize::Card, ThumbSize::Gallery];

    /// The box's edge in pixels: the thumbnail fits in a square of this side.
    pub fn edge(self) -> u32 {
        match self {
            ThumbSize::Card => 320,
            ThumbSize::Gallery => 800,
        }
    }

    /// The size whose edge is `px`; [`ThumbSize::Card`] when none is asked for.
    pub fn from_edge(px: Option<u32>) -> Result<Self, ThumbError> {
        match px {
            None => Ok(ThumbSize::Card),
            Some(px) => Self::ALL
                .into_iter()
                .find(|s| s.edge() == px)
                .ok_or(ThumbError::BadSize(px)),
        }
    }
}

/// A thumbnail: its bytes and their media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumb {
    /// The encoded image.
    pub bytes: Vec<u8>,
    /// Its media type ([`THUMB_CONTENT_TYPE`]).
    pub content_type: &'static str,
}

/// Why there is no thumbnail.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    /// A size that is not offered.
    #[error(
        "thumbnails are {card} px (cards) or {gallery} px (gallery), not {0} px",
        card = ThumbSize::Card.edge(),
        gallery = ThumbSize::Gallery.edge()
    )]
    BadSize(u32),
    /// The blob: a bad id, not found here or at any peer, the store or the network failing.
    #[error(transparent)]
    Blob(#[from] BlobServiceError),
    /// Not a raster image of a format the node shows.
    #[error("not a photo the node shows (JPEG, PNG, WebP or GIF): {0}")]
    Unsupported(String),
    /// A supported format, but the bytes do not decode.
    #[error("the image does not decode: {0}")]
    Undecodable(String),
    /// Larger than the decode limits.
    #[error(
        "the image is too large to show: {0} (at most {side} × {side} px and {mib} MiB of pixels)",
        side = MAX_IMAGE_SIDE,
        mib = MAX_DECODE_BYTES / (1024 * 1024)
    )]
    TooLarge(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else that failed in the node.
    #[error("thumbnail: {0}")]
    Internal(String),
}

/// What the cache holds for one blob at one size: the thumbnail, or why the blob's bytes
/// cannot have one (the bytes never change under their id, so neither does the answer).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Record {
    Jpeg(Vec<u8>),
    Unsupported(String),
    Undecodable(String),
    TooLarge(String),
}

const RECORD_JPEG: u8 = 1;
const RECORD_UNSUPPORTED: u8 = 2;
const RECORD_UNDECODABLE: u8 = 3;
const RECORD_TOO_LARGE: u8 = 4;

impl Record {
    /// Tag (1) || JPEG bytes or the refusal's message (UTF-8).
    fn encode(&self) -> Vec<u8> {
        let (tag, body) = match self {
            Record::Jpeg(b) => (RECORD_JPEG, b.as_slice()),
            Record::Unsupported(m) => (RECORD_UNSUPPORTED, m.as_bytes()),
            Record::Undecodable(m) => (RECORD_UNDECODABLE, m.as_bytes()),
            Record::TooLarge(m) => (RECORD_TOO_LARGE, m.as_bytes()),
        };
        let mut out = Vec::with_capacity(1 + body.len());
        out.push(tag);
        out.extend_from_slice(body);
        out
    }

    /// `None` for a record this version does not know (it is made again).
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (&tag, body) = bytes.split_first()?;
        let text = || String::from_utf8_lossy(body).into_owned();
        Some(match tag {
            RECORD_JPEG => Record::Jpeg(body.to_vec()),
            RECORD_UNSUPPORTED => Record::Unsupported(text()),
            RECORD_UNDECODABLE => Record::Undecodable(text()),
            RECORD_TOO_LARGE => Record::TooLarge(text()),
            _ => return None,
        })
    }

    /// The record of a result, if it is one worth keeping (a property of the bytes).
    fn of(result: &Result<Vec<u8>, ThumbError>) -> Option<Self> {
        match result {
            Ok(b) => Some(Record::Jpeg(b.clone())),
            Err(ThumbError::Unsupported(m)) => Some(Record::Unsupported(m.clone())),
            Err(ThumbError::Undecodable(m)) => Some(Record::Undecodable(m.clone())),
            Err(ThumbError::TooLarge(m)) => Some(Record::TooLarge(m.clone())),
            Err(_) => None,
        }
    }

    fn into_result(self) -> Result<Thumb, ThumbError> {
        match self {
            Record::Jpeg(bytes) => Ok(Thumb {
                bytes,
                content_type: THUMB_CONTENT_TYPE,
            }),
            Record::Unsupported(m) => Err(ThumbError::Unsupported(m)),
            Record::Undecodable(m) => Err(ThumbError::Undecodable(m)),
            Record::TooLarge(m) => Err(ThumbError::TooLarge(m)),
        }
    }
}

/// The thumbnail service.
#[derive(Debug, Clone)]
pub struct Thumbs {
    store: Arc<Store>,
    blobs: Blobs,
    decoding: Arc<Semaphore>,
    decodes: Arc<AtomicU64>,
}

impl Thumbs {
    /// A service over the node's store (the cache) and blob service (the photos).
    pub fn new(store: Arc<Store>, blobs: Blobs) -> Self {
        Self {
            store,
            blobs,
            decoding: Arc::new(Semaphore::new(DECODE_WORKERS)),
            decodes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Decodes run since the node started (cache hits run none).
    pub fn decodes(&self) -> u64 {
        self.decodes.load(Ordering::Relaxed)
    }

    /// The thumbnail of blob `blob_id` (64 hex digits) at `size`: from the cache, else made
    /// from the blob (held here, or fetched from peers and verified by the blob service) and
    /// cached. A blob that is not a supported raster image is refused, and so is it next time,
    /// from the cache.
    pub async fn thumbnail(&self, blob_id: &str, size: ThumbSize) -> Result<Thumb, ThumbError> {
        let id = Blobs::parse_id(blob_id)?;
        if let Some(r) = self.cached(id, size).await? {
            return r.into_result();
        }
        let (bytes, _permit) = match self.held_blob(id, size).await? {
            Held::Cached(r) => return r.into_result(),
            Held::Bytes(bytes, permit) => (bytes, permit),
            Held::Missing => {
                // Fetched without a decode slot: a slow peer must not hold one.
                let bytes = self.blobs.get(blob_id).await?;
                (bytes, self.decode_slot().await?)
            }
        };
        self.decodes.fetch_add(1, Ordering::Relaxed);
        let made = tokio::task::spawn_blocking(move || make_thumbnail(&bytes, size))
            .await
            .map_err(|e| ThumbError::Internal(format!("decode task: {e}")))?;
        if let Some(record) = Record::of(&made) {
            let store = self.store.clone();
            let edge = size.edge() as u16;
            let written =
                tokio::task::spawn_blocking(move || store.put_thumb(&id, edge, &record.encode()))
                    .await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::warn!(blob = %id, "could not cache a thumbnail; it will be made again");
            }
        }
        if let Err(e) = &made {
            tracing::debug!(blob = %id, error = %e, "no thumbnail for this blob");
        }
        made.map(|bytes| Thumb {
            bytes,
            content_type: THUMB_CONTENT_TYPE,
        })
    }

    async fn cached(&self, id: ObjectId, size: ThumbSize) -> Result<Option<Record>, ThumbError> {
        let store = self.store.clone();
        let edge = size.edge() as u16;
        let raw = tokio::task::spawn_blocking(move || store.thumb(&id, edge))
            .await
            .map_err(|e| ThumbError::Internal(format!("cache read: {e}")))??;
        Ok(raw.as_deref().and_then(Record::decode))
    }

    async fn decode_slot(&self) -> Result<OwnedSemaphorePermit, ThumbError> {
        self.decoding
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ThumbError::Internal("the decode slots are closed".into()))
    }

    /// Takes a decode slot, then looks again in the cache (another request may have made it
    /// while this one waited) and reads the blob if it is held here.
    async fn held_blob(&self, id: ObjectId, size: ThumbSize) -> Result<Held, ThumbError> {
        let permit = self.decode_slot().await?;
        if let Some(r) = self.cached(id, size).await? {
            return Ok(Held::Cached(r));
        }
        let store = self.store.clone();
        let held = tokio::task::spawn_blocking(move || store.blob(&id))
            .await
            .map_err(|e| ThumbError::Internal(format!("blob read: {e}")))??;
        Ok(match held {
            Some(bytes) => Held::Bytes(bytes, permit),
            None => Held::Missing,
        })
    }
}

enum Held {
    Cached(Record),
    Bytes(Vec<u8>, OwnedSemaphorePermit),
    Missing,
}

/// The JPEG thumbnail of an image's bytes, fitting in a square of `size`'s edge, never
/// upscaled, EXIF orientation applied, no metadata kept. Blocking (it decodes): call it on a
/// blocking thread. Never panics: a decoder's panic is caught and reported as undecodable.
pub fn make_thumbnail(bytes: &[u8], size: ThumbSize) -> Result<Vec<u8>, ThumbError> {
    let max = jangteo_protocol::blob::MAX_BLOB_BYTES;
    if bytes.len() > max {
        return Err(ThumbError::TooLarge(format!(
            "{} bytes, more than a blob may hold ({max})",
            bytes.len()
        )));
    }
    let format = sniff(bytes)?;
    match catch_unwind(AssertUnwindSafe(|| render(bytes, format, size.edge()))) {
        Ok(result) => result,
        Err(_) => Err(ThumbError::Undecodable(format!(
            "the {} decoder failed on it",
            format_name(format)
        ))),
    }
}

/// The format, from the first bytes only (a name or a declared type is never trusted).
fn sniff(bytes: &[u8]) -> Result<ImageFormat, ThumbError> {
    if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        return Ok(ImageFormat::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageFormat::Png);
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Ok(ImageFormat::Gif);
    }
    if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        return Ok(ImageFormat::WebP);
    }
    let head = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let first = head.iter().take(1024).find(|b| !b.is_ascii_whitespace());
    Err(ThumbError::Unsupported(if first == Some(&b'<') {
        "it is markup (SVG, HTML or XML), not a raster image".into()
    } else {
        "its first bytes are not those of any of these formats".into()
    }))
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::Gif => "GIF",
        ImageFormat::WebP => "WebP",
        _ => "image",
    }
}

fn decode_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// An image error as a refusal: limits, unsupported variants, everything else undecodable.
fn refusal(format: ImageFormat, e: ImageError) -> ThumbError {
    match e {
        ImageError::Limits(l) => ThumbError::TooLarge(l.to_string()),
        ImageError::Unsupported(u) => ThumbError::Unsupported(u.to_string()),
        other => ThumbError::Undecodable(format!("{}: {other}", format_name(format))),
    }
}

/// A JPEG ends with EOI (FF D9) after its last scan (FF DA); scan data never holds FF D9, so
/// a file without it was cut short. (The decoder would fill the missing part with grey.)
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), ThumbError> {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xff, marker]);
    match (last(0xda), last(0xd9)) {
        (Some(sos), Some(eoi)) if eoi > sos => Ok(()),
        (None, _) => Err(ThumbError::Undecodable(
            "JPEG: no image data (no start of scan)".into(),
        )),
        _ => Err(ThumbError::Undecodable(
            "JPEG: truncated (no end-of-image marker after the image data)".into(),
        )),
    }
}

fn render(bytes: &[u8], format: ImageFormat, edge: u32) -> Result<Vec<u8>, ThumbError> {
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes)?;
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(decode_limits());
    // Reads the header only; checks the width and height limits.
    let mut decoder = reader.into_decoder().map_err(|e| refusal(format, e))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(ThumbError::Undecodable(format!(
            "{}: {w} × {h} px",
            format_name(format)
        )));
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    // The pixel buffer is reserved against the budget before it is allocated.
    decode_limits()
        .reserve(decoder.total_bytes())
        .map_err(|e| refusal(format, e))?;
    let image = DynamicImage::from_decoder(decoder).map_err(|e| refusal(format, e))?;
    let mut small = shrink(image, edge);
    small.apply_orientation(orientation);
    encode_jpeg(&flatten(small))
}

/// The largest size of `w` × `h` that fits in `edge` × `edge`, keeping the aspect ratio;
/// never larger than the original, never 0.
pub fn fit(w: u32, h: u32, edge: u32) -> (u32, u32) {
    if w <= edge && h <= edge {
        return (w, h);
    }
    let long = u64::from(w.max(h));
    let scale = |side: u32| {
        let s = (u64::from(side) * u64::from(edge) + long / 2) / long;
        s.clamp(1, u64::from(edge)) as u32
    };
    (scale(w), scale(h))
}

/// Fits the image in the box: a box average for the bulk of a large reduction (one cheap pass
/// over the original), then a triangle filter for the last step (smooth edges).
fn shrink(image: DynamicImage, edge: u32) -> DynamicImage {
    let (w, h) = (image.width(), image.height());
    let (tw, th) = fit(w, h, edge);
    if (tw, th) == (w, h) {
        return image;
    }
    let image = if w >= tw.saturating_mul(4) && h >= th.saturating_mul(4) {
        image.thumbnail_exact(tw * 2, th * 2)
    } else {
        image
    };
    image.resize_exact(tw, th, FilterType::Triangle)
}

/// RGB pixels; transparency is laid over white (a JPEG has none).
fn flatten(image: DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let a = u32::from(a);
        let over = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgb([over(r), over(g), over(b)])
    })
}

fn encode_jpeg(rgb: &RgbImage) -> Result<Vec<u8>, ThumbError> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode_image(rgb)
        .map_err(|e| ThumbError::Internal(format!("JPEG encoding: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    use image::{ImageEncoder, Rgb, Rgba, RgbaImage};
    use jangteo_protocol::blob::{CHUNK_BYTES, Manifest};

    /// A stand-in for a photo: smooth light, a few objects with edges, mild sensor noise
    /// (seeded), so that its JPEG compresses as a photo does, not as a flat colour or noise.
    fn photo(w: u32, h: u32) -> RgbImage {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        RgbImage::from_fn(w, h, |x, y| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed % 9) as i32 - 4;
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let mut c = [90.0 + 120.0 * fx, 110.0 + 60.0 * fy, 160.0 - 80.0 * fx * fy];
            let (dx, dy) = (fx - 0.4, fy - 0.55);
            if dx * dx + dy * dy < 0.04 {
                c = [200.0 - 90.0 * fy, 60.0, 40.0 + 50.0 * fx];
            }
            if (0.65..0.85).contains(&fx) && (0.2..0.7).contains(&fy) {
                c = [40.0, 70.0 + 40.0 * fy, 50.0];
            }
            let stripes = ((fx * 40.0).sin() * 6.0) as i32;
            Rgb(c.map(|v| (v as i32 + noise + stripes).clamp(0, 255) as u8))
        })
    }

    fn jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(img)
            .expect("encode");
        out
    }

    fn png_rgba(img: &RgbaImage) -> Vec<u8> {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(
                img.as_raw(),
                img.width(),
                img.height(),
                image::ExtendedColorType::Rgba8,
            )
            .expect("encode");
        out
    }

    fn decoded(bytes: &[u8]) -> DynamicImage {
        assert!(bytes.starts_with(&[0xff, 0xd8, 0xff]), "a JPEG");
        image::load_from_memory_with_format(bytes, ImageFormat::Jpeg).expect("decodes")
    }

    #[test]
    fn a_large_photo_becomes_a_small_jpeg_within_the_box() {
        let src = jpeg(&photo(3000, 2000), 90);
        let thumb = make_thumbnail(&src, ThumbSize::Card).expect("thumbnail");
        let img = decoded(&thumb);
        assert_eq!((img.width(), img.height()), (320, 213), "fits, aspect kept");
        assert!(
            thumb.len() < 30 * 1024,
            "{} bytes for a 320 px card",
            thumb.len()
        );
        let gallery = make_thumbnail(&src, ThumbSize::Gallery).expect("thumbnail");
        let img = decoded(&gallery);
        assert_eq!((img.width(), img.height()), (800, 533));
        // A portrait one fits by its height.
        let tall = jpeg(&photo(1200, 1600), 90);
        let img = decoded(&make_thumbnail(&tall, ThumbSize::Card).expect("thumbnail"));
        assert_eq!((img.width(), img.height()), (240, 320));
    }

    #[test]
    fn a_small_image_is_not_upscaled_and_transparency_lies_on_white() {
        let mut img = RgbaImage::from_pixel(100, 60, Rgba([10, 20, 200, 255]));
        img.put_pixel(0, 0, Rgba([0, 0, 0, 0]));
        let thumb = make_thumbnail(&png_rgba(&img), ThumbSize::Card).expect("thumbnail");
        let out = decoded(&thumb).to_rgb8();
        assert_eq!(out.dimensions(), (100, 60), "not upscaled");
        let corner = out.get_pixel(0, 0).0;
        assert!(
            corner.iter().all(|c| *c > 200),
            "transparent → white, {corner:?}"
        );
        let middle = out.get_pixel(50, 30).0;
        assert!(middle[2] > 150 && middle[0] < 60, "colour kept, {middle:?}");
    }

    #[test]
    fn fit_keeps_the_aspect_ratio_and_never_reaches_zero() {
        assert_eq!(fit(4032, 3024, 320), (320, 240));
        assert_eq!(fit(3024, 4032, 800), (600, 800));
        assert_eq!(fit(320, 320, 320), (320, 320));
        assert_eq!(fit(8192, 1, 320), (320, 1));
        assert_eq!(fit(1, 8192, 320), (1, 320));
        assert_eq!(fit(10, 5, 320), (10, 5));
    }

    /// A minimal EXIF (TIFF, little-endian) with one entry: orientation 6 (rotate 90°).
    const EXIF_ROTATE_90: [u8; 26] = [
        0x49, 0x49, 0x2a, 0x00, 0x08, 0x00, 0x00, 0x00, // header, IFD at 8
        0x01, 0x00, // one entry
        0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, // orientation
        0x00, 0x00, 0x00, 0x00, // no next IFD
    ];

    #[test]
    fn exif_orientation_is_applied_and_no_metadata_survives() {
        // A landscape sensor image that the camera says to turn a quarter clockwise, with a
        // comment standing in for any other metadata (GPS, camera serial).
        let mut src = Vec::new();
        let mut enc = JpegEncoder::new_with_quality(&mut src, 90);
        enc.set_exif_metadata(EXIF_ROTATE_90.to_vec())
            .expect("exif");
        enc.encode_image(&photo(640, 480)).expect("encode");
        assert!(
            src.windows(4).any(|w| w == b"Exif"),
            "the input carries EXIF"
        );
        let thumb = make_thumbnail(&src, ThumbSize::Card).expect("thumbnail");
        let img = decoded(&thumb);
        assert_eq!((img.width(), img.height()), (240, 320), "turned upright");
        assert!(!thumb.windows(4).any(|w| w == b"Exif"), "EXIF stripped");
        assert!(
            !thumb
                .windows(2)
                .any(|w| w == [0xff, 0xe1] || w == [0xff, 0xe2]),
            "no APP1 (EXIF, XMP) or APP2 (ICC) segment"
        );
    }

    #[test]
    fn every_supported_format_is_read_and_the_extension_or_type_is_never_asked() {
        let img = photo(500, 400);
        let mut gif = Vec::new();
        image::codecs::gif::GifEncoder::new(&mut gif)
            .encode(
                &image::DynamicImage::ImageRgb8(img.clone()).to_rgba8(),
                500,
                400,
                image::ExtendedColorType::Rgba8,
            )
            .expect("gif");
        let mut webp = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
            .encode(img.as_raw(), 500, 400, image::ExtendedColorType::Rgb8)
            .expect("webp");
        let rgba = image::DynamicImage::ImageRgb8(img.clone()).to_rgba8();
        for (name, bytes) in [
            ("jpeg", jpeg(&img, 85)),
            ("png", png_rgba(&rgba)),
            ("gif", gif),
            ("webp", webp),
        ] {
            let thumb =
                make_thumbnail(&bytes, ThumbSize::Card).unwrap_or_else(|e| panic!("{name}: {e}"));
            let out = decoded(&thumb);
            assert_eq!((out.width(), out.height()), (320, 256), "{name}");
        }
    }

    #[test]
    fn a_truncated_jpeg_is_refused() {
        let src = jpeg(&photo(800, 600), 90);
        for cut in [src.len() / 2, src.len() - 2, 200, 20, 3] {
            let r = make_thumbnail(&src[..cut], ThumbSize::Card);
            assert!(
                matches!(r, Err(ThumbError::Undecodable(_))),
                "cut at {cut}: {:?}",
                r.as_ref().map(Vec::len)
            );
        }
        // Bytes after the end marker (some cameras append data) are fine.
        let mut trailing = src.clone();
        trailing.extend_from_slice(b"vendor trailer");
        assert!(make_thumbnail(&trailing, ThumbSize::Card).is_ok());
    }

    /// A PNG of only a header (IHDR) claiming the given size, with a correct CRC.
    fn png_header(w: u32, h: u32, bit_depth: u8, colour: u8) -> Vec<u8> {
        fn crc32(data: &[u8]) -> u32 {
            let mut crc = 0xffff_ffff_u32;
            for &b in data {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 == 1 {
                        (crc >> 1) ^ 0xedb8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let mut chunk = b"IHDR".to_vec();
        chunk.extend_from_slice(&w.to_be_bytes());
        chunk.extend_from_slice(&h.to_be_bytes());
        chunk.extend_from_slice(&[bit_depth, colour, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        out.extend_from_slice(&13u32.to_be_bytes());
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&crc32(&chunk).to_be_bytes());
        // A tiny IDAT that could never fill it: a bomb needs only a few KB of zlib.
        let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01";
        out.extend_from_slice(&(idat.len() as u32 - 4).to_be_bytes());
        out.extend_from_slice(idat);
        out.extend_from_slice(&crc32(idat).to_be_bytes());
        out
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_anything_is_allocated() {
        let start = Instant::now();
        // 100 000 × 100 000 px: 30 GB of RGB.
        let r = make_thumbnail(&png_header(100_000, 100_000, 8, 2), ThumbSize::Card);
        assert!(
            matches!(r, Err(ThumbError::TooLarge(_))),
            "{:?}",
            r.as_ref().map(Vec::len)
        );
        // Within the side limit, but 8000 × 8000 RGBA at 16 bits is 512 MB of pixels.
        let r = make_thumbnail(&png_header(8000, 8000, 16, 6), ThumbSize::Card);
        assert!(
            matches!(r, Err(ThumbError::TooLarge(_))),
            "{:?}",
            r.as_ref().map(Vec::len)
        );
        // A GIF whose screen claims 65535 × 65535.
        let mut gif = b"GIF89a\xff\xff\xff\xff\x00\x00\x00".to_vec();
        gif.extend_from_slice(b",\x00\x00\x00\x00\xff\xff\xff\xff\x00\x02\x02\x44\x01\x00;");
        let r = make_thumbnail(&gif, ThumbSize::Card);
        assert!(
            matches!(r, Err(ThumbError::TooLarge(_) | ThumbError::Undecodable(_))),
            "{:?}",
            r.as_ref().map(Vec::len)
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "refused in {:?}: it must not have tried to decode",
            start.elapsed()
        );
    }

    #[test]
    fn markup_random_bytes_and_other_formats_are_refused() {
        let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
        let html = b"\xef\xbb\xbf  \n<!doctype html><html><body onload=alert(1)>";
        for (name, bytes) in [("svg", &svg[..]), ("html", &html[..])] {
            match make_thumbnail(bytes, ThumbSize::Card) {
                Err(ThumbError::Unsupported(m)) => assert!(m.contains("markup"), "{name}: {m}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        let mut seed = 7u64;
        for len in [0usize, 1, 2, 16, 4096, 100_000] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 56) as u8
                })
                .collect();
            let r = make_thumbnail(&bytes, ThumbSize::Card);
            assert!(
                matches!(r, Err(ThumbError::Unsupported(_))),
                "{len}: {:?}",
                r.as_ref().map(Vec::len)
            );
        }
        // A BMP is an image, but not one of the formats the node shows.
        let r = make_thumbnail(b"BM\x1e\x00\x00\x00\x00\x00", ThumbSize::Card);
        assert!(
            matches!(r, Err(ThumbError::Unsupported(_))),
            "{:?}",
            r.as_ref().map(Vec::len)
        );
        // Random bytes behind a correct magic are undecodable, not a panic.
        for magic in [
            &b"\xff\xd8\xff\xe0"[..],
            b"\x89PNG\r\n\x1a\n",
            b"GIF89a",
            b"RIFF\x10\x00\x00\x00WEBPVP8 ",
        ] {
            for len in [0usize, 10, 5000] {
                let mut bytes = magic.to_vec();
                bytes.extend((0..len).map(|i| (i * 31 % 251) as u8));
                let r = make_thumbnail(&bytes, ThumbSize::Card);
                assert!(
                    matches!(
                        r,
                        Err(ThumbError::Undecodable(_)
                            | ThumbError::Unsupported(_)
                            | ThumbError::TooLarge(_))
                    ),
                    "{magic:?} + {len}: {:?}",
                    r.as_ref().map(Vec::len)
                );
            }
        }
    }

    #[test]
    fn sizes_offered_are_320_and_800() {
        assert_eq!(ThumbSize::from_edge(None).ok(), Some(ThumbSize::Card));
        assert_eq!(
            ThumbSize::from_edge(Some(800)).ok(),
            Some(ThumbSize::Gallery)
        );
        assert!(matches!(
            ThumbSize::from_edge(Some(4000)),
            Err(ThumbError::BadSize(4000))
        ));
    }

    fn service() -> (tempfile::TempDir, Arc<Store>, Thumbs) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        let blobs = Blobs::new(store.clone(), crate::net::Client::detached());
        let thumbs = Thumbs::new(store.clone(), blobs);
        (dir, store, thumbs)
    }

    fn put(store: &Store, bytes: &[u8]) -> String {
        let manifest = Manifest::of(bytes).expect("manifest");
        let chunks: Vec<Vec<u8>> = bytes.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect();
        store.put_blob(&manifest, &chunks).expect("put").to_hex()
    }

    #[tokio::test]
    async fn a_second_request_is_a_cache_read_refusals_included() {
        let (_dir, store, thumbs) = service();
        let photo_id = put(&store, &jpeg(&photo(1000, 800), 85));
        let first = thumbs
            .thumbnail(&photo_id, ThumbSize::Card)
            .await
            .expect("made");
        assert_eq!(thumbs.decodes(), 1);
        let again = thumbs
            .thumbnail(&photo_id, ThumbSize::Card)
            .await
            .expect("cached");
        assert_eq!(again, first);
        assert_eq!(again.content_type, "image/jpeg");
        assert_eq!(thumbs.decodes(), 1, "the second request decoded nothing");
        // Another size is another entry.
        thumbs
            .thumbnail(&photo_id, ThumbSize::Gallery)
            .await
            .expect("made");
        assert_eq!(thumbs.decodes(), 2);
        // A refusal is kept too: the bytes under an id never change.
        let svg_id = put(&store, b"<svg xmlns='http://www.w3.org/2000/svg'/>");
        for _ in 0..3 {
            let r = thumbs.thumbnail(&svg_id, ThumbSize::Card).await;
            assert!(
                matches!(r, Err(ThumbError::Unsupported(_))),
                "{:?}",
                r.as_ref().map(|t| t.bytes.len())
            );
        }
        assert_eq!(thumbs.decodes(), 3, "refused once, then from the cache");
        assert_eq!(store.thumb_count().expect("count"), 3);
        // Many requests at once for one photo decode it once.
        let id = put(&store, &jpeg(&photo(1200, 900), 85));
        let all =
            futures::future::join_all((0..8).map(|_| thumbs.thumbnail(&id, ThumbSize::Card))).await;
        assert!(all.iter().all(|r| r.is_ok()));
        // Those that got a decode slot before the first finished may decode it too; the
        // others find it in the cache.
        let decoded = thumbs.decodes() - 3;
        assert!(
            (1..=DECODE_WORKERS as u64).contains(&decoded),
            "{decoded} decodes for eight requests"
        );
        // A bad id is refused before anything is read.
        assert!(matches!(
            thumbs.thumbnail("zz", ThumbSize::Card).await,
            Err(ThumbError::Blob(_))
        ));
    }

    #[tokio::test]
    async fn thumbnails_go_with_their_blob_when_it_is_collected() {
        let (_dir, store, thumbs) = service();
        let id = put(&store, &jpeg(&photo(900, 600), 85));
        for size in ThumbSize::ALL {
            thumbs.thumbnail(&id, size).await.expect("made");
        }
        assert_eq!(store.thumb_count().expect("count"), 2);
        // Kept while the blob is kept (here: as a recent one).
        let oid = Blobs::parse_id(&id).expect("id");
        let keep = std::collections::HashSet::from([oid.0]);
        assert_eq!(store.gc_blobs(&keep).expect("gc"), 0);
        assert_eq!(store.thumb_count().expect("count"), 2);
        // No listing names it: the blob and its thumbnails go in one batch.
        assert_eq!(store.gc_blobs(&Default::default()).expect("gc"), 1);
        assert_eq!(store.thumb_count().expect("count"), 0);
        assert!(store.blob(&oid).expect("read").is_none());
        // A stray thumbnail of a blob not held (written while its blob was deleted) goes at
        // the next collection.
        store.put_thumb(&oid, 320, b"\x01stray").expect("put");
        store.gc_blobs(&Default::default()).expect("gc");
        assert_eq!(store.thumb_count().expect("count"), 0);
    }

    #[test]
    fn a_cache_record_reads_back_as_written() {
        for r in [
            Record::Jpeg(vec![0xff, 0xd8, 1, 2]),
            Record::Unsupported("markup".into()),
            Record::Undecodable("truncated".into()),
            Record::TooLarge("100000 px".into()),
        ] {
            assert_eq!(Record::decode(&r.encode()), Some(r));
        }
        assert_eq!(Record::decode(&[]), None);
        assert_eq!(Record::decode(&[99, 1]), None);
    }

    /// The benchmark of the README: one 320 px thumbnail of a 12-megapixel JPEG. Set
    /// `JANGTEO_BENCH_PHOTO` to a real photo (else a synthetic one is used) and run
    /// `cargo test --release -p jangteo-node thumbs::tests::bench -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn bench_a_12_megapixel_photo() {
        let (name, src) = match std::env::var_os("JANGTEO_BENCH_PHOTO") {
            Some(p) => (
                p.to_string_lossy().into_owned(),
                std::fs::read(&p).expect("photo"),
            ),
            None => ("synthetic 4000 × 3000".into(), jpeg(&photo(4000, 3000), 90)),
        };
        let runs = 5;
        let mut times = Vec::new();
        let mut sizes = Vec::new();
        for size in ThumbSize::ALL {
            for _ in 0..runs {
                let t = Instant::now();
                let out = make_thumbnail(&src, size).expect("thumbnail");
                times.push((size.edge(), t.elapsed()));
                sizes.push((size.edge(), out.len()));
            }
        }
        println!("{name}: {} bytes in", src.len());
        for edge in [320, 800] {
            let mut t: Vec<Duration> = times
                .iter()
                .filter(|(e, _)| *e == edge)
                .map(|(_, d)| *d)
                .collect();
            t.sort();
            let bytes = sizes.iter().find(|(e, _)| *e == edge).map(|(_, b)| *b);
            println!(
                "{edge} px: median {:?} (min {:?}, max {:?}) over {runs} runs, {bytes:?} bytes out",
                t[t.len() / 2],
                t[0],
                t[t.len() - 1]
            );
        }
    }
}
