"""The wallet page's vendored charting library: served only as pinned in
web/vendor.json, and left out of the code measurement (the pin is measured)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from enclave_agent.gateway import vendor
from enclave_agent.tee import measure
from enclave_agent.tee.measure import measure_package

REPO = Path(__file__).resolve().parents[3]
VENDOR = REPO / "enclave_agent" / "gateway" / "web" / "vendor"


def test_every_pin_names_an_npm_file_with_a_licence_and_a_type() -> None:
    pins = vendor.pins()
    assert {"chart.umd.min.js", "chart.js-LICENSE.md"} <= set(pins)
    for name, pin in pins.items():
        assert vendor.content_type(name) is not None
        assert pin["from"].startswith("node_modules/") and len(pin["sha256"]) == 64
        assert pin["license"] == "MIT"


@pytest.mark.skipif(not VENDOR.is_dir(), reason="make setup copies the vendored files")
def test_the_vendored_files_are_served_as_pinned() -> None:
    for name, pin in vendor.pins().items():
        data = vendor.read(name)
        assert data is not None and hashlib.sha256(data).hexdigest() == pin["sha256"]
    assert vendor.read("not-pinned.js") is None
    assert vendor.read("../vendor.json") is None


@pytest.mark.skipif(not VENDOR.is_dir(), reason="make setup copies the vendored files")
def test_a_file_that_does_not_match_its_pin_is_not_served(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pins = vendor.pins()
    pins["chart.umd.min.js"] = pins["chart.umd.min.js"] | {"sha256": "00" * 32}
    monkeypatch.setattr(vendor, "pins", lambda: pins)
    assert vendor.read("chart.umd.min.js") is None
    assert "does not match its pin" in caplog.text


def test_the_measurement_leaves_the_vendor_folder_out_but_not_its_pins(tmp_path: Path) -> None:
    package = tmp_path / "enclave_agent"
    (package / "gateway" / "web").mkdir(parents=True)
    (package / "__init__.py").write_text('"""tiny"""\n')
    pins = package / "gateway" / "web" / "vendor.json"
    pins.write_text('{"files": {}}\n')
    lock = tmp_path / "requirements.lock"
    lock.write_text("web3==7.16.0\n")
    before = measure_package(package, lock)
    (package / "gateway" / "web" / "vendor").mkdir()
    (package / "gateway" / "web" / "vendor" / "chart.umd.min.js").write_text("anything")
    assert measure_package(package, lock) == before  # copied or not: the same measurement
    pins.write_text('{"files": {"x.js": {}}}\n')
    assert measure_package(package, lock) != before  # another pin is another code identity
    assert measure.MEASURED_DIRS == ("gateway/web",)  # its files, not the folders below


def test_the_real_tree_measures_the_same_with_and_without_the_copy(tmp_path: Path) -> None:
    copy = tmp_path / "enclave_agent"
    shutil.copytree(REPO / "enclave_agent", copy, ignore=shutil.ignore_patterns("__pycache__"))
    lock = REPO / "enclave_agent" / "runtime.lock"
    with_copy = measure_package(copy, lock)
    shutil.rmtree(copy / "gateway" / "web" / "vendor", ignore_errors=True)
    assert measure_package(copy, lock) == with_copy
