"""A finished run directory as the reports read it: its configuration, records and scores, loaded once."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from icd_bench.store import METRIC_OPTIONS, RunStore


@dataclass(frozen=True)
class RunData:
    """``config`` (the manifest's), ``records`` (each sample's last record, error records included)
    and ``metrics`` (metrics.parquet, long: id, metric, value, error; empty when unscored);
    ``metric_options``: the options each metric key was scored with (metrics.json; empty for scorings
    older than it)."""

    dir: Path
    config: dict
    records: list[dict]
    metrics: pd.DataFrame
    metric_options: dict = field(default_factory=dict)
    # the manifest's: {"saw_mask": true | false | null (unknown)}
    protocol: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.get("preset") or self.config.get("method") or self.dir.name

    @cached_property
    def ok(self) -> list[dict]:
        return [r for r in self.records if r.get("status") == "ok"]

    @property
    def nfe(self) -> list[float]:
        """UNet evaluations per sample, of the records that count them."""
        return [r["nfe"] for r in self.records if r.get("nfe") is not None]

    @property
    def failed(self) -> int:
        """Samples that ended as error records (counted in reports, never averaged)."""
        return len(self.records) - len(self.ok)


def load_run(run: Path) -> RunData:
    run = Path(run)
    store = RunStore(run)
    manifest = store.manifest()  # a missing or corrupt manifest is one RunStoreError
    config = manifest["config"]
    metrics_file = run / "metrics.parquet"
    metrics = pd.read_parquet(metrics_file) if metrics_file.is_file() else pd.DataFrame(
        columns=["id", "metric", "value", "error"])
    try:
        options = json.loads((run / METRIC_OPTIONS).read_text()) if metrics_file.is_file() else {}
    except (OSError, json.JSONDecodeError):
        options = {}
    return RunData(dir=run, config=config, records=store.records(), metrics=metrics, metric_options=options,
                   protocol=manifest.get("protocol")
                   # runs from before the record: the runner's methods never read the mask;
                   # an import is unknown
                   or {"saw_mask": None if config.get("method") == "imported" else False})
