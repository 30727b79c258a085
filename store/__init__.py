"""The store: SQLAlchemy models, engine and sessions, queries that return domain values."""
