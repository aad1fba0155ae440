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

gpuhub demo host is up: container $name at $ip.

  JupyterHub:   https://$ip/  (self-signed certificate: accept it in the browser, or
                docker exec $name cat /etc/nginx/gpuhub-tls/selfsigned.crt > demo.crt)
  First admin:  docker exec $name docker exec jupyterhub gpuhub-admin user add admin
                prints a generated password for "admin" (in jupyterhub_admin_users).
                More users: ... gpuhub-admin user add alice, or approve sign-ups at
                https://$ip/hub/authorize.
  Shell:        docker exec -it $name bash
  Containers:   docker exec $name docker ps
  Re-converge:  make demo          Remove it: make demo-clean
INFO
