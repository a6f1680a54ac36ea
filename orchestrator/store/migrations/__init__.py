"""Alembic migrations of the results store; they ship inside the package."""
