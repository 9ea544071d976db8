"""The consent ledger: a tamper-evident, append-only log of consent events.

Pure functions, no database:

- :mod:`consent.ledger.merkle`: RFC 9162 Merkle tree hashes, roots, inclusion and consistency
  proofs (generated from perfect-subtree lookups, verified per the RFC), canonical entry JSON;
- :mod:`consent.ledger.checkpoint`: C2SP tlog-checkpoint bodies in C2SP signed notes (Ed25519),
  verifier keys;
- :mod:`consent.ledger.verify`: the offline verifier of an export (``vrm ledger verify``).

Storage (``models``, ``store``) and the services build on these. This module imports nothing,
so importing the models does not load the verifier.
"""
