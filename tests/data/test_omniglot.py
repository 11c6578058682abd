"""Tests for memjax.data.omniglot: zips -> TFDS (ArrayRecord) -> arrays -> episodes.

Synthetic zips in the official layout (random 105x105 one-bit drawings whose ink is known)
check reading, de-duplication, resizing, caching, downloading and every error; the real
minimal splits (``$MEMJAX_DATA_DIR/omniglot``; skipped when absent) are counted against
their zip listings. Episodes are decoded back to (character, drawer, rotation) by matching
each example against ``np.rot90`` of every stored image.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import pathlib
import re
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from memjax.data import omniglot
from memjax.data.omniglot import source as source_lib

SMALL1, SMALL2 = "images_background_small1.zip", "images_background_small2.zip"


# ----------------------------------------------------------------------------- helpers


def _png(ink: np.ndarray) -> bytes:
  """A one-bit PNG, white paper (1) and black ink (0), as in the official files."""
  out = io.BytesIO()
  Image.fromarray(~ink.astype(bool)).save(out, format="PNG")
  return out.getvalue()


def _drawings(seed: int, num: int = 20) -> np.ndarray:
  return np.random.default_rng(seed).random((num, 105, 105)) < 0.1


def _write_zip(path: pathlib.Path, chars: dict, *, first_id: int = 1, extra=None) -> None:
  """``chars``: {(alphabet, character): bool ink [20, 105, 105]} written as
  ``<stem>/<alphabet>/<character>/<id>_<drawer>.png`` with directory entries."""
  top = path.name[: -len(".zip")]
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
    zf.writestr(f"{top}/", b"")
    for i, ((alphabet, character), ink) in enumerate(sorted(chars.items())):
      zf.writestr(f"{top}/{alphabet}/{character}/", b"")
      for d in range(len(ink)):
        zf.writestr(
          f"{top}/{alphabet}/{character}/{first_id + i:04d}_{d + 1:02d}.png", _png(ink[d])
        )
    for member, data in (extra or {}).items():
      zf.writestr(member, data)


def _reference_resize(ink: np.ndarray, size: int) -> np.ndarray:
  """Area resize written another way: upsample by repetition to lcm(n, size), then take
  block means."""
  n = ink.shape[-1]
  big = math.lcm(n, size)
  up = np.repeat(np.repeat(ink.astype(np.float64), big // n, -2), big // n, -1)
  b = big // size
  return up.reshape(*ink.shape[:-2], size, b, size, b).mean(axis=(-3, -1))


def _listing(path) -> dict[tuple[str, str], list[str]]:
  """{(alphabet, character): PNG names} from a zip's listing alone."""
  out: dict[tuple[str, str], list[str]] = {}
  for name in zipfile.ZipFile(path).namelist():
    parts = name.split("/")
    if name.endswith(".png"):
      out.setdefault((parts[1], parts[2]), []).append(parts[3])
  return out


# Synthetic data: small1 = {Alpha: 2, Shared: 3}, small2 = {Shared: 3 (same drawings), Gamma: 2}.
_SHARED = {("Shared", f"character{i:02d}"): _drawings(100 + i) for i in (1, 2, 3)}
_SMALL1 = {("Alpha", f"character{i:02d}"): _drawings(i) for i in (1, 2)} | _SHARED
_SMALL2 = {("Gamma", f"character{i:02d}"): _drawings(200 + i) for i in (1, 2)} | _SHARED
_TRUTH = _SMALL1 | _SMALL2  # 7 distinct characters


@pytest.fixture(autouse=True)
def _no_home_cache(tmp_path_factory, monkeypatch):
  """Loaders that get no ``tfds_dir`` cache under a temporary folder, never ~."""
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path_factory.getbasetemp() / "tfds_default"))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> pathlib.Path:
  folder = tmp_path_factory.mktemp("omniglot")
  _write_zip(folder / SMALL1, _SMALL1)
  _write_zip(folder / SMALL2, _SMALL2, first_id=50)
  return folder


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory) -> pathlib.Path:
  return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="module")
