"""JupyterHub configuration of a gpuhub host. Static: every setting comes from the
settings file named by $GPUHUB_SETTINGS (the hub container sets it) that
Ansible renders. See gpuhub_hub.configure."""

from gpuhub_hub.configure import configure_from_environment

configure_from_environment(c)  # type: ignore[name-defined]  # noqa: F821 (c is JupyterHub's)
