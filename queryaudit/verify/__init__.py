"""Fix verification: each fix that can be tried in the audit's read-only session is
tried there (SET LOCAL work_mem / jit, a keyset rewrite, a batched lookup), measured
with EXPLAIN ANALYZE before and after, and the finding is ranked by the measurement.

model.py is what the snapshot stores; logic.py and apply.py are pure; measure.py and
stage.py talk to the server (the collection stage, after plan capture, inside the
EXPLAIN budget).
"""
