"""Headless Chromium for the UI tests: Debian's ``chromium`` driven through Debian's ``chromedriver``.

Both come from the OS packages (``scripts/install-test-services.sh``); nothing is downloaded at test time.
The driver path is given explicitly, so Selenium Manager (which would fetch a browser or a driver) never
runs. The helpers here know Airflow's pages (SimpleAuthManager's login form, the plugin iframe of an
external view) and the WaveSpeed pages' contract (``body[data-ready="1"]`` once rendered,
``[data-testid=ws-load-error]`` on failure). This module has no pytest dependency.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

T = TypeVar("T")

CHROMIUM = Path(os.environ.get("WAVESPEED_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("WAVESPEED_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
WINDOW = (1400, 1000)
INSTALL_HINT = "install them with `sudo scripts/install-test-services.sh` (Debian packages chromium, chromium-driver)"


class BrowserError(AssertionError):
    """A page did not reach the state a test waited for; the message says what the page showed instead."""


def missing_browser() -> str | None:
    """Why the browser cannot start (a missing binary), or None when both binaries are there."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not (p.is_file() and os.access(p, os.X_OK))]
    return f"{' and '.join(missing)} not found: {INSTALL_HINT}" if missing else None


def start_browser() -> WebDriver:
    """A headless Chromium (1400x1000) that records network events (see :func:`media_responses`)."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--mute-audio",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    return driver


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0, step: float = 0.2) -> T:
    """Poll ``probe`` until it returns something other than None/False; raise :class:`BrowserError` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = probe()
        except (NoSuchElementException, StaleElementReferenceException):
            result = None
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            raise BrowserError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


def log_in(driver: WebDriver, base_url: str, username: str, password: str, timeout: float = 60.0) -> None:
    """Sign in through SimpleAuthManager's real login form; return once the ``_token`` cookie is set."""
    driver.get(f"{base_url}/auth/login")
    user = wait_for("the login form", lambda: driver.find_element(By.CSS_SELECTOR, "input[name=username]"), timeout)
    user.send_keys(username)
    driver.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    def signed_in() -> bool:
        if driver.get_cookie("_token"):
            return True
        alerts = driver.find_elements(By.CSS_SELECTOR, "[role=alert]")
        if alerts and alerts[0].text.strip():
            raise BrowserError(f"the login form refused {username!r}: {alerts[0].text.strip()}")
        return False

    wait_for("the _token cookie after signing in", signed_in, timeout)


def click_tab(driver: WebDriver, route: str, label: str, timeout: float = 60.0) -> None:
    """Click the page's tab (a link) that leads to ``.../plugin/<route>``, as a user does."""

    def tab() -> Any:
        for link in driver.find_elements(By.CSS_SELECTOR, f'a[href$="/plugin/{route}"]'):
            if link.is_displayed():
                return link
        return None

    link = wait_for(f"the {label!r} tab (a link to plugin/{route})", tab, timeout)
    if label not in link.text:
        raise BrowserError(f"the tab linking to plugin/{route} reads {link.text!r}, not {label!r}")
    link.click()
    wait_for(f"the URL to end with /plugin/{route}", lambda: driver.current_url.endswith(f"/plugin/{route}"), timeout)


@contextmanager
def plugin_frame(driver: WebDriver, timeout: float = 60.0) -> Iterator[WebElement]:
    """Switch into the external view's iframe (Airflow renders exactly one); switch back on exit."""
    frame = wait_for("the plugin iframe", lambda: driver.find_element(By.CSS_SELECTOR, "iframe[src]"), timeout)
    driver.switch_to.frame(frame)
    try:
        yield frame
    finally:
        driver.switch_to.default_content()


def wait_ready(driver: WebDriver, timeout: float = 60.0) -> None:
    """Wait until the WaveSpeed page set ``body[data-ready="1"]``; fail with its load error if it showed one."""

    def ready() -> bool:
        errors = driver.find_elements(By.CSS_SELECTOR, "[data-testid=ws-load-error]")
        if errors and errors[0].text.strip():
            raise BrowserError(f"the page shows a load error: {errors[0].text.strip()}")
        return bool(driver.execute_script("return document.body && document.body.dataset.ready === '1'"))

    try:
        wait_for('body[data-ready="1"]', ready, timeout)
    except BrowserError as err:
        body = driver.execute_script("return document.body ? document.body.innerText : ''") or ""
        raise BrowserError(f"{err}; the page at {driver.current_url} reads: {body[:2000]!r}") from None


