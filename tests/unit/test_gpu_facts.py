"""The GPU fact: PCI scan on a fixture sysfs tree, nvidia-smi parsing on fixtures in
NVIDIA's documented formats (tests/fixtures/nvidia-smi/README.md says where each is from)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
FACT = REPO / "roles/gpu_facts/files/gpu.fact"
FIXTURES = REPO / "tests/fixtures/nvidia-smi"


def load_fact() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("gpu_fact", str(FACT))
    spec = importlib.util.spec_from_loader("gpu_fact", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


fact = load_fact()


def pci_device(root: Path, address: str, vendor: str, klass: str, driver: str | None) -> None:
    device = root / "devices" / address
    device.mkdir(parents=True)
    (device / "vendor").write_text(vendor + "\n")
    (device / "class").write_text(klass + "\n")
    (device / "device").write_text("0x2330\n")
    if driver:
        target = root / "drivers" / driver
        target.mkdir(parents=True, exist_ok=True)
        (device / "driver").symlink_to(target)


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    pci_device(tmp_path, "0000:17:00.0", "0x10de", "0x030200", None)  # 3D controller
    pci_device(tmp_path, "0000:65:00.0", "0x10de", "0x030000", "nvidia")  # VGA
    pci_device(tmp_path, "0000:65:00.1", "0x10de", "0x040300", "snd_hda_intel")  # its audio
    pci_device(tmp_path, "0000:b3:00.0", "0x10de", "0x068000", None)  # NVSwitch
    pci_device(tmp_path, "0000:00:02.0", "0x8086", "0x030000", "i915")  # Intel graphics
    return tmp_path / "devices"


def test_pci_scan_finds_only_nvidia_gpus(sysfs: Path) -> None:
    found = fact.scan_pci(sysfs)
    assert [d["address"] for d in found] == ["0000:17:00.0", "0000:65:00.0"]
    assert [d["driver"] for d in found] == [None, "nvidia"]


def test_no_pci_bus_means_no_gpus(tmp_path: Path) -> None:
    assert fact.scan_pci(tmp_path / "missing") == []
    assert fact.collect(tmp_path / "missing")["count"] == 0


def test_query_output_of_four_h100() -> None:
    gpus = fact.parse_query((FIXTURES / "query-4xh100.csv").read_text())
    assert [g["index"] for g in gpus] == [0, 1, 2, 3]
    assert gpus[0] == {
        "index": 0,
        "uuid": "GPU-4d5f3b8e-0a1c-7f2e-9c3b-1e2d3c4b5a60",
        "name": "NVIDIA H100 80GB HBM3",
        "memory_mib": 81559,
        "mig_mode": "Disabled",
        "driver_version": "550.54.15",
        "mig_devices": [],
    }
    assert fact.parse_list((FIXTURES / "list-4xh100.txt").read_text()) == {
        g["uuid"]: [] for g in gpus
    }


def test_a_real_h200_capture_parses_as_the_fact_reported_it_there() -> None:
    """Captured on an H200 machine (scripts/gpu-capture.sh): the parser reads the real
    query and list outputs, and agrees with what the fact printed on that machine."""
    gpus = fact.parse_query((FIXTURES / "query-h200.csv").read_text())
    recorded = json.loads((FIXTURES / "gpu-fact-h200.json").read_text())
    assert gpus == recorded["gpus"]
    assert (recorded["count"], recorded["source"], recorded["errors"]) == (1, "nvidia-smi", [])
    assert gpus[0]["name"] == "NVIDIA H200"
    assert gpus[0]["memory_mib"] == 143771
    assert fact.parse_list((FIXTURES / "list-h200.txt").read_text()) == {gpus[0]["uuid"]: []}


def test_mig_devices_are_listed_under_their_gpu() -> None:
    (gpu,) = fact.parse_query((FIXTURES / "query-a100-mig.csv").read_text())
    assert gpu["mig_mode"] == "Enabled"
    migs = fact.parse_list((FIXTURES / "list-a100-mig.txt").read_text())[gpu["uuid"]]
    assert [(m["index"], m["profile"]) for m in migs] == [
        (0, "1g.5gb"),
        (1, "1g.5gb"),
        (2, "2g.10gb"),
    ]
    assert migs[2]["uuid"] == "MIG-1e099852-3624-56c0-8064-c5db1211e44f"


def test_unexpected_query_output_is_an_error() -> None:
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        fact.parse_query("0, GPU-x, only three")


def test_the_fact_prints_json_on_this_gpu_less_machine(sysfs: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(FACT), str(sysfs)], capture_output=True, text=True, check=True
    ).stdout
    data = json.loads(out)
    assert data["count"] == 2  # from the fixture tree; no nvidia-smi here
    assert data["source"] == "pci"
    assert data["gpus"] == []
