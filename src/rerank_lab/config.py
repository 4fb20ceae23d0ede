"""params.yaml, parsed once into typed, frozen section models; each stage reads only its own section.

Every section -- and every registry entry (``retrievers.<name>``, ``miners.<name>`` ...) -- is a
pydantic dataclass made by :func:`params_model`: strict types (a string is not a list, ``true`` is
not ``1``, ``2.5`` is not a depth), ranges and choices declared on the fields, unknown keys
refused. :func:`parse` turns the first problem into one line naming the params key, the value
and the fix:

>>> parse(RetrieveConfig, {"depth": 2.5}, "retrieve")
Traceback (most recent call last):
rerank_lab.config.FieldError: retrieve.depth: must be a whole number, got 2.5 (fix: write a whole number, e.g. 100)
>>> parse(RetrieveConfig, {"splits": "test"}, "retrieve")
Traceback (most recent call last):
rerank_lab.config.FieldError: retrieve.splits: must be a list, got 'test' (fix: write a YAML list: [test])

Pydantic dataclasses, not ``BaseModel``: the configs stay ordinary frozen dataclasses (hashable,
positional arguments, ``dataclasses.asdict``/``replace``), which the stages and train's checkpoint
fingerprint rely on; pydantic only adds the validation.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

from pydantic import BeforeValidator, ConfigDict, Field, ValidationError, WrapValidator
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_core import PydanticUndefined

from rerank_lab.errors import ConfigError

T = TypeVar("T")

# The data contract's split names. rerank_lab.schema.SPLITS is the source; a test keeps the two
# equal (importing schema here would put `datasets` on every command's import path).
Split = Literal["train", "validation", "test"]
# convert's readers (rerank_lab.convert.FORMATS; a test keeps the two equal).
SourceFormat = Literal["beir", "triplets", "hardneg", "scifact_rationales"]


def _list_to_tuple(value: Any) -> Any:
    # YAML gives lists; the fields are tuples (frozen, hashable). Nothing else is converted: a
    # string goes on to the strict tuple check and fails there, instead of becoming its characters.
    return tuple(value) if isinstance(value, list) else value


def _keep_int(value: Any, handler: Any) -> Any:
    # A number field takes an int as written (`epochs: 1` stays 1), so what a stage records -- train's
    # config in the model folder and its checkpoint fingerprint -- is unchanged by the typing.
    out = handler(value)
    return value if type(value) is int else out


ListOf = Annotated[tuple[T, ...], BeforeValidator(_list_to_tuple)]  # a YAML list, never a bare string
Number = Annotated[float, WrapValidator(_keep_int)]  # an int or a float, never a bool, a string, NaN or inf
STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

# --- errors ---------------------------------------------------------------------------------

_UNSET: Any = object()


def show(value: Any) -> str:
    """A value as it reads in YAML, cut to one short line.

    >>> show(True), show(None), show(("a", 1.5)), show("x")
    ('true', 'null', "['a', 1.5]", "'x'")
    """
    if isinstance(value, bool):
        text = str(value).lower()
    elif value is None:
        text = "null"
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(show(v) for v in value) + "]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    else:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _key(where: str, loc: tuple) -> str:
    out = where
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class FieldError(ConfigError):
    """A bad params value: ``<section>.<key>: <what is wrong>, got <value> (fix: <how>)``.

    ``loc`` is the key inside the section; :meth:`at` names the section once it is known.
    """

    def __init__(self, loc: tuple, problem: str, value: Any = _UNSET, fix: str | None = None, where: str = "") -> None:
        self.loc, self.detail, self.value, self.where = tuple(loc), problem, value, where
        text = problem if value is _UNSET else f"{problem}, got {show(value)}"
        super().__init__(text, record=_key(where, self.loc) or None, fix=fix)

    def at(self, where: str) -> FieldError:
        return FieldError(self.loc, self.detail, self.value, self.fix, where)


def invalid(obj: Any, field: str, problem: str, fix: str) -> FieldError:
    """The error a section's own check raises about one of its fields (its value is shown)."""
    return FieldError((field,), problem, getattr(obj, field), fix)


def not_a_mapping(value: Any, where: str, fix: str | None = None) -> FieldError:
    """The error for a section or entry written as something other than ``key: value`` lines."""
    return FieldError((), "must be a mapping of key: value pairs", value, fix or f"write one key: value per line under {where}", where)


