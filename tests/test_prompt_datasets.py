"""Generation datasets: the published prompt lists as they are, and coco-captions without images."""

from __future__ import annotations

import pandas as pd
import pytest

from icd_bench.data.coco import CocoCaptions
from icd_bench.data.prompts import Prompts
from icd_bench.errors import ConfigError, SampleError
from icd_bench.runner import RunConfig, Runner, open_dataset
from icd_bench.store import RunStore

from conftest import published


@pytest.mark.parametrize("name, first_id", [("generation_parti-prompts.csv", "0"),
                                            ("generation_coco.csv", "COCO_val2014_000000246955")])
def test_the_published_prompt_lists_read_as_they_are(name, first_id):
    path = published(name)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    ds = Prompts(data_dir=path)
    assert len(ds.ids()) == len(table) and ds.ids()[0] == first_id
    assert [ds.load(i).target_prompt for i in ds.ids()[:5]] == [c.strip() for c in table["caption"][:5]]
    assert ds.load(ds.ids()[-1]).image is None


def test_a_prompts_file_of_lines_and_what_it_refuses(tmp_path):
    (tmp_path / "p.txt").write_text("a red circle\n\n  a blue square \n")
    ds = Prompts(data_dir=tmp_path / "p.txt")
    assert ds.ids() == ["1", "2"] and ds.load("2").source_prompt == "a blue square"
    with pytest.raises(ConfigError, match="has no source images: it supports --task generate"):
        open_dataset("prompts", data_dir=tmp_path / "p.txt", task="edit")
    with pytest.raises(ConfigError, match="needs --data-dir"):
        Prompts()
    (tmp_path / "bad.csv").write_text("id,text\n1,a\n")
    with pytest.raises(ConfigError, match="caption or prompt column; found id, text"):
        Prompts(data_dir=tmp_path / "bad.csv")


def test_coco_captions_generates_from_the_published_list_without_images(tmp_path):
    (tmp_path / "generation_coco.csv").write_text(
        ",file_name,caption\n7,COCO_val2014_000000000007.jpg,A bus.\n")
    ds = open_dataset("coco-captions", data_dir=tmp_path, task="generate")
    assert ds.ids() == ["COCO_val2014_000000000007"] and ds.load(ds.ids()[0]).image is None
    with pytest.raises(SampleError, match="image file not found"):  # inversion needs the image
        open_dataset("coco-captions", data_dir=tmp_path, task="invert").load("COCO_val2014_000000000007")
    assert isinstance(ds, CocoCaptions)


def test_generate_runs_on_a_prompts_file(tmp_path, tiny_sd15_dir):
    (tmp_path / "p.txt").write_text("a red circle\na blue square\n")
    cfg = RunConfig(method="ddim", dataset="prompts", data_dir=tmp_path / "p.txt",
                    backbone=str(tiny_sd15_dir), task="generate", out=tmp_path / "run",
                    overrides=["num_inference_steps=2"], device="cpu")
    summary = Runner(cfg).run()
    recs = RunStore(tmp_path / "run").records()
    assert summary.ok == 2 and [r["target_prompt"] for r in recs] == ["a red circle", "a blue square"]
    assert all("source" not in r["outputs"] for r in recs)
