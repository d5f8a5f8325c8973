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


def aliased_values(name: str, cls: type[C]) -> dict[str, Any]:
    """The fields of ``cls`` still read from the variables they had before they moved into the
    pipeline's section (``cls.env_aliases``: field -> its former variable without the prefix,
    e.g. ``base_url`` -> ``ORDER_API__BASE_URL``), validated; the section's own variable wins."""
    environment = {key.upper(): value for key, value in os.environ.items()}
    raw: dict[str, str] = {}
    formerly: dict[str, str] = {}
    for field, former in cls.env_aliases.items():
        variable = f"{ENV_PREFIX}{former}".upper()
        own = f"{ENV_PREFIX}{name}{ENV_NESTED_DELIMITER}{field}".upper()
        if variable in environment and own not in environment:
            raw[field], formerly[field] = environment[variable], variable
    if not raw:
        return {}
    fields: dict[str, Any] = {field: (cls.model_fields[field].annotation, cls.model_fields[field]) for field in raw}
    try:
        values = create_model(f"{cls.__name__}Aliases", **fields)(**raw)
    except ValidationError as exc:
        problems = [
            f"{formerly[str(err['loc'][0])]}: {str(err['msg']).removeprefix('Value error, ')}" for err in exc.errors()
        ]
        raise settings_error(problems) from None
    return {field: getattr(values, field) for field in raw}


def load_section(name: str, cls: type[C], defaults: Mapping[str, Any] | None = None) -> C:
    """Pipeline ``name``'s section from the environment (``BACKLANE_<NAME>__*``): its variables,
    else the former ones of an aliased field, else this registration's defaults, else the class's."""
    model = with_defaults(cls, {**(defaults or {}), **aliased_values(name, cls)})
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
