from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from spx_data.archive import checksum


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "spx-quote-2024-01-02.parquet"
    path.write_bytes(b"some bytes\x00\xff" * 1000)
    return path


def test_sha256_file_matches_hashlib(data_file: Path) -> None:
    assert checksum.sha256_file(data_file) == hashlib.sha256(data_file.read_bytes()).hexdigest()


def test_sidecar_format_is_accepted_by_sha256sum(data_file: Path) -> None:
    sidecar = data_file.with_name(data_file.name + ".sha256")
    digest = checksum.write_sidecar(sidecar, data_file)
    assert sidecar.read_text() == f"{digest}  {data_file.name}\n"
    assert digest == hashlib.sha256(data_file.read_bytes()).hexdigest()
    done = subprocess.run(
        ["sha256sum", "-c", sidecar.name], cwd=data_file.parent, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"{data_file.name}: OK"
    assert sorted(p.name for p in data_file.parent.iterdir()) == [
        data_file.name,
        sidecar.name,
    ]  # no temp left


def test_verify_detects_a_changed_file(data_file: Path) -> None:
    sidecar = data_file.with_name(data_file.name + ".sha256")
    checksum.write_sidecar(sidecar, data_file)
    assert checksum.verify_sidecar(sidecar, data_file) is None
    raw = bytearray(data_file.read_bytes())
    raw[500] ^= 0x01
    data_file.write_bytes(bytes(raw))
    problem = checksum.verify_sidecar(sidecar, data_file)
    assert problem is not None and "does not match" in problem
    done = subprocess.run(["sha256sum", "-c", sidecar.name], cwd=data_file.parent, capture_output=True)
    assert done.returncode != 0


def test_verify_reports_missing_malformed_and_misnamed_sidecars(data_file: Path, tmp_path: Path) -> None:
    sidecar = tmp_path / "x.sha256"
    assert "sidecar missing" in (checksum.verify_sidecar(sidecar, data_file) or "")
    sidecar.write_text("not a checksum\n")
    assert "unreadable sidecar" in (checksum.verify_sidecar(sidecar, data_file) or "")
    sidecar.write_text(f"{'0' * 64}  other.parquet\n")
    assert "names 'other.parquet'" in (checksum.verify_sidecar(sidecar, data_file) or "")


def test_read_sidecar_accepts_binary_marker_and_rejects_two_lines(tmp_path: Path) -> None:
    sidecar = tmp_path / "a.sha256"
    sidecar.write_text(f"{'AB' * 32} *a.parquet\n")
    assert checksum.read_sidecar(sidecar) == ("ab" * 32, "a.parquet")
    sidecar.write_text(f"{'ab' * 32}  a.parquet\n{'ab' * 32}  b.parquet\n")
    with pytest.raises(ValueError, match="one-line"):
        checksum.read_sidecar(sidecar)


def test_given_digest_is_written_as_is_and_bad_digest_refused(data_file: Path) -> None:
    sidecar = data_file.with_name(data_file.name + ".sha256")
    checksum.write_sidecar(sidecar, data_file, "F" * 64)
    assert sidecar.read_text() == f"{'f' * 64}  {data_file.name}\n"
    with pytest.raises(ValueError, match="not a sha256"):
        checksum.write_sidecar(sidecar, data_file, "xyz")
    assert sidecar.read_text() == f"{'f' * 64}  {data_file.name}\n"  # the old one stays whole


def test_names_that_sha256sum_would_escape_are_refused(tmp_path: Path) -> None:
    odd = tmp_path / "a\\b.parquet"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match="backslash"):
        checksum.write_sidecar(tmp_path / "a.sha256", odd)
    assert list(tmp_path.glob("*.sha256")) == [] and list(tmp_path.glob(".*.tmp")) == []
