"""The allowed range of every numeric setting, checked once where the setting enters: a config dataclass's
`validate()` (called from its `__post_init__`), so the command line, presets, `--set` and the Python API all meet
the same check before any work or any file.

A config declares its ranges as a `{field: Range}` table beside it; `check_ranges` refuses the first value out of its
range, or of the wrong type (a preset's `"lr": "fast"`), with one `SettingError` line naming the option, the value
and what is allowed. `None` is never checked: it means "not given" (the default, the run's value, ...).
`check_preset_ranges` checks a preset's section the same way, its error naming the preset file and the key.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

from mdmf.pipeline.core.errors import MdmfError


@dataclass(frozen=True)
class Range:
    """Values >= low (> low with `open_low`); integers only unless `real` (a bool is neither)."""

    low: float
    open_low: bool = False
    real: bool = False

    def allows(self, value) -> bool:
        kind = numbers.Real if self.real else numbers.Integral
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):  # nan, inf: no
            return False
        return value > self.low if self.open_low else value >= self.low

    def __str__(self) -> str:
        low = int(self.low) if float(self.low).is_integer() else self.low
        return f"{'a number' if self.real else 'an integer'} {'>' if self.open_low else '>='} {low}"


WAY = Range(2)  # an episode compares at least two classes (one class: every answer is right)
COUNT = Range(1)  # videos, episodes, steps, frames, threads, ...: at least one
NONNEGATIVE = Range(0)  # seeds (numpy's generators refuse negative ones), worker processes (0: in this one), ...
RATE = Range(0, open_low=True, real=True)  # learning rates, clipping norms, factors: positive
NONNEGATIVE_REAL = Range(0, real=True)  # weight decays, a warm-up's first learning rate
EPISODES = {"way": WAY, "shot": COUNT, "queries": COUNT}  # what an episode is, wherever one is set


class SettingError(MdmfError):
    """A setting out of its range or of the wrong type; `key`, `value` and `allowed` say which and why."""

    def __init__(self, key: str, value, allowed: Range, where: str | None = None):
        self.key, self.value, self.allowed = key, value, allowed
        where = where or f"--{key.replace('_', '-')}"
        super().__init__(f"{where} {value!r}: must be {allowed}")


def check_ranges(config, ranges: Mapping[str, Range]) -> None:
    """Raise `SettingError` for the first field of `config` named in `ranges` whose value is out of range; a list or
    tuple value is checked element by element (e.g. lr_steps). `config`: a dataclass, which must have every field
    named (a renamed field must not drop its check), or a mapping such as a preset's section (keys it lacks: not
    set)."""
    get = config.get if isinstance(config, Mapping) else lambda k: getattr(config, k)  # a dataclass: every field
    for key, allowed in ranges.items():
        value = get(key)
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None and not allowed.allows(item):
                raise SettingError(key, item, allowed)


def check_preset_ranges(preset: str, section: str, values: Mapping, ranges: Mapping[str, Range]) -> None:
    """`check_ranges` of a preset's section (`values`), the error naming the preset and the key
    (`--preset p.json: train.lr 'fast': must be a number > 0`): the user fixes the file, not an option."""
    try:
        check_ranges(values, ranges)
    except SettingError as err:
        raise SettingError(err.key, err.value, err.allowed, where=f"--preset {preset}: {section}.{err.key}") from None
