"""The wheel as a user installs it: built from the repo, put into a fresh venv, run from another folder.

The fresh venv gets the wheel with `--no-deps` (fast, no network for the project itself) and reaches the
runtime dependencies through a `.pth` line naming this interpreter's site-packages. A `.pth` path is
appended after the venv's own site-packages, so the `edge_agent` imported is the wheel's, never the
checkout's (the editable install's own `.pth` in that folder is not processed: only site folders are).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    site_packages: Path
    elsewhere: Path  # an empty folder outside the repo: the commands' working directory

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGE_AGENT_", "PYTHON"))}
        env.pop("STATE_DIRECTORY", None)
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(
            list(args), cwd=self.elsewhere, env=env, capture_output=True, text=True, timeout=300, check=False
        )


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], check=True)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    pip("wheel", "--quiet", "--no-deps", str(REPO), "-w", str(root / "dist"))
    (wheel,) = (root / "dist").glob("edge_agent-*.whl")
    target = root / "venv"
    venv.create(target, with_pip=False, system_site_packages=False)
    python = target / "bin" / "python"
    pip("--python", str(python), "install", "--quiet", "--no-deps", str(wheel))
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    dependencies = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site_packages / "zz_edge_agent_test_dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return Installed(wheel, target, site_packages, elsewhere)


def test_the_wheel_carries_its_data_and_licence(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert "edge_agent/_models/manifest.toml" in names
    assert "edge_agent/lab/demo/files/short_hamilton_clip.mp4" in names
    assert not any(name.startswith(("tests/", "models/")) for name in names)
    licence = next(name for name in names if name.endswith(".dist-info/licenses/LICENSE"))
    assert "Apache License" in zipfile.ZipFile(installed.wheel).read(licence).decode()
    metadata = zipfile.ZipFile(installed.wheel).read(licence.split("/")[0] + "/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert "Classifier: Operating System :: POSIX :: Linux" in metadata


def test_the_installed_wheel_is_what_runs(installed: Installed) -> None:
    result = installed.run("python", "-c", "import edge_agent; print(edge_agent.__file__)")
    assert result.returncode == 0, result.stderr
    imported = Path(result.stdout.strip())
    assert imported.is_relative_to(installed.site_packages), imported
    assert not imported.is_relative_to(REPO)


def test_models_verify_from_another_folder(installed: Installed) -> None:
    result = installed.run("edge-agent", "models", "verify")
    assert result.returncode == 0, result.stderr
    found = re.search(r"(\d+) model file\(s\) match (\S+)", result.stdout)
    assert found and int(found.group(1)) >= 9, result.stdout
    assert Path(found.group(2)).is_relative_to(installed.site_packages)


def test_demo_from_another_folder_reports_a_match(installed: Installed) -> None:
    out = installed.elsewhere / "demo-output"
    result = installed.run("edge-agent", "demo", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"kit {installed.site_packages}" in result.stdout
    events = re.findall(r"match event: (\w+) on track \d+", result.stdout)
    assert events and set(events) == {"lin_manuel_miranda"}, result.stdout
    assert len(list(out.glob("*.jpg"))) == 3
