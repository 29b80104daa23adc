"""Query plans: the plan model, the EXPLAIN text parser, EXPLAIN itself, parameter values
for normalized statements, and the capture stage of the audit."""
