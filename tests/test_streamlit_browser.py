"""End to end: ``streamlit run`` on 127.0.0.1, the page in headless Chromium (Debian's), a real
upload through the browser, the overlay waited for, screenshots kept in the test's folder: the
page, the panel choice with one panel enlarged, the probability colour bar with a hover readout,
and the 3-D view of a volume with one lesion selected."""

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
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
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
                "--enable-unsafe-swiftshader",  # WebGL in software (no GPU): plotly's 3-D view
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1600,1250"]:
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


LGG = REPO.parent / "shared" / "data"


def lgg_or_sample(tmp_path: Path) -> Path:
    """A real LGG FLAIR slice with a tumour where ../shared/data is present, else the synthetic sample."""
    patient = LGG / "lgg_kaggle3m_sample" / "kaggle_3m" / "TCGA_DU_7014_19860618"
    if patient.is_dir():
        from metaseg_viewer.io import read_scan

        mask = max(patient.glob("*_mask.tif"), key=lambda p: (read_scan(p, color="gray").pixels > 0).sum())
        return mask.with_name(mask.name.replace("_mask", ""))
    path = tmp_path / "sample_slice.png"
    buffer = io.BytesIO()
    Image.fromarray(make_slice(256, seed=0).image).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def shoot(browser, path: Path, top: str = "") -> Path:
    """A screenshot with the first element matching the CSS selector ``top`` at the window's top."""
    if top:
        browser.execute_script("arguments[0].scrollIntoView(true);", browser.find_element(By.CSS_SELECTOR, top))
    time.sleep(1.5)  # let plotly and the images finish painting
    assert browser.save_screenshot(str(path))
    pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    assert pixels.std() > 20  # a drawn page, not a blank one
    print(f"screenshot: {path}")
    return path


def charts(driver) -> list:
    return driver.find_elements(By.CSS_SELECTOR, "[data-testid='stPlotlyChart'] .js-plotly-plot")


def chart_titles(driver) -> list[str]:
    # read in one script: the page redraws while it is polled
    return driver.execute_script("return [...document.querySelectorAll(\"[data-testid='stPlotlyChart'] .gtitle\")]"
                                 ".map(e => e.textContent)")


def choose(driver, wait: WebDriverWait, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    box = next(e for e in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stSelectbox']") if label in e.text)
    box.find_element(By.CSS_SELECTOR, "input[role='combobox']").click()
    options = wait.until(lambda d: [o for o in d.find_elements(By.CSS_SELECTOR, "[role='option']") if o.text == option])
    options[0].click()


def test_upload_in_the_browser_shows_the_overlay(streamlit_url: str, browser, tmp_path: Path) -> None:
    image = lgg_or_sample(tmp_path)
    browser.get(streamlit_url)
    wait = WebDriverWait(browser, 300, poll_frequency=0.5)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "input[type='file']"))
    upload.send_keys(str(image))
    # The overlay panel carries the title "Segmentation"; wait until it and the other panels are drawn.
    wait.until(lambda d: "Segmentation" in chart_titles(d) and len(charts(d)) >= 4)
    page = browser.find_element(By.TAG_NAME, "body").text
    assert image.name in page and "lesion" in page and "Traceback" not in page
    assert "lower-grade glioma" in page  # what the models were trained on is said on the page
    shot = shoot(browser, tmp_path / "streamlit_page.png")
    assert Image.open(shot).height >= 1000


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


