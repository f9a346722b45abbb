"""Ingest the static CS:GO dataset (spec §7.1) into our replay format: the ``csgo_hdf5`` source
(:mod:`diamond_kedro.datasets.csgo_hdf5`) written by the shared replay-store writer
(:mod:`diamond_kedro.datasets.writer`), with the published sizes and split.

Output (``out_dir``)::

    full_res/{train,test}/   ReplayStore, obs uint8 (T, 150, 280, 3) RGB per episode
    low_res/{train,test}/    ReplayStore, obs uint8 (T, 30, 56, 3) RGB, same episode ids
    index.json               episode id -> original file id ("<folder>/<file name>") per split, + bookkeeping

``act`` float32 (T, 51), ``rew`` 0, ``end`` 0, ``trunc`` 0. The split: a file whose *name* is listed in the
test-split file (the published 500 names by default) goes to ``test``, every other one to ``train``.
Low resolution: antialiased bicubic (:func:`~diamond_kedro.datasets.writer.downscale`, the filter of the
authors' torchvision resize), clamped before the uint8 conversion (unlike the authors, spec §12.19).

Resumable and all-or-nothing per file (see the writer): a corrupt HDF5 file, a missing key or a wrong frame
size raises :class:`~diamond_kedro.datasets.csgo_hdf5.CsgoDataError` naming the file before anything of that file is written.
"""

from __future__ import annotations

from pathlib import Path

from diamond_kedro.datasets.csgo_hdf5 import CsgoHdf5Source, load_test_split
from diamond_kedro.datasets.writer import IngestSummary, write_dataset
from diamond_kedro.datasets.writer import load_index as _load_index


def load_index(root: str | Path) -> dict:
    """The ingest index of ``root`` (raises a clear error when the dataset was never ingested)."""
    return _load_index(root, hint="kedro run --pipelines=csgo_ingest")


def episode_file_ids(root: str | Path, split: str) -> list[str]:
    """Original file id ("<folder>/<file name>") of each episode id of a split."""
    return list(load_index(root)["splits"][split])


def ingest(
    source_dir: str | Path,
    out_dir: str | Path,
    test_split_file: str | Path | None = None,
    frames_per_file: int | None = None,
    frame_size: tuple[int, int] = (150, 280),
    low_res_size: tuple[int, int] = (30, 56),
    on_bad_file: str = "raise",
    fsync: bool = True,
    progress: bool = True,
) -> IngestSummary:
    """Ingest (or resume ingesting) every HDF5 file of ``source_dir`` into ``out_dir`` (module docstring).
    ``frames_per_file`` None accepts any number of frames per file (the published files have 1000)."""
    test_names = load_test_split(test_split_file)
    source = CsgoHdf5Source(source_dir, frames_per_file, frame_size, option="csgo.data.source_dir")
    return write_dataset(
        source, out_dir, frame_size, low_res_size, resize="stretch",
        test_names=source.test_split_names(test_names), on_bad_file=on_bad_file, fsync=fsync, progress=progress,
    )
