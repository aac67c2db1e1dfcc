//! The web page in real browsers: Debian's Chromium (over CDP) and Debian's Firefox ESR
//! (over WebDriver BiDi, Playwright's `moz-firefox` channel), both driven by Playwright (all
//! from `.ci/deps`), against four real `jangteo node` processes on loopback: a community
//! relay, and three people's nodes that know only the relay. The seller logs in with
//! `jangteo ui --no-open --json`'s URL and posts a Korean listing with two photos; the buyer
//! finds it with a Korean query, sees the photo load, opens it and makes an offer, which
//! reaches the seller's open page without a reload; the seller accepts; both step through to
//! completion and the buyer rates; the third node's seller page shows the review; a hostile
//! listing from the third node shows as text; the language changes by keyboard
//! (`tests/browser/market.py`). A second flow (`tests/browser/chat.py`, a relay, a seller and
//! a buyer): the buyer asks on the listing page while the seller's node is stopped, the
//! seller's node starts again and answers from its inbox, each sees the other's read marks
//! appear live, they agree on a meetup; the buyer saves a keyword alert and its notification
//! badge goes up live when the seller's node posts a matching listing. Each flow runs once
//! per browser, one browser at a time.
//! Screenshots of every page go to `$JANGTEO_SCREENSHOTS` (Firefox's under `firefox/`; else
//! a temporary folder). A missing browser or Playwright fails.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{json_as, start_node, tcp_addr, wait_for};
use jangteo_node::api::types::{ListingRef, StatusView, UiUrl};

const CHROMIUM: &str = "/usr/bin/chromium";
const FIREFOX: &str = "/usr/bin/firefox-esr";
/// One browser flow at a time: each runs four nodes and a browser on a machine of two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// The title and description of the hostile listing (the same text as in `market.py`).
const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

fn venv_python() -> PathBuf {
    let python = common::venv_tool("python");
    let ok = Command::new(&python)
        .args(["-c", "import playwright.sync_api"])
        .status()
        .expect("run the venv's python");
    assert!(ok.success(), "playwright is not in the venv: run .ci/deps");
    python
}

#[test]
fn a_trade_from_posting_to_rating_happens_entirely_in_chromium() {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run .ci/deps (it installs Debian's chromium)"
    );
    market_in("chromium", None);
}

#[test]
fn a_trade_from_posting_to_rating_happens_entirely_in_firefox() {
    assert!(
        std::path::Path::new(FIREFOX).exists(),
        "{FIREFOX} is missing: run .ci/deps (it installs Debian's firefox-esr)"
    );
    market_in("firefox", Some("firefox"));
}

