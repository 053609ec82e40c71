#!/usr/bin/env python3
"""Download Meta's official SAM 2.1 (or 2.0) checkpoints and verify their size and sha256.

    python3 weights/download.py tiny            # -> weights/sam2.1_hiera_tiny.pt
    python3 weights/download.py all --dest /data/sam2
    python3 weights/download.py small --version 2.0   # -> sam2_hiera_small.pt

Needs internet. The expected sha256 and byte size of each file are in SHA256SUMS (sha256sum
format) and SIZES beside this script. Meta publishes no checksums; the recorded values were
collected from the Hugging Face LFS metadata of the facebook/sam2* repositories and
third-party verifiers. A download goes to `<name>.part`; its size is checked first, then its
sha256; on a mismatch the partial file is deleted and the error names the expected and
actual values. A file without recorded values is kept with its sha256 printed (or refused
with --require-checksum).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

BASE_URLS = {"2.1": "https://dl.fbaipublicfiles.com/segment_anything_2/092824/",
             "2.0": "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"}
MODEL_SIZES = ("tiny", "small", "base_plus", "large")
HERE = Path(__file__).resolve().parent
SUMS_FILE = HERE / "SHA256SUMS"
SIZES_FILE = HERE / "SIZES"
CHUNK = 1 << 20

Opener = Callable[[str], BinaryIO]


class ChecksumError(RuntimeError):
    """The bytes are not the recorded file, or nothing is recorded when it is required."""


@dataclass(frozen=True)
class Expected:
    """What a checkpoint file must be; None where nothing is recorded."""

    sha256: str | None = None
    num_bytes: int | None = None


def checkpoint_filename(model_size: str, version: str = "2.1") -> str:
    return f"sam2.1_hiera_{model_size}.pt" if version == "2.1" else f"sam2_hiera_{model_size}.pt"


def read_expected(sums: Path = SUMS_FILE, sizes: Path = SIZES_FILE) -> dict[str, Expected]:
    """filename -> Expected, from SHA256SUMS and SIZES ("<value>  <filename>"; '#' comments)."""
    hashes = {name: value.lower() for value, name in _records(sums)}
    lengths = {name: int(value) for value, name in _records(sizes)}
    return {name: Expected(hashes.get(name), lengths.get(name)) for name in {*hashes, *lengths}}


def _records(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            value, name = line.split(maxsplit=1)
            records.append((value, name.lstrip("*")))  # '*' marks binary mode in sha256sum
    return records


def verify(path: Path, expected: Expected, *, name: str | None = None) -> str:
    """The file's sha256 once its size and hash match `expected` (size first: no hashing of
    a truncated file); ChecksumError naming the expected and actual values otherwise."""
    name = name or path.name
    actual_bytes = path.stat().st_size
    if expected.num_bytes is not None and actual_bytes != expected.num_bytes:
        raise ChecksumError(f"{name}: {actual_bytes} bytes, expected {expected.num_bytes}")
    actual = _sha256(path)
    if expected.sha256 is not None and actual != expected.sha256:
        raise ChecksumError(f"{name}: sha256 {actual}, expected {expected.sha256}")
    return actual


def progress_bar(done: int, total: int | None, *, name: str, width: int = 30) -> str:
    """One progress line: a bar and percentage when the size is known, else megabytes."""
    if not total:
        return f"{name}: {done / 1e6:.1f} MB"
    filled = min(width, done * width // total)
    return f"{name}: [{'#' * filled}{'.' * (width - filled)}] {100 * done / total:5.1f}% " \
           f"of {total / 1e6:.1f} MB"


def download(filename: str, dest: Path, *, expected: Expected, base_url: str,
             require_checksum: bool = False, opener: Opener = urllib.request.urlopen,
             report: Callable[[str], None] = lambda line: print(line, end="\r", flush=True),
             ) -> Path:
    """Fetch one file into `dest` and verify it; a verified copy already there is kept."""
    if expected.sha256 is None and require_checksum:
        raise ChecksumError(f"{filename}: no sha256 recorded in {SUMS_FILE.name}; refusing "
                            f"(--require-checksum)")
    target = dest / filename
    if expected.sha256 is not None and target.is_file() and _verifies(target, expected):
        report(f"{target} already present and verified\n")
        return target
    dest.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    done = 0
    with opener(base_url + filename) as response, part.open("wb") as out:
        length = getattr(response, "headers", {}).get("Content-Length")
        total = int(length) if length else expected.num_bytes
        while chunk := response.read(CHUNK):
            out.write(chunk)
            done += len(chunk)
            report(progress_bar(done, total, name=filename))
    report("\n")
    try:
        actual = verify(part, expected, name=filename)
    except ChecksumError as error:
        part.unlink()
        raise ChecksumError(f"{error}; the download was deleted") from None
    if expected.sha256 is None:
        report(f"WARNING {filename}: no recorded sha256, not verified; its sha256 is "
               f"{actual} (add '{actual}  {filename}' to {SUMS_FILE} once you trust it)\n")
    part.replace(target)
    return target


def _verifies(path: Path, expected: Expected) -> bool:
    try:
        verify(path, expected)
    except ChecksumError:
        return False
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="+", choices=[*MODEL_SIZES, "all"])
    parser.add_argument("--version", choices=sorted(BASE_URLS), default="2.1",
                        help="SAM 2.1 (default) or the older SAM 2.0 checkpoints")
    parser.add_argument("--dest", type=Path, default=HERE,
                        help="folder for the .pt files (default: this script's folder)")
    parser.add_argument("--base-url", default=None,
                        help="mirror to fetch from (file:///path/ works for a local copy)")
    parser.add_argument("--require-checksum", action="store_true",
                        help="refuse files whose sha256 is not recorded in SHA256SUMS")
    args = parser.parse_args(argv)
    sizes = MODEL_SIZES if "all" in args.sizes else args.sizes
    recorded = read_expected()
    try:
        for size in sizes:
            name = checkpoint_filename(size, args.version)
            path = download(name, args.dest, expected=recorded.get(name, Expected()),
                            base_url=args.base_url or BASE_URLS[args.version],
                            require_checksum=args.require_checksum)
            print(f"saved {path}")
    except (OSError, ChecksumError) as error:
        print(f"download failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
