"""A pipeline's settings section, built from its declaration and read from the environment.

A pipeline declares its settings class (a :class:`~backlane.settings.PipelineSettings`
subclass: ENABLED, TICK, MAX_ITEMS and retries, plus its own fields) and, per
registration, defaults of its own. Its section is read by its name:
``BACKLANE_<NAME>__<FIELD>`` (nested fields with ``__`` again), so a new pipeline
needs no edit of :mod:`backlane.settings`, and the same handler registered twice
under two names reads two sections, each keeping its own defaults for what the
environment leaves unset.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

import pydantic_settings
from pydantic import ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from backlane.settings import (
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    PipelineSettings,
    SettingsError,
    describe_validation,
    settings_error,
)

C = TypeVar("C", bound=PipelineSettings)


def with_defaults(cls: type[C], defaults: Mapping[str, Any]) -> type[C]:
    """``cls`` with some defaults replaced (validated like any value), for one registration."""
    if not defaults:
        return cls
    unknown = sorted(set(defaults) - set(cls.model_fields))
    if unknown:
        raise SettingsError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    fields: dict[str, Any] = {
        name: (cls.model_fields[name].annotation, FieldInfo.merge_field_infos(cls.model_fields[name], default=value))
        for name, value in defaults.items()
    }
    return create_model(cls.__name__, __base__=cls, __module__=cls.__module__, **fields)  # type: ignore[no-any-return, call-overload]


class _EnvBase(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_NESTED_DELIMITER, extra="ignore", case_sensitive=False
    )


def aliased_values(cls: type[C]) -> dict[str, Any]:
    """The fields of ``cls`` still read from the variables they had before they moved into the
    pipeline's section (``cls.env_aliases``: field -> its former section, e.g. ``api`` ->
    ``order_api`` reads ``BACKLANE_ORDER_API__BASE_URL``). The section's own variables win."""
    values: dict[str, Any] = {}
    for field, section in cls.env_aliases.items():
        prefix = f"{ENV_PREFIX}{section}{ENV_NESTED_DELIMITER}".upper()
        if not any(key.upper().startswith(prefix) for key in os.environ):
            continue
        kind = cls.model_fields[field].annotation
        environment = create_model(f"{cls.__name__}Alias", __base__=_EnvBase, **{section: (kind, kind())})  # type: ignore[call-overload, misc, operator]
        try:
            values[field] = getattr(environment(), section)
        except ValidationError as exc:
            raise settings_error(describe_validation(exc)) from None
    return values


def load_section(name: str, cls: type[C], defaults: Mapping[str, Any] | None = None) -> C:
    """Pipeline ``name``'s section from the environment (``BACKLANE_<NAME>__*``): its variables,
    else the former ones of an aliased field, else this registration's defaults, else the class's."""
    model = with_defaults(cls, {**(defaults or {}), **aliased_values(cls)})
    prefix = f"{ENV_PREFIX}{name}{ENV_NESTED_DELIMITER}".upper()
    try:
        if not any(key.upper().startswith(prefix) for key in os.environ):
            return model()
        environment = create_model(f"{cls.__name__}Environment", __base__=_EnvBase, **{name: (model, model())})  # type: ignore[call-overload]
        return getattr(environment(), name)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise settings_error(describe_validation(exc)) from None
    except pydantic_settings.SettingsError:  # a nested value given as JSON that does not parse
        raise settings_error([f"a {prefix}* variable holding a whole section or mapping is not valid JSON"]) from None