def loaded(synthetic, tfds_dir) -> omniglot.OmniglotArrays:
  return omniglot.load(synthetic, image_size=105, tfds_dir=tfds_dir)


def _real_folder() -> pathlib.Path | None:
  roots = [
    os.environ.get("MEMJAX_DATA_DIR"),
    pathlib.Path(__file__).resolve().parents[3] / "shared" / "data",
  ]
  for root in roots:
    if root and (pathlib.Path(root) / "omniglot" / SMALL1).is_file():
      return pathlib.Path(root) / "omniglot"
  return None


@pytest.fixture(scope="module")
def real_folder() -> pathlib.Path:
  folder = _real_folder()
  if folder is None:
    pytest.skip("Omniglot zips not found in $MEMJAX_DATA_DIR/omniglot (real-data test)")
  return folder


@pytest.fixture(scope="module")
def real(real_folder, tfds_dir) -> omniglot.OmniglotArrays:
  return omniglot.load(real_folder, tfds_dir=tfds_dir)


# ----------------------------------------------------------------------------- resize


@pytest.mark.parametrize("size", [28, 20, 35, 105, 210])
def test_area_resize_matches_block_means(size):
  ink = np.random.default_rng(size).random((3, 2, 105, 105)) < 0.3
  got = omniglot.area_resize(ink, size)
  assert got.shape == (3, 2, size, size) and got.dtype == np.float32
  np.testing.assert_allclose(got, _reference_resize(ink, size), atol=1e-5)


# ----------------------------------------------------------------------------- load


def test_load_reads_every_drawing_as_ink_in_drawer_order(loaded, synthetic):
  names = sorted(_TRUTH)
  assert loaded.character_names == tuple(f"{a}/{c}" for a, c in names)
  assert loaded.alphabet_names == ("Alpha", "Gamma", "Shared")
  assert loaded.alphabet.dtype == np.int32
  assert [loaded.alphabet_names[i] for i in loaded.alphabet] == [a for a, _ in names]
  assert loaded.images.shape == (7, 20, 105, 105) and loaded.images.dtype == np.float32
  np.testing.assert_array_equal(loaded.images, np.stack([_TRUTH[k] for k in names]))
  assert "tensorflow" not in sys.modules


def test_load_resizes_by_area_and_binarizes(loaded, synthetic, tfds_dir):
  got = omniglot.load(synthetic, image_size=28, tfds_dir=tfds_dir)
  want = _reference_resize(np.stack([_TRUTH[k] for k in sorted(_TRUTH)]), 28)
  np.testing.assert_allclose(got.images, want, atol=1e-5)
  binary = omniglot.load(synthetic, image_size=28, tfds_dir=tfds_dir, binarize=True)
  np.testing.assert_array_equal(binary.images, (want >= 0.5).astype(np.float32))


def test_characters_in_both_minimal_zips_are_kept_once(loaded, synthetic, tfds_dir):
  listed = set(_listing(synthetic / SMALL1)) | set(_listing(synthetic / SMALL2))
  assert len(listed) == 7 and len(loaded.character_names) == len(set(loaded.character_names)) == 7
  _, provenance = omniglot.prepare(synthetic, tfds_dir)
  assert provenance["duplicates"] == {f"Shared/character0{i}": [SMALL1, SMALL2] for i in (1, 2, 3)}
  only2 = omniglot.load(
    synthetic, image_size=105, tfds_dir=tfds_dir, sources=["images_background_small2"]
  )
  assert only2.character_names == tuple(f"{a}/{c}" for a, c in sorted(_SMALL2))
  with pytest.raises(ValueError, match="images_evaluation.zip"):
    omniglot.load(synthetic, tfds_dir=tfds_dir, sources=["images_evaluation"])


