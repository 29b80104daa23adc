"""queryaudit: a PostgreSQL query performance auditor."""

__version__ = "0.1.0"
