"""The persistent cache of compiled programs (model.compile_cache): where it is kept, how it is turned off, and
no cache where it cannot be."""

import os

import jax
import pytest

from model import compile_cache

KEYS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes")


@pytest.fixture
def restored_config(monkeypatch):
    old = {k: getattr(jax.config, k) for k in KEYS}
    for k in KEYS:
        monkeypatch.delenv(k.upper(), raising=False)  # restored as it was when the test ends
    yield
    for k, v in old.items():
        jax.config.update(k, v)


def test_the_default_folder_is_created_and_every_program_is_cached(tmp_path, monkeypatch, restored_config):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    path = compile_cache.enable(tmp_path / "a" / "jax")
    assert path == tmp_path / "a" / "jax" and path.is_dir()
    assert jax.config.jax_compilation_cache_dir == str(path)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == 0
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(path)  # inherited by processes started from here


def test_the_environment_names_the_folder_or_turns_the_cache_off(tmp_path, monkeypatch, restored_config):
    before = jax.config.jax_compilation_cache_dir
    for off in ("off", "0", "False"):
        monkeypatch.setenv(compile_cache.ENV, off)
        assert compile_cache.enable(tmp_path / "unused") is None
    assert jax.config.jax_compilation_cache_dir == before and not (tmp_path / "unused").exists()
    assert "JAX_COMPILATION_CACHE_DIR" not in os.environ
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "chosen"))
    assert compile_cache.enable(tmp_path / "unused") == tmp_path / "chosen"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "chosen")


def test_an_uncreatable_folder_means_no_cache(tmp_path, monkeypatch, restored_config):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    before = jax.config.jax_compilation_cache_dir
    assert compile_cache.enable(blocker / "jax") is None
    assert jax.config.jax_compilation_cache_dir == before


def test_the_user_folder_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.user_folder() == tmp_path / "lora-attn" / "jax"
