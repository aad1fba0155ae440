"""The GPU path on a GPU-less host: the fact says no GPU, the driver and toolkit roles
left nothing behind, the hub offers only CPU profiles, and the GPU check says so."""

from __future__ import annotations

import json

from testhost import TestHost, flat, ok


def test_gpu_less_host_has_cpu_profiles_only(host: TestHost) -> None:
    fact = json.loads(host.run("/etc/ansible/facts.d/gpu.fact"))
    assert (fact["count"], fact["gpus"], fact["source"]) == (0, [], "pci")
    settings = host.settings()["spawner"]
    assert settings["gpus"] == []
    # The scenario's own profiles, none asking for a GPU (the role's default list, which
    # adds a GPU profile only where there are GPUs, passes preflight on GPU-less machines in
    # tests/test_playbooks.py: the hub's loader refuses GPU profiles there).
    wanted = [p["slug"] for p in host.scenario_var("jupyterhub_profiles")]
    assert [p["slug"] for p in settings["profiles"]] == wanted
    assert {p.get("gpu", {}).get("mode", "none") for p in settings["profiles"]} == {"none"}
    for path in (
        "/etc/modprobe.d/gpuhub-blacklist-nouveau.conf",
        "/etc/apt/sources.list.d/nvidia-container-toolkit.sources",
        "/etc/ansible/facts.d/docker_daemon_nvidia.fact",
    ):
        assert "No such file" in host.run("ls", path, check=False), path
    assert "nvidia" not in host.run("cat", "/etc/docker/daemon.json")


def test_gpu_check_reports_no_gpu(host: TestHost) -> None:
    result = host.playbook("playbooks/gpu-check.yml")
    ok(result, changed=0)
    assert f"{host.name}: no NVIDIA GPU (PCI scan found none)" in flat(result), result.stdout[
        -2000:
    ]


def test_a_tag_run_alone_works_and_changes_nothing(host: TestHost) -> None:
    """`--tags nvidia_driver` alone: the GPU fact still runs (its role is tagged always),
    so the driver role's gate has the GPU count and skips it on this GPU-less host."""
    result = host.converge("--tags", "nvidia_driver")
    ok(result, changed=0)
    assert "TASK [gpu_facts : Note how many GPUs this host has]" in result.stdout
