"""``python -m diamond_kedro`` / ``diamond-kedro``.

``diamond-kedro play ...``, ``diamond-kedro sweep ...`` and ``diamond-kedro convert-run RUN`` are the
project's own commands (each lives in its own module and is imported only when asked for, so ``kedro run``
pays nothing for them); any other arguments are those of ``kedro run`` in this project.
"""

import importlib
import sys
from pathlib import Path
from typing import Any

# sub-command -> module with a ``main(argv: list[str]) -> int`` function
SUBCOMMANDS = {
    "play": "diamond_kedro.play.cli",
    "sweep": "diamond_kedro.sweep.cli",
    "convert-run": "diamond_kedro.convert_run",  # old pickled state.pt -> data-only (once, when asked)
}


def main(*args: Any, **kwargs: Any) -> Any:
    argv = list(args[0]) if args else sys.argv[1:]
    if argv and argv[0] in SUBCOMMANDS:
        module = importlib.import_module(SUBCOMMANDS[argv[0]])
        return sys.exit(module.main(argv[1:]))
    from kedro.framework.cli.utils import find_run_command  # only for kedro run: play/sweep stay quiet and quick
    from kedro.framework.project import configure_project

    package_name = Path(__file__).parent.name
    configure_project(package_name)
    kwargs["standalone_mode"] = not hasattr(sys, "ps1")
    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
