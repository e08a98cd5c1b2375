"""Every hostile input of :mod:`hostile_corpus` through the server's doors (``/predict``,
``/predict/batch``, ``/evaluate``) on a real uvicorn on 127.0.0.1, plus a bounded load test.

A refused file gets a 4xx whose ``detail`` names the problem, never a 5xx; a warned one a 200
whose ``warnings`` say it; and the same keep-alive connection keeps working after each answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed (pip install -e '.[server]')")
import httpx  # noqa: E402
from hostile_corpus import CASES, Case, write_corpus  # noqa: E402

from factories import png_bytes  # noqa: E402
from live_server import serve_in_thread  # noqa: E402
from metaseg_viewer.samples import make_slice  # noqa: E402
from server.app import create_app  # noqa: E402
from server.settings import ServerSettings  # noqa: E402

LIGHT = [c for c in CASES if not c.heavy]
HEAVY = [c for c in CASES if c.heavy]
GOOD = png_bytes(make_slice(64, seed=1).image)


@contextmanager
def served(model: Path, **changes: object) -> Iterator[str]:
    with serve_in_thread(create_app(ServerSettings(models=[str(model)], torch_threads=1, **changes))) as url:
        yield url


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("api_corpus")
    write_corpus(folder, include_heavy=True)
    return folder


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path) -> Iterator[str]:
    with served(tiny_checkpoint, max_request_cost=256) as url:
        yield url


def check(case: Case, status: int, body: dict) -> None:
    """The answer a door owes ``case``: a clear 4xx, or a result with (or without) its warning."""
    assert status < 500, (case.name, status, body)
    if case.expect == "refuse" or case.heavy:
        assert 400 <= status < 500, (case.name, status, body)
        detail = body["detail"] if "detail" in body else body["error"]
        assert case.says in detail.lower() and "Traceback" not in detail, (case.name, detail)
        return
    assert status == 200, (case.name, body)
    warnings = " ".join(body["warnings"]).lower()
    assert (case.says in warnings) if case.expect == "warn" else not body["warnings"], (case.name, body["warnings"])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_predict_answers_each_case_and_the_connection_stays_usable(server: str, corpus: Path, case: Case) -> None:
    with httpx.Client(base_url=server, timeout=120) as client:
        response = client.post("/predict", params={"format": "json"},
                               files={"file": (case.name, (corpus / case.name).read_bytes())})
        check(case, response.status_code, response.json())
        assert client.post("/predict", params={"format": "json"}, files={"file": ("ok.png", GOOD)}).status_code == 200
        assert client.get("/health").status_code == 200


def test_the_heavy_case_is_refused_by_the_request_budget_with_the_numbers(server: str, corpus: Path) -> None:
    case = HEAVY[0]
    response = httpx.post(server + "/predict", files={"file": (case.name, (corpus / case.name).read_bytes())},
                          timeout=120)
    assert response.status_code == 413
    assert "500" in response.json()["detail"] and "256" in response.json()["detail"]


def test_a_batch_of_every_case_gets_one_entry_each_in_order(server: str, corpus: Path) -> None:
    files = [("files", (c.name, (corpus / c.name).read_bytes())) for c in LIGHT]
    response = httpx.post(server + "/predict/batch", files=files, timeout=300)
    assert response.status_code == 200, response.text
    entries = response.json()["results"]
    assert [e["file"] for e in entries] == [c.name for c in LIGHT]
    for case, entry in zip(LIGHT, entries):
        check(case, entry["status"], entry if not entry["ok"] else entry["result"])


@pytest.mark.parametrize("case", [c for c in LIGHT if c.expect == "refuse"], ids=lambda c: c.name)
def test_evaluate_refuses_a_bad_image_or_a_bad_mask(server: str, corpus: Path, case: Case) -> None:
    bad = (case.name, (corpus / case.name).read_bytes())
    as_image = httpx.post(server + "/evaluate", files={"file": bad, "mask": ("m.png", GOOD)}, timeout=120)
    check(case, as_image.status_code, as_image.json())
    as_mask = httpx.post(server + "/evaluate", files={"file": ("ok.png", GOOD), "mask": bad}, timeout=120)
    assert 400 <= as_mask.status_code < 500 and "Traceback" not in as_mask.text, as_mask.text


def _clients(url: str, n_clients: int, n_requests: int) -> list[int]:
    """``n_clients`` threads, each sending ``n_requests`` small slices on its own connection."""
    statuses: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as session:
            for _ in range(n_requests):
                status = session.post("/predict", files={"file": ("s.png", GOOD)}).status_code
                with lock:
                    statuses.append(status)

    threads = [threading.Thread(target=client) for _ in range(n_clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "load test did not finish in time"
    return statuses


def test_20_clients_x_5_requests_all_succeed(server: str) -> None:
    statuses = _clients(server, 20, 5)
    assert statuses == [200] * 100


def test_with_a_tiny_queue_the_only_answers_are_200_and_503(tiny_checkpoint: Path) -> None:
    with served(tiny_checkpoint, workers=1, queue_size=1) as url:
        statuses = _clients(url, 20, 5)
    assert len(statuses) == 100 and set(statuses) <= {200, 503} and 200 in statuses


def test_deidentified_mask_names_do_not_repeat_the_upload_name(tiny_checkpoint: Path) -> None:
    with served(tiny_checkpoint, deidentify_names=True) as url:
        response = httpx.post(url + "/predict", files={"file": ("DOE^JOHN_1970.png", GOOD)}, timeout=120)
    disposition = response.headers["content-disposition"]
    assert response.status_code == 200 and "scan-" in disposition and "DOE" not in disposition
