"""The HTML gallery, rendered in headless Chromium: prompts (even hostile ones) show as text, images
load from relative paths, rows sort by a metric, and the page draws something."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from icd_bench.reports.html_gallery import write_gallery

HOSTILE = "a cat <script>document.title='pwned'</script> & \"friends\""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def chromium():
    path = _chromium()
    if path is None:
        pytest.skip("no Chromium on PATH: install Debian's `chromium` (`.ci/run` does, where it runs as root "
                    "with apt; see docs/contributing.md)")
    return path


def make_run(root, name, values, prompts):
    run = root / name
    (run / "images").mkdir(parents=True)
    (run / "sources").mkdir()
    (run / "manifest.json").write_text(json.dumps({"format": 1, "config": {"preset": name, "task": "edit"}}))
    rng = np.random.default_rng(len(name))
    with (run / "records.jsonl").open("w") as f:
        for k, p in enumerate(prompts):
            for sub in ("images", "sources"):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                    run / sub / f"s{k}.png")
            f.write(json.dumps({"id": f"s{k}", "status": "ok", "nfe": 8, "seconds": 0.1, "source_prompt": p,
                                "target_prompt": p + " edited",
                                "outputs": {"image": f"images/s{k}.png",
                                            "source": f"sources/s{k}.png"}}) + "\n")
    pd.DataFrame([{"id": f"s{k}", "metric": "psnr", "value": v, "error": None}
                  for k, v in enumerate(values)]).to_parquet(run / "metrics.parquet")
    return run


def render(chromium, page, *args):
    res = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                          "--allow-file-access-from-files", *args, page],
                         capture_output=True, text=True, timeout=120)
    return res


def test_gallery_in_a_browser(tmp_path, chromium):
    a = make_run(tmp_path / "runs", "icd-toy", [30.0, 10.0, 20.0], [HOSTILE, "a dog", "a bird"])
    b = make_run(tmp_path / "runs", "ddim-toy", [25.0, 26.0, 27.0], [HOSTILE, "a dog", "a bird"])
    page = write_gallery([a, b], tmp_path / "site" / "gallery.html")
    text = page.read_text()
    assert "<script>document.title" not in text and "&lt;script&gt;" in text
    assert 'src="../runs/icd-toy/images/s0.png"' in text  # relative paths
    # sorted by icd-toy's psnr (column 4 = its output, 5 = its psnr), descending
    dom = render(chromium, "--dump-dom", "--virtual-time-budget=10000", page.as_uri() + "#sort=5&desc").stdout
    assert 'data-images="9/9"' in dom  # 3 sources + 2 runs × 3 outputs, every one loaded
    assert "<title>icd-bench gallery" in dom and "pwned" not in dom.split("</title>")[0]
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom
    order = [dom.index(f"<td>s{k}</td>") for k in (0, 2, 1)]  # 30 > 20 > 10
    assert order == sorted(order)
    assert 'data-sorted="5:desc"' in dom
    shot = tmp_path / "shot.png"
    res = render(chromium, f"--screenshot={shot}", "--window-size=1200,700", page.as_uri())
    assert shot.is_file(), res.stderr[-500:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10  # text and images drawn, not a blank page


def test_page_without_a_browser_escapes_links_relatively_and_shows_failures_and_warnings(tmp_path):
    a = make_run(tmp_path / "runs", "icd-toy", [1.0, 2.0], [HOSTILE, "a dog"])
    with (a / "records.jsonl").open("a") as f:
        f.write(json.dumps({"id": "bad", "status": "failed", "error": "image <unreadable>"}) + "\n")
        f.write(json.dumps({"id": "s1", "status": "ok", "nfe": 8, "seconds": 0.1, "source_prompt": "a dog",
                            "target_prompt": "a cat", "warnings": ["blend word 'x' is not in <b>it</b>"],
                            "outputs": {"image": "images/s1.png", "source": "sources/s1.png"}}) + "\n")
    page = write_gallery([a], tmp_path / "g.html")
    text = page.read_text()
    assert (text.count("warning: ") == 1
            and "warning: blend word &#x27;x&#x27; is not in &lt;b&gt;it&lt;/b&gt;" in text)
    assert HOSTILE not in text and "&lt;script&gt;" in text and "&quot;friends&quot;" in text
    assert 'src="runs/icd-toy/images/s1.png"' in text
    assert "failed: image &lt;unreadable&gt;" in text


def test_run_with_score_and_report_ends_with_a_page_to_open(tmp_path):
    import sys

    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "icd_bench", "run", "--method", "ddim-toy-inversion",
                          "--dataset", "demo", "--task", "invert", "--limit", "2",
                          "--set", "num_inference_steps=5", "--out", str(out), "--score", "--report"],
                         capture_output=True, text=True,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "", "COLUMNS": "200", "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "run summary" in res.stdout and "scores of" in res.stdout and "toy_match" in res.stdout
    page = out / "gallery.html"
    assert f"gallery: {page.resolve()}" in res.stdout.replace("\n", "")
    text = page.read_text()
    assert text.count("<tr data-k0=") == 2 and 'src="images/' in text and "psnr" in text
