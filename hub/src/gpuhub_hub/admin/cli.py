"""gpuhub-admin: the hub's management CLI. Run it inside the hub container:

    docker exec jupyterhub gpuhub-admin user list
    docker exec -i jupyterhub gpuhub-admin --json sync --format csv < roster.csv

It talks to the running hub as the `gpuhub-admin` service (REST API, no direct database
writes). Exit status: 0 done, 1 the hub failed, 2 bad input (nothing was changed).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import docker

from .. import usage
from ..cluster import ClusterError, HomeRecords, move_home, registry_image, sync_shared
from ..configure import SETTINGS_VARIABLE
from ..names import check_username
from ..settings import Cluster, Settings, SettingsError, load
from .hubapi import HubAPI, HubError, api_url
from .manage import ManageError, Manager
from .roster import RosterError, Wanted, parse

BAD_INPUT, HUB_FAILED = 2, 1


def _username(value: str) -> str:
    try:
        return check_username(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpuhub-admin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--dry-run", action="store_true", help="report, change nothing")
    parser.add_argument(
        "--settings",
        default=os.environ.get(SETTINGS_VARIABLE),
        required=not os.environ.get(SETTINGS_VARIABLE),
        help=f"the hub's settings file (default: ${SETTINGS_VARIABLE})",
    )
    top = parser.add_subparsers(dest="area", required=True)

    user = top.add_parser("user", help="hub users").add_subparsers(dest="action", required=True)
    user.add_parser("list", help="every user, with admin flag, groups, approval, servers")
    add = user.add_parser("add", help="add (or update) a user, approved")
    add.add_argument("name", type=_username)
    add.add_argument("--admin", action="store_true")
    add.add_argument("--group", action="append", dest="groups", metavar="GROUP")
    add.add_argument("--password-stdin", action="store_true", help="else one is generated")
    remove = user.add_parser("remove", help="stop servers, delete, archive the home")
    remove.add_argument("name", type=_username)
    remove.add_argument("--purge", action="store_true", help="delete the home and its archives")
    password = user.add_parser("set-password", help="set (or generate) a new password")
    password.add_argument("name", type=_username)
    password.add_argument("--password-stdin", action="store_true")
    approve = user.add_parser("approve", help="approve a sign-up")
    approve.add_argument("name", type=_username)
    admin = user.add_parser("admin", help="make a user admin (on) or not (off)")
    admin.add_argument("name", type=_username)
    admin.add_argument("state", choices=["on", "off"])
    move = user.add_parser(
        "move", help="cluster mode: move a user's home to another node (servers stopped)"
    )
    move.add_argument("name", type=_username)
    move.add_argument("--to", required=True, metavar="NODE", help="the node's hostname")
    where = user.add_parser("where", help="cluster mode: the node that keeps a user's home")
    where.add_argument("name", type=_username)

    server = top.add_parser("server", help="user servers").add_subparsers(
        dest="action", required=True
    )
    server.add_parser("list", help="running and pending servers")
    stop = server.add_parser("stop", help="stop a user's server")
    stop.add_argument("name", type=_username)
    which = stop.add_mutually_exclusive_group()
    which.add_argument("--server", default="", help="a named server (default: the default one)")
    which.add_argument("--all", action="store_true", help="every server of the user")

    sync = top.add_parser("sync", help="bring users to a roster read from stdin")
    sync.add_argument("--format", choices=["yaml", "csv"], default="yaml")
    sync.add_argument("--exclusive", action="store_true", help="remove users not listed")
    sync.add_argument("--purge", action="store_true", help="with --exclusive: delete files")

    report = top.add_parser("usage", help="server-hours and GPU-hours from the usage ledger")
    report.add_argument(
        "--since", default="7d", help="a span (7d, 24h, 90m, 2w) or a date (default: 7d)"
    )
    report.add_argument("--by", choices=["user", "group"], default="user")
    report.add_argument("--format", choices=["table", "csv"], default="table")
    report.add_argument("--chart", metavar="FILE", help="also write a PNG chart per day there")

    shared = top.add_parser("shared", help="the read-only shared folder").add_subparsers(
        dest="action", required=True
    )
    shared.add_parser(
        "sync", help="cluster mode: copy the hub host's shared folder to nodes whose copy differs"
    )
    return parser


def _stdin_password(stdin: TextIO) -> str:
    line = stdin.readline().rstrip("\r\n")
    if not line:
        raise ManageError("--password-stdin: no password on standard input")
    return line


def _servers(api: HubAPI) -> list[dict[str, Any]]:
    rows = []
    for account in api.snapshot().values():
        for server_name, model in sorted(account.servers.items()):
            rows.append(
                {
                    "user": account.name,
                    "server": server_name,
                    "ready": bool(model.get("ready")),
                    "pending": model.get("pending"),
                    "started": model.get("started"),
                    "last_activity": model.get("last_activity"),
                    "profile": (model.get("user_options") or {}).get("profile"),
                }
            )
    return rows


def run(args: argparse.Namespace, api: HubAPI, settings: Settings, stdin: TextIO) -> Any:  # noqa: ANN401
    """Carry out one command; returns what to print."""
    if args.area == "usage":
        return _usage(args, settings)
    if args.area == "server":
        if args.action == "list":
            return {"servers": _servers(api)}
        model = api.user(args.name)
        if model is None:
            raise ManageError(f"no user {args.name}")
        running = sorted(model.get("servers") or {})
        targets = running if args.all else [s for s in running if s == args.server]
        if not args.dry_run:
            for server in targets:
                api.stop_server(args.name, server)
            if args.all:
                left = sorted((api.user(args.name) or {}).get("servers") or {})
                if left:
                    names = ", ".join(s or "(default)" for s in left)
                    raise HubError(f"{args.name} still has running servers: {names}")
        return {
            "changed": bool(targets),
            "user": args.name,
            "server": "(all)" if args.all else args.server,
            "stopped": targets,
        }

    if args.area == "user" and args.action == "list":
        return {"users": [a.as_dict() for a in api.snapshot().values()]}
    if args.area == "user" and args.action == "move":
        return _move(args, api, settings)
    if args.area == "shared":
        return _sync_shared(args, settings)
    if args.area == "user" and args.action == "where":
        records = HomeRecords(Path(_local_homes(settings).home_nodes_dir))
        return {"user": args.name, "home_node": records.read(args.name)}

    manager = Manager(api, settings, dry_run=args.dry_run)
    if args.area == "sync":
        manager.sync(parse(stdin.read(), args.format), args.exclusive, args.purge)
    elif args.action == "add":
        password = _stdin_password(stdin) if args.password_stdin else None
        manager.ensure(
            Wanted(
                args.name, admin=args.admin or None, groups=_groups(args.groups), password=password
            )
        )
    elif args.action == "remove":
        manager.remove(args.name, args.purge)
    elif args.action == "set-password":
        manager.set_password(args.name, _stdin_password(stdin) if args.password_stdin else None)
    elif args.action == "approve":
        manager.approve(args.name)
    elif args.action == "admin":
        manager.set_admin(args.name, args.state == "on")
    return manager.report.as_dict()


def _local_homes(settings: Settings) -> Cluster:
    """The cluster settings, when homes are kept on the nodes (homes mode local)."""
    cluster = settings.cluster
    if cluster is None or cluster.homes_mode != "local":
        raise ManageError("homes are kept on nodes in cluster mode with homes mode local only")
    return cluster


def _sync_shared(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Each node's copy of the hub host's shared folder (gpuhub_hub.cluster.sync_shared)."""
    cluster = settings.cluster
    if cluster is None:
        raise ManageError("shared sync is for cluster mode: on one host servers mount the folder")
    if not settings.spawner.shared_dir:
        raise ManageError("no shared folder is configured (spawner.shared_dir)")
    if cluster.homes_mode == "nfs" and cluster.nfs_shared_export:
        return {"shared": {}, "changed": False, "served": cluster.nfs_shared_export}
    client = docker.APIClient(version="auto")
    try:
        image = registry_image(client, cluster.registry, cluster.hub_image)
        nodes = sync_shared(
            client,
            image,
            settings.spawner.shared_dir,
            Path(cluster.shared_sync_file),
            cluster.servers_label,
            args.dry_run,
        )
    except ClusterError as err:
        raise ManageError(str(err)) from None
    return {"shared": nodes, "changed": "updated" in nodes.values()}


