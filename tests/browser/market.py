"""A seller and a buyer use the web page of their own nodes in a real Chromium (Playwright).

Called by tests/web_browser.rs with: SELLER_URL BUYER_URL THIRD_URL SELLER_PEER HOSTILE_ID
SHOTS_DIR [BROWSER] (HOSTILE_ID: a listing the third node posted with script in its title;
BROWSER: chromium, Debian's, driven over CDP, the default; or firefox, Debian's firefox-esr,
driven over WebDriver BiDi, Playwright's `moz-firefox` channel).
The URLs are `jangteo ui --no-open --json` login links of three connected nodes. The seller
posts a Korean listing with two photos, reordered; the buyer finds it with a Korean query, sees the photo
(naturalWidth > 0), opens it and makes an offer; the offer appears on the seller's open
trades page without a reload; the seller accepts, which the buyer's open trade page shows
without a reload;
the buyer pays, the seller ships, the buyer confirms receipt and rates the seller; the
buyer's page of the seller says its trust comes through one trade partner; the third
node's page of the seller shows the review. The seller reorders the listing's photos on the
edit page, saves a location in settings, sees the listing in the home page's "near you"
section, and looks at the network page (sync per category); the pages switch to English with the header's language menu, then
to Japanese with the keyboard alone. A screenshot of each page goes to
SHOTS_DIR; on failure, of every open page too. Any failure raises, so the process exits
non-zero.
"""

import os
import re
import struct
import sys
import tempfile
import time
import zlib

from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
FIREFOX = "/usr/bin/firefox-esr"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000
TITLE = "중고 자전거를 팝니다 (삼천리 26인치)"
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"
REVIEW = "친절하고 자전거 상태도 설명 그대로였어요"


