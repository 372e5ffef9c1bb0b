"""A GPT over VQ-VAE video tokens (the transformer half of VideoGPT), in one file.

The clip's codes ``(t, h, w)`` are flattened in raster order (time slowest, width fastest)
into ``N = t * h * w`` tokens. The input is shifted right behind a learned start token, so
position ``j`` predicts token ``j`` from tokens ``< j`` and the model predicts every token
of the clip. Position embeddings are factorised: the sum of three learned tables over
``t``, ``h`` and ``w``.

A *conditioned* model also sees the previous clip's codes: their token embeddings (with the
same position embeddings and a learned segment embedding) are prepended as a prefix of ``N``
tokens, so the context is ``2N`` long; the loss and the returned hidden states cover the
current clip only.

Heads follow the original VideoGPT: ``head_dim = hidden // heads`` (floor division), and
attention projects ``hidden -> heads * head_dim`` for q, k and v and back, so a hidden size
that is not a multiple of the head count (6 or 30 with 4 heads, as in the paper) works.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from cortexscale.errors import InputError
from cortexscale.io.checkpoint import load_checkpoint

__all__ = ["GPT", "GPTConfig", "RESIDUALS", "count_params", "flops_per_token", "residual_dtype"]

RESIDUALS = ("fp32", "autocast")


@dataclass
class GPTConfig:
    """Architecture of a :class:`GPT`.

    Attributes
    ----------
    vocab_size : int
        Number of VQ-VAE codes.
    shape : tuple of int (t, h, w)
        The token grid of one clip.
    hidden : int
        Width of the residual stream.
    layers : int
        Number of transformer blocks.
    heads : int
        Attention heads; ``head_dim = hidden // heads`` (floor), so ``hidden >= heads``.
    dropout : float
        Dropout on embeddings, attention weights and residual branches.
    conditioned : bool
        Condition on the previous clip's codes (a prefix of ``t*h*w`` tokens).
    bias : bool
        Biases in the linear layers and layer norms.
    residual : {'fp32', 'autocast'}
        dtype of the residual stream under autocast. ``'fp32'`` keeps it in float32 (the
        blocks' bf16/fp16 outputs are added to a float32 stream); ``'autocast'`` holds it
        in the autocast dtype, as Megatron-style bf16 training does, which halves the
        memory traffic of the element-wise kernels between the matmuls (on an H100,
        +9% tokens/s for the paper's base config). Layer-norm statistics stay float32
        either way; without autocast both are the same.
    """

    vocab_size: int
    shape: tuple[int, int, int]
    hidden: int = 576
    layers: int = 8
    heads: int = 4
    dropout: float = 0.0
    conditioned: bool = False
    bias: bool = True
    residual: str = "fp32"

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        for key in ("vocab_size", "hidden", "layers", "heads"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{key}: expected an int >= 1, found {value!r}")
        if len(self.shape) != 3 or any(s < 1 for s in self.shape):
            raise ValueError(
                f"GPTConfig.shape: expected three positive ints (t, h, w), found {self.shape!r}"
            )
        if self.hidden < self.heads:
            raise ValueError(
                f"GPTConfig: hidden ({self.hidden}) must be >= heads ({self.heads}), "
                "since head_dim = hidden // heads"
            )
        if self.residual not in RESIDUALS:
            raise ValueError(
                f"GPTConfig.residual: expected one of {list(RESIDUALS)}, found {self.residual!r}"
            )
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"GPTConfig.dropout: expected a float in [0, 1), found {self.dropout!r}")

    @property
    def head_dim(self) -> int:
        """Width of one attention head, ``hidden // heads``."""
        return self.hidden // self.heads

    @property
    def n_tokens(self) -> int:
        """Tokens per clip, ``t * h * w``."""
        t, h, w = self.shape
        return t * h * w

    @property
    def context(self) -> int:
        """Sequence length the transformer sees: ``n_tokens``, doubled when conditioned."""
        return self.n_tokens * (2 if self.conditioned else 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``shape`` as a list), for checkpoints' ``model_args``."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def residual_dtype(setting: str, precision: str) -> str:
    """The model's residual stream for the ``pretrain.residual`` setting.

    ``'auto'`` is ``'autocast'`` (a 16-bit stream) for bf16, which has float32's exponent
    range, and ``'fp32'`` for fp16 (whose range a residual stream can outgrow) and fp32.
    """
    if setting == "auto":
        return "autocast" if precision == "bf16" else "fp32"
    return setting


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.head_dim = cfg.head_dim
        inner = cfg.heads * cfg.head_dim
        self.qkv = nn.Linear(cfg.hidden, 3 * inner, bias=cfg.bias)
        self.proj = nn.Linear(inner, cfg.hidden, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split(self.heads * self.head_dim, dim=2)  # 3 x (B, T, H*Q)
        q = q.view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, Q)
        k = k.view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, Q)
        v = v.view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, Q)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, H, T, Q)
        y = y.transpose(1, 2).reshape(B, T, self.heads * self.head_dim)  # (B, T, H*Q)
        return self.resid_drop(self.proj(y))  # (B, T, hidden)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.hidden, 4 * cfg.hidden, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.hidden, cfg.hidden, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))  # (B, T, hidden)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.hidden, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.hidden, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))  # (B, T, hidden)


