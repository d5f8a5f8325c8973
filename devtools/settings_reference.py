"""The settings reference of the docs site, generated from the settings classes so it cannot drift.

Walks :class:`backlane.settings.Settings` (every section and field) and the settings class of
every registered pipeline (loaded with :func:`backlane.app.load_app`, which needs no broker),
with that registration's own defaults, and writes one markdown table per section: the
``BACKLANE_*`` variable, the type and its bounds, the default (never a secret's) and the ``#:``
comment above the field, which is the field's documentation. The docs site's hook
(:mod:`devtools.mkdocs_hooks`) puts it into ``docs/settings.md`` at build time; by hand::

    python -m devtools.settings_reference            # the markdown on stdout
    python -m devtools.settings_reference --json     # the same tables as JSON (the tests read it)

Defaults are the classes' own: the environment of the process that runs this is not read.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import annotated_types
from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo

from backlane.settings import ENV_NESTED_DELIMITER, ENV_PREFIX, Settings


@dataclass(frozen=True)
class Row:
    """One setting: what the reference shows of it."""

    variable: str
    type: str
    default: str
    doc: str
    secret: bool


@dataclass(frozen=True)
class Table:
    """One section: its title, the class it comes from and its rows."""

    title: str
    source: str
    rows: list[Row]


def field_comments(cls: type) -> dict[str, str]:
    """The ``#:`` comment lines directly above each annotated field of ``cls``'s own body."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # a class made at run time (create_model) has no source
        return {}
    lines = source.splitlines()
    (node,) = ast.parse(source).body
    comments: dict[str, str] = {}
    for statement in node.body if isinstance(node, ast.ClassDef) else []:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            above: list[str] = []
            number = statement.lineno - 2
            while number >= 0 and lines[number].strip().startswith("#:"):
                above.insert(0, lines[number].strip()[2:].strip())
                number -= 1
            if above:
                comments[statement.target.id] = " ".join(above)
    return comments


def field_doc(cls: type[BaseModel], name: str) -> str:
    """The comment of the class in ``cls``'s MRO that declares ``name`` last (an override's own)."""
    for klass in cls.__mro__:
        if name in vars(klass).get("__annotations__", {}):
            comment = field_comments(klass).get(name)
            if comment:
                return comment
    description = cls.model_fields[name].description
    return description or ""


def is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def type_name(annotation: Any) -> str:
    """``int``, ``float, optional``, ``"classic" or "quorum"``, ``secret``: as a reader sets it."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [arg for arg in args if arg is not type(None)]
        name = " or ".join(type_name(arg) for arg in rest)
        return f"{name}, optional" if len(rest) < len(args) else name
    if typing.get_origin(annotation) is Literal:
        return " or ".join(f"`{arg}`" for arg in args)
    if annotation is SecretStr:
        return "secret"
    return getattr(annotation, "__name__", str(annotation))


_BOUNDS = (
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.Lt, "lt", "<"),
)


def bounds(info: FieldInfo) -> str:
    parts = []
    for item in info.metadata:
        for kind, attribute, sign in _BOUNDS:
            if isinstance(item, kind):
                parts.append(f"{sign} {getattr(item, attribute):,}")
        if isinstance(item, annotated_types.MinLen):
            parts.append(f"at least {item.min_length} characters")
    return ", ".join(parts)


def shown(value: Any, secret: bool) -> str:
    """The default as it would be written in the environment; a secret's is never shown."""
    if value is None:
        return "unset"
    if secret or isinstance(value, SecretStr):
        return "secret, not shown"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if value == "":
        return "empty"
    return f"`{value}`"


def variable(location: tuple[str, ...]) -> str:
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(location).upper()


def aliases(info: FieldInfo) -> list[str]:
    alias = info.validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias] if alias else []
    return [choice for choice in choices if isinstance(choice, str)]


