#!/usr/bin/env bash
# Print `export` lines for what test hosts get from this machine (eval "$(env.sh)"):
#   GPUHUB_TEST_CA_BUNDLE   the CA bundle pip trusts (PIP_CERT, pip config, or the system bundle)
#   GPUHUB_TEST_WHEELHOUSE  pip's find-links directory (PIP_FIND_LINKS or pip config)
#   GPUHUB_TEST_BASE_ARCHIVE  the base-image archive build.sh saved
# Missing ones are replaced by empty placeholders under .cache/, so mounts always work.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
placeholders="$top/.cache/testhost"
mkdir -p "$placeholders/empty-wheelhouse"
: >>"$placeholders/empty-ca-bundle.crt"

pip_config() { python3 -m pip config get "$1" 2>/dev/null | head -n 1 || true; }

ca=${PIP_CERT:-$(pip_config global.cert)}
[[ -n "$ca" && -f "$ca" ]] || ca=/etc/ssl/certs/ca-certificates.crt
[[ -f "$ca" ]] || ca="$placeholders/empty-ca-bundle.crt"

wheels=${PIP_FIND_LINKS:-$(pip_config global.find-links)}
wheels=${wheels%% *}
[[ -n "$wheels" && -d "$wheels" ]] || wheels="$placeholders/empty-wheelhouse"

base=$(ls -t "$placeholders"/base-bookworm-*.tar 2>/dev/null | head -n 1 || true)
[[ -n "$base" ]] || { base="$placeholders/no-base-archive.tar"; : >>"$base"; }

printf 'export GPUHUB_TEST_BASE_ARCHIVE=%q\n' "$base"
printf 'export GPUHUB_TEST_CA_BUNDLE=%q\n' "$ca"
printf 'export GPUHUB_TEST_WHEELHOUSE=%q\n' "$wheels"
