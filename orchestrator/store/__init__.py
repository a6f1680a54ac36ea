"""The SQL results store."""