def _move(args: argparse.Namespace, api: HubAPI, settings: Settings) -> dict[str, Any]:
    """Copy, verify, switch, then delete the old copy (gpuhub_hub.cluster.move_home)."""
    cluster = _local_homes(settings)
    records = HomeRecords(Path(cluster.home_nodes_dir))
    model = api.user(args.name)
    if model is None:
        raise ManageError(f"no user {args.name}")
    running = sorted(model.get("servers") or {})
    if running:
        names = ", ".join(s or "(default)" for s in running)
        raise ManageError(
            f"{args.name} has running servers ({names}): stop them first "
            f"(gpuhub-admin server stop {args.name} --all)"
        )
    if args.dry_run:
        return {
            "user": args.name,
            "node": args.to,
            "moved": records.read(args.name),
            "dry_run": True,
        }
    client = docker.APIClient(version="auto")
    try:
        image = registry_image(client, cluster.registry, cluster.hub_image)
        return move_home(
            client,
            records,
            settings.spawner.home_root,
            image,
            cluster.servers_label,
            args.name,
            args.to,
        )
    except ClusterError as err:
        raise ManageError(str(err)) from None


def _usage(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Hours per user or group since --since, from the ledger (gpuhub_hub.usage)."""
    path = settings.spawner.usage_file
    if not path:
        raise ManageError("this hub keeps no usage ledger (spawner.usage_file is empty)")
    try:
        since = usage.parse_since(args.since)
    except ValueError as err:
        raise ManageError(str(err)) from None
    sessions = usage.sessions(usage.read(path))
    rows = usage.report(sessions, since, args.by)
    chart = {}
    if args.chart:
        from ..chart import render  # Pillow: only for a chart

        title = f"gpuhub usage by {args.by} per day (UTC) since {since:%Y-%m-%d %H:%M}"
        render(usage.daily(sessions, since, args.by), args.by, title, args.chart)
        chart = {"chart": args.chart}
    return {
        **chart,
        "usage": [
            {
                args.by: row.key,
                "sessions": row.sessions,
                "users": len(row.users),
                "server_hours": round(row.server_hours, 4),
                "gpu_hours": round(row.gpu_hours, 4),
            }
            for row in rows
        ],
        "by": args.by,
        "since": since.isoformat(timespec="seconds"),
        "format": args.format,
    }


def _groups(groups: list[str] | None) -> tuple[str, ...] | None:
    return tuple(sorted(set(groups))) if groups else None


def show(result: dict[str, Any], as_json: bool, out: TextIO) -> None:
    if as_json:
        json.dump(result, out, indent=1, sort_keys=True)
        out.write("\n")
        return
    if "users" in result:
        out.write(f"{'USER':<24} {'ADMIN':<6} {'APPROVED':<9} {'GROUPS':<24} SERVERS\n")
        for u in result["users"]:
            approved = {True: "yes", False: "NO", None: "-"}[u["approved"]]
            servers = ", ".join(s or "(default)" for s in u["servers"])
            line = (
                f"{u['name']:<24} {'yes' if u['admin'] else '':<6} {approved:<9} "
                f"{','.join(u['groups']) or '-':<24} {servers or '-'}"
            )
            out.write(line.rstrip() + "\n")
        return
    if "usage" in result:
        _show_usage(result, out)
        return
    if "servers" in result:
        out.write(f"{'USER':<24} {'SERVER':<12} {'READY':<6} {'PROFILE':<10} LAST ACTIVITY\n")
        for s in result["servers"]:
            out.write(
                f"{s['user']:<24} {s['server'] or '(default)':<12} "
                f"{'yes' if s['ready'] else s['pending'] or 'no':<6} {s['profile'] or '-':<10} "
                f"{s['last_activity'] or '-'}\n"
            )
        return
    prefix = "would be " if result.get("dry_run") else ""
    for key in ("added", "removed", "unchanged", "kept"):
        if result.get(key):
            out.write(
                f"{prefix if key in ('added', 'removed') else ''}{key}: {', '.join(result[key])}\n"
            )
    for name, what in (result.get("updated") or {}).items():
        out.write(f"{prefix}updated {name}: {', '.join(what)}\n")
    for name, path in (result.get("archives") or {}).items():
        out.write(f"archived {name}'s home: {path}\n")
    for name, password in (result.get("passwords") or {}).items():
        out.write(f"new password for {name} (shown once): {password}\n")
    if "shared" in result:
        if result.get("served"):
            out.write(f"servers mount the shared folder from NFS ({result['served']})\n")
        for node, state in sorted(result["shared"].items()):
            out.write(f"{node}: {state}\n")
    if "home_node" in result:
        node = result["home_node"] or "no node yet (it is made at their first start)"
        out.write(f"{result['user']}'s home: {node}\n")
    if "moved" in result:
        if not result["moved"]:
            out.write(f"{result['user']}'s home is on {result['node']} already\n")
        else:
            would = "would move" if result.get("dry_run") else "moved"
            out.write(
                f"{would} {result['user']}'s home from {result['moved']} to {result['node']}\n"
            )
    if "server" in result:
        state = "stopped" if result["changed"] else "was not running"
        out.write(f"{result['user']}'s server {result['server'] or '(default)'} {state}\n")


def _show_usage(result: dict[str, Any], out: TextIO) -> None:
    by, rows = result["by"], result["usage"]
    columns = [by, "sessions", "users", "server_hours", "gpu_hours"]
    if result["format"] == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([row[c] for c in columns] for row in rows)
        return
    out.write(f"since {result['since']}\n")
    if "chart" in result:
        out.write(f"chart: {result['chart']}\n")
    out.write(f"{by.upper():<24} {'SESSIONS':>8} {'USERS':>6} {'SERVER-H':>10} {'GPU-H':>10}\n")
    for row in rows:
        out.write(
            f"{row[by]:<24} {row['sessions']:>8} {row['users']:>6} "
            f"{row['server_hours']:>10.2f} {row['gpu_hours']:>10.2f}\n"
        )


def main(
    argv: Sequence[str] | None = None, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout
) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load(args.settings)
        token = Path(settings.hub.admin_token_file).read_text().strip()
        result = run(args, HubAPI(api_url(settings), token), settings, stdin)
    except (SettingsError, RosterError, ManageError) as err:
        return _fail(args, out, str(err), BAD_INPUT)
    except (HubError, OSError) as err:
        return _fail(args, out, str(err), HUB_FAILED)
    show(result, args.json, out)
    return 0


def _fail(args: argparse.Namespace, out: TextIO, message: str, code: int) -> int:
    if args.json:
        json.dump({"error": message}, out)
        out.write("\n")
    print(f"gpuhub-admin: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
