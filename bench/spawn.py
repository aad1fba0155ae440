"""Benchmark 2: spawn latency. N sequential spawns through Nginx, from the spawn request
to the user's server answering /api, against the floor measured in the same run: `docker
run` of the same image with the same limits until its Jupyter server answers /api."""

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=10, help="spawns (and floor runs)")
    args = parser.parse_args()
    host = bench_host()
    spawner = host.settings()["spawner"]
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
        client.stop_server("benchspawn")

    floor = json.loads(
        host.run(
            "python3",
            "-c",
            FLOOR,
            image,
            limits["mem_limit"],
            str(limits["cpu_limit"]),
            str(args.n),
            spawner["network"],
            str(spawner["pids_limit"]),
        )
    )
    p50, p95 = percentile(hub, 50), percentile(hub, 95)
    f50, f95 = percentile(floor, 50), percentile(floor, 95)
    ratio = p95 / f95
    verdict = "met" if ratio <= 1.3 else f"missed by {ratio - 1.3:.2f}x"
    data = {
        "title": f"Spawn latency: {args.n} sequential spawns vs the docker run floor",
        "image": image,
        "limits": limits,
        "hub_seconds": hub,
        "floor_seconds": floor,
        "p95_ratio": round(ratio, 2),
        "target": "spawn p95 <= 1.3x the floor",
    }
    rows = [
        ("spawn through the hub", f"{p50:.2f} s", f"{p95:.2f} s"),
        ("floor: docker run until /api answers", f"{f50:.2f} s", f"{f95:.2f} s"),
        ("ratio", f"{p50 / f50:.2f}x", f"{ratio:.2f}x (target <= 1.3x: {verdict})"),
    ]
    write("spawn", data, ("", "p50", "p95"), rows)
    plot(
        "spawn",
        "Spawn latency per run",
        {
            "hub spawn": (list(range(1, len(hub) + 1)), hub),
            "docker run floor": (list(range(1, len(floor) + 1)), floor),
        },
        "run",
        "seconds",
    )


if __name__ == "__main__":
    main()
