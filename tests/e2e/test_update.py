"""update.yml: operating-system updates host by host. The test host gets pending updates
from an apt repository of the test's own: a package whose new version asks for a reboot
(as Ubuntu's packages do, through /run/reboot-required) and a kernel package. The update
applies the first, holds the kernel (the default), reports the reboot and, with reboots
off, does not reboot; the hub stays up, and a second run changes nothing."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from testhost import TestHost, flat, ok

DRILL = "/opt/gpuhub-update-drill"
SOURCE = "/etc/apt/sources.list.d/gpuhub-update-drill.list"
TOOL, KERNEL = "gpuhub-drill-tool", "linux-image-gpuhub-drill"
ASKS_FOR_REBOOT = f"touch /run/reboot-required; echo {TOOL} >> /run/reboot-required.pkgs"

# Version 1.0 of both packages installed, 2.0 of both in a flat repository apt trusts.
PENDING_UPDATES = f"""
set -eu
work={DRILL}
rm -rf $work; mkdir -p $work/repo $work/build
package() {{  # name version postinst-command deb
  d=$work/build/$1-$2; mkdir -p $d/DEBIAN
  printf 'Package: %s\\nVersion: %s\\nArchitecture: all\\n' "$1" "$2" > $d/DEBIAN/control
  printf 'Maintainer: gpuhub <t@gpuhub.test>\\nDescription: drill\\n' >> $d/DEBIAN/control
  [ -z "$3" ] || {{ printf '#!/bin/sh\\n%s\\n' "$3" > $d/DEBIAN/postinst; }}
  [ -z "$3" ] || chmod 755 $d/DEBIAN/postinst
  dpkg-deb --build --root-owner-group $d "$4" >/dev/null
}}
package {TOOL} 1.0 "" $work/tool-1.0.deb
package {KERNEL} 1.0 "" $work/kernel-1.0.deb
package {TOOL} 2.0 '{ASKS_FOR_REBOOT}' $work/repo/tool-2.0.deb
package {KERNEL} 2.0 "" $work/repo/kernel-2.0.deb
dpkg -i $work/tool-1.0.deb $work/kernel-1.0.deb >/dev/null
cd $work/repo
for f in *.deb; do
  dpkg-deb -f $f; echo "Filename: ./$f"; echo "Size: $(stat -c %s $f)"
  echo "SHA256: $(sha256sum $f | cut -d' ' -f1)"; echo
done > Packages
echo "deb [trusted=yes] file:$work/repo ./" > {SOURCE}
"""


@pytest.fixture
def pending_updates(host: TestHost) -> Iterator[None]:
    host.run("sh", "-c", PENDING_UPDATES)
    yield
    host.run(
        "sh",
        "-c",
        f"dpkg --purge {TOOL} {KERNEL} >/dev/null; rm -rf {DRILL} {SOURCE}"
        " /run/reboot-required /run/reboot-required.pkgs"
        " /var/lib/apt/lists/_opt_gpuhub-update-drill_*",
    )


def reported(output: str, line: str) -> str:
    """What update.yml's report says on one of its lines ("upgraded", "held back")."""
    found = re.findall(rf"{line}: ([^'\"]*)['\"]", output)
    assert len(found) == 1, output[-3000:]
    return found[0].strip()


def version(host: TestHost, package: str) -> str:
    return host.run("dpkg-query", "-W", "-f=${Version}", package)


def test_update_applies_pending_updates_holds_the_kernel_and_reports_a_reboot(
    host: TestHost, pending_updates: None
) -> None:
    host.container.reload()
    started = host.container.attrs["State"]["StartedAt"]
    hub_started = host.run("docker", "inspect", "-f", "{{.State.StartedAt}}", host.hub)

    update = host.playbook("playbooks/update.yml", "-e", "host_update_reboot=false")
    output = flat(update)
    ok(update)
    assert version(host, TOOL) == "2.0"
    assert version(host, KERNEL) == "1.0", "the kernel was not held"
    # The test host's own pending updates (its Debian sources) are upgraded alongside.
    assert f"{TOOL} (1.0 -> 2.0)" in reported(output, "upgraded"), output[-3000:]
    assert reported(output, "held back") == f"{KERNEL} (1.0 -> 2.0)", output[-3000:]
    assert (
        f"reboot needed: yes, the system asks for one (/run/reboot-required, by {TOOL});"
        " not rebooted: host_update_reboot is false"
    ) in output, output[-3000:]

    # Nothing was rebooted or restarted, and the hub answered (the playbook checks it).
    host.container.reload()
    assert host.container.attrs["State"]["StartedAt"] == started
    assert host.run("docker", "inspect", "-f", "{{.State.StartedAt}}", host.hub) == hub_started

    again = host.playbook("playbooks/update.yml", "-e", "host_update_reboot=false")
    assert reported(flat(again), "upgraded") == "nothing"
    ok(again, changed=0)
    assert version(host, KERNEL) == "1.0"