def did_you_mean(value: Any, choices: list[str] | tuple[str, ...]) -> str:
    """``"did you mean 'train'? "`` for a near miss, else ``""``."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)  # k2 -> k1
    return f"did you mean {close[0]!r}? " if close else ""


def choice_error(loc: tuple, value: Any, choices: list[str] | tuple[str, ...], what: str = "value") -> FieldError:
    """``value`` is not among ``choices``: the closest one and all of them.

    >>> str(choice_error(("splits", 0), "trian", ("train", "validation", "test")).at("retrieve"))
    "retrieve.splits[0]: unknown value, got 'trian' (fix: did you mean 'train'? use one of: train, validation, test)"
    """
    return FieldError(loc, f"unknown {what}", value, fix=f"{did_you_mean(value, choices)}use one of: {', '.join(choices)}")


def _number(x: Any) -> str:
    """A bound or an example as YAML reads it back as a number (PyYAML takes ``7e-05`` for text)."""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    text = repr(x)
    mantissa, e, exp = text.partition("e")
    return f"{mantissa}.0e{exp}" if e and "." not in mantissa else text


def _example(value: Any) -> str:
    """A default as one writes it in params.yaml: ``[train, test]``, ``true``, ``7.0e-05``."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_example(v) for v in value) + "]"
    if isinstance(value, bool | None):
        return show(value)
    return _number(value) if isinstance(value, float) else str(value)


def _range(info: Any) -> str | None:
    """``'in [0, 1)'`` or ``'>= 1'`` from a field's declared bounds."""
    marks = {name: getattr(m, name) for m in info.metadata for name in ("ge", "gt", "le", "lt") if hasattr(m, name)}
    low = ("[", marks["ge"]) if "ge" in marks else ("(", marks["gt"]) if "gt" in marks else None
    high = (marks["le"], "]") if "le" in marks else (marks["lt"], ")") if "lt" in marks else None
    if low and high:
        return f"in {low[0]}{_number(low[1])}, {_number(high[0])}{high[1]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {_number(low[1])}"
    if high:
        return f"{'<=' if high[1] == ']' else '<'} {_number(high[0])}"
    return None