def test_a_character_with_different_drawings_in_two_zips_is_refused(tmp_path):
  changed = dict(_SMALL2)
  changed["Shared", "character02"] = _drawings(999)
  _write_zip(tmp_path / SMALL1, _SMALL1)
  _write_zip(tmp_path / SMALL2, changed)
  with pytest.raises(
    omniglot.OmniglotFormatError, match=f"Shared/character02 is in {SMALL1}.*{SMALL2}"
  ):
    omniglot.load(tmp_path, tfds_dir=tmp_path / "tfds")


def test_cache_is_keyed_by_content_and_reused_without_rebuilding(
  synthetic, tfds_dir, tmp_path, monkeypatch
):
  import tensorflow_datasets as tfds

  builder, provenance = omniglot.prepare(synthetic, tfds_dir)
  key = hashlib.sha256(
    "".join(
      f"{n}: {hashlib.sha256((synthetic / n).read_bytes()).hexdigest()}\n" for n in (SMALL1, SMALL2)
    ).encode()
  ).hexdigest()
  content_dir = tfds_dir / "omniglot_by_content" / key[:16]
  assert pathlib.Path(provenance["cache_dir"]) == content_dir / "memjax_omniglot" / "1.0.0"
  source = tfds.data_source("memjax_omniglot", data_dir=str(content_dir), split="train")
  assert len(source) == 7 and source[0]["images"].shape == (20, 105, 105)

  def no_rebuild(*args, **kwargs):
    raise AssertionError("rebuilt a prepared dataset")

  monkeypatch.setattr(omniglot.Omniglot, "_generate_examples", no_rebuild)
  omniglot.load(synthetic, image_size=105, tfds_dir=tfds_dir)  # cached: no rebuild
  changed = tmp_path / "changed"
  changed.mkdir()
  _write_zip(changed / SMALL1, {("Alpha", "character01"): _drawings(7)})
  with pytest.raises(AssertionError, match="rebuilt"):  # other content, other folder
    omniglot.load(changed, tfds_dir=tfds_dir)


def test_default_folder_and_tfds_dir_come_from_the_environment(synthetic, tmp_path, monkeypatch):
  root = tmp_path / "root"
  (root / "omniglot").mkdir(parents=True)
  (root / "omniglot" / SMALL1).write_bytes((synthetic / SMALL1).read_bytes())
  monkeypatch.setenv("MEMJAX_DATA_DIR", str(root))
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env_tfds"))
  got = omniglot.load(image_size=14)
  assert got.images.shape == (5, 20, 14, 14)
  assert (tmp_path / "env_tfds" / "omniglot_by_content").is_dir()


def test_downloads_the_official_zips_when_none_is_local(tmp_path, monkeypatch):
  remote = tmp_path / "remote"
  remote.mkdir()
  _write_zip(remote / "images_background.zip", _SMALL1)
  _write_zip(remote / "images_evaluation.zip", {("Omega", "character01"): _drawings(5)})
  monkeypatch.setattr(source_lib, "BASE_URL", remote.as_uri() + "/")
  got = omniglot.load(tmp_path / "empty", image_size=105, tfds_dir=tmp_path / "tfds")
  assert got.alphabet_names == ("Alpha", "Omega", "Shared") and got.images.shape[0] == 6
  downloads = tmp_path / "tfds" / "omniglot_by_content" / "downloads"
  assert sorted(p.name for p in downloads.iterdir()) == [
    "images_background.zip",
    "images_evaluation.zip",
  ]


# ----------------------------------------------------------------------------- errors


def test_missing_folder_names_it(tmp_path, monkeypatch):
  monkeypatch.delenv("MEMJAX_DATA_DIR", raising=False)
  missing = tmp_path / "nowhere"
  with pytest.raises(omniglot.OmniglotDataNotFoundError, match=f"{missing} \\(does not exist\\)"):
    omniglot.load(missing, tfds_dir=tmp_path / "tfds", allow_download=False)
  monkeypatch.setattr(source_lib, "reachable", lambda url: (False, "offline (test)"))
  with pytest.raises(omniglot.OmniglotDataNotFoundError, match="offline \\(test\\)") as info:
    omniglot.load(tmp_path, tfds_dir=tmp_path / "tfds")
  assert f"{tmp_path} (holds none of the zips)" in str(info.value)
  assert "MEMJAX_DATA_DIR" in str(info.value) and SMALL1 in str(info.value)


