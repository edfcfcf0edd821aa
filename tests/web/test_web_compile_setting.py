"""SEGU_COMPILE_KERNELS: the app factory turns kernel compilation on or off for the process when the app starts."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.engine.compiled import compilation_enabled, set_compilation
from app.io.bundle import Bundle
from app.web.factory import create_app
from app.web.settings import Settings


def test_compile_kernels_setting_is_applied_when_the_app_starts(tiny_bundle: Bundle) -> None:
    before = compilation_enabled()
    try:
        set_compilation(True)
        with TestClient(create_app(Settings(device="cpu", warmup=False, compile_kernels=False), bundle=tiny_bundle), base_url="http://localhost"):
            assert compilation_enabled() is False
        with TestClient(create_app(Settings(device="cpu", warmup=False), bundle=tiny_bundle), base_url="http://localhost"):
            assert compilation_enabled() is True
    finally:
        set_compilation(before)


def test_compile_kernels_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGU_COMPILE_KERNELS", "false")
    assert Settings().compile_kernels is False
    monkeypatch.setenv("SEGU_COMPILE_KERNELS", "true")
    assert Settings().compile_kernels is True
