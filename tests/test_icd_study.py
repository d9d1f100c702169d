"""The Table 2 study: plans are checked up front; configurations train once; rows become a table."""

from __future__ import annotations

import pandas as pd
import pytest

from icd_bench.errors import ConfigError
from icd_bench.studies.table2 import config_recipe, load_plan, run_study

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPE = """
[data]
source = "toy"
[train]
backbone = "tiny-sd15"
steps = 1
batch_size = 2
lora_rank = 4
lora_alpha = 4.0
threads = 1
checkpoint_every = 1
log_every = 1
"""

PLAN = """
description = "a two-configuration study"
recipe = "recipe.toml"
limit = 3
ddim_steps = 2
guided_scale = 3.0
metrics = ["psnr", "mse", "toy_match"]
[train]
steps = 2
[configs.A]
label = "fCD2 | CD2"
reverse_boundaries = [499, 999]
forward_boundaries = [19, 499]
lambda_f = 0.0
lambda_r = 0.0
[configs.G]
label = "fCD4 + L_f | CD4 + L_r"
[[rows]]
name = "DDIM2"
config = "ddim"
[[rows]]
name = "A"
config = "A"
[[rows]]
name = "G"
config = "G"
[[rows]]
name = "K"
config = "G"
decode = "guided-dcfg"
"""


def _plan(tmp_path, text=PLAN):
    (tmp_path / "recipe.toml").write_text(RECIPE)
    (tmp_path / "plan.toml").write_text(text)
    return tmp_path / "plan.toml"


def test_configuration_recipes_apply_the_overrides(tmp_path):
    plan = load_plan(_plan(tmp_path))
    a, g = config_recipe(plan, "A")["train"], config_recipe(plan, "G", teacher="s1.safetensors")["train"]
    assert a.steps == g.steps == 2  # the plan's [train] overrides the recipe's steps = 1
    assert a.reverse_boundaries == (499, 999) and a.boundary_set().steps == 2
    assert (a.lambda_f, a.lambda_r) == (0.0, 0.0) and (g.lambda_f, g.lambda_r) == (1.5, 1.5)
    assert g.teacher == "s1.safetensors" and g.boundary_set().steps == 4


@pytest.mark.parametrize("change, message", [
    (('config = "G"\ndecode = "guided-dcfg"', 'config = "Z"'), "config 'Z'"),
    (('decode = "guided-dcfg"', 'decode = "sideways"'), "decode 'sideways'"),
    (("lambda_f = 0.0", "lambda_ff = 0.0"), "unknown \\[train\\] key"),
    (("lambda_r = 0.0", "lambda_r = -1.0\ntarget = 'nowhere'"), "target must be online or ema"),
    (('recipe = "recipe.toml"', 'recipe = "recipe.toml"\ncolour = 1'), "unknown key"),
])
def test_bad_plans_are_refused_before_training(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_plan(_plan(tmp_path, PLAN.replace(*change)))


def test_the_study_trains_each_configuration_once_and_writes_the_table(tmp_path):
    reuse = ('[configs.Gx]\nlabel = "G again"\n'
             f'adapters = "{(tmp_path / "work" / "train" / "G").as_posix()}"\n')
    plan = load_plan(_plan(tmp_path, PLAN.replace("[[rows]]", reuse + "[[rows]]", 1)
                           + '[[rows]]\nname = "Gx"\nconfig = "Gx"\n'))
    logs: list[str] = []
    md = run_study(plan, tmp_path / "work", tmp_path / "out", device="cpu", progress=False, log=logs.append)
    table = pd.read_csv(tmp_path / "out" / "table2.csv")
    assert list(table["row"]) == ["DDIM2", "A", "G", "K", "Gx"]
    assert list(table["nfe"]) == [4, 4, 8, 8, 8]  # DDIM: 2 + 2; A: 2 + 2; G and K: 4 + 4
    assert table[["psnr", "mse", "toy_match"]].notna().all().all()
    by_row = table.set_index("row")
    assert by_row.loc["Gx", "psnr"] == by_row.loc["G", "psnr"]  # given adapters: G's files, not retrained
    text = md.read_text()
    assert ("fCD2 \\| CD2" in text and "fCD4 + L_f \\| CD4 + L_r + d.CFG" in text
            and "fDDIM2 \\| DDIM2" in text)
    assert "Guided decoding, w = 3" in text and "icd-bench toy table2 --plan" in text
    assert sum("training configuration" in line for line in logs) == 2  # G trained once for rows G and K
    trained = (tmp_path / "work" / "train" / "G" / "cdm.safetensors").stat().st_mtime_ns
    logs.clear()
    run_study(plan, tmp_path / "work", tmp_path / "out", device="cpu", only=["K"],
              progress=False, log=logs.append)
    assert not any("training configuration" in line for line in logs)
    assert (tmp_path / "work" / "train" / "G" / "cdm.safetensors").stat().st_mtime_ns == trained
    again = pd.read_csv(tmp_path / "out" / "table2.csv")  # K recomputed, the others kept as they were
    assert list(again["row"]) == ["DDIM2", "A", "G", "K", "Gx"] and any("kept from" in line for line in logs)
    pd.testing.assert_frame_equal(again.drop(columns="run"), table.drop(columns="run"))
    run_study(plan, tmp_path / "work", tmp_path / "fresh", device="cpu", only=["K"], progress=False,
              log=logs.append)
    assert list(pd.read_csv(tmp_path / "fresh" / "table2.csv")["row"]) == ["K"]  # nothing to keep
    with pytest.raises(ConfigError, match="no row named Q"):
        run_study(plan, tmp_path / "work", tmp_path / "out", only=["Q"], progress=False)