def wait_media_ready_state(driver: WebDriver, css: str, minimum: int = 2, timeout: float = 30.0) -> int:
    """Wait until the media element ``css`` reaches ``readyState >= minimum``; fail with its media error."""
    script = """
        const el = document.querySelector(arguments[0]);
        if (!el) return {missing: true};
        return {state: el.readyState, error: el.error ? el.error.code + ': ' + el.error.message : null};
    """

    def probe() -> int | None:
        found = driver.execute_script(script, css)
        if found.get("missing"):
            raise BrowserError(f"no element matches {css}")
        if found["error"]:
            raise BrowserError(f"{css} failed to load: MediaError {found['error']}")
        return int(found["state"]) if found["state"] >= minimum else None

    return wait_for(f"{css} to reach readyState >= {minimum}", probe, timeout)


def media_responses(driver: WebDriver, url_part: str) -> list[dict[str, Any]]:
    """Responses seen since the last call whose URL contains ``url_part``: ``{"status", "url", "range"}``.

    Read from Chromium's performance log (``Network.*`` events of every frame, the plugin iframe's too);
    reading it empties it.
    """
    requested_ranges: dict[str, str | None] = {}
    out: list[dict[str, Any]] = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message.get("method") == "Network.requestWillBeSent":
            headers = {k.lower(): v for k, v in params.get("request", {}).get("headers", {}).items()}
            requested_ranges[params.get("requestId", "")] = headers.get("range")
        elif message.get("method") == "Network.responseReceived":
            response = params.get("response", {})
            if url_part in response.get("url", ""):
                headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
                out.append(
                    {
                        "status": int(response.get("status", 0)),
                        "url": response["url"],
                        "range": requested_ranges.get(params.get("requestId", "")) or headers.get("content-range"),
                        "content_range": headers.get("content-range"),
                    }
                )
    return out


_OVERFLOW_SCRIPT = """
    // How many pixels the page (or the plugin iframe inside it) would need to show everything.
    let overflow = document.documentElement.scrollHeight - window.innerHeight;
    for (const f of document.querySelectorAll('iframe')) {
        try {
            const doc = f.contentDocument.documentElement;
            overflow = Math.max(overflow, doc.scrollHeight - doc.clientHeight);
        } catch (e) { /* another origin: only the outer page counts */ }
    }
    return Math.max(0, Math.ceil(overflow));
"""


def _wait_laid_out(driver: WebDriver, height: int) -> None:
    """The layout follows a new window size on the next frame: wait for that frame, not for a fixed time."""
    script = "return new Promise(r => requestAnimationFrame(() => r(window.outerHeight)))"
    wait_for(f"a frame laid out {height} px high", lambda: driver.execute_script(script) >= height - 8, 10)


def save_full_page(driver: WebDriver, path: Path, max_height: int = 5000) -> Path:
    """Screenshot the whole page: the window grows until nothing scrolls (the plugin iframe too), then shrinks back.

    Airflow's layout is as tall as the window and the plugin iframe scrolls inside it, so a plain
    screenshot would cut the view: growing the window by the overflow grows the iframe with it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        for _ in range(4):  # the layout may reflow once at the new size (e.g. a scrollbar disappears)
            overflow = int(driver.execute_script(_OVERFLOW_SCRIPT))
            size = driver.get_window_size()
            if overflow == 0 or size["height"] >= max_height:
                break
            target = min(max_height, size["height"] + overflow + 8)
            driver.set_window_size(WINDOW[0], target)
            _wait_laid_out(driver, target)
        if not driver.save_screenshot(str(path)):
            raise BrowserError(f"Chromium did not write the screenshot {path}")
    finally:
        driver.set_window_size(*WINDOW)
    return path
