"""Row-estimate experiments: a misestimate's cause tested before it is named.

For a scan whose row estimate is far off, the planner's estimate of each predicate alone
(EXPLAIN) is compared with a count of the rows it keeps, and so is their conjunction.
Each column right and the combination wrong: correlated columns. The columns themselves
off: their statistics no longer describe the table. model.py is what the snapshot
stores, predicates.py (pure) picks what to test, stage.py runs it in the audit's
read-only session, after plan capture; checks/row_estimate_error.py reads the figures.
"""
