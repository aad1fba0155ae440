"""gpuhub-admin: manage users, groups and servers of a running hub (a hub service)."""