_TYPES = {  # pydantic error type -> (what the value must be, how to write one)
    "int_type": ("a whole number", "write a whole number"),
    "float_type": ("a number", "write a number"),
    "bool_type": ("true or false", "write true or false"),
    "string_type": ("a string", "write a string"),
    "tuple_type": ("a list", "write a YAML list"),
    "dict_type": ("a mapping of key: value pairs", "write one key: value per line under it"),
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _type_fix(kind: str, value: Any, example: Any) -> str:
    how = _TYPES[kind][1]
    if kind == "tuple_type" and isinstance(value, str):
        return f"{how}: [{value}]"
    if kind in ("int_type", "float_type") and isinstance(value, str):
        try:
            number = int(value) if kind == "int_type" else float(value)
        except ValueError:
            pass
        else:
            why = f"; YAML reads {value} as text" if "e" in value.lower() and "." not in value else ", without quotes"
            return f"{how}: {_number(number)}{why}"
    if kind == "string_type" and isinstance(value, list) and len(value) == 1:
        return f"{how}, not a list: {value[0]}"
    return f"{how}, e.g. {example}" if example is not None else how


def _first_error(model: type, exc: ValidationError) -> FieldError:
    """The first problem pydantic found, as one :class:`FieldError` (an unknown key first: a typo
    is the likeliest cause of anything else)."""
    errors = exc.errors(include_url=False)
    unknown = ("unexpected_keyword_argument", "extra_forbidden")
    err = next((e for e in errors if e["type"] in unknown), errors[0])
    kind, loc, value, ctx = err["type"], tuple(err["loc"]), err.get("input"), err.get("ctx") or {}
    fields: dict[str, Any] = getattr(model, "__pydantic_fields__", {})
    # the field's own declaration speaks for a top-level key; a list item (splits[0]) only has pydantic's context
    info = fields.get(loc[0]) if len(loc) == 1 and isinstance(loc[0], str) else None
    default = PydanticUndefined if info is None else info.default
    if info is not None and default is PydanticUndefined and info.default_factory is not None:
        default = info.default_factory()
    example = None if default in (PydanticUndefined, None) else _example(default)
    nullable = " or null" if info is not None and type(None) in get_args(info.annotation) else ""
    if kind in unknown:
        return FieldError(loc, "unknown key", fix=f"{did_you_mean(loc[0], list(fields))}valid keys: {', '.join(sorted(fields))}")
    if kind in ("missing", "missing_argument"):
        choices = get_args(info.annotation) if info is not None and get_origin(info.annotation) is Literal else ()
        return FieldError(loc, "missing", fix=f"set {loc[0]}" + (f" to one of: {', '.join(choices)}" if choices else ""))
    if kind == "literal_error":
        return choice_error(loc, value, re.findall(r"'([^']*)'", ctx.get("expected", "")))
    if kind in _TYPES:
        return FieldError(loc, f"must be {_TYPES[kind][0]}{nullable}", value, _type_fix(kind, value, example))
    fix = f"e.g. {example}" if example else "see the section's defaults"
    if kind in _BOUNDS:
        bounds = (_range(info) if info is not None else None) or f"{_BOUNDS[kind]} {_number(next(iter(ctx.values())))}"
        return FieldError(loc, f"must be {bounds}{nullable}", value, fix)
    if kind == "too_short":
        return FieldError(loc, f"must list at least {ctx['min_length']} item{'s' if ctx['min_length'] != 1 else ''}", value, fix)
    if kind == "finite_number":
        return FieldError(loc, "must be a finite number", value, fix)
    if kind == "unexpected_positional_argument":
        return FieldError((), f"takes {len(fields)} values, got more", value, fix="name the values")
    return FieldError(loc, err["msg"][:1].lower() + err["msg"][1:], value, fix)


def params_model(where: str) -> Any:
    """Class decorator: a frozen, strictly validated pydantic dataclass for one params section.

    ``where`` names the section in the errors of a direct construction (``TrainConfig(...)``);
    :func:`parse` names the key the values came from instead. Every problem -- a field's type,
    range or choice, or a check the class's ``__post_init__`` raises with :func:`invalid` --
    surfaces as one :class:`FieldError`.
    """

    def wrap(cls: type[T]) -> type[T]:
        model = pydantic_dataclass(frozen=True, config=STRICT)(cls)
        init = model.__init__

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            try:
                init(self, *args, **kwargs)
            except ValidationError as exc:
                raise _first_error(model, exc).at(where) from None
            except FieldError as exc:
                raise exc.at(where) from None

        model.__init__ = __init__  # type: ignore[method-assign]
        return model

    return wrap


# --- params.yaml's values (the file itself is read by rerank_lab.params_file) ---------------


def section(params: dict[str, Any], dotted: str) -> Any:
    """``params['a']['b']`` for ``'a.b'``, with an error naming the missing key (and a near miss)."""
    node: Any = params
    parts = dotted.split(".")
    for i, key in enumerate(parts):
        here = ".".join(parts[:i])
        if not isinstance(node, dict):
            raise not_a_mapping(node, here)
        if key not in node:
            close = difflib.get_close_matches(key, [k for k in node if isinstance(k, str)], n=1, cutoff=0.5)
            hint = f"did you mean {'.'.join([*parts[:i], close[0]])!r}? or " if close else ""
            raise ConfigError(f"params has no {dotted!r}", fix=f"{hint}add {dotted} to params.yaml")
        node = node[key]
    return node


def parse(cls: type[T], values: Any, where: str, **extra: Any) -> T:
    """Section model ``cls`` from the params mapping found at ``where`` (plus ``extra`` keys).

    A null section takes every default. Any problem is one :class:`ConfigError` line naming the
    key (``<where>.<field>``), the value and the fix.
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise not_a_mapping(values, where)
    values = {**values, **extra}
    if not hasattr(cls, "__pydantic_fields__"):
        return _build_plain(cls, values, where)
    odd = [k for k in values if not isinstance(k, str)]
    if odd:  # `1: x` in YAML: cls(**values) would only say "keywords must be strings"
        names = sorted(cls.__pydantic_fields__)
        raise FieldError((str(odd[0]),), "unknown key", fix=f"valid keys: {', '.join(names)}", where=where)
    try:
        return cls(**values)
    except FieldError as exc:
        raise exc.at(where) from None


build = parse  # the name the stages used before the sections were typed


def _build_plain(cls: type[T], values: dict[str, Any], where: str) -> T:
    """A plain dataclass section (tune's, until it is a :func:`params_model`): unknown keys refused."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in values:
        if key not in names:
            fix = f"{did_you_mean(key, names)}valid keys: {', '.join(sorted(names))}"
            raise FieldError((str(key),), "unknown key", fix=fix, where=where)
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}", fix="check params.yaml") from None


# --- sections read by several stages ----------------------------------------------------------


@params_model("convert")
class ConvertSection:
    """``convert``: the seed every source shares, and one entry per source (parsed on its own)."""

    seed: int = 42
    sources: dict[str, Any] = Field(default_factory=dict)


@params_model("convert.sources.<name>")
class ConvertConfig:
    """``convert.seed`` plus one ``convert.sources.<dataset>`` entry."""

    format: SourceFormat
    seed: int = 42
    # Open Provence's rule for a missing split: 1% of train queries, at most 5,000.
    validation_fraction: Number = Field(0.01, ge=0, lt=1)
    validation_max: int = Field(5000, ge=1)
    test_fraction: Number = Field(0.01, ge=0, lt=1)
    test_max: int = Field(5000, ge=1)
    on_missing_doc: Literal["error", "drop"] = "error"  # qrels naming a doc the corpus lacks (ArguAna has 5)
    teacher_name: str = Field("source", min_length=1)  # hardneg: the teacher_scores.<name> column for pos/neg scores
    # read by retrieve, not convert: drop the hit whose doc id is the query id (pyserini's --remove-query)
    remove_query: bool = False
    max_drop_fraction: Number = Field(0.5, ge=0, le=1)  # a split losing more of its judged queries (on_missing_doc: drop) stops


def convert_config(params: dict[str, Any], source: str) -> ConvertConfig:
    """The ``convert.sources.<source>`` entry with the shared ``convert.seed``."""
    top = parse(ConvertSection, section(params, "convert"), "convert")
    where = f"convert.sources.{source}"
    entry = section(params, where)
    if isinstance(entry, dict) and "seed" in entry:
        raise FieldError(("seed",), "is shared by every source", entry["seed"], fix="set convert.seed instead", where=where)
    return parse(ConvertConfig, entry, where, seed=top.seed)


@params_model("dedup")
class DedupConfig:
    """``dedup``: drop rows with a passage seen more than ``max_duplicates`` other times in their
    split, for datasets of the source ``formats`` whose texts were mined (see rerank_lab.dedup)."""

    max_duplicates: int | None = Field(0, ge=0)  # null: keep every row
    splits: ListOf[Split] = Field(("train",), min_length=1)
    formats: ListOf[SourceFormat] = ("triplets", "hardneg")
    max_drop_fraction: Number = Field(0.5, ge=0, le=1)  # a split losing more than this share of its rows stops the stage


@params_model("retrieve")
class RetrieveConfig:
    """``retrieve``: depth of every run and the splits to retrieve for."""

    depth: int = Field(100, ge=1)
    splits: ListOf[Split] = Field(("train", "validation", "test"), min_length=1)


@params_model("evaluate")
class EvaluateConfig:
    """``evaluate``: metric names (``ndcg@10``, ``mrr@10``, ``recall@100`` ...) and splits."""

    metrics: ListOf[str] = Field(("ndcg@10", "mrr@10", "recall@10", "recall@100"), min_length=1)
    splits: ListOf[Split] = Field(("validation", "test"), min_length=1)
    baseline: str | None = None  # a run every other run is compared with (paired tests); None: no tests
    compare_also: ListOf[str] = ()  # more reference runs for the same paired tests (e.g. the untuned reranker)
    significance_metric: str = "ndcg@10"
    n_resamples: int = Field(10000, ge=1)
    confidence: Number = Field(0.95, gt=0, lt=1)
    seed: int = 0
    n_bins: int = Field(10, ge=1)  # reliability diagram / ECE bins

    def __post_init__(self) -> None:
        if self.compare_also and self.baseline is None:
            raise invalid(self, "compare_also", "needs evaluate.baseline", fix="set the baseline run first")
        if self.baseline is not None and self.significance_metric not in self.metrics:
            raise invalid(self, "significance_metric", "is not among evaluate.metrics", fix=f"use one of: {', '.join(self.metrics)}")
