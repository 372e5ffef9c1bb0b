"""VQ-VAE over video clips: the tokenizer of VideoGPT, in one file.

A 3D-convolutional encoder downsamples a clip ``(B, C, T, H, W)`` by ``downsample = (dt, dh,
dw)`` to a latent grid ``(B, D, t, h, w)`` with ``t = T / dt``, ``h = H / dh``, ``w = W / dw``;
every latent vector is replaced by its nearest entry of a codebook of ``codebook_size`` vectors
(learned by exponential moving averages, with dead codes restarted from encoder outputs); a
mirrored decoder of transposed convolutions reconstructs the clip. The straight-through
estimator passes the decoder's gradient to the encoder, and a commitment loss keeps the encoder
close to the codebook.

Shapes: ``B`` batch, ``C`` channels (3), ``T, H, W`` frames, height and width of a clip, ``D``
``embedding_dim``, ``K`` ``codebook_size``, ``N = B * t * h * w`` latent vectors.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cortexscale.io.atomic import atomic_path
from cortexscale.io.checkpoint import load_checkpoint


@dataclass
class VQVAEConfig:
    """Hyper-parameters of :class:`VQVAE`.

    Attributes
    ----------
    codebook_size : int
        Number of codes ``K`` (>= 2).
    embedding_dim : int
        Dimension ``D`` of a code vector.
    hidden : int
        Channels of the encoder and decoder convolutions.
    n_res_layers : int
        Residual blocks after the encoder's downsampling and before the decoder's upsampling.
    downsample : tuple of 3 int
        ``(dt, dh, dw)`` factors of time, height and width; powers of two >= 1.
    in_channels : int
        Channels of the input clip (3 for RGB).
    ema_decay : float
        Decay of the codebook's exponential moving averages, in (0, 1).
    commitment : float
        Weight of the commitment loss (>= 0).
    attention : bool
        Add axial self-attention (over t, h and w separately) to every residual block.
    restart_threshold : float
        A code whose EMA cluster size falls below this is restarted from a random encoder
        output of the current batch (0 disables restarts).
    """

    codebook_size: int = 2048
    embedding_dim: int = 256
    hidden: int = 240
    n_res_layers: int = 4
    downsample: tuple[int, int, int] = (4, 16, 16)
    in_channels: int = 3
    ema_decay: float = 0.99
    commitment: float = 0.25
    attention: bool = True
    restart_threshold: float = 1.0

    def __post_init__(self) -> None:
        ds = self.downsample
        if isinstance(ds, np.ndarray):
            ds = ds.tolist()
        if not isinstance(ds, list | tuple) or len(ds) != 3:
            raise ValueError(
                f"downsample: expected 3 factors (time, height, width), found {self.downsample!r}"
            )
        for name, f in zip(("time", "height", "width"), ds, strict=True):
            if (
                not isinstance(f, int | np.integer)
                or isinstance(f, bool)
                or f < 1
                or (int(f) & (int(f) - 1)) != 0
            ):
                raise ValueError(
                    f"downsample: {name} factor must be a power of two >= 1, found {f!r} "
                    f"in {self.downsample!r}"
                )
        self.downsample = tuple(int(f) for f in ds)
        for key, low in (("codebook_size", 2), ("embedding_dim", 1), ("hidden", 1),
                         ("n_res_layers", 0), ("in_channels", 1)):
            v = getattr(self, key)
            if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < low:
                raise ValueError(f"{key}: expected an int >= {low}, found {v!r}")
            setattr(self, key, int(v))
        if not 0.0 < float(self.ema_decay) < 1.0:
            raise ValueError(f"ema_decay: expected a float in (0, 1), found {self.ema_decay!r}")
        if float(self.commitment) < 0.0:
            raise ValueError(f"commitment: expected a float >= 0, found {self.commitment!r}")
        if float(self.restart_threshold) < 0.0:
            raise ValueError(
                f"restart_threshold: expected a float >= 0, found {self.restart_threshold!r}"
            )
        self.ema_decay = float(self.ema_decay)
        self.commitment = float(self.commitment)
        self.restart_threshold = float(self.restart_threshold)
        self.attention = bool(self.attention)

    def latent_shape(self, clip_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Return the code grid ``(t, h, w)`` of a clip of ``(T, H, W)`` frames.

        Raises ``ValueError`` naming the axis when a clip dimension is not divisible by its
        downsample factor.
        """
        if len(clip_shape) != 3:
            raise ValueError(f"clip shape: expected (T, H, W), found {tuple(clip_shape)!r}")
        out = []
        for name, n, f in zip(("T", "H", "W"), clip_shape, self.downsample, strict=True):
            if n % f != 0 or n < f:
                raise ValueError(
                    f"clip size {name}={n} is not divisible by its downsample factor {f} "
                    f"(clip (T, H, W)={tuple(clip_shape)}, downsample={self.downsample})"
                )
            out.append(n // f)
        return tuple(out)  # type: ignore[return-value]


def _norm(ch: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: codes must not depend on the batch or on train/eval mode.
    return nn.GroupNorm(math.gcd(ch, 8), ch)


class AxialAttention(nn.Module):
    """Multi-head self-attention along each of t, h and w in turn, outputs summed.

    Cost is ``O(N * (t + h + w))`` instead of ``O(N * t * h * w)`` for full attention.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.n_heads = 2 if dim % 2 == 0 else 1
        self.qkv = nn.Conv3d(dim, 3 * dim, 1)
        self.proj = nn.Conv3d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, t, h, w = x.shape
        nh = self.n_heads
        q, k, v = self.qkv(x).chunk(3, dim=1)  # 3 x (B, C, t, h, w)
        out = torch.zeros_like(x)
        for axis in (2, 3, 4):
            # move the attended axis last, fold the others into the batch
            perm = [0, *[a for a in (2, 3, 4) if a != axis], axis, 1]
            L = x.shape[axis]

            def split(z: torch.Tensor, perm: list[int] = perm, L: int = L) -> torch.Tensor:
                z = z.permute(*perm).reshape(-1, L, nh, C // nh)  # (B*o1*o2, L, nh, C/nh)
                return z.transpose(1, 2)  # (B*o1*o2, nh, L, C/nh)

            y = F.scaled_dot_product_attention(split(q), split(k), split(v))  # (B', nh, L, C/nh)
            y = y.transpose(1, 2).reshape(*[x.shape[a] for a in perm[:-1]], C)  # permuted, C last
            inv = [perm.index(a) for a in range(5)]
            out = out + y.permute(*inv)  # (B, C, t, h, w)
        return self.proj(out)


class ResBlock(nn.Module):
    """Pre-activation residual block: norm-ReLU-conv3-norm-ReLU-conv1 (+ axial attention)."""

    def __init__(self, ch: int, attention: bool) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _norm(ch), nn.ReLU(),
            nn.Conv3d(ch, ch // 2 or 1, 3, padding=1),
            _norm(ch // 2 or 1), nn.ReLU(),
            nn.Conv3d(ch // 2 or 1, ch, 1),
        )
        self.attn = nn.Sequential(_norm(ch), AxialAttention(ch)) if attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.net(x)
        if self.attn is not None:
            x = x + self.attn(x)
        return x


def _n_halvings(downsample: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Per-layer strides: one layer per factor of two of the most-downsampled axis."""
    logs = [int(math.log2(f)) for f in downsample]
    return [tuple(2 if i < n else 1 for n in logs) for i in range(max(logs))]  # type: ignore[misc]


class Encoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = cfg.in_channels
        for stride in _n_halvings(cfg.downsample):
            kernel = tuple(4 if s == 2 else 3 for s in stride)  # stride 2: k4 p1 halves; k3 p1 keeps
            layers += [nn.Conv3d(ch, cfg.hidden, kernel, stride=stride, padding=1),
                       _norm(cfg.hidden), nn.SiLU()]
            ch = cfg.hidden
        layers.append(nn.Conv3d(ch, cfg.hidden, 3, padding=1))
        layers += [ResBlock(cfg.hidden, cfg.attention) for _ in range(cfg.n_res_layers)]
        # GroupNorm + SiLU on the main path (as VQGAN): without them the autoencoder learned
        # 3-5x slower and, within the default budget, not even the clips' mean colours
        layers += [_norm(cfg.hidden), nn.SiLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C, T, H, W) -> (B, hidden, t, h, w)


class Decoder(nn.Module):
    def __init__(self, cfg: VQVAEConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [ResBlock(cfg.hidden, cfg.attention)
                                   for _ in range(cfg.n_res_layers)]
        layers += [_norm(cfg.hidden), nn.SiLU()]
        strides = _n_halvings(cfg.downsample)[::-1]
        if not strides:  # no downsampling at all: one plain conv to the output channels
            layers.append(nn.Conv3d(cfg.hidden, cfg.in_channels, 3, padding=1))
        for i, stride in enumerate(strides):
            last = i == len(strides) - 1
            kernel = tuple(4 if s == 2 else 3 for s in stride)  # stride 2: k4 p1 doubles
            out_ch = cfg.in_channels if last else cfg.hidden
            layers.append(nn.ConvTranspose3d(cfg.hidden, out_ch, kernel, stride=stride, padding=1))
            if not last:
                layers += [_norm(cfg.hidden), nn.SiLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, hidden, t, h, w) -> (B, C, T, H, W)


class EMACodebook(nn.Module):
    """Codebook learned by exponential moving averages, with dead-code restarts.

    Buffers: ``embeddings`` (K, D); ``cluster_size`` (K,) EMA of assignment counts;
    ``embed_sum`` (K, D) EMA of the sum of assigned vectors; ``initialized`` (flag: the
    codebook is set from encoder outputs on the first training batch); ``n_restarts``
    (total codes restarted).
    """

    def __init__(self, codebook_size: int, dim: int, decay: float, restart_threshold: float,
                 eps: float = 1e-5) -> None:
        super().__init__()
        self.codebook_size, self.dim = codebook_size, dim
        # EMA count a restarted or freshly initialised code starts with (set from the first
        # batch to its mean count per code, N / K)
        self.decay, self.restart_threshold, self.eps = decay, restart_threshold, eps
        self.register_buffer("embeddings", torch.randn(codebook_size, dim))
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", self.embeddings.clone())
        self.register_buffer("initialized", torch.tensor(False))
        self.register_buffer("n_restarts", torch.tensor(0, dtype=torch.long))
        self.register_buffer("restart_size", torch.tensor(1.0))

    @staticmethod
    def _sample(flat: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` random rows of ``flat`` (N, D), without replacement when N >= n."""
        N = flat.shape[0]
        if N >= n:
            idx = torch.randperm(N, device=flat.device)[:n]
        else:
            idx = torch.randint(N, (n,), device=flat.device)
        return flat[idx]  # (n, D)

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code of every row of ``flat`` (N, D) -> (N,) long."""
        e = self.embeddings
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.t()
                + e.pow(2).sum(1)[None, :])  # (N, K)
        return dist.argmin(1)  # (N,)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        K, d = self.codebook_size, self.decay
        counts = torch.bincount(idx, minlength=K).to(flat.dtype)  # (K,)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, idx, flat)  # (K, D)
        self.cluster_size.mul_(d).add_(counts, alpha=1 - d)
        self.embed_sum.mul_(d).add_(sums, alpha=1 - d)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + K * self.eps) * n  # Laplace, (K,)
        self.embeddings.copy_(self.embed_sum / smoothed[:, None])
        if self.restart_threshold > 0:
            dead = self.cluster_size < self.restart_threshold  # (K,)
            n_dead = int(dead.sum())
            if n_dead:
                # A restarted code starts at the mean count per code, not at the threshold:
                # at the threshold, one step without an assignment (decay < 1) put it below
                # again, so unused codes were restarted every step and never settled.
                size = float(self.restart_size)
                new = self._sample(flat, n_dead)  # (n_dead, D)
                self.embeddings[dead] = new
                self.embed_sum[dead] = new * size
                self.cluster_size[dead] = size
                self.n_restarts += n_dead

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Quantise ``z`` (B, D, t, h, w); in training mode also update the codebook.

        Returns
        -------
        out : dict
            ``z_q`` (B, D, t, h, w) straight-through quantised latents, ``codes`` (B, t, h, w)
            long, ``commit_loss`` (scalar, unweighted MSE of z to its codes), ``perplexity``
            (scalar, of the batch's code histogram).
        """
        B, D, t, h, w = z.shape
        z = z.float()
        flat = z.permute(0, 2, 3, 4, 1).reshape(-1, D)  # (N, D)
        if self.training and not bool(self.initialized):
            with torch.no_grad():
                init = self._sample(flat.detach(), self.codebook_size)  # (K, D)
                size = max(flat.shape[0] / self.codebook_size, 2.0 * self.restart_threshold)
                self.restart_size.fill_(size)
                self.embeddings.copy_(init)
                self.embed_sum.copy_(init * size)
                self.cluster_size.fill_(size)
                self.initialized.fill_(True)
        idx = self.nearest(flat.detach())  # (N,)
        if self.training:
            self._ema_update(flat.detach(), idx)
        e = F.embedding(idx, self.embeddings)  # (N, D)
        commit = F.mse_loss(flat, e.detach())
        q = e.view(B, t, h, w, D).permute(0, 4, 1, 2, 3)  # (B, D, t, h, w)
        z_q = z + (q - z).detach()  # straight-through
        probs = torch.bincount(idx, minlength=self.codebook_size).float() / idx.numel()  # (K,)
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return {"z_q": z_q, "codes": idx.view(B, t, h, w), "commit_loss": commit,
                "perplexity": perplexity}

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors of ``codes`` (B, t, h, w) -> (B, D, t, h, w)."""
        return F.embedding(codes, self.embeddings).permute(0, 4, 1, 2, 3)  # (B, D, t, h, w)


class VQVAE(nn.Module):
    """Video VQ-VAE: ``(B, C, T, H, W)`` clips to ``(B, t, h, w)`` codes and back.

    Parameters
    ----------
    config : VQVAEConfig
    """

    def __init__(self, config: VQVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.pre_quant = nn.Conv3d(config.hidden, config.embedding_dim, 1)
        self.codebook = EMACodebook(config.codebook_size, config.embedding_dim,
                                    config.ema_decay, config.restart_threshold)
        self.post_quant = nn.Conv3d(config.embedding_dim, config.hidden, 1)
        self.decoder = Decoder(config)
        self.apply(self._init_weights)
        for m in self.modules():  # residual branches start as the identity
            if isinstance(m, ResBlock):
                nn.init.zeros_(m.net[-1].weight)
            elif isinstance(m, AxialAttention):
                nn.init.zeros_(m.proj.weight)
        # the reconstruction starts at 0 (mid-grey): a random initial output had to be
        # unlearned first and slowed early training
        nn.init.zeros_(self.decoder.net[-1].weight)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        # He init: PyTorch's default shrinks the signal through the ReLU stack and the
        # autoencoder then learns several times slower.
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", mode="fan_in")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.ConvTranspose3d):
            # each output sums in_ch * prod(k / stride) weights (weight: (in, out, *k))
            fan_in = m.in_channels * math.prod(k / s for k, s in zip(m.kernel_size, m.stride,
                                                                      strict=True))
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
            nn.init.zeros_(m.bias)

    # ---------------------------------------------------------------- input handling
    @staticmethod
    def preprocess(x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Convert uint8 clips ``(B, T, H, W, C)`` to float ``(B, C, T, H, W)`` in [-0.5, 0.5].

        Parameters
        ----------
        x : uint8 tensor or array, shape (B, T, H, W, C)

        Returns
        -------
        x : float32 tensor, shape (B, C, T, H, W)
        """
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if x.dtype != torch.uint8 or x.ndim != 5:
            raise ValueError(
                "preprocess: expected uint8 clips of shape (B, T, H, W, C), found "
                f"{x.dtype} {tuple(x.shape)}"
            )
        return x.permute(0, 4, 1, 2, 3).float().div(255.0).sub(0.5)  # (B, C, T, H, W)

    def _check_input(self, x: torch.Tensor) -> tuple[int, int, int]:
        if not torch.is_tensor(x) or not x.is_floating_point() or x.ndim != 5:
            found = f"{x.dtype} {tuple(x.shape)}" if torch.is_tensor(x) else type(x).__name__
            raise ValueError(
                f"VQVAE input: expected a float tensor (B, C, T, H, W), found {found}; "
                "use VQVAE.preprocess on uint8 (B, T, H, W, C) clips"
            )
        if x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"VQVAE input: expected {self.config.in_channels} channels in dim 1 of "
                f"(B, C, T, H, W), found shape {tuple(x.shape)}"
            )
        return self.config.latent_shape(tuple(x.shape[2:]))

    # ---------------------------------------------------------------- model
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reconstruct ``x`` and compute the losses.

        Parameters
        ----------
        x : float tensor, shape (B, C, T, H, W), values in [-0.5, 0.5]

        Returns
        -------
        out : dict
            ``recon`` (B, C, T, H, W); ``loss`` = ``recon_loss + commitment * commit_loss``;
            ``recon_loss`` (MSE); ``commit_loss`` (unweighted); ``perplexity`` of the batch's
            codes; ``codes`` (B, t, h, w) long.
        """
        self._check_input(x)
        z = self.pre_quant(self.encoder(x))  # (B, D, t, h, w)
        q = self.codebook(z)
        recon = self.decoder(self.post_quant(q["z_q"]))  # (B, C, T, H, W)
        recon_loss = F.mse_loss(recon.float(), x.float())
        loss = recon_loss + self.config.commitment * q["commit_loss"]
        return {"recon": recon, "loss": loss, "recon_loss": recon_loss,
                "commit_loss": q["commit_loss"], "perplexity": q["perplexity"],
                "codes": q["codes"]}

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes of clips ``x`` (B, C, T, H, W) float -> (B, t, h, w) long.

        Never updates the codebook (even in training mode).
        """
        self._check_input(x)
        z = self.pre_quant(self.encoder(x)).float()  # (B, D, t, h, w)
        B, D, t, h, w = z.shape
        flat = z.permute(0, 2, 3, 4, 1).reshape(-1, D)  # (N, D)
        return self.codebook.nearest(flat).view(B, t, h, w)  # (B, t, h, w)

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstruction of codes ``(B, t, h, w)`` (any integer dtype) -> (B, C, T, H, W)."""
        if codes.ndim != 4 or codes.is_floating_point():
            raise ValueError(
                f"decode_codes: expected integer codes (B, t, h, w), found "
                f"{codes.dtype} {tuple(codes.shape)}"
            )
        K = self.config.codebook_size
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= K):
            raise ValueError(
                f"decode_codes: codes must lie in [0, {K}), found range "
                f"[{int(codes.min())}, {int(codes.max())}]"
            )
        q = self.codebook.lookup(codes.long())  # (B, D, t, h, w)
        return self.decoder(self.post_quant(q))  # (B, C, T, H, W)

    def codebook_usage(self) -> dict[str, float]:
        """Codebook health from the EMA statistics.

        Returns
        -------
        info : dict
            ``used`` codes with EMA cluster size >= the restart threshold (>= 1 if restarts
            are disabled), ``fraction`` of the codebook used, ``perplexity`` of the EMA cluster
            sizes, ``restarts`` (total codes restarted so far).
        """
        cs = self.codebook.cluster_size.float()
        thr = self.config.restart_threshold or 1.0
        used = int((cs >= thr).sum())
        p = cs / cs.sum().clamp_min(1e-10)
        ppl = float(torch.exp(-(p * torch.log(p + 1e-10)).sum()))
        return {"used": used, "fraction": used / self.config.codebook_size, "perplexity": ppl,
                "restarts": int(self.codebook.n_restarts)}

    def n_params(self) -> int:
        """Number of trainable parameters (the EMA codebook is a buffer, not counted)."""
        return sum(p.numel() for p in self.parameters())

    # ---------------------------------------------------------------- checkpoints
    def save_checkpoint(self, path: str | os.PathLike, **extra: Any) -> None:
        """Write ``{"model_args", "model", **extra}`` with ``torch.save``, atomically.

        ``extra`` values must be loadable with ``torch.load(..., weights_only=True)``
        (tensors, numbers, strings, lists, dicts).
        """
        clash = {"model_args", "model"} & set(extra)
        if clash:
            raise ValueError(f"save_checkpoint: extra keys {sorted(clash)} are reserved")
        ckpt = {"model_args": asdict(self.config), "model": self.state_dict(), **extra}
        with atomic_path(path) as tmp:
            torch.save(ckpt, tmp)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike,
                        map_location: str | torch.device = "cpu") -> VQVAE:
        """Rebuild a model saved by :meth:`save_checkpoint`, in eval mode."""
        ckpt = load_checkpoint(path, "a VQ-VAE vqvae.pt (cortexscale tokenizer)", map_location)
        if "model_args" not in ckpt or "model" not in ckpt:
            found = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
            raise ValueError(
                f"{path}: expected a checkpoint dict with keys 'model_args' and 'model', "
                f"found {found}"
            )
        args = dict(ckpt["model_args"])
        known = {f.name for f in fields(VQVAEConfig)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"{path}: unknown model_args {unknown}; expected a subset of "
                             f"{sorted(known)}")
        model = cls(VQVAEConfig(**args))
        model.load_state_dict(ckpt["model"])
        return model.to(map_location).eval()
