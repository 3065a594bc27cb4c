"""``python -m caduceus_cli``: the same as the ``caduceus`` command."""

from caduceus_cli.cli.app import main

main()
