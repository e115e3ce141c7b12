"""``python -m ssl_core.cli`` (used by torchrun to start each rank)."""

from ssl_core.cli.app import main

main()
