"""``python -m ssl_core.cli`` (used by torchrun to start each rank).

The entry point is wrapped in torchrun's ``record``: an exception on a rank is written to the
error file torchrun gives it, so the launcher can say which rank failed and why.
"""

from torch.distributed.elastic.multiprocessing.errors import record

from ssl_core.cli.app import main

record(main)()
