"""A learned grasp ranker: logistic regression of simulated lift success on the planner's per-grasp
evidence (``GraspSet.terms``: energy terms, anchor score, points inside the hand, table clearance,
palm placement).

The planner ranks by ``-energy`` unless its model directory holds a ``ranker.json`` (or a ranker is
passed in); then by this ranker's logit. Fit it on grasps the planner returned on *training* scenes
and lift-tested there (``bench/ranking.py --out``), select on a development set, report on a fresh one:

    python bench/ranker_fit.py train_terms.json --eval dev_terms.json --out MODEL_DIR/ranker.json

Stored as JSON (feature names, standardization, weights): plain numbers, no pickle.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sceneleap_core.atomic import write_text_atomic

RANKER_NAME = "ranker.json"


@dataclass
class GraspRanker:
    """``logit = bias + sum_i weights[i] * (x_i - mean[i]) / std[i]`` over ``features`` (names of
    ``GraspSet.terms``); higher = more likely to lift. ``info``: how it was fitted and measured."""

    features: list[str]
    mean: list[float]
    std: list[float]
    weights: list[float]
    bias: float
    info: dict

    def __post_init__(self):
        n = len(self.features)
        if n == 0 or not (len(self.mean) == len(self.std) == len(self.weights) == n):
            raise ValueError(f"ranker: expected equal, non-empty features/mean/std/weights, got lengths "
                             f"{n}/{len(self.mean)}/{len(self.std)}/{len(self.weights)}")  # fmt: skip
        values = [*self.mean, *self.std, *self.weights, self.bias]
        if not all(math.isfinite(float(v)) for v in values) or min(self.std) <= 0:
            raise ValueError("ranker: expected finite numbers and std > 0")

    def score(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """{name: (..., G)} -> (..., G) logits. Raises ValueError naming a missing feature."""
        missing = [f for f in self.features if f not in terms]
        if missing:
            raise ValueError(f"ranker: the planner gave no {missing} (has {sorted(terms)})")
        x = torch.stack([terms[name].float() for name in self.features], -1)  # (..., G, F)
        w = torch.tensor(self.weights, dtype=torch.float64) / torch.tensor(self.std, dtype=torch.float64)
        bias = float(self.bias) - float(w @ torch.tensor(self.mean, dtype=torch.float64))  # standardization folded in
        return x @ w.to(x.device, torch.float32) + bias

    def score_grasps(self, *, terms: dict[str, torch.Tensor], **geometry) -> torch.Tensor:
        """The planner's call (:func:`sceneleap_core.infer.planner.finish_grasps`): logits from the
        terms alone; the grasps' geometry (``hand``, ``cloud``, ``pose``, ``joints``, ``up``) is unused."""
        return self.score(terms)

    def save(self, path: str | Path) -> Path:
        return write_text_atomic(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> GraspRanker:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            return cls(**{k: data[k] for k in ("features", "mean", "std", "weights", "bias")}, info=data.get("info", {}))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a grasp ranker ({exc})") from exc


def fit_ranker(features: np.ndarray, labels: np.ndarray, names: list[str], *, l2: float = 1e-2,
               steps: int = 2000, lr: float = 0.5) -> GraspRanker:  # fmt: skip
    """Logistic regression (full-batch gradient descent, L2 on the weights) of (N,) boolean
    ``labels`` on (N, F) ``features`` named ``names``, standardized by their training statistics."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(names) or len(y) != len(x):
        raise ValueError(f"features: expected (N, {len(names)}) with N labels, got {x.shape} and {y.shape}")
    if len(np.unique(y)) < 2:
        raise ValueError("labels: expected both successes and failures to fit a ranker")
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-9, std, 1.0)
    z = (x - mean) / std
    w, b = np.zeros(z.shape[1]), float(np.log(y.mean() / (1 - y.mean())))
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        grad_w = z.T @ (p - y) / len(y) + l2 * w
        grad_b = float((p - y).mean())
        w, b = w - lr * grad_w, b - lr * grad_b
    return GraspRanker(list(names), mean.tolist(), std.tolist(), w.tolist(), b, {"l2": l2, "samples": len(y)})


def roc_auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC of ``score`` (higher = predicted success) for boolean ``label`` (ties count half); NaN
    without both classes."""
    score, label = np.asarray(score, dtype=np.float64), np.asarray(label, dtype=bool)
    pos, neg = score[label], score[~label]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def top_k_rate(scores: list[np.ndarray], labels: list[np.ndarray], k: int) -> float:
    """Mean over views of the success rate of each view's ``k`` best-scored grasps (views without
    grasps skipped; ties keep the given order)."""
    rates = [np.asarray(y, dtype=bool)[np.argsort(-np.asarray(s), kind="stable")[:k]].mean()
             for s, y in zip(scores, labels, strict=True) if len(y)]  # fmt: skip
    return float(np.mean(rates)) if rates else float("nan")
