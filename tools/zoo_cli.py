"""Shared entry for the tools: a user error (missing file, unknown key, bad checkpoint) becomes one
line on stderr and exit code 2; anything else keeps its traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable


def run_cli(main: Callable[[], object]) -> None:
    from zoo.hub import CheckpointError, ChecksumError

    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
    except (FileNotFoundError, KeyError, CheckpointError, ChecksumError) as err:
        # OSError subclasses keep (errno, strerror) in args; str() names the file for them.
        text = str(err) if isinstance(err, OSError) else str(err.args[0]) if err.args else type(err).__name__
        msg = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        print(f'error: {msg}', file=sys.stderr)
        sys.exit(2)
