"""The whole workflow, run by Snakemake on a tiny synthetic study."""

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from wfutils import results_of, run_snakemake, write_yaml

from cortexscale.config import check_config
from cortexscale.grid import expand
from cortexscale.references import expand_references
from cortexscale.scaling.table import TABLE_COLUMNS


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tiny_study_end_to_end(tiny_study):
    """The session's tiny study (conftest ``tiny_study``: a fixed-size grid, 2 seeds, the
    planted reference at 3 budgets x 3 sizes, the pretrained arm), read as a user would."""
    work = tiny_study
    path = work / "tiny.yaml"
    results = results_of(work)
    table = pd.read_csv(results / "tables" / "encoding.tsv", sep="\t")
    full = check_config(yaml.safe_load(path.read_text()))
    points, refs = expand(full["grid"]), expand_references(full)
    assert list(table.columns) == list(TABLE_COLUMNS)
    n_rows = (len(points) + len(refs)) * len(full["subjects"]) * len(full["rois"])
    assert len(table) == n_rows
    assert set(table["grid"]) == {p.name for p in points} | {r.name for r in refs}
    assert set(table["seed"]) == {0, 1} and set(table["family"]) == {
        "videogpt", "planted", "latents", "random"}
    for col in ("mean_r", "median_r", "max_r"):
        r = table[col].to_numpy()
        assert np.isfinite(r).all() and (np.abs(r) <= 1).all(), col
    gpt = table[table["family"] == "videogpt"]
    assert (gpt["n_params"] > 0).all() and (gpt["train_flops"] > 0).all()
    # the true latents beat random features in every ROI of every subject
    wide = table.pivot_table(index=["subject", "roi"], columns="family", values="mean_r")
    assert (wide["latents"] > wide["random"]).all(), wide
    parcels = pd.read_csv(results / "tables" / "parcels.tsv", sep="\t")
    n_points = len(points) + len(refs)
    assert len(parcels) == n_points * full["fmri"]["n_parcels"] * len(full["subjects"])
    assert (results / "tables" / "encoding.parquet").is_file()

    # honest fits: none on fewer than 3 x values, no correlation asymptote above 1
    fits = pd.read_csv(results / "tables" / "scaling_fits.tsv", sep="\t")
    fitted = fits[fits["status"] == "ok"]
    assert (fitted["n_x"] >= 3).all()
    sat = fitted[fitted["law"] == "saturating"]
    assert (sat["r_inf"] <= 1 + 1e-12).all()
    # the planted reference's allocation is identified: finite N* and D* with intervals
    alloc = pd.read_csv(results / "tables" / "allocation.tsv", sep="\t")
    law = alloc[(alloc["family"] == "planted") & (alloc["method"] == "isoflop_power_law")
                & (alloc["target"] == "val_loss")]
    assert len(law) == 1 and law["status"].iloc[0] == "ok", alloc.to_string()
    for col in ("exponent_n", "exponent_n_lo", "exponent_n_hi", "exponent_d"):
        assert np.isfinite(law[col]).all(), col
    summary = (results / "summary.md").read_text()
    assert "tenfold" not in summary
    assert "Planted reference" in summary and "seeds" in summary
    for fig in ("frontier.png", "loss_curves.png", "precision.png", "brain_map.png",
                "scaling_fits.png", "factors.png", "scaling_data_size.png",
                "scaling_params.png", "isoflop.png", "allocation.png"):
        assert (results / "figures" / fig).read_bytes()[:4] == b"\x89PNG", fig
    report = run_snakemake(work, "--configfile", str(path), "--report",
                           str(work / "report.html"))
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    html = (work / "report.html").read_text(errors="replace")
    assert "scaling_fits.tsv" in html and "frontier.png" in html
    # every stage left its log
    assert (work / "logs" / "tiny" / "tokenizer.log").is_file()
    # every file under results/ is an output Snakemake knows (a failed job leaves none behind);
    # Snakemake lists the files inside directory() outputs too: those folders are declared
    folders = ("results/tiny/data/fmri/stimuli/", "results/tiny/pretrained/models/")
    untracked = run_snakemake(work, "--configfile", str(path), "--list-untracked")
    assert untracked.returncode == 0, untracked.stderr[-3000:]
    stray = [line.strip() for line in (untracked.stdout + untracked.stderr).splitlines()
             if line.strip().startswith("results/") and not line.strip().startswith(folders)]
    assert not stray, stray


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_second_run_has_nothing_to_do(tiny_study, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(tiny_study, work, symlinks=True)
    again = run_snakemake(work, "-n", "--configfile", str(work / "tiny.yaml"))
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_second_study_leaves_the_first_intact(tiny_study, tmp_path):
    """Another study (another name and corpus) writes to its own folder: the first study's
    files are untouched and Snakemake still finds it up to date."""
    work = tmp_path / "work"
    shutil.copytree(tiny_study, work, symlinks=True)
    first = yaml.safe_load((work / "tiny.yaml").read_text())
    other = {**first, "study": "other", "seed": 1}
    write_yaml(work / "other.yaml", other)
    before = {p: p.stat().st_mtime_ns for p in results_of(work).rglob("*") if p.is_file()}
    corpus = "results/other/data/corpus/frames.h5"
    proc = run_snakemake(work, corpus, "--cores", "1", "--configfile", str(work / "other.yaml"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / corpus).is_file()
    after = {p: p.stat().st_mtime_ns for p in results_of(work).rglob("*") if p.is_file()}
    assert after == before
    again = run_snakemake(work, "-n", "--configfile", str(work / "tiny.yaml"))
    assert "Nothing to be done" in again.stdout + again.stderr
