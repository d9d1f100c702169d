"""Human-study statistics: pairwise preference votes → win rates and a Bradley–Terry ranking, each with
95 % bootstrap confidence intervals (the paper's human study: 1000 resamples).

Votes: a CSV with ``item_id, method_a, method_b, choice[, rater]``; ``choice`` is ``a``, ``b`` or
``tie`` (any case). A tie counts half a win for each side and is also reported on its own.
Resampling is over *items* by default: all votes on a drawn item come along, so several raters
judging the same item are not counted as independent evidence (``resample="votes"`` draws votes
instead). Bradley–Terry strengths are fitted by Hunter's MM algorithm (2004) with a weak prior — a
tenth of a tied vote on every compared pair — so a method that never wins keeps a finite strength;
they are reported as log-strengths centred on their mean. Written by hand because the few lines it
takes are clearer than a dependency for one fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from icd_bench.errors import ConfigError

CHOICES = ("a", "b", "tie")
REQUIRED = ("item_id", "method_a", "method_b", "choice")
BT_PRIOR = 0.1  # tied pseudo-votes per compared pair


def read_votes(path: str | Path) -> pd.DataFrame:
    """The votes of ``path``, validated; raises `ConfigError` naming the problem and the fix."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"votes file not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{path} is empty: expected a header {','.join(REQUIRED)}[,rater] "
                          f"and one row per vote") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not a readable CSV: {str(e).splitlines()[0]}") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ConfigError(f"{path} lacks the column(s) {', '.join(missing)}; "
                          f"expected {','.join(REQUIRED)}[,rater]")
    if df.empty:
        raise ConfigError(f"{path} has a header but no votes")
    for c in df.columns:
        df[c] = df[c].str.strip()
    df["choice"] = df["choice"].str.lower()
    bad = df[~df["choice"].isin(CHOICES)]
    if len(bad):
        rows = ", ".join(str(i + 2) for i in bad.index[:5])
        raise ConfigError(f"{path}: unknown choice value(s) {sorted(set(bad['choice']))[:5]} "
                          f"on line(s) {rows}; use one of {', '.join(CHOICES)}")
    empty = df[(df["method_a"] == "") | (df["method_b"] == "") | (df["item_id"] == "")]
    if len(empty):
        raise ConfigError(f"{path}: empty item_id or method name on line(s) "
                          f"{', '.join(str(i + 2) for i in empty.index[:5])}")
    selfs = df[df["method_a"] == df["method_b"]]
    if len(selfs):
        raise ConfigError(f"{path}: a method compared with itself ({selfs['method_a'].iloc[0]!r}) on line(s) "
                          f"{', '.join(str(i + 2) for i in selfs.index[:5])}; "
                          f"every vote needs two different methods")
    return df.reset_index(drop=True)


@dataclass
class _Votes:
    """Votes as arrays: method indices i < j (sorted names), the score of i (1, 0, ½), the item index."""

    methods: list[str]
    i: np.ndarray
    j: np.ndarray
    score: np.ndarray
    tie: np.ndarray
    item: np.ndarray
    n_items: int

    @classmethod
    def of(cls, df: pd.DataFrame) -> _Votes:
        methods = sorted(set(df["method_a"]) | set(df["method_b"]))
        index = {m: k for k, m in enumerate(methods)}
        a = df["method_a"].map(index).to_numpy()
        b = df["method_b"].map(index).to_numpy()
        score_a = df["choice"].map({"a": 1.0, "b": 0.0, "tie": 0.5}).to_numpy()
        swap = a > b
        i, j = np.where(swap, b, a), np.where(swap, a, b)
        score = np.where(swap, 1.0 - score_a, score_a)
        items, item = np.unique(df["item_id"].to_numpy(), return_inverse=True)
        return cls(methods, i, j, score, (df["choice"] == "tie").to_numpy(), item, len(items))

    def weights(self, rng: np.random.Generator, resamples: int, by: str) -> np.ndarray:
        """(resamples, votes) multiplicities of each vote in each bootstrap sample."""
        if by == "items":
            drawn = rng.integers(0, self.n_items, (resamples, self.n_items))
            counts = np.stack([np.bincount(d, minlength=self.n_items) for d in drawn])
            return counts[:, self.item]
        drawn = rng.integers(0, len(self.i), (resamples, len(self.i)))
        return np.stack([np.bincount(d, minlength=len(self.i)) for d in drawn])


def _ci(samples: np.ndarray) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return float(lo), float(hi)


