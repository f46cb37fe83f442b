"""Mixup and CutMix: images and one-hot labels blended with one partner each, drawn from (seed, batch position)."""

from __future__ import annotations

import numpy as np
import pytest

CLASSES = 5


def _batch(count: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Image i is 100 at pixel i (row-major over 4x4) and 0 elsewhere, labelled i % CLASSES."""
    images = np.zeros((count, 16, 3), np.float32)
    images[np.arange(count), np.arange(count) % 16] = 100.0
    return images.reshape(count, 4, 4, 3), np.arange(count) % CLASSES


def test_each_image_and_its_label_are_blended_with_one_partner_by_the_same_weight():
    from cifarlab.data.mixing import mixup

    images, labels = _batch()
    mixed, soft = (np.asarray(t) for t in mixup(0.5, CLASSES, seed=1)(images, labels, 3))
    assert mixed.shape == images.shape and soft.shape == (len(labels), CLASSES)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    pixels = mixed.reshape(len(labels), 16, 3)[..., 0] / 100.0  # [image, source image]: the share of each
    partners = set()
    for i, shares in enumerate(pixels):
        weight = shares[i]
        others = [j for j in np.flatnonzero(shares > 1e-6) if j != i]
        assert len(others) <= 1 and abs(shares.sum() - 1.0) < 1e-5  # itself and at most one partner
        expected = np.zeros(CLASSES)
        expected[labels[i]] += weight
        for j in others:
            expected[labels[j]] += shares[j]
            partners.add(j)
        np.testing.assert_allclose(soft[i], expected, atol=1e-5)  # the label blended by the image's weights
    assert len(partners) >= 4  # partners are a shuffle of the batch, not one image


def test_draws_are_a_function_of_seed_and_position_and_follow_alpha():
    from cifarlab.data.mixing import mixup

    count = 2048
    images, labels = np.zeros((count, 2, 2, 1), np.float32), np.arange(count)  # a class per image
    at = lambda alpha, seed, position: np.asarray(mixup(alpha, count, seed)(images, labels, position)[1])  # noqa: E731
    np.testing.assert_array_equal(at(0.5, 1, 7), at(0.5, 1, 7))  # a resumed run mixes as the first did
    assert not np.array_equal(at(0.5, 1, 7), at(0.5, 1, 8))
    assert not np.array_equal(at(0.5, 1, 7), at(0.5, 2, 7))
    # The weight kept of each image's own label: Beta(alpha, alpha), U-shaped below 1, peaked above.
    own = lambda alpha: at(alpha, 3, 0)[labels, labels]  # noqa: E731
    near_ends = lambda w: float(np.mean((w < 0.1) | (w > 0.9)))  # noqa: E731
    assert near_ends(own(0.2)) > 0.6 and near_ends(own(4.0)) < 0.1


def _flat_batch(count: int, side: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Image i is i everywhere and labelled i: each pixel tells which image it came from."""
    return np.repeat(np.arange(count, dtype=np.float32), side * side).reshape(
        count, side, side, 1
    ), np.arange(count)


def test_cutmix_pastes_one_box_of_one_partner_and_labels_by_the_share_of_pixels_kept():
    from cifarlab.data.mixing import cutmix

    images, labels = _flat_batch(16)
    mixed, soft = (np.asarray(t) for t in cutmix(1.0, 16, seed=1)(images, labels, 5))
    partners, boxes = set(), 0
    for i in range(16):
        sources = set(np.unique(mixed[i]).astype(int)) - {i}
        assert len(sources) <= 1  # pixels of itself and of at most one partner
        pasted = mixed[i, ..., 0] != i
        kept = 1.0 - pasted.mean()
        assert soft[i, i] == pytest.approx(kept, abs=1e-6) and soft[i].sum() == pytest.approx(1.0)
        if sources:
            (j,) = sources
            partners.add(j)
            assert soft[i, j] == pytest.approx(1.0 - kept, abs=1e-6)
            rows, cols = np.flatnonzero(pasted.any(axis=1)), np.flatnonzero(pasted.any(axis=0))
            assert pasted[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()  # one solid box
            boxes += 1
    assert boxes >= 8 and len(partners) >= 4  # most images get a box, from a shuffle of the batch


def test_cutmix_draws_are_a_function_of_seed_and_position():
    from cifarlab.data.mixing import cutmix

    images, labels = _flat_batch(64)
    at = lambda seed, position: np.asarray(cutmix(1.0, 64, seed)(images, labels, position)[0])  # noqa: E731
    np.testing.assert_array_equal(at(1, 7), at(1, 7))  # a resumed run cuts as the first did
    assert not np.array_equal(at(1, 7), at(1, 8)) and not np.array_equal(at(1, 7), at(2, 7))


def test_with_mixup_and_cutmix_each_batch_takes_one_of_them_by_its_position():
    from omegaconf import OmegaConf

    from cifarlab.data.mixing import build_mixing

    images, labels = _flat_batch(8)
    mix = build_mixing(OmegaConf.create({"mixup_alpha": 0.5, "cutmix_alpha": 1.0}), 8, seed=3)

    def kind(position: int) -> str:
        mixed = np.asarray(mix(images, labels, position)[0])
        return "cutmix" if np.array_equal(mixed, np.round(mixed)) else "mixup"  # mixup blends pixel values

    kinds = [kind(p) for p in range(24)]
    assert {"cutmix", "mixup"} == set(kinds) and kinds == [kind(p) for p in range(24)]


def test_the_training_pipeline_mixes_after_augmenting_and_keeps_the_epoch_stream(compose_cfg):
    from cifarlab.data import DataSplits
    from cifarlab.training.compile import soft_labels
    from cifarlab.training.datasets import stage_datasets
    from cifarlab.training.plan import assemble

    plan = assemble(
        compose_cfg(
            "dataset=synthetic", "augmentation=flip", "augmentation.mixup_alpha=0.4", "trainer.batch_size=4"
        )
    )
    assert soft_labels(plan)  # one-hot labels and a categorical loss, with no label smoothing
    images = np.random.default_rng(0).integers(0, 255, (12, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(12) % 3
    data = DataSplits(images, labels, images[:3], labels[:3], images[:3], labels[:3], ["a", "b", "c"], "tiny")
    train_ds, val_ds = stage_datasets(plan, data, plan.augmentation)
    x, y = next(iter(train_ds))
    assert y.shape == (4, 3) and np.allclose(np.asarray(y).sum(axis=1), 1.0)
    assert (np.asarray(y).max(axis=1) < 1.0).any()  # some labels are blends
    _, y_val = next(iter(val_ds))
    assert y_val.shape == (3, 3) and set(np.unique(y_val)) <= {0.0, 1.0}  # validation one-hot, never mixed
    again = next(
        iter(stage_datasets(plan, data, plan.augmentation)[0])
    )  # a new pipeline: the same first batch
    np.testing.assert_array_equal(np.asarray(x), np.asarray(again[0]))


@pytest.mark.parametrize("stages", [None, "plain_then_augmented"])
def test_no_mixup_keeps_integer_labels(compose_cfg, stages):
    from cifarlab.training.compile import soft_labels
    from cifarlab.training.plan import assemble

    overrides = ["augmentation=crop_flip"] + ([f"stages={stages}"] if stages else [])
    assert not soft_labels(assemble(compose_cfg(*overrides)))
    assert soft_labels(assemble(compose_cfg(*overrides, "trainer.label_smoothing=0.1")))


def test_mixup_in_any_stage_gives_the_whole_run_one_hot_labels(compose_cfg):
    from omegaconf import open_dict

    from cifarlab.training.compile import soft_labels
    from cifarlab.training.plan import assemble

    cfg = compose_cfg("stages=plain_then_augmented")
    with open_dict(cfg):
        cfg.stages[1].augmentation.mixup_alpha = 0.3  # mixup in the second stage only
    assert soft_labels(assemble(cfg))
    assert soft_labels(assemble(compose_cfg("augmentation=crop_flip", "augmentation.cutmix_alpha=1.0")))
