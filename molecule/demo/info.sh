#!/usr/bin/env bash
# Print how to reach the demo host that `make demo` converged.
set -euo pipefail
name=gpuhub-demo
# The shared facts, from the one place they are stated.
fact() { sed -n "s/^$1: //p" "$(dirname "$0")/../../roles/gpuhub/defaults/main.yml"; }
root=$(fact gpuhub_root)
hub=$(fact gpuhub_hub_container)
if ! docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null | grep -q true; then
    echo "demo: container $name is not running; run \`make demo\`" >&2
    exit 1
fi
ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$name")
password=$(docker exec "$name" cat "$root/state/admin-passwords/admin" 2>/dev/null || echo '(not found)')
cat <<INFO

gpuhub demo host is up: container $name at $ip.

  JupyterHub:   https://$ip/  (self-signed certificate: accept it in the browser, or
                docker exec $name cat /etc/nginx/gpuhub-tls/selfsigned.crt > demo.crt)
  First admin:  log in as admin with the password $password
                (its first password: $root/state/admin-passwords/admin).
                More users: docker exec $name docker exec $hub gpuhub-admin user add alice
  Shell:        docker exec -it $name bash
  Containers:   docker exec $name docker ps
  Re-converge:  make demo          Remove it: make demo-clean
INFO
