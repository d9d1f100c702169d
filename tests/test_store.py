import json

import numpy as np
import pytest
import torch
from PIL import Image

from icd_bench.errors import RunStoreError
from icd_bench.store import RunStore, config_hash, records_name, tensor_to_pil


def manifest(**config):
    config = {"method": "ddim", "params": {"steps": 5}, **config}
    return {"format": 1, "config": config, "config_hash": config_hash(config)}


def test_create_resume_and_refuse(tmp_path):
    out = tmp_path / "run"
    store = RunStore.create_or_resume(out, manifest())
    store.append({"id": "a", "status": "ok"})
    again = RunStore.create_or_resume(out, manifest())
    assert again.finished_ids() == {"a"}
    with pytest.raises(RunStoreError) as err:
        RunStore.create_or_resume(out, manifest(params={"steps": 6}))
    assert "params.steps: 5 there, 6 now" in str(err.value) and "another --out" in str(err.value)


def test_non_run_directory_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunStoreError, match="not an icd-bench run directory"):
        RunStore.create_or_resume(tmp_path, manifest())


def test_torn_last_line_is_ignored_and_next_append_is_clean(tmp_path):
    store = RunStore.create_or_resume(tmp_path / "run", manifest())
    store.append({"id": "a", "status": "ok"})
    path = store.root / records_name((0, 1))
    with open(path, "ab") as f:
        f.write(b'{"id": "b", "sta')  # killed mid-write
    with pytest.warns(UserWarning, match="torn record"):
        assert store.finished_ids() == {"a"}
    store.append({"id": "c", "status": "ok"})
    with pytest.warns(UserWarning, match="torn record"):
        assert store.finished_ids() == {"a", "c"}
    lines = path.read_bytes().split(b"\n")
    assert json.loads(lines[-2]) == {"id": "c", "status": "ok"}


def test_last_record_wins_and_errors_can_be_excluded(tmp_path):
    store = RunStore.create_or_resume(tmp_path / "run", manifest())
    store.append({"id": "a", "status": "error", "error": "boom"})
    store.append({"id": "b", "status": "ok"})
    assert store.finished_ids() == {"a", "b"}
    assert store.finished_ids(include_errors=False) == {"b"}
    store.append({"id": "a", "status": "ok"})
    assert [r["status"] for r in store.records()] == ["ok", "ok"]


def test_shards_write_their_own_files_and_readers_see_the_union(tmp_path):
    m = manifest()
    s0 = RunStore.create_or_resume(tmp_path / "run", m, shard=(0, 2))
    s1 = RunStore.create_or_resume(tmp_path / "run", m, shard=(1, 2))
    s0.append({"id": "a", "status": "ok"})
    s1.append({"id": "b", "status": "ok"})
    assert sorted(p.name for p in s0.records_files()) == ["records.shard-0-of-2.jsonl",
                                                          "records.shard-1-of-2.jsonl"]
    assert RunStore(tmp_path / "run").finished_ids() == {"a", "b"}


def test_images_are_written_atomically_and_exactly(tmp_path):
    store = RunStore.create_or_resume(tmp_path / "run", manifest())
    img = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    rel = store.write_image("images", "x", img)
    assert rel == "images/x.png"
    assert not list((store.root / "images").glob(".*tmp"))
    saved = np.array(Image.open(store.root / rel))
    assert np.array_equal(saved, np.array(tensor_to_pil(img)))
    assert np.abs(saved / 255.0 - img.permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6


def test_unwritable_location(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunStoreError, match="cannot create run directory"):
        RunStore.create_or_resume(blocker / "run", manifest())
