"""The figures by their content: axes, labels, scales, legends and the data they plot.

Each plot function gets a small made-up table; the figure it hands to ``save_figure`` is kept
(the ``saved`` fixture) and read back through matplotlib's objects.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from cortexscale.report import figures as F

CEILING = F.CEILING_LABEL
MODELS = ((64, 2), (32, 2), (64, 4))  # (hidden, layers): a one-at-a-time grid around h64 l2
SUBJECTS = {"sub-01": -0.01, "sub-02": 0.01}  # offsets: the mean over subjects has s.e. 0.01
ROIS = {"early": 0.8, "scene": 0.7}  # ROI -> ceiling of r


def _r(d, h, n, precision, roi) -> float:
    """A mean r that differs for every data size, model, precision and ROI."""
    return 0.1 + d / 1e5 + h / 1e3 + n / 100 + 0.005 * (precision == "bf16") + 0.002 * (
        roi == "scene")


def scaling_table() -> pd.DataFrame:
    """The tidy table's columns the scaling figures use: 2 data sizes x 3 models x 2
    precisions x 2 subjects x 2 ROIs."""
    rows = []
    for d in (1000, 4000):
        for h, n in MODELS:
            for precision in ("fp32", "bf16"):
                grid = f"d{d}_h{h}_l{n}_a2_{precision}_s0"
                for subject, off in SUBJECTS.items():
                    for roi, ceiling in ROIS.items():
                        rows.append({
                            "grid": grid, "family": "videogpt", "data_size": d, "hidden": h,
                            "layers": n, "heads": 2, "precision": precision, "seed": 0,
                            "budget": 0.0, "subject": subject, "roi": roi,
                            "mean_r": _r(d, h, n, precision, roi) + off, "ceiling_r": ceiling,
                            "n_params": 12 * h * h * n, "tokens_seen": 64 * d,
                            "wall_time_s": 1.0 + h + n + 0.5 * (precision == "bf16") + d / 1e3,
                        })
    return pd.DataFrame(rows)


def isoflop_table() -> pd.DataFrame:
    """The scaling table as an IsoFLOP design: no data size, a budget, tokens = C / 6N."""
    t = scaling_table()
    budget = np.where(t["data_size"] == 1000, 1e11, 1e12)
    return t.assign(data_size=0, budget=budget, tokens_seen=budget / (6 * t["n_params"]))


def model_name(h, n) -> str:
    return f"h{h} l{n} a2"


def data_lines(ax) -> list:
    """The lines seaborn drew from the data (not its legend proxies or reference lines)."""
    return [ln for ln in ax.get_lines()
            if ln.get_label().startswith("_child") and len(ln.get_xdata())
            and np.isfinite(np.asarray(ln.get_ydata(), float)).any()]


def series(lines) -> list[tuple]:
    """(x values, y values) of each line, rounded, sorted: comparable as a set of series."""
    return sorted((tuple(np.round(np.asarray(ln.get_xdata(), float), 6)),
                   tuple(np.round(np.asarray(ln.get_ydata(), float), 9))) for ln in lines)


def expected_series(df: pd.DataFrame, by, x: str, y: str = "mean_r") -> list[tuple]:
    """The mean of ``y`` over everything else per ``by`` and ``x``, as :func:`series`."""
    out = []
    for _, part in df.groupby(list(by)):
        m = part.groupby(x)[y].mean().sort_index()
        out.append((tuple(np.round(m.index.to_numpy(float), 6)),
                    tuple(np.round(m.to_numpy(float), 9))))
    return sorted(out)


def named_line(ax, label):
    """The one line of ``ax`` labelled ``label``."""
    found = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(found) == 1, f"{len(found)} lines labelled {label!r} in {ax.get_title()!r}"
    return found[0]


def labels(ax) -> set[str]:
    return {ln.get_label() for ln in ax.get_lines()}


def legend_texts(legend) -> list[str]:
    return [t.get_text() for t in legend.get_texts()]


def segments(collection) -> np.ndarray:
    """The segments of a LineCollection (``vlines``/``hlines``/error bars), (n, 2, 2)."""
    return np.array([np.asarray(s, float) for s in collection.get_segments()])


# ---------------------------------------------------------------------------- scaling, params


def check_bands(ax, se=0.01) -> None:
    """Every data line's band (the collection drawn after it) spans its mean +- ``se``."""
    bands = [c for c in ax.collections if c.get_label().startswith("_child")]
    lines = data_lines(ax)
    assert len(bands) == len(lines)
    for line, band in zip(lines, bands, strict=True):
        v = band.get_paths()[0].vertices
        for x, y in zip(line.get_xdata(), line.get_ydata(), strict=True):
            ys = v[np.isclose(v[:, 0], x), 1]
            np.testing.assert_allclose([ys.min(), ys.max()], [y - se, y + se], atol=1e-9)


