"""Where the network runs: in this process (the core's Predictor) or on a MetaSeg server.

Both return the same :class:`Result`: the core's :class:`~metaseg_viewer.prediction.Prediction`
at the model card's settings, which the page re-thresholds with ``Prediction.rethreshold``, so
moving the threshold never runs a network again. The page chooses the model (the core's
``choose_model``) before either is called, so both run the model it names.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from metaseg_viewer.config import InferenceConfig, PreprocessConfig
from metaseg_viewer.encoding import decode_probabilities
from metaseg_viewer.errors import MetaSegError
from metaseg_viewer.inference import Predictor
from metaseg_viewer.prediction import Prediction
from metaseg_viewer.preprocessing import preprocess
from metaseg_viewer.registry import describe_models
from streamlit_app.cases import Case

Progress = Callable[[int, int], None]


class BackendError(Exception):
    """A problem to show the user as it is (server down, refused file, model that will not load)."""


@dataclass(frozen=True)
class Result:
    """A prediction at the card's threshold and minimum size (with the TTA asked for), the card's
    own settings, and where it ran. ``prediction.enhanced`` is the image the model's own
    preprocessing fed the network (computed here with the server's card for a remote model)."""

    prediction: Prediction
    defaults: InferenceConfig
    where: str


class LocalBackend:
    """The core library in this process; ``load`` is the page's cached model loader."""

    where = "this computer"

    def __init__(self, load: Callable[[str], Predictor], precision: str = "auto") -> None:
        self.load = load
        self.precision = precision  # as asked (auto, fp32, bf16); the result says what ran

    def models(self) -> list[dict[str, Any]]:
        return describe_models()

    def segment(self, case: Case, model: str, tta: bool, sequence: str | None = None,
                progress: Progress | None = None) -> Result:
        """``sequence`` (what the model was chosen for) only matters to a server; here the model says it."""
        try:
            predictor = self.load(model)
            prediction = predictor.predict(case.scan, tta=tta, progress=progress)
        except MetaSegError as exc:
            raise BackendError(str(exc)) from exc
        except MemoryError:
            raise BackendError(f"Not enough memory to segment {case.label} on {self.where}.") from None
        return Result(prediction, predictor.defaults, self.where)


class RemoteBackend:
    """A MetaSeg FastAPI server (``metaseg-server``), reached over HTTP with an optional API key."""

    def __init__(self, url: str, api_key: str = "", timeout: float = 600.0) -> None:
        self.url = url.rstrip("/")
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.timeout = timeout
        self.where = self.url
        self.precision = "server"  # the server's setting (METASEG_PRECISION); each answer says what ran

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = httpx.request(method, self.url + path, headers=self.headers, timeout=self.timeout, **kwargs)
        except httpx.ConnectError as exc:
            raise BackendError(f"Cannot reach the MetaSeg server at {self.url} ({exc}). Is it running? Start it "
                               "with `metaseg-server`, check the address, or choose 'This computer'.") from exc
        except httpx.TimeoutException as exc:
            raise BackendError(f"The server at {self.url} did not answer within {self.timeout:.0f} s.") from exc
        except httpx.InvalidURL as exc:
            raise BackendError(f"{self.url!r} is not a server address; enter one like http://127.0.0.1:8000") from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"Talking to {self.url} failed: {exc}") from exc
        except UnicodeError as exc:
            raise BackendError("The API key may only contain ASCII characters.") from exc
        if response.status_code == 401:
            raise BackendError("The server needs an API key: enter it in the sidebar (it is sent as X-API-Key).")
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text[:300]
            raise BackendError(f"The server answered {response.status_code}: {detail}")
        try:
            return response.json()
        except ValueError as exc:
            raise BackendError(f"{self.url} answered, but not as a MetaSeg server (no JSON); check the address.") from exc

    def models(self) -> list[dict[str, Any]]:
        models = self._call("GET", "/models")
        if not isinstance(models, list) or not all(isinstance(m, dict) and "name" in m and "inference" in m
                                                   for m in models):
            raise BackendError(f"{self.url}/models is not a MetaSeg model list; check the address.")
        return models

    def segment(self, case: Case, model: str, tta: bool, sequence: str | None = None,
                progress: Progress | None = None) -> Result:
        """The named ``model`` on the server; ``sequence``, the one it was chosen for, goes along as
        the form field ``sequence`` so the server checks the two agree."""
        params = {"model": model, "tta": str(tta).lower(), "format": "json", "probabilities": "true"}
        form = {"sequence": sequence} if sequence else None
        start = time.perf_counter()
        body = self._call("POST", "/predict", params=params, data=form, files={"file": (case.file_name, case.data)})
        seconds = time.perf_counter() - start
        try:
            probabilities = decode_probabilities(body["probabilities"])
            card = next(m for m in self.models() if m["name"] == model)
            defaults, settings = InferenceConfig.from_dict(card["inference"]), InferenceConfig.from_dict(body["settings"])
            view = preprocess(case.scan.pixels, PreprocessConfig.from_dict(card["preprocess"])).enhanced
        except (KeyError, StopIteration, MetaSegError) as exc:
            raise BackendError(f"The server at {self.url} sent an answer this page cannot read ({exc}).") from exc
        if probabilities.shape != case.scan.shape:
            raise BackendError(f"The server read the file as {probabilities.shape}, this page as {case.scan.shape}; "
                               "are both the same MetaSeg version?")
        prediction = Prediction.from_probabilities(probabilities, settings, case.scan.is_volume, enhanced=view,
                                                   model_name=body["model"], model_version=body["model_version"],
                                                   seconds=seconds, precision=str(body.get("precision", "unknown")))
        return Result(prediction, defaults, self.where)
