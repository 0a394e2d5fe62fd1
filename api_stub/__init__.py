"""The thin intake: HTTP in, one Redis round trip, 202 out. It never touches PostgreSQL."""
