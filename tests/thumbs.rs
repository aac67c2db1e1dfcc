//! End-to-end: thumbnails of listing photos. A real `jangteo node`; a listing posted with a
//! PNG photo through the CLI; `GET /v1/blobs/{id}/thumb` answers a JPEG that fits the asked
//! size, keeps the aspect ratio, carries `nosniff` and an immutable cache lifetime, and is
//! the same bytes when asked again; blobs that are not photos (HTML, a truncated JPEG) are
//! refused with the API's JSON error, an unknown blob is 404, a size not offered is 400.

mod common;

use common::{json_as, start_node};
use image::{ImageEncoder, Rgb, RgbImage};
use jangteo_node::api::types::{ApiAddrFile, BlobView, ErrorBody, ListingRef, ListingView};

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

struct Api {
    addr: String,
    token: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Api {
    fn of(dir: &std::path::Path) -> Self {
        let api: ApiAddrFile =
            serde_json::from_str(&std::fs::read_to_string(dir.join("api.json")).expect("api.json"))
                .expect("api.json");
        Self {
            addr: api.addr,
            token: std::fs::read_to_string(dir.join("api.token"))
                .expect("token")
                .trim()
                .to_owned(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .expect("client"),
        }
    }

    fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        self.rt.block_on(async {
            let resp = req.send().await.expect("send");
            Answer {
                status: resp.status().as_u16(),
                headers: resp.headers().clone(),
                body: resp.bytes().await.expect("body").to_vec(),
            }
        })
    }

    fn get(&self, path: &str) -> Answer {
        self.send(
            self.http
                .get(format!("http://{}{path}", self.addr))
                .bearer_auth(&self.token),
        )
    }

    fn add_blob(&self, bytes: Vec<u8>) -> String {
        let a = self.send(
            self.http
                .post(format!("http://{}/v1/blobs", self.addr))
                .bearer_auth(&self.token)
                .header("content-type", "application/octet-stream")
                .body(bytes),
        );
        assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
        serde_json::from_slice::<BlobView>(&a.body)
            .expect("blob view")
            .id
    }
}

fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn error_code(a: &Answer) -> String {
    assert_eq!(header(a, "content-type"), "application/json");
    let body: ErrorBody = serde_json::from_slice(&a.body).expect("the one error shape");
    serde_json::to_value(body.error.code)
        .expect("code")
        .as_str()
        .unwrap_or("")
        .to_owned()
}

/// A 1600 × 1200 picture with some structure, as a phone's PNG screenshot might be.
fn picture() -> RgbImage {
    RgbImage::from_fn(1600, 1200, |x, y| {
        let band = if (x / 100 + y / 100) % 2 == 0 { 40 } else { 0 };
        Rgb([
            (x * 255 / 1600) as u8,
            (y * 255 / 1200) as u8,
            (120 + band) as u8,
        ])
    })
}

#[test]
fn a_listing_photo_has_jpeg_thumbnails_and_what_is_not_a_photo_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("n");
    let (_node, _) = start_node(&dir, None);
    let api = Api::of(&dir);

    // Post a listing with a PNG photo, as a seller does.
    let img = picture();
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("png");
    let file = tmp.path().join("desk.png");
    std::fs::write(&file, &png).expect("write png");
    let posted: ListingRef = json_as(
        &dir,
        &[
            "post",
            "--title",
            "Walnut desk",
            "--price",
            "90000",
            "--currency",
            "KRW",
            "--image",
            file.to_str().expect("utf-8 path"),
        ],
    );
    let shown: ListingView = json_as(&dir, &["show", &posted.id]);
    let blob = shown.images.first().expect("the listing names its photo");

    let card = api.get(&format!("/v1/blobs/{blob}/thumb?size=320"));
    assert_eq!(card.status, 200, "{}", String::from_utf8_lossy(&card.body));
    assert_eq!(header(&card, "content-type"), "image/jpeg");
    assert_eq!(header(&card, "x-content-type-options"), "nosniff");
    let cache = header(&card, "cache-control");
    assert!(
        cache.contains("immutable") && cache.contains("max-age=31536000"),
        "{cache}"
    );
    assert!(card.body.starts_with(&[0xff, 0xd8, 0xff]), "JPEG magic");
    let decoded = image::load_from_memory_with_format(&card.body, image::ImageFormat::Jpeg)
        .expect("a JPEG that decodes");
    assert_eq!(
        (decoded.width(), decoded.height()),
        (320, 240),
        "fits, 4:3 kept"
    );
    assert!(card.body.len() < 30 * 1024, "{} bytes", card.body.len());

    // No size: the card size. Asked again: the same bytes (from the cache).
    let again = api.get(&format!("/v1/blobs/{blob}/thumb"));
    assert_eq!(again.status, 200);
    assert_eq!(again.body, card.body);

    let gallery = api.get(&format!("/v1/blobs/{blob}/thumb?size=800"));
    assert_eq!(gallery.status, 200);
    let decoded = image::load_from_memory_with_format(&gallery.body, image::ImageFormat::Jpeg)
        .expect("a JPEG that decodes");
    assert_eq!((decoded.width(), decoded.height()), (800, 600));

    // A size not offered.
    let odd = api.get(&format!("/v1/blobs/{blob}/thumb?size=5000"));
    assert_eq!(odd.status, 400);
    assert_eq!(error_code(&odd), "bad_query");

    // A page that pretends to be a photo is never served as one.
    let html = api.add_blob(b"<!doctype html><script>alert(document.cookie)</script>".to_vec());
    let refused = api.get(&format!("/v1/blobs/{html}/thumb?size=320"));
    assert_eq!(refused.status, 415);
    assert_eq!(error_code(&refused), "unsupported_image");

    // A JPEG cut short.
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .encode_image(&img)
        .expect("jpeg");
    jpeg.truncate(jpeg.len() / 2);
    let cut = api.add_blob(jpeg);
    let refused = api.get(&format!("/v1/blobs/{cut}/thumb?size=320"));
    assert_eq!(refused.status, 422);
    assert_eq!(error_code(&refused), "invalid_image");

    // Not held here and no peer to ask.
    let unknown = api.get(&format!("/v1/blobs/{}/thumb", "ab".repeat(32)));
    assert_eq!(unknown.status, 404);
    assert_eq!(error_code(&unknown), "not_found");
    let bad = api.get("/v1/blobs/not-an-id/thumb");
    assert_eq!(bad.status, 400);
    assert_eq!(error_code(&bad), "bad_id");

    // Behind the token like every /v1 route.
    let anonymous = api.send(
        api.http
            .get(format!("http://{}/v1/blobs/{blob}/thumb", api.addr)),
    );
    assert_eq!(anonymous.status, 401);
}