def test_plot_scaling_one_line_per_model_and_precision_in_each_roi(tmp_path, saved):
    table = scaling_table()
    refs = pd.DataFrame({"family": ["latents", "latents", "random"], "roi": "early",
                         "mean_r": [0.5, 0.6, 0.05]})
    F.plot_scaling(table, tmp_path / "scaling.png", references=refs)
    fig = saved[tmp_path / "scaling.png"]
    assert len(fig.axes) == 2 and [ax.get_title() for ax in fig.axes] == list(ROIS)
    assert fig.axes[0].get_ylabel() == "mean test r (over parcels)"
    data = table.assign(model=[model_name(h, n) for h, n in zip(table["hidden"],
                                                                table["layers"], strict=True)])
    for ax, (roi, ceiling) in zip(fig.axes, ROIS.items(), strict=True):
        assert ax.get_xlabel() == "pretraining data size (frames)" and ax.get_xscale() == "log"
        assert list(ax.get_xticks()) == [1000, 4000]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1000", "4000"]
        lines = data_lines(ax)
        assert len(lines) == len(MODELS) * 2
        assert series(lines) == expected_series(data[data["roi"] == roi],
                                                ["model", "precision"], "data_size")
        check_bands(ax)
        assert np.allclose(named_line(ax, CEILING).get_ydata(), ceiling)
    early, scene = fig.axes
    latents, random = named_line(early, "latents (reference)"), named_line(early, "random (reference)")
    assert np.allclose(latents.get_ydata(), 0.55) and latents.get_linestyle() == "--"
    assert np.allclose(random.get_ydata(), 0.05) and random.get_linestyle() == ":"
    assert not {"latents (reference)", "random (reference)"} & labels(scene)
    (legend,) = fig.legends
    assert legend_texts(legend) == ["model", *(model_name(h, n) for h, n in MODELS),
                                    "precision", "fp32", "bf16"]


def test_plot_scaling_of_an_isoflop_design_is_against_tokens_seen(tmp_path, saved):
    table = isoflop_table()
    F.plot_scaling(table, tmp_path / "scaling.png")
    fig = saved[tmp_path / "scaling.png"]
    data = table.assign(model=[model_name(h, n) for h, n in zip(table["hidden"],
                                                                table["layers"], strict=True)])
    for ax, roi in zip(fig.axes, ROIS, strict=True):
        assert ax.get_xlabel() == "training tokens seen" and ax.get_xscale() == "log"
        assert series(data_lines(ax)) == expected_series(data[data["roi"] == roi],
                                                         ["model", "precision"], "tokens_seen")
        assert not {"latents (reference)", "random (reference)"} & labels(ax)


def test_plot_params_one_line_per_data_size_and_precision(tmp_path, saved):
    table = scaling_table()
    F.plot_params(table, tmp_path / "params.png")
    fig = saved[tmp_path / "params.png"]
    assert [ax.get_title() for ax in fig.axes] == list(ROIS)
    for ax, (roi, ceiling) in zip(fig.axes, ROIS.items(), strict=True):
        assert ax.get_xlabel() == "parameters" and ax.get_xscale() == "log"
        # a line per data size and precision through the 3 models' parameter counts
        assert series(data_lines(ax)) == expected_series(table[table["roi"] == roi],
                                                         ["data_size", "precision"], "n_params")
        check_bands(ax)
        assert np.allclose(named_line(ax, CEILING).get_ydata(), ceiling)
    assert legend_texts(fig.legends[0]) == ["data size", "1000", "4000", "precision", "fp32",
                                            "bf16"]


def test_plot_params_of_an_isoflop_design_is_coloured_by_budget(tmp_path, saved):
    table = isoflop_table()
    F.plot_params(table, tmp_path / "params.png")
    fig = saved[tmp_path / "params.png"]
    for ax, roi in zip(fig.axes, ROIS, strict=True):
        assert series(data_lines(ax)) == expected_series(table[table["roi"] == roi],
                                                         ["budget", "precision"], "n_params")
    assert legend_texts(fig.legends[0])[:3] == ["budget (FLOPs)", "1e+11", "1e+12"]


# ---------------------------------------------------------------------------- frontier


def frontier_table() -> pd.DataFrame:
    return pd.DataFrame({
        "roi": ["early"] * 4 + ["all"] * 4 + ["early"],
        "train_flops": [1e10, 2e10, 4e10, 8e10] * 2 + [0.0],  # the last: a reference row
        "score": [0.1, 0.3, 0.2, 0.4, 0.15, 0.25, 0.3, 0.2, 0.9],
        "on_front": [True, True, False, True, True, True, True, False, False],
        "data_size": [1000, 1000, 4000, 4000] * 2 + [0],
        "precision": ["fp32", "bf16"] * 4 + ["fp32"],
        "ceiling_r": [0.8] * 4 + [np.nan] * 4 + [0.8],
    })


