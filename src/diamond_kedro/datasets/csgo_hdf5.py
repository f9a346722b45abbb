"""Source: the CS:GO HDF5 layout of Pearce & Zhu's dataset (spec §7.1), any number of frames per file.

Input, as published (``dataset_dm_scraped_dust2``): ``.tar`` archives ``hdf5_dm_july2021_<a>_to_<b>.tar``
of HDF5 files ``hdf5_dm_july2021_<n>.hdf5`` -- or a folder of already extracted HDF5 files, or both. Each
file is one episode: ``frame_<i>_x`` H x W x 3 uint8 **BGR** (150x280 in the published data),
``frame_<i>_y`` the action vector (51-dim multi-hot in the published data, §7.2), for i = 0 .. T-1; other keys
are ignored. The published files have T = 1000; any T >= 1 is accepted unless ``frames_per_file`` is set.
Tar members are read in place (``tarfile.extractfile`` is seekable for plain tars and h5py reads file
objects), so the 660 GB never need to be extracted nor held in memory: one file at a time.

An episode is named by its file id ``<folder>/<file name>`` (a tar's folder is the authors' ``<a>-<b>``);
the test-split list names files by their file name.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

import h5py
import numpy as np

from diamond_kedro.datasets.writer import ActionSpec, DatasetError, RawEpisode, SourceNotFound, Unit

PREFIX = "hdf5_dm_july2021_"
CSGO_ACTION_DIM = 51


class CsgoDataError(DatasetError):
    """The CS:GO data is not as expected (corrupt file, missing key, wrong size...); names the file."""


@dataclass(frozen=True)
class Hdf5File:
    """One HDF5 file of the dataset, inside a tar archive or on its own."""

    file_id: str  # "<folder>/<file name>", the authors' original_file_id
    name: str  # the file name, what the test split lists
    path: Path  # the HDF5 file, or the tar archive holding it
    member: str | None = None  # the member name inside the tar

    @property
    def where(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)


def _file_number(name: str) -> int:
    """The number at the end of the file name (files sort by it, as the authors' dataset does); other names
    sort after, by name."""
    m = re.search(r"_(\d+)\.hdf5$", name)
    return int(m.group(1)) if m else 1 << 62


def tar_folder_name(tar_path: Path) -> str:
    """The authors' folder for a tar: its stem after the prefix with ``_to_`` -> ``-`` (e.g. ``1-200``)."""
    stem = tar_path.name.removesuffix(".tar")
    return "-".join(stem[len(PREFIX) :].split("_to_")) if stem.startswith(PREFIX) else stem


def find_sources(source_dir: str | Path, option: str = "csgo.data.source_dir",
                 bad_archives: dict[str, str] | None = None) -> list[Hdf5File]:
    """Every HDF5 file under ``source_dir`` (``*.tar`` archives are listed, not extracted), sorted by the
    number at the end of the file name. An unreadable archive raises, or -- given ``bad_archives`` -- is
    recorded there (its path under ``source_dir`` -> the error) and the listing goes on."""
    root = Path(source_dir)
    if not root.is_dir():
        raise SourceNotFound(f"CS:GO source folder {root} does not exist ({option})")
    sources: list[Hdf5File] = []
    for tar_path in sorted(root.rglob("*.tar")):
        folder = tar_folder_name(tar_path)
        try:
            with tarfile.open(tar_path, "r:") as tf:
                members = [m for m in tf.getmembers() if m.isfile() and m.name.endswith(".hdf5")]
        except (tarfile.TarError, OSError) as exc:
            error = CsgoDataError(f"cannot read tar archive {tar_path}: {exc}")
            if bad_archives is None:
                raise error from exc
            bad_archives[tar_path.relative_to(root).as_posix()] = str(error)
            continue
        for m in members:
            name = Path(m.name).name
            sources.append(Hdf5File(f"{folder}/{name}", name, tar_path, m.name))
    for path in sorted(root.rglob("*.hdf5")):
        sources.append(Hdf5File(f"{path.parent.name}/{path.name}", path.name, path))
    seen: dict[str, Hdf5File] = {}
    for s in sources:
        if s.file_id in seen:
            raise CsgoDataError(f"file id {s.file_id} appears twice: {seen[s.file_id].where} and {s.where}")
        seen[s.file_id] = s
    return sorted(sources, key=lambda s: (_file_number(s.name), s.name, s.file_id))


def load_test_split(path: str | Path | None, option: str = "csgo.data.test_split_file", basename: bool = True) -> set[str]:
    """Names of the test split (one per line; ``#`` comments; file names only when ``basename``).
    ``None`` = the published 500-file CS:GO list."""
    if path is None:
        text = resources.files("diamond_kedro.csgo").joinpath("test_split.txt").read_text()
    else:
        p = Path(path)
        if not p.is_file():
            raise SourceNotFound(
                f"test-split list {p} does not exist ({option}); it lists one file name per line, "
                "e.g. hdf5_dm_july2021_3.hdf5"
            )
        text = p.read_text()
    names = {line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")}
    return {Path(n).name for n in names} if basename else names


@contextmanager
def _open_source(source: Hdf5File) -> Iterator[IO[bytes] | Path]:
    if source.member is None:
        yield source.path
        return
    with tarfile.open(source.path, "r:") as tf:
        f = tf.extractfile(source.member)
        if f is None:
            raise CsgoDataError(f"{source.where}: not a regular file in the archive")
        with f:
            yield f


MAX_FRAME_SIZE = (2160, 3840)  # (H, W): 4K, the default bound on a frame size a file may declare


def read_episode(
    source: Hdf5File,
    frames_per_file: int | None = None,
    frame_size: tuple[int, int] | None = (150, 280),
    action_dim: int = CSGO_ACTION_DIM,
    max_frame_size: tuple[int, int] = MAX_FRAME_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """(obs uint8 (T, H, W, 3) **RGB**, act float32 (T, action_dim)) of one HDF5 file, fully validated.

    T is the number of ``frame_<i>_x`` keys (it must equal ``frames_per_file`` when that is set); frames must
    be ``frame_size`` (when set) or all of the first frame's size, at most ``max_frame_size``. Raises
    CsgoDataError naming the file for an unreadable file, a missing ``frame_<i>_x/y`` key, a wrong frame
    count or shape, or a non-finite action. Shapes are checked as the file declares them, before anything is
    read or allocated: a tiny compressed file may declare gigabytes.
    """
    try:
        with _open_source(source) as src:
            with h5py.File(src, "r") as f:
                keys = set(f.keys())
                n_x = sum(1 for k in keys if re.fullmatch(r"frame_\d+_x", k))
                t = frames_per_file if frames_per_file is not None else n_x
                if t < 1:
                    raise CsgoDataError(f"{source.where}: has no frame_<i>_x keys")
                if frame_size is None:
                    if "frame_0_x" not in keys:
                        raise CsgoDataError(f"{source.where}: missing key 'frame_0_x' (the file has {n_x} frames)")
                    first = f["frame_0_x"]
                    if not isinstance(first, h5py.Dataset) or len(first.shape) != 3 or first.shape[2] != 3:
                        raise CsgoDataError(f"{source.where}: frame_0_x has shape {getattr(first, 'shape', None)}, "
                                            "expected (H, W, 3)")
                    frame_size = tuple(first.shape[:2])
                    if frame_size[0] > max_frame_size[0] or frame_size[1] > max_frame_size[1]:
                        raise CsgoDataError(
                            f"{source.where}: frame_0_x declares frames of {frame_size[0]}x{frame_size[1]}, larger "
                            f"than {max_frame_size[0]}x{max_frame_size[1]} (dataset.csgo_hdf5.max_frame_size)")
                h, w = frame_size
                obs = np.empty((t, h, w, 3), dtype=np.uint8)
                act = np.empty((t, action_dim), dtype=np.float32)
                for i in range(t):
                    kx, ky = f"frame_{i}_x", f"frame_{i}_y"
                    for k in (kx, ky):
                        if k not in keys:
                            raise CsgoDataError(f"{source.where}: missing key {k!r} (the file has {n_x} frames, "
                                                f"expected {t}: frame_0 .. frame_{t - 1})")
                    x = f[kx]
                    if x.shape != (h, w, 3) or x.dtype != np.uint8:
                        raise CsgoDataError(
                            f"{source.where}: {kx} has shape {x.shape} and dtype {x.dtype}, expected ({h}, {w}, 3) uint8"
                        )
                    obs[i] = x[()][..., ::-1]  # BGR -> RGB
                    if getattr(f[ky], "size", None) != action_dim:  # declared size, before reading
                        raise CsgoDataError(f"{source.where}: {ky} has {getattr(f[ky], 'size', None)} values, "
                                            f"expected {action_dim}")
                    y = np.asarray(f[ky][()], dtype=np.float32).reshape(-1)
                    if not np.isfinite(y).all():
                        raise CsgoDataError(f"{source.where}: {ky} holds non-finite values")
                    act[i] = y
                if n_x != t:
                    raise CsgoDataError(f"{source.where}: has {n_x} frames, expected exactly {t}")
    except CsgoDataError:
        raise
    except (OSError, KeyError, ValueError, TypeError, tarfile.TarError) as exc:  # h5py reports corruption as OSError
        raise CsgoDataError(f"{source.where}: unreadable or corrupt HDF5 file: {exc}") from exc
    return obs, act


class CsgoHdf5Source:
    """The CS:GO layout as a writer source: one unit (and one episode) per HDF5 file.

    ``frame_size`` None accepts any frame size (the writer then resizes); the CS:GO pipeline passes the
    published 150x280 so that a file of another size is an error. Actions are multi-hot ``action_dim``-vectors
    (``action_kind`` may say ``continuous`` for a layout that stores analogue values)."""

    kind = "csgo_hdf5"

    def __init__(self, source_dir: str | Path, frames_per_file: int | None = None,
                 frame_size: tuple[int, int] | None = None, action_dim: int = CSGO_ACTION_DIM,
                 action_kind: str = "multi_hot", option: str = "dataset.path",
                 max_frame_size: tuple[int, int] = MAX_FRAME_SIZE) -> None:
        # an unreadable archive is one bad unit (named by its path), not the end of the listing
        self.bad_archives: dict[str, str] = {}
        self.files = {s.file_id: s for s in find_sources(source_dir, option, self.bad_archives)}
        self.max_frame_size = tuple(max_frame_size)
        self.source_dir = str(source_dir)
        self.frames_per_file = frames_per_file
        self.frame_size = tuple(frame_size) if frame_size is not None else None
        self.spec = ActionSpec(action_kind, action_dim)

    def units(self) -> list[Unit]:
        return [Unit(fid, (fid,), s.where) for fid, s in self.files.items()] + [
            Unit(name, (name,), str(Path(self.source_dir) / name), error=err) for name, err in self.bad_archives.items()]

    def action_spec(self) -> ActionSpec:
        return self.spec

    def settings(self) -> dict[str, Any]:
        return {"path": self.source_dir, "frames_per_file": self.frames_per_file}

    def read(self, unit: Unit) -> list[RawEpisode]:
        if unit.error is not None:
            raise CsgoDataError(unit.error)
        obs, act = read_episode(self.files[unit.file_id], self.frames_per_file, self.frame_size, self.spec.dim,
                                self.max_frame_size)
        return [RawEpisode(unit.file_id, obs, act)]

    def test_split_names(self, test_names: set[str]) -> set[str]:
        """File-name list -> the episode names (file ids) of the listed files."""
        return {fid for fid, s in self.files.items() if s.name in test_names}
