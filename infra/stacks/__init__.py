"""One stack per concern (ingestion, serving, ...); infra/application.py wires them."""