def test_plot_frontier_points_front_and_ceiling_per_roi(tmp_path, saved):
    frontier = frontier_table()
    F.plot_frontier(frontier, tmp_path / "frontier.png")
    fig = saved[tmp_path / "frontier.png"]
    assert [ax.get_title() for ax in fig.axes] == ["early", "all"]  # in the table's order
    assert fig.axes[0].get_ylabel() == "mean test r (over parcels, subjects)"
    for ax in fig.axes:
        assert ax.get_xlabel() == "training compute (FLOPs)" and ax.get_xscale() == "log"
        part = frontier[(frontier["roi"] == ax.get_title()) & (frontier["train_flops"] > 0)]
        (points,) = ax.collections
        assert sorted(map(tuple, points.get_offsets().tolist())) == sorted(
            zip(part["train_flops"], part["score"], strict=True))  # not the reference row
        front = part[part["on_front"]].sort_values("train_flops")
        line = named_line(ax, "frontier")
        assert list(line.get_xdata()) == list(front["train_flops"])
        assert list(line.get_ydata()) == list(front["score"])
    early, every = fig.axes
    assert np.allclose(named_line(early, CEILING).get_ydata(), 0.8)
    assert CEILING not in labels(every)  # no finite ceiling: no line
    assert legend_texts(fig.legends[0]) == ["data size", "1000", "4000", "precision", "fp32",
                                            "bf16"]


# ---------------------------------------------------------------------------- loss curves


def loss_logs(models=((1000, 32), (1000, 64), (4000, 32), (4000, 64))) -> pd.DataFrame:
    """Training logs of (data size, hidden) runs: 10 steps, validation every 5."""
    steps = np.arange(1, 11)
    return pd.concat([pd.DataFrame({
        "tokens_seen": 64 * steps, "train_loss": 5.0 / steps + h / 100 + d / 1e4,
        "val_loss": np.where(steps % 5 == 0, 4.0 / steps + h / 100 + d / 1e4, np.nan),
        "data_size": d, "hidden": h, "layers": 2, "heads": 2, "precision": "fp32",
    }) for d, h in models], ignore_index=True)


def test_plot_loss_curves_train_lines_and_validation_dots_per_data_size(tmp_path, saved):
    logs = loss_logs()
    F.plot_loss_curves(logs, tmp_path / "loss.png")
    fig = saved[tmp_path / "loss.png"]
    assert [ax.get_title() for ax in fig.axes] == ["data size 1000 frames",
                                                   "data size 4000 frames"]
    first, second = fig.axes
    assert first.get_ylabel() == "loss (lines: train, dots: validation)"
    assert first.get_shared_y_axes().joined(first, second)
    for ax, d in zip(fig.axes, (1000, 4000), strict=True):
        assert ax.get_xlabel() == "tokens seen" and ax.get_xscale() == "linear"
        part = logs[logs["data_size"] == d]
        assert series(data_lines(ax)) == expected_series(part, ["hidden"], "tokens_seen",
                                                         "train_loss")
        (dots,) = ax.collections
        val = part.dropna(subset=["val_loss"])
        assert sorted(map(tuple, dots.get_offsets().tolist())) == sorted(
            zip(val["tokens_seen"].astype(float), val["val_loss"], strict=True))
    assert legend_texts(fig.legends[0]) == ["model", "h32 l2 a2", "h64 l2 a2", "precision",
                                            "fp32"]


def test_plot_loss_curves_of_an_isoflop_design_titles_each_budget(tmp_path, saved):
    logs = loss_logs()
    logs["budget"] = np.where(logs["data_size"] == 1000, 1e11, 1e12)
    F.plot_loss_curves(logs, tmp_path / "loss.png")
    fig = saved[tmp_path / "loss.png"]
    assert [ax.get_title() for ax in fig.axes] == ["budget 1e+11 FLOPs", "budget 1e+12 FLOPs"]


def test_plot_loss_curves_dots_have_the_colour_of_their_line(tmp_path, saved):
    logs = loss_logs(((1000, 32), (1000, 64), (4000, 64)))  # no h32 at data size 4000
    F.plot_loss_curves(logs, tmp_path / "loss.png")
    for ax in saved[tmp_path / "loss.png"].axes:
        line_colours = {to_hex(ln.get_color()) for ln in data_lines(ax)}
        (dots,) = ax.collections
        assert {to_hex(c) for c in dots.get_facecolors()} <= line_colours


# ---------------------------------------------------------------------------- precision


