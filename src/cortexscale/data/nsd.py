"""Algonauts 2023 / NSD: a validating reader, and the synthetic world in that layout.

Layout of one subject (the challenge's release)::

    subj01/training_split/training_fmri/lh_training_fmri.npy    float (n_images, n_lh)
    subj01/training_split/training_fmri/rh_training_fmri.npy    float (n_images, n_rh)
    subj01/training_split/training_images/train-0001_nsd-00013.png ...   (sorted = row order)
    subj01/test_split/test_images/test-0001_nsd-00845.png ...   optional (sorted = row order
                                                                of a submission)
    subj01/roi_masks/lh.prf-visualrois_challenge_space.npy      int (n_lh,), 0 = outside
    subj01/roi_masks/rh.prf-visualrois_challenge_space.npy      int (n_rh,)
    subj01/roi_masks/mapping_prf-visualrois.npy                 dict {0: 'Unknown', 1: 'V1v', ...}
    subj01/roi_masks/lh.all-vertices_fsaverage_space.npy        optional, bool (163842,)

Optional, beside the release (each read when present):

    subj01/roi_masks/mapping_prf-visualrois.json                {"1": "V1v", ...}: overrides
                                                                the .npy mapping
    subj01/test_split/test_fmri/{lh,rh}_test_fmri.npy           float (n_test_images, n_hemi),
                                                                the organisers' later release
    subj01/test_split/noise_ceiling/{lh,rh}_noise_ceiling.npy   float (n_hemi,), fraction of
                                                                variance (organisers' file)
    subj01/training_split/training_ncsnr/{lh,rh}_ncsnr.npy      float (n_hemi,), NSD's ncsnr
    subj01/training_split/training_trials.npy                   int (n_images,): times each
                                                                training image was shown

The release's ``mapping_{class}.npy`` files are dicts saved with ``np.save``: a pickle inside
numpy's array wrapper. :func:`load_mapping` reads them with a restricted unpickler that
resolves only numpy's array reconstruction and refuses every other global, so a file that
holds anything else is an error and nothing in it runs. ROI names are the release's own
spellings (``V1v``, ``FFA-1``, ``midventral``); classes are named as in the file names
(``prf-visualrois``, ``floc-faces``, ``streams``). A label without a name is
``{class}{value}``. The images are still pictures: encoding them is the pretrained-model
path's job; this module reads and validates only.
"""

from __future__ import annotations

import codecs
import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from cortexscale.errors import InputError, MissingInputError

__all__ = [
    "HEMIS", "NsdSubject", "UnsafeFileError", "describe_nsd_subject", "load_mapping",
    "npy_header", "read_nsd_subject", "read_roi_masks", "write_synthetic_nsd",
]

HEMIS = ("lh", "rh")
STILL_FAMILIES = ("contrast", "luminance", "object")
_MASK = re.compile(r"^(lh|rh)\.(.+)_challenge_space\.npy$")


class UnsafeFileError(InputError):
    """A pickled file asks for something a mapping file never holds; nothing was run."""


# What ``np.save`` of a dict pickles: the 0-d object array (its reconstruction, the
# ndarray type, its dtype; numpy 1 and numpy 2 module names), the dict of ints and strs
# (opcodes only, no global), numpy scalars should the labels be numpy ints, and
# ``_codecs.encode`` that protocol 2 uses for the array's bytes. Nothing else resolves.
_RECONSTRUCT = np.ndarray((0,)).__reduce__()[0]
_SCALAR = np.int64(0).__reduce__()[0]
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _MappingUnpickler(pickle.Unpickler):
    """Resolves only :data:`_ALLOWED_GLOBALS`; any other global is refused before use."""

    def __init__(self, fh: Any, path: Path):
        super().__init__(fh)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(sorted(f"{m}.{n}" for m, n in _ALLOWED_GLOBALS))
            raise UnsafeFileError(
                f"{self.path}: refused to load: its pickle asks for the global "
                f"{module}.{name}, which a mapping file (np.save of a dict of int labels to "
                f"ROI names) never holds; allowed: {allowed}. Nothing in the file was run; "
                "replace it with the release's file or a mapping_{class}.json") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(f"{self.path}: refused to load: its pickle holds a persistent "
                              "id, which a mapping file never holds")


