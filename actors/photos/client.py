"""The embeddings API behind one interface, in two wire formats, its replies treated as hostile.

* ``azure``: Azure AI Vision's multimodal embeddings, ``POST {endpoint}/computervision/
  retrieval:vectorizeImage?api-version=2024-02-01&model-version=2023-04-15``, the image's bytes
  as ``application/octet-stream``, the key in ``Ocp-Apim-Subscription-Key``; the reply is
  ``{"modelVersion": "...", "vector": [...]}``, an error ``{"error": {"code", "message",
  "innererror": {"code", "message"}}}`` (the image refusals' codes, e.g. ``InvalidImageFormat``,
  ``InvalidImageSize``, are the inner ones).
* ``openai``: the OpenAI-compatible ``POST {base}/v1/embeddings`` of self-hosted servers: ``{"model",
  "input": ["data:<type>;base64,<bytes>"], "modality": "image", "encoding_format": "float"}``
  (the image as a base64 data URL in ``input``, as Infinity and most OpenAI-compatible image
  embedders take it; ``modality`` tells Infinity it is an image and is ignored elsewhere);
  the reply ``{"data": [{"embedding": [...], "index": 0}], "model": "..."}``.

What the API answers is classified here, once: a refused image (400/413/415/422) fails for good
with the API's own reason; 429 waits as its Retry-After says; 5xx, timeouts and a broken reply
(not JSON, too large, a vector of the wrong length, NaN, infinities, non-numbers, another model)
are transient, count against the breaker and are never stored. A refused request (401/403: the
key; 404, or Azure naming a cause other than the image: the URL, model or API version) is not the
photo's fault: it is transient too, naming the settings to fix, so the breaker opens and no photo
fails for it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from actors.photos.settings import PhotosSettings
from actors.photos.vectors import BadVector, checked_vector
from backlane import PermanentError, TransientError
from backlane.clients.http import shared_client
from backlane.errors import classify, classify_response

#: Statuses that refuse the image itself: it fails for good with the API's reason.
REFUSED_STATUSES = frozenset({400, 413, 415, 422})
#: Read at most this many bytes of a reply beyond what the expected vector needs (its JSON text).
REPLY_SLACK_BYTES = 64 * 1024
#: Bytes a vector's value takes in JSON at most, generously ("-1.2345678901234567e-05, ").
BYTES_PER_VALUE = 32


class ImageRefused(PermanentError):
    """The embeddings API refused the image (unsupported format, too large, too small)."""

    kind = "image_refused"


class BadReply(TransientError):
    """The embeddings API answered something that is not a usable vector; nothing is stored."""

    kind = "bad_reply"


class Misconfigured(TransientError):
    """The embeddings API refused the request, not the image (a wrong key, URL, model or API
    version): settings to fix, not the photo's fault, so it opens the breaker and fails no photo."""

    kind = "embeddings_setup"


class KeyRefused(Misconfigured):
    """The embeddings API refused our key (401/403)."""

    kind = "key_refused"


@dataclass(frozen=True)
class Embedding:
    vector: list[float]
    model_version: str


class EmbeddingsClient(Protocol):
    def embed(self, image: bytes, content_type: str) -> Embedding:
        """The image's vector, checked; raises a classified error."""
        ...


def client_for(config: PhotosSettings, section: str) -> EmbeddingsClient:
    """The client the section's ``provider`` names (``section`` names it in errors)."""
    if config.provider == "openai":
        return OpenAICompatibleEmbeddings(config, section)
    return AzureVisionEmbeddings(config, section)


