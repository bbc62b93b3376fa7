import sys

from .client import through_server

answered = through_server(sys.argv[1:])  # a running `python -m engine serve` answers `generate` before torch is imported here
if answered is not None:
    raise SystemExit(answered)

from .cli import main  # noqa: E402

raise SystemExit(main())
