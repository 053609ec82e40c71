#!/usr/bin/env python3
"""Download Meta's official SAM 2.1 checkpoints and check their sha256.

    python3 weights/download.py tiny            # -> weights/sam2.1_hiera_tiny.pt
    python3 weights/download.py all --dest /data/sam2

Needs internet. Expected hashes come from SHA256SUMS beside this script (sha256sum
format). Meta publishes no checksums, so the file lists only hashes someone has
recorded from a download they trust; a file with a recorded hash that does not match
is deleted, and one without a recorded hash is kept with its hash printed (or refused
with --require-checksum). Downloads go to `<name>.part` and are renamed when complete.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
FILENAMES = {size: f"sam2.1_hiera_{size}.pt" for size in ("tiny", "small", "base_plus", "large")}
SUMS_FILE = Path(__file__).resolve().parent / "SHA256SUMS"
CHUNK = 1 << 20

Opener = Callable[[str], BinaryIO]


class ChecksumError(RuntimeError):
    """The downloaded bytes are not the recorded file, or no hash is recorded when one is required."""


def read_sums(path: Path = SUMS_FILE) -> dict[str, str]:
    """filename -> sha256 from a sha256sum-format file ('#' comments allowed)."""
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest.lower()
    return sums


def progress_bar(done: int, total: int | None, *, name: str, width: int = 30) -> str:
    """One progress line: a bar and percentage when the size is known, else megabytes."""
    if not total:
        return f"{name}: {done / 1e6:.1f} MB"
    filled = min(width, done * width // total)
    return f"{name}: [{'#' * filled}{'.' * (width - filled)}] {100 * done / total:5.1f}% " \
           f"of {total / 1e6:.1f} MB"


def download(filename: str, dest: Path, *, expected_sha256: str | None,
             require_checksum: bool = False, base_url: str = BASE_URL,
             opener: Opener = urllib.request.urlopen,
             report: Callable[[str], None] = lambda line: print(line, end="\r", flush=True),
             ) -> Path:
    """Fetch one file into `dest`; a verified copy already there is kept."""
    if expected_sha256 is None and require_checksum:
        raise ChecksumError(f"{filename}: no sha256 recorded in {SUMS_FILE.name}; refusing "
                            f"(--require-checksum)")
    target = dest / filename
    if expected_sha256 and target.is_file() and _sha256(target) == expected_sha256:
        report(f"{target} already present and verified\n")
        return target
    dest.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    done = 0
    with opener(base_url + filename) as response, part.open("wb") as out:
        length = getattr(response, "headers", {}).get("Content-Length")
        total = int(length) if length else None
        while chunk := response.read(CHUNK):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            report(progress_bar(done, total, name=filename))
    report("\n")
    actual = digest.hexdigest()
    if expected_sha256 is None:
        report(f"WARNING {filename}: no recorded sha256, not verified; its sha256 is "
               f"{actual} (add '{actual}  {filename}' to {SUMS_FILE} once you trust it)\n")
    elif actual != expected_sha256:
        part.unlink()
        raise ChecksumError(f"{filename}: sha256 {actual} does not match the recorded "
                            f"{expected_sha256}; the download was deleted")
    part.replace(target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="+", choices=[*FILENAMES, "all"])
    parser.add_argument("--dest", type=Path, default=Path(__file__).resolve().parent,
                        help="folder for the .pt files (default: this script's folder)")
    parser.add_argument("--base-url", default=BASE_URL,
                        help="mirror to fetch from (file:///path/ works for a local copy)")
    parser.add_argument("--require-checksum", action="store_true",
                        help="refuse files whose sha256 is not recorded in SHA256SUMS")
    args = parser.parse_args(argv)
    sizes = list(FILENAMES) if "all" in args.sizes else args.sizes
    sums = read_sums()
    try:
        for size in sizes:
            name = FILENAMES[size]
            path = download(name, args.dest, expected_sha256=sums.get(name),
                            require_checksum=args.require_checksum, base_url=args.base_url)
            print(f"saved {path}")
    except (OSError, ChecksumError) as error:
        print(f"download failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
