"""shift_flip_rotate: one composed affine transform per image, checked by where pixels land."""

from __future__ import annotations

import numpy as np
import pytest

from cifarlab.data.augment import random_affine

SIZE = 32


def _augment_copies(image: np.ndarray, copies: int, **params) -> np.ndarray:
    settings = dict(
        flip="none", height_shift=0.0, width_shift=0.0, rotation_degrees=0.0, fill_mode="constant"
    )
    augment = random_affine(**{**settings, **params}, seed=7)
    batch = np.repeat(image[None, :, :, None], copies, axis=0).astype("float32")
    return np.asarray(augment(batch))[..., 0]


def _blob() -> np.ndarray:
    image = np.zeros((SIZE, SIZE), "float32")
    image[6:9, 20:23] = 255.0  # off-centre, so flips, shifts and turns all move it
    return image


@pytest.mark.parametrize(
    "flip, allowed",
    [
        ("none", lambda x: [x]),
        ("horizontal", lambda x: [x, x[:, ::-1]]),
        ("vertical", lambda x: [x, x[::-1]]),
        ("horizontal_and_vertical", lambda x: [x, x[:, ::-1], x[::-1], x[::-1, ::-1]]),
    ],
)
def test_flips_alone_mirror_exactly_and_each_orientation_occurs(flip, allowed):
    image = np.random.default_rng(0).uniform(0, 255, (SIZE, SIZE)).astype("float32")
    out = _augment_copies(image, 64, flip=flip)
    choices = allowed(image)
    picked = [next(i for i, c in enumerate(choices) if np.allclose(o, c, atol=1e-3)) for o in out]
    assert set(picked) == set(range(len(choices)))


def _centroids(images: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[:SIZE, :SIZE]
    return np.stack([(xs * images).sum((1, 2)), (ys * images).sum((1, 2))], 1) / images.sum((1, 2))[:, None]


SOURCE = np.array([21.0, 7.0])  # the blob's centre (x, y)
CENTRE = (SIZE - 1) / 2


def test_shifts_cover_the_configured_range_on_each_axis_and_no_more():
    shift = 0.1
    moved = _centroids(_augment_copies(_blob(), 256, height_shift=shift, width_shift=shift)) - SOURCE
    limit = shift * SIZE
    assert (np.abs(moved) <= limit + 0.05).all()
    assert (np.ptp(moved, axis=0) > 1.6 * limit).all()


def test_rotations_turn_about_the_centre_within_the_configured_angle():
    degrees = 17.0
    turned = _centroids(_augment_copies(_blob(), 256, rotation_degrees=degrees)) - CENTRE
    source = SOURCE - CENTRE
    np.testing.assert_allclose(np.linalg.norm(turned, axis=1), np.linalg.norm(source), atol=0.3)
    angles = np.degrees(np.arctan2(turned[:, 1], turned[:, 0]) - np.arctan2(source[1], source[0]))
    assert (np.abs(angles) <= degrees + 1.0).all()
    assert angles.min() < -0.8 * degrees and angles.max() > 0.8 * degrees


def test_flip_shift_and_rotation_compose_into_reachable_positions():
    shift, degrees = 0.1, 17.0
    centroids = _centroids(
        _augment_copies(
            _blob(), 256, flip="horizontal", height_shift=shift, width_shift=shift, rotation_degrees=degrees
        )
    )
    angles = np.radians(np.linspace(-degrees, degrees, 341))
    reachable = []  # every position the blob reaches with no shift: both flips, all angles
    for x in (SOURCE[0], SIZE - 1 - SOURCE[0]):
        dx, dy = x - CENTRE, SOURCE[1] - CENTRE
        reachable.append(
            np.stack(
                [
                    CENTRE + dx * np.cos(angles) - dy * np.sin(angles),
                    CENTRE + dx * np.sin(angles) + dy * np.cos(angles),
                ],
                1,
            )
        )
    offsets = np.abs(centroids[:, None, :] - np.concatenate(reachable)[None, :, :]).max(axis=2)
    # Each result is some flip and rotation of the source, then a shift within range.
    assert (offsets.min(axis=1) <= shift * SIZE + 0.25).all()
    assert 0.3 < (centroids[:, 0] < CENTRE).mean() < 0.7


def test_no_flip_shift_or_rotation_is_the_identity():
    image = np.random.default_rng(1).uniform(0, 255, (SIZE, SIZE)).astype("float32")
    np.testing.assert_allclose(_augment_copies(image, 4), np.repeat(image[None], 4, 0), atol=1e-3)


@pytest.mark.parametrize("name", ["flip", "shift_flip_rotate", "crop_flip"])
def test_draws_are_a_function_of_the_seed_and_the_batch_position(compose_cfg, name):
    # What makes a resumed run augment each batch as the uninterrupted one did.
    from cifarlab.data.augment import build_augmentation

    cfg = compose_cfg(f"augmentation={name}")
    batch = np.random.default_rng(2).uniform(0, 255, (16, SIZE, SIZE, 3)).astype("float32")
    augment = build_augmentation(cfg.augmentation, seed=11)
    again = build_augmentation(cfg.augmentation, seed=11)  # a new process: no state carried over
    np.testing.assert_array_equal(np.asarray(augment(batch, 7)), np.asarray(again(batch, 7)))
    assert not np.array_equal(np.asarray(augment(batch, 7)), np.asarray(augment(batch, 8)))
    other_seed = build_augmentation(cfg.augmentation, seed=12)
    assert not np.array_equal(np.asarray(augment(batch, 7)), np.asarray(other_seed(batch, 7)))
