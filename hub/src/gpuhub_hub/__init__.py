"""gpuhub's hub-side Python: settings, spawner, home directories."""

__version__ = "0.1.0"