def _bad_zip(tmp_path, **extra) -> pathlib.Path:
  _write_zip(tmp_path / SMALL1, {("Alpha", "character01"): _drawings(1)}, extra=extra)
  return tmp_path


@pytest.mark.parametrize(
  "member, data, match",
  [
    (
      "images_background_small1/Alpha/character02/0002_01.png",
      b"not a png",
      "0002_01.png: not a readable PNG",
    ),
    (
      "images_background_small1/Alpha/character02/0002_01.png",
      _png(np.zeros((28, 28), bool)),
      "0002_01.png: image is \\(28, 28\\)",
    ),
    ("images_background_small1/Alpha/notes.txt", b"x", "Alpha/notes.txt: not <top>"),
    (
      "images_background_small1/Alpha/character01/0001_21.png",
      _png(np.zeros((105, 105), bool)),
      "drawer 21",
    ),
  ],
)
def test_a_bad_member_names_the_zip_and_member(tmp_path, member, data, match):
  folder = _bad_zip(tmp_path, **{member: data})
  with pytest.raises(omniglot.OmniglotFormatError, match=f"{folder / SMALL1}: .*{match}"):
    omniglot.load(folder, tfds_dir=tmp_path / "tfds")


def test_a_character_missing_a_drawer_is_named(tmp_path):
  _write_zip(tmp_path / SMALL1, {("Alpha", "character01"): _drawings(1, num=19)})
  with pytest.raises(
    omniglot.OmniglotFormatError, match="Alpha/character01 lacks the drawer\\(s\\) \\[20\\]"
  ):
    omniglot.load(tmp_path, tfds_dir=tmp_path / "tfds")


def test_a_corrupt_zip_is_named(synthetic, tmp_path):
  (tmp_path / SMALL1).write_bytes(b"PK\x03\x04 truncated")
  with pytest.raises(
    omniglot.OmniglotFormatError, match=f"{tmp_path / SMALL1}: not a readable zip"
  ):
    omniglot.load(tmp_path, tfds_dir=tmp_path / "tfds")
  data = bytearray((synthetic / SMALL1).read_bytes())
  data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # damage a member's compressed bytes
  (tmp_path / SMALL1).write_bytes(bytes(data))
  with pytest.raises(omniglot.OmniglotFormatError) as info:
    omniglot.load(tmp_path, tfds_dir=tmp_path / "tfds")
  # Names the zip, then the member (official path) that cannot be read.
  zip_path = re.escape(str(tmp_path / SMALL1))
  member = r"images_background_small1/\w+/character\d+/\d+_\d+\.png"
  assert re.match(f"{zip_path}: {member}: cannot be read", str(info.value)), str(info.value)


# ----------------------------------------------------------------------------- split


def _fake_arrays(per_alphabet=(3, 5, 2, 4)) -> omniglot.OmniglotArrays:
  alphabet = np.repeat(np.arange(len(per_alphabet)), per_alphabet).astype(np.int32)
  return omniglot.OmniglotArrays(
    images=np.random.default_rng(0).random((len(alphabet), 20, 4, 4)).astype(np.float32),
    alphabet=alphabet,
    alphabet_names=tuple(f"A{i}" for i in range(len(per_alphabet))),
    character_names=tuple(f"A{a}/c{i}" for i, a in enumerate(alphabet)),
  )