def test_plot_precision_bars_of_mean_r_and_wall_time(tmp_path, saved):
    table = scaling_table()
    F.plot_precision(table, tmp_path / "precision.png")
    fig = saved[tmp_path / "precision.png"]
    score, time = fig.axes
    assert (score.get_xlabel(), score.get_ylabel()) == ("model", "mean test r")
    assert (time.get_xlabel(), time.get_ylabel()) == ("model", "pretraining wall time (s)")
    data = table.assign(model=[model_name(h, n) for h, n in zip(table["hidden"],
                                                                table["layers"], strict=True)])
    names = [model_name(h, n) for h, n in MODELS]
    runs = data.drop_duplicates("grid")  # one wall time per run, not per subject and ROI
    for ax, df, y in ((score, data, "mean_r"), (time, runs, "wall_time_s")):
        assert [t.get_text() for t in ax.get_xticklabels()] == names
        assert legend_texts(ax.get_legend()) == ["fp32", "bf16"]
        means = df.groupby(["precision", "model"])[y].mean()
        # bars by hue (fp32, then bf16), each over the models in order
        assert len(ax.containers) == 2
        for container, precision in zip(ax.containers, ("fp32", "bf16"), strict=True):
            heights = [bar.get_height() for bar in container]
            np.testing.assert_allclose(heights, [means[precision, m] for m in names])
    # the s.e. over data sizes of one run's wall time: (d/1e3 of 1 and 4) -> 1.5
    bar = time.containers[0][0]
    err = [ln for ln in time.get_lines()
           if np.allclose(ln.get_xdata(), bar.get_x() + bar.get_width() / 2)]
    assert len(err) == 1
    np.testing.assert_allclose(sorted(err[0].get_ydata()),
                               [bar.get_height() - 1.5, bar.get_height() + 1.5])


# ---------------------------------------------------------------------------- fits


def fit_curves() -> pd.DataFrame:
    x = np.array([1000.0, 2000.0, 4000.0])
    along_d = [pd.DataFrame({
        "axis": "data_size", "roi": roi, "x": x, "pred": 0.1 + np.log10(x) / 10 + k,
        "lo": 0.05 + np.log10(x) / 10 + k, "hi": 0.15 + np.log10(x) / 10 + k,
        "observed": [0.4 + k, np.nan, 0.46 + k], "hidden": h, "layers": 2, "heads": 2,
        "precision": "fp32", "data_size": np.nan,
    }) for roi in ROIS for k, h in ((0.0, 32), (0.1, 64))]
    along_n = [pd.DataFrame({
        "axis": "n_params", "roi": roi, "x": 10 * x, "pred": [0.2, 0.25, 0.3], "lo": 0.1,
        "hi": 0.4, "observed": [0.21, 0.24, 0.31], "hidden": np.nan, "layers": np.nan,
        "heads": np.nan, "precision": "bf16", "data_size": 1000.0,
    }) for roi in ROIS]
    return pd.concat(along_d + along_n, ignore_index=True)


def test_plot_fits_a_row_per_axis_a_column_per_roi(tmp_path, saved):
    curves = fit_curves()
    F.plot_fits(curves, tmp_path / "fits.png")
    fig = saved[tmp_path / "fits.png"]
    assert len(fig.axes) == 4
    grid = np.array(fig.axes).reshape(2, 2)
    for i, (axis, xlabel, key, names) in enumerate((
            ("data_size", "data size (frames)", "hidden", ["32 2 2 fp32", "64 2 2 fp32"]),
            ("n_params", "parameters", "data_size", ["1000 bf16"]))):
        for j, roi in enumerate(ROIS):
            ax = grid[i, j]
            assert (ax.get_title(), ax.get_xlabel(), ax.get_xscale()) == (roi, xlabel, "log")
            assert ax.get_ylabel() == ("mean test r" if j == 0 else "")
            part = curves[(curves["axis"] == axis) & (curves["roi"] == roi)]
            fitted = [ln for ln in ax.get_lines() if ln.get_label() in names]
            dots = [ln for ln in ax.get_lines() if ln.get_marker() == "o"]
            assert [ln.get_label() for ln in fitted] == names
            assert len(dots) == len(ax.collections) == len(names)
            # a series' line, band and observed dots, in one colour
            for line, band, obs, (_, ser) in zip(fitted, ax.collections, dots,
                                                 part.groupby(key), strict=True):
                assert line.get_color() == obs.get_color()
                np.testing.assert_allclose(line.get_xdata(), ser["x"])
                np.testing.assert_allclose(line.get_ydata(), ser["pred"])
                seen = ser.dropna(subset=["observed"])  # the NaN one is not drawn
                np.testing.assert_allclose(obs.get_xdata(), seen["x"])
                np.testing.assert_allclose(obs.get_ydata(), seen["observed"])
                v = band.get_paths()[0].vertices
                for x, lo, hi in zip(ser["x"], ser["lo"], ser["hi"], strict=True):
                    ys = v[np.isclose(v[:, 0], x), 1]
                    np.testing.assert_allclose([ys.min(), ys.max()], [lo, hi])
        assert legend_texts(grid[i, -1].get_legend()) == names
        assert grid[i, 0].get_legend() is None


