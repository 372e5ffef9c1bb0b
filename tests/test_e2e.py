"""The whole workflow, run by Snakemake on a tiny synthetic study."""

import numpy as np
import pandas as pd
import pytest
from wfutils import run_snakemake, tiny_config, write_yaml

from cortexscale.config import check_config
from cortexscale.grid import expand

COLUMNS = [
    "grid", "data_size", "hidden", "layers", "heads", "precision", "subject", "roi",
    "n_parcels", "mean_r", "median_r", "max_r", "mean_normalised", "n_significant", "n_params", "train_flops", "tokens_seen",
    "final_val_loss",
]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tiny_study_end_to_end(tmp_path):
    cfg = tiny_config()
    path = write_yaml(tmp_path / "tiny.yaml", cfg)
    proc = run_snakemake(tmp_path, "--cores", "2", "--configfile", str(path), timeout=280)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]

    table = pd.read_csv(tmp_path / "results" / "tables" / "encoding.tsv", sep="\t")
    full = check_config(cfg)
    points = expand(full["grid"])
    assert list(table.columns[: len(COLUMNS)]) == COLUMNS
    assert len(table) == len(points) * len(full["subjects"]) * len(full["rois"])
    assert set(table["grid"]) == {p.name for p in points}
    for col in ("mean_r", "median_r", "max_r"):
        r = table[col].to_numpy()
        assert np.isfinite(r).all() and (np.abs(r) <= 1).all(), col
    assert (table["n_params"] > 0).all() and (table["train_flops"] > 0).all()
    for fig in ("scaling_data_size.png", "scaling_params.png"):
        png = tmp_path / "results" / "figures" / fig
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    parcels = pd.read_csv(tmp_path / "results" / "tables" / "parcels.tsv", sep="\t")
    assert len(parcels) == len(points) * full["fmri"]["n_parcels"] * len(full["subjects"])
    assert (tmp_path / "results" / "tables" / "encoding.parquet").is_file()
    fits = pd.read_csv(tmp_path / "results" / "tables" / "scaling_fits.tsv", sep="\t")
    assert set(fits["axis"]) >= {"data_size", "n_params"}
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "tenfold increase" in summary and "compute frontier" in summary
    assert (tmp_path / "results" / "figures" / "frontier.png").stat().st_size > 1000
    for fig in ("loss_curves.png", "precision.png", "brain_map.png", "scaling_fits.png",
                "factors.png"):
        assert (tmp_path / "results" / "figures" / fig).stat().st_size > 1000
    report = run_snakemake(tmp_path, "--configfile", str(path), "--report",
                           str(tmp_path / "results" / "report.html"))
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    html = (tmp_path / "results" / "report.html").read_text(errors="replace")
    assert "scaling_fits.tsv" in html and "frontier.png" in html
    # every stage left its log
    assert (tmp_path / "logs" / "tokenizer.log").is_file()

    again = run_snakemake(tmp_path, "--cores", "2", "--configfile", str(path))
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
