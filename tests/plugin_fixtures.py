"""Writing throw-away plugins into a folder found through BENCHMARK_PLUGINS."""
import textwrap
from pathlib import Path

import pytest

from benchmark import registry


def write_plugin(root: Path, kind_folder: str, stem: str, source: str) -> Path:
    folder = root / kind_folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.py"
    path.write_text(textwrap.dedent(source))
    registry.forget()
    return path


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder searched for extra plugins, in this process and in the processes it starts."""
    root = tmp_path / "plugins"
    root.mkdir()
    monkeypatch.setenv(registry.PLUGIN_PATH_VARIABLE, str(root))
    registry.forget()
    yield root
    registry.forget()
