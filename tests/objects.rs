//! End-to-end: raw objects for other programs. `jangteo export` writes what a node holds as
//! a CBOR sequence; `jangteo import` feeds it to a fresh node through the normal ingest path,
//! which then finds the listings; a corrupted file is refused object by object, with
//! counts, keeping every valid object, and the node goes on; `GET /v1/objects/{id}` answers
//! the exact bytes.

mod common;

use common::{jangteo, json_as, json_try_as, start_node, wait_for};
use jangteo_node::api::types::{
    ApiAddrFile, ExportReport, ImportReport, ListingRef, ListingView, StatusView,
};

fn post(dir: &std::path::Path, title: &str, price: &str) -> ListingRef {
    json_as(
        dir,
        &[
            "post",
            "--title",
            title,
            "--price",
            price,
            "--currency",
            "KRW",
            "--category",
            "books",
        ],
    )
}

fn search(dir: &std::path::Path, q: &str) -> Vec<ListingView> {
    json_as(dir, &["search", q])
}

#[test]
fn exported_objects_import_into_a_fresh_node_and_a_corrupted_file_is_refused_in_part() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (_a, _) = start_node(&a_dir, None);
    let first = post(&a_dir, "Tale of Genji, two volumes", "30000");
    let second = post(&a_dir, "Hangul typewriter manual", "12000");

    let file = tmp.path().join("objects.cborseq");
    let out = file.to_str().expect("utf-8 path");
    let report: ExportReport = json_as(&a_dir, &["export", "--kind", "listing", "--out", out]);
    let bytes = std::fs::read(&file).expect("export file");
    assert_eq!(report.objects, 2, "two listings exported");
    assert_eq!(report.bytes, bytes.len() as u64);
    let (items, tail) = jangteo_node::api::objects::split_sequence(&bytes);
    assert!(tail.is_none(), "the file is a CBOR sequence");
    assert_eq!(items.len(), 2);

    // The exact bytes are what the API answers for each object's id.
    let api: ApiAddrFile =
        serde_json::from_str(&std::fs::read_to_string(a_dir.join("api.json")).expect("api.json"))
            .expect("api.json");
    let token = std::fs::read_to_string(a_dir.join("api.token")).expect("token");
    let get = |path: &str| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let resp = reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client")
                .get(format!("http://{}{path}", api.addr))
                .bearer_auth(token.trim())
                .send()
                .await
                .expect("send");
            let status = resp.status().as_u16();
            let ct = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            (status, ct, resp.bytes().await.expect("body").to_vec())
        })
    };
    for (_, obj) in &items {
        let id = jangteo_protocol::ObjectId::of(obj).to_hex();
        let (status, ct, body) = get(&format!("/v1/objects/{id}"));
        assert_eq!((status, ct.as_str()), (200, "application/cbor"));
        assert_eq!(&body[..], *obj, "the exact signed bytes");
    }
    let (status, _, body) = get(&format!("/v1/objects/{}", "0".repeat(64)));
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = get("/v1/objects/not-an-id");
    assert_eq!(status, 400);

    // A fresh node, no peers: import brings the listings, search finds them.
    let (_b, _) = start_node(&b_dir, None);
    assert!(search(&b_dir, "Genji").is_empty());
    let imported: ImportReport = json_as(&b_dir, &["import", out]);
    assert_eq!(
        (imported.stored, imported.duplicate, imported.refused),
        (2, 0, 0)
    );
    let found = wait_for("the imported listing in the search index", || {
        search(&b_dir, "Genji")
            .into_iter()
            .find(|l| l.id == first.id)
    });
    assert_eq!(found.price, 30_000);
    // Importing again stores nothing new.
    let again: ImportReport = json_as(&b_dir, &["import", out]);
    assert_eq!((again.stored, again.duplicate, again.refused), (0, 2, 0));

    // Corrupted: a signature byte flipped in the first object, garbage at the end. The
    // second object is still stored, the two faults are refused with reasons, exit 1.
    let c_dir = tmp.path().join("c");
    let (_c, _) = start_node(&c_dir, None);
    let mut bad = bytes.clone();
    let first_len = items[0].1.len();
    bad[first_len - 3] ^= 0xff;
    bad.extend_from_slice(&[0x5b, 0xff, 0x00]);
    let bad_file = tmp.path().join("corrupt.cborseq");
    std::fs::write(&bad_file, &bad).expect("write");
    let run = jangteo(
        &c_dir,
        &["--json", "import", bad_file.to_str().expect("path")],
    );
    assert_eq!(run.status.code(), Some(1), "a refused object is exit 1");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("refused"),
        "says what was refused: {stderr}"
    );
    let report: ImportReport =
        serde_json::from_slice(&run.stdout).expect("stdout holds the one report");
    assert_eq!((report.stored, report.refused), (1, 2), "{report:?}");
    assert_eq!(report.errors.len(), 2);
    assert_eq!(report.errors[0].index, 0);
    assert_eq!(report.errors[1].offset, bytes.len() as u64);
    // The node goes on, with the valid object (the second in id order).
    let kept_object = jangteo_protocol::ObjectId::of(items[1].1).to_hex();
    let kept = wait_for("the valid object of the corrupted file", || {
        let all: Vec<ListingView> = json_try_as(&c_dir, &["search"])?;
        all.into_iter().find(|l| l.object == kept_object)
    });
    assert!(kept.id == first.id || kept.id == second.id, "{kept:?}");
    json_as::<StatusView>(&c_dir, &["status"]);

    // Not a file of objects at all.
    std::fs::write(&bad_file, b"hello, not cbor").expect("write");
    let run = jangteo(
        &c_dir,
        &["--json", "import", bad_file.to_str().expect("path")],
    );
    assert_eq!(run.status.code(), Some(1));
    let report: ImportReport = serde_json::from_slice(&run.stdout).expect("report");
    assert_eq!((report.stored, report.duplicate), (0, 0));
    assert!(report.refused >= 1, "{report:?}");
}
