"""The index advisor: candidates from the SQL and the plans, verification with HypoPG
(or for real on a scratch database), and one set of indexes chosen for the whole workload.

candidates.py is pure (statements, plans, catalog -> candidate indexes); verify.py and
stage.py talk to the server in the advisor's own read-only session; select.py picks the
set under a storage budget. The result is stored in `snapshot.index_advice`, so the
`missing-index` check stays pure and runs from a saved snapshot. This module imports
nothing so that snapshot.py can import the model without a cycle.
"""
