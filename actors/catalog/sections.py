"""Every catalog section: the source it comes from, where, and how it is stored.

This is structure, not configuration: intervals, retention and the enabled flag
are in settings (``catalog.sections``), base URLs and rate limits per source in
``catalog.sources``, rate limits per provider endpoint in ``catalog.limiters``. A
source is the unit of the circuit breaker; an endpoint (``limiter``, as the provider
names it) is the unit of the rate limit: the provider's ``catalog`` endpoint serves
brands, its ``categories`` endpoint has a limiter of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from backlane import MalformedMessage

Kind = Literal["categories", "brands", "records"]


@dataclass(frozen=True)
class SectionSpec:
    name: str
    #: Key of ``catalog.sources``; also names the breaker and the rate limit.
    source: str
    #: GET path at the source; the answer is ``{"items": [...]}``.
    path: str
    kind: Kind = "records"
    #: History rows stay when the source stops sending them, until retention prunes them;
    #: rows of other sections are removed when the source no longer has them.
    history: bool = False
    #: The provider endpoint whose rate limit the section counts against (``catalog.limiters``);
    #: None: the source's name (a source without a limit of its own only honours server waits).
    limiter: str | None = None

    @property
    def limiter_name(self) -> str:
        return self.limiter or self.source

    @property
    def breaker_name(self) -> str:
        return f"source:{self.source}"

    @property
    def rate_key(self) -> str:
        return f"limiter:{self.limiter_name}"


SECTIONS: dict[str, SectionSpec] = {
    spec.name: spec
    for spec in (
        SectionSpec("categories", "catalog", "/catalog/categories", "categories", limiter="categories"),
        SectionSpec("brands", "catalog", "/catalog/brands", "brands", limiter="catalog"),
        SectionSpec("erp_stock", "erp", "/erp/stock"),
        SectionSpec("purchase_history", "erp", "/erp/purchase-history", history=True),
        SectionSpec("consumed_materials", "erp", "/erp/consumed-materials", history=True),
        SectionSpec("lots", "erp", "/erp/lots"),
        SectionSpec("stock_taking", "erp", "/erp/stock-taking"),
        SectionSpec("suppliers", "erp", "/erp/suppliers"),
        SectionSpec("attributes", "erp", "/erp/attributes"),
        SectionSpec("eshop_stock", "eshop", "/eshop/stock"),
        SectionSpec("sales", "eshop", "/eshop/sales", history=True),
        SectionSpec("transport", "logistics", "/logistics/transport"),
    )
}


def section_spec(name: object) -> SectionSpec:
    if not isinstance(name, str) or name not in SECTIONS:
        raise MalformedMessage(f"unknown catalog section {name!r} (known: {', '.join(SECTIONS)})")
    return SECTIONS[name]


def sources() -> list[str]:
    return sorted({spec.source for spec in SECTIONS.values()})
