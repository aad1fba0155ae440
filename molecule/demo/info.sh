#!/usr/bin/env bash
# Print how to reach the demo host that `make demo` converged.
set -euo pipefail
name=gpuhub-demo
if ! docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null | grep -q true; then
    echo "demo: container $name is not running; run \`make demo\`" >&2
    exit 1
fi
ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$name")
cat <<INFO

gpuhub demo host is up: container $name (address $ip).
  shell:        docker exec -it $name bash
  its Docker:   docker exec $name docker ps
  re-converge:  make demo        remove it: make demo-clean
INFO