def wait_state(page, base, trade_id, name):
    """Reloads the trade page until its state badge reads `name` (the step travels between
    the two nodes), within the timeout."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        page.goto(base + f"/trade/{trade_id}")
        if page.locator("h1 .badge").inner_text() == name:
            return
        assert time.monotonic() < deadline, f"the trade never became {name}"
        page.wait_for_timeout(250)


def png(width, height):
    """A small gradient picture of a bicycle-ish shape, as PNG bytes (stdlib only)."""
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            r, g, b = 240 - y // 3, 200 - x // 4, 150 + (x + y) // 8
            # two wheels and a frame
            for cx in (width // 3, 2 * width // 3):
                d = ((x - cx) ** 2 + (y - 2 * height // 3) ** 2) ** 0.5
                if abs(d - height // 5) < 4:
                    r, g, b = 30, 30, 30
            if abs((y - height // 2) - (x - width // 3) // 2) < 3 and width // 3 < x < 2 * width // 3:
                r, g, b = 200, 40, 40
            row += bytes((max(0, min(255, r)), max(0, min(255, g)), max(0, min(255, b))))
        rows.append(bytes(row))
    raw = zlib.compress(b"".join(rows), 9)

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


OPEN = []


KIND = "chromium"


def browser(p, viewport, name):
    if KIND == "firefox":
        # Debian's Firefox speaks WebDriver BiDi; Playwright drives it through its moz-firefox
        # channel (its own patched Firefox build is not needed).
        ctx = p.firefox.launch_persistent_context(
            tempfile.mkdtemp(prefix="jangteo-firefox-"),
            channel="moz-firefox",
            executable_path=FIREFOX,
            headless=True,
            locale="ko-KR",
            viewport=viewport,
        )
    else:
        ctx = p.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="jangteo-chromium-"),
            executable_path=CHROMIUM,
            headless=True,
            args=ARGS,
            locale="ko-KR",
            viewport=viewport,
        )
    ctx.set_default_timeout(TIMEOUT_MS)
    OPEN.append((ctx, name))
    return ctx


# Set while a screenshot is taken: Playwright's Firefox (BiDi) puts a <style> element into
# the page for it, which the page's Content-Security-Policy refuses, as it should, and
# Firefox reports that as a page error. Only that report, and only then, is not the page's.
SHOOTING = False


def harness_style_refused(message):
    return SHOOTING and "blocked an inline style" in message and "style-src" in message


def shot(page, shots, name):
    global SHOOTING
    path = os.path.join(shots, name + ".png")
    # From the top, with nothing focused: a sticky header then sits where a person sees it.
    page.evaluate("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    SHOOTING = True
    try:
        page.screenshot(path=path, full_page=True)
    finally:
        SHOOTING = False
    print("screenshot", path, flush=True)


def image_loaded(page, selector):
    page.wait_for_function(
        "(sel) => { const i = document.querySelector(sel);"
        " return !!i && i.complete && i.naturalWidth > 0; }",
        arg=selector,
        timeout=TIMEOUT_MS,
    )
    width = page.eval_on_selector(selector, "i => i.naturalWidth")
    assert width > 0, f"{selector} did not load"
    return width


def no_script_ran(page):
    errors = []
    page.on("pageerror", lambda e: harness_style_refused(str(e)) or errors.append(str(e)))
    page.on("dialog", lambda d: errors.append("dialog: " + d.message) or d.dismiss())
    return errors


def main():
    global KIND
    seller_url, buyer_url, third_url, seller_peer, hostile_id, shots = sys.argv[1:7]
    KIND = sys.argv[7] if len(sys.argv) > 7 else "chromium"
    assert KIND in ("chromium", "firefox"), KIND
    os.makedirs(shots, exist_ok=True)
    folder = tempfile.mkdtemp(prefix="jangteo-photo-")
    photo = [os.path.join(folder, "bike.png"), os.path.join(folder, "wheel.png")]
    with open(photo[0], "wb") as f:
        f.write(png(480, 360))
    with open(photo[1], "wb") as f:
        f.write(png(360, 360))

    with sync_playwright() as p:
        try:
            flow(p, seller_url, buyer_url, third_url, seller_peer, hostile_id, shots, photo)
        except BaseException:
            capture(shots)
            raise
    print(f"browser test passed in {KIND}", flush=True)


def capture(shots):
    """Whatever page each browser was on when the test failed, as a screenshot and text."""
    for ctx, name in OPEN:
        for j, pg in enumerate(ctx.pages):
            try:
                shot(pg, shots, f"failed-{name}-{j}")
                print("failed on", pg.url, flush=True)
                print(pg.inner_text("body")[:3000], flush=True)
            except Exception as e:  # the browser may be gone
                print("no screenshot of", name, e, flush=True)


def flow(p, seller_url, buyer_url, third_url, seller_peer, hostile_id, shots, photo):
    if True:
        # --- the seller, on a desktop -------------------------------------------------
        seller = browser(p, {"width": 1280, "height": 860}, "seller")
        page = seller.pages[0] if seller.pages else seller.new_page()
        errors = no_script_ran(page)
        base = re.match(r"^(http://[^/]+)", seller_url).group(1)
        page.goto(base + "/")
        expect(page.locator("code")).to_contain_text("jangteo ui")
        shot(page, shots, "01-login")
        page.goto(seller_url)
        page.wait_for_url(base + "/")
        expect(page.locator("h1")).to_have_text("새로 올라온 물건")
        shot(page, shots, "02-seller-home-empty")

        page.get_by_role("link", name="판매하기").first.click()
        page.wait_for_url(base + "/post")
        page.set_input_files("#photos", photo)
        expect(page.locator("#previews img")).to_have_count(2)
        # Reorder: the wheel becomes the cover photo.
        page.get_by_role("button", name="뒤로: bike.png").click()
        expect(page.locator("#previews img").first).to_have_attribute("alt", "wheel.png")
        page.fill("#title", TITLE)
        page.fill("#description", "출퇴근용으로 1년 탔습니다.\n망원역 근처에서 직거래 원해요.")
        page.select_option("#category", "bikes")
        page.select_option("#condition", "good")
        page.fill("#price", "150,000")
        page.select_option("#currency", "KRW")
        page.fill("#quantity", "1")
        page.fill("#location", "37.5563,126.9220")
        shot(page, shots, "03-post-form")
        page.get_by_role("button", name="판매글 올리기").click()
        page.wait_for_url(re.compile(r"/listing/[0-9a-f]{64}$"))
        expect(page.locator("h1")).to_have_text(TITLE)
        expect(page.locator(".price.big")).to_have_text("₩150,000")
        image_loaded(page, ".gallery img")
        expect(page.locator(".gallery img")).to_have_count(2)
        # The cover is the photo moved first: the square one.
        cover = page.eval_on_selector(".gallery img", "i => [i.naturalWidth, i.naturalHeight]")
        assert cover[0] == cover[1], f"the reordered cover is first: {cover}"
        shot(page, shots, "04-listing-seller")
        listing_url = page.url
        assert not errors, errors

        # With my place saved, home shows the newest listings near it, nearest within 10 km.
        page.goto(base + "/settings")
        page.fill("#location", "37.55630,126.92200")
        page.get_by_role("button", name="위치 저장").click()
        page.wait_for_url(base + "/settings?saved=1")
        page.goto(base + "/")
        near = page.locator(".near")
        expect(near.locator("h2")).to_have_text("내 근처 10km 안의 새 물건")
        expect(near.locator(".card", has_text=TITLE).locator(".meta")).to_contain_text("0.0 km")
        image_loaded(page, ".near .card img")
        chip = page.locator(".chips").get_by_role("link", name="자전거", exact=True)
        expect(chip).to_have_attribute("href", "/search?category=bikes&sort=recent")
        shot(page, shots, "21-home-near")

        # The seller watches the trades page; it must change by itself when an offer comes.
        page.goto(base + "/trades")
        page.wait_for_function("() => document.documentElement.dataset.live === 'on'")
        page.evaluate("() => { window.__notReloaded = true; }")

        # --- the buyer, on a phone ----------------------------------------------------
        buyer = browser(p, {"width": 390, "height": 844}, "buyer")
        bpage = buyer.pages[0] if buyer.pages else buyer.new_page()
        berrors = no_script_ran(bpage)
        bbase = re.match(r"^(http://[^/]+)", buyer_url).group(1)
        bpage.goto(buyer_url)
        bpage.wait_for_url(bbase + "/")
        # The listing reaches the buyer's node by gossip or sync: search until it is there.
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while True:
            bpage.fill("#q", "자전거")
            bpage.press("#q", "Enter")
            bpage.wait_for_url(re.compile(r"/search\?q="))
            if bpage.locator(".card .title", has_text=TITLE).count() > 0:
                break
            assert time.monotonic() < deadline, "the buyer never found the listing"
            bpage.wait_for_timeout(250)
        expect(bpage.locator("h1")).to_contain_text("자전거")
        card = bpage.locator(".card", has_text=TITLE)
        expect(card.locator(".price")).to_have_text("₩150,000")
        image_loaded(bpage, ".card img")
        shot(bpage, shots, "05-buyer-search")
        card.locator("a").first.click()
        bpage.wait_for_url(re.compile(r"/listing/[0-9a-f]{64}$"))
        assert bpage.url.rsplit("/", 1)[1] == listing_url.rsplit("/", 1)[1]
        image_loaded(bpage, ".gallery img")
        expect(bpage.locator(".seller")).to_be_visible()
        shot(bpage, shots, "06-buyer-listing")
        bpage.fill("#offer-price", "140000")
        bpage.fill("#offer-message", "토요일 오후 망원역에서 괜찮을까요?")
        bpage.get_by_role("button", name="제안 보내기").click()
        bpage.wait_for_url(re.compile(r"/trade/[0-9a-f]{64}$"))
        expect(bpage.locator("h1 .badge")).to_have_text("제안됨")
        bpage.wait_for_function("() => document.documentElement.dataset.live === 'on'")
        bpage.evaluate("() => { window.__notReloaded = true; }")
        shot(bpage, shots, "07-buyer-trade-offered")
        trade_id = bpage.url.rsplit("/", 1)[1]
        assert not berrors, berrors

        # --- the offer appears on the seller's page without a reload; the seller accepts
        expect(page.locator(f'a[href="/trade/{trade_id}"]')).to_be_visible()
        assert page.evaluate("() => window.__notReloaded === true"), "the page was reloaded"
        shot(page, shots, "08-seller-trades")
        page.locator(f'a[href="/trade/{trade_id}"]').click()
        page.get_by_role("button", name="수락").click()
        page.wait_for_url(base + f"/trade/{trade_id}")
        expect(page.locator("h1 .badge")).to_have_text("수락됨")
        shot(page, shots, "09-seller-trade-accepted")

        # --- paid, shipped, received: both step through to completion -----------------
        # The buyer's trade page, open since the offer, shows the acceptance by itself.
        expect(bpage.locator("h1 .badge")).to_have_text("수락됨")
        assert bpage.evaluate("() => window.__notReloaded === true"), "the buyer's page was reloaded"
        bpage.fill("#f-paid", "국민은행 이체 140,000")
        bpage.get_by_role("button", name="입금했어요").click()
        expect(bpage.locator("h1 .badge")).to_have_text("입금함")
        wait_state(page, base, trade_id, "입금함")
        page.fill("#f-shipped", "직거래 (망원역)")
        page.get_by_role("button", name="발송/전달했어요").click()
        expect(page.locator("h1 .badge")).to_have_text("발송함")
        wait_state(bpage, bbase, trade_id, "발송함")
        bpage.get_by_role("button", name="받았어요").click()
        expect(bpage.locator("h1 .badge")).to_have_text("거래완료")
        shot(bpage, shots, "11-buyer-trade-completed")

        # --- the buyer rates the seller ------------------------------------------------
        bpage.check("input[name=score][value='5']")
        bpage.fill("#rate-comment", REVIEW)
        bpage.get_by_role("button", name="평가 보내기").click()
        expect(bpage.locator(".rate .ok")).to_contain_text("★★★★★")
        expect(bpage.locator(".progress li.done")).to_have_count(6)
        shot(bpage, shots, "12-buyer-rated")
        # The buyer's trust in the seller comes through one trade partner: the seller, rated well.
        bpage.goto(bbase + f"/seller/{seller_peer}")
        expect(bpage.locator(".through")).to_have_text("내 거래 상대 1명을 통해 신뢰함")
        shot(bpage, shots, "19-buyer-seller-trust")
        assert not berrors, berrors

        # --- a third node's seller page shows the review --------------------------------
        third = browser(p, {"width": 1024, "height": 800}, "third")
        tpage = third.pages[0] if third.pages else third.new_page()
        terrors = no_script_ran(tpage)
        tbase = re.match(r"^(http://[^/]+)", third_url).group(1)
        tpage.goto(third_url)
        tpage.wait_for_url(tbase + "/")
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while True:
            tpage.goto(tbase + f"/seller/{seller_peer}")
            if tpage.locator(".reviews .comment", has_text=REVIEW).count() > 0:
                break
            assert time.monotonic() < deadline, "the third node never showed the review"
            tpage.wait_for_timeout(250)
        expect(tpage.locator(".reviews .stars").first).to_have_text("★★★★★")
        # The third node trusts no one yet: no chain reaches the seller.
        expect(tpage.locator(".through")).to_contain_text("아직 아무도")
        shot(tpage, shots, "13-third-seller-page")
        assert not terrors, terrors

        # --- the seller reorders the photos on the edit page (a new version) -------------
        page.goto(listing_url + "/edit")
        keep = page.locator(".keep li")
        expect(keep).to_have_count(2)
        expect(page.get_by_label("유지").first).to_be_checked()
        shot(page, shots, "20-edit-photos")
        # Typed as a person does: Firefox's fill() on a number field adds to its value.
        positions = page.get_by_label("순서")
        for i, value in ((0, "2"), (1, "1")):
            positions.nth(i).click()
            page.keyboard.press("End")
            page.keyboard.press("Backspace")
            page.keyboard.type(value)
            expect(positions.nth(i)).to_have_value(value)
        page.get_by_role("button", name="새 버전 저장").click()
        page.wait_for_url(listing_url)
        image_loaded(page, ".gallery img")
        cover = page.eval_on_selector(".gallery img", "i => [i.naturalWidth, i.naturalHeight]")
        assert cover[0] > cover[1], f"the wide photo is the cover now: {cover}"
        expect(page.locator(".gallery img")).to_have_count(2)

        # --- settings, home near my place, network, and the same pages in English --------
        page.goto(base + "/settings")
        expect(page.locator(".qr svg")).to_be_visible()
        expect(page.locator(".peer code")).to_have_text(seller_peer)
        page.fill("#location", "37.55630,126.92200")
        page.get_by_role("button", name="위치 저장").click()
        page.wait_for_url(base + "/settings?saved=1")
        expect(page.locator("#location")).to_have_value("37.55630,126.92200")
        shot(page, shots, "14-seller-settings")
        page.goto(base + "/network")
        expect(page.locator("h1")).to_have_text("네트워크")
        expect(page.locator(".plain li").first).to_be_visible()
        expect(page.locator(".shards li", has_text="자전거")).to_be_visible()
        shot(page, shots, "15-seller-network")
        page.select_option("#lang-to", "en")
        page.get_by_role("button", name="변경").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.locator("h1")).to_have_text("Network")
        # Sold out through a trade that completed: the listing shows as sold on my list.
        page.goto(base + "/mine")
        card = page.locator(".card", has_text=TITLE)
        expect(card.locator(".badge")).to_have_text("Sold")
        # The trade on it is listed under the listing, as every offer on my listings is.
        expect(page.locator(f'.panel a[href="/trade/{trade_id}"]')).to_be_visible()
        image_loaded(page, ".card img")
        shot(page, shots, "16-seller-mine-en")
        assert not errors, errors

        # A listing from another node titled with script and an image that runs script when
        # it fails: opened, shown as text, and nothing runs (no dialog, no error).
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while True:
            answer = page.goto(base + f"/listing/{hostile_id}")
            if answer.status == 200:
                break
            assert time.monotonic() < deadline, "the hostile listing never reached the seller"
            page.wait_for_timeout(250)
        expect(page.locator("h1")).to_have_text(HOSTILE)
        expect(page.locator(".description")).to_have_text(HOSTILE)
        assert page.locator("main script, main img[src=x]").count() == 0
        shot(page, shots, "18-hostile-listing")
        assert not errors, errors

        # --- the network page in Japanese, chosen with the keyboard alone ---------------
        page.goto(base + "/network")
        menu = page.get_by_label("Language")
        expect(menu).to_have_value("en")
        menu.focus()
        menu.select_option("ja")
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="Change")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("html")).to_have_attribute("lang", "ja")
        expect(page.locator("h1")).to_have_text("ネットワーク")
        expect(page.locator("#lang-to")).to_have_value("ja")
        shot(page, shots, "17-network-ja")
        assert not errors, errors

        third.close()
        seller.close()
        buyer.close()


if __name__ == "__main__":
    main()