def _check_part(part: omniglot.OmniglotArrays, whole: omniglot.OmniglotArrays) -> None:
  index = [whole.character_names.index(n) for n in part.character_names]
  assert index == sorted(index)  # order kept
  np.testing.assert_array_equal(part.images, whole.images[index])
  assert [part.alphabet_names[i] for i in part.alphabet] == [
    whole.alphabet_names[whole.alphabet[i]] for i in index
  ]
  assert part.alphabet_names == tuple(sorted(set(part.alphabet_names)))


@pytest.mark.parametrize("num_test, held", [(4, 4), (0.25, 4), (0.01, 1)])
def test_split_characters_is_disjoint_and_complete(num_test, held):
  whole = _fake_arrays()
  train, test = omniglot.split_characters(whole, num_test=num_test, seed=3)
  assert len(test.character_names) == held and len(train.character_names) == 14 - held
  assert set(train.character_names).isdisjoint(test.character_names)
  assert set(train.character_names) | set(test.character_names) == set(whole.character_names)
  _check_part(train, whole)
  _check_part(test, whole)
  again = omniglot.split_characters(whole, num_test=num_test, seed=3)[1]
  assert again.character_names == test.character_names
  others = {
    omniglot.split_characters(whole, num_test=4, seed=s)[1].character_names for s in range(6)
  }
  assert len(others) > 1


def test_split_by_alphabet_holds_out_whole_alphabets():
  whole = _fake_arrays()
  train, test = omniglot.split_characters(whole, num_test=2, by="alphabet", seed=1)
  assert len(test.alphabet_names) == 2 and len(train.alphabet_names) == 2
  assert set(train.alphabet_names).isdisjoint(test.alphabet_names)
  sizes = dict(zip(whole.alphabet_names, (3, 5, 2, 4), strict=True))
  assert len(test.character_names) == sum(sizes[a] for a in test.alphabet_names)
  _check_part(train, whole)
  _check_part(test, whole)


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"num_test": 0}, "hold out 1..13"),
    ({"num_test": 14}, "hold out 1..13"),
    ({"num_test": 1.0}, "in \\(0, 1\\)"),
    ({"num_test": True}, "int or a float"),
    ({"num_test": 4, "by": "alphabet"}, "hold out 1..3 of the 4 alphabets"),
    ({"num_test": 1, "by": "drawer"}, "by must be"),
  ],
)
def test_split_characters_refuses_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    omniglot.split_characters(_fake_arrays(), **kwargs)


# ----------------------------------------------------------------------------- episodes

C, D, S = 9, 20, 6
_IMAGES = np.random.default_rng(1).random((C, D, S, S)).astype(np.float32)
_SETTING = dict(num_tasks=64, num_ways=5, num_shots=2, num_queries=3)


def _decode(x: np.ndarray, images: np.ndarray = _IMAGES) -> np.ndarray:
  """(character, drawer, rotation) [..., 3] of each example [..., S, S, 1], by matching it
  exactly against np.rot90(image, r) of every stored image."""
  table = {
    np.rot90(images[c, d], r).tobytes(): (c, d, r)
    for c in range(images.shape[0])
    for d in range(images.shape[1])
    for r in range(4)
  }
  flat = np.asarray(x, np.float32)[..., 0].reshape(-1, *images.shape[2:])
  return np.asarray([table[e.tobytes()] for e in flat]).reshape(*x.shape[:-3], 3)


@functools.cache
def _episodes(seed: int = 0, rotate: bool = True, shuffle: bool = True) -> omniglot.Episodes:
  got = omniglot.sample_episodes(
    jax.random.key(seed), _IMAGES, rotate=rotate, shuffle=shuffle, **_SETTING
  )
  return jax.tree.map(np.asarray, got)


def test_episode_shapes_and_dtypes():
  e = _episodes()
  assert e.support_x.shape == (64, 10, S, S, 1) and e.support_x.dtype == np.float32
  assert e.query_x.shape == (64, 15, S, S, 1) and e.query_x.dtype == np.float32
  assert e.support_y.shape == (64, 10) and e.query_y.shape == (64, 15)
  assert e.support_y.dtype == e.query_y.dtype == np.int32