def test_plot_fits_of_no_fitted_series_says_so(tmp_path, saved):
    F.plot_fits(fit_curves().iloc[:0], tmp_path / "fits.png")
    (ax,) = saved[tmp_path / "fits.png"].axes
    assert not ax.axison and not ax.get_lines()
    assert [t.get_text() for t in ax.texts] == [
        "no series with >= 3 distinct values of data size or parameters:\nno scaling law fitted"]


# ---------------------------------------------------------------------------- factors


def test_plot_factors_a_panel_per_factor_and_data_size(tmp_path, saved):
    table = scaling_table()  # hidden and layers vary around h64 l2; heads do not
    F.plot_factors(table, tmp_path / "factors.png")
    fig = saved[tmp_path / "factors.png"]
    grid = np.array(fig.axes).reshape(2, 2)
    for i, d in enumerate((1000, 4000)):
        for j, (factor, values, base) in enumerate((("hidden", [32, 64], ("layers", 2)),
                                                    ("layers", [2, 4], ("hidden", 64)))):
            ax = grid[i, j]
            assert ax.get_title() == f"{factor}, data size {d}"
            assert (ax.get_xlabel(), ax.get_ylabel()) == (factor, "mean test r")
            assert [t.get_text() for t in ax.get_xticklabels()] == [str(v) for v in values]
            at = table[(table["data_size"] == d) & (table[base[0]] == base[1])]
            means = at.groupby(["subject", factor])["mean_r"].mean()  # over ROIs, precisions
            lines = [ln for ln in data_lines(ax) if ln.get_marker() == "o"]
            assert len(lines) == len(SUBJECTS)
            for line, subject in zip(lines, SUBJECTS, strict=True):
                np.testing.assert_allclose(line.get_ydata(), [means[subject, v] for v in values])
            # one legend, on the top-right panel
            assert (ax.get_legend() is not None) == ((i, j) == (0, 1))
    assert legend_texts(grid[0, 1].get_legend()) == list(SUBJECTS)


# ---------------------------------------------------------------------------- pretrained


def pretrained_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    members = (("convnext", "model", 10, 0.2), ("dinov2", "model", 100, 0.3),
               ("ens", "ensemble", 110, 0.35))
    table = pd.DataFrame([
        {"model": m, "kind": kind, "n_params": n, "subject": s, "roi": roi,
         "mean_r": r + off + 0.1 * (roi == "scene")}
        for m, kind, n, r in members for s, off in SUBJECTS.items() for roi in ROIS])
    curves = pd.DataFrame([
        {"model": m, "subject": s, "roi": roi, "n_train": nt,
         "mean_r": nt / 1000 + k / 10 + off + 0.1 * (roi == "scene")}
        for k, m in enumerate(("convnext", "dinov2", "ens")) for s, off in SUBJECTS.items()
        for roi in ROIS for nt in (10, 100)])
    return table, curves


def check_errorbars(ax, df, x) -> None:
    """One errorbar per model (kind ``model``): mean over subjects +- 0.01 at each ``x``."""
    assert [c.get_label() for c in ax.containers] == ["convnext", "dinov2"]
    for c in ax.containers:
        m = df[df["model"] == c.get_label()].groupby(x)["mean_r"].mean()
        point, _, (bars,) = c.lines
        np.testing.assert_allclose(np.asarray(point.get_xdata(), float), m.index)
        np.testing.assert_allclose(np.asarray(point.get_ydata(), float), m.to_numpy())
        np.testing.assert_allclose(segments(bars)[:, :, 1],
                                   np.c_[m.to_numpy() - 0.01, m.to_numpy() + 0.01])


def test_plot_pretrained_models_ensembles_and_sample_size(tmp_path, saved):
    table, curves = pretrained_tables()
    F.plot_pretrained(table, curves, tmp_path / "pretrained.png")
    fig = saved[tmp_path / "pretrained.png"]
    grid = np.array(fig.axes).reshape(2, 2)
    for j, roi in enumerate(sorted(ROIS)):
        top, bottom = grid[:, j]
        assert (top.get_title(), top.get_xlabel(), top.get_xscale()) == (roi, "parameters", "log")
        assert (bottom.get_xlabel(), bottom.get_xscale()) == ("fMRI training samples", "log")
        assert top.get_ylabel() == bottom.get_ylabel() == ("mean r" if j == 0 else "")
        check_errorbars(top, table[table["roi"] == roi], "n_params")
        check_errorbars(bottom, curves[curves["roi"] == roi], "n_train")  # no ensemble
        ens = named_line(top, "ens")
        assert ens.get_linestyle() == "--"
        assert np.allclose(ens.get_ydata(), 0.35 + 0.1 * (roi == "scene"))
    assert legend_texts(grid[0, -1].get_legend()) == ["ens", "convnext", "dinov2"]


