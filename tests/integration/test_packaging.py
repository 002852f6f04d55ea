"""The installed distribution: one import namespace. The repository keeps its rooms as top-level
folders (pipelines/, operators/, jobs/), but a wheel installs them as corpusmill.pipelines,
corpusmill.operators and corpusmill.jobs, so a user's own `pipelines` or `jobs` module cannot
collide with ours."""
from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

# builds and installs a wheel
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("corpusmill", "jobs", "operators", "pipelines", "pyproject.toml", "README.md")


def test_wheel_adds_only_corpusmill_to_site_packages(tmp_path):
    source = tmp_path / "src"  # a copy: building in the checkout would leave build/ there
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(source)], check=True,
                   capture_output=True)
    wheel = next((tmp_path / "dist").glob("corpusmill-*.whl"))
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True,
                               text=True).stdout.strip())
    before = set(p.name for p in site.iterdir())
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    added = sorted(p.name for p in site.iterdir() if p.name not in before)
    assert [name for name in added if not name.endswith(".dist-info")] == ["corpusmill"]
    installed = site / "corpusmill"
    for room in ("jobs", "operators", "pipelines"):
        assert (installed / room / "__init__.py").is_file()
    assert (installed / "jobs" / "examples" / "topics_minilm.yaml").is_file()
    assert (installed / "jobs" / "cluster" / "kube_crds" / "kuberay-v1.7.0.json").is_file()  # kube --check
    assert (installed / "pipelines" / "training" / "text_classification.py").is_file()
    # the console script points into the namespace
    script = (env / "bin" / "corpusmill").read_text()
    assert "from corpusmill.jobs.cli import main" in script
