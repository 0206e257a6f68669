"""The sample page of `ganport serve` in a real headless browser (Debian's Chromium, driven by Playwright): the grid
loads, "new seed" draws another, the digit picker asks a conditional generator for that digit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from serving import MODELS, running_server

from conftest import require_or_skip

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    require_or_skip(Path(CHROMIUM).exists(), "Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # root in a container has no user namespaces for Chromium's sandbox
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


def _grid_loaded(page) -> bool:
    return page.evaluate(
        "() => { const image = document.getElementById('grid'); return image.complete && image.naturalWidth > 0; }"
    )


def test_page_draws_samples_and_new_seed_and_digit_change_them(browser, tmp_path):
    gan, cgan = tmp_path / "gan.onnx", tmp_path / "cgan.onnx"
    shutil.copy(MODELS / "mnist-gan" / "generator.onnx", gan)
    shutil.copy(MODELS / "mnist-cgan" / "generator.onnx", cgan)
    with running_server(gan, cgan) as server:
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.goto(server.url + "/")
        page.wait_for_function("() => document.getElementById('grid').complete")
        assert _grid_loaded(page)
        first = page.get_attribute("#grid", "src")
        assert first.startswith("/v2/models/gan/sample.png?n=16&seed=0")
        assert not page.is_visible("#digit")  # unconditional: no digit picker

        page.click("#new-seed")
        page.wait_for_function(f"() => document.getElementById('grid').src.indexOf({first!r}) < 0")
        page.wait_for_function("() => document.getElementById('grid').complete")
        assert _grid_loaded(page) and "seed=0" not in page.get_attribute("#grid", "src")

        page.select_option("#model", "cgan")
        assert page.is_visible("#digit")
        page.select_option("#digit", "7")
        page.wait_for_function("() => document.getElementById('grid').src.includes('label=7')")
        page.wait_for_function("() => document.getElementById('grid').complete")
        assert _grid_loaded(page)
        assert page.get_attribute("#grid", "src").startswith("/v2/models/cgan/sample.png")
        page.screenshot(path=str(tmp_path / "serve-page.png"), full_page=True)  # to look at: pytest --basetemp
        assert errors == []
