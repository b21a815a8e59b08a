"""Dataset selection rules of spec section 1 that the end-to-end runs only see in aggregate."""

import pytest
import torch

from datasets.natural import stratified_indices
from datasets.paths import DatasetError


def test_proportion_keeps_floor_n_p_over_classes_of_every_class():
    # Unequal classes (50, 30, 20 images): floor(100 · 0.3 / 3) = 10 of each, whatever its size.
    order = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)[order]
    kept = stratified_indices(labels, 0.3, 3, seed=7)
    assert torch.bincount(labels[kept], minlength=3).tolist() == [10, 10, 10]
    assert kept.unique().numel() == 30 and torch.equal(kept, kept.sort().values)
    assert torch.equal(kept, stratified_indices(labels, 0.3, 3, seed=7))
    assert not torch.equal(kept, stratified_indices(labels, 0.3, 3, seed=8))
    assert torch.equal(stratified_indices(labels, 1.0, 3, seed=7), torch.arange(100))


def test_proportion_too_small_for_a_class_is_a_dataset_error():
    labels = torch.tensor([0] * 50 + [1] * 4)
    with pytest.raises(DatasetError, match="class 1 has 4 images, fewer than 5"):
        stratified_indices(labels, 0.2, 2, seed=0)  # floor(54 · 0.2 / 2) = 5
    with pytest.raises(DatasetError, match="raise --proportion"):
        stratified_indices(labels, 0.01, 2, seed=0)


def test_a_missing_image_folder_is_a_dataset_error(tmp_path):
    from datasets.natural import image_folder_files

    with pytest.raises(DatasetError, match="is not a folder"):
        image_folder_files(tmp_path / "nowhere", "imagenet")
