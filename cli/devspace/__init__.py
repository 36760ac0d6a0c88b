"""devspace: develop inside Kubernetes from your laptop."""

__version__ = "0.1.0.dev0"
