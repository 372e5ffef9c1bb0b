import json
import os

import pandas as pd
import pytest

from cortexscale.io.atomic import atomic_path, write_json, write_tsv


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("hello")
        assert not target.exists()
    assert target.read_text() == "hello"
    assert list(target.parent.iterdir()) == [target]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_outputs_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


def test_write_json_and_tsv(tmp_path):
    import numpy as np

    write_json(tmp_path / "a.json", {"n": np.int64(3), "v": np.arange(2)})
    assert json.loads((tmp_path / "a.json").read_text()) == {"n": 3, "v": [0, 1]}
    write_tsv(tmp_path / "t.tsv", pd.DataFrame({"a": [1, 2]}))
    assert pd.read_csv(tmp_path / "t.tsv", sep="\t")["a"].tolist() == [1, 2]
