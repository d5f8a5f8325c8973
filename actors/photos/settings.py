"""The photo-vectorization settings: one section per registration, ``BACKLANE_<NAME>__*``
(``BACKLANE_PRODUCT_PHOTOS__*``, ``BACKLANE_DELIVERY_PHOTOS__*``), its embeddings API included."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from backlane import TableSettings
from backlane.settings import ApiSettings

#: Azure AI Vision's multimodal embeddings (``retrieval:vectorizeImage``) and the OpenAI-compatible
#: ``/v1/embeddings`` shape of self-hosted servers (Infinity and the like).
Provider = Literal["azure", "openai"]


class PhotosSettings(TableSettings, ApiSettings):
    """One registration of the image-vectorization handler and the embeddings API it calls.

    ``base_url`` is the API's endpoint: an Azure AI Vision resource
    (``https://<resource>.cognitiveservices.azure.com``) or a self-hosted server's root
    (``http://embeddings:7997``); ``api_key`` goes in ``Ocp-Apim-Subscription-Key`` (azure) or
    as a bearer token (openai)."""

    #: Which wire format the embeddings API speaks: ``azure`` or ``openai``.
    provider: Provider = "azure"
    #: Azure: the ``api-version`` query parameter (the multimodal embeddings' GA version).
    api_version: str = Field(default="2024-02-01", min_length=1, max_length=40)
    #: The model version every vector of this registration is made by: Azure's ``model-version``
    #: (``2023-04-15``, the multilingual model); for ``openai``, the ``model`` sent. Vectors of
    #: another model are never compared with these.
    model_version: str = Field(default="2023-04-15", min_length=1, max_length=200)
    #: Length every vector must have (Azure's multimodal model: 1024); a reply of another length
    #: is refused, never stored.
    dimensions: int = Field(default=1024, ge=1, le=16_384)
    #: Images larger than this are refused before any call, bytes (Azure's limit: 20 MB).
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1, le=256 * 1024 * 1024)
    #: Per-request timeout, seconds.
    timeout: float = Field(default=30.0, gt=0, le=3600)
    #: The embeddings-API breaker opens after this many failures in a row ...
    breaker_failure_threshold: int = Field(default=5, ge=1)
    #: ... for this many seconds.
    breaker_open_seconds: float = Field(default=60.0, gt=0, le=24 * 3600)
    #: Changed at runtime (`backlane settings set`) besides the common ones: its own limits.
    runtime_fields: ClassVar[tuple[str, ...]] = (
        *TableSettings.runtime_fields,
        "breaker_failure_threshold",
        "breaker_open_seconds",
    )
    #: Sent as ``Ocp-Apim-Subscription-Key`` (azure) or ``Authorization: Bearer`` (openai) when set.
    api_key: SecretStr | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value) > 2000:
            raise ValueError("not an http(s) URL, e.g. https://<resource>.cognitiveservices.azure.com")
        return value.rstrip("/")