def npy_header(path: str | os.PathLike) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header alone (no data read).

    Raises
    ------
    FileNotFoundError, ValueError
        Naming the file: missing, or not a ``.npy`` file of format 1.0, 2.0 or 3.0.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist")
    with path.open("rb") as fh:
        return _read_header(fh, path)[:2]


def _read_header(fh: Any, path: Path) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npy_format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"format version {version}")
    except (ValueError, OSError, EOFError, SyntaxError) as err:
        raise InputError(f"{path}: not a readable .npy file (its header: {err})") from err
    return tuple(shape), np.dtype(dtype), bool(fortran)


def load_mapping(path: str | os.PathLike) -> dict[int, str]:
    """Read a release ``mapping_{class}.npy`` (a dict saved with ``np.save``), safely.

    The header is read with :mod:`numpy.lib.format` and must describe a 0-d object array;
    the pickle after it is read with an unpickler that resolves only numpy's array
    reconstruction (``_reconstruct``, ``ndarray``, ``dtype``, ``scalar``) and
    ``_codecs.encode``; the result must be a dict of integer labels to names.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    mapping : dict of int to str
        Label value -> ROI name as the release spells it (label 0, ``Unknown``, included).

    Raises
    ------
    UnsafeFileError
        The pickle asks for any other global (named in the message); nothing was run.
    FileNotFoundError, ValueError
        A missing file, another array in the file, a dict of other keys or values.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist; expected a dict of int labels to "
                                "ROI names saved with np.save")
    with path.open("rb") as fh:
        shape, dtype, _ = _read_header(fh, path)
        if dtype != np.dtype(object) or shape != ():
            raise InputError(f"{path}: expected a 0-d object array holding a dict (np.save of "
                             f"a dict of int labels to ROI names), found {dtype} {shape}")
        try:
            arr = _MappingUnpickler(fh, path).load()
        except UnsafeFileError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
                IndexError, KeyError, MemoryError) as err:
            raise InputError(f"{path}: its pickle does not read: {err}") from err
    obj = arr.item() if isinstance(arr, np.ndarray) and arr.shape == () else arr
    if not isinstance(obj, dict):
        raise InputError(f"{path}: expected a dict of int labels to ROI names, found "
                         f"{type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if isinstance(k, bool) or not isinstance(k, int | np.integer):
            raise InputError(f"{path}: label {k!r} is not an integer; expected a dict of int "
                             "labels to ROI names")
        if not isinstance(v, str):
            raise InputError(f"{path}: label {int(k)} names {v!r}, not a string")
        out[int(k)] = str(v)
    return out


@dataclass
class NsdSubject:
    """One validated Algonauts 2023 subject.

    Attributes
    ----------
    root : Path
        ``subjXX`` folder.
    responses : dict of str to ndarray of float32, each (n_images, n_vertices[hemi])
    images : list of Path
        PNG files in row order (sorted names).
    rois : dict of str to dict of str to ndarray of bool (n_vertices[hemi],)
        ROI name -> hemisphere -> vertex mask.
    bad_vertices : dict of str to list of int
        Per hemisphere: vertices with NaN/inf or constant responses (reported; the
        encoding excludes them).
    test_images : list of Path
        ``test_split/test_images/*.png`` in sorted order (a submission's row order); empty
        when the folder is absent.
    test_responses : dict of str to ndarray of float32 (n_test_images, n_vertices[hemi]) or None
        ``test_split/test_fmri`` when present.
    test_noise_ceiling : dict of str to ndarray of float64 (n_vertices[hemi],) or None
        The organisers' ``test_split/noise_ceiling``, in percent of variance.
    ncsnr : dict of str to ndarray of float64 (n_vertices[hemi],) or None
        ``training_split/training_ncsnr`` when present.
    trials : ndarray of int64 (n_images,) or None
        Times each training image was shown (``training_split/training_trials.npy``).
    """

    root: Path
    responses: dict[str, np.ndarray]
    images: list[Path]
    rois: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    bad_vertices: dict[str, list[int]] = field(default_factory=dict)
    test_images: list[Path] = field(default_factory=list)
    test_responses: dict[str, np.ndarray] | None = None
    test_noise_ceiling: dict[str, np.ndarray] | None = None
    ncsnr: dict[str, np.ndarray] | None = None
    trials: np.ndarray | None = None

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def n_vertices(self) -> dict[str, int]:
        return {h: int(self.responses[h].shape[1]) for h in HEMIS}

    def load_images(self) -> np.ndarray:
        """All images as uint8 RGB, shape (n_images, H, W, 3) (sizes must agree)."""
        from PIL import Image

        out = []
        for p in self.images:
            try:
                with Image.open(p) as im:
                    out.append(np.asarray(im.convert("RGB")))
            except OSError as err:
                raise InputError(f"{p}: not a readable image: {err}") from err
        shapes = {a.shape for a in out}
        if len(shapes) > 1:
            raise InputError(f"{self.root}: images differ in size: {sorted(shapes)[:3]}")
        return np.stack(out)


def _load_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise MissingInputError(f"{path} does not exist; expected {what}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{path}: not a readable .npy array ({what}): {err}") from err


def _fmri_shapes(root: Path) -> dict[str, tuple[int, int]]:
    """(n_images, n_vertices) per hemisphere from the response files' headers."""
    fmri_dir = root / "training_split" / "training_fmri"
    shapes = {}
    for h in HEMIS:
        path = fmri_dir / f"{h}_training_fmri.npy"
        if not path.is_file():
            raise MissingInputError(f"{path} does not exist; expected float (n_images, "
                                    "n_vertices) responses")
        shape, dtype = npy_header(path)
        if len(shape) != 2 or not np.issubdtype(dtype, np.floating):
            raise InputError(f"{path}: expected float (n_images, n_vertices), found "
                             f"{dtype} {shape}")
        shapes[h] = (int(shape[0]), int(shape[1]))
    if shapes["lh"][0] != shapes["rh"][0]:
        raise InputError(f"{fmri_dir}: lh has {shapes['lh'][0]} rows and rh {shapes['rh'][0]}; "
                         "expected one row per image in both hemispheres")
    return shapes


def _images(root: Path, n_rows: int) -> list[Path]:
    img_dir = root / "training_split" / "training_images"
    if not img_dir.is_dir():
        raise MissingInputError(f"image folder {img_dir} does not exist")
    images = sorted(img_dir.glob("*.png"))
    if len(images) != n_rows:
        fmri = root / "training_split" / "training_fmri" / "lh_training_fmri.npy"
        raise InputError(f"{img_dir} holds {len(images)} PNG images but {fmri} has {n_rows} "
                         "rows; expected one image per response row")
    return images


def read_roi_masks(mask_dir: str | os.PathLike, n_vert: dict[str, int]
                   ) -> dict[str, dict[str, np.ndarray]]:
    """ROI name -> hemisphere -> bool vertex mask, from ``roi_masks/`` (labels + mappings).

    Parameters
    ----------
    mask_dir : path-like
        ``subjXX/roi_masks`` (absent: no ROIs).
    n_vert : dict of str to int
        Vertices per hemisphere (the response columns).

    Raises
    ------
    ValueError
        A mask whose length differs from its hemisphere's vertex count, an
        ``all-vertices`` mask whose selected count differs from it, an unreadable or
        refused mapping file (:func:`load_mapping`).
    """
    mask_dir = Path(mask_dir)
    rois: dict[str, dict[str, np.ndarray]] = {}
    fmri = "training_split/training_fmri"
    for path in sorted(mask_dir.glob("*.npy")) if mask_dir.is_dir() else []:
        if path.name.startswith(tuple(f"{h}.all-vertices" for h in HEMIS)):
            h = path.name[:2]
            m = _load_npy(path, "bool fsaverage mask")
            if int(np.count_nonzero(m)) != n_vert[h]:
                raise InputError(f"{path} selects {int(np.count_nonzero(m))} vertices; "
                                 f"expected {n_vert[h]} (columns of {fmri}/{h}_training_fmri.npy)")
            continue
        match = _MASK.match(path.name)
        if match is None:
            continue
        h, cls = match.groups()
        labels = _load_npy(path, f"int ({n_vert[h]},) ROI labels")
        if labels.shape != (n_vert[h],):
            raise InputError(f"{path} has shape {labels.shape}; expected ({n_vert[h]},) like "
                             f"the columns of {fmri}/{h}_training_fmri.npy")
        names = _mapping(mask_dir, cls)
        for v in np.unique(labels[labels > 0]).astype(int):
            name = names.get(int(v), f"{cls}{v}")
            rois.setdefault(name, {hh: np.zeros(n_vert[hh], bool) for hh in HEMIS})
            rois[name][h] |= labels == v
    return rois


def _mapping(mask_dir: Path, cls: str) -> dict[int, str]:
    """Label -> name of one class: ``mapping_{cls}.json`` when present, else the release's
    ``mapping_{cls}.npy`` (restricted loader), else none."""
    path = mask_dir / f"mapping_{cls}.json"
    if path.is_file():
        try:
            raw = json.loads(path.read_text())
            return {int(k): str(v) for k, v in raw.items()}
        except (json.JSONDecodeError, ValueError, AttributeError) as err:
            raise InputError(f"{path}: expected a JSON object of int labels to ROI names "
                             f"({{\"1\": \"V1v\"}}): {err}") from err
    npy = mask_dir / f"mapping_{cls}.npy"
    return load_mapping(npy) if npy.is_file() else {}


def _per_hemi(folder: Path, pattern: str, n_vert: dict[str, int], n_rows: int | None,
              what: str) -> dict[str, np.ndarray] | None:
    """Optional per-hemisphere arrays ``folder/pattern.format(h)``: None when absent (both),
    an error when one hemisphere or the shape is off."""
    paths = {h: folder / pattern.format(h) for h in HEMIS}
    present = [h for h, p in paths.items() if p.is_file()]
    if not present:
        return None
    if len(present) == 1:
        missing = paths[next(h for h in HEMIS if h not in present)]
        raise MissingInputError(f"{paths[present[0]]} exists but {missing} does not; expected "
                                f"both hemispheres ({what})")
    out = {}
    for h, p in paths.items():
        a = _load_npy(p, what)
        want = (n_vert[h],) if n_rows is None else (n_rows, n_vert[h])
        if a.shape != want or not np.issubdtype(a.dtype, np.floating):
            raise InputError(f"{p}: expected float {want} ({what}), found {a.dtype} {a.shape}")
        out[h] = a
    return out


def read_nsd_subject(root: str | os.PathLike) -> NsdSubject:
    """Read and validate one subject folder (``.../subj01``).

    Raises
    ------
    FileNotFoundError
        A missing response file or image folder, one hemisphere of an optional pair.
    ValueError
        Responses that are not 2-D floats, hemispheres with different row counts, an image
        count that differs from the rows, ROI masks whose length differs from their
        hemisphere's vertex count, an ``all-vertices`` mask whose size differs from it, a
        mapping file that is refused or unreadable, a response row (image) that is NaN/inf
        in every vertex, a hemisphere without a usable vertex, optional test responses,
        noise ceilings, ncsnr or trial counts of another shape (or a noise ceiling outside
        [0, 1], the organisers' fraction of variance).
    """
    root = Path(root)
    fmri_dir = root / "training_split" / "training_fmri"
    shapes = _fmri_shapes(root)
    responses = {h: _load_npy(fmri_dir / f"{h}_training_fmri.npy", "responses").astype(
        np.float32, copy=False) for h in HEMIS}
    n_l = shapes["lh"][0]
    images = _images(root, n_l)
    n_vert = {h: shapes[h][1] for h in HEMIS}
    rois = read_roi_masks(root / "roi_masks", n_vert)
    bad = {}
    for h in HEMIS:
        y = responses[h]
        path = fmri_dir / f"{h}_training_fmri.npy"
        dead = np.flatnonzero(~np.isfinite(y).any(axis=1))
        if dead.size:
            raise InputError(
                f"{path}: row(s) {dead[:10].tolist()} (image(s) "
                f"{[images[i].name for i in dead[:3]]}) are NaN/inf in every vertex; expected "
                "finite responses (screening would exclude every vertex)")
        b = ~np.isfinite(y).all(axis=0) | (np.ptp(np.where(np.isfinite(y), y, 0), axis=0) == 0)
        if b.all():
            raise InputError(f"{path}: every one of its {y.shape[1]} vertices holds NaN/inf or "
                             "is constant; expected at least one usable vertex")
        bad[h] = np.flatnonzero(b).tolist()
    test_dir = root / "test_split"
    test_images = sorted((test_dir / "test_images").glob("*.png"))
    test_resp = _per_hemi(test_dir / "test_fmri", "{}_test_fmri.npy", n_vert,
                          len(test_images), "test responses, one row per test image")
    if test_resp is not None and not test_images:
        raise MissingInputError(f"{test_dir / 'test_fmri'} holds responses but "
                                f"{test_dir / 'test_images'} holds no PNG image")
    nc = _per_hemi(test_dir / "noise_ceiling", "{}_noise_ceiling.npy", n_vert, None,
                   "the organisers' noise ceiling, a fraction of variance per vertex")
    if nc is not None:
        for h, a in nc.items():
            ok = a[np.isfinite(a)]
            if ok.size and (ok.min() < 0 or ok.max() > 1):
                raise InputError(f"{test_dir / 'noise_ceiling' / f'{h}_noise_ceiling.npy'}: "
                                 f"values in [{ok.min():.3g}, {ok.max():.3g}]; expected a "
                                 "fraction of variance in [0, 1]")
        nc = {h: 100.0 * a.astype(np.float64) for h, a in nc.items()}
    snr = _per_hemi(root / "training_split" / "training_ncsnr", "{}_ncsnr.npy", n_vert, None,
                    "NSD's noise-ceiling SNR per vertex")
    trials = None
    tpath = root / "training_split" / "training_trials.npy"
    if tpath.is_file():
        trials = _load_npy(tpath, f"int ({n_l},) times each training image was shown")
        if trials.shape != (n_l,) or not np.issubdtype(trials.dtype, np.integer) or (
                trials < 1).any():
            raise InputError(f"{tpath}: expected int ({n_l},) >= 1 (times each training image "
                             f"was shown), found {trials.dtype} {trials.shape}")
        trials = trials.astype(np.int64)
    if snr is not None and trials is None:
        raise MissingInputError(f"{root / 'training_split' / 'training_ncsnr'} holds ncsnr but "
                                f"{tpath} does not exist; expected int ({n_l},): the times each "
                                "training image was shown (the noise ceiling depends on them)")
    return NsdSubject(root, responses, images, rois, bad, test_images, test_resp, nc,
                      None if snr is None else {h: a.astype(np.float64) for h, a in snr.items()},
                      trials)


def describe_nsd_subject(root: str | os.PathLike) -> dict[str, Any]:
    """What one subject folder holds, read cheaply (headers, masks, mappings, file names).

    Returns
    -------
    info : dict
        ``n_images``, ``n_vertices`` (per hemisphere), ``rois`` (sorted names),
        ``n_test_images``, and booleans ``test_fmri``, ``noise_ceiling``, ``ncsnr``.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`read_nsd_subject` for the parts read here.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingInputError(f"subject folder {root} does not exist")
    shapes = _fmri_shapes(root)
    images = _images(root, shapes["lh"][0])
    n_vert = {h: shapes[h][1] for h in HEMIS}
    rois = read_roi_masks(root / "roi_masks", n_vert)
    test = root / "test_split"
    return {
        "n_images": len(images), "n_vertices": n_vert, "rois": sorted(rois),
        "n_test_images": len(list((test / "test_images").glob("*.png"))),
        "test_fmri": (test / "test_fmri" / "lh_test_fmri.npy").is_file(),
        "noise_ceiling": (test / "noise_ceiling" / "lh_noise_ceiling.npy").is_file(),
        "ncsnr": (root / "training_split" / "training_ncsnr" / "lh_ncsnr.npy").is_file(),
    }


def write_synthetic_nsd(
    out_dir: str | os.PathLike, subjects: list[str], rois: list[str], seed: int,
    n_images: int = 48, n_vertices: tuple[int, int] = (20, 20), size: int = 32,
    snr: float | list[float] = 1.0, n_test_images: int = 0, ncsnr: bool = False,
    test_fmri: bool = False,
) -> None:
    """The synthetic world as still images and per-hemisphere responses (Algonauts 2023).

    Image ``i`` is the single frame of :func:`cortexscale.data.synthetic.render_episode`
    with ``rng([seed, 5, i])`` (1-3 sprites over a background; every subject sees the same
    images). Its static latents (quadrant contrast and luminance, dominant object shape;
    z-scored over images) drive the vertices: vertex weights are standard normal on the
    families of its ROI (``early``: contrast, luminance; ``object``: object; other ROIs:
    all three) and 0 elsewhere; the signal is scaled to unit variance per vertex and
    Gaussian noise of variance ``1 / snr`` is added (one response per image, as the
    release's averaged betas). Vertices are split evenly among the ROIs, then into
    hemispheres (the first ``n_vertices[0]`` are ``lh``). ROI masks are written as
    ``{hemi}.synthetic_challenge_space.npy`` with ``mapping_synthetic.npy`` saved as the
    release saves its mappings (``np.save`` of ``{0: 'Unknown', 1: rois[0], ...}``).
    ``truth/{subject}.h5`` holds ``weights``, ``signal_lh``, ``signal_rh`` and the
    per-vertex ``noise_ceiling_lh/rh`` = ``sqrt(v / (v + 1 / snr))``.

    ``n_test_images`` more images (``rng([seed, 5, n_images + j])``, latents z-scored with
    the training images) go to ``test_split/test_images/test-NNNN_nsd-NNNNN.png``; with
    ``test_fmri`` their responses (same weights, fresh noise) to ``test_split/test_fmri`` and
    the true noise ceiling ``v / (v + 1 / snr)`` (a fraction, one presentation per image) to
    ``test_split/noise_ceiling``, as the organisers lay them out. ``ncsnr`` writes the true
    ``sqrt(v * snr)`` to ``training_split/training_ncsnr/{hemi}_ncsnr.npy`` and
    ``training_split/training_trials.npy`` (every image shown once).
    """
    import h5py
    from PIL import Image

    from cortexscale.data.synthetic import (
        ROI_FAMILIES,
        latent_matrix,
        render_episode,
        standardise_latents,
    )

    out_dir = Path(out_dir)
    snrs = snr if isinstance(snr, list | tuple) else [snr]
    n_l, n_r = (int(n) for n in n_vertices)
    n_v = n_l + n_r
    n_images, n_test_images = int(n_images), int(n_test_images)
    if n_v < len(rois):
        raise ValueError(f"n_vertices {n_vertices} must total at least the {len(rois)} ROIs")
    imgs, lat = [], {}
    for i in range(n_images + n_test_images):
        frame, latents = render_episode(1, size, size, np.random.default_rng([seed, 5, i]))
        imgs.append(frame[0])
        lat[i] = latents
    standardise_latents(lat)
    x_all = np.concatenate([latent_matrix(lat[i], STILL_FAMILIES) for i in lat])  # (n, k)
    x, x_test = x_all[:n_images], x_all[n_images:]
    fam_of = np.concatenate([[f] * lat[0][f].reshape(1, -1).shape[1] for f in STILL_FAMILIES])
    groups = np.array_split(np.arange(n_v), len(rois))
    roi_of = np.empty(n_v, dtype=object)
    for roi, g in zip(rois, groups, strict=True):
        roi_of[g] = roi
    for k, subject in enumerate(subjects):
        rng = np.random.default_rng([seed, 6, k])
        w = np.zeros((x.shape[1], n_v))
        for v, roi in enumerate(roi_of):
            fams = [f for f in ROI_FAMILIES.get(roi, STILL_FAMILIES) if f in STILL_FAMILIES]
            sel = np.isin(fam_of, fams or STILL_FAMILIES)
            w[sel, v] = rng.standard_normal(int(sel.sum()))
        s = x @ w
        mu, sd = s.mean(0), np.where(s.std(0) > 0, s.std(0), 1.0)
        s = (s - mu) / sd
        nv = 1.0 / float(snrs[k % len(snrs)])
        y = (s + rng.standard_normal(s.shape) * np.sqrt(nv)).astype(np.float32)
        sub = out_dir / subject
        fdir = sub / "training_split" / "training_fmri"
        fdir.mkdir(parents=True, exist_ok=True)
        np.save(fdir / "lh_training_fmri.npy", y[:, :n_l])
        np.save(fdir / "rh_training_fmri.npy", y[:, n_l:])
        idir = sub / "training_split" / "training_images"
        idir.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(imgs[:n_images]):
            Image.fromarray(img).save(idir / f"train-{i + 1:04d}_nsd-{i:05d}.png")
        v = s.var(axis=0)
        if n_test_images:
            tdir = sub / "test_split" / "test_images"
            tdir.mkdir(parents=True, exist_ok=True)
            for j, img in enumerate(imgs[n_images:]):
                Image.fromarray(img).save(tdir / f"test-{j + 1:04d}_nsd-{n_images + j:05d}.png")
            if test_fmri:
                st = (x_test @ w - mu) / sd
                yt = (st + rng.standard_normal(st.shape) * np.sqrt(nv)).astype(np.float32)
                for folder, name, a in (("test_fmri", "{}_test_fmri.npy", yt),
                                        ("noise_ceiling", "{}_noise_ceiling.npy",
                                         v / (v + nv))):
                    (sub / "test_split" / folder).mkdir(parents=True, exist_ok=True)
                    for h, part in (("lh", a[..., :n_l]), ("rh", a[..., n_l:])):
                        np.save(sub / "test_split" / folder / name.format(h), part)
        if ncsnr:
            ndir = sub / "training_split" / "training_ncsnr"
            ndir.mkdir(parents=True, exist_ok=True)
            snr_v = np.sqrt(v / nv)
            np.save(ndir / "lh_ncsnr.npy", snr_v[:n_l])
            np.save(ndir / "rh_ncsnr.npy", snr_v[n_l:])
            np.save(sub / "training_split" / "training_trials.npy",
                    np.ones(n_images, dtype=np.int64))
        mdir = sub / "roi_masks"
        mdir.mkdir(parents=True, exist_ok=True)
        codes = np.array([rois.index(r) + 1 for r in roi_of], dtype=np.int32)
        np.save(mdir / "lh.synthetic_challenge_space.npy", codes[:n_l])
        np.save(mdir / "rh.synthetic_challenge_space.npy", codes[n_l:])
        np.save(mdir / "mapping_synthetic.npy",
                {0: "Unknown", **{i + 1: r for i, r in enumerate(rois)}})
        ceil = np.sqrt(v / (v + nv))
        (out_dir / "truth").mkdir(parents=True, exist_ok=True)
        with h5py.File(out_dir / "truth" / f"{subject}.h5", "w") as f:
            f["weights"] = w.astype(np.float32)
            f["signal_lh"], f["signal_rh"] = s[:, :n_l], s[:, n_l:]
            f["noise_ceiling_lh"], f["noise_ceiling_rh"] = ceil[:n_l], ceil[n_l:]
            f.attrs["snr"] = 1.0 / nv
