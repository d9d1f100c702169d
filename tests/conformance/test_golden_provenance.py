"""Each golden names exactly its own reference(s) — repository and commit —, the environment it was
made in and the full command that made it (no elided arguments)."""

from __future__ import annotations

import json

import pytest

from golden_inputs import GOLDENS

REFERENCES = {"icd": "yandex-research/invertible-cd", "pie": "cure-lab/PnPInversion",
              "renoise": "garibida/ReNoise-Inversion", "infedit": "sled-group/InfEdit",
              "dino": "facebookresearch/dino", "turboedit": "GiilDe/turbo-edit"}
#: the references each golden compares against; any other named in its provenance is a defect
OWN = {"p2p_alignment": {"icd", "pie"}, "p2p_controllers": {"icd", "pie"}, "ddim_nti_npi": {"pie"},
       "icd_sd15": {"icd"}, "pie_metrics": {"pie"}, "ef_ddpm": {"pie"}, "icd_training": {"icd"},
       "renoise": {"renoise"}, "renoise_loop": {"renoise"}, "infedit_ddcm": {"infedit"},
       "infedit_uac": {"infedit"}, "pie_p2p": {"pie"}, "pie_model_metrics": {"pie", "dino"},
       "pie_export": {"pie", "dino"}, "icd_metrics": set(), "pie_baselines": {"pie"},
       "pie_pnp": {"pie"}, "pie_pix2pix_zero": {"pie"},
       "turboedit": {"turboedit"}}


def test_every_golden_is_listed():
    assert {p.stem for p in GOLDENS.glob("*.json")} == set(OWN)


@pytest.mark.parametrize("name", sorted(OWN))
def test_a_golden_names_only_its_own_reference_and_its_full_command(name):
    prov = json.loads((GOLDENS / f"{name}.json").read_text())["provenance"]
    named = {k for k in prov if k in REFERENCES}
    assert named == OWN[name]
    for k in named:
        assert prov[k]["repository"] == REFERENCES[k] and len(prov[k]["commit"]) == 40
    if name == "icd_metrics":  # one reference, under its own key
        assert prov["reference"]["repository"] == REFERENCES["icd"]
    words = prov["command"].split()
    assert "python" in words[0] and words[1].startswith("tools/conformance/") and "..." not in prov["command"]
    assert "environment" in prov or "versions" in prov
