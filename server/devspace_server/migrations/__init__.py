"""Alembic migrations, shipped inside the package; run by `devspace-server migrate`."""
