"""PIE-Bench's measurement protocol, shared by the metrics' ``pie`` flavour: the choices papers read
differently, each an option of ``icd-bench score`` whose default is what PIE-Bench's own
``evaluation/evaluate.py`` (cure-lab/PnPInversion) does.

- ``pie_undefined=skip|zero`` — a region with no pixels (an edit mask over the whole frame leaves no
  unedited part). ``evaluate.py`` writes ``nan``; ``skip`` keeps it undefined, left out of the mean and
  counted (``n failed``) — what a NaN-skipping mean of its CSV does, the reading its issue tracker settles
  on (PnPInversion#10, #14: no official answer). ``zero`` scores it 0 and averages it in.
- ``pie_brackets=strip|keep`` — PIE-Bench marks the edited words ``[like this]``; ``evaluate.py`` (and its
  editing scripts) delete ``[`` and ``]`` before CLIP sees the prompt. ``keep`` scores the published text
  as it is (what a script that forgets to strip them computes).
- ``pie_mask_border=on|off`` — ``mask_decode`` sets the mask's 1-pixel frame ("to avoid annotation errors
  in boundary"), so the frame counts as edited and never as background. ``off`` uses the mask as drawn.

A fourth choice is not a scoring option: whether the method saw the mask. The runner hands PIE-Bench's
edit mask only to a method that declares ``sees_edit_mask`` (none of the project's methods does) and
records it in the run's manifest; ``icd-bench import --saw-mask`` records it for outputs made elsewhere.
"""

from __future__ import annotations

import math

import numpy as np

from icd_bench.errors import ConfigError

UNDEFINED = ("skip", "zero")
BRACKETS = ("strip", "keep")
BORDER = ("on", "off")
OPTIONS = {"pie_undefined": UNDEFINED, "pie_brackets": BRACKETS, "pie_mask_border": BORDER}
OPTION_KEYS = tuple(OPTIONS)
#: the published prompt of each role, as the dataset keeps it in ``meta``
RAW_PROMPT = {"source": "original_prompt", "target": "editing_prompt"}


def choice(options: dict[str, str], key: str) -> str:
    allowed = OPTIONS[key]
    value = options.get(key, allowed[0])
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}: choose one of {', '.join(allowed)}")
    return value


def check_options(options: dict[str, str]) -> None:
    for key in OPTION_KEYS:
        choice(options, key)


def empty_region_value(options: dict[str, str]) -> float:
    """The value of a region without pixels: NaN (undefined, ``skip``) or 0 (``zero``)."""
    return 0.0 if choice(options, "pie_undefined") == "zero" else math.nan


def prompt(item, role: str, options: dict[str, str]) -> str:
    """The ``role`` (source / target) prompt CLIP scores: bracket-stripped (the item's), or as published."""
    stripped = item.source_prompt if role == "source" else item.target_prompt
    if choice(options, "pie_brackets") == "strip":
        return stripped
    raw = item.meta.get(RAW_PROMPT[role])
    if raw is None:
        raise ValueError("pie_brackets=keep needs the published prompt: a PIE-Bench sample's "
                         "(this one has none)")
    return raw


def mask(item, options: dict[str, str]) -> np.ndarray | None:
    """The edit mask a region is cut from: with the forced frame (the item's), or as drawn."""
    if choice(options, "pie_mask_border") == "on" or item.mask is None:
        return item.mask
    drawn = item.meta.get("mask_without_border")
    if drawn is None:
        raise ValueError("pie_mask_border=off needs the mask as drawn: a PIE-Bench sample's "
                         "(this one has none)")
    from icd_bench.backbones.base import fit_mask

    return fit_mask(np.asarray(drawn, dtype=bool), item.mask.shape[-1])


def departures(options: dict[str, str]) -> dict[str, str]:
    """The switches of ``options`` set away from PIE-Bench's own behaviour: key → value."""
    return {k: options[k] for k in OPTION_KEYS if k in options and options[k] != OPTIONS[k][0]}
