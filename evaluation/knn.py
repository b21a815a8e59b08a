"""k-nearest-neighbour classification of frozen representations, in the field's two conventions
(docs/evaluation.md, "kNN accuracy").

weighted: the k training rows of highest cosine similarity s to a test row vote for their class
    with weight exp(s / T); the class of most weight wins (k = 200, T = 0.1 by default: MoCo's
    CIFAR demo and lightly's benchmark tables).
majority: each of the k most similar training rows casts one vote; a tie goes to the lowest class
    index, as scikit-learn's KNeighborsClassifier breaks it (k = 10 by default).

Similarities are taken in blocks of `CHUNK` test rows, so that memory grows with CHUNK × training
rows (beside one normalised copy of the training rows) whatever the size of the test set; the
blocks do not change the answer. A tie in similarity at the k-th place is broken by
`torch.topk`, which keeps any of the tied rows.
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
def knn_votes(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    num_classes: int,
    settings: list[tuple[int, float | None]],
    chunk: int = CHUNK,
) -> list[Tensor]:
    """For each (k, temperature) of ``settings``, the predicted class (N_test,) of each row of
    ``test_x`` (N_test, d) from the k rows of ``train_x`` (N, d) of highest cosine similarity,
    labelled ``train_y`` (N,) in [0, num_classes): votes of weight exp(s / temperature), or of
    weight 1 when temperature is None (the lowest class index wins a tie); 1 <= k <= N. Every
    setting reads one similarity pass over the blocks, and the normalised training rows are one
    copy of ``train_x``."""
    n = train_x.shape[0]
    for k, temperature in settings:
        if not 1 <= k <= n:
            raise ValueError(f"k must be in [1, {n}], got {k}")
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
    train = F.normalize(train_x, dim=1)
    labels = train_y.to(train.device)
    largest = max(k for k, _ in settings)
    predictions: list[list[Tensor]] = [[] for _ in settings]
    for rows in test_x.to(train.device).split(chunk):
        # Sorted, most similar first: the k nearest of every setting are the first k columns.
        similarity, index = (F.normalize(rows, dim=1) @ train.T).topk(largest, dim=1)
        for out, (k, temperature) in zip(predictions, settings, strict=True):
            nearest = similarity[:, :k]
            if temperature is None:
                votes = torch.ones_like(nearest)
            else:
                # Less each row's largest similarity: the same argmax, and exp cannot overflow.
                votes = ((nearest - nearest[:, :1]) / temperature).exp()
            scores = torch.zeros(rows.shape[0], num_classes, dtype=votes.dtype, device=votes.device)
            scores.scatter_add_(1, labels[index[:, :k]], votes)
            out.append(scores.argmax(dim=1))  # the first of equal maxima: the lowest class
    return [torch.cat(out) for out in predictions]


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
    """`knn_votes` for one setting: the weighted vote, or with ``temperature`` None the majority."""
    return knn_votes(train_x, train_y, test_x, num_classes, [(k, temperature)], chunk)[0]


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
    asked = {"weighted": (weighted_k, temperature), "majority": (majority_k, None)}
    used = [(min(k, n), t) for k, t in asked.values()]
    predicted = knn_votes(
        encoded.train_x, encoded.train_y, encoded.test_x, num_classes, used, chunk
    )
    scores: dict[str, Any] = {}
    for (name, (k, t)), (k_used, _), guess in zip(asked.items(), used, predicted, strict=True):
        accuracy = (guess == encoded.test_y.to(guess.device)).double().mean().item()
        scores[name] = {"accuracy": accuracy * 100, "k": k_used}
        if t is not None:
            scores[name]["temperature"] = t
        if k_used < k:
            scores[name]["k_lowered_from"] = k
    return scores


def flat_knn_scores(scores: dict[str, Any]) -> dict[str, float]:
    """`knn_scores`' accuracies as the flat keys of a metrics row (``knn_weighted_accuracy``)."""
    return {f"knn_{name}_accuracy": entry["accuracy"] for name, entry in scores.items()}
