"""``dataset`` section -> source -> replay stores: the ``static_world_model_ingest`` pipeline's work."""

from __future__ import annotations

from diamond_kedro.datasets.config import DatasetConfig
from diamond_kedro.datasets.writer import IngestSummary, write_dataset


def make_source(d: DatasetConfig):
    """The configured source (listing its files and choosing the action spec; nothing is decoded yet)."""
    kind = "auto" if d.action_kind == "auto" else d.action_kind
    if d.kind == "csgo_hdf5":
        from diamond_kedro.datasets.csgo_hdf5 import CsgoHdf5Source

        return CsgoHdf5Source(d.path, d.csgo_hdf5.frames_per_file, None, d.csgo_hdf5.action_dim,
                              "multi_hot" if kind == "auto" else kind, max_frame_size=d.csgo_hdf5.max_frame_size)
    if d.kind == "minari":
        from diamond_kedro.datasets.minari import MinariSource

        return MinariSource(d.path, d.minari.observation_key, kind)
    from diamond_kedro.datasets.video import VideoSource

    v = d.video
    return VideoSource(d.path, v.action_columns, kind, d.num_actions, v.actions_file, v.file_column, v.frame_column,
                       v.episode_column, v.reward_column, v.terminated_column, v.truncated_column)


def ingest_dataset(d: DatasetConfig, progress: bool = True) -> IngestSummary:
    """Ingest (or resume ingesting) ``d.path`` into ``d.store_dir`` (see :mod:`diamond_kedro.datasets.writer`)."""
    source = make_source(d)
    test_names = None
    if d.test_split_file is not None:
        from diamond_kedro.datasets.csgo_hdf5 import load_test_split

        test_names = load_test_split(d.test_split_file, option="static_world_model.dataset.test_split_file",
                                     basename=d.kind == "csgo_hdf5")
        if d.kind == "csgo_hdf5":
            test_names = source.test_split_names(test_names)
    return write_dataset(
        source, d.store_dir, d.frame_size, d.low_res_size, resize=d.resize, test_names=test_names,
        test_fraction=d.test_fraction, on_bad_file=d.on_bad_file, fsync=d.fsync, progress=progress,
        extra_index={"name": d.name, "fps": d.fps},
    )
