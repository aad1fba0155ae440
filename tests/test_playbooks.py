"""Entry points parse, and bad input stops a run before any host changes.

Every run here uses --check against the default inventory (this machine), so even on a
real systemd host nothing is changed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from shared_facts import singleuser_image

# A profile image preflight accepts: the CPU variant the images role builds.
CPU_IMAGE = singleuser_image("cpu")
PlaybookRunner = Callable[..., subprocess.CompletedProcess[str]]
RECAP = re.compile(r"^\S+\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", re.M)


def recap(output: str) -> tuple[int, int]:
    """(changed, failed) summed over the hosts in a PLAY RECAP."""
    rows = RECAP.findall(output)
    assert rows, f"no PLAY RECAP in:\n{output}"
    return sum(int(c) for c, _ in rows), sum(int(f) for _, f in rows)


@pytest.mark.parametrize(
    "args",
    [
        ("site.yml", "-i", "inventory"),
        ("users.yml", "-e", "user=alice"),
        ("playbooks/upgrade.yml", "-i", "inventory"),
        ("playbooks/usage.yml", "-i", "inventory"),
    ],
)
def test_entry_points_pass_syntax_check(ansible_playbook: PlaybookRunner, args: tuple) -> None:
    result = ansible_playbook(*args, "--syntax-check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_update_refuses_a_bad_setting_before_changing_anything(
    ansible_playbook: PlaybookRunner,
) -> None:
    result = ansible_playbook(
        "playbooks/update.yml", "-i", "inventory", "--check", "-e", "host_update_reboot=maybe"
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Validation of arguments failed" in output, output
    assert "host_update_reboot" in output, output
    assert recap(output)[0] == 0, output


@pytest.mark.skipif(
    Path("/proc/1/comm").read_text().strip() == "systemd",
    reason="this machine runs systemd, so it is a valid target",
)
def test_deploy_on_a_machine_without_systemd_points_to_demo(
    ansible_playbook: PlaybookRunner,
) -> None:
    result = ansible_playbook("site.yml", "-i", "inventory", "--check")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "does not run systemd as PID 1" in out
    assert "make demo" in out
    assert recap(out) == (0, 1)


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"user": "Alice"}, "JupyterHub lowercases names at login (use alice)"),
        ({"user": "../etc"}, "is not a valid user name"),
        ({"user": "a b"}, "is not a valid user name"),
        ({"user": ""}, "is not a valid user name"),
        ({"user": "-x"}, "is not a valid user name"),
        ({"user": "a/b"}, "is not a valid user name"),
        ({"user": "x" * 33}, "is not a valid user name"),
        ({}, "Name one user (-e user=NAME) or one roster"),
        ({"user": "alice", "users_file": "roster.yml"}, "not both and not neither"),
        ({"user": "alice", "state": "maybe"}, "state must be present or absent (got maybe)"),
        ({"user": "alice", "admin": "maybe"}, "must be true or false"),
        ({"user": "alice", "exclusive": True}, "exclusive only goes with users_file"),
        ({"user": "alice", "state": "absent", "password": "x"}, "only with state=present"),
        ({"user": "alice", "purge": True}, "purge only with state=absent"),
        (
            {"user": "alice", "user_groups": "staff,Bad Group"},
            "['Bad Group'] are not valid group names",
        ),
        ({"users_file": "/nonexistent/roster.csv"}, "no such file on this machine"),
        ({"users_file": "README.md"}, "use a .yml, .yaml, .json or .csv file"),
    ],
)
def test_users_rejects_bad_input(
    ansible_playbook: PlaybookRunner, extra_vars: dict, message: str
) -> None:
    result = ansible_playbook("users.yml", "--check", "-e", json.dumps(extra_vars))
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in " ".join(out.split()), out
    assert "Nothing was changed." in out
    assert recap(out) == (0, 1)


# Sign-in settings that pass the hub's checks; each case breaks one thing. Nothing listens
# on port 9 here.
LDAP = {"server_address": "ldap.lab.test", "bind_dn_template": ["uid={username},dc=lab"]}
OIDC = {
    "jupyterhub_auth_oidc": {"issuer": "https://127.0.0.1:9/", "client_id": "gpuhub"},
    "jupyterhub_auth_oidc_client_secret": "made-up",
}


# Each case breaks one setting; preflight must refuse it with this message.
BAD_SETTINGS: list[tuple[dict, str]] = [
    (
        {"docker_package_source": "foo"},
        "value of docker_package_source must be one of: upstream, distro, got: foo",
    ),
    ({"docker_users": ["no-such-user-x"]}, "do not exist on localhost: no-such-user-x"),
    (
        {"jupyterhub_mem_limit": "2X"},
        "jupyterhub_mem_limit (hub setting spawner.default_limits.mem_limit): '2X' is not",
    ),
    (
        {"jupyterhub_profiles": [{"slug": "cpu", "display_name": "CPU", "image": "evil:1"}]},
        "the image must be one gpuhub builds or one listed in jupyterhub_extra_images",
    ),
    (
        {"jupyterhub_profiles": [{"slug": "cpu", "display_name": "C", "imag": "x"}]},
        "Supported parameters include",
    ),
    (
        {"jupyterhub_cpu_shares": 1},
        "jupyterhub_cpu_shares must be 2 to 262144",
    ),
    (
        {"jupyterhub_auth_mode": "open"},
        "jupyterhub_auth_mode must be one of: native, ldap, oidc, workshop",
    ),
    (
        {"jupyterhub_auth_mode": "ldap", "jupyterhub_auth_ldap": {**LDAP, "start_tls": False}},
        "jupyterhub_auth_ldap (hub setting auth.ldap.start_tls): a plain ldap:// connection "
        "without StartTLS sends passwords in clear",
    ),
    (
        {"jupyterhub_auth_mode": "ldap", "jupyterhub_auth_ldap": {"bind_dn_template": ["x"]}},
        "jupyterhub_auth_ldap (hub setting auth.ldap.server_address): missing",
    ),
    (
        {"jupyterhub_auth_mode": "ldap", "jupyterhub_auth_ldap": {**LDAP, "ca_file": "/no/ca"}},
        "jupyterhub_auth_ldap.ca_file: /no/ca is missing on localhost",
    ),
    (
        {
            "jupyterhub_auth_mode": "ldap",
            "jupyterhub_auth_ldap": {**LDAP, "search_user": "cn=x"},
        },
        "jupyterhub_auth_ldap_search_password: jupyterhub_auth_ldap.search_user needs its password",
    ),
    (
        {
            "jupyterhub_auth_mode": "oidc",
            **OIDC,
            "jupyterhub_auth_oidc": {"issuer": "http://x"},
        },
        'jupyterhub_auth_oidc.issuer must be the provider\'s https:// URL (got "http://x")',
    ),
    (
        {"jupyterhub_auth_mode": "oidc", **OIDC},
        "jupyterhub_auth_oidc.issuer: https://127.0.0.1:9/.well-known/openid-configuration "
        "answered",
    ),
    (
        {"jupyterhub_group_limits": {"staff": {"mem_limit": "lots"}}},
        "jupyterhub_group_limits (hub setting spawner.group_limits.staff.mem_limit)",
    ),
    (
        {"jupyterhub_admin_users": ["Admin User"]},
        "jupyterhub_admin_users (hub setting hub.admin_users): 'Admin User' is not a valid",
    ),
    ({"jupyterhub_images_variants": ["gpu"]}, "jupyterhub_images_variants must list cpu"),
    ({"jupyterhub_images_wheelhouse": "/no/such/dir"}, "is not a directory on localhost"),
    ({"gpuhub_root": "/"}, "gpuhub_root must be an absolute directory"),
    ({"jupyterhub_storage_root": "/data"}, "jupyterhub_storage_root: these are now set once"),
    (
        {"gpu_required": True},
        "gpu_required is true for localhost, but it has no NVIDIA GPU on its PCI bus",
    ),
    ({"nvidia_driver_branch": "latest"}, "nvidia_driver_branch must be a driver branch"),
    ({"nvidia_container_toolkit_version": "new"}, "nvidia_container_toolkit_version must be"),
    ({"backup_hour": 25}, "backup_hour must be 0-23 (got 25)"),
    ({"backup_repository": "/srv/jupyterhub/backups"}, "backup_repository must be an absolute"),
    ({"backup_keep_daily": 0, "backup_keep_weekly": 0, "backup_keep_monthly": 0}, "not all 0"),
    ({"jupyterhub_groups": ["Bad Group"]}, "jupyterhub_groups (hub setting hub.groups): 'Bad"),
    (
        {"gpuhub_users_subnet": "172.31.241.0/20"},
        "gpuhub_users_subnet: '172.31.241.0/20' is not an IPv4 network: 172.31.241.0/20 has "
        "host bits set",
    ),
    ({"gpuhub_users_subnet": "10.0.0.0/8"}, "gpuhub_users_subnet: 10.0.0.0/8 must have a /16"),
    (
        {"jupyterhub_users_subnet": "172.31.240.0/20"},
        "jupyterhub_users_subnet: these are now set once, for every role: the users network",
    ),
    (
        {"jupyterhub_pids_limit": 10},
        "jupyterhub_pids_limit (hub setting spawner.pids_limit): 10",
    ),
    (
        {"firewall_users_allow": [{"to": "10.1.2.300", "ports": [27000]}]},
        "the `to` of firewall_users_allow must be IPv4 addresses or CIDRs",
    ),
    ({"firewall_tcp_ports": [22, 0]}, "must be 1-65535"),
    ({"jupyterhub_images_labels": {"Release": "1"}}, "jupyterhub_images_labels keys must be"),
    (
        {"jupyterhub_images_apt_mirror": "deb.example.org"},
        "jupyterhub_images_apt_mirror and jupyterhub_images_npm_registry must be empty or an http",
    ),
    (
        {
            "jupyterhub_profiles": [
                {"slug": "cpu", "display_name": "C", "image": CPU_IMAGE},
                {
                    "slug": "gpu",
                    "display_name": "G",
                    "image": CPU_IMAGE,
                    "gpu": {"mode": "exclusive"},
                },
            ]
        },
        "jupyterhub_profiles (hub setting spawner.profiles (gpu)): gpu mode exclusive, "
        "but the host has no GPU",
    ),
    # Drifted once: Ansible accepted a GPU-only profile as the one open to everyone,
    # the hub refused it at start. The hub's own loader now runs at preflight.
    (
        {
            "jupyterhub_gpus": [{"uuid": "GPU-made-up", "index": 0}],
            "jupyterhub_profiles": [
                {
                    "slug": "gpu",
                    "display_name": "G",
                    "image": CPU_IMAGE,
                    "gpu": {"mode": "exclusive"},
                }
            ],
        },
        "jupyterhub_profiles (hub setting spawner.profiles): at least one CPU-only profile "
        "must be open to every user",
    ),
    (
        {
            "jupyterhub_profiles": [
                {"slug": "g", "display_name": "G", "image": "x", "gpu": {"mode": "all"}}
            ]
        },
        "value of mode must be one of: none, shared, exclusive, mig",
    ),
    (
        {
            "jupyterhub_gpus": [{"uuid": "GPU-made-up", "index": 0, "name": "NVIDIA L4"}],
            "jupyterhub_profiles": [
                {"slug": "cpu", "display_name": "C", "image": CPU_IMAGE},
                {
                    "slug": "h100",
                    "display_name": "H",
                    "image": CPU_IMAGE,
                    "gpu": {"mode": "exclusive", "model": "NVIDIA H100 80GB HBM3"},
                },
            ],
        },
        "jupyterhub_profiles (hub setting spawner.profiles (h100)): no NVIDIA H100 80GB HBM3 "
        "GPU here (the GPUs found are: NVIDIA L4)",
    ),
    ({"jupyterhub_announcement": ["Maintenance"]}, "jupyterhub_announcement"),
    (
        {"jupyterhub_group_limits": {"students": {"max_gpus": -1}}},
        "jupyterhub_group_limits.students.max_gpus: -1 must be 0 or more",
    ),
    (
        {"jupyterhub_group_limits": {"staff": {"mem_limit": "8X", "max_gpus_per_user": 2}}},
        "jupyterhub_group_limits (hub setting spawner.group_limits.staff.mem_limit): '8X' is not",
    ),
    (
        {"jupyterhub_extra_config": {"theme": "c.JupyterHub.template_vars = {"}},
        "jupyterhub_extra_config (hub setting hub.extra_config (theme)): does not compile",
    ),
]


@pytest.fixture(scope="module")
def preflight_runs(ansible_playbook: PlaybookRunner) -> dict[str, subprocess.CompletedProcess[str]]:
    """site.yml --check with each of BAD_SETTINGS, side by side: a run is a few seconds of
    CPU, most of it Ansible starting, and one after the other they took four minutes."""
    cases = [json.dumps(extra_vars) for extra_vars, _ in BAD_SETTINGS]

    def run(extra_vars: str) -> subprocess.CompletedProcess[str]:
        return ansible_playbook("site.yml", "-i", "inventory", "--check", "-e", extra_vars)

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        return dict(zip(cases, pool.map(run, cases), strict=True))


@pytest.mark.parametrize(("extra_vars", "message"), BAD_SETTINGS)
def test_bad_settings_fail_at_preflight(
    preflight_runs: dict[str, subprocess.CompletedProcess[str]], extra_vars: dict, message: str
) -> None:
    result = preflight_runs[json.dumps(extra_vars)]
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in " ".join(out.split()), out[-2000:]
    assert "PLAY [GPUs" not in out, "a play after preflight started"
    assert recap(out) == (0, 1)


def test_a_refused_repository_url_is_shown_without_its_credentials(
    ansible_playbook: PlaybookRunner,
) -> None:
    bad = {"backup_repository": "ftp://backup:TopSecret99@backup.example/gpuhub"}
    result = ansible_playbook("site.yml", "-i", "inventory", "--check", "-e", json.dumps(bad))
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "got ftp://***@backup.example/gpuhub" in " ".join(out.split()), out[-2000:]
    assert "TopSecret99" not in out
    assert recap(out) == (0, 1)


def _cluster_inventory(path: Path, hubs: list[str], nodes: list[str]) -> Path:
    """An inventory of this machine under several names (a local connection each)."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {
        "all": {
            "children": {
                "jupyterhub": {"hosts": {h: local for h in hubs}},
                "jupyterhub_nodes": {"hosts": {n: local for n in nodes}},
            }
        }
    }
    path.write_text(json.dumps(inventory))
    return path


