"""End to end: ``streamlit run`` on 127.0.0.1, the page in headless Chromium (Debian's), a real
upload through the browser, the overlay waited for, a screenshot kept in the test's folder."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit", reason="the web extra is not installed (pip install -e '.[web]')")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from PIL import Image  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from metaseg_viewer.samples import make_slice  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="Debian chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")


@pytest.fixture()
def streamlit_url(tmp_path: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "streamlit.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app/app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/_stcore/health", timeout=2).text == "ok":
                break
        except httpx.TransportError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail("streamlit did not start: " + (tmp_path / "streamlit.log").read_text())
    yield url
    process.terminate()
    process.wait(timeout=30)
    log.close()
    assert "Traceback" not in (tmp_path / "streamlit.log").read_text()


@pytest.fixture()
def browser(tmp_path: Path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1600,1250"]:
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def lgg_or_sample(tmp_path: Path) -> Path:
    """A real LGG FLAIR slice with a tumour where ../shared/data is present, else the synthetic sample."""
    patient = REPO.parent / "shared" / "data" / "lgg_kaggle3m_sample" / "kaggle_3m" / "TCGA_DU_7014_19860618"
    if patient.is_dir():
        from metaseg_viewer.io import read_scan

        mask = max(patient.glob("*_mask.tif"), key=lambda p: (read_scan(p, color="gray").pixels > 0).sum())
        return mask.with_name(mask.name.replace("_mask", ""))
    path = tmp_path / "sample_slice.png"
    buffer = io.BytesIO()
    Image.fromarray(make_slice(256, seed=0).image).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def test_upload_in_the_browser_shows_the_overlay(streamlit_url: str, browser, tmp_path: Path) -> None:
    image = lgg_or_sample(tmp_path)
    browser.get(streamlit_url)
    wait = WebDriverWait(browser, 300, poll_frequency=0.5)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "input[type='file']"))
    upload.send_keys(str(image))
    # The overlay panel carries the caption "Segmentation"; wait until it and its picture are drawn.
    wait.until(lambda d: any(e.text == "Segmentation" for e in d.find_elements(By.CSS_SELECTOR, "[data-testid='stImageCaption']")))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-testid='stImage'] img")) >= 4)
    page = browser.find_element(By.TAG_NAME, "body").text
    assert image.name in page and "lesion" in page and "Traceback" not in page
    assert "lower-grade glioma" in page  # what the models were trained on is said on the page
    time.sleep(1.0)  # let the last images finish painting
    shot = tmp_path / "streamlit_page.png"
    assert browser.save_screenshot(str(shot))
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape[0] >= 1000 and pixels.std() > 20  # a drawn page, not a blank one
    print(f"screenshot: {shot}")


def test_console_script_serves_the_page_from_any_folder(tmp_path: Path) -> None:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(sys.executable).with_name("metaseg-web")
    process = subprocess.Popen([str(script), "--server.port", str(port)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).text == "ok":
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        else:
            pytest.fail("metaseg-web did not start")
        assert "<title>Streamlit</title>" in httpx.get(f"http://127.0.0.1:{port}/").text
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    assert "127.0.0.1" in out and "Traceback" not in out
