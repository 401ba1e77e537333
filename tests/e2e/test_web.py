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


def play_and_check(page, card, start: float, end: float | None) -> float:
    """Click the card's play button; the player starts at `start` and plays on."""
    media = card.locator("audio, video")
    card.locator("button.play").click()
    handle = media.element_handle()
    page.wait_for_function(
        "([m, start]) => !m.paused && m.currentTime > start + 0.05", arg=[handle, start]
    )
    now = media.evaluate("m => m.currentTime")
    assert now >= start
    if end is not None:
        assert now <= end + 0.5
    return now


@pytest.mark.timeout(120)
def test_the_page_searches_plays_and_uploads(server, browser, home):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
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
    page.goto(server)
    page.wait_for_selector("body[data-ready='true']")
    assert page.is_visible("#random-banner")  # the index was built with random weights
    assert "index media" in page.inner_text("#index-info")

    # text -> audio: every audio item, with waveform thumbnails, labels and scores
    page.fill("#k", "10")
    search(page, "a police siren", "audio")
    assert cards(page).count() == 7
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    assert "score" in cards(page).first.inner_text()
    window = page.locator("#results .card[data-modality='audio'][data-start='10']")
    assert window.count() == 1 and "storm.wav" in window.inner_text()
    assert "10.0–20.0 s" in window.inner_text()
    play_and_check(page, window, 10.0, 20.0)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "web-page.png"
    page.wait_for_timeout(1500)  # the players' loading spinners settle
    page.screenshot(path=str(shot), full_page=True)
    page.evaluate("() => document.querySelectorAll('audio, video').forEach(m => m.pause())")

    # text -> image: a video's frame plays from the frame's time
    search(page, "an orange sunset", "image")
    video = page.locator("#results .card[data-kind='video'][data-modality='image']").filter(
        has_text="sunset.mp4"
    )
    assert video.count() == 1 and "frame at 1.5 s" in video.inner_text()
    start = float(video.get_attribute("data-start"))
    play_and_check(page, video, start, None)
    page.evaluate("() => document.querySelectorAll('audio, video').forEach(m => m.pause())")

    # text -> video: one card per video, its best moment first; its other moments on a
    # timeline that each play from their time
    search(page, "an orange sunset", "video")
    sunset = cards(page).filter(has_text="sunset.mp4")
    assert sunset.count() == 1 and cards(page).count() == len(set(cards(page).all_inner_texts()))
    assert f"{cards(page).count()} results in videos" in page.inner_text("#summary")
    toggle = sunset.locator("button.moments")
    assert toggle.inner_text() == "2 moments"  # its frame and its sound
    assert sunset.locator(".timeline").is_hidden()
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true"
    marks = sunset.locator(".timeline .moment")
    assert marks.count() == 2 and marks.first.get_attribute("class") == "moment best"
    times = sorted(float(marks.nth(i).get_attribute("data-start")) for i in range(2))
    assert times == [0.0, 1.5]
    later = sunset.locator(".timeline .moment[data-start='1.5']")
    later.click()
    handle = sunset.locator("video").element_handle()
    page.wait_for_function("m => !m.paused && m.currentTime >= 1.5", arg=handle)
    page.screenshot(path=str(ARTIFACTS / "web-moments.png"), full_page=True)
    page.evaluate("() => document.querySelectorAll('audio, video').forEach(m => m.pause())")
    page.select_option("#target", "image")

    # a file as the query (the box emptied: text would be fused in): the image itself is first
    page.fill("#q", "")
    page.set_input_files("#file", str(home / "media" / "rain" / "sky.png"))
    page.wait_for_function("() => document.querySelector('#summary').textContent.includes('sky')")
    assert "sky.png" in cards(page).first.locator("h2").inner_text()
    assert page.is_visible("#query-file")
    cards(page).first.locator("button.like").click()  # "more like this": like=ITEM_ID
    page.wait_for_function(
        "() => document.querySelector('#summary').textContent.includes('like sky.png')"
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
    page.click(".filters summary")
    page.fill("#where", "nonsense((")
    search(page, "rain", "audio")
    assert page.is_visible("#error") and "where: bad filter" in page.inner_text("#error")
    assert cards(page).count() == 0
    page.fill("#where", "")
    search(page, "rain", "audio")
    assert page.is_hidden("#error") and cards(page).count() == 7

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


@pytest.mark.timeout(60)
def test_the_search_is_in_the_address(server, browser):
    """A search can be bookmarked and reloaded, and Back returns to the previous one."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.set_default_timeout(20_000)
    settled = "() => !document.querySelector('#results').hasAttribute('aria-busy')"
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
