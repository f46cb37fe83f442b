"""Dataset loading: CIFAR-10 layouts, safe unpickling, IDX, splits, synthetic and image folders."""

from __future__ import annotations

import gzip
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from cifarlab.config.schema import DatasetConfig
from cifarlab.data import DataSplits
from cifarlab.data.cifar10 import CLASS_NAMES, load_cifar10
from cifarlab.data.idx import FASHION_CLASSES, MNIST_CLASSES
from cifarlab.data.safe_pickle import safe_load_path
from cifarlab.errors import ConfigError, DataError, UnsafePickleError
from cifarlab.training.builders import DATASETS, load_dataset

SUBSET = Path(__file__).resolve().parents[2].parent / "shared/data/cifar10-subset"
TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def make_cfg(**overrides):
    return OmegaConf.merge(OmegaConf.structured(DatasetConfig), overrides)


def assert_one_line_naming(exc: pytest.ExceptionInfo, *fragments: object) -> None:
    message = str(exc.value)
    assert "\n" not in message
    for fragment in fragments:
        assert str(fragment) in message, f"{fragment!r} not in {message!r}"


# ---------------------------------------------------------------- tiny CIFAR files


def cifar_batches(n: int = 7, seed: int = 0, labels=None) -> dict:
    """batch name -> (images (n, 32, 32, 3), labels (n,)), five train batches and the test one."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in [*TRAIN, "test_batch"]:
        y = rng.integers(0, 10, n) if labels is None else labels(rng, n)
        out[name] = (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.asarray(y, np.int64))
    return out


def rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> the official (N, 3072) rows of R, G, B planes."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def write_py(folder: Path, batches, names=CLASS_NAMES, numpy_module: str = "numpy._core") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    items = [
        (n, {b"data": rows(x), b"labels": y.tolist(), b"batch_label": n.encode()})
        for n, (x, y) in batches.items()
    ]
    items.append(("batches.meta", {b"label_names": [s.encode() for s in names], b"num_vis": 3072}))
    for name, obj in items:
        blob = pickle.dumps(obj, protocol=2)
        # protocol 2 names globals as text; this rewrites them as numpy 1 / the official files do
        blob = blob.replace(b"numpy._core.multiarray", f"{numpy_module}.multiarray".encode())
        (folder / name).write_bytes(blob)
    return folder


def write_bin(folder: Path, batches, names=CLASS_NAMES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in batches.items():
        records = np.concatenate([y.astype(np.uint8)[:, None], rows(x)], axis=1)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    return folder


def expected_arrays(batches):
    x_train = np.concatenate([batches[n][0] for n in TRAIN])
    y_train = np.concatenate([batches[n][1] for n in TRAIN])
    return x_train, y_train, *batches["test_batch"]


def assert_raw_equal(raw, batches, names=CLASS_NAMES) -> None:
    for got, want in zip(raw[:4], expected_arrays(batches)):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert raw.class_names == list(names)


# ---------------------------------------------------------------- import cost


def test_import_does_not_pull_in_tensorflow():
    code = "import sys, cifarlab.data; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_all_loaders_registered():
    expected = {"cifar10", "fashion_mnist", "mnist", "synthetic", "image_folder"}
    assert expected <= set(DATASETS.names())


# ---------------------------------------------------------------- CIFAR-10 layouts


@pytest.mark.parametrize("numpy_module", ["numpy._core", "numpy.core"])
def test_cifar_python_layout_round_trips(tmp_path, numpy_module):
    batches = cifar_batches()
    folder = write_py(tmp_path / "cifar-10-batches-py", batches, numpy_module=numpy_module)
    assert numpy_module.encode() + b".multiarray" in (folder / "test_batch").read_bytes()
    assert_raw_equal(load_cifar10(make_cfg(download=False), tmp_path), batches)
    # data_dir may also point straight at the batches folder
    assert_raw_equal(load_cifar10(make_cfg(download=False), folder), batches)


def test_cifar_binary_layout_reads_meta_names(tmp_path):
    batches, names = cifar_batches(seed=1), [f"thing{i}" for i in range(10)]
    folder = write_bin(tmp_path / "cifar-10-batches-bin", batches, names)
    assert_raw_equal(load_cifar10(make_cfg(download=False), tmp_path), batches, names)
    assert_raw_equal(load_cifar10(make_cfg(download=False), folder), batches, names)


def test_cifar_python_layout_preferred_over_binary(tmp_path):
    py, binary = cifar_batches(seed=2), cifar_batches(seed=3)
    write_py(tmp_path / "cifar-10-batches-py", py)
    write_bin(tmp_path / "cifar-10-batches-bin", binary)
    assert_raw_equal(load_cifar10(make_cfg(download=False), tmp_path), py)


def test_cifar_archive_read_without_extracting(tmp_path):
    batches = cifar_batches(n=5, seed=4)
    folder = write_py(tmp_path / "src" / "cifar-10-batches-py", batches)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with tarfile.open(data_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    assert_raw_equal(load_cifar10(make_cfg(download=False), data_dir), batches)
    assert sorted(p.name for p in data_dir.iterdir()) == ["cifar-10-python.tar.gz"]


@pytest.mark.parametrize(
    "subdir",
    ["cifar-10-batches-py-target/cifar-10-batches-py", "cifar-10-batches-py/cifar-10-batches-py"],
)
def test_cifar_keras_cache_layouts(tmp_path, subdir):
    batches = cifar_batches(seed=5)
    write_py(tmp_path / subdir, batches)
    assert_raw_equal(load_cifar10(make_cfg(download=False), tmp_path), batches)


def test_cifar_any_batch_size_and_image_layout(tmp_path):
    batches = cifar_batches(n=3)
    x = batches["test_batch"][0]
    x[0] = 0
    x[0, 1, 2] = (10, 20, 30)  # row 1, column 2, R/G/B
    write_bin(tmp_path / "cifar-10-batches-bin", batches)
    record = (tmp_path / "cifar-10-batches-bin/test_batch.bin").read_bytes()[:3073]
    # planes are R then G then B, each 32x32 row-major, after the label byte
    pixel = 1 + 32 + 2
    assert (record[pixel], record[pixel + 1024], record[pixel + 2048]) == (10, 20, 30)
    raw = load_cifar10(make_cfg(download=False), tmp_path)
    assert raw.x_train.shape == (15, 32, 32, 3) and raw.x_test.shape == (3, 32, 32, 3)
    assert tuple(raw.x_test[0, 1, 2]) == (10, 20, 30)


# ---------------------------------------------------------------- unsafe pickles


class Evil:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("victim", ["data_batch_1", "batches.meta", "test_batch"])
def test_malicious_batch_is_refused_and_not_executed(tmp_path, victim):
    folder = write_py(tmp_path / "cifar-10-batches-py", cifar_batches())
    pwned = tmp_path / "pwned"
    (folder / victim).write_bytes(pickle.dumps({b"data": Evil(pwned), b"labels": []}, protocol=2))
    with pytest.raises(UnsafePickleError) as exc:
        load_dataset(make_cfg(download=False), tmp_path)
    assert_one_line_naming(exc, folder / victim, "system", "not executed")
    assert not pwned.exists()


@pytest.mark.parametrize(
    "payload",
    [
        (eval, ("1+1",)),
        (getattr, (object, "__class__")),
        (__import__, ("os",)),
        (subprocess.call, (["true"],)),
    ],
)
def test_safe_unpickler_refuses_code_execution_gadgets(tmp_path, payload):
    class Gadget:
        def __reduce__(self):
            return payload

    path = tmp_path / "gadget"
    path.write_bytes(pickle.dumps([Gadget()], protocol=2))
    with pytest.raises(UnsafePickleError) as exc:
        safe_load_path(path)
    assert_one_line_naming(exc, path, payload[0].__name__)


def test_malicious_member_of_archive_is_refused(tmp_path):
    folder = write_py(tmp_path / "src" / "cifar-10-batches-py", cifar_batches())
    pwned = tmp_path / "pwned"
    (folder / "data_batch_2").write_bytes(pickle.dumps(Evil(pwned), protocol=4))
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    with pytest.raises(UnsafePickleError) as exc:
        load_cifar10(make_cfg(download=False), tmp_path)
    assert_one_line_naming(exc, "cifar-10-python.tar.gz", "data_batch_2")
    assert not pwned.exists()


# ---------------------------------------------------------------- CIFAR-10 errors


def test_cifar_missing_everywhere_says_what_and_how(tmp_path):
    with pytest.raises(DataError) as exc:
        load_dataset(make_cfg(name="cifar10", download=False), tmp_path)
    assert_one_line_naming(
        exc, tmp_path, "cifar-10-batches-py", "cifar-10-batches-bin", "cifar-10-python.tar.gz",
        "dataset.download=true", "dataset.data_dir=",
    )  # fmt: skip


def test_cifar_data_dir_override_and_home_expansion(tmp_path, monkeypatch):
    batches = cifar_batches()
    write_py(tmp_path / "home" / "cifar" / "cifar-10-batches-py", batches)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    splits = load_dataset(make_cfg(data_dir="~/cifar", download=False), tmp_path / "elsewhere")
    np.testing.assert_array_equal(splits.x_test, batches["test_batch"][0])
    monkeypatch.chdir(tmp_path / "home")
    splits = load_dataset(make_cfg(data_dir="cifar", download=False), tmp_path / "elsewhere")
    np.testing.assert_array_equal(splits.y_test, batches["test_batch"][1])


def test_cifar_truncated_binary_batch(tmp_path):
    folder = write_bin(tmp_path / "cifar-10-batches-bin", cifar_batches())
    path = folder / "data_batch_4.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError) as exc:
        load_cifar10(make_cfg(download=False), tmp_path)
    assert_one_line_naming(exc, path, "3073")


def test_cifar_python_batch_wrong_sizes(tmp_path):
    folder = write_py(tmp_path / "cifar-10-batches-py", cifar_batches())
    path = folder / "data_batch_2"
    bad = {b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}
    path.write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError) as exc:
        load_cifar10(make_cfg(download=False), tmp_path)
    assert_one_line_naming(exc, path, "3072")

    bad = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}
    path.write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError) as exc:
        load_cifar10(make_cfg(download=False), tmp_path)
    assert_one_line_naming(exc, path, "2 images but 1 labels")


def test_cifar_truncated_pickle(tmp_path):
    folder = write_py(tmp_path / "cifar-10-batches-py", cifar_batches())
    path = folder / "test_batch"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError) as exc:
        load_cifar10(make_cfg(download=False), tmp_path)
    assert not isinstance(exc.value, UnsafePickleError)
    assert_one_line_naming(exc, path)


def test_cifar_partial_folder_names_missing_batch(tmp_path):
    folder = write_py(tmp_path / "cifar-10-batches-py", cifar_batches())
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError) as exc:
        load_cifar10(make_cfg(download=True), tmp_path)  # found, so no download attempt
    assert_one_line_naming(exc, folder / "data_batch_3", "data_batch_1")


def test_cifar_unreadable_archive(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"\x1f\x8b" + os.urandom(500))
    with pytest.raises(DataError) as exc:
        load_cifar10(make_cfg(download=False), tmp_path)
    assert_one_line_naming(exc, path)


def test_cifar_label_out_of_range(tmp_path):
    batches = cifar_batches()
    batches["data_batch_1"][1][0] = 12
    write_bin(tmp_path / "cifar-10-batches-bin", batches)
    with pytest.raises(DataError) as exc:
        load_dataset(make_cfg(download=False), tmp_path)
    assert_one_line_naming(exc, "12", "10 class names")


# ---------------------------------------------------------------- IDX / npz


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_idx(folder: Path, seed: int = 0, n_train: int = 12, n_test: int = 5) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))
    return arrays


def assert_idx_equal(raw, arrays, names) -> None:
    want = list(arrays.values())
    np.testing.assert_array_equal(raw.x_train, want[0][..., None])
    np.testing.assert_array_equal(raw.y_train, want[1])
    np.testing.assert_array_equal(raw.x_test, want[2][..., None])
    np.testing.assert_array_equal(raw.y_test, want[3])
    assert raw.x_train.shape[1:] == (28, 28, 1)
    assert raw.class_names == names


def test_fashion_mnist_keras_layout(tmp_path):
    arrays = write_idx(tmp_path / "fashion-mnist")
    raw = DATASETS.get("fashion_mnist")(make_cfg(download=False), tmp_path)
    assert_idx_equal(raw, arrays, FASHION_CLASSES)
    cfg = make_cfg(name="fashion_mnist", download=False, val_fraction=0.25)
    splits = load_dataset(cfg, tmp_path)
    assert splits.input_shape == (28, 28, 1) and splits.class_names[0] == "T-shirt/top"
    assert len(splits.y_train) + len(splits.y_val) == 12 and len(splits.y_val) == 3


def test_mnist_from_npz_and_idx_folder(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (9, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 9, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 4, dtype=np.uint8),
    }
    np.savez(tmp_path / "mnist.npz", **arrays)
    load_mnist = DATASETS.get("mnist")
    assert_idx_equal(load_mnist(make_cfg(download=False), tmp_path), arrays, MNIST_CLASSES)

    idx_arrays = write_idx(tmp_path / "other" / "mnist", seed=2)
    raw = load_mnist(make_cfg(download=False), tmp_path / "other")
    assert_idx_equal(raw, idx_arrays, MNIST_CLASSES)


def test_mnist_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "mnist.npz"
    obj = np.empty(1, dtype=object)
    np.savez(path, x_train=obj, y_train=obj, x_test=obj, y_test=obj)
    with pytest.raises(DataError) as exc:
        DATASETS.get("mnist")(make_cfg(download=False), tmp_path)
    assert_one_line_naming(exc, path)


def test_idx_bad_magic_and_truncation(tmp_path):
    folder = tmp_path / "fashion-mnist"
    arrays = write_idx(folder)
    path = folder / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(arrays["train-images-idx3-ubyte"])))  # a 3-d file
    with pytest.raises(DataError) as exc:
        DATASETS.get("fashion_mnist")(make_cfg(download=False), tmp_path)
    assert_one_line_naming(exc, path, "magic", "00000801")

    path = folder / "t10k-images-idx3-ubyte.gz"
    write_idx(folder)
    path.write_bytes(gzip.compress(idx_bytes(arrays["t10k-images-idx3-ubyte"])[:-30]))
    with pytest.raises(DataError) as exc:
        DATASETS.get("fashion_mnist")(make_cfg(download=False), tmp_path)
    assert_one_line_naming(exc, path, "truncated")


def test_idx_missing_file_and_missing_dataset(tmp_path):
    folder = tmp_path / "fashion-mnist"
    write_idx(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as exc:
        DATASETS.get("fashion_mnist")(make_cfg(download=True), tmp_path)
    assert_one_line_naming(exc, folder / "t10k-labels-idx1-ubyte.gz")

    with pytest.raises(DataError) as exc:
        load_dataset(make_cfg(name="mnist", download=False), tmp_path / "empty")
    assert_one_line_naming(exc, tmp_path / "empty", "mnist.npz", "dataset.download=true")


# ---------------------------------------------------------------- splits


def imbalanced_labels(rng, n):
    return rng.choice(4, size=n, p=[0.55, 0.25, 0.15, 0.05])


def test_validation_split_is_stratified_deterministic_and_leaves_test_alone(tmp_path):
    batches = cifar_batches(n=60, labels=imbalanced_labels)
    write_bin(tmp_path / "cifar-10-batches-bin", batches)
    x_all, y_all, x_test, y_test = expected_arrays(batches)
    cfg = make_cfg(download=False, val_fraction=0.2, split_seed=7)
    splits = load_dataset(cfg, tmp_path)

    assert isinstance(splits, DataSplits)
    assert splits.num_classes == 10 and splits.input_shape == (32, 32, 3)
    assert len(splits.y_val) == 60 and len(splits.y_train) == 240
    want = 0.2 * np.bincount(y_all, minlength=10)
    assert np.all(np.abs(np.bincount(splits.y_val, minlength=10) - want) <= 1)
    # train + val is exactly the original training set
    merged = np.concatenate([splits.x_train, splits.x_val]).reshape(300, -1).sum(axis=1)
    assert sorted(merged) == sorted(x_all.reshape(300, -1).sum(axis=1))
    np.testing.assert_array_equal(splits.x_test, x_test)
    np.testing.assert_array_equal(splits.y_test, y_test)
    assert splits.x_train.dtype == np.uint8 and splits.y_train.dtype == np.int64

    again = load_dataset(cfg, tmp_path)
    np.testing.assert_array_equal(again.x_val, splits.x_val)
    other = load_dataset(make_cfg(download=False, val_fraction=0.2, split_seed=8), tmp_path)
    assert not np.array_equal(other.x_val, splits.x_val)


def test_a_process_loads_the_same_data_once_and_again_when_a_file_changes(tmp_path):
    # A search's trials in one worker: the second load reads no file, and its arrays are
    # read-only, so no trial can change the next one's data.
    batches = cifar_batches(n=20)
    folder = write_py(tmp_path / "cifar-10-batches-py", batches)
    cfg = make_cfg(download=False)
    first = load_dataset(cfg, tmp_path)
    assert load_dataset(cfg, tmp_path).x_train is first.x_train
    with pytest.raises(ValueError, match="read-only"):
        first.x_train[0, 0, 0, 0] = 1
    assert load_dataset(make_cfg(download=False, val_fraction=0.3), tmp_path).x_train is not first.x_train

    changed = cifar_batches(n=20, seed=1)
    write_py(folder, {"test_batch": changed["test_batch"]})
    np.testing.assert_array_equal(load_dataset(cfg, tmp_path).x_test, changed["test_batch"][0])


def test_limit_fraction_keeps_every_class(tmp_path):
    batches = cifar_batches(n=60, labels=imbalanced_labels)
    write_bin(tmp_path / "cifar-10-batches-bin", batches)
    full = load_dataset(make_cfg(download=False, val_fraction=0.2), tmp_path)
    small = load_dataset(make_cfg(download=False, val_fraction=0.2, limit_fraction=0.1), tmp_path)
    for part in ("train", "val", "test"):
        y_full, y_small = getattr(full, f"y_{part}"), getattr(small, f"y_{part}")
        assert len(y_small) <= 0.1 * len(y_full) + 4
        assert set(y_small) == set(y_full)  # the rarest class survives
    # the kept test images are a subset of the full test split, in order
    test_keys = [x.tobytes() for x in full.x_test]
    positions = [test_keys.index(x.tobytes()) for x in small.x_test]
    assert positions == sorted(positions)


# ---------------------------------------------------------------- synthetic


def test_synthetic_shapes_determinism_and_learnable_structure():
    cfg = make_cfg(name="synthetic", num_classes=4, samples_per_class=30, test_samples_per_class=10,
                   image_size=12, channels=3, val_fraction=0.2)  # fmt: skip
    splits = load_dataset(cfg, "/nonexistent")
    assert splits.x_train.shape == (96, 12, 12, 3) and splits.x_val.shape == (24, 12, 12, 3)
    assert splits.x_test.shape == (40, 12, 12, 3) and splits.x_train.dtype == np.uint8
    assert splits.class_names == ["class_0", "class_1", "class_2", "class_3"]
    assert np.all(np.bincount(splits.y_test) == 10)
    np.testing.assert_array_equal(load_dataset(cfg, "/nonexistent").x_train, splits.x_train)

    # nearest class mean separates the classes: structure a tiny model can learn
    flat = splits.x_train.reshape(len(splits.x_train), -1).astype(float)
    means = np.stack([flat[splits.y_train == c].mean(0) for c in range(4)])
    test = splits.x_test.reshape(40, -1).astype(float)
    predicted = np.argmin(((test[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == splits.y_test).mean() > 0.9


def test_synthetic_grayscale_and_bad_value():
    raw = DATASETS.get("synthetic")(make_cfg(channels=1, image_size=8, num_classes=3), None)
    assert raw.x_train.shape == (120, 8, 8, 1)
    with pytest.raises(ConfigError, match="dataset.num_classes"):
        DATASETS.get("synthetic")(make_cfg(num_classes=0), None)
    with pytest.raises(
        ConfigError, match=r"dataset.num_classes=1 is not valid; use a whole number of at least 2"
    ):
        DATASETS.get("synthetic")(make_cfg(num_classes=1), None)


# ---------------------------------------------------------------- image folders


def write_images(root: Path, counts: dict[str, int], seed: int = 0) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            size = (10 + i, 14)  # mixed sizes: the loader resizes
            noise = rng.integers(0, 5, (size[1], size[0], 3), dtype=np.uint8)
            pixels = np.full_like(noise, 40 * label) + noise
            ext = ("png", "jpg", "bmp")[i % 3]
            Image.fromarray(pixels).save(root / name / f"{i}.{ext}")


def test_image_folder_holds_out_stratified_test(tmp_path):
    write_images(tmp_path, {"dog": 10, "cat": 10, "emu": 5})
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    raw = DATASETS.get("image_folder")(make_cfg(image_size=8), tmp_path)
    assert raw.class_names == ["cat", "dog", "emu"]
    assert raw.x_train.shape == (20, 8, 8, 3) and raw.x_test.shape == (5, 8, 8, 3)
    assert np.bincount(raw.y_test, minlength=3).tolist() == [2, 2, 1]
    # label 1 is "dog", drawn with value 0; label 0 "cat" with 40
    assert raw.x_train[raw.y_train == 1].max() < 10 and raw.x_train[raw.y_train == 0].min() > 30

    gray = DATASETS.get("image_folder")(make_cfg(image_size=6, channels=1), tmp_path)
    assert gray.x_train.shape == (20, 6, 6, 1)


def test_image_folder_train_test_subfolders(tmp_path):
    write_images(tmp_path / "train", {"a": 4, "b": 3})
    write_images(tmp_path / "test", {"b": 2})
    cfg = make_cfg(name="image_folder", data_dir=str(tmp_path), image_size=16, val_fraction=0.3)
    splits = load_dataset(cfg, "/x")
    assert splits.class_names == ["a", "b"]
    assert len(splits.y_train) + len(splits.y_val) == 7
    assert splits.y_test.tolist() == [1, 1] and splits.input_shape == (16, 16, 3)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError) as exc:
        DATASETS.get("image_folder")(make_cfg(), tmp_path / "missing")
    assert_one_line_naming(exc, tmp_path / "missing", "dataset.data_dir")

    with pytest.raises(DataError) as exc:
        DATASETS.get("image_folder")(make_cfg(), tmp_path)
    assert_one_line_naming(exc, tmp_path, "no class folders")

    write_images(tmp_path, {"a": 3})
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError) as exc:
        DATASETS.get("image_folder")(make_cfg(), tmp_path)
    assert_one_line_naming(exc, tmp_path / "b", "no images")

    (tmp_path / "b" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError) as exc:
        DATASETS.get("image_folder")(make_cfg(), tmp_path)
    assert_one_line_naming(exc, tmp_path / "b" / "broken.png")


def test_one_class_cannot_be_trained_on(tmp_path):
    write_images(tmp_path, {"cat": 4})
    with pytest.raises(DataError) as exc:
        load_dataset(make_cfg(name="image_folder", data_dir=str(tmp_path), image_size=8), "/unused")
    assert_one_line_naming(
        exc, f"dataset.data_dir={str(tmp_path)!r}", "one class only ('cat')", "add a folder"
    )


# ---------------------------------------------------------------- downloads


def test_failed_download_leaves_no_folder_it_created(tmp_path):
    from cifarlab.data.download import download

    missing = tmp_path / "typo" / "datasets"
    with pytest.raises(DataError) as exc:
        download("x.bin", (tmp_path / "absent.bin").as_uri(), missing)
    assert_one_line_naming(exc, missing / "x.bin", "dataset.data_dir=")
    assert list(tmp_path.iterdir()) == []

    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(DataError):
        download("x.bin", (tmp_path / "absent.bin").as_uri(), kept / "sub")
    assert list(tmp_path.iterdir()) == [kept] and list(kept.iterdir()) == []


def test_download_failing_its_hash_leaves_no_file(tmp_path):
    from cifarlab.data.download import download

    source = tmp_path / "source.bin"
    source.write_bytes(b"not the archive")
    with pytest.raises(DataError, match="hash"):
        download("x.bin", source.as_uri(), tmp_path / "cache", file_hash="0" * 64)
    assert not (tmp_path / "cache").exists()
    assert download("x.bin", source.as_uri(), tmp_path / "cache").read_bytes() == b"not the archive"


# ---------------------------------------------------------------- the real subset


@pytest.mark.real_data
def test_real_cifar10_subset_both_layouts_agree():
    if not SUBSET.is_dir():
        pytest.skip(f"{SUBSET} is absent")
    cfg = make_cfg(download=False)
    py = load_cifar10(cfg, SUBSET / "cifar-10-batches-py")
    binary = load_cifar10(cfg, SUBSET / "cifar-10-batches-bin")
    for a, b in zip(py[:4], binary[:4]):
        np.testing.assert_array_equal(a, b)
    assert py.class_names == binary.class_names == CLASS_NAMES

    cfg = make_cfg(data_dir=str(SUBSET), download=False, val_fraction=0.1)
    splits = load_dataset(cfg, "/nonexistent")
    assert len(splits.y_train) + len(splits.y_val) == 5085 and len(splits.y_test) == 1017
    assert splits.input_shape == (32, 32, 3) and splits.num_classes == 10
    assert set(np.unique(splits.y_val)) == set(range(10))
