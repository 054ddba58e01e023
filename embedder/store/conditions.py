"""One neutral description of a search filter, for every backend to translate.

`conditions(where)` turns a `SearchFilter` into a few plain conditions on payload fields (a value,
any of some values, a range, a range of days, a word of a full-text field, and conditions made of
conditions: any of, all of, not) and the ids to leave out; Edge and the server each map those onto
their own classes, and the in-memory store evaluates them with `holds`, so a filter means one thing
everywhere. Nothing here imports a Qdrant library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from embedder.store.contract import SearchFilter
from embedder.store.schema import DAY_FIELD, SECONDS_PER_DAY, TEXT_READER, WORDS_FIELD


@dataclass(frozen=True)
class Equals:
    """The field holds `value` (a keyword field that is a list: one of its items is `value`)."""

    key: str
    value: str


@dataclass(frozen=True)
class AnyOf:
    """The field holds at least one of `values`."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Within:
    """The number field lies in [gte, lte] (either end open when None); a missing field does not."""

    key: str
    gte: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class OnDays:
    """The point's day lies in [first, last] (inclusive days; either end open when None).

    A point's day is its `day` field where it has one; a point stored before that field existed is
    judged by its `date`: first * 86400 <= date < (last + 1) * 86400 (`date_bounds`). Both give the
    same points, as every backend derives `day` as `date // 86400` (store/schema.py), so a backend
    asks Qdrant for `day` alone (one integer range, fast) when every point with a date has it, for
    `date` alone when it cannot tell, or for either per point."""

    first: int | None = None
    last: int | None = None

    def date_bounds(self) -> tuple[float | None, float | None]:
        """[gte, lt) on `date` seconds that hold exactly the points of these days."""
        gte = None if self.first is None else float(self.first * SECONDS_PER_DAY)
        lt = None if self.last is None else float((self.last + 1) * SECONDS_PER_DAY)
        return gte, lt


@dataclass(frozen=True)
class HasWord:
    """The full-text field (words separated by spaces, as `embedder.words.searchable` writes them)
    holds `word`, a single word in the same form."""

    key: str
    word: str


@dataclass(frozen=True)
class Either:
    """At least one of `parts` holds."""

    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Every:
    """All of `parts` hold."""

    parts: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    """`part` does not hold (a field a point lacks holds no value, so `Not(Equals(...))` holds)."""

    part: Condition


Condition = Equals | AnyOf | Within | OnDays | HasWord | Either | Every | Not


@dataclass(frozen=True)
class Conditions:
    must: tuple[Condition, ...]
    exclude_ids: tuple[str, ...] = ()


def conditions(where: SearchFilter | None) -> Conditions | None:
    """What `where` asks of a point, as neutral conditions; None for no filter at all."""
    if where is None or where.is_empty():
        return None
    must: list[Condition] = []
    if where.folder:
        must.append(Equals("folders", where.folder.rstrip("/") or "/"))
    if where.formats:
        must.append(AnyOf("format", tuple(where.formats)))
    if where.paths:
        must.append(AnyOf("paths", tuple(where.paths)))
    must += [Equals("tags", tag) for tag in dict.fromkeys(where.tags)]
    if where.date_from is not None or where.date_to is not None:
        must.append(Within("date", where.date_from, where.date_to))
    if where.day_from is not None or where.day_to is not None:
        must.append(OnDays(where.day_from, where.day_to))
    if where.min_width:
        must.append(Within("width", float(where.min_width)))
    if where.min_height:
        must.append(Within("height", float(where.min_height)))
    if where.text_unread_by:
        must.append(Not(Equals(TEXT_READER, where.text_unread_by)))
    if where.typed_date is not None:
        typed = where.typed_date
        saying = tuple(
            Every(tuple(Either(tuple(HasWord(WORDS_FIELD, w) for w in piece)) for piece in date)) for date in typed.said if date
        )
        taken = OnDays(typed.day_from, typed.day_to)
        must.append(Either((taken, *saying)) if saying else taken)
    return Conditions(tuple(must), tuple(dict.fromkeys(where.exclude_ids)))


def combined(where: SearchFilter | None, extra: tuple[Condition, ...] = ()) -> Conditions | None:
    """`conditions(where)` with `extra` conditions on top (a prefetch's own, e.g. the words it needs)."""
    found = conditions(where)
    if not extra:
        return found
    if found is None:
        return Conditions(tuple(extra))
    return Conditions(found.must + tuple(extra), found.exclude_ids)


def holds(condition: Condition, payload: Mapping[str, Any]) -> bool:
    """Whether one condition holds for a payload, with the meaning Qdrant gives it."""
    if isinstance(condition, OnDays):
        return _on_days(condition, payload)
    if isinstance(condition, Either):
        return any(holds(part, payload) for part in condition.parts)
    if isinstance(condition, Every):
        return all(holds(part, payload) for part in condition.parts)
    if isinstance(condition, Not):
        return not holds(condition.part, payload)
    raw = payload.get(condition.key)
    if isinstance(condition, HasWord):
        return isinstance(raw, str) and condition.word in raw.split()
    values = raw if isinstance(raw, list) else ([] if raw is None else [raw])
    if isinstance(condition, Equals):
        return condition.value in values
    if isinstance(condition, AnyOf):
        return any(value in condition.values for value in values)
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return any(
        (condition.gte is None or v >= condition.gte) and (condition.lte is None or v <= condition.lte) for v in numbers
    )


def _on_days(condition: OnDays, payload: Mapping[str, Any]) -> bool:
    day = payload.get(DAY_FIELD)
    if isinstance(day, int) and not isinstance(day, bool):
        return (condition.first is None or day >= condition.first) and (condition.last is None or day <= condition.last)
    date, (gte, lt) = payload.get("date"), condition.date_bounds()
    if isinstance(date, bool) or not isinstance(date, (int, float)):
        return False
    return (gte is None or date >= gte) and (lt is None or date < lt)



def matches(
    payload: Mapping[str, Any], point_id: str, where: SearchFilter | None, extra: tuple[Condition, ...] = ()
) -> bool:
    """Whether a point passes `where` and `extra` (the in-memory store's filter)."""
    found = combined(where, extra)
    if found is None:
        return True
    return point_id not in found.exclude_ids and all(holds(c, payload) for c in found.must)
