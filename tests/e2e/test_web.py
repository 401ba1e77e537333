"""The web page in a real headless Chromium against `xsearch serve` run as a user would run it:
type a query, see results, play them from the matched time, search with a file, see errors.
Saves a screenshot to test-artifacts/web-page.png."""

from __future__ import annotations

import base64
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT
from tests.helpers.media_tree import make_media

pytestmark = pytest.mark.slow  # a real browser against a real server

sync_api = pytest.importorskip("playwright.sync_api")

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
]


def chromium() -> str | None:
    """Debian's chromium (or $XSEARCH_CHROMIUM): Playwright's own browsers are never fetched."""
    for candidate in (os.environ.get("XSEARCH_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def home(tmp_path_factory, tiny_audioclip) -> Path:
    from xsearch.ingest.pipeline import IngestOptions, ingest
    from xsearch.ingest.scan import find_files
    from xsearch.samples import write_video

    base = tmp_path_factory.mktemp("web")
    media = make_media(base / "media")
    write_video(media / "sunset.mp4", seconds=3.0)  # a second video, 3 s: its frame is at 1.5 s
    ingest(find_files([media]), base / "home" / "media", tiny_audioclip, IngestOptions(workers=0))
    return base


@pytest.fixture(scope="module")
def server(home):
    """`xsearch serve --port 0` in a subprocess; yields its URL."""
    exe = Path(sys.executable).with_name("xsearch")
    env = {**os.environ, "XSEARCH_HOME": str(home / "home")}
    process = subprocess.Popen(
        [str(exe), "serve", "--index", "media", "--port", "0", "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True).start()
    errors: list[str] = []
    threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True).start()
    try:
        try:
            line = lines.get(timeout=90)
        except queue.Empty:
            pytest.fail(f"xsearch serve printed no URL; stderr: {''.join(errors)}")
        url = re.search(r"http://\S+/", line)
        assert url, line
        yield url.group(0)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert "Traceback" not in "".join(errors), "".join(errors)
    assert any("random weights" in e.lower() for e in errors)  # the banner, on stderr


@pytest.fixture(scope="module")
def browser():
    executable = chromium()
    if executable is None:
        pytest.skip("no chromium found (Debian: `apt-get install chromium`, or `make browser`)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def cards(page):
    return page.locator("#results .card")


def search(page, text: str, target: str) -> None:
    page.fill("#q", text)
    page.select_option("#target", target)
    page.press("#q", "Enter")
    page.wait_for_function("() => !document.querySelector('#results').hasAttribute('aria-busy')")


def play_and_check(page, media, start: float, end: float | None) -> float:
    """The player `media` (a locator) plays on from `start` (and not past `end`)."""
    handle = media.element_handle()
    page.wait_for_function(
        "([m, start]) => !m.paused && m.currentTime > start + 0.05", arg=[handle, start]
    )
    now = media.evaluate("m => m.currentTime")
    assert now >= start
    if end is not None:
        assert now <= end + 0.5
    return now


def pause_all(page) -> None:
    page.evaluate("() => document.querySelectorAll('audio, video').forEach(m => m.pause())")


def watch(page) -> tuple[list[str], list[str]]:
    """(page errors and console errors, URLs answered >= 400) as the page runs."""
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )
    failed: list[str] = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    page.set_default_timeout(20_000)
    return problems, failed


def pictures_loaded(page) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )


@pytest.mark.timeout(180)
def test_the_page_searches_plays_and_uploads(server, browser, home):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems, failed = watch(page)
    page.goto(server)
    page.wait_for_selector("body[data-ready='true']")
    assert page.is_visible("#random-banner")  # the index was built with random weights
    assert "index media" in page.inner_text("#index-info")

    # text -> audio: a card per file; storm.wav's three windows are one card, its best first
    page.fill("#k", "10")
    search(page, "a police siren", "audio")
    assert cards(page).count() == 5  # 7 audio items of 5 files
    assert len(set(cards(page).locator(".open").all_inner_texts())) == 5
    pictures_loaded(page)
    assert "score" in cards(page).first.inner_text()
    storm = cards(page).filter(has_text="storm.wav")
    assert storm.count() == 1 and "3 moments" in storm.inner_text()
    start, end = float(storm.get_attribute("data-start")), float(storm.get_attribute("data-end"))
    assert f"{start:.1f}–{end:.1f} s" in storm.inner_text()
    storm.locator("button.play").click()  # plays the best window, in place
    play_and_check(page, storm.locator("audio"), start, end)
    pause_all(page)
    # a card has few tab stops: its name (opens it), play, more like this
    focusable = "button, a[href], input, select, [tabindex]:not([tabindex='-1']), [controls]"
    assert storm.locator(focusable).count() == 3
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "web-results.png"
    page.screenshot(path=str(shot), full_page=True)

    # the detail view of a sound: the waveform with the matched window marked, its moments
    storm.locator("button.open").click()
    dialog = page.locator("#detail")
    assert dialog.is_visible() and page.inner_text("#detail-title") == "storm.wav"
    page.wait_for_function(
        "() => { const i = document.querySelector('#detail .wave img');"
        " return i && i.complete && i.naturalWidth > 0; }"
    )
    marked = page.evaluate(
        "() => { const w = document.querySelector('#detail .wave').getBoundingClientRect();"
        " const m = document.querySelector('#detail .wave .window').getBoundingClientRect();"
        " return [(m.left - w.left) / w.width, m.width / w.width]; }"
    )
    assert marked[0] == pytest.approx(start / 25, abs=0.02)  # the file is 25 s long
    assert marked[1] == pytest.approx((end - start) / 25, abs=0.02)
    moments = dialog.locator(".moment-list button")
    assert moments.count() == 3
    for fact in ("Duration", "Size", "Modified", "Path", "media/rain/storm.wav"):
        assert fact in dialog.locator(".facts").inner_text()
    chosen = dialog.locator(".moment-list button[aria-pressed='false']").first
    other = dialog.locator(
        f".moment-list button[data-item-id='{chosen.get_attribute('data-item-id')}']"
    )
    other_start = float(other.get_attribute("data-start"))
    other.click()
    assert other.get_attribute("aria-pressed") == "true"
    play_and_check(page, dialog.locator("audio"), other_start, other_start + 10)
    page.screenshot(path=str(ARTIFACTS / "web-detail-sound.png"))
    pause_all(page)
    # the keyboard: the next and previous result, Escape closes and gives the focus back
    place = page.inner_text("#detail-place")
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#detail-place") != place
    page.keyboard.press("ArrowLeft")
    assert page.inner_text("#detail-place") == place
    page.keyboard.press("Escape")
    assert dialog.is_hidden()
    assert page.evaluate("() => document.activeElement.textContent") == "storm.wav"

    # text -> image: a video's frame; its detail view plays the video from the frame's time
    search(page, "an orange sunset", "image")
    video = page.locator("#results .card[data-kind='video'][data-modality='image']").filter(
        has_text="sunset.mp4"
    )
    assert video.count() == 1 and "frame at 1.5 s" in video.inner_text()
    video.locator("button.open").click()
    dialog.locator("button.play").click()
    play_and_check(page, dialog.locator("video"), 1.5, None)
    pause_all(page)
    page.keyboard.press("Escape")

    # text -> video: one card per video, its best moment first, the others in its detail view
    search(page, "an orange sunset", "video")
    sunset = cards(page).filter(has_text="sunset.mp4")
    assert sunset.count() == 1 and "2 moments" in sunset.inner_text()  # its frame and its sound
    assert f"{cards(page).count()} results in videos" in page.inner_text("#summary")
    sunset.locator("button.open").click()
    later = dialog.locator(".moment-list button[data-start='1.5']")
    assert dialog.locator(".moment-list button").count() == 2
    later.click()
    play_and_check(page, dialog.locator("video"), 1.5, None)
    page.screenshot(path=str(ARTIFACTS / "web-detail.png"))
    pause_all(page)
    page.keyboard.press("Escape")
    page.select_option("#target", "image")

    # a file as the query (the box emptied: text would be fused in), shown as a preview
    page.fill("#q", "")
    page.set_input_files("#file", str(home / "media" / "rain" / "sky.png"))
    page.wait_for_function("() => document.querySelector('#summary').textContent.includes('sky')")
    assert "sky.png" in cards(page).first.locator("h2").inner_text()
    assert page.is_visible("#query-file")
    page.wait_for_function("() => document.querySelector('#query-preview img').naturalWidth > 0")
    more = cards(page).first.locator("button.like")
    assert more.get_attribute("aria-label") == "More like the picture of sky.png"
    more.click()  # "more like this": like=ITEM_ID
    page.wait_for_function(
        "() => document.querySelector('#summary').textContent"
        ".includes('like sky.png (the picture)')"
    )
    assert "sky.png" not in page.inner_text("#results")  # more like it, not itself
    page.click("#clear-file")
    assert page.is_hidden("#query-file")

    # a file dropped on the drop zone is the query
    page.select_option("#target", "audio")
    bark = home / "media" / "dogs" / "bark.wav"
    dropped = page.evaluate_handle(
        """([data, name]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "audio/wav" }));
            return transfer;
        }""",
        [base64.b64encode(bark.read_bytes()).decode(), bark.name],
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    page.wait_for_function("() => document.querySelector('#summary').textContent.includes('bark')")
    assert "bark.wav" in cards(page).first.locator("h2").inner_text()
    assert page.locator("#query-preview audio").count() == 1
    page.click("#clear-file")
    # and from the keyboard, Enter on the drop zone opens the file picker
    page.evaluate(
        "() => document.querySelector('#file').addEventListener('click', (e) => {"
        " e.preventDefault(); window.pickerOpened = true; })"
    )
    page.focus("#drop")
    page.keyboard.press("Enter")
    assert page.evaluate("() => window.pickerOpened === true")

    # an error from the API is shown as its one line
    page.click(".filters > summary")
    page.click("#advanced summary")
    page.fill("#where", "nonsense((")
    search(page, "rain", "audio")
    assert page.is_visible("#error") and "where: bad filter" in page.inner_text("#error")
    assert cards(page).count() == 0
    page.fill("#where", "")
    search(page, "rain", "audio")
    assert page.is_hidden("#error") and cards(page).count() == 5

    assert problems == [], problems
    assert failed and all("nonsense" in url for url in failed), failed  # only the bad where
    page.close()

    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(shot) as image:
        image.verify()
    with Image.open(shot) as image:
        assert image.width >= 1280 and image.height >= 900


@pytest.mark.timeout(90)
def test_facets_filter_and_an_empty_result_says_why(server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems, _ = watch(page)
    page.goto(server)
    page.wait_for_selector("body[data-ready='true']")
    page.click(".filters > summary")
    page.check("input[name='kind'][value='video']")
    search(page, "sunset", "all")
    kinds = {cards(page).nth(i).get_attribute("data-kind") for i in range(cards(page).count())}
    assert kinds == {"video"}
    assert "kind=video" in page.url and "1 on" in page.inner_text("#filter-count")
    page.select_option("#folder", "media/dogs")
    search(page, "sunset", "all")
    assert cards(page).count() == 1 and "walk.mp4" in cards(page).first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "web-filters.png"))
    page.fill("#min-score", "1000")
    search(page, "sunset", "all")
    assert cards(page).count() == 0
    assert "min score 1000 left out 1 result (the best" in page.inner_text("#summary")
    page.click("#clear-filters")
    page.wait_for_function(settled)
    assert cards(page).count() > 1 and "kind=" not in page.url
    assert problems == [], problems
    page.close()


@pytest.mark.timeout(90)
def test_on_a_phone_the_results_start_on_the_first_screen(server, browser):
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    problems, _ = watch(page)
    page.goto(server)
    page.wait_for_selector("body[data-ready='true']")
    search(page, "rain", "audio")
    pictures_loaded(page)
    top = cards(page).first.bounding_box()
    assert top is not None and top["y"] + top["height"] / 2 < 844  # half a card at least
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # no sideways
    page.screenshot(path=str(ARTIFACTS / "web-mobile.png"))
    cards(page).first.locator("button.open").click()
    assert page.locator("#detail").is_visible()
    box = page.locator("#detail").bounding_box()
    assert box is not None and box["width"] <= 390
    page.screenshot(path=str(ARTIFACTS / "web-mobile-detail.png"))
    assert problems == [], problems
    page.close()


settled = "() => !document.querySelector('#results').hasAttribute('aria-busy')"


@pytest.mark.timeout(60)
def test_the_search_is_in_the_address(server, browser):
    """A search can be bookmarked and reloaded, and Back returns to the previous one."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.set_default_timeout(20_000)
    page.goto(server + "?text=rain&target=audio&k=5")
    page.wait_for_selector("body[data-ready='true']")
    page.wait_for_function("() => document.querySelectorAll('#results .card').length > 0")
    page.wait_for_function(settled)
    assert [page.input_value(s) for s in ("#q", "#target", "#k")] == ["rain", "audio", "5"]
    bookmarked = page.url
    search(page, "dog", "image")
    assert "text=dog" in page.url and "target=image" in page.url
    page.go_back()
    page.wait_for_function("() => document.querySelector('#q').value === 'rain'")
    page.wait_for_function(settled)
    assert page.url == bookmarked and page.input_value("#target") == "audio"
    assert cards(page).count() > 0  # the earlier results, searched again
    assert problems == [], problems
    page.close()
