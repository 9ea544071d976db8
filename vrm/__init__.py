"""The composition root: the only package that knows every other one.

``vrm.app`` builds the web application, ``vrm.models`` lists every model for Alembic,
``vrm.wiring`` lists the parts of export, import and erasure and the scheduled jobs, and
``vrm.cli`` is the ``vrm`` command line.
"""
