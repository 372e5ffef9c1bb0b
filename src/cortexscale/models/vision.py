"""Existing vision models through transformers: offline loading, hidden states as maps.

A model is named by a local folder (``save_pretrained`` output) or a Hugging Face hub id
that is already in the local cache; nothing is ever downloaded (``HF_HUB_OFFLINE=1``,
``local_files_only=True``). :func:`load_pretrained` returns the vision tower (the
``vision_model`` of a full CLIP-like model) with its image processor;
:func:`hidden_state_count` gives its depth; :func:`layer_maps` turns every hidden state into
a feature map ``(B, C, H, W)``: transformer tokens without their prefix tokens (CLS,
registers) laid back on the patch grid, convolutional stages as they are (pooled by
:mod:`cortexscale.features.hidden_states`).

Weights are read only as safetensors or as weights-only torch ``.bin`` files (transformers
calls ``torch.load(weights_only=True)``): a ``.bin`` that pickles other objects is refused
with a one-line error naming the file, and a truncated or corrupt weights file is named as
such.

:func:`build_tiny` makes the small randomly initialised models of the synthetic study and of
the tests (ViT, CLIP vision, ConvNeXt, DINOv2), saved with ``save_pretrained``.
"""

from __future__ import annotations

import math
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cortexscale.errors import ConfigError, InputError, MissingInputError

__all__ = [
    "ARCHITECTURES", "LoadedModel", "build_tiny", "count_parameters", "hidden_state_count",
    "layer_maps", "load_pretrained", "offline_hint", "resolve_layer_indices",
]

ARCHITECTURES = ("vit", "clip", "convnext", "dinov2")


def _quiet_transformers() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def offline_hint(model_id: str) -> str:
    """How to make a hub model available to an offline run."""
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
    return (
        f"model {model_id!r} is neither a local folder nor in the local Hugging Face cache "
        f"({cache}); cortexscale never downloads (HF_HUB_OFFLINE=1). On a machine with "
        f"internet run `huggingface-cli download {model_id}` (same HF_HOME, then copy the "
        f"cache here), or save it with `AutoModel.from_pretrained({model_id!r})."
        f"save_pretrained(DIR)` plus its AutoImageProcessor into DIR and give DIR as the "
        f"model's path"
    )


@dataclass
class LoadedModel:
    """A vision model ready for feature extraction.

    Attributes
    ----------
    model : torch.nn.Module
        The vision tower, in eval mode, on its device and dtype.
    processor : callable
        ``processor(images=list of HxWx3 uint8, return_tensors='pt')`` -> ``pixel_values``.
    source : str
        The path or id it was loaded from.
    architecture : str
        ``config.model_type`` of the tower.
    patch_size : int or None
        Patch size of a transformer (None for convolutional models).
    n_params : int
        Parameters of the tower.
    """

    model: torch.nn.Module
    processor: Any
    source: str
    architecture: str
    patch_size: int | None
    n_params: int


