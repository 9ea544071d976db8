"""``python -m vrm.cli``: the same as the ``vrm`` command."""

from vrm.cli import app

app()