def test_panels_can_be_picked_enlarged_and_hovered_in_the_browser(streamlit_url: str, browser, tmp_path: Path) -> None:
    image = lgg_or_sample(tmp_path)
    mask = image.with_name(image.stem + "_mask" + image.suffix)
    browser.get(streamlit_url)
    wait = WebDriverWait(browser, 300, poll_frequency=0.5)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "input[type='file']"))
    upload.send_keys("\n".join(str(p) for p in (image, mask) if p.exists()))
    wait.until(lambda d: len(charts(d)) >= 4 and "Lesion probability" in chart_titles(d))
    assert browser.find_elements(By.CSS_SELECTOR, ".colorbar")  # the probability map's colour bar
    controls = "[data-testid='stButtonGroup']"  # the panel choice
    shoot(browser, tmp_path / "streamlit_panels.png", top=controls)
    # Hover the probability map at the lesion: row, column, intensity, probability, mask values
    probability = next(c for c in charts(browser) if "Lesion probability" in c.text)
    area = probability.find_element(By.CSS_SELECTOR, ".nsewdrag")
    ActionChains(browser).move_to_element_with_offset(area, -area.size["width"] // 8, 0).perform()  # the tumour
    label = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".hoverlayer .hovertext"))[0]
    assert "intensity" in label.text and "probability" in label.text
    shoot(browser, tmp_path / "streamlit_hover.png", top=controls)
    # Only the probability map and the segmentation, then the segmentation large and zoomed
    for name in ("Input", "Network input", "Errors"):  # each click reruns the page: find the pills anew
        pills = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stButtonGroup'] button")
        next(p for p in pills if p.text == name).click()
        wait.until(lambda d, name=name: not [t for t in chart_titles(d) if t.startswith(name)])
    wait.until(lambda d: chart_titles(d) == ["Lesion probability", "Segmentation"])
    shoot(browser, tmp_path / "streamlit_two_panels.png", top=controls)
    choose(browser, wait, "Large view", "Segmentation")
    wait.until(lambda d: chart_titles(d) == ["Segmentation"])
    assert charts(browser)[0].size["width"] > 1000  # the page's full width
    shoot(browser, tmp_path / "streamlit_large.png", top=controls)
    browser.execute_script("arguments[0].focus();", browser.find_element(By.CSS_SELECTOR, ".st-key-zoom input"))
    ActionChains(browser).send_keys(Keys.RIGHT, Keys.RIGHT).perform()  # zoom 1x -> 4x, by keyboard
    wait.until(lambda d: "4×" in d.find_element(By.TAG_NAME, "body").text and chart_titles(d) == ["Segmentation"])
    shoot(browser, tmp_path / "streamlit_large_zoom4.png", top=controls)
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "Traceback" not in page


def lgg_volume(tmp_path: Path) -> tuple[Path, Path]:
    """One LGG patient's FLAIR slices as a NIfTI volume with its mask beside it. The PNGs carry no
    spacing: 1 mm in-plane and 3 mm between slices are assumed (for the drawing only)."""
    from metaseg_viewer.io import read_scan, write_nifti
    from metaseg_viewer.scan import Scan

    patient = LGG / "lgg_flair" / "TCGA_HT_7882_19970125"  # the one patient with two large lesions
    if not patient.is_dir():
        pytest.skip("../shared/data/lgg_flair is absent")
    number = lambda p: int(p.stem.rsplit("_", 1)[1])  # noqa: E731
    images = sorted((patient / "images").glob("*.png"), key=number)
    stack = [read_scan(p).pixels[0] for p in images]
    masks = [read_scan(patient / "masks" / p.name).pixels[0] > 0 for p in images]
    geometry = Scan(pixels=np.stack(stack), spacing=(3.0, 1.0, 1.0), is_volume=True)
    volume, truth = tmp_path / "TCGA_HT_7882_flair.nii.gz", tmp_path / "TCGA_HT_7882_flair_mask.nii.gz"
    write_nifti(np.stack(stack), geometry, volume)
    write_nifti(np.stack(masks).astype(np.uint8), geometry, truth)
    return volume, truth


def test_the_3d_view_of_a_volume_in_the_browser(streamlit_url: str, browser, tmp_path: Path) -> None:
    volume, truth = lgg_volume(tmp_path)
    browser.get(streamlit_url)
    wait = WebDriverWait(browser, 400, poll_frequency=0.5)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "input[type='file']"))
    upload.send_keys(f"{volume}\n{truth}")
    wait.until(lambda d: "Lesion probability" in chart_titles(d))
    shoot(browser, tmp_path / "streamlit_volume_slices.png", top=".st-key-view")
    radio = wait.until(lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, "[data-testid='stRadio'] label")
                                  if e.text == "3-D view"])
    radio[0].click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-testid='stPlotlyChart'] .gl-container canvas"))
    table = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "[data-testid='stDataFrame']"))
    shoot(browser, tmp_path / "streamlit_3d.png", top=".st-key-view")
    # Select the table's second row (its row marker, left of its first cell): lesion 2 stays, others fade
    ActionChains(browser).move_to_element_with_offset(table, -table.size["width"] // 2 + 12,
                                                      -table.size["height"] // 2 + 35 + 35 + 17).click().perform()
    script = "return document.querySelector('.st-key-volume_3d .js-plotly-plot').data.map(t => t.opacity)"
    wait.until(lambda d: d.execute_script(script)[1:] == [0.15, 1])  # head, lesion 1 faded, lesion 2 selected
    shoot(browser, tmp_path / "streamlit_3d_selected.png", top=".st-key-view")
    assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text
