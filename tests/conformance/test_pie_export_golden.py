"""A run exported with ``icd-bench export --layout piebench`` reads, in PIE-Bench's own
``evaluation/evaluate.py``, exactly as ``icd-bench score`` with the ``pie`` flavour reads the run (golden:
pie_export.json, made by tools/conformance/pie_export.py running evaluate.py as a script from the
export folder).

The run (golden_inputs.pie_export_tree): four PIE-Bench edits — a box mask, a mask overrunning the grid, a
mask of the whole frame (no unedited part: the evaluator writes ``nan``, the project an undefined value
left out of the mean) and a mask of only the forced border — with bracketed prompts. The exported files are
checked byte for byte against the ones the evaluator read, then each of its eight columns against the
project's metric: structure distance, the unedited part's PSNR / LPIPS / MSE / SSIM, CLIP similarity of
the source (with the source prompt), of the edit and of the edit's masked part. Tolerances as in the
metric goldens: 1e-6 relative for the pixel metrics, 1e-5 for the model-based ones (two implementations of
one float32 network; pie_metrics.json, pie_model_metrics.json).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math

import pytest

from icd_bench.metrics.base import MetricSpec, ScoreItem
from icd_bench.metrics.score import load_items, score_run
from icd_bench.registry import METRICS

import golden_inputs as gi
from golden_inputs import golden

G = golden("pie_export.json")
METHOD = f"1_{gi.PIE_EXPORT_METHOD}"
#: evaluate.py's column → (the project's metric, relative tolerance)
COLUMNS = {
    "structure_distance": ("structure_distance:whole:pie", 1e-5),
    "psnr_unedit_part": ("psnr:background:pie", 1e-6),
    "lpips_unedit_part": ("lpips:background:pie", 1e-5),
    "mse_unedit_part": ("mse:background:pie", 1e-6),
    "ssim_unedit_part": ("ssim:background:pie", 1e-6),
    "clip_similarity_target_image": ("clip_t:whole:pie", 1e-5),
    "clip_similarity_target_image_edit_part": ("clip_t:edited:pie", 1e-5),
}
OPTIONS = {"lpips_net": "squeeze", "clip_model": gi.CLIP_NAME, "clip_pretrained": "openai"}


def official() -> dict[str, dict[str, float]]:
    rows = list(csv.DictReader(io.StringIO(G["evaluation_result_csv"])))
    return {r["file_id"]: {k.split("|", 1)[1]: float(v) for k, v in r.items() if "|" in k} for r in rows}


@pytest.fixture(scope="module")
def exported(pie_export_tree):
    return pie_export_tree


def test_the_export_is_the_tree_the_official_evaluator_read(exported):
    files = {str(p.relative_to(exported["eval"])): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(exported["images"].rglob("*")) if p.is_file()}
    assert files == G["exported_files"]
    assert len(files) == len(gi.PIE_EXPORT_CASES)


def test_every_column_of_evaluate_py_equals_score_with_the_pie_flavour(exported):
    want = official()
    assert set(want) == {c[0] for c in gi.PIE_EXPORT_CASES}
    metrics = [m for m, _ in COLUMNS.values()]
    rows, _ = score_run(exported["run"], metrics=metrics, device="cpu", options=OPTIONS)
    got = rows.pivot(index="id", columns="metric", values="value")
    for sample_id, columns in want.items():
        for column, (metric, rel) in COLUMNS.items():
            value, expected = float(got.loc[sample_id, metric]), columns[column]
            if math.isnan(expected):  # the whole frame is edited: evaluate.py writes "nan"
                assert math.isnan(value), (sample_id, column, value)
            else:
                assert value == pytest.approx(expected, rel=rel), (sample_id, column, value, expected)
    # the all-mask sample's 4 columns
    assert sum(math.isnan(v) for c in want.values() for v in c.values()) == 4

    # the dataset's column: CLIP similarity of each source with its (bracket-stripped) source prompt
    items, failed, _ = load_items(exported["run"])
    assert not failed
    spec = MetricSpec.parse("clip_t:whole:pie")
    metric = METRICS.get("clip_t")(spec, "cpu", OPTIONS)
    metric.check()
    sources = [ScoreItem(i.id, output=i.source, source=i.source, target_prompt=i.source_prompt)
               for i in items]
    for item, row in zip(items, metric.score(sources), strict=True):
        assert row[spec.key] == pytest.approx(want[item.id]["clip_similarity_source_image"], rel=1e-5)
