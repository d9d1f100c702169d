"""The paper's published numbers (`reports/paper/*.csv`) are well-formed data a report can join on,
and agree where the paper prints the same configuration twice."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

PAPER = Path(__file__).parents[1] / "reports" / "paper"
COLUMNS = ["table", "section", "configuration", "method", "backbone", "steps", "metric", "value",
           "higher_is_better", "note"]
FILES = ["table1", "table2", "table3", "table4", "table5", "table6", "piebench"]


def load(name: str) -> pd.DataFrame:
    return pd.read_csv(PAPER / f"{name}.csv", dtype=str, keep_default_na=False)


@pytest.mark.parametrize("name", FILES)
def test_schema_values_and_unique_keys(name):
    df = load(name)
    assert list(df.columns) == COLUMNS
    assert len(df) > 0 and set(df["table"]) == {name}
    df["value"].astype(float)  # every value is a number
    assert set(df["higher_is_better"]) <= {"true", "false"}
    assert not df.duplicated(["section", "configuration", "metric"]).any()


def test_table2_rows_and_the_repeated_configurations_of_table5_agree():
    t2, t5 = load("table2"), load("table5")
    labels = {c.split(":")[0] for c in t2["configuration"] if ":" in c}
    assert labels == {"A", "B", "C", "E", "F", "G", "H", "I", "J", "K"}
    for section, t2_row, t5_row in (("unguided", "G: fCD4 + L_f | CD4 + L_r", "E: fCD4 + L_f | CD4 + L_r"),
                                    ("guided", "K: fCD4 + L_f | CD4 + L_r + d.CFG",
                                     "E: fCD4 + L_f | CD4 + L_r + d.CFG")):
        a = (t2[(t2.section == section) & (t2.configuration == t2_row)]
             .set_index("metric")["value"].astype(float))
        b = t5[t5.configuration == t5_row].set_index("metric")["value"].astype(float)
        common = a.index.intersection(b.index)
        assert len(common) == 3
        assert (a[common] == b[common]).all(), (section, a[common], b[common])