def test_plot_pretrained_without_a_sample_size_study_leaves_the_bottom_empty(tmp_path, saved):
    table, curves = pretrained_tables()
    F.plot_pretrained(table, curves.iloc[:0], tmp_path / "pretrained.png")
    grid = np.array(saved[tmp_path / "pretrained.png"].axes).reshape(2, 2)
    assert all(len(ax.containers) == 2 for ax in grid[0])
    assert not any(ax.has_data() for ax in grid[1])


# ---------------------------------------------------------------------------- IsoFLOP


def isoflop_curves() -> pd.DataFrame:
    """Per budget a parabola in log10 N peaking at 10^(5 + shift); 1e13 has two N only."""
    rows = []
    for budget, shift, ns in ((1e11, 0.0, (1e4, 1e5, 1e6)), (1e12, 0.5, (1e4, 1e5, 1e6)),
                              (1e13, 1.0, (1e5, 1e6))):
        for target, top in (("score", 0.4), ("val_loss", 3.0)):
            for n in ns:
                m = top - 0.1 * (np.log10(n) - 5 - shift) ** 2
                rows.append({"family": "videogpt", "precision": "fp32", "target": target,
                             "budget": budget, "n_params": n, "mean": m, "lo": m - 0.02,
                             "hi": m + 0.03})
    return pd.DataFrame(rows)


def optimum(budget, status="ok", target="score", family="videogpt", **values) -> dict:
    return {"family": family, "precision": "fp32", "target": target,
            "method": "isoflop_parabola", "status": status, "budget": budget, **values}


def test_plot_isoflop_profiles_parabolas_optima_and_references(tmp_path, saved):
    curves = isoflop_curves()
    allocation = pd.DataFrame([
        optimum(1e11, n_opt=1e5, target_opt=0.4, n_opt_lo=5e4, n_opt_hi=2e5),
        optimum(1e12, status="edge", n_opt=np.nan, target_opt=np.nan, n_opt_lo=np.nan,
                n_opt_hi=np.nan)])
    F.plot_isoflop(curves, allocation, tmp_path / "isoflop.png", ceiling=0.8,
                   references={"latents": 0.5, "random": 0.1})
    fig = saved[tmp_path / "isoflop.png"]
    score, loss = fig.axes  # one row per target, one column per (family, precision)
    budgets = ["C = 1e+11", "C = 1e+12", "C = 1e+13"]
    for ax, target, ylabel in ((score, "score", "mean test r (all parcels)"),
                               (loss, "val_loss", "validation loss")):
        assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == (
            "videogpt (fp32)", "parameters N", ylabel)
        assert ax.get_xscale() == "log"
        assert legend_texts(ax.get_legend())[:3] == budgets
        part = curves[curves["target"] == target]
        for name, (budget, c) in zip(budgets, part.groupby("budget"), strict=True):
            dots = named_line(ax, name)
            np.testing.assert_allclose(dots.get_xdata(), c["n_params"])
            np.testing.assert_allclose(dots.get_ydata(), c["mean"])
            intervals = [s for s in map(segments, ax.collections)
                         if s.shape[0] == len(c) and np.allclose(s[:, 0, 0], c["n_params"])
                         and np.allclose(s[:, :, 1], c[["lo", "hi"]])]
            assert len(intervals) == 1, budget
        # the fitted parabola where a budget has >= 3 values of N: 1e11 and 1e12, not 1e13
        parabolas = [ln for ln in data_lines(ax) if len(ln.get_xdata()) == 50]
        assert len(parabolas) == 2
        for line, (_, c) in zip(parabolas, part.groupby("budget"), strict=False):
            x = np.log10(c["n_params"].to_numpy())
            xs = np.linspace(x.min(), x.max(), 50)
            np.testing.assert_allclose(line.get_xdata(), 10**xs)
            np.testing.assert_allclose(line.get_ydata(),
                                       np.polyval(np.polyfit(x, c["mean"], 2), xs))
    # one star: the interior optimum of 1e11 (1e12's is at the edge), with its interval
    (star,) = [ln for ln in score.get_lines() if ln.get_marker() == "*"]
    assert (list(star.get_xdata()), list(star.get_ydata())) == ([1e5], [0.4])
    assert any(np.allclose(segments(c), [[[5e4, 0.4], [2e5, 0.4]]]) for c in score.collections
               if len(c.get_segments()) == 1)
    assert not [ln for ln in loss.get_lines() if ln.get_marker() == "*"]
    assert np.allclose(named_line(score, CEILING).get_ydata(), 0.8)
    assert set(named_line(score, "latents (reference)").get_ydata()) == {0.5}
    assert set(named_line(score, "random (reference)").get_ydata()) == {0.1}
    assert not {CEILING, "latents (reference)", "random (reference)"} & labels(loss)


