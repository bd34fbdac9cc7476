"""The options of the miners: :class:`MinerOptions` (the keywords of ``discover``) and the frozen
dataclasses each built-in miner parses them into, checked, with pm4py's defaults.

>>> InductiveParams.parse("inductive", {"noise_threshold": 0.2})
InductiveParams(noise_threshold=0.2, disable_fallthroughs=False)
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Self, TypedDict

from procestra.errors import InvalidArgumentError

__all__ = ["HeuristicsParams", "InductiveParams", "MinerOptions", "MinerParams", "reject_unknown"]


class MinerOptions(TypedDict, total=False):
    """The options of the built-in miners, as keywords of :func:`discover`; each miner takes some
    (:class:`InductiveParams`, :class:`HeuristicsParams`) and rejects the others."""

    noise_threshold: float
    disable_fallthroughs: bool
    dependency_threshold: float
    and_threshold: float
    loop_two_threshold: float
    min_act_count: int
    min_dfg_occurrences: int


@dataclass(frozen=True)
class MinerParams:
    """The checked options of a miner; this base takes none (``dfg``, ``alpha``)."""

    @classmethod
    def parse(cls, miner: str, options: Mapping[str, object]) -> Self:
        """The options given to ``miner``, checked, defaults filled in; an option it does not
        take, or a value out of range, raises :class:`InvalidArgumentError` naming it."""
        reject_unknown(miner, options, cls.names())
        return replace(cls(), **options)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The options this kind of miner takes."""
        return tuple(f.name for f in fields(cls))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class InductiveParams(MinerParams):
    """Options of the inductive miner: IMf with ``noise_threshold`` in (0, 1], IM at 0."""

    noise_threshold: float = 0.0
    disable_fallthroughs: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_threshold", _share(self.noise_threshold, "noise_threshold"))
        if not isinstance(self.disable_fallthroughs, bool):
            raise InvalidArgumentError("disable_fallthroughs must be True or False", parameter="disable_fallthroughs")


@dataclass(frozen=True)
class HeuristicsParams(MinerParams):
    """Options of the heuristics miner (classic), with pm4py's defaults."""

    dependency_threshold: float = 0.5
    and_threshold: float = 0.65
    loop_two_threshold: float = 0.5
    min_act_count: int = 1
    min_dfg_occurrences: int = 1

    def __post_init__(self) -> None:
        for name in ("dependency_threshold", "and_threshold", "loop_two_threshold"):
            object.__setattr__(self, name, _share(getattr(self, name), name))
        for name in ("min_act_count", "min_dfg_occurrences"):
            object.__setattr__(self, name, _count(getattr(self, name), name))


def reject_unknown(miner: str, options: Mapping[str, object], accepted: tuple[str, ...]) -> None:
    """:class:`InvalidArgumentError` naming the first option in ``options`` that ``miner`` does not take."""
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        takes = f"it takes {', '.join(accepted)}" if accepted else "it takes no options"
        raise InvalidArgumentError(f"unknown option {unknown[0]!r}: {unknown[0]} does not apply to the {miner} miner "
                                   f"({takes})", parameter=unknown[0])


def _share(value: object, name: str) -> float:
    """A number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise InvalidArgumentError(f"{name} must be a number between 0 and 1, not {value!r}", parameter=name)
    return float(value)


def _count(value: object, name: str) -> int:
    """A non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 0:
        raise InvalidArgumentError(f"{name} must be a non-negative integer, not {value!r}", parameter=name)
    return int(value)
