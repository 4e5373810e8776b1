"""``python -m lsap`` is the ``lsap`` command."""

from lsap.cli import main

main()