def test_plot_isoflop_without_a_ceiling_draws_no_reference_line(tmp_path, saved):
    curves = isoflop_curves()
    edge = optimum(1e11, status="edge", n_opt=np.nan, target_opt=np.nan, n_opt_lo=np.nan,
                   n_opt_hi=np.nan)
    F.plot_isoflop(curves[curves["target"] == "score"], pd.DataFrame([edge]),
                   tmp_path / "isoflop.png", ceiling=float("nan"))
    (ax,) = saved[tmp_path / "isoflop.png"].axes
    assert legend_texts(ax.get_legend()) == ["C = 1e+11", "C = 1e+12", "C = 1e+13"]


# ---------------------------------------------------------------------------- allocation


def allocation_table() -> pd.DataFrame:
    """N* = 3e-3 C^0.6 at three budgets, its power law, and what the figure leaves out."""
    budgets = (1e11, 1e12, 1e13)
    per = [optimum(b, n_opt=3e-3 * b**0.6, n_opt_lo=2e-3 * b**0.6, n_opt_hi=4e-3 * b**0.6,
                   d_opt=b / (18e-3 * b**0.6), d_opt_lo=b / (24e-3 * b**0.6),
                   d_opt_hi=b / (12e-3 * b**0.6)) for b in budgets]
    law = {"family": "videogpt", "precision": "fp32", "target": "score",
           "method": "isoflop_power_law", "status": "ok", "budget": np.nan,
           "budget_min": 1e11, "budget_max": 1e13, "exponent_n": 0.6, "coef_n": 3e-3,
           "exponent_n_lo": 0.55, "exponent_n_hi": 0.65, "exponent_d": 0.4,
           "coef_d": 1 / 18e-3, "exponent_d_lo": 0.35, "exponent_d_hi": 0.45}
    left_out = [optimum(1e11, status="edge", target="val_loss", n_opt=1.0, d_opt=1.0),
                {**law, "target": "val_loss", "status": "too few budgets", "coef_n": 1.0}]
    return pd.DataFrame(per + [law] + left_out)


def test_plot_allocation_optima_and_power_laws(tmp_path, saved):
    allocation = allocation_table()
    F.plot_allocation(allocation, tmp_path / "allocation.png")
    n_ax, d_ax = saved[tmp_path / "allocation.png"].axes
    per = allocation[(allocation["method"] == "isoflop_parabola")
                     & (allocation["status"] == "ok")]
    label = "videogpt fp32, score"
    for ax, q, ylabel, exponent in ((n_ax, "n", "N* (parameters)", "0.60 [0.55, 0.65]"),
                                    (d_ax, "d", "D* (training tokens)", "0.40 [0.35, 0.45]")):
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("training compute C (FLOPs)", ylabel)
        assert ax.get_xscale() == ax.get_yscale() == "log"
        law_label = f"{label}: exponent {exponent}"
        assert legend_texts(ax.get_legend()) == [label, law_label]  # nothing of val_loss
        points = named_line(ax, label)
        np.testing.assert_allclose(points.get_xdata(), per["budget"])
        np.testing.assert_allclose(points.get_ydata(), per[f"{q}_opt"])
        (interval,) = ax.collections
        np.testing.assert_allclose(segments(interval)[:, :, 1],
                                   per[[f"{q}_opt_lo", f"{q}_opt_hi"]])
        law = named_line(ax, law_label)
        cs = np.geomspace(1e11, 1e13, 20)
        np.testing.assert_allclose(law.get_xdata(), cs)
        np.testing.assert_allclose(law.get_ydata(), {"n": 3e-3 * cs**0.6,
                                                     "d": cs**0.4 / 18e-3}[q])
        assert len(ax.get_lines()) == 2


def test_plot_allocation_without_an_interior_optimum_says_so(tmp_path, saved):
    allocation = allocation_table()
    F.plot_allocation(allocation[allocation["status"] != "ok"], tmp_path / "allocation.png")
    for ax in saved[tmp_path / "allocation.png"].axes:
        assert not ax.has_data() and ax.get_legend() is None
        assert [t.get_text() for t in ax.texts] == ["no budget with an interior optimum"]


# ---------------------------------------------------------------------------- brain maps


