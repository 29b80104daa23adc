"""The static migration rules, grouped by what they protect: one module per group."""
