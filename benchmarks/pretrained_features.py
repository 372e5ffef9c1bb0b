"""Pretrained-model features in bf16 against fp32: agreement, images/s and peak memory.

For each architecture the pretrained-model path supports, a randomly initialised model of
a size users run (no download: weights are built from the transformers config and saved
with ``save_pretrained``) is loaded twice through :func:`cortexscale.models.vision.
load_pretrained`, in float32 and in bfloat16, and the same batch of images goes through
:func:`~cortexscale.models.vision.layer_maps` and max-pooling as in
``cortexscale pretrained-features``. Printed per model: parameters, images/s in each
precision, peak device memory of one batch, and the agreement of the bf16 features with the
fp32 ones (median over layers of the Pearson r between the flattened pooled features).

    python benchmarks/pretrained_features.py                  # base and large models, GPU
    python benchmarks/pretrained_features.py --size tiny --device cpu --batch 4

Last line: ``RESULT device=<name> min_bf16_feature_r=<r> max_peak_gib=<m>``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from cortexscale.features.hidden_states import max_pool_features
from cortexscale.models.vision import layer_maps, load_pretrained

# (architecture, size) -> transformers config class name and arguments
SIZES = {
    "tiny": {
        "vit": ("ViTConfig", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=128, image_size=64, patch_size=16)),
        "convnext": ("ConvNextConfig", dict(hidden_sizes=[16, 32], depths=[1, 1],
                                            num_stages=2, image_size=64)),
    },
    "paper": {  # base/large sizes of the families in Matsuyama et al. (224 px)
        "vit-b16": ("ViTConfig", dict(hidden_size=768, num_hidden_layers=12,
                                      num_attention_heads=12, intermediate_size=3072,
                                      image_size=224, patch_size=16)),
        "clip-l14": ("CLIPVisionConfig", dict(hidden_size=1024, num_hidden_layers=24,
                                              num_attention_heads=16, intermediate_size=4096,
                                              image_size=224, patch_size=14)),
        "dinov2-l14": ("Dinov2Config", dict(hidden_size=1024, num_hidden_layers=24,
                                            num_attention_heads=16, image_size=224,
                                            patch_size=14)),
        "convnext-l": ("ConvNextConfig", dict(hidden_sizes=[192, 384, 768, 1536],
                                              depths=[3, 3, 27, 3], image_size=224)),
    },
}
PROCESSORS = {"ViTConfig": "ViTImageProcessor", "CLIPVisionConfig": "CLIPImageProcessor",
              "Dinov2Config": "BitImageProcessor", "ConvNextConfig": "ConvNextImageProcessor"}


def build(config_name: str, kwargs: dict, out: str) -> None:
    import transformers as T

    torch.manual_seed(0)
    cfg = getattr(T, config_name)(**kwargs)
    size = kwargs["image_size"]
    proc = getattr(T, PROCESSORS[config_name])(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    T.AutoModel.from_config(cfg).save_pretrained(out)
    proc.save_pretrained(out)


def features(loaded, pixels: torch.Tensor, kernel: int) -> list[np.ndarray]:
    with torch.inference_mode():
        return [max_pool_features(m, kernel).cpu().numpy() for m in layer_maps(loaded, pixels)]


def timed(loaded, pixels: torch.Tensor, kernel: int, dev: torch.device, repeat: int):
    features(loaded, pixels, kernel)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(repeat):
        out = features(loaded, pixels, kernel)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    rate = repeat * pixels.shape[0] / (time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")
    return out, rate, peak


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--size", choices=sorted(SIZES), default="paper")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--kernel", type=int, default=2, help="max-pool kernel")
    args = ap.parse_args()
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, batch {args.batch}, max-pool "
          f"{args.kernel}", flush=True)
    print("model\tparams_M\timages_per_s_fp32\timages_per_s_bf16\tpeak_gib_bf16\t"
          "peak_gib_fp32\tbf16_feature_r_median\tbf16_feature_r_min", flush=True)
    rs, peaks = [], []
    for model, (config_name, kwargs) in SIZES[args.size].items():
        with tempfile.TemporaryDirectory() as tmp:
            build(config_name, kwargs, tmp)
            rng = np.random.default_rng(0)
            size = kwargs["image_size"]
            pixels = torch.as_tensor(rng.standard_normal((args.batch, 3, size, size)),
                                     dtype=torch.float32)
            result = {}
            for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                loaded = load_pretrained(tmp, device=str(dev), dtype=dtype)
                result[prec] = timed(loaded, pixels, args.kernel, dev, args.repeat)
                n_params = loaded.n_params
                del loaded
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
        r = [corr(a, b) for a, b in zip(result["fp32"][0], result["bf16"][0], strict=True)]
        rs.append(min(r))
        peaks.append(max(result["fp32"][2], result["bf16"][2]))
        print(f"{model}\t{n_params / 1e6:.1f}\t{result['fp32'][1]:.0f}\t{result['bf16'][1]:.0f}"
              f"\t{result['bf16'][2]:.2f}\t{result['fp32'][2]:.2f}\t{np.median(r):.4f}\t"
              f"{min(r):.4f}", flush=True)
    print(f"RESULT device={name.replace(' ', '_')} min_bf16_feature_r={min(rs):.4f} "
          f"max_peak_gib={max(peaks):.2f}")


if __name__ == "__main__":
    main()