def test_plot_brain_maps_one_row_of_slices_per_subject(tmp_path, saved):
    from cortexscale.data.atlas import synthetic_atlas, write_atlas
    from cortexscale.report.brainmaps import plot_brain_maps

    parcels = pd.DataFrame({"parcel": np.arange(16), "roi": np.repeat(list("abcd"), 4)})
    write_atlas(tmp_path / "atlas.nii.gz", synthetic_atlas(parcels, resolution=4, seed=0))
    sign = {"sub-01": 1, "sub-02": -1}
    rows = pd.DataFrame([{"grid": g, "subject": s, "parcel": p, "r": mu + sign[s] * 0.01 * p}
                         for g, mu in (("g_low", 0.1), ("g_high", 0.3)) for s in sign
                         for p in range(16)])
    assert plot_brain_maps(rows, tmp_path / "atlas.nii.gz", tmp_path / "map.png") == "g_high"
    fig = saved[tmp_path / "map.png"]
    drawn = rows[rows["grid"] == "g_high"]
    vmax = drawn["r"].abs().max()  # 0.45: one colour scale for every subject
    # each subject: a title, 6 axial slices of its own r on the common scale
    rows_of_slices: dict[float, list] = {}
    for ax in fig.axes:
        stat = [im for im in ax.images if im.get_cmap().name == "RdBu_r"]
        if stat:
            rows_of_slices.setdefault(round(ax.get_position().y0, 3), []).append((ax, stat[0]))
    assert len(rows_of_slices) == 2
    for (_, slices), subject in zip(sorted(rows_of_slices.items(), reverse=True), sign,
                                    strict=True):
        assert len(slices) == 6
        titles = [t.get_text() for ax, _ in slices for t in ax.texts]
        assert titles == [f"{subject}: r, g_high"]
        values = np.concatenate([np.ma.compressed(im.get_array()) for _, im in slices])
        own = np.round(drawn.loc[drawn["subject"] == subject, "r"].to_numpy(float), 4)
        assert values.size and set(np.round(values.astype(float), 4)) <= set(own)
        assert all(np.isclose(im.norm.vmax, vmax) for _, im in slices)


# ---------------------------------------------------------------------------- bad input


BAD_INPUTS = {
    "scaling, empty": (lambda p: F.plot_scaling(scaling_table().iloc[:0], p),
                       "table is empty"),
    "scaling, no n_params": (lambda p: F.plot_scaling(scaling_table().drop(columns="n_params"),
                                                      p), r"lacks column\(s\) \['n_params'\]"),
    "params, empty": (lambda p: F.plot_params(scaling_table().iloc[:0], p), "table is empty"),
    "precision, no wall time": (
        lambda p: F.plot_precision(scaling_table().drop(columns="wall_time_s"), p),
        "wall_time_s"),
    "factors, empty": (lambda p: F.plot_factors(scaling_table().iloc[:0], p), "table is empty"),
    "frontier, no score": (lambda p: F.plot_frontier(frontier_table().drop(columns="score"), p),
                           r"frontier table lacks column\(s\) \['score'\]"),
    "loss curves, no val_loss": (
        lambda p: F.plot_loss_curves(loss_logs().drop(columns="val_loss"), p),
        r"training log table lacks column\(s\) \['val_loss'\]"),
    "fits, no hi": (lambda p: F.plot_fits(fit_curves().drop(columns="hi"), p),
                    r"fit-curves table lacks column\(s\) \['hi'\]"),
    "pretrained, nothing scored": (
        lambda p: F.plot_pretrained(pretrained_tables()[0].assign(mean_r=np.nan),
                                    pretrained_tables()[1], p), "no scored rows"),
    "isoflop, no budgets": (
        lambda p: F.plot_isoflop(isoflop_curves().iloc[:0], pd.DataFrame(), p),
        "no IsoFLOP curves to plot"),
    "allocation, no n_opt": (
        lambda p: F.plot_allocation(allocation_table().drop(columns="n_opt"), p),
        r"the allocation table lacks column\(s\) \['n_opt'\]"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_an_error_and_writes_nothing(case, tmp_path, saved):
    call, match = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=match):
        call(tmp_path / "bad.png")
    assert len(saved) == 0 and not list(tmp_path.iterdir())


def test_brain_maps_of_an_empty_parcel_table_is_an_error(tmp_path, saved):
    from cortexscale.report.brainmaps import plot_brain_maps

    with pytest.raises(ValueError, match="the parcel table is empty"):
        plot_brain_maps(pd.DataFrame(columns=["grid", "subject", "parcel", "r"]),
                        tmp_path / "atlas.nii.gz", tmp_path / "map.png")
    assert len(saved) == 0 and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------- save_figure


def test_save_figure_writes_png_and_svg_and_closes_the_figure(tmp_path, saved):
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [3, 1, 2])
    out = tmp_path / "sub" / "f.png"
    out.parent.mkdir()
    F.save_figure(fig, out)
    assert saved[out] is fig  # PNG and SVG written, nothing left beside them
    assert sorted(p.name for p in out.parent.iterdir()) == ["f.png", "f.svg"]
    assert not plt.fignum_exists(fig.number)
