#!/usr/bin/env bash
# What `make test`, `make demo` and CI need on this machine besides Python's packages
# (`make bootstrap` gets those): a Docker engine that answers, debootstrap (test-host
# images), testssl.sh (TLS checks), slapd and glewlwyd (the sign-in tests), chromium and
# chromium-driver (the browser test), python3 with venv, make.
# As root on Debian or Ubuntu it installs what is missing and starts Docker; anywhere
# else it names what is missing and stops. Run twice, it changes nothing the second time.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
say() { printf 'prereqs: %s\n' "$*" >&2; }

missing=()
command -v python3 >/dev/null || missing+=(python3)
command -v python3 >/dev/null && ! python3 -c 'import ensurepip, venv' 2>/dev/null && missing+=(python3-venv)
command -v make >/dev/null || missing+=(make)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v testssl >/dev/null || missing+=(testssl.sh)
# The sign-in tests (hub/tests/test_signin.py) run a private OpenLDAP server.
[ -x /usr/sbin/slapd ] || missing+=(slapd)
# ... and a private OpenID Connect provider (Glewlwyd) with its SQLite database.
[ -x /usr/bin/glewlwyd ] || missing+=(glewlwyd)
command -v sqlite3 >/dev/null || missing+=(sqlite3)
# The browser test (tests/e2e/test_browser.py): headless Chromium and its WebDriver
# (Ubuntu packages them as snaps behind these two names).
if grep -qi '^ID=ubuntu' /etc/os-release 2>/dev/null; then
    browser=(chromium-browser chromium-chromedriver)
else
    browser=(chromium chromium-driver)
fi
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=("${browser[0]}")
command -v chromedriver >/dev/null || missing+=("${browser[1]}")
docker_answers() { docker info >/dev/null 2>&1; }
if ! docker_answers && ! command -v dockerd >/dev/null && [ ! -x /usr/sbin/dockerd ]; then
    missing+=(docker.io)
fi

root=false
[ "$(id -u)" = 0 ] && root=true
apt=false
command -v apt-get >/dev/null && grep -qiE '^ID(_LIKE)?=.*(debian|ubuntu)' /etc/os-release && apt=true

if ((${#missing[@]})); then
    if ! $root || ! $apt; then
        say "missing: ${missing[*]}"
        say "install them (Debian/Ubuntu: sudo apt-get install ${missing[*]}), or run this as root on Debian/Ubuntu to have them installed"
        exit 1
    fi
    say "installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! docker_answers; then
    if ! $root; then
        say "no Docker engine answers: start it (sudo systemctl start docker) and make sure you may use it (the docker group)"
        exit 1
    fi
    if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
        systemctl start docker
    else
        say "starting dockerd in the background (no systemd here); its log: /var/log/gpuhub-dockerd.log"
        PATH="$PATH:/usr/sbin" nohup dockerd >/var/log/gpuhub-dockerd.log 2>&1 &
    fi
    for _ in $(seq 60); do docker_answers && break; sleep 1; done
    docker_answers || { say "dockerd did not answer in 60 s"; tail -n 20 /var/log/gpuhub-dockerd.log >&2 || true; exit 1; }
fi
