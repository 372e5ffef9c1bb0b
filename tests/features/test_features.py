"""Feature extraction end to end on a tiny fMRI dataset, a tiny VQ-VAE and a tiny GPT."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from cortexscale.features.extract import clip_frame_index, resolve_layers
from cortexscale.io.video import write_video
from cortexscale.models.gpt import GPT, GPTConfig
from cortexscale.models.vqvae import VQVAE, VQVAEConfig
from cortexscale.stages.features import extract_features

TR, SRC_FPS, TIME_STRIDE, CLIP_LEN, SIZE, N_TR = 1.0, 8.0, 2, 4, 8, 8
MODEL_FPS = SRC_FPS / TIME_STRIDE  # 4 frames per TR
# stimulus -> time (s) at which the movie turns from dark to bright
CHANGES = {"black12": 3.0, "black13": 3.25}
VOCAB = 512


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # extract_features() sets the thread count


def _movie(change_s: float, n_frames: int) -> np.ndarray:
    t = np.arange(n_frames) / SRC_FPS
    frames = np.full((n_frames, SIZE, SIZE, 3), 20, np.uint8)
    frames[t >= change_s] = 235
    frames[t >= change_s, :4, :4] = (235, 30, 30)  # and some structure
    return frames


@pytest.fixture
def world(tmp_path):
    """fMRI folder (2 stimuli, 3 runs), frames.h5 attrs, a VQ-VAE checkpoint.

    The VQ-VAE keeps the time axis (downsample 1) and its codebook holds every latent of the
    movies' clips, so that a change in a clip's last frame reaches its codes.
    """
    root = tmp_path / "fmri"
    runs = pd.DataFrame({
        "subject": ["sub-01", "sub-01", "sub-01"],
        "run": ["r1", "r2", "r3"],
        "stimulus": ["black12", "black13", "black12"],
        "n_tr": [N_TR, N_TR, N_TR - 1],  # black12's longest run has N_TR TRs
        "split": ["train", "train", "test"],
    })
    (root / "stimuli").mkdir(parents=True)
    runs.to_csv(root / "runs.tsv", sep="\t", index=False)
    pd.DataFrame({"parcel": [0, 1], "roi": ["early", "early"], "label": ["a", "b"]}).to_csv(
        root / "parcels.tsv", sep="\t", index=False
    )
    with h5py.File(root / "sub-01.h5", "w") as f:
        for run, n in zip(runs["run"], runs["n_tr"], strict=True):
            f[run] = np.zeros((n, 2), np.float32)
        f.attrs.update(tr=TR, subject="sub-01")
    for stim, change in CHANGES.items():
        write_video(root / "stimuli" / f"{stim}.mkv", _movie(change, int(N_TR * TR * SRC_FPS)),
                    SRC_FPS)
    frames = tmp_path / "frames.h5"
    with h5py.File(frames, "w") as f:
        f.attrs.update(fps=SRC_FPS, time_stride=TIME_STRIDE, clip_len=CLIP_LEN, height=SIZE,
                       width=SIZE)
    torch.manual_seed(0)
    vq = VQVAE(VQVAEConfig(codebook_size=VOCAB, embedding_dim=8, hidden=8, n_res_layers=1,
                           downsample=(1, 4, 4), attention=False)).eval()
    # "train" the codebook on these movies: every latent vector of every clip becomes a code,
    # so clips with different frames get different codes (a random codebook may merge them)
    ends = np.arange(int(N_TR * TR * MODEL_FPS))
    windows = np.maximum(ends[:, None] - np.arange(CLIP_LEN - 1, -1, -1)[None], 0)
    clips = np.concatenate([_movie(c, 2 * ends.size)[::TIME_STRIDE][windows]
                            for c in CHANGES.values()])  # (n, CLIP_LEN, SIZE, SIZE, 3)
    with torch.no_grad():
        z = vq.pre_quant(vq.encoder(VQVAE.preprocess(clips)))  # (n, D, t, h, w)
        z = torch.unique(z.permute(0, 2, 3, 4, 1).reshape(-1, 8), dim=0)  # (n_unique, D)
        assert z.shape[0] <= VOCAB
        vq.codebook.embeddings[: z.shape[0]] = z
        vq.codebook.embeddings[z.shape[0]:] += 100.0  # unused codes, far away
    vq.save_checkpoint(tmp_path / "vqvae.pt")
    return root, frames, tmp_path / "vqvae.pt"


def _gpt(path, conditioned=False, layers=2, hidden=30, heads=4):
    torch.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=VOCAB, shape=(4, 2, 2), hidden=hidden, layers=layers,
                          heads=heads, conditioned=conditioned))
    torch.save({"model_args": model.config.to_dict(), "model": model.state_dict()}, path)
    return path


def test_clip_frame_index():
    idx = clip_frame_index(4, 1.0, 4.0, 4)
    np.testing.assert_array_equal(idx, [[0, 0, 0, 0], [1, 2, 3, 4], [5, 6, 7, 8],
                                        [9, 10, 11, 12]])
    prev = clip_frame_index(4, 1.0, 4.0, 4, lag=4)
    np.testing.assert_array_equal(prev[2], [1, 2, 3, 4])
    np.testing.assert_array_equal(prev[:2], 0)
    # 1.49 s TR at 15 fps: onset of TR 100 is 149 s -> frame 2235 exactly, despite rounding
    assert clip_frame_index(101, 1.49, 15.0, 16)[100, -1] == 2235


def test_resolve_layers():
    assert resolve_layers([-1, 0, 1], 2) == [1, 0]
    with pytest.raises(ValueError, match=r"layer -3 is outside the model, which has 2 blocks"):
        resolve_layers([-3], 2)


def test_features_shapes_and_tr_alignment(world, tmp_path):
    root, frames, vq = world
    model = _gpt(tmp_path / "model.pt")
    out = tmp_path / "features" / "d64_h30_l2_a4_fp32_s0.h5"
    extract_features(vq, model, root, frames, out, {"layers": [-1, 0], "pooling": "mean"},
                     grid="d64_h30_l2_a4_fp32_s0", batch_size=3)
    with h5py.File(out) as f:
        assert sorted(f) == ["black12", "black13"]
        assert f.attrs["layers"].tolist() == [1, 0]
        assert f.attrs["tr"] == TR and f.attrs["grid"] == "d64_h30_l2_a4_fp32_s0"
        assert "cortexscale_version" in f.attrs
        feats = {s: {k: f[s][f"layer{k}"][...] for k in (0, 1)} for s in f}
    for stim in feats:
        for x in feats[stim].values():
            assert x.shape == (N_TR, 30) and x.dtype == np.float32
            assert np.isfinite(x).all()
    # TR i's clip ends at model frame 4 i (inclusive). black12 turns bright at frame 12, so
    # TRs 0-2 see only dark frames and TR 3 is the first to differ; black13 turns at frame 13,
    # so TR 4 is the first to differ.
    for stim, first in (("black12", 3), ("black13", 4)):
        x = feats[stim][1]
        for i in range(1, first):
            np.testing.assert_array_equal(x[i], x[0])
        assert np.abs(x[first] - x[first - 1]).max() > 1e-4, stim
    np.testing.assert_array_equal(feats["black12"][1][:3], feats["black13"][1][:3])
    # the same model and clips at batch size 64: same features
    out2 = tmp_path / "again.h5"
    extract_features(vq, model, root, frames, out2, {"layers": [1], "pooling": "mean"},
                     grid="d64_h30_l2_a4_fp32_s0")
    with h5py.File(out2) as f:
        np.testing.assert_allclose(f["black13/layer1"][...], feats["black13"][1], atol=1e-6)


def test_features_conditioned_max_pooling(world, tmp_path):
    root, frames, vq = world
    model = _gpt(tmp_path / "model.pt", conditioned=True, layers=3, hidden=6)
    out = tmp_path / "f.h5"
    extract_features(vq, model, root, frames, out, {"layers": [1], "pooling": "max"},
                     grid="custom-name")
    with h5py.File(out) as f:
        x = f["black12/layer1"][...]
        assert f.attrs["layers"].tolist() == [1]
    assert x.shape == (N_TR, 6) and np.isfinite(x).all()
    # TRs 0-2: dark clips and dark conditions; TR 3's clip ends on the first bright frame
    np.testing.assert_array_equal(x[1], x[0])
    np.testing.assert_array_equal(x[2], x[0])
    assert not np.allclose(x[3], x[2])


def test_features_errors(world, tmp_path):
    root, frames, vq = world
    model = _gpt(tmp_path / "model.pt")
    out = tmp_path / "f.h5"
    with pytest.raises(ValueError, match=r"layer 2 is outside the model, which has 2 blocks"):
        extract_features(vq, model, root, frames, out, {"layers": [2], "pooling": "mean"}, "g")
    with pytest.raises(ValueError, match=r"'features.pooling' must be one of \['mean', 'max'\]; found \"sum\""):
        extract_features(vq, model, root, frames, out, {"layers": [0], "pooling": "sum"}, "g")
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'kernel' in 'features'"):
        extract_features(vq, model, root, frames, out,
                         {"layers": [0], "pooling": "max", "kernel": 2}, "g")
    with pytest.raises(ValueError, match=r"grid 'd64_h64_l2_a4_fp32_s0' names"):
        extract_features(vq, model, root, frames, out, {"layers": [0], "pooling": "max"},
                         "d64_h64_l2_a4_fp32_s0")
    with h5py.File(frames, "a") as f:
        f.attrs["height"] = 16
    with pytest.raises(ValueError, match=r"\(4, 4, 2\) token grid, but .* expects \(4, 2, 2\)"):
        extract_features(vq, model, root, frames, out, {"layers": [0], "pooling": "max"}, "g")
    with h5py.File(frames, "a") as f:
        f.attrs["height"] = SIZE
    runs = pd.read_csv(root / "runs.tsv", sep="\t")
    runs.loc[0, "n_tr"] = N_TR + 2  # the scan outlasts the movie by 2 TRs
    runs.to_csv(root / "runs.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"stimulus 'black12' .* lasts 8.00 s but"):
        extract_features(vq, model, root, frames, out, {"layers": [0], "pooling": "max"}, "g")
    assert not out.exists()