@pytest.mark.parametrize(
    ("hubs", "nodes", "extra_vars", "message"),
    [
        (
            ["hub1", "hub2"],
            ["node1"],
            {},
            "A cluster has one hub host, but the group jupyterhub holds hub1, hub2",
        ),
        (
            ["hub1", "node1"],
            ["node1", "node2"],
            {},
            "node1 in both jupyterhub and jupyterhub_nodes",
        ),
        (
            ["hub1"],
            ["node1"],
            {"gpuhub_homes_mode": "afs"},
            "value of gpuhub_homes_mode must be one of: local, nfs, got: afs",
        ),
        (
            ["hub1"],
            ["node1"],
            {"gpuhub_homes_mode": "nfs", "gpuhub_homes_nfs_export": "/data/homes"},
            "when the hub host serves them the export is its homes folder, /srv/jupyterhub/home",
        ),
        (
            ["hub1"],
            ["node1"],
            {"gpuhub_homes_mode": "nfs", "gpuhub_homes_nfs_shared_export": "/data/shared"},
            "when the hub host serves it, its shared folder /srv/jupyterhub/shared",
        ),
    ],
)
def test_bad_cluster_inventories_fail_at_preflight(
    ansible_playbook: PlaybookRunner,
    tmp_path: Path,
    hubs: list[str],
    nodes: list[str],
    extra_vars: dict,
    message: str,
) -> None:
    inventory = _cluster_inventory(tmp_path / "hosts.json", hubs, nodes)
    result = ansible_playbook(
        "site.yml", "-i", str(inventory), "--check", "-e", json.dumps(extra_vars)
    )
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert message in " ".join(out.split()), out[-3000:]
    assert "PLAY [GPUs" not in out, "a play after preflight started"
    changed, failed = recap(out)
    assert (changed, failed) == (0, len(set(hubs + nodes)))


