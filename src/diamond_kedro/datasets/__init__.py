"""Static gameplay sources (CS:GO HDF5 layout, Minari, video + action table) and the one replay-store writer
they feed (:mod:`~diamond_kedro.datasets.writer`); ``ingest.ingest_dataset`` picks the source from the config."""
