"""``atari``: a whole run. Its graph is exactly ``atari_epoch`` (one epoch of Algorithm 1); what makes it a
whole run is the project's ``kedro run`` (``diamond_kedro.cli``), which runs it once per epoch, each in its
own Kedro session, until the epoch that commits reports the run over. No node loops."""

from kedro.pipeline import Pipeline

from diamond_kedro.pipelines import atari_epoch


def create_pipeline(**kwargs) -> Pipeline:
    return atari_epoch.create_pipeline(**kwargs)