def test_the_nfs_export_names_only_the_nodes(tmp_path: Path) -> None:
    """Homes mode nfs (untestable here: no kernel NFS): the hub host's exports file, rendered
    by Ansible itself, gives the homes folder to each node's address, root squashed, and
    the shared folder read-only."""
    facts = {
        "gpuhub_homes_nfs_export": "/srv/jupyterhub/home",
        "gpuhub_homes_nfs_shared_export": "/srv/jupyterhub/shared",
        "gpuhub_cluster_nodes": ["gpu01", "gpu02"],
        "gpuhub_cluster_addresses": {"hub": "10.1.0.1", "gpu01": "10.1.0.11", "gpu02": "10.1.0.12"},
    }
    rendered = tmp_path / "gpuhub.exports"
    template = "roles/jupyterhub_storage/templates/gpuhub.exports.j2"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible"),
            "localhost",
            "-m",
            "ansible.builtin.copy",
            "-a",
            f"content={{{{ lookup('template', '{template}') }}}} dest={rendered}",
            "-e",
            json.dumps(facts),
        ],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in rendered.read_text().splitlines() if not line.startswith("#")]
    rw, ro = (
        "(rw,sync,no_subtree_check,root_squash,sec=sys)",
        "(ro,sync,no_subtree_check,root_squash,sec=sys)",
    )
    assert [line for line in lines if line] == [
        f"/srv/jupyterhub/home 10.1.0.11{rw} 10.1.0.12{rw}",
        f"/srv/jupyterhub/shared 10.1.0.11{ro} 10.1.0.12{ro}",
    ]
