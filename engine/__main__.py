import gc
import sys

gc.disable()  # the imports make a quarter of a million objects and no garbage: collecting among them took 0.07 s of
# every start, and every collection after it walked them all again (0.06 s of loading the models)

from .client import start_server_behind, through_server
from .integrity import hash_shipped_ahead

answered = through_server(sys.argv[1:])  # a running `python -m engine serve` answers `generate` before torch is imported here
if answered is not None:
    raise SystemExit(answered)

if sys.argv[1:2] == ["generate"]:
    hash_shipped_ahead()  # on the other core while torch is imported: the checkpoints are verified before they load

from .cli import main  # noqa: E402

gc.freeze()  # what the imports made is kept for good: no later collection walks it
gc.enable()

code = main()
if code == 0 and (started := start_server_behind(sys.argv[1:])):  # the next command is answered by loaded models
    print(started, file=sys.stderr)
raise SystemExit(code)