def count_parameters(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _patch(cfg: Any) -> int | None:
    p = getattr(cfg, "patch_size", None)
    if isinstance(p, list | tuple):
        p = p[0]
    return int(p) if p else None


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def _weights_named(source: str, local: bool) -> str:
    """The weight file(s) of a model folder, for messages (a hub id names itself)."""
    if not local:
        return f"the weights of {source} in the local hub cache"
    files = sorted(p for p in Path(source).iterdir() if p.suffix in _WEIGHT_SUFFIXES)
    sized = [f"{p} ({p.stat().st_size} bytes)" for p in files]
    return ", ".join(sized) if sized else f"{source} (no weight file)"


def _weights_error(source: str, local: bool, err: BaseException) -> InputError:
    """A one-line InputError for weights that could not be loaded: refused or damaged."""
    from cortexscale.io.checkpoint import REFUSED, refused_global

    where = _weights_named(source, local)
    if isinstance(err, pickle.UnpicklingError) or refused_global(err) is not None:
        name = refused_global(err)
        return InputError(f"{where}: " + REFUSED.format(what=f" ({name})" if name else ""))
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return InputError(f"{where}: model weights are not readable (truncated or corrupt?); "
                      f"expected safetensors or a weights-only torch checkpoint; {first}")


def load_pretrained(source: str | os.PathLike, device: str = "cpu",
                    dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load a vision model and its image processor from a folder or the local hub cache.

    Raises
    ------
    MissingInputError
        A model id that is neither a folder nor cached locally (the message says how to
        make it available offline).
    InputError
        A model without hidden states of images (no ``pixel_values`` input); weights that
        are refused (a ``.bin`` pickling objects other than tensors) or truncated/corrupt,
        naming the file.
    """
    _quiet_transformers()
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    source = str(source)
    local = Path(source).is_dir()
    if not local and (source.startswith((".", "/", "~")) or source.count("/") > 1):
        raise MissingInputError(f"model folder {source} does not exist")
    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True)
    except OSError as err:
        if local:
            raise MissingInputError(f"{source}: no readable config.json of a transformers "
                                    f"model ({err})") from err
        raise MissingInputError(offline_hint(source)) from err
    try:
        model = AutoModel.from_pretrained(source, local_files_only=True, dtype=dtype)
        processor = AutoImageProcessor.from_pretrained(source, local_files_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, struct.error) as err:
        raise _weights_error(source, local, err) from err
    except OSError as err:
        if local and (Path(source) / "preprocessor_config.json").is_file() and any(
                p.suffix in _WEIGHT_SUFFIXES for p in Path(source).iterdir()):
            raise _weights_error(source, local, err) from err
        raise MissingInputError(
            f"{source}: model weights or image processor (preprocessor_config.json) are "
            f"missing locally: {err}. {offline_hint(source) if not local else ''}".strip()
        ) from err
    except Exception as err:
        if type(err).__name__ != "SafetensorError":  # safetensors' damaged-file error
            raise
        raise _weights_error(source, local, err) from err
    tower = getattr(model, "vision_model", None)
    if tower is not None and hasattr(model, "get_image_features"):  # full CLIP-like model
        model, config = tower, getattr(config, "vision_config", config)
    model.eval().to(device)
    return LoadedModel(model, processor, source, str(config.model_type), _patch(config),
                       count_parameters(model))


def _as_map(h: torch.Tensor, grid: tuple[int, int] | None) -> torch.Tensor:
    """One hidden state -> (B, C, H, W)."""
    if h.ndim == 4:
        return h
    if h.ndim != 3:
        raise InputError(f"hidden state of shape {tuple(h.shape)}: expected (B, N, C) tokens "
                         "or a (B, C, H, W) map")
    n = h.shape[1]
    if grid is not None and n - grid[0] * grid[1] >= 0:
        gh, gw = grid
    else:  # unknown patch size: the largest square grid of trailing tokens
        side = math.isqrt(n)
        gh = gw = side
    prefix = n - gh * gw  # CLS and register tokens
    tokens = h[:, prefix:]
    return tokens.transpose(1, 2).reshape(h.shape[0], h.shape[2], gh, gw)


def resolve_layer_indices(layers: list[int], n_layers: int, source: str = "model") -> list[int]:
    """Non-negative hidden-state indices (0 = embeddings); ``[]``: every block 1..n-1.

    Raises
    ------
    ConfigError
        A layer outside the model's hidden states.
    """
    if not layers:
        return list(range(1, n_layers)) or [0]
    out: list[int] = []
    for k in layers:
        if not -n_layers <= int(k) < n_layers:
            raise ConfigError(
                f"pretrained_models.layers: layer {k} does not exist in {source}, which has "
                f"{n_layers} hidden states (0 = embeddings; valid: {-n_layers} .. "
                f"{n_layers - 1})"
            )
        k = int(k) % n_layers
        if k not in out:
            out.append(k)
    return out


def hidden_state_count(loaded: LoadedModel, device: str, dtype: torch.dtype) -> int:
    """The number of hidden states the model returns (embeddings + blocks), from one
    forward pass of a blank 32 x 32 image.

    Raises
    ------
    InputError
        A model that returns no hidden states.
    """
    blank = np.zeros((32, 32, 3), np.uint8)
    pix = loaded.processor(images=[blank], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = loaded.model(pixel_values=pix.to(device, dtype), output_hidden_states=True)
    hidden = getattr(out, "hidden_states", None)
    if not hidden:
        raise InputError(f"{loaded.source}: the model returns no hidden_states; only models "
                         "that return hidden states of images are supported")
    return len(hidden)


@torch.no_grad()
def layer_maps(loaded: LoadedModel, pixel_values: torch.Tensor) -> list[torch.Tensor]:
    """Every hidden state of a batch as a float32 map (B, C, H, W), embeddings first."""
    param = next(loaded.model.parameters())
    out = loaded.model(pixel_values=pixel_values.to(param.device, param.dtype),
                       output_hidden_states=True)
    hidden = getattr(out, "hidden_states", None)
    if not hidden:
        raise InputError(f"{loaded.source}: the model returns no hidden_states")
    grid = None
    if loaded.patch_size:
        grid = (pixel_values.shape[-2] // loaded.patch_size,
                pixel_values.shape[-1] // loaded.patch_size)
    return [_as_map(h, grid).float() for h in hidden]


# --------------------------------------------------------------------------- tiny models
def build_tiny(architecture: str, out_dir: str | os.PathLike, seed: int = 0,
               hidden: int = 32, layers: int = 2, image_size: int = 32) -> Path:
    """Save a tiny randomly initialised model + image processor with ``save_pretrained``.

    Parameters
    ----------
    architecture : {'vit', 'clip', 'convnext', 'dinov2'}
    hidden, layers : int
        Width and depth (ConvNeXt: ``layers`` stages of widths ``hidden / 2**(layers-1-i)``).
    image_size : int
        Input size (patch size is ``image_size // 4``).
    """
    _quiet_transformers()
    import transformers as T

    torch.manual_seed(seed)
    patch = max(1, image_size // 4)
    heads = 2 if hidden % 2 == 0 else 1
    crop = {"height": image_size, "width": image_size}
    if architecture == "vit":
        cfg = T.ViTConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                          intermediate_size=2 * hidden, image_size=image_size, patch_size=patch)
        proc = T.ViTImageProcessor(size=crop)
    elif architecture == "clip":
        cfg = T.CLIPVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden,
                                 num_hidden_layers=layers, num_attention_heads=heads,
                                 image_size=image_size, patch_size=patch)
        proc = T.CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size=crop)
    elif architecture == "convnext":
        widths = [max(2, hidden // 2 ** (layers - 1 - i)) for i in range(layers)]
        cfg = T.ConvNextConfig(num_stages=layers, hidden_sizes=widths, depths=[1] * layers,
                               image_size=image_size)
        proc = T.ConvNextImageProcessor(size={"shortest_edge": image_size})
    elif architecture == "dinov2":
        cfg = T.Dinov2Config(hidden_size=hidden, num_hidden_layers=layers,
                             num_attention_heads=heads, mlp_ratio=2, image_size=image_size,
                             patch_size=patch)
        proc = T.BitImageProcessor(size={"shortest_edge": image_size}, crop_size=crop)
    else:
        raise ValueError(f"architecture must be one of {list(ARCHITECTURES)}, found "
                         f"{architecture!r}")
    model = T.AutoModel.from_config(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    proc.save_pretrained(out_dir)
    return out_dir
