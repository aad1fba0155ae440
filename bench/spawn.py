"""Benchmark 2: spawn latency. N sequential spawns through Nginx, from the spawn request
to the user's server answering /api, against the floor measured in the same run: `docker
run` of the same image with the same limits until its Jupyter server answers /api.

With --cluster, on the converged Molecule scenario `cluster` (a hub host and two nodes):
servers are Swarm services on the nodes, and the floor is `docker service create` of the
same image (by the registry's digest) with the same limits and reservation, on a node that
runs user servers, until its Jupyter server answers /api from the hub container."""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
import time

import requests
from common import HubClient, bench_host, percentile, plot, write

FLOOR = r"""
import json, subprocess, sys, time, urllib.request
image, mem, cpus, n, network, pids = sys.argv[1:4] + [int(sys.argv[4])] + sys.argv[5:7]
times = []
for i in range(n):
    start = time.perf_counter()
    # The same network and confinement the hub gives a user container.
    cid = subprocess.check_output(["docker", "run", "-d", "--rm", "--network", network,
        "--user", "1000:100", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true",
        "--pids-limit", pids,
        "--memory", mem, "--cpus", cpus, image, "jupyter", "server", "--ip=0.0.0.0",
        "--port=8888", "--ServerApp.token=", "--ServerApp.password=", "--no-browser"],
        text=True).strip()
    ip = subprocess.check_output(["docker", "inspect", "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", cid], text=True).strip()
    while True:
        try:
            urllib.request.urlopen(f"http://{ip}:8888/api", timeout=2)
            break
        except OSError:
            time.sleep(0.05)
    times.append(time.perf_counter() - start)
    subprocess.run(["docker", "rm", "-f", cid], capture_output=True)
print(json.dumps(times))
"""

# The cluster's floor, run on the hub host: a bare service on the shared users network.
CLUSTER_FLOOR = r"""
import json, subprocess, sys, time
image, mem, cpus, n, network, hub, label = sys.argv[1:4] + [int(sys.argv[4])] + sys.argv[5:8]
WAIT = ("import sys, time, urllib.request\nwhile True:\n    try:\n"
    "        urllib.request.urlopen(sys.argv[1], timeout=2)\n        break\n"
    "    except OSError:\n        time.sleep(0.05)\n")
times = []
for i in range(n):
    name = f"bench-floor-{i}"
    start = time.perf_counter()
    subprocess.check_output(["docker", "service", "create", "--detach", "--quiet",
        "--name", name, "--network", network, "--endpoint-mode", "dnsrr",
        "--constraint", f"node.labels.{label}==true", "--user", "1000:100",
        "--cap-drop", "ALL", "--limit-memory", mem, "--reserve-memory", mem,
        "--limit-cpu", cpus, "--restart-condition", "none", image, "jupyter", "server",
        "--ip=0.0.0.0", "--port=8888", "--ServerApp.token=", "--ServerApp.password=",
        "--no-browser"], text=True)
    subprocess.run(["docker", "exec", hub, "python3", "-c", WAIT,
        f"http://{name}:8888/api"], check=True, timeout=300)
    times.append(time.perf_counter() - start)
    subprocess.run(["docker", "service", "rm", name], capture_output=True)
print(json.dumps(times))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=10, help="spawns (and floor runs)")
    parser.add_argument(
        "--cluster", action="store_true", help="on the converged Molecule scenario `cluster`"
    )
    args = parser.parse_args()
    host = bench_host("cluster", "gpuhub-cluster-hub") if args.cluster else bench_host()
    settings = host.settings()
    spawner = settings["spawner"]
    image = spawner["profiles"][0]["image"]
    limits = spawner["default_limits"]

    password = "bench-" + secrets.token_urlsafe(12)
    host.add_user("benchspawn", password)
    with tempfile.NamedTemporaryFile("w", suffix=".crt", delete=False) as ca:
        ca.write(host.run("cat", "/etc/nginx/gpuhub-tls/selfsigned.crt"))
    client = HubClient(f"https://{host.address}", verify=ca.name)
    if not client.login("benchspawn", password):
        raise SystemExit("cannot log in as benchspawn")
    client.create_token("bench")
    headers = {"Authorization": f"token {client.token}"}

    hub: list[float] = []
    for _ in range(args.n):
        start = time.perf_counter()
        reply = client.api("POST", "/hub/api/users/benchspawn/server")
        if reply.status_code not in (201, 202):
            raise SystemExit(f"spawn: {reply.status_code} {reply.text}")
        while True:
            try:
                answer = requests.get(
                    f"{client.url}/user/benchspawn/api", headers=headers, verify=ca.name, timeout=5
                )
                if answer.status_code == 200 and "version" in answer.text:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.05)
        hub.append(time.perf_counter() - start)
        if args.cluster:  # what the nodes ran: the image by the registry's digest
            image = host.run(
                "docker",
                "service",
                "inspect",
                "-f",
                "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                "jupyter-benchspawn",
            ).strip()
        client.stop_server("benchspawn")

    same = (image, limits["mem_limit"], str(limits["cpu_limit"]), str(args.n), spawner["network"])
    if args.cluster:
        label = settings["cluster"]["servers_label"]
        floor = json.loads(host.run("python3", "-c", CLUSTER_FLOOR, *same, host.hub, label))
    else:
        floor = json.loads(host.run("python3", "-c", FLOOR, *same, str(spawner["pids_limit"])))
    p50, p95 = percentile(hub, 50), percentile(hub, 95)
    f50, f95 = percentile(floor, 50), percentile(floor, 95)
    ratio = p95 / f95
    verdict = "met" if ratio <= 1.3 else f"missed by {ratio - 1.3:.3f}x"
    where, floor_name = ("cluster", "docker service create") if args.cluster else ("", "docker run")
    data = {
        "title": f"Spawn latency{' on the cluster' if where else ''}: {args.n} sequential "
        f"spawns vs the {floor_name} floor",
        "image": image,
        "limits": limits,
        "hub_seconds": hub,
        "floor_seconds": floor,
        "p95_ratio": round(ratio, 3),
        "target": "spawn p95 <= 1.3x the floor",
    }
    rows = [
        ("spawn through the hub", f"{p50:.2f} s", f"{p95:.2f} s"),
        (f"floor: {floor_name} until /api answers", f"{f50:.2f} s", f"{f95:.2f} s"),
        ("ratio", f"{p50 / f50:.2f}x", f"{ratio:.3f}x (target <= 1.3x: {verdict})"),
    ]
    name = "spawn-cluster" if where else "spawn"
    write(name, data, ("", "p50", "p95"), rows)
    plot(
        name,
        "Spawn latency per run",
        {
            "hub spawn": (list(range(1, len(hub) + 1)), hub),
            f"{floor_name} floor": (list(range(1, len(floor) + 1)), floor),
        },
        "run",
        "seconds",
    )


if __name__ == "__main__":
    main()