/// Runs the whole flow of `market.py` in `browser`, screenshots under `sub` of the folder.
fn market_in(browser: &str, sub: Option<&str>) {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let python = venv_python();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (sdir, bdir, tdir) = (
        tmp.path().join("seller"),
        tmp.path().join("buyer"),
        tmp.path().join("third"),
    );
    // A community relay that everyone knows; the three people know only it.
    let rdir = tmp.path().join("relay");
    let (_relay, rid) = common::start_node_with(&rdir, None, &["--relay"]);
    let relay = tcp_addr(&rid);
    let (_seller, sid) = start_node(&sdir, Some(&relay));
    let (_buyer, _) = start_node(&bdir, Some(&relay));
    let (_third, _) = start_node(&tdir, Some(&relay));
    for dir in [&sdir, &bdir, &tdir] {
        wait_for("a node to be connected to the relay", || {
            let s: StatusView = common::json_try_as(dir, &["status"])?;
            (s.peers > 0).then_some(())
        });
    }
    let seller: UiUrl = json_as(&sdir, &["ui", "--no-open"]);
    let buyer: UiUrl = json_as(&bdir, &["ui", "--no-open"]);
    let third: UiUrl = json_as(&tdir, &["ui", "--no-open"]);
    // A hostile listing from the third node, which the seller's page must show as text.
    let hostile: ListingRef = json_as(
        &tdir,
        &[
            "post",
            "--title",
            HOSTILE,
            "--description",
            HOSTILE,
            "--price",
            "1000",
            "--currency",
            "KRW",
        ],
    );
    let shots = std::env::var_os("JANGTEO_SCREENSHOTS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("screenshots"));
    let shots = match sub {
        Some(sub) => shots.join(sub),
        None => shots,
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/browser/market.py");
    let out = Command::new(&python)
        .arg(script)
        .arg(&seller.url)
        .arg(&buyer.url)
        .arg(&third.url)
        .arg(&sid.peer_id)
        .arg(&hostile.id)
        .arg(&shots)
        .arg(browser)
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .expect("run the browser script");
    eprintln!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "the browser test failed in {browser} (see above); node logs: {}, {}, {} and {}",
        sdir.with_extension("log").display(),
        bdir.with_extension("log").display(),
        tdir.with_extension("log").display(),
        rdir.with_extension("log").display()
    );
}

#[test]
fn two_people_agree_on_a_meetup_by_chat_with_the_seller_offline_for_part_of_it_in_chromium() {
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run .ci/deps (it installs Debian's chromium)"
    );
    chat_in("chromium", None);
}

#[test]
fn two_people_agree_on_a_meetup_by_chat_with_the_seller_offline_for_part_of_it_in_firefox() {
    assert!(
        std::path::Path::new(FIREFOX).exists(),
        "{FIREFOX} is missing: run .ci/deps (it installs Debian's firefox-esr)"
    );
    chat_in("firefox", Some("firefox"));
}

/// Runs `chat.py` in `browser` against a relay, a seller and a buyer, acting on the nodes
/// when the script asks (`@stop-seller`, `@start-seller`, `@say-photo THREAD`, `@photo-file`,
/// `@post-matching`, one line each on its stdout; the answer goes to its stdin).
fn chat_in(browser: &str, sub: Option<&str>) {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let python = venv_python();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (rdir, sdir, bdir) = (
        tmp.path().join("relay"),
        tmp.path().join("seller"),
        tmp.path().join("buyer"),
    );
    let (_relay, rid) = common::start_node_with(&rdir, None, &["--relay"]);
    let relay = tcp_addr(&rid);
    let (seller, _) = start_node(&sdir, Some(&relay));
    let mut seller = Some(seller);
    let (_buyer, _) = start_node(&bdir, Some(&relay));
    for dir in [&sdir, &bdir] {
        wait_for("a node to be connected to the relay", || {
            let s: StatusView = common::json_try_as(dir, &["status"])?;
            (s.peers > 0).then_some(())
        });
    }
    let listing: ListingRef = json_as(
        &sdir,
        &[
            "post",
            "--title",
            "브롬톤 스타일 접이식 미니벨로",
            "--price",
            "180000",
            "--currency",
            "KRW",
            "--category",
            "bikes",
        ],
    );
    wait_for("the listing at the buyer", || {
        common::json_try_as::<jangteo_node::api::types::ListingView>(&bdir, &["show", &listing.id])
    });
    let seller_ui: UiUrl = json_as(&sdir, &["ui", "--no-open"]);
    let buyer_ui: UiUrl = json_as(&bdir, &["ui", "--no-open"]);
    let shots = std::env::var_os("JANGTEO_SCREENSHOTS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("screenshots"));
    let shots = match sub {
        Some(sub) => shots.join(sub),
        None => shots,
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/browser/chat.py");
    let mut child = Command::new(&python)
        .arg(script)
        .arg(&seller_ui.url)
        .arg(&buyer_ui.url)
        .arg(&listing.id)
        .arg(&shots)
        .arg(browser)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the browser script");
    let mut stdin = child.stdin.take().expect("stdin");
    let stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let line = line.unwrap_or_default();
        eprintln!("{line}");
        let answer = match line.trim() {
            "@stop-seller" => {
                drop(seller.take());
                "ok".to_owned()
            }
            "@start-seller" => {
                let (s, _) = start_node(&sdir, Some(&relay));
                seller = Some(s);
                json_as::<UiUrl>(&sdir, &["ui", "--no-open"]).url
            }
            l if l.starts_with("@say-photo ") => {
                let thread = l.trim_start_matches("@say-photo ").trim();
                let file = tmp.path().join("exit-2.png");
                std::fs::write(&file, meeting_place_png()).expect("write");
                let _: jangteo_node::api::types::MessageSent = json_as(
                    &sdir,
                    &[
                        "say",
                        thread,
                        "여기 2번 출구 앞이에요",
                        "--image",
                        file.to_str().expect("path"),
                    ],
                );
                "ok".to_owned()
            }
            "@photo-file" => {
                let file = tmp.path().join("cafe.png");
                std::fs::write(&file, meeting_place_png()).expect("write");
                file.display().to_string()
            }
            "@post-matching" => {
                let _: ListingRef = json_as(
                    &sdir,
                    &[
                        "post",
                        "--title",
                        "삼천리 자전거 24인치 (거의 새것)",
                        "--price",
                        "95000",
                        "--currency",
                        "KRW",
                        "--category",
                        "bikes",
                    ],
                );
                "ok".to_owned()
            }
            _ => continue,
        };
        writeln!(stdin, "{answer}").expect("answer the script");
    }
    let status = child.wait().expect("the browser script");
    eprintln!("{}", errors.join().unwrap_or_default());
    assert!(
        status.success(),
        "the chat browser test failed in {browser} (see above); node logs: {}, {} and {}",
        sdir.with_extension("log").display(),
        bdir.with_extension("log").display(),
        rdir.with_extension("log").display()
    );
}

/// A picture of a meeting place, as a phone's PNG: a sky, a street and a sign.
fn meeting_place_png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(800, 600, |x, y| match (x, y) {
        (340..=460, 120..=220) => image::Rgb([0, 122, 61]),
        (_, 0..=299) => image::Rgb([(150 + y / 6) as u8, 200, 240]),
        _ => image::Rgb([90, 90, (90 + x / 20) as u8]),
    });
    common::png_of(&img)
}