class GPT(nn.Module):
    """Causal transformer over a clip's VQ-VAE codes.

    Parameters
    ----------
    cfg : GPTConfig
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        t, h, w = cfg.shape
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.pos_t = nn.Parameter(torch.zeros(t, cfg.hidden))
        self.pos_h = nn.Parameter(torch.zeros(h, cfg.hidden))
        self.pos_w = nn.Parameter(torch.zeros(w, cfg.hidden))
        self.start = nn.Parameter(torch.zeros(cfg.hidden))
        # segment 0 = conditioning prefix, 1 = current clip (conditioned models only)
        self.seg_emb = nn.Parameter(torch.zeros(2, cfg.hidden)) if cfg.conditioned else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.layers)])
        self.ln_f = nn.LayerNorm(cfg.hidden, bias=cfg.bias)
        self.head = nn.Linear(cfg.hidden, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)
        for p in (self.pos_t, self.pos_h, self.pos_w, self.start):
            nn.init.normal_(p, std=0.02)
        if self.seg_emb is not None:
            nn.init.normal_(self.seg_emb, std=0.02)
        # GPT-2: scale the residual projections by 1/sqrt(2 * layers)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    @classmethod
    def from_checkpoint(cls, path: Any, map_location: Any = "cpu") -> GPT:
        """Rebuild a model from a ``model.pt`` written by pretraining, in eval mode.

        Parameters
        ----------
        path : path-like
            Checkpoint holding ``model_args`` and ``model`` (loaded with ``weights_only=True``).
        map_location : str or torch.device
        """
        ckpt = load_checkpoint(path, "a GPT model.pt (cortexscale pretrain)", map_location)
        for key in ("model_args", "model"):
            if key not in ckpt:
                raise InputError(f"{path}: checkpoint has no {key!r}; found keys {sorted(ckpt)}")
        args = dict(ckpt["model_args"])
        known = {f.name for f in fields(GPTConfig)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(
                f"{path}: unknown model_args {unknown}; expected a subset of {sorted(known)}"
            )
        model = cls(GPTConfig(**args))
        model.load_state_dict(ckpt["model"])
        return model.to(map_location).eval()

    def _pos(self) -> torch.Tensor:
        t, h, w = self.config.shape
        pos = (
            self.pos_t[:, None, None, :] + self.pos_h[None, :, None, :] + self.pos_w[None, None]
        )  # (t, h, w, hidden)
        return pos.reshape(t * h * w, -1)  # (N, hidden)

    def _check_codes(self, codes: torch.Tensor, name: str) -> torch.Tensor:
        if codes.dim() != 4 or tuple(codes.shape[1:]) != self.config.shape:
            raise ValueError(
                f"{name}: expected shape (B, {', '.join(map(str, self.config.shape))}), "
                f"found {tuple(codes.shape)}"
            )
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"{name}: expected integer codes, found dtype {codes.dtype}")
        return codes.long().flatten(1)  # (B, N)

    def _trunk(
        self, codes: torch.Tensor, cond: torch.Tensor | None, n_blocks: int
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Embed and run the first ``n_blocks`` blocks.

        Returns the last residual stream (B, T, hidden) over the whole context and the per-block
        outputs restricted to the current clip's positions, each (B, N, hidden).
        """
        cfg = self.config
        idx = self._check_codes(codes, "codes")  # (B, N)
        B, N = idx.shape
        pos = self._pos()  # (N, hidden)
        start = self.start.expand(B, 1, -1)  # (B, 1, hidden)
        x = torch.cat([start, self.tok_emb(idx[:, :-1])], dim=1) + pos  # (B, N, hidden)
        if cfg.conditioned:
            if cond is None:
                raise ValueError("cond: the model is conditioned; pass the previous clip's codes")
            cidx = self._check_codes(cond, "cond")  # (B, N)
            if cidx.shape[0] != B:
                raise ValueError(
                    f"cond: expected batch size {B} (as codes), found {cidx.shape[0]}"
                )
            present = (cidx >= 0).unsqueeze(-1)  # (B, N, 1); -1 = no condition
            prefix = self.tok_emb(cidx.clamp(min=0)) * present  # (B, N, hidden)
            prefix = prefix + pos + self.seg_emb[0]  # (B, N, hidden)
            x = torch.cat([prefix, x + self.seg_emb[1]], dim=1)  # (B, 2N, hidden)
        elif cond is not None:
            raise ValueError("cond: the model is not conditioned; pass cond=None")
        x = self.drop(x)
        if cfg.residual == "autocast" and torch.is_autocast_enabled(x.device.type):
            x = x.to(torch.get_autocast_dtype(x.device.type))  # (B, T, hidden) in 16 bits
        hidden = []
        for block in self.blocks[:n_blocks]:
            x = block(x)  # (B, T, hidden)
            hidden.append(x[:, -N:])  # (B, N, hidden)
        return x, hidden

    def forward(
        self,
        codes: torch.Tensor,
        cond: torch.Tensor | None = None,
        return_hidden: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Predict every token of the clip from the tokens before it.

        Parameters
        ----------
        codes : LongTensor, shape (B, t, h, w)
            The clip's codes (also the targets).
        cond : LongTensor, shape (B, t, h, w), optional
            The previous clip's codes; required when the model is conditioned, else ``None``.
            A code ``-1`` marks a missing condition: its token embedding is zero (the prefix
            then holds only position and segment embeddings).
        return_hidden : bool
            Also return every block's output.

        Returns
        -------
        logits : Tensor, shape (B, N, vocab_size)
            ``logits[:, j]`` predicts token ``j`` (raster order) from tokens ``< j``.
        loss : Tensor, scalar
            Mean cross-entropy over the ``B * N`` tokens of the current clip, in fp32.
        hidden : list of Tensor, each (B, N, hidden)
            Only with ``return_hidden``: the output of each block at the current clip's
            positions (position ``j`` has seen the tokens ``< j``).
        """
        x, hidden = self._trunk(codes, cond, self.config.layers)
        N = self.config.n_tokens
        logits = self.head(self.ln_f(x[:, -N:]))  # (B, N, vocab)
        loss = F.cross_entropy(
            logits.float().flatten(0, 1), codes.long().flatten()
        )  # targets (B*N,)
        if return_hidden:
            return logits, loss, hidden
        return logits, loss

    @torch.no_grad()
    def hidden_states(
        self, codes: torch.Tensor, cond: torch.Tensor | None = None, n_blocks: int | None = None
    ) -> list[torch.Tensor]:
        """Outputs of the first ``n_blocks`` blocks (all by default), without the head.

        Parameters
        ----------
        codes : LongTensor, shape (B, t, h, w)
        cond : LongTensor, shape (B, t, h, w), optional
        n_blocks : int, optional
            Stop after this many blocks (saves the deeper ones when features need only early
            layers).

        Returns
        -------
        hidden : list of Tensor, each (B, N, hidden)
        """
        n = self.config.layers if n_blocks is None else int(n_blocks)
        if not 1 <= n <= self.config.layers:
            raise ValueError(
                f"n_blocks: expected 1..{self.config.layers} (the model's blocks), found {n}"
            )
        return self._trunk(codes, cond, n)[1]


def count_params(model: GPT, embeddings: bool = False) -> int:
    """Number of parameters of ``model``.

    Parameters
    ----------
    model : GPT
    embeddings : bool
        Count the input embeddings (token table, position tables, start token, segment
        embedding). Without them (the default) the count is the ``N`` of the scaling-law
        literature; the output head stays in, since it is a matmul done for every token.
    """
    emb = {"tok_emb.weight", "pos_t", "pos_h", "pos_w", "start", "seg_emb"}
    return sum(
        p.numel() for name, p in model.named_parameters() if embeddings or name not in emb
    )


def flops_per_token(cfg: GPTConfig) -> int:
    """Training FLOPs per processed token position: ``6 N + 12 L H Q T``.

    ``N`` is the parameter count without input embeddings (:func:`count_params`), ``L`` the
    blocks, ``H`` the heads, ``Q`` the head width and ``T`` the context length
    (:attr:`GPTConfig.context`: ``t*h*w`` tokens, ``2*t*h*w`` when conditioned). The first
    term is the forward and backward matmuls (2 + 4 FLOPs per weight), the second the
    attention scores and their weighted sum (PaLM, appendix B; causal masking not discounted).
    A conditioned model processes ``2*t*h*w`` positions per clip for ``t*h*w`` predicted tokens.
    """
    with torch.device("meta"):  # shapes only: no memory, no init cost
        n = count_params(GPT(cfg))
    return int(6 * n + 12 * cfg.layers * cfg.heads * cfg.head_dim * cfg.context)
