"""devspace-server: the in-cluster API, OAuth server, SSH CA and reconciler."""

__version__ = "0.1.0.dev0"
