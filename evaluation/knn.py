"""k-nearest-neighbour classification of frozen representations, in the field's two conventions
(docs/evaluation.md, "kNN accuracy").

weighted: the k training rows of highest cosine similarity s to a test row vote for their class
    with weight exp(s / T); the class of most weight wins (k = 200, T = 0.1 by default: MoCo's
    CIFAR demo and lightly's benchmark tables).
majority: each of the k most similar training rows casts one vote; a tie goes to the lowest class
    index, as scikit-learn's KNeighborsClassifier breaks it (k = 10 by default).

Similarities are taken in blocks of `CHUNK` test rows, so memory grows with CHUNK × training rows
whatever the size of the test set; the blocks do not change the answer. A tie in similarity at
the k-th place is broken by `torch.topk`, which picks any of the tied rows.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from evaluation.encoding import Encoded

WEIGHTED_K, TEMPERATURE, MAJORITY_K = 200, 0.1, 10
# Test rows per similarity block: 256 × 50,000 training rows is 51 MB of float32.
CHUNK = 256


@torch.no_grad()
def knn_predict(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    num_classes: int,
    *,
    k: int,
    temperature: float | None = None,
    chunk: int = CHUNK,
) -> Tensor:
    """The predicted class (N_test,) of each row of ``test_x`` (N_test, d) from the ``k`` rows of
    ``train_x`` (N, d) of highest cosine similarity, labelled ``train_y`` (N,) in [0,
    num_classes): votes of weight exp(s / temperature), or of weight 1 when ``temperature`` is
    None (the lowest class index wins a tie). ``k`` must be at most N."""
    if not 1 <= k <= train_x.shape[0]:
        raise ValueError(f"k must be in [1, {train_x.shape[0]}], got {k}")
    if temperature is not None and temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    train = F.normalize(train_x, dim=1)
    labels = train_y.to(train.device)
    predictions = []
    for rows in test_x.to(train.device).split(chunk):
        similarity, index = (F.normalize(rows, dim=1) @ train.T).topk(k, dim=1)
        if temperature is None:
            votes = torch.ones_like(similarity)
        else:
            # Less each row's largest similarity: the same argmax, and exp cannot overflow.
            votes = ((similarity - similarity[:, :1]) / temperature).exp()
        scores = torch.zeros(rows.shape[0], num_classes, dtype=votes.dtype, device=votes.device)
        scores.scatter_add_(1, labels[index], votes)
        predictions.append(scores.argmax(dim=1))  # the first of equal maxima: the lowest class
    return torch.cat(predictions)


def knn_scores(
    encoded: Encoded,
    num_classes: int,
    *,
    weighted_k: int = WEIGHTED_K,
    temperature: float = TEMPERATURE,
    majority_k: int = MAJORITY_K,
    chunk: int = CHUNK,
) -> dict[str, Any]:
    """Test accuracy (%) of both conventions on ``encoded``, with the settings used: a k above
    the number of training rows is lowered to it, and ``k_lowered_from`` keeps the k asked for."""
    n = encoded.train_x.shape[0]
    scores: dict[str, Any] = {}
    for name, k, t in (("weighted", weighted_k, temperature), ("majority", majority_k, None)):
        used = min(k, n)
        predicted = knn_predict(
            encoded.train_x, encoded.train_y, encoded.test_x, num_classes,
            k=used, temperature=t, chunk=chunk,
        )  # fmt: skip
        accuracy = (predicted == encoded.test_y.to(predicted.device)).double().mean().item()
        scores[name] = {"accuracy": accuracy * 100, "k": used}
        if t is not None:
            scores[name]["temperature"] = t
        if used < k:
            scores[name]["k_lowered_from"] = k
    return scores


def flat_knn_scores(scores: dict[str, Any]) -> dict[str, float]:
    """`knn_scores`' accuracies as the flat keys of a metrics row (``knn_weighted_accuracy``)."""
    return {f"knn_{name}_accuracy": entry["accuracy"] for name, entry in scores.items()}