class _Base:
    path = ""

    def __init__(self, config: PhotosSettings, section: str) -> None:
        self.config = config
        self.section = section
        self._http = shared_client(config.base_url, timeout=config.timeout)
        self._limit = config.dimensions * BYTES_PER_VALUE + REPLY_SLACK_BYTES

    def _post(self, **kwargs: Any) -> Any:
        """POST to the API; the decoded JSON of a 2xx reply, or a classified error."""
        try:
            with self._http.stream("POST", self.path, **kwargs) as response:
                body = self._read_bounded(response)
        except httpx.HTTPError as exc:
            raise classify(exc) from exc
        self._raise_for(response, body)
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BadReply(f"{self._what()} answered {response.status_code} with a body that is not JSON") from None

    def _read_bounded(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self._limit:
                raise BadReply(
                    f"{self._what()} answered more than {self._limit} bytes for one "
                    f"{self.config.dimensions}-value vector; refused unread"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _raise_for(self, response: httpx.Response, body: bytes) -> None:
        status = response.status_code
        if status < 400:
            return
        code, detail = _error_detail(body)
        settings = f"BACKLANE_{self.section.upper()}__"
        if status in (401, 403):
            raise KeyRefused(
                f"{self._what()} refused the key ({status}{detail}): check {settings}API_KEY and __BASE_URL"
            )
        if status == 404 or (status in REFUSED_STATUSES and not self._refuses_image(status, code)):
            raise Misconfigured(
                f"{self._what()} refused the request ({status}{detail}): check {settings}BASE_URL, "
                f"__PROVIDER, __MODEL_VERSION and __API_VERSION"
            )
        if status in REFUSED_STATUSES:
            raise ImageRefused(f"{self._what()} refused the image ({status}{detail})")
        # A body read by us, shown by backlane's classification (429 and Retry-After included).
        error = classify_response(
            httpx.Response(status, headers=response.headers, content=body[:2000], request=response.request)
        )
        if error is not None:
            raise error

    def _refuses_image(self, status: int, code: str | None) -> bool:
        """Whether a 4xx refuses the image (else the request: our settings). Only the image varies
        between two requests, so any refusal is the image's unless the API names another cause."""
        return True

    def _what(self) -> str:
        return f"embeddings API {self.config.base_url}{self.path}"

    def _vector(self, values: Any) -> list[float]:
        try:
            return checked_vector(values, self.config.dimensions)
        except BadVector as exc:
            raise BadReply(
                f"{self._what()} answered an unusable vector: {exc} "
                f"(BACKLANE_{self.section.upper()}__DIMENSIONS is {self.config.dimensions})"
            ) from None

    def _model(self, answered: Any) -> str:
        expected = self.config.model_version
        if not isinstance(answered, str) or not answered:
            raise BadReply(f"{self._what()} answered no model version")
        if answered != expected:
            raise BadReply(
                f"{self._what()} answered a vector of model {answered[:100]!r}, not "
                f"{expected!r} (BACKLANE_{self.section.upper()}__MODEL_VERSION): not stored"
            )
        return answered


class AzureVisionEmbeddings(_Base):
    """Azure AI Vision's ``retrieval:vectorizeImage`` (multimodal embeddings, version 4.0)."""

    path = "/computervision/retrieval:vectorizeImage"

    def _refuses_image(self, status: int, code: str | None) -> bool:
        """Azure names its cause: ``InvalidImageFormat``, ``InvalidImageSize``, ... refuse the image;
        another code (an unsupported model or API version) refuses our request; none: the image."""
        return status in (413, 415) or code is None or "image" in code.lower()

    def embed(self, image: bytes, content_type: str) -> Embedding:
        headers = {"Content-Type": "application/octet-stream"}
        if self.config.api_key is not None:
            headers["Ocp-Apim-Subscription-Key"] = self.config.api_key.get_secret_value()
        params = {"api-version": self.config.api_version, "model-version": self.config.model_version}
        data = self._post(content=image, headers=headers, params=params)
        if not isinstance(data, dict):
            raise BadReply(f"{self._what()} answered a {type(data).__name__}, not an object")
        return Embedding(self._vector(data.get("vector")), self._model(data.get("modelVersion")))


class OpenAICompatibleEmbeddings(_Base):
    """``/v1/embeddings`` as OpenAI-compatible servers take images: a base64 data URL in ``input``."""

    path = "/v1/embeddings"

    def embed(self, image: bytes, content_type: str) -> Embedding:
        headers = {}
        if self.config.api_key is not None:
            headers["Authorization"] = f"Bearer {self.config.api_key.get_secret_value()}"
        url = f"data:{_media_type(content_type)};base64,{base64.b64encode(image).decode('ascii')}"
        body = {"model": self.config.model_version, "input": [url], "modality": "image", "encoding_format": "float"}
        data = self._post(json=body, headers=headers)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
            raise BadReply(f"{self._what()} answered no single embedding in 'data'")
        if items[0].get("index", 0) != 0:
            raise BadReply(f"{self._what()} answered the embedding of input {items[0].get('index')!r}, not 0")
        return Embedding(self._vector(items[0].get("embedding")), self._model(data.get("model")))


def _media_type(content_type: str) -> str:
    """A media type safe inside a data URL (``image/png``); anything odd is sent as octet-stream."""
    kind = content_type.strip().lower()
    main, _, sub = kind.partition("/")
    ok = main == "image" and sub and all(c.isalnum() or c in "+.-" for c in sub) and len(kind) <= 100
    return kind if ok else "application/octet-stream"


def _error_detail(body: bytes) -> tuple[str | None, str]:
    """(the error's code, ``": CODE: message"``) from an ``{"error": {...}}`` body (the inner
    error's code when there is one: Azure's InvalidImageFormat sits in ``innererror``), else
    (None, the start of the body); one line whatever the body holds."""
    try:
        parsed = json.loads(body[:4000]) if body else None
    except (ValueError, UnicodeDecodeError):
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        inner = error.get("innererror")
        source = inner if isinstance(inner, dict) and inner.get("code") else error
        code, message = source.get("code"), source.get("message") or error.get("message")
        parts = [_one_line(p) for p in (code, message) if isinstance(p, str | int) and str(p)]
        return (_one_line(code) if isinstance(code, str | int) else None), (": " + ": ".join(parts) if parts else "")
    if isinstance(error, str):
        return None, f": {_one_line(error)}"
    text = _one_line(body[:200].decode("utf-8", "replace"))
    return None, (f": {text}" if text else "")


def _one_line(value: object, limit: int = 200) -> str:
    """``value`` as one line of printable text, at most ``limit`` characters."""
    text = "".join(c if c.isprintable() else " " for c in str(value))
    return " ".join(text.split())[:limit]