def test_each_class_is_one_rotated_character_with_distinct_drawings():
  e = _episodes()
  support, query = _decode(e.support_x), _decode(e.query_x)
  for t in range(64):
    assert sorted(e.support_y[t].tolist()) == sorted(list(range(5)) * 2)
    assert sorted(e.query_y[t].tolist()) == sorted(list(range(5)) * 3)
    classes = []
    for label in range(5):
      s, q = support[t][e.support_y[t] == label], query[t][e.query_y[t] == label]
      both = np.concatenate([s, q])
      assert len({(c, r) for c, _, r in both}) == 1  # one (character, rotation)
      assert len(set(both[:, 1])) == 5  # K + Q different drawings
      classes.append(both[0, 0])
    assert len(set(classes)) == 5  # distinct characters, so distinct classes


def test_rotations_labels_and_orders_are_random():
  e = _episodes()
  support = _decode(e.support_x)
  assert set(support[..., 2].ravel()) == {0, 1, 2, 3}
  assert set(support[..., 0].ravel()) == set(range(C))
  # Label 0 is not tied to the smallest character of the task (labels are permuted).
  first = [support[t][e.support_y[t] == 0][0, 0] for t in range(64)]
  smallest = [support[t][:, 0].min() for t in range(64)]
  assert 0 < np.mean(np.equal(first, smallest)) < 0.6
  assert not all((e.support_y[t] == np.repeat(np.arange(5), 2)).all() for t in range(64))
  plain = _episodes(rotate=False, shuffle=False)
  assert set(_decode(plain.support_x)[..., 2].ravel()) == {0}
  assert (plain.support_y == np.repeat(np.arange(5), 2)).all()
  assert (plain.query_y == np.repeat(np.arange(5), 3)).all()


def test_rotate_indices_match_np_rot90():
  image = np.arange(5 * 5).reshape(5, 5)
  rows, cols = omniglot.rotate_indices(jnp.arange(-1, 6), 5)
  for i, k in enumerate(range(-1, 6)):
    np.testing.assert_array_equal(
      image[np.asarray(rows[i]), np.asarray(cols[i])], np.rot90(image, k)
    )


def test_jit_eager_scan_and_vmap_agree():
  key = jax.random.key(7)
  kwargs = dict(num_tasks=3, num_ways=4, num_shots=1, num_queries=2)
  with jax.disable_jit():
    eager = omniglot.sample_episodes(key, _IMAGES, **kwargs)
  jitted = omniglot.sample_episodes(key, _IMAGES, **kwargs)
  assert isinstance(eager.support_x, jax.Array)
  jax.tree.map(np.testing.assert_array_equal, eager, jitted)
  keys = jax.random.split(key, 2)

  def step(carry, k):
    return carry, omniglot.sample_episodes(k, carry, **kwargs)

  @jax.jit
  def scan_and_vmap(ks):  # one compile for both
    scanned = jax.lax.scan(step, jnp.asarray(_IMAGES), ks)[1]
    return scanned, jax.vmap(lambda k: omniglot.sample_episodes(k, _IMAGES, **kwargs))(ks)

  scanned, mapped = jax.tree.map(np.asarray, scan_and_vmap(keys))
  for i in range(2):
    one = omniglot.sample_episodes(keys[i], _IMAGES, **kwargs)
    jax.tree.map(lambda a, b, i=i: np.testing.assert_array_equal(a[i], b), scanned, one)
  jax.tree.map(np.testing.assert_array_equal, scanned, mapped)
  u8 = omniglot.sample_episodes(key, (_IMAGES > 0.5).astype(np.uint8), **kwargs)
  np.testing.assert_array_equal(u8.support_x, (jitted.support_x > 0.5).astype(np.float32))