def win_rates(df: pd.DataFrame, *, resamples: int = 1000, seed: int = 0,
              resample: str = "items") -> pd.DataFrame:
    """One row per compared pair (method < opponent by name) with the method's win rate (ties split)
    and its 95 % bootstrap interval, plus wins / losses / ties and the vote and item counts."""
    if resample not in ("items", "votes"):
        raise ConfigError(f"resample must be items or votes, got {resample!r}")
    v = _Votes.of(df)
    w = v.weights(np.random.default_rng(seed), resamples, resample)
    rows = []
    for a, b in sorted(set(zip(v.i.tolist(), v.j.tolist(), strict=True))):
        sel = (v.i == a) & (v.j == b)
        s, t = v.score[sel], v.tie[sel]
        ws = w[:, sel]
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = (ws * s).sum(1) / ws.sum(1)
        lo, hi = _ci(boot)
        rows.append({"method": v.methods[a], "opponent": v.methods[b], "votes": int(sel.sum()),
                     "items": int(len(np.unique(v.item[sel]))), "wins": int((s == 1).sum()),
                     "losses": int((s == 0).sum()), "ties": int(t.sum()), "win_rate": float(s.mean()),
                     "ci_low": lo, "ci_high": hi, "tie_rate": float(t.mean())})
    return pd.DataFrame(rows)


def _bradley_terry(v: _Votes, weight: np.ndarray, iters: int = 500) -> np.ndarray:
    """Log-strengths (mean 0) from weighted votes, by MM with the weak tied prior."""
    m = len(v.methods)
    wins, games = np.zeros((m, m)), np.zeros((m, m))
    np.add.at(wins, (v.i, v.j), weight * v.score)
    np.add.at(wins, (v.j, v.i), weight * (1 - v.score))
    np.add.at(games, (v.i, v.j), weight)
    games = games + games.T
    compared = games > 0
    wins = wins + BT_PRIOR / 2 * compared
    games = games + BT_PRIOR * compared
    total = wins.sum(1)
    p = np.ones(m)
    for _ in range(iters):
        denom = (games / (p[:, None] + p[None, :])).sum(1)
        new = np.where(denom > 0, total / np.where(denom > 0, denom, 1), p)
        new = new / np.exp(np.log(new).mean())
        if np.allclose(new, p, rtol=1e-10, atol=0):
            p = new
            break
        p = new
    return np.log(p) - np.log(p).mean()


def bradley_terry(df: pd.DataFrame, *, resamples: int = 1000, seed: int = 0,
                  resample: str = "items") -> pd.DataFrame:
    """Methods ranked by Bradley–Terry log-strength, with 95 % bootstrap intervals."""
    if resample not in ("items", "votes"):
        raise ConfigError(f"resample must be items or votes, got {resample!r}")
    v = _Votes.of(df)
    point = _bradley_terry(v, np.ones(len(v.i)))
    w = v.weights(np.random.default_rng(seed), resamples, resample)
    boot = np.stack([_bradley_terry(v, wk) for wk in w])
    rows = [{"method": name, "strength": float(point[k]), "ci_low": _ci(boot[:, k])[0],
             "ci_high": _ci(boot[:, k])[1]} for k, name in enumerate(v.methods)]
    out = pd.DataFrame(rows).sort_values("strength", ascending=False, kind="stable").reset_index(drop=True)
    out.insert(0, "rank", range(1, len(out) + 1))
    return out


def forest_plot(rates: pd.DataFrame, path: Path) -> list[Path]:
    """Win rates with their intervals, one line per pair (PNG + SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.45 * len(rates) + 1.2))
    y = np.arange(len(rates))[::-1]
    r = rates["win_rate"].to_numpy()
    err = np.vstack([r - rates["ci_low"].to_numpy(), rates["ci_high"].to_numpy() - r])
    ax.errorbar(r, y, xerr=err, fmt="o", capsize=3)
    ax.axvline(0.5, color="gray", lw=0.8, ls="--")
    ax.set_yticks(y, [f"{a} vs {b}" for a, b in zip(rates["method"], rates["opponent"], strict=True)])
    ax.set_xlim(0, 1)
    ax.set_xlabel("win rate of the first method (ties split), 95 % bootstrap CI")
    fig.tight_layout()
    from icd_bench.reports.figures import save_figure

    return save_figure(fig, path)


def write_outputs(rates: pd.DataFrame, ranking: pd.DataFrame | None, out_dir: Path) -> list[Path]:
    """`stats --out`: win-rates.csv, ranking.csv (when there is a ranking) and the forest plot; the paths
    written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rates.to_csv(out_dir / "win-rates.csv", index=False)
    written = [out_dir / "win-rates.csv"]
    if ranking is not None:
        ranking.to_csv(out_dir / "ranking.csv", index=False)
        written.append(out_dir / "ranking.csv")
    return written + forest_plot(rates, out_dir / "win-rates")
