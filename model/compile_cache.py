"""A persistent cache of JAX's compiled programs, kept between processes and runs.

Every ``lora-attn`` command, every worker of ``--executor local`` and every process of ``paper_figs.py --jobs N``
compiles the same channel, prox and simulation programs (3–10 s of CPU each on the 2-core CPU,
``BENCHMARKS.md``). With :func:`enable` the first process to compile a program stores it in a folder and later
ones load it (the setting is also put in the environment, so processes started afterwards share it). A cached
program is the one XLA would compile again, so results are unchanged, bit for bit. Nothing here is needed for
correctness; a folder that cannot be created only means no cache.

Where: the environment variable :data:`ENV` names the folder (``off`` or ``0``: no cache); else the command line
uses ``$XDG_CACHE_HOME/lora-attn/jax`` (``~/.cache/lora-attn/jax``) and ``paper_figs.py`` ``<out>/cache/jax``.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

#: Environment variable that names the cache folder, or turns the cache off (``off``, ``0``, ``false``, ``no``).
ENV = "LORA_ATTN_COMPILE_CACHE"
OFF = ("off", "0", "false", "no")


def user_folder() -> Path:
    """``$XDG_CACHE_HOME/lora-attn/jax``, by default ``~/.cache/lora-attn/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lora-attn" / "jax"


def enable(default: str | Path) -> Path | None:
    """Store and reuse compiled programs (whatever their compile time or size) in the folder :data:`ENV` names,
    else in ``default`` (created if needed). Returns the folder, or ``None``: no cache (turned off, or the folder
    cannot be created)."""
    chosen = os.environ.get(ENV)
    if chosen is not None and chosen.strip().lower() in OFF:
        return None
    path = Path(chosen) if chosen else Path(default)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    settings = {"jax_compilation_cache_dir": str(path), "jax_persistent_cache_min_compile_time_secs": 0.0,
                "jax_persistent_cache_min_entry_size_bytes": 0}
    for name, value in settings.items():
        jax.config.update(name, value)
        os.environ[name.upper()] = str(value)  # processes started from here (a local pool's workers) share it
    return path
