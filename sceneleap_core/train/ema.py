"""Exponential moving average of a model's floating-point parameters and buffers.

``shadow <- d * shadow + (1 - d) * param`` after each optimizer step, with
``d = min(decay, (1 + n) / (10 + n))`` when ``warmup`` is on (n = updates so far), so early in
training the average follows the weights instead of remembering the random initialization.

The shadow lives outside the module tree (it is not a sub-module), so DDP neither syncs nor
all-reduces it and ``state_dict()`` of the trained module stays the raw weights; the training
module stores it in the checkpoint under ``"ema"`` (plain tensors: loads with ``weights_only``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class EMA:
    """EMA of ``model``'s float tensors (parameters and buffers), kept in float32.

    Args:
        model: the module to average (its names define the shadow's keys).
        decay: target decay in (0, 1).
        warmup: use the ``(1 + n) / (10 + n)`` ramp.
    """

    def __init__(self, model: nn.Module, *, decay: float = 0.999, warmup: bool = True):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema.decay: expected a decay in (0, 1), got {decay}")
        self.decay, self.warmup = float(decay), bool(warmup)
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: t.detach().float().clone() for name, t in self._tracked(model) if t.is_floating_point()
        }

    @staticmethod
    def _tracked(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
        yield from model.named_parameters()
        yield from model.named_buffers()

    def current_decay(self) -> float:
        """The decay the next update will use."""
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow toward the model's current tensors (one fused lerp per dtype group)."""
        d = self.current_decay()
        names = [n for n, t in self._tracked(model) if n in self.shadow]
        current = dict(self._tracked(model))
        shadow = [self.shadow[n] for n in names]
        values = [current[n].detach().to(s.dtype) for n, s in zip(names, shadow)]
        if shadow:
            torch._foreach_lerp_(shadow, values, 1.0 - d)
        self.num_updates += 1

    @torch.no_grad()
    def copy_from(self, model: nn.Module) -> None:
        """Reset the shadow to the model's tensors (does not count as an update)."""
        for name, t in self._tracked(model):
            if name in self.shadow:
                self.shadow[name].copy_(t.detach())

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged tensors into ``model`` (cast to each tensor's dtype)."""
        for name, t in self._tracked(model):
            if name in self.shadow:
                t.copy_(self.shadow[name].to(t.dtype))

    @contextmanager
    def swapped_into(self, model: nn.Module):
        """Context in which ``model`` holds the EMA weights; the raw weights come back afterwards."""
        backup = {name: t.detach().clone() for name, t in self._tracked(model) if name in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, t in self._tracked(model):
                    if name in backup:
                        t.copy_(backup[name])

    def to(self, device: torch.device | str) -> EMA:
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self

    def state_dict(self) -> dict:
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        shadow = state.get("shadow")
        if not isinstance(shadow, dict):
            raise ValueError("ema state: expected a 'shadow' dict of tensors, got none")
        missing = sorted(set(self.shadow) - set(shadow))
        unexpected = sorted(set(shadow) - set(self.shadow))
        if missing or unexpected:
            raise ValueError(
                f"ema state: keys do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        for name, value in shadow.items():
            if value.shape != self.shadow[name].shape:
                raise ValueError(
                    f"ema state: {name}: expected shape {tuple(self.shadow[name].shape)}, got {tuple(value.shape)}"
                )
            self.shadow[name] = value.detach().to(self.shadow[name].device, torch.float32).clone()
        self.decay, self.warmup = float(state["decay"]), bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
