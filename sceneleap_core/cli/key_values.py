"""``KEY=VALUE`` command-line items -> a dict of typed values (``sceneleap model pack --post``, the
bench scripts' ``--post`` and ``--model-args``)."""

from __future__ import annotations

from dataclasses import fields, is_dataclass


def parse_key_values(items: list[str], option: str, schema=None) -> dict:
    """``["anchor=seed", "d_model=288", "filter=false"]`` -> ``{"anchor": "seed", "d_model": 288,
    "filter": False}``.

    With ``schema`` (a dataclass instance) every key must be one of its fields and the value takes
    that field's type (bool from 1/true/yes/0/false/no); without it a value is a bool, int, float or
    str by its look. Raises ValueError naming ``option`` and the item.
    """
    known = {f.name: type(getattr(schema, f.name)) for f in fields(schema)} if is_dataclass(schema) else None
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or (known is not None and key not in known):
            what = f" with KEY a field of {type(schema).__name__}" if known is not None else ""
            raise ValueError(f"{option}: expected KEY=VALUE{what}, got {item!r}")
        kind = known[key] if known is not None else None
        out[key] = _typed(value, kind, option, item)
    return out


def _typed(value: str, kind: type | None, option: str, item: str):
    low = value.lower()
    if kind is bool or (kind is None and low in ("true", "false")):
        if low not in ("1", "true", "yes", "0", "false", "no"):
            raise ValueError(f"{option}: expected a bool (true/false) in {item!r}")
        return low in ("1", "true", "yes")
    if kind is tuple:  # numbers separated by commas: "0,0.05,0.1"
        try:
            return tuple(float(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise ValueError(f"{option}: expected numbers separated by commas in {item!r}") from None
    if kind is not None and kind is not type(None):
        try:
            return kind(value)
        except ValueError:
            raise ValueError(f"{option}: expected type {kind.__name__} in {item!r}") from None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value
