"""The pretrained-model sweep: tiny random models of each architecture, saved with
save_pretrained and loaded through the same code path as a real model."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from cortexscale.cli import main
from cortexscale.data.nsd import write_synthetic_nsd
from cortexscale.data.synthetic import write_synthetic_fmri
from cortexscale.encoding.model_sweep import FIT_COLUMNS, image_split, scaling_fits
from cortexscale.features.hidden_states import (
    dataset_name,
    frame_index_per_tr,
    max_pool_features,
    parse_dataset_name,
)
from cortexscale.labels import POOLED
from cortexscale.models.vision import (
    ARCHITECTURES,
    build_tiny,
    layer_maps,
    load_pretrained,
)
from cortexscale.stages.pretrained import (
    collect_pretrained,
    encode_images,
    encode_video,
    ensemble,
    extract_pretrained,
)

ENC = {"alphas": {"min": -1, "max": 3, "n": 5}, "delays": [1, 2], "cv_folds": 2,
       "n_permutations": 0}
PRE = {"pool_kernels": [1, 4], "batch_size": 7, "image_split": {"n_test": 12},
       "sample_size": {"n_points": 3, "min": 8}}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {a: build_tiny(a, root / a, seed=i, hidden=16, layers=2, image_size=32)
            for i, a in enumerate(ARCHITECTURES)}


@pytest.fixture(scope="module")
def nsd(tmp_path_factory):
    root = tmp_path_factory.mktemp("nsd")
    write_synthetic_nsd(root, ["subj01"], ["early", "object"], seed=0, n_images=40,
                        n_vertices=(6, 6), size=32, snr=4.0)
    return root


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmri")
    cfg = {"tr": 1.0, "n_runs": 3, "repeated_runs": 1, "trs_per_run": 30, "n_parcels": 8,
           "snr": [2.0], "ar1": 0.3}
    write_synthetic_fmri(root, cfg, ["sub-01"], ["early", "motion"], 0, fps=4, height=32,
                         width=32)
    return root


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_gives_maps_and_pools(models, arch):
    loaded = load_pretrained(models[arch])
    assert loaded.n_params > 0 and loaded.architecture
    img = np.random.default_rng(0).integers(0, 255, (2, 40, 50, 3), dtype=np.uint8)
    pix = loaded.processor(images=list(img), return_tensors="pt")["pixel_values"]
    maps = layer_maps(loaded, pix)
    assert len(maps) >= 3 and all(m.ndim == 4 and m.shape[0] == 2 for m in maps)
    c, h, w = maps[-1].shape[1:]
    assert max_pool_features(maps[-1], 1).shape == (2, c * h * w)
    assert max_pool_features(maps[-1], 100).shape == (2, c)  # kernel > map: global max
    # the pooled map is the max over its window
    m = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert max_pool_features(m, 2).tolist() == [[5.0, 7.0, 13.0, 15.0]]
    assert max_pool_features(m, 3).tolist() == [[10.0, 11.0, 14.0, 15.0]]  # partial windows


def test_frame_alignment():
    idx = frame_index_per_tr(4, 1.5, 10.0, 40)
    assert idx[:, 0].tolist() == [0, 15, 30, 39]
    two = frame_index_per_tr(3, 1.0, 4.0, 100, frames_per_tr=2)
    assert two.tolist() == [[0, 0], [4, 2], [8, 6]]
    assert parse_dataset_name(dataset_name(3, 2)) == (3, 2)


def test_images_features_cache_and_encoding(models, nsd, tmp_path):
    out = tmp_path / "vit.h5"
    info = extract_pretrained(models["vit"], "vit", out, PRE, nsd_root=nsd,
                              subjects=["subj01"])
    assert info["computed"] == 2 * 2 and info["cached"] == 0  # 2 blocks x 2 kernels
    with h5py.File(out, "r") as f:
        assert sorted(f["subj01"]) == ["layer1_pool1", "layer1_pool4", "layer2_pool1",
                                       "layer2_pool4"]
        assert f["subj01/layer2_pool1"].shape == (40, 16 * 16)
        assert f["subj01/layer2_pool4"].shape == (40, 16)
        assert f.attrs["n_params"] == info["n_params"]
        before = f["subj01/layer1_pool4"][()]
    again = extract_pretrained(models["vit"], "vit", out, PRE, nsd_root=nsd,
                               subjects=["subj01"])
    assert again["computed"] == 0 and again["cached"] == 4
    more = extract_pretrained(models["vit"], "vit", out, {**PRE, "pool_kernels": [1, 2, 4]},
                              nsd_root=nsd, subjects=["subj01"])
    assert more["computed"] == 2 and more["cached"] == 4  # only the new kernel
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["subj01/layer1_pool4"][()], before)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])  # a damaged cache is rebuilt, not fatal
    rebuilt = extract_pretrained(models["vit"], "vit", out, PRE, nsd_root=nsd,
                                 subjects=["subj01"])
    assert rebuilt["computed"] == 4 and rebuilt["cached"] == 0
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["subj01/layer1_pool4"][()], before)
    side = encode_images(out, nsd, "subj01", ["early", "object"], tmp_path / "enc", ENC, PRE,
                         "vit")["early"]
    table = pd.read_csv(tmp_path / "enc" / "early.tsv", sep="\t")
    assert len(table) == side["n_parcels"] == 6
    assert set(table["pool"]) <= {1, 2, 4} and set(table["layer"]) <= {1, 2}
    assert side["n_test"] == 12 and side["n_train"] == 28
    assert [p["n_train"] for p in side["sample_size"]][-1] == 28


@pytest.fixture(scope="module")
def video_sweep(models, movies, tmp_path_factory):
    """Two models' video features (two frames per TR), their encodings of two ROIs and the
    ensemble of their early-ROI predictions."""
    root = tmp_path_factory.mktemp("video")
    side, npz, feats = {}, [], {}
    for arch in ("convnext", "dinov2"):
        feats[arch] = root / f"{arch}.h5"
        extract_pretrained(models[arch], arch, feats[arch], {**PRE, "frames_per_tr": 2},
                           fmri_root=movies)
        out = root / arch / "sub-01"
        side[arch] = encode_video(feats[arch], movies, "sub-01", ["early", "motion"], out, ENC,
                                  PRE, arch)
        npz.append(out / "early.npz")
    ens = ensemble(npz, root / "ens" / "sub-01" / "early.tsv", "ens", ["convnext", "dinov2"],
                   "sub-01", "early")
    return {"root": root, "feats": feats, "side": side, "npz": npz, "ensemble": ens,
            "jsons": [p.with_suffix(".json") for p in npz] + [root / "ens/sub-01/early.json"]}


def test_video_features_have_one_row_per_tr(video_sweep):
    for path in video_sweep["feats"].values():
        with h5py.File(path, "r") as f:
            assert f.attrs["kind"] == "videos" and f.attrs["frames_per_tr"] == 2
            assert {f[f"movie01/{k}"].shape[0] for k in f["movie01"]} == {30}


def test_video_encoding_writes_every_roi(video_sweep):
    for arch, sides in video_sweep["side"].items():
        assert set(sides) == {"early", "motion"}
        out = video_sweep["root"] / arch / "sub-01"
        for roi, side in sides.items():
            assert side["mean_r"] is not None
            table = pd.read_csv(out / f"{roi}.tsv", sep="\t")
            assert len(table) == side["n_parcels"] and (table["roi"] == roi).all()
        # the repeated test runs give a noise ceiling, hence a normalised score
        assert sides["early"]["mean_normalised"] is not None


def test_ensemble_averages_the_members_predictions(video_sweep):
    ens, npz = video_sweep["ensemble"], video_sweep["npz"]
    assert ens["members"] == ["convnext", "dinov2"]
    assert ens["n_parcels"] == video_sweep["side"]["convnext"]["early"]["n_parcels"]
    assert 0.0 <= ens["mean_normalised"] <= 100.0
    members = [np.load(p)["y_pred"].astype(np.float64) for p in npz]
    with np.load(video_sweep["root"] / "ens" / "sub-01" / "early.npz") as z:
        np.testing.assert_allclose(z["y_pred"], np.mean(members, axis=0), rtol=1e-6)


def test_collect_pretrained_sums_the_ensemble_parameters(video_sweep):
    models_cfg = [{"name": "convnext", "family": "a"}, {"name": "dinov2", "family": "a"}]
    table, curves = collect_pretrained(video_sweep["jsons"], models_cfg,
                                       {"convnext": 10, "dinov2": 100})
    assert list(table["kind"]) == ["ensemble", "model", "model"]
    assert list(table["model"]) == ["ens", "convnext", "dinov2"]
    assert table.loc[0, "n_params"] == 110 and table.loc[0, "members"] == "convnext+dinov2"
    # three sample sizes per model (PRE's sample_size.n_points), none for the ensemble
    assert sorted(curves["model"].unique()) == ["convnext", "dinov2"]
    assert curves.groupby("model").size().tolist() == [3, 3]


def test_scaling_fits_along_training_size_and_parameters(video_sweep):
    models_cfg = [{"name": "convnext", "family": "a"}, {"name": "dinov2", "family": "a"}]
    table, curves = collect_pretrained(video_sweep["jsons"], models_cfg,
                                       {"convnext": 10, "dinov2": 100})
    fits = scaling_fits(table, curves)
    assert list(fits.columns) == list(FIT_COLUMNS)
    by_axis = {axis: g for axis, g in fits.groupby("axis")}
    assert set(by_axis) == {"n_train", "n_params"}
    # n_train: one law per model, for the ROI and pooled over ROIs, on 3 sizes each
    n_train = by_axis["n_train"]
    assert sorted(zip(n_train["series"], n_train["roi"], strict=True)) == [
        ("convnext", POOLED), ("convnext", "early"), ("dinov2", POOLED), ("dinov2", "early")]
    assert (n_train["n_points"] == 3).all() and n_train["b"].notna().all()
    # n_params: one family of two models: a row that says too few x values (no law)
    n_params = by_axis["n_params"]
    assert n_params["series"].tolist() == ["a", "a"]
    assert (n_params["n_points"] == 2).all() and n_params["b"].isna().all()


def test_plot_pretrained(video_sweep, tmp_path, saved):
    from cortexscale.report.figures import plot_pretrained

    models_cfg = [{"name": "convnext", "family": "a"}, {"name": "dinov2", "family": "a"}]
    table, curves = collect_pretrained(video_sweep["jsons"], models_cfg,
                                       {"convnext": 10, "dinov2": 100})
    plot_pretrained(table, curves, tmp_path / "fig" / "pretrained.png")
    # both models are drawn against their parameter counts (content: tests/report/test_figures)
    fig = saved[tmp_path / "fig" / "pretrained.png"]
    labels = {t.get_text() for ax in fig.axes for t in ax.get_xticklabels() + ax.texts}
    labels |= {t.get_text() for leg in fig.legends for t in leg.get_texts()}
    labels |= {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()}
    assert any("convnext" in t for t in labels) and any("dinov2" in t for t in labels)
    assert (tmp_path / "fig" / "pretrained.svg").is_file()
    with pytest.raises(ValueError, match=r"bad.png: the pretrained table lacks column.*n_params"):
        plot_pretrained(table.drop(columns=["n_params"]), curves, tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"bad.png: .*no scored rows"):
        plot_pretrained(table.assign(mean_r=np.nan), curves, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_bad_layer(models, nsd, tmp_path):
    with pytest.raises(ValueError, match="layer 7 does not exist"):
        extract_pretrained(models["clip"], "clip", tmp_path / "x.h5", {**PRE, "layers": [7]},
                           nsd_root=nsd, subjects=["subj01"])


def test_undecodable_image(models, nsd, tmp_path):
    import shutil

    bad = tmp_path / "nsd"
    shutil.copytree(nsd / "subj01", bad / "subj01")
    img = sorted((bad / "subj01/training_split/training_images").glob("*.png"))[3]
    img.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="does not decode"):
        extract_pretrained(models["vit"], "vit", tmp_path / "x.h5", PRE, nsd_root=bad,
                           subjects=["subj01"])


def test_image_count_mismatch(models, nsd, tmp_path):
    import shutil

    bad = tmp_path / "nsd"
    shutil.copytree(nsd / "subj01", bad / "subj01")
    sorted((bad / "subj01/training_split/training_images").glob("*.png"))[0].unlink()
    with pytest.raises(ValueError, match="one image per response row"):
        extract_pretrained(models["vit"], "vit", tmp_path / "x.h5", PRE, nsd_root=bad,
                           subjects=["subj01"])
    # features whose rows differ from the responses are refused by the encoding
    out = tmp_path / "short.h5"
    with h5py.File(out, "w") as f:
        f["subj01/layer1_pool1"] = np.zeros((39, 4), np.float32)
    with pytest.raises(ValueError, match="one row per image"):
        encode_images(out, nsd, "subj01", ["early"], tmp_path / "e", ENC, PRE, "m")


def test_model_not_cached(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(FileNotFoundError, match="huggingface-cli download org/no-such-model"):
        load_pretrained("org/no-such-model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(str(tmp_path / "missing" / "folder"))
    sections = json.dumps({"pretrained_models": PRE, "subjects": ["subj01"]})
    rc = main(["pretrained-features", "--sections", sections, "--name", "m", "--model",
               "org/no-such-model", "--nsd-root", str(tmp_path), "--out",
               str(tmp_path / "o.h5")])
    assert rc == 2


def test_image_split():
    test, pool = image_split(100, 10, 45, seed=0)
    assert test.size == 10 and pool.size == 45 and not set(test) & set(pool)
    with pytest.raises(ValueError, match="exceed"):
        image_split(100, 10, 95, seed=0)


def test_full_clip_model_gives_its_vision_tower(tmp_path):
    import transformers as T

    cfg = T.CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "vocab_size": 64, "bos_token_id": 1,
                     "eos_token_id": 2, "pad_token_id": 0},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=8)
    T.CLIPModel(cfg).save_pretrained(tmp_path / "clip")
    T.CLIPImageProcessor(size={"shortest_edge": 32},
                         crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path / "clip")
    loaded = load_pretrained(tmp_path / "clip")
    assert type(loaded.model).__name__.startswith("CLIPVision") and loaded.patch_size == 8
    pix = loaded.processor(images=[np.zeros((32, 32, 3), np.uint8)], return_tensors="pt")
    maps = layer_maps(loaded, pix["pixel_values"])
    assert [tuple(m.shape) for m in maps] == [(1, 16, 4, 4)] * 3
