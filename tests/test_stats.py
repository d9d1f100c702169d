"""`icd-bench stats`: pairwise win rates with bootstrap intervals, Bradley–Terry ranking, item-aware
resampling, and clear errors for bad vote files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from icd_bench.errors import ConfigError
from icd_bench.reports.stats import bradley_terry, read_votes, win_rates


def votes(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["item_id", "method_a", "method_b", "choice"])


def write(tmp_path, text: str):
    p = tmp_path / "votes.csv"
    p.write_text(text)
    return p


def test_win_rate_splits_ties_and_orients_pairs():
    # icd vs nti, written in both orders: icd wins 6, loses 2, 2 ties → (6 + 1) / 10
    rows = [(f"i{k}", "icd", "nti", "a") for k in range(4)] + [(f"j{k}", "nti", "icd", "b") for k in range(2)]
    rows += [("k0", "icd", "nti", "b"), ("k1", "nti", "icd", "a"), ("k2", "icd", "nti", "tie"),
             ("k3", "nti", "icd", "tie")]
    r = win_rates(votes(rows), resamples=200).iloc[0]
    assert (r.method, r.opponent, r.votes, r.wins, r.losses, r.ties) == ("icd", "nti", 10, 6, 2, 2)
    assert r.win_rate == pytest.approx(0.7) and r.tie_rate == pytest.approx(0.2)
    assert r.ci_low < 0.7 < r.ci_high
    again = win_rates(votes(rows), resamples=200).iloc[0]
    assert (again.ci_low, again.ci_high) == (r.ci_low, r.ci_high)  # seeded


def test_unanimous_votes_give_a_degenerate_interval():
    r = win_rates(votes([(f"i{k}", "a", "b", "a") for k in range(20)]), resamples=100).iloc[0]
    assert (r.win_rate, r.ci_low, r.ci_high) == (1.0, 1.0, 1.0)


def test_item_resampling_is_wider_when_raters_agree_within_items():
    """Five identical votes per item are one piece of evidence, not five: resampling items gives a
    wider interval than resampling votes."""
    rng = np.random.default_rng(0)
    rows = []
    for k in range(30):
        choice = "a" if rng.random() < 0.6 else "b"
        rows += [(f"i{k}", "x", "y", choice)] * 5
    items = win_rates(votes(rows), resamples=500, resample="items").iloc[0]
    single = win_rates(votes(rows), resamples=500, resample="votes").iloc[0]
    assert (items.ci_high - items.ci_low) > 1.5 * (single.ci_high - single.ci_low)


def test_bradley_terry_recovers_the_order_of_known_strengths():
    rng = np.random.default_rng(1)
    strength = {"icd": 1.0, "infedit": 0.0, "npi": -1.0}
    names = list(strength)
    rows = []
    for k in range(600):
        a, b = rng.choice(3, size=2, replace=False)
        p = 1 / (1 + np.exp(strength[names[b]] - strength[names[a]]))
        rows.append((f"i{k}", names[a], names[b], "a" if rng.random() < p else "b"))
    rank = bradley_terry(votes(rows), resamples=100)
    assert list(rank["method"]) == ["icd", "infedit", "npi"]
    assert rank["strength"].sum() == pytest.approx(0.0, abs=1e-9)
    top = rank.iloc[0]
    assert top.ci_low < top.strength < top.ci_high
    assert top.strength - rank.iloc[2].strength == pytest.approx(2.0, abs=0.5)


def test_a_method_that_never_wins_keeps_a_finite_strength():
    rank = bradley_terry(votes([(f"i{k}", "a", "b", "a") for k in range(10)]), resamples=20)
    assert np.isfinite(rank["strength"]).all() and rank.iloc[0].method == "a"


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("item_id,method_a,method_b,choice\n", "no votes"),
    ("item_id,method_a,choice\n1,a,a\n", "lacks the column(s) method_b"),
    ("item_id,method_a,method_b,choice\n1,a,b,left\n2,a,b,A\n",
     "unknown choice value(s) ['left'] on line(s) 2"),
    ("item_id,method_a,method_b,choice\n1,a,a,tie\n", "compared with itself"),
    ("item_id,method_a,method_b,choice\n1,,b,a\n", "empty item_id or method name on line(s) 2"),
])
def test_bad_vote_files_are_refused_clearly(tmp_path, text, message):
    with pytest.raises(ConfigError, match="votes.csv") as err:
        read_votes(write(tmp_path, text))
    assert message in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_votes(tmp_path / "none.csv")


def test_cli_prints_tables_writes_outputs_and_fails_cleanly(tmp_path):
    import subprocess
    import sys

    good = write(tmp_path, "item_id,method_a,method_b,choice,rater\n" + "".join(
        f"{k},icd,{m},{'a' if k % 3 else 'b'},r{k % 2}\n" for k in range(12) for m in ("nti", "npi")))
    res = subprocess.run([sys.executable, "-m", "icd_bench", "stats", str(good), "--resamples", "50",
                          "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, env={"COLUMNS": "160", "PATH": ""})
    assert res.returncode == 0, res.stderr
    assert "Bradley–Terry" in res.stdout and "icd" in res.stdout
    for name in ("win-rates.csv", "ranking.csv", "win-rates.png", "win-rates.svg"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert len(pd.read_csv(tmp_path / "out" / "win-rates.csv")) == 2
    bad = write(tmp_path, "item_id,method_a,method_b,choice\n1,a,b,maybe\n")
    res = subprocess.run([sys.executable, "-m", "icd_bench", "stats", str(bad)],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert "unknown choice" in res.stderr and "Traceback" not in res.stderr


def test_a_known_preference_is_recovered_with_the_binomial_width():
    """1000 items, 70 % true preference: the interval contains 0.70 and its width is close to the
    binomial 2·1.96·sqrt(p(1−p)/n) ≈ 0.057."""
    rng = np.random.default_rng(7)
    rows = [(f"i{k}", "icd", "nti", "a" if rng.random() < 0.7 else "b") for k in range(1000)]
    r = win_rates(votes(rows), resamples=1000).iloc[0]
    assert r.ci_low < 0.70 < r.ci_high
    expected = 2 * 1.96 * (0.7 * 0.3 / 1000) ** 0.5
    assert (r.ci_high - r.ci_low) == pytest.approx(expected, rel=0.15)
