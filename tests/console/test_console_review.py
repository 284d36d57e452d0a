"""End to end: a live agent on the demo clip (face chips on) publishes to a real mosquitto; the console
ingests the match; a reviewer logs in through a real headless Chromium, marks the match wrong; the
signed verdict reaches the device, whose audit log then holds the exclusion, and the clip's later passes
raise no event for that subject.

The browser is Debian's `chromium` with its `chromium-driver` (.ci/run installs both), driven by
Selenium; nothing is downloaded. With EDGE_AGENT_TEST_SCREENSHOTS=<folder> the test also leaves its
screenshots of the review queue and the fleet page there (the README's come from this test)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from edge_agent.config import Settings
from edge_agent.console.service import Console
from edge_agent.service import Agent
from edge_agent.signed import load_private_key, public_key_hex
from edge_agent.vision.faces import FacePipeline
from edge_agent.vision.manifest import ModelCatalog
from edge_agent.watchlist import audit
from edge_agent.watchlist.transfer import export_bundle, import_bundle
from tests.kits.agent_kit import agent_settings, enrol_demo_people, open_watchlist, payloads
from tests.kits.broker import Broker, Subscriber
from tests.kits.console_kit import PASSWORD, console_settings, served, with_accounts

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DEVICE = "cam-a"


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = "Debian's chromium and chromium-driver are not installed (apt-get install chromium-driver)"
        if os.environ.get("CI") or os.environ.get("EDGE_AGENT_TEST_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    profile = tempfile.mkdtemp(prefix="edge-agent-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--window-size=1280,1000",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _screenshot(driver: WebDriver, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("EDGE_AGENT_TEST_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert driver.save_screenshot(str(path)), f"no screenshot at {path}"
    return path


def _queued(driver: WebDriver, event_id: str) -> WebElement | Literal[False]:
    """The event's card in the review queue, reloading the page until it is there."""
    found = driver.find_elements(By.ID, f"event-{event_id}")
    if found:
        return found[0]
    driver.refresh()
    return False


def _device_settings(folder: Path, broker: Broker, trusted: str) -> Settings:
    folder.mkdir(parents=True, exist_ok=True)
    settings = agent_settings(
        folder,
        broker,
        camera={"loop": True},
        events={"face_crop": True},
        # k of n only, each look searched: several shots vote, and the exclusion covers them all
        decision={"cooldown_s": 0.0, "operating_point": "target_fmr", "single_look_fmr": 1e-4},
    )
    watchlist = settings.watchlist.model_copy(update={"trusted_keys": [trusted]})
    return settings.model_copy(update={"device_id": DEVICE, "watchlist": watchlist})


def test_a_reviewer_marks_a_match_wrong_in_the_browser_and_the_device_stops_matching_it(
    tmp_path: Path,
    broker: Broker,
    faces: FacePipeline,
    catalog: ModelCatalog,
    browser: WebDriver,
    central_key_file: Path,
) -> None:
    key = central_key_file
    trusted = public_key_hex(load_private_key(key))
    # the master watchlist at the console, and the same subjects on the device from its signed bundle
    central = console_settings(tmp_path / "console", broker, command_key=key)
    central = central.model_copy(
        update={"watchlist": central.watchlist.model_copy(update={"signing_key": key})}
    )
    people = enrol_demo_people(central, faces)
    with open_watchlist(central, faces) as master:
        bundle, _ = export_bundle(master, key, "central", datetime.now(UTC) + timedelta(days=1))
    device = _device_settings(tmp_path / "device", broker, trusted)
    with open_watchlist(device, faces) as watchlist:
        import_bundle(watchlist, bundle, [trusted], "test")
    lin = people["lin_manuel_miranda"]

    console = with_accounts(Console.open(central, open_master=lambda: open_watchlist(central, faces)))
    events = Subscriber(broker, f"edge-agent/{DEVICE}/events/match").start()
    agent = Agent(device, catalog=catalog)
    running = threading.Thread(target=agent.run)
    running.start()
    try:
        with served(console) as url:
            first = payloads(events.wait_for(1, timeout_s=60))[0]
            assert first["subject_id"] == lin and "face_jpeg" in first
            event_id = str(first["event_id"])

            browser.get(f"{url}/")
            assert browser.current_url.endswith("/login")  # no session: the login page
            browser.find_element(By.ID, "username").send_keys("rey")
            browser.find_element(By.ID, "password").send_keys(PASSWORD)
            browser.find_element(By.ID, "login").click()
            card = WebDriverWait(browser, 20).until(
                lambda d: _queued(d, event_id), message=f"no event {event_id} in the queue"
            )
            assert "lin_manuel_miranda" in card.text
            assert "demo enrolment" in card.text  # why the subject is on the list, from the master watchlist
            votes = f"{first['frames_agreeing']} of {first['frames_seen']} looks agreed"  # as the device sent
            assert votes in card.text
            face = card.find_element(By.TAG_NAME, "img")
            assert browser.execute_script("return arguments[0].naturalWidth", face) > 0  # the device's chip
            _screenshot(browser, tmp_path, "console-queue.png")

            card.find_element(By.NAME, "comment").send_keys("a passer-by, not the subject")
            card.find_element(By.CSS_SELECTOR, "button.wrong").click()
            answer = WebDriverWait(browser, 60, poll_frequency=1.0).until(
                lambda d: (
                    "accepted" in d.find_element(By.ID, "device-answer").text
                    and d.find_element(By.ID, "device-answer").text
                )
            )
            assert "excluded from this subject" in answer
            answered_at = len(events.messages())

            browser.get(f"{url}/fleet")
            row = browser.find_element(By.ID, f"device-{DEVICE}")
            assert "online" in row.text
            _screenshot(browser, tmp_path, "console-fleet.png")

            frames = agent.runner.frames if agent.runner else 0
            deadline = time.monotonic() + 90
            while (agent.runner.frames if agent.runner else 0) < frames + 2 * 275:
                assert time.monotonic() < deadline, "the clip did not play twice more"
                time.sleep(0.2)
            later = payloads(events.messages())[answered_at:]
            assert [e for e in later if e["subject_id"] == lin] == []  # no event for him again
    finally:
        agent.stop()
        running.join(30)
        events.close()

    with open_watchlist(device, faces) as watchlist:
        [exclusion] = watchlist.exclusions(lin)
        rows = audit.rows(watchlist.conn)
    assert exclusion.event_id == event_id
    assert any(r.action == "exclusion" and r.details.get("event_id") == event_id for r in rows)
    assert any(r.action == "command" and r.details.get("command") == "review" for r in rows)
    check, console_rows = audit.verify_chain(console.db.conn), audit.rows(console.db.conn)
    assert check.ok
    [verdict] = [r for r in console_rows if r.action == "review"]
    assert verdict.actor == "rey" and verdict.details["verdict"] == "false_match"
    console.close()
