"""Command-line options generated from a pydantic config model, one per field.

Each field becomes ``--field-name`` (``--name/--no-name`` for a flag; a field may name its own in
``json_schema_extra["option"]``) with its
description as help, its default and, for a ``Literal``, its choices shown in ``--help``. Options
default to ``None`` so that only what the user typed overrides a YAML file; values are validated
by the model itself, so a bad value gets the same message as in a YAML file.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo


def with_config_options(command: Callable[..., Any], model: type[BaseModel]) -> Callable:
    """``command`` with one keyword-only option per field of ``model`` in place of its
    ``**values``; it receives them (``None`` where not given) in ``values``."""
    signature = inspect.signature(command, eval_str=True)
    fixed = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    generated = [_parameter(name, field) for name, field in model.model_fields.items()]

    def wrapper(**kwargs: Any) -> Any:
        own = {p.name: kwargs.pop(p.name) for p in fixed}
        return command(**own, **kwargs)

    wrapper.__name__, wrapper.__doc__ = command.__name__.lstrip("_"), command.__doc__
    parameters = [*fixed, *generated]
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


def _parameter(name: str, field: FieldInfo) -> inspect.Parameter:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    kind, choices = _option_type(field.annotation)
    flag = "--" + name.replace("_", "-")
    if kind is bool:
        flag = f"{flag}/--no-{flag[2:]}"
    flag = str(extra.get("option", flag))  # a field may name its own option
    help_text = field.description or ""
    if choices:
        help_text += f" Choices: {' | '.join(choices)}."
    default = field.get_default(call_default_factory=True)
    option = typer.Option(flag, help=help_text.strip(), show_default=_shown(default))
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[kind | None, option])


def _option_type(annotation: Any) -> tuple[type, list[str]]:
    """The type the command line parses, and the choices of a ``Literal``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is Literal:
        return str, [str(choice) for choice in typing.get_args(annotation)]
    if typing.get_origin(annotation) is dict:  # key=value pairs, repeatable
        return list[str], []
    return annotation, []


def _shown(default: Any) -> str | bool:
    if default is None or default == {}:
        return False
    if isinstance(default, bool):
        return "on" if default else "off"
    return str(default)
