"""The wheel carries templates/, static/ and models/default/ inside ``app`` and a non-editable install runs from them.

The slow tests build the wheel from a copy of the sources (so no ``build/`` or ``*.egg-info`` lands in the repository
and a stale ``build/lib`` cannot leak files into the wheel), install it with ``pip --target`` into a throwaway folder
and run the app from there in a fresh interpreter whose ``PYTHONPATH`` puts that copy ahead of the editable one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What the build reads: pyproject.toml names README.md as the readme; the rest becomes the wheel's content.
BUILD_INPUTS = ("pyproject.toml", "README.md", "app", "templates", "static", "models")
PIP = (sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input")
DEFAULT_CLASSES = 5

# Run by the installed copy, with cwd outside the repository; prints one JSON line for the test to check.
PROBE = """
import json

import app
from fastapi.testclient import TestClient

from app.io.bundle import load_bundle
from app.io.resources import models_dir, static_dir, templates_dir
from app.web.factory import create_app
from app.web.settings import Settings

bundle = load_bundle("default")
report = {
    "app_file": app.__file__,
    "static": str(static_dir()),
    "templates": str(templates_dir()),
    "models": str(models_dir()),
    "bundle_path": str(bundle.path),
    "classes": len(bundle.card.classes),
}
with TestClient(create_app(Settings(warmup=False, device="cpu")), base_url="http://localhost") as client:
    page = client.get("/")
    report["index_status"] = page.status_code
    report["index_has_config"] = 'id="segu-config"' in page.text
    report["css_status"] = client.get("/static/style.css").status_code
    report["main_js_status"] = client.get("/static/js/main.js").status_code
    report["service_loaded"] = client.app.state.service is not None
print("PROBE " + json.dumps(report))
"""


def _run(args: list[str] | tuple[str, ...], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the working tree, without build isolation (no network)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=junk)
        else:
            shutil.copy2(path, src / name)
    dist = root / "dist"
    _run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(src)], cwd=root)
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def site(wheel: Path) -> Path:
    """The wheel installed non-editable into a throwaway ``--target`` folder."""
    target = wheel.parent.parent / "site"
    _run([*PIP, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)], cwd=wheel.parent)
    return target


def test_every_app_package_is_listed_in_pyproject() -> None:
    """setuptools only packs the listed packages: a new folder of app/ with Python files must be added to the list."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    declared = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "app").rglob("*.py")}
    missing = sorted(on_disk - declared)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml, or the wheel will lack them"
    assert config["package-dir"] == {"app.templates": "templates", "app.static": "static", "app.models": "models"}


@pytest.mark.slow
def test_wheel_carries_the_resources_inside_app(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for required in (
        "app/models/default/model.safetensors",
        "app/models/default/model.json",
        "app/models/default/config.json",
        "app/models/default/density.safetensors",
        "app/models/person/model.safetensors",
        "app/models/person/model.json",
        "app/models/person/LICENSE",
        "app/models/person/NOTICE",
        "app/templates/index.html",
        "app/static/js/main.js",
    ):
        assert required in names, f"{required} is missing from {wheel.name}"
    for folder in ("static", "templates"):
        expected = {f"app/{p.relative_to(REPO).as_posix()}" for p in (REPO / folder).rglob("*") if p.is_file()}
        assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
    modules = {f"{p.relative_to(REPO).as_posix()}" for p in (REPO / "app").rglob("*.py")}
    assert modules <= names, f"modules missing from the wheel: {sorted(modules - names)}"
    top = {name.split("/", 1)[0] for name in names}
    extra = [name for name in top - {"app"} if not name.endswith(".dist-info")]
    assert "app" in top and not extra, f"top-level entries other than app/ and the .dist-info: {extra}"


@pytest.mark.slow
def test_installed_wheel_serves_the_page_and_loads_the_default_model(site: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGU_") and k not in ("PYTHONHOME", "PYTHONSAFEPATH")}
    env["PYTHONPATH"] = str(site)
    env["PYTHONNOUSERSITE"] = "1"
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE, encoding="utf-8")
    result = _run([sys.executable, str(probe)], cwd=tmp_path, env=env)
    lines = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    assert len(lines) == 1, result.stdout
    report = json.loads(lines[0].removeprefix("PROBE "))

    site = site.resolve()
    assert Path(report["app_file"]).resolve().is_relative_to(site), f"the editable copy was imported: {report['app_file']}"
    for key, name in (("static", "static"), ("templates", "templates"), ("models", "models")):
        assert Path(report[key]).resolve() == site / "app" / name, report
    assert Path(report["bundle_path"]).resolve() == site / "app" / "models" / "default", report
    assert report["classes"] == DEFAULT_CLASSES, report
    assert report["service_loaded"], report
    assert report["index_status"] == 200, report
    assert report["index_has_config"], report
    assert report["css_status"] == 200, report
    assert report["main_js_status"] == 200, report
