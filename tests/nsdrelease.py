"""A small Algonauts 2023 release, laid out and saved exactly as the organisers' script
writes it: float32 responses, PNG images named ``train-NNNN_nsd-NNNNN.png`` and
``test-NNNN_nsd-NNNNN.png``, integer ROI labels per hemisphere in challenge space and the
label names as ``np.save`` of a dict (``mapping_<class>.npy``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: the release's ROI classes and names (label 0 is ``Unknown``)
MAPPINGS = {
    "prf-visualrois": ["V1v", "V1d", "V2v", "V2d", "V3v", "V3d", "hV4"],
    "floc-bodies": ["EBA", "FBA-1", "FBA-2", "mTL-bodies"],
    "floc-faces": ["OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"],
    "floc-places": ["OPA", "PPA", "RSC"],
    "floc-words": ["OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"],
    "streams": ["early", "midventral", "midlateral", "midparietal", "ventral", "lateral",
                "parietal"],
}


def write_release(root: Path, subject: str = "subj01", n_images: int = 30,
                  n_vertices: tuple[int, int] = (32, 30), n_test: int = 6,
                  seed: int = 0) -> Path:
    """One subject folder ``root/subject`` in the release layout; returns it."""
    rng = np.random.default_rng(seed)
    sub = Path(root) / subject
    fmri = sub / "training_split" / "training_fmri"
    fmri.mkdir(parents=True)
    for h, n in zip(("lh", "rh"), n_vertices, strict=True):
        np.save(fmri / f"{h}_training_fmri.npy",
                rng.standard_normal((n_images, n)).astype(np.float32))
    for folder, prefix, count, first in (("training_split/training_images", "train", n_images, 13),
                                         ("test_split/test_images", "test", n_test, 845)):
        d = sub / folder
        d.mkdir(parents=True)
        for i in range(count):
            img = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(img).convert("RGB").save(
                d / f"{prefix}-{i + 1:04d}_nsd-{first + 7 * i:05d}.png", format="png")
    masks = sub / "roi_masks"
    masks.mkdir()
    for cls, names in MAPPINGS.items():
        np.save(masks / f"mapping_{cls}", {0: "Unknown", **{i + 1: n for i, n in enumerate(names)}})
        for h, n in zip(("lh", "rh"), n_vertices, strict=True):
            labels = np.arange(n) % (len(names) + 1)  # every label in each hemisphere
            np.save(masks / f"{h}.{cls}_challenge_space", labels.astype(np.int64))
    return sub
