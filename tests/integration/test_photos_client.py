"""The embeddings clients (Azure AI Vision, OpenAI-compatible) against the simulator on loopback:
good vectors, refusals, 429s, a refused key, and hostile replies that must never become a vector."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from actors.photos.client import BadReply, ImageRefused, KeyRefused, Misconfigured, client_for
from actors.photos.settings import PhotosSettings
from backlane.errors import RateLimited, TransientError
from devtools.sample import png_image
from devtools.simulator import Simulator
from devtools.simulator.embeddings import configure_embeddings

IMAGE = png_image((200, 40, 40), seed=1)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


def client(sim: Simulator, provider: str = "azure", **values: object):  # type: ignore[no-untyped-def]
    config = PhotosSettings(base_url=sim.url, provider=provider, timeout=5.0, **values)  # type: ignore[arg-type]
    return client_for(config, "product_photos")


@pytest.mark.parametrize("provider", ["azure", "openai"])
def test_both_wire_formats_give_the_images_vector_with_its_model(sim: Simulator, provider: str) -> None:
    embedding = client(sim, provider).embed(IMAGE, "image/png")

    assert len(embedding.vector) == 1024 and embedding.model_version == "2023-04-15"
    assert embedding == client(sim, provider).embed(IMAGE, "image/png"), "same bytes, same vector"
    assert embedding.vector != client(sim, provider).embed(png_image((200, 40, 40), seed=2), "image/png").vector


def test_both_wire_formats_agree(sim: Simulator) -> None:
    assert client(sim, "azure").embed(IMAGE, "image/png") == client(sim, "openai").embed(IMAGE, "image/png")


@pytest.mark.parametrize("provider", ["azure", "openai"])
def test_an_image_the_api_refuses_is_refused_for_good_with_its_reason(sim: Simulator, provider: str) -> None:
    with pytest.raises(ImageRefused, match="400: InvalidImageFormat: Input data is not a valid image"):
        client(sim, provider).embed(b"%PDF-1.4 not an image", "image/png")
    configure_embeddings(sim.state, max_image_bytes=100)
    with pytest.raises(ImageRefused, match="InvalidImageSize"):
        client(sim, provider).embed(IMAGE, "image/png")


def test_429_waits_as_the_server_says(sim: Simulator) -> None:
    configure_embeddings(sim.state, burst_429=1, retry_after=3)
    with pytest.raises(RateLimited) as raised:
        client(sim).embed(IMAGE, "image/png")
    assert raised.value.delay_seconds == 3
    assert len(client(sim).embed(IMAGE, "image/png").vector) == 1024, "the burst is over"


@pytest.mark.parametrize("provider", ["azure", "openai"])
def test_a_refused_key_is_transient_and_names_the_setting_never_the_key(sim: Simulator, provider: str) -> None:
    configure_embeddings(sim.state, key="the-right-key")
    with pytest.raises(KeyRefused) as raised:
        client(sim, provider, api_key=SecretStr("a-wrong-key")).embed(IMAGE, "image/png")
    assert isinstance(raised.value, TransientError)
    assert "BACKLANE_PRODUCT_PHOTOS__API_KEY" in raised.value.reason and "wrong-key" not in raised.value.reason
    assert client(sim, provider, api_key=SecretStr("the-right-key")).embed(IMAGE, "image/png").vector


@pytest.mark.parametrize("provider", ["azure", "openai"])
@pytest.mark.parametrize(
    ("hostile", "says"),
    [
        ("nan", "not a finite float32"),
        ("wrong_dim", "1023 values, 1024 expected"),
        ("strings", "is str, not a number"),
        ("huge", "answered more than"),
        ("zeros", "all zeros"),
    ],
)
def test_a_hostile_reply_is_transient_and_never_a_vector(
    sim: Simulator, provider: str, hostile: str, says: str
) -> None:
    configure_embeddings(sim.state, hostile=hostile)
    with pytest.raises(BadReply, match=says) as raised:
        client(sim, provider).embed(IMAGE, "image/png")
    assert isinstance(raised.value, TransientError)


@pytest.mark.parametrize("provider", ["azure", "openai"])
def test_a_vector_of_another_model_or_length_than_configured_is_refused(sim: Simulator, provider: str) -> None:
    configure_embeddings(sim.state, hostile="other_model")
    with pytest.raises(BadReply, match="model '1999-01-01', not '2023-04-15'"):
        client(sim, provider).embed(IMAGE, "image/png")
    configure_embeddings(sim.state, hostile=None, dimensions=512)
    with pytest.raises(BadReply, match=r"512 values, 1024 expected.*BACKLANE_PRODUCT_PHOTOS__DIMENSIONS"):
        client(sim, provider).embed(IMAGE, "image/png")
    assert len(client(sim, provider, dimensions=512).embed(IMAGE, "image/png").vector) == 512


@pytest.mark.parametrize("provider", ["azure", "openai"])
def test_a_model_the_api_does_not_serve_is_a_setting_to_fix_not_a_refused_image(sim: Simulator, provider: str) -> None:
    with pytest.raises(Misconfigured, match=r"BACKLANE_PRODUCT_PHOTOS__BASE_URL.*__MODEL_VERSION") as raised:
        client(sim, provider, model_version="no-such-model").embed(IMAGE, "image/png")
    assert not isinstance(raised.value, ImageRefused)


def test_an_api_out_of_reach_is_transient(sim: Simulator) -> None:
    sim.stop()
    with pytest.raises(TransientError):
        client(sim).embed(IMAGE, "image/png")
