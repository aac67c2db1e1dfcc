"""Two people agree on a meetup by chat in their nodes' web pages (Playwright), with the
seller offline for part of it; then the buyer is told of a matching listing live.

Called by tests/web_browser.rs with: SELLER_URL BUYER_URL LISTING_ID SHOTS_DIR [BROWSER]
(the URLs are `jangteo ui --no-open --json` login links; LISTING_ID is the seller's
listing, already held by the buyer's node; BROWSER: chromium, the default, or firefox).
The test drives the nodes on request, over stdin and stdout: the script prints
`@stop-seller`, `@start-seller`, `@say-photo THREAD`, `@photo-file` or `@post-matching` and
reads one line back (`ok`, the restarted seller's new login link, `ok`, the path of a photo
to attach, or `ok`).

The flow: the buyer, on a phone, asks on the listing page while the seller's node is
stopped (the message waits on the relay, and the page says so); the buyer keeps the
conversation open; the seller's node starts again and its page's badge shows the message;
the seller opens it from the inbox, and the buyer's open page shows "read" without a
reload; they agree on a meetup, each seeing the other's messages and read marks arrive
live, and a photo of the meeting place the seller sends shows in the buyer's open page; the
buyer answers with a photo attached in the send box. The buyer saves a keyword alert, the seller's node posts a matching listing, and the
buyer's notification badge goes up without a reload; the notification opens the listing.
Last, a hostile message (script, a long unbroken string, right-to-left text) shows as text
on both sides, runs nothing and wraps on the phone.
A screenshot of each page goes to SHOTS_DIR. Any failure raises, so the process exits
non-zero.
"""

import os
import re
import sys

from playwright.sync_api import expect, sync_playwright

import market

QUESTION = "안녕하세요! 자전거 아직 있나요? 토요일에 볼 수 있을까요?"
ANSWER = "네, 있어요. 토요일 오후 3시에 망원역 2번 출구 어떠세요?"
AGREE = "좋아요, 토요일 3시에 망원역 2번 출구에서 봬요!"
THANKS = "찾았어요! 저는 이 카페 앞에 있어요"
MATCH = "삼천리 자전거 24인치 (거의 새것)"
# Script, an image that runs script when it fails, a long unbroken string, right-to-left text.
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)> " + "ㅋ" * 120 + "W" * 200 + " مرحبا بالعالم"


def ask(command):
    """Asks the Rust test to act on the nodes; returns its one-line answer."""
    print("@" + command, flush=True)
    line = sys.stdin.readline().strip()
    assert line, f"no answer to @{command}"
    return line


def live(page):
    page.wait_for_function("() => document.documentElement.dataset.live === 'on'")
    page.evaluate("() => { window.__notReloaded = true; }")


def not_reloaded(page, who):
    assert page.evaluate("() => window.__notReloaded === true"), f"{who}'s page was reloaded"


def main():
    seller_url, buyer_url, listing_id, shots = sys.argv[1:5]
    market.KIND = sys.argv[5] if len(sys.argv) > 5 else "chromium"
    os.makedirs(shots, exist_ok=True)
    with sync_playwright() as p:
        try:
            flow(p, seller_url, buyer_url, listing_id, shots)
        except BaseException:
            market.capture(shots)
            raise
    print(f"chat browser test passed in {market.KIND}", flush=True)


