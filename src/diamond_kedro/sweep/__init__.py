"""Sweeps of games x seeds on Ray (``diamond-kedro sweep``): :mod:`.cli` (the command), :mod:`.task`
(one run per Ray task, resumable), :mod:`.spec` (parsing, the sweep folder, the status table)."""
