"""Simulated embeddings APIs (service "embeddings"): Azure AI Vision's vectorizeImage and the
OpenAI-compatible /v1/embeddings, with deterministic vectors.

* ``POST /computervision/retrieval:vectorizeImage?api-version=...&model-version=...``: the image's
  bytes as the body; ``{"modelVersion", "vector"}``, errors ``{"error": {"code", "message",
  "innererror": {"code", "message"}}}`` as Azure writes them.
* ``POST /v1/embeddings``: ``{"model", "input": ["data:image/png;base64,..."]}``;
  ``{"data": [{"embedding", "index": 0}], "model"}``.

The same bytes always give the same vector (seeded by their SHA-256). An 8-bit RGB PNG (what
:func:`devtools.sample.png_image` writes) is also read for its mean colour, which sets most of
the vector's direction: images of one colour family are near neighbours, others are not.
Refusals are Azure's: bytes that are no known image format (``InvalidImageFormat``), an image
larger than ``max_image_bytes`` (``InvalidImageSize``). Knobs (``POST /_admin/embeddings``):
``burst_429`` (the next N calls answer 429 with ``Retry-After: retry_after``), ``dimensions``,
``model_version``, ``max_image_bytes``, ``key`` (the only key accepted; null: any), ``hostile``
(answer a broken vector: ``nan``, ``wrong_dim``, ``strings``, ``huge``, ``zeros``; or
``other_model``: a vector of another model than asked for). The shared
knobs (latency, failure rate, outages) apply as to every service. Stats count, per image, the
vectors served, so a test proves each image was vectorized exactly once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import re
import struct
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from devtools.simulator.server import HttpError, Reply, json_object, register_admin_route, register_route
from devtools.simulator.state import SimulatorState, register_service_state

#: Formats Azure's multimodal embeddings take, by their first bytes.
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
_HOSTILE = ("nan", "wrong_dim", "strings", "huge", "zeros", "other_model")


@dataclass
class EmbeddingsState:
    dimensions: int = 1024
    model_version: str = "2023-04-15"
    max_image_bytes: int = 20 * 1024 * 1024
    burst_429: int = 0
    retry_after: int = 1
    key: str | None = None
    hostile: str | None = None
    #: Vectors served per image (SHA-256 of its bytes).
    served: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    rate_limited: int = 0
    calls: int = 0

    def stats(self) -> dict[str, Any]:
        histogram = Counter(self.served.values())
        return {
            "calls": self.calls,
            "images": len(self.served),
            "vectors": sum(self.served.values()),
            #: How many images were vectorized n times, by n: {"1": 1000} is exactly once each.
            "served_per_image": {str(n): count for n, count in sorted(histogram.items())},
            "refused": self.refused,
            "rate_limited": self.rate_limited,
            "knobs": {
                "dimensions": self.dimensions,
                "model_version": self.model_version,
                "max_image_bytes": self.max_image_bytes,
                "burst_429": self.burst_429,
                "retry_after": self.retry_after,
                "hostile": self.hostile,
                "key": "set" if self.key else None,
            },
        }


register_service_state("embeddings", EmbeddingsState)


def image_digest(image: bytes) -> str:
    return hashlib.sha256(image).hexdigest()


def mean_colour(image: bytes) -> tuple[float, float, float] | None:
    """The mean (r, g, b) in [0, 1] of an 8-bit RGB, non-interlaced PNG whose rows are unfiltered;
    None for anything else (its vector is then its hash's alone)."""
    if not image.startswith(_MAGIC[0]):
        return None
    pos, idat, header = 8, b"", None
    try:
        while pos + 8 <= len(image):
            length, kind = struct.unpack(">I4s", image[pos : pos + 8])
            chunk = image[pos + 8 : pos + 8 + length]
            pos += 12 + length
            if kind == b"IHDR":
                header = struct.unpack(">IIBBBBB", chunk)
            elif kind == b"IDAT":
                idat += chunk
            elif kind == b"IEND":
                break
        if header is None or header[2:5] != (8, 2, 0) or header[6] != 0 or header[0] * header[1] > 4096:
            return None
        width, height = header[0], header[1]
        raw = zlib.decompressobj().decompress(idat, (3 * width + 1) * height)
    except (struct.error, zlib.error):
        return None
    stride = 3 * width + 1
    if len(raw) < stride * height or any(raw[row * stride] != 0 for row in range(height)):
        return None
    sums = [0, 0, 0]
    for row in range(height):
        line = raw[row * stride + 1 : (row + 1) * stride]
        for channel in range(3):
            sums[channel] += sum(line[channel::3])
    pixels = width * height * 255
    return sums[0] / pixels, sums[1] / pixels, sums[2] / pixels


_projections: dict[int, list[tuple[float, float, float, float]]] = {}


def _projection(dimensions: int) -> list[tuple[float, float, float, float]]:
    """A fixed random map of (r, g, b, 1) to ``dimensions`` values (the same in every process)."""
    found = _projections.get(dimensions)
    if found is None:
        rng = random.Random(f"projection-{dimensions}")
        found = _projections[dimensions] = [tuple(rng.gauss(0, 1) for _ in range(4)) for _ in range(dimensions)]  # type: ignore[misc]
    return found


def vector_for(image: bytes, dimensions: int) -> list[float]:
    """The image's unit vector: its colour's direction plus a little of its own hash's noise."""
    rng = random.Random(image_digest(image))
    noise = [rng.gauss(0, 1) for _ in range(dimensions)]
    colour = mean_colour(image)
    if colour is None:
        values = noise
    else:
        r, g, b = (2 * c - 1 for c in colour)
        values = [
            4 * (pr * r + pg * g + pb * b + p1 * 0.5) + 0.3 * n
            for (pr, pg, pb, p1), n in zip(_projection(dimensions), noise, strict=True)
        ]
    length = sum(v * v for v in values) ** 0.5 or 1.0
    return [round(v / length, 7) for v in values]


def _azure_error(status: int, code: str, message: str, inner: str | None = None) -> HttpError:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner is not None:
        error["innererror"] = {"code": inner, "message": message}
    return HttpError(status, {"error": error})


def _serve(
    state: SimulatorState, image: bytes, headers: Any, key_header: str, requested: Any, unknown_model: HttpError
) -> tuple[list[Any], str, Reply | None]:
    """The vector for ``image`` by the ``requested`` model (or a refusal raised as HttpError,
    ``unknown_model`` for a model it does not serve, or a 429 reply), counted."""
    with state.lock:
        store: EmbeddingsState = state.service("embeddings")
        store.calls += 1
        if store.key is not None:
            given = headers.get(key_header) or ""
            if given.removeprefix("Bearer ") != store.key:
                raise _azure_error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint.")
        if store.burst_429 > 0:
            store.burst_429 -= 1
            store.rate_limited += 1
            wait = store.retry_after
            body = {"error": {"code": "429", "message": f"Rate limit is exceeded. Try again in {wait} seconds."}}
            return [], "", (429, body, {"Retry-After": str(wait)})
        if len(image) > store.max_image_bytes:
            store.refused += 1
            raise _azure_error(
                400,
                "InvalidRequest",
                f"The image size is not allowed to exceed {store.max_image_bytes} bytes.",
                "InvalidImageSize",
            )
        if not image.startswith(_MAGIC) and not (image[:4] == b"RIFF" and image[8:12] == b"WEBP"):
            store.refused += 1
            raise _azure_error(400, "InvalidRequest", "Input data is not a valid image.", "InvalidImageFormat")
        if requested not in (None, "", store.model_version):
            raise unknown_model
        dimensions, model, hostile = store.dimensions, store.model_version, store.hostile
        store.served[image_digest(image)] += 1
    vector: list[Any] = vector_for(image, dimensions)
    if hostile == "nan":
        vector[len(vector) // 2] = float("nan")
    elif hostile == "wrong_dim":
        vector = vector[:-1]
    elif hostile == "strings":
        vector = [str(v) for v in vector]
    elif hostile == "huge":
        vector = vector * 200
    elif hostile == "zeros":
        vector = [0.0] * dimensions
    elif hostile == "other_model":
        model = "1999-01-01"
    return vector, model, None


def vectorize_image(
    state: SimulatorState, match: re.Match[str], body: bytes, headers: Any, query: dict[str, str]
) -> Reply:
    """Azure AI Vision's retrieval:vectorizeImage: the image as the body (a JSON {"url"} is
    refused: the simulator fetches nothing)."""
    if not query.get("api-version"):
        raise _azure_error(400, "InvalidRequest", "The api-version query parameter is required.")
    content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        raise _azure_error(400, "InvalidRequest", "The simulator fetches no image URLs: send the bytes.")
    requested = query.get("model-version")
    unknown = _azure_error(400, "InvalidRequest", f"Model version {requested} is not supported.", "InvalidModelVersion")
    vector, model, early = _serve(state, body, headers, "Ocp-Apim-Subscription-Key", requested, unknown)
    if early is not None:
        return early
    return 200, {"modelVersion": model, "vector": vector}, {}


_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.DOTALL)


def openai_embeddings(
    state: SimulatorState, match: re.Match[str], body: bytes, headers: Any, query: dict[str, str]
) -> Reply:
    """OpenAI-compatible /v1/embeddings with one image as a base64 data URL in ``input``."""
    request = json_object(body)
    items = request.get("input")
    item = items[0] if isinstance(items, list) and len(items) == 1 else items
    found = _DATA_URL.fullmatch(item) if isinstance(item, str) else None
    if found is None:
        raise HttpError(
            400,
            {
                "error": {
                    "message": "input must be one image as a base64 data URL",
                    "type": "invalid_request_error",
                    "code": "invalid_input",
                }
            },
        )
    try:
        image = base64.b64decode(found.group("data"), validate=True)
    except (binascii.Error, ValueError):
        raise HttpError(
            400, {"error": {"message": "input is not valid base64", "type": "invalid_request_error"}}
        ) from None
    requested = request.get("model")
    unknown = HttpError(
        404, {"error": {"message": f"model {str(requested)[:100]!r} not found", "type": "invalid_request_error"}}
    )
    vector, model, early = _serve(state, image, headers, "Authorization", requested, unknown)
    if early is not None:
        return early
    return (
        200,
        {"object": "list", "data": [{"object": "embedding", "embedding": vector, "index": 0}], "model": model},
        {},
    )


def configure(state: SimulatorState, match: re.Match[str], body: bytes) -> Reply:
    """POST /_admin/embeddings: change this service's knobs (unknown or bad ones: 400)."""
    changes = json_object(body)
    with state.lock:
        store: EmbeddingsState = state.service("embeddings")
        for name, value in changes.items():
            if name in ("dimensions", "max_image_bytes", "burst_429", "retry_after"):
                if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "dimensions" else 0):
                    return 400, {"error": f"{name} must be a whole number"}, {}
            elif name in ("model_version", "key"):
                if not (isinstance(value, str) and value) and not (name == "key" and value is None):
                    return 400, {"error": f"{name} must be a non-empty string"}, {}
            elif name == "hostile":
                if value is not None and value not in _HOSTILE:
                    return 400, {"error": f"hostile must be null or one of {', '.join(_HOSTILE)}"}, {}
            else:
                return 400, {"error": f"unknown embeddings knob {name!r}"}, {}
            setattr(store, name, value)
        return 200, store.stats()["knobs"], {}


def configure_embeddings(state: SimulatorState, **changes: Any) -> dict[str, Any]:
    """In-process equivalent of POST /_admin/embeddings (raises ValueError on a bad knob)."""
    import json

    status, body, _ = configure(state, re.match("", ""), json.dumps(changes).encode())  # type: ignore[arg-type]
    if status != 200:
        raise ValueError(body["error"])
    return body  # type: ignore[no-any-return]


register_route(
    "POST",
    r"/computervision/retrieval:vectorizeImage",
    "embeddings",
    "embeddings",
    vectorize_image,
    name="embeddings.azure",
)
register_route("POST", r"/v1/embeddings", "embeddings", "embeddings", openai_embeddings, name="embeddings.openai")
register_admin_route("POST", r"/_admin/embeddings", configure)
