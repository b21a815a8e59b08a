"""The kNN classifiers (evaluation/knn.py) against a brute-force numpy reference in float64."""

import math

import numpy as np
import pytest
import torch

from evaluation.encoding import Encoded
from evaluation.knn import knn_predict, knn_scores


def brute_force(train_x, train_y, test_x, classes, k, temperature=None):
    """Written apart from the code under test: for each test row, every cosine similarity, the k
    largest by a stable sort, then votes of exp(s / T) (or 1) summed per class; numpy's argmax
    takes the first of equal maxima, the lowest class index, as scikit-learn does."""
    train_x, test_x = np.asarray(train_x, np.float64), np.asarray(test_x, np.float64)
    predictions = []
    for row in test_x:
        similarity = np.array(
            [row @ t / (np.linalg.norm(row) * np.linalg.norm(t)) for t in train_x]
        )
        nearest = np.argsort(-similarity, kind="stable")[:k]
        votes = np.zeros(classes)
        for i in nearest:
            votes[int(train_y[i])] += (
                1.0 if temperature is None else math.exp(similarity[i] / temperature)
            )
        predictions.append(int(np.argmax(votes)))
    return predictions


def random_features(n_train=120, n_test=50, d=8, classes=4, seed=0):
    """Gaussian float64 features, tie-free in similarity, labelled by a noisy linear rule so
    that neighbours carry information."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, d, generator=gen, dtype=torch.float64)
    rule = torch.randn(d, classes, generator=gen, dtype=torch.float64)
    y = (x @ rule + 0.5 * torch.randn(n_train + n_test, classes, generator=gen)).argmax(dim=1)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


@pytest.mark.parametrize("temperature", [None, 0.1, 0.05])
@pytest.mark.parametrize("k", [1, 5, 37])
def test_both_conventions_match_the_brute_force_in_any_chunk(k, temperature):
    """Catches a wrong similarity (dot product rather than cosine), a wrong weight, votes
    counted by rank rather than class, and a block boundary that loses or repeats rows."""
    train_x, train_y, test_x, _ = random_features()
    expected = brute_force(train_x, train_y, test_x, 4, k, temperature)
    for chunk in (1, 7, 50, 1000):
        predicted = knn_predict(
            train_x, train_y, test_x, 4, k=k, temperature=temperature, chunk=chunk
        )
        assert predicted.tolist() == expected


def on_a_circle(angles):
    return torch.tensor([[math.cos(a), math.sin(a)] for a in angles], dtype=torch.float64)


def test_a_tied_majority_goes_to_the_lowest_class_and_the_weighted_vote_to_the_nearest():
    """Neighbours of the test point (angle 0) in order: classes 3, 1, 3, 1, 2. With k = 4 the
    majority vote ties 2 to 2 and must give class 1; the weighted vote gives 3, whose members
    are nearer. k = 3 is no tie (3 wins); k = 5 ties 1 and 3 again, with 2 a single vote."""
    train_x = on_a_circle([0.1, 0.2, 0.3, 0.4, 0.5])
    train_y = torch.tensor([3, 1, 3, 1, 2])
    test_x = on_a_circle([0.0])
    for k, majority in ((4, 1), (3, 3), (5, 1)):
        assert knn_predict(train_x, train_y, test_x, 4, k=k).tolist() == [majority]
        assert brute_force(train_x, train_y, test_x, 4, k) == [majority]
    weighted = knn_predict(train_x, train_y, test_x, 4, k=4, temperature=0.1)
    assert weighted.tolist() == brute_force(train_x, train_y, test_x, 4, 4, 0.1) == [3]


def test_k_larger_than_a_class():
    """Class 0's three members are nearest: k = 5 leaves it the majority (3 of 5); k = 7 hands
    it to class 1 (4 of 7), the whole of class 0 having voted."""
    train_x = on_a_circle([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    train_y = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    test_x = on_a_circle([0.0])
    assert knn_predict(train_x, train_y, test_x, 2, k=5).tolist() == [0]
    assert knn_predict(train_x, train_y, test_x, 2, k=7).tolist() == [1]
    train_x, train_y, test_x, _ = random_features(classes=6, seed=3)
    small = int(torch.bincount(train_y, minlength=6).min())
    k = small + 4
    for t in (None, 0.1):
        expected = brute_force(train_x, train_y, test_x, 6, k, t)
        assert knn_predict(train_x, train_y, test_x, 6, k=k, temperature=t).tolist() == expected


def test_k_equal_to_the_training_set():
    """Every training row votes: the majority is the training set's most frequent class (the
    lowest of equals) for every test row; the weighted vote still depends on the row."""
    train_x, train_y, test_x, _ = random_features()
    n = train_x.shape[0]
    most = int(torch.bincount(train_y, minlength=4).argmax())
    assert knn_predict(train_x, train_y, test_x, 4, k=n).tolist() == [most] * test_x.shape[0]
    weighted = knn_predict(train_x, train_y, test_x, 4, k=n, temperature=0.1)
    assert weighted.tolist() == brute_force(train_x, train_y, test_x, 4, n, 0.1)
    assert len(set(weighted.tolist())) > 1


def test_one_class_only():
    """Every labelled image of class 2 of 4: both votes must say 2, not fall back to class 0,
    whose score (like classes 1 and 3's) is zero."""
    train_x, _, test_x, _ = random_features()
    twos = torch.full((train_x.shape[0],), 2)
    encoded = Encoded(train_x, twos, test_x, torch.full((test_x.shape[0],), 2))
    scores = knn_scores(encoded, 4)
    assert scores["weighted"]["accuracy"] == scores["majority"]["accuracy"] == 100.0
    assert brute_force(train_x, twos, test_x, 4, 10) == [2] * test_x.shape[0]


def test_similarities_are_taken_a_block_of_test_rows_at_a_time(monkeypatch):
    """The memory bound: no similarity matrix of more than ``chunk`` test rows is ever made,
    for a test set many blocks long, and both votes share one pass over the blocks."""
    train_x, train_y, test_x, test_y = random_features(n_train=300, n_test=1000)
    shapes, topk = [], torch.Tensor.topk

    def spy(self, *args, **kwargs):
        shapes.append(tuple(self.shape))
        return topk(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "topk", spy)
    knn_scores(Encoded(train_x, train_y, test_x, test_y), 4, chunk=64)
    assert shapes == [(64, 300)] * 15 + [(40, 300)]


def test_the_weighted_vote_survives_a_tiny_temperature():
    """exp(s / T) overflows float32 (and float64) for T = 1e-4; the vote must still be the
    nearest neighbour's class, as the limit T → 0 is, not the lowest class among infinities."""
    train_x, train_y, test_x, _ = random_features()
    nearest = knn_predict(train_x, train_y, test_x, 4, k=1)
    for dtype in (torch.float32, torch.float64):
        x, t = train_x.to(dtype), test_x.to(dtype)
        assert knn_predict(x, train_y, t, 4, k=20, temperature=1e-4).tolist() == nearest.tolist()


def test_scores_lower_a_k_above_the_training_rows_and_say_so():
    train_x, train_y, test_x, test_y = random_features(n_train=30)
    scores = knn_scores(Encoded(train_x, train_y, test_x, test_y), 4, weighted_k=200)
    assert scores["weighted"] == {
        "accuracy": pytest.approx(
            100
            * np.mean(np.array(brute_force(train_x, train_y, test_x, 4, 30, 0.1)) == test_y.numpy())
        ),
        "k": 30,
        "temperature": 0.1,
        "k_lowered_from": 200,
    }
    majority = brute_force(train_x, train_y, test_x, 4, 10)
    assert scores["majority"] == {
        "accuracy": pytest.approx(100 * np.mean(np.array(majority) == test_y.numpy())),
        "k": 10,
    }


@pytest.mark.parametrize(("k", "temperature"), [(0, None), (121, None), (5, 0.0), (5, -1.0)])
def test_bad_settings_are_refused(k, temperature):
    train_x, train_y, test_x, _ = random_features()
    with pytest.raises(ValueError):
        knn_predict(train_x, train_y, test_x, 4, k=k, temperature=temperature)