@pytest.mark.parametrize(
  "images, kwargs, match",
  [
    (_IMAGES, {"num_ways": 10}, "num_ways=10 needs that many characters; images hold 9"),
    (_IMAGES, {"num_shots": 10, "num_queries": 11}, "= 21 needs that many drawings"),
    (_IMAGES[..., :5], {}, "square"),
    (_IMAGES[0], {}, "\\[characters, drawers, S, S\\]"),
    (_IMAGES, {"num_tasks": 0}, "num_tasks must be a positive int"),
    (_IMAGES, {"num_queries": True}, "num_queries must be a positive int"),
  ],
)
def test_sample_episodes_refuses_bad_arguments(images, kwargs, match):
  with pytest.raises(ValueError, match=match):
    omniglot.sample_episodes(jax.random.key(0), images, **{**_SETTING, **kwargs})


# ----------------------------------------------------------------------------- real data


def test_real_minimal_splits_counts_from_the_zip_listing(real, real_folder):
  one, two = _listing(real_folder / SMALL1), _listing(real_folder / SMALL2)
  shared = sorted(set(one) & set(two))
  assert {a for a, _ in shared} == {"Greek", "Latin"} and len(shared) == 24 + 26
  # The shared characters are the same files, byte for byte: duplicates, kept once.
  with zipfile.ZipFile(real_folder / SMALL1) as z1, zipfile.ZipFile(real_folder / SMALL2) as z2:
    for a, c in shared:
      assert sorted(one[a, c]) == sorted(two[a, c])
      for name in one[a, c]:
        assert z1.read(f"images_background_small1/{a}/{c}/{name}") == z2.read(
          f"images_background_small2/{a}/{c}/{name}"
        )
  listed = one | two
  assert all(len(files) == 20 for files in listed.values())
  assert real.character_names == tuple(f"{a}/{c}" for a, c in sorted(listed))
  assert real.alphabet_names == tuple(sorted({a for a, _ in listed}))
  assert real.images.shape == (len(listed), 20, 28, 28)
  per_alphabet = np.bincount(real.alphabet)
  for i, name in enumerate(real.alphabet_names):
    assert per_alphabet[i] == sum(a == name for a, _ in listed)
  # No two characters (and no two drawings) are the same images.
  assert len({real.images[c].tobytes() for c in range(len(listed))}) == len(listed)
  assert len({img.tobytes() for img in real.images.reshape(-1, 28, 28)}) == 20 * len(listed)


def test_real_images_are_the_resized_ink(real, real_folder):
  zips = [zipfile.ZipFile(real_folder / n) for n in (SMALL1, SMALL2)]
  for index in (0, 100, len(real.character_names) - 1):
    alphabet, character = real.character_names[index].split("/")
    for zf in zips:
      top = zf.namelist()[0].split("/")[0]
      files = sorted(n for n in zf.namelist() if n.startswith(f"{top}/{alphabet}/{character}/"))
      if files:
        break
    assert len(files) == 21  # the folder entry and 20 drawings
    for name in (files[1], files[-1]):
      drawer = int(name[-6:-4])
      paper = np.asarray(Image.open(io.BytesIO(zf.read(name))))  # mode '1': True = white
      np.testing.assert_allclose(
        real.images[index, drawer - 1], _reference_resize(~paper, 28), atol=1e-5
      )


def test_real_episodes_are_rotations_of_held_out_characters(real):
  train, test = omniglot.split_characters(real, num_test=0.2, seed=0)
  assert set(train.character_names).isdisjoint(test.character_names)
  e = omniglot.sample_episodes(
    jax.random.key(0), test.images, num_tasks=2, num_ways=20, num_shots=1, num_queries=1
  )
  decoded = _decode(np.asarray(e.support_x), test.images)  # [2, 20, 3]
  for t in range(2):
    assert len(set(decoded[t, :, 0])) == 20  # 20 distinct held-out characters
    for (c, d, r), x in zip(decoded[t], np.asarray(e.support_x)[t, ..., 0], strict=True):
      np.testing.assert_array_equal(x, np.rot90(test.images[c, d], r))