def rows(model: type[BaseModel], instance: Any, location: tuple[str, ...]) -> Iterator[Row]:
    """Every leaf field of ``model`` under ``location``, nested sections and mappings of them walked."""
    moved: dict[str, str] = dict(getattr(model, "env_aliases", {}))  # field -> its former variable
    for name, info in model.model_fields.items():
        annotation = info.annotation
        value = getattr(instance, name, None)
        here = (*location, name)
        doc = field_doc(model, name).replace("|", "\\|")
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from rows(annotation, value, here)
            continue
        if typing.get_origin(annotation) is dict and isinstance(value, dict):
            inner = typing.get_args(annotation)[1]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                keys = ", ".join(f"`{key.upper()}`" for key in value)
                yield Row(variable((*here, "<name>")) + "__*", "one section per name", keys, doc, False)
                for key, entry in value.items():
                    yield from rows(inner, entry, (*here, key))
                continue
        yield leaf(info, value, here, doc, moved.get(name))


def leaf(info: FieldInfo, value: Any, location: tuple[str, ...], doc: str, former: str | None = None) -> Row:
    secret = is_secret(info.annotation)
    kind = type_name(info.annotation)
    limit = bounds(info)
    also = "".join(f" (also read as `{ENV_PREFIX}{alias.upper()}`)" for alias in aliases(info))
    if former:
        also += f" (formerly `{ENV_PREFIX}{former.upper()}`, still read when this one is not set)"
    return Row(variable(location), f"{kind} ({limit})" if limit else kind, shown(value, secret), doc + also, secret)


def global_tables() -> list[Table]:
    """The process-wide settings: one table per section of :class:`Settings`, one for its scalars."""
    defaults = Settings.model_construct()  # the classes' defaults, not this process's environment
    tables, scalars = [], []
    for name, info in Settings.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            source = f"{annotation.__module__}.{annotation.__qualname__}"
            title = f"`{variable((name,))}__*`"
            tables.append(Table(title, source, list(rows(annotation, getattr(defaults, name), (name,)))))
        else:
            scalars.append(leaf(info, getattr(defaults, name), (name,), field_doc(Settings, name)))
    source = f"{Settings.__module__}.{Settings.__qualname__}"
    return [Table("General", source, scalars), *tables]


def pipeline_tables() -> list[Table]:
    """One table per registered pipeline: its settings class with the registration's own defaults."""
    from backlane.app import load_app
    from backlane.core.config import with_defaults

    tables = []
    for registered in sorted(load_app().registry, key=lambda registered: registered.name):
        pipeline = registered.pipeline
        model = with_defaults(pipeline.config, pipeline.defaults)
        source = f"{pipeline.config.__module__}.{pipeline.config.__qualname__}"
        own = f", with {', '.join(f'{k}={v!r}' for k, v in pipeline.defaults.items())}" if pipeline.defaults else ""
        title = f"{pipeline.name}: `{variable((pipeline.name,))}__*` {{ #pipeline-{pipeline.name} }}"
        tables.append(Table(title, source + own, list(rows(model, model(), (pipeline.name,)))))
    return tables


def render(tables: list[Table], level: str) -> str:
    out = []
    for table in tables:
        out += [f"{level} {table.title}", "", f"From `{table.source}`.", ""]
        out += ["| variable | type | default | meaning |", "|---|---|---|---|"]
        out += [f"| `{r.variable}` | {r.type} | {r.default} | {r.doc or '—'} |" for r in table.rows]
        out.append("")
    return "\n".join(out)


def reference() -> str:
    """The whole reference as markdown: the process-wide sections, then every pipeline's."""
    return "\n".join(
        [
            "### Process-wide",
            "",
            render(global_tables(), "####"),
            "### Pipelines",
            "",
            "Each registered pipeline reads its own section by its name; a pipeline registered twice",
            "has two sections, each with its registration's defaults.",
            "",
            render(pipeline_tables(), "####"),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--json"]:
        tables = [*global_tables(), *pipeline_tables()]
        json.dump([dataclasses.asdict(table) for table in tables], sys.stdout, indent=1)
    elif not args:
        sys.stdout.write(reference())
    else:
        sys.stderr.write("usage: python -m devtools.settings_reference [--json]\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