def flow(p, seller_url, buyer_url, listing_id, shots):
    shot = market.shot
    # --- the buyer, on a phone, asks while the seller's node is stopped -------------------
    buyer = market.browser(p, {"width": 390, "height": 844}, "buyer")
    bpage = buyer.pages[0] if buyer.pages else buyer.new_page()
    berrors = market.no_script_ran(bpage)
    bbase = re.match(r"^(http://[^/]+)", buyer_url).group(1)
    bpage.goto(buyer_url)
    bpage.wait_for_url(bbase + "/")
    assert ask("stop-seller") == "ok"
    bpage.goto(bbase + f"/listing/{listing_id}")
    expect(bpage.locator("#chat h2")).to_have_text("판매자에게 문의하기")
    bpage.fill("#chat-text", QUESTION)
    bpage.get_by_role("button", name="보내기", exact=True).click()
    bpage.wait_for_url(re.compile(r"/listing/[0-9a-f]{64}#chat$"))
    mine = bpage.locator(".msg.mine")
    expect(mine).to_have_count(1)
    expect(mine.locator(".bubble")).to_have_text(QUESTION)
    # The seller is offline: the message waits, on the relay, and the page says so.
    expect(mine.locator(".status")).to_have_text("전송 대기")
    expect(mine.locator(".why")).to_contain_text("릴레이")
    shot(bpage, shots, "22-chat-listing-queued")
    bpage.get_by_role("link", name="대화 전체 보기").click()
    bpage.wait_for_url(re.compile(r"/inbox/[0-9a-f]{64}$"))
    thread = bpage.url.rsplit("/", 1)[1]
    live(bpage)
    assert not berrors, berrors

    # --- the seller's node starts again; its page shows the message ----------------------
    seller_url = ask("start-seller")
    seller = market.browser(p, {"width": 1280, "height": 860}, "seller")
    page = seller.pages[0] if seller.pages else seller.new_page()
    errors = market.no_script_ran(page)
    base = re.match(r"^(http://[^/]+)", seller_url).group(1)
    page.goto(seller_url)
    page.wait_for_url(base + "/")
    live(page)
    # Collected from the relay's mailbox, now or a moment later (the badge follows live).
    expect(page.locator("#badge-messages")).to_have_text("1")
    # The buyer's open page sees it delivered, without a reload.
    expect(bpage.locator(".msg.mine .status.delivered")).to_be_visible()
    page.get_by_role("link", name=re.compile("^채팅")).click()
    page.wait_for_url(base + "/inbox")
    row = page.locator(f'.inbox li[data-thread="{thread}"]')
    expect(row.locator(".count")).to_have_text("1")
    expect(row.locator(".last")).to_have_text(QUESTION)
    shot(page, shots, "23-inbox-unread")
    row.locator("a.open").click()
    page.wait_for_url(base + f"/inbox/{thread}")
    expect(page.locator(".msg.theirs .bubble")).to_have_text(QUESTION)
    expect(page.locator("#badge-messages")).to_be_hidden()
    live(page)

    # --- the buyer sees "read" appear; they agree on a meetup, live on both sides -------
    expect(bpage.locator(".msg.mine .status.read")).to_have_text("읽음")
    not_reloaded(bpage, "the buyer")
    page.fill("#chat-text", ANSWER)
    page.get_by_role("button", name="보내기", exact=True).click()
    page.wait_for_url(base + f"/inbox/{thread}#chat")
    live(page)
    expect(bpage.locator(".msg.theirs .bubble")).to_have_text(ANSWER)
    # The buyer's open page fetched it, which marks it read: the seller sees that.
    expect(page.locator(".msg.mine .status.read")).to_be_visible()
    bpage.fill("#chat-text", AGREE)
    bpage.get_by_role("button", name="보내기", exact=True).click()
    bpage.wait_for_url(re.compile(r"/inbox/[0-9a-f]{64}#chat$"))
    live(bpage)
    expect(page.locator(".msg.theirs .bubble").last).to_have_text(AGREE)
    not_reloaded(page, "the seller")
    expect(bpage.locator(".msg.mine .status").last).to_have_text("읽음")
    expect(bpage.locator(".msg.mine .status.read")).to_have_count(2)
    # The seller sends a photo of the meeting place (`say --image`): it shows in the
    # buyer's open page as a thumbnail, fetched from the seller's node, and opens full size.
    assert ask("say-photo " + thread) == "ok"
    photo = bpage.locator(".msg.theirs .msg-photos img")
    expect(photo).to_have_count(1)
    expect(photo).to_have_attribute("alt", "사진 1")
    bpage.wait_for_function(
        "() => { const i = document.querySelector('.msg.theirs .msg-photos img');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    not_reloaded(bpage, "the buyer")
    href = bpage.locator(".msg.theirs .msg-photos a").get_attribute("href")
    assert re.fullmatch(r"/photo/[0-9a-f]{64}", href), href
    # The buyer answers from the phone with a photo, through the send box; the seller's
    # open page shows it without a reload.
    bpage.fill("#chat-text", THANKS)
    bpage.set_input_files("#chat-photos", ask("photo-file"))
    bpage.get_by_role("button", name="보내기", exact=True).click()
    bpage.wait_for_url(re.compile(r"/inbox/[0-9a-f]{64}#chat$"))
    live(bpage)
    mine = bpage.locator(".msg.mine").last
    expect(mine.locator(".bubble")).to_have_text(THANKS)
    expect(mine.locator(".msg-photos img")).to_have_count(1)
    theirs = page.locator(".msg.theirs").last
    expect(theirs.locator(".bubble")).to_have_text(THANKS)
    expect(theirs.locator(".msg-photos img")).to_have_count(1)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.msg.theirs .msg-photos img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    not_reloaded(page, "the seller")
    shot(bpage, shots, "24-thread-buyer")
    shot(page, shots, "25-thread-seller")
    assert not errors, errors
    assert not berrors, berrors

    # --- the buyer saves a keyword alert; a matching listing arrives ----------------------
    bpage.goto(bbase + "/alerts")
    bpage.fill("#alert-q", "자전거")
    bpage.get_by_role("button", name="알림 저장").click()
    bpage.wait_for_url(bbase + "/alerts?saved=1")
    expect(bpage.locator(".alerts li .what")).to_have_text("“자전거”")
    shot(bpage, shots, "26-alerts")
    badge = bpage.locator("#badge-notifications")
    before = 0 if badge.is_hidden() else int(badge.inner_text())
    live(bpage)
    assert ask("post-matching") == "ok"
    expect(badge).to_have_text(str(before + 1))
    not_reloaded(bpage, "the buyer")
    bpage.get_by_role("link", name=re.compile("^알림")).first.click()
    bpage.wait_for_url(bbase + "/notifications")
    item = bpage.locator(".notifications li.unread", has_text=MATCH)
    expect(item).to_have_count(1)
    shot(bpage, shots, "27-notifications")
    item.get_by_role("button").click()
    bpage.wait_for_url(re.compile(r"/listing/[0-9a-f]{64}$"))
    expect(bpage.locator("h1")).to_have_text(MATCH)
    assert not berrors, berrors

    # --- a hostile message shows as text, wraps on the phone, and runs nothing ----------
    bpage.goto(bbase + f"/inbox/{thread}")
    bpage.fill("#chat-text", HOSTILE)
    bpage.get_by_role("button", name="보내기", exact=True).click()
    bpage.wait_for_url(re.compile(r"/inbox/[0-9a-f]{64}#chat$"))
    expect(bpage.locator(".msg.mine .bubble").last).to_have_text(HOSTILE)
    assert bpage.locator("main script, main img[src=x]").count() == 0
    expect(page.locator(".msg.theirs .bubble").last).to_have_text(HOSTILE)
    wide = bpage.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= 390, f"the page is {wide} px wide on a 390 px phone"
    assert not berrors, berrors
    assert not errors, errors

    seller.close()
    buyer.close()


if __name__ == "__main__":
    main()
