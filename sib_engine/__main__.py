"""``python -m sib_engine`` is the ``sib`` command."""

from sib_engine.cli import main

main()
