"""weights/download.py: the recorded table, size-then-hash verification, offline downloads.

No network: files come from a file:// mirror in tmp_path, with a patched table of values.
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = bytes(range(256)) * 4099 + b"tail"  # a few CHUNKs and a remainder
NAME = "sam2.1_hiera_tiny.pt"


def load_download_script():
    spec = importlib.util.spec_from_file_location("sam2_weights_download",
                                                  ROOT / "weights" / "download.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


download = load_download_script()


@pytest.fixture
def mirror(tmp_path) -> str:
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / NAME).write_bytes(PAYLOAD)
    return folder.as_uri() + "/"


def right() -> download.Expected:
    return download.Expected(hashlib.sha256(PAYLOAD).hexdigest(), len(PAYLOAD))


def test_every_official_checkpoint_has_a_recorded_sha256_and_size() -> None:
    recorded = download.read_expected()
    names = {download.checkpoint_filename(size, version)
             for size in download.MODEL_SIZES for version in download.BASE_URLS}
    assert set(recorded) == names and len(names) == 8
    for name, expected in recorded.items():
        assert re.fullmatch(r"[0-9a-f]{64}", expected.sha256), name
        assert 100_000_000 < expected.num_bytes < 1_000_000_000, name
    assert download.checkpoint_filename("small", "2.0") == "sam2_hiera_small.pt"


def test_read_expected_joins_both_files(tmp_path) -> None:
    sums, sizes = tmp_path / "SHA256SUMS", tmp_path / "SIZES"
    sums.write_text("# comment\nABCD  *a.pt\n")
    sizes.write_text("12  a.pt\n34  b.pt\n")
    assert download.read_expected(sums, sizes) == {
        "a.pt": download.Expected("abcd", 12), "b.pt": download.Expected(None, 34)}
    assert download.read_expected(tmp_path / "none", tmp_path / "none") == {}


def test_verify_checks_the_size_before_hashing(tmp_path, monkeypatch) -> None:
    path = tmp_path / NAME
    path.write_bytes(PAYLOAD)
    assert download.verify(path, right()) == right().sha256
    hashed: list[Path] = []
    monkeypatch.setattr(download, "_sha256", lambda p: hashed.append(p) or "0" * 64)
    with pytest.raises(download.ChecksumError,
                       match=f"{NAME}: {len(PAYLOAD)} bytes, expected {len(PAYLOAD) + 1}"):
        download.verify(path, download.Expected(right().sha256, len(PAYLOAD) + 1))
    assert hashed == []  # a wrong size is refused without reading the file
    with pytest.raises(download.ChecksumError, match=f"sha256 {'0' * 64}, expected abc"):
        download.verify(path, download.Expected("abc", len(PAYLOAD)))


def test_download_verifies_and_keeps_a_verified_copy(tmp_path, mirror) -> None:
    lines: list[str] = []
    dest = tmp_path / "weights"
    path = download.download(NAME, dest, expected=right(), base_url=mirror, report=lines.append)
    assert path.read_bytes() == PAYLOAD and not (dest / f"{NAME}.part").exists()
    assert any("100.0%" in line for line in lines)
    lines.clear()
    download.download(NAME, dest, expected=right(), base_url="file:///nonexistent/",
                      report=lines.append)
    assert "already present and verified" in lines[0]


@pytest.mark.parametrize("wrong, message", [
    ({"num_bytes": len(PAYLOAD) - 1}, f"{len(PAYLOAD)} bytes, expected {len(PAYLOAD) - 1}"),
    ({"sha256": "0" * 64}, f"sha256 {hashlib.sha256(PAYLOAD).hexdigest()}, expected {'0' * 64}"),
])
def test_a_mismatch_deletes_the_partial_file(tmp_path, mirror, wrong, message) -> None:
    expected = download.Expected(**{**vars(right()), **wrong})
    dest = tmp_path / "weights"
    with pytest.raises(download.ChecksumError, match=f"{message}; the download was deleted"):
        download.download(NAME, dest, expected=expected, base_url=mirror, report=print)
    assert list(dest.iterdir()) == []


def test_unrecorded_files_print_their_hash_or_are_refused(tmp_path, mirror) -> None:
    with pytest.raises(download.ChecksumError, match="no sha256 recorded"):
        download.download(NAME, tmp_path, expected=download.Expected(), base_url=mirror,
                          require_checksum=True)
    lines: list[str] = []
    download.download(NAME, tmp_path, expected=download.Expected(), base_url=mirror,
                      report=lines.append)
    assert any(f"not verified; its sha256 is {right().sha256}" in line for line in lines)


def test_main_downloads_from_a_mirror_with_the_recorded_table(tmp_path, mirror, monkeypatch,
                                                              capsys) -> None:
    monkeypatch.setattr(download, "read_expected", lambda: {NAME: right()})
    dest = tmp_path / "out"
    assert download.main(["tiny", "--dest", str(dest), "--base-url", mirror]) == 0
    assert (dest / NAME).read_bytes() == PAYLOAD
    monkeypatch.setattr(download, "read_expected",
                        lambda: {NAME: download.Expected(right().sha256, 1)})
    (dest / NAME).unlink()
    assert download.main(["tiny", "--dest", str(dest), "--base-url", mirror]) == 1
    assert f"{len(PAYLOAD)} bytes, expected 1" in capsys.readouterr().err
    assert download.main(["small", "--dest", str(dest), "--base-url", mirror]) == 1  # not there
    assert download.progress_bar(5, 10, name="x", width=10) == "x: [#####.....]  50.0% of 0.0 MB"
    assert download.progress_bar(2_000_000, None, name="x") == "x: 2.0 MB"
