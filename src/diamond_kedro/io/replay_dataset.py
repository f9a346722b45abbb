"""Kedro dataset for any :class:`~diamond_kedro.replay.store.ReplayStore` folder, by path.

A training run's own stores are the catalog's ``replay_train`` / ``replay_test``
(:class:`~diamond_kedro.io.run_datasets.RunArtefactDataset`, views of the open run). This class is for a
store outside a run (one pulled with ``dvc pull``, one a script wrote), in a user's own catalog entry::

    breakout_expert_replay:
      type: diamond_kedro.io.replay_dataset.ReplayStoreDataset
      filepath: data/replay/breakout_expert/train
      obs_shape: [64, 64, 3]

``load()`` opens the store (memory-mapped; the store writes through on every ``add_chunk``, so a
node that appended to the loaded store has already persisted its data). ``save(data)`` accepts

* a :class:`ReplayStore` whose folder is this dataset's folder: nothing to do (already on disk);
* a list of chunks to append, each an :class:`EpisodeChunk` (a new episode, epoch 0) or a tuple
  ``(episode_id_or_None, EpisodeChunk)`` or ``(episode_id_or_None, EpisodeChunk, epoch)``,
  with the meaning of :meth:`ReplayStore.add_chunk`.

A store living in another folder is refused (copy it with ``iter_chunks``/``add_chunk`` instead):
silently copying gigabytes on a catalog save would be a surprise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from kedro.io import AbstractDataset

from diamond_kedro.replay.store import MANIFEST_NAME, EpisodeChunk, ReplayStore

ChunkItem = EpisodeChunk | tuple[int | None, EpisodeChunk] | tuple[int | None, EpisodeChunk, int]


class ReplayStoreDataset(AbstractDataset[Any, ReplayStore]):
    """A replay store folder as a Kedro dataset (picklable: holds only its settings)."""

    def __init__(
        self,
        filepath: str,
        obs_shape: Sequence[int] | None = None,
        repair: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = Path(filepath)
        self._obs_shape = tuple(int(d) for d in obs_shape) if obs_shape is not None else None
        self._repair = bool(repair)
        self.metadata = metadata

    def _open(self) -> ReplayStore:
        return ReplayStore(self._filepath, self._obs_shape, repair=self._repair)  # type: ignore[arg-type]

    def load(self) -> ReplayStore:
        return self._open()

    def save(self, data: ReplayStore | Sequence[ChunkItem]) -> None:
        if isinstance(data, ReplayStore):
            if data.root.resolve() != self._filepath.resolve():
                raise ValueError(
                    f"ReplayStoreDataset({self._filepath}) was given a store living in {data.root}; "
                    "only a store opened on this dataset's own folder can be saved (it is already on disk)"
                )
            return
        if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
            raise TypeError(
                f"ReplayStoreDataset.save expects a ReplayStore or a list of chunks, got {type(data).__name__}"
            )
        store = self._open()
        for i, item in enumerate(data):
            if isinstance(item, EpisodeChunk):
                store.add_chunk(item)
            elif isinstance(item, tuple) and len(item) in (2, 3) and isinstance(item[1], EpisodeChunk):
                store.add_chunk(item[1], item[0], *item[2:])
            else:
                raise TypeError(
                    f"ReplayStoreDataset.save: item {i} must be an EpisodeChunk or an "
                    f"(episode_id, EpisodeChunk[, epoch]) tuple, got {type(item).__name__}"
                )

    def _exists(self) -> bool:
        return (self._filepath / MANIFEST_NAME).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "obs_shape": self._obs_shape, "repair": self._repair}
