import sys

from .client import start_server_behind, through_server

answered = through_server(sys.argv[1:])  # a running `python -m engine serve` answers `generate` before torch is imported here
if answered is not None:
    raise SystemExit(answered)

from .cli import main  # noqa: E402

code = main()
if code == 0 and (started := start_server_behind(sys.argv[1:])):  # the next command is answered by loaded models
    print(started, file=sys.stderr)
raise SystemExit(code)
