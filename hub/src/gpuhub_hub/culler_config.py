"""The idle culler's configuration file (jupyterhub_idle_culler --config=<this file>):
gpuhub's rules decide which servers to stop (culling.py)."""

from gpuhub_hub.culling import arbiter

c = get_config()  # noqa: F821 (traitlets' config loader provides it)
c.IdleCuller.cull_arbiter_hook = arbiter
