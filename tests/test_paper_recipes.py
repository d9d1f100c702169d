"""The paper-scale training recipes: they load as the trainers read them, carry the paper's and the
official scripts' settings, and say where each value comes from."""

from __future__ import annotations

import pytest

from icd_bench.config import tomllib
from icd_bench.icd.train import CFG_SECTIONS, ICD_SECTIONS
from icd_bench.training_utils import load_recipe

from conftest import REPO

RECIPES = {"cfg-distill-sd15.toml": CFG_SECTIONS, "icd-sd15.toml": ICD_SECTIONS,
           "icd-sdxl.toml": ICD_SECTIONS}


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_setting_names_its_source(name):
    path = REPO / "training" / name
    load_recipe(path, RECIPES[name])  # the trainer's own reader: unknown keys or bad values fail here
    train = tomllib.loads(path.read_text())["train"]
    text = path.read_text().splitlines()
    at = {line.split("=")[0].strip(): i
          for i, line in enumerate(text) if "=" in line and not line.startswith("#")}
    settings = ("steps", "batch_size", "lr", "warmup", "loss", "guidance_scales", "mixed_precision")
    # a comment on the setting's line or on the line above it
    uncommented = [k for k in settings
                   if k in train and "#" not in text[at[k]] and not text[at[k] - 1].startswith("#")]
    assert not uncommented, f"{name}: no source given for {uncommented}"


def test_stage_2_recipes_have_the_papers_and_the_release_s_values():
    sd15 = load_recipe(REPO / "training" / "icd-sd15.toml", ICD_SECTIONS)["train"]
    sdxl = load_recipe(REPO / "training" / "icd-sdxl.toml", ICD_SECTIONS)["train"]
    for cfg in (sd15, sdxl):
        assert (cfg.lr, cfg.steps, cfg.lora_rank, cfg.lambda_f, cfg.lambda_r) == (8e-6, 6000, 64, 1.5, 1.5)
        assert ((cfg.loss, cfg.huber_c, cfg.lora_alpha / cfg.lora_rank, cfg.solver_steps)
                == ("huber", 0.001, 0.125, 50))
    assert sd15.guidance_scales == (1.0, 8.0, 12.0, 16.0, 20.0)  # Appendix A
    assert sd15.boundary_set().reverse == (259, 519, 779, 999) and sd15.boundary_set().forward[0] == 19
    assert sdxl.boundary_set().reverse == (249, 499, 699, 999)
    assert 8 * sd15.batch_size == 512 and 8 * sdxl.batch_size == 128  # Appendix A's global batches on 8 GPUs
