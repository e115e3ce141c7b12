"""docs/plugins.md shows the time-series example plugin in full: the page and the files agree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sslkit-timeseries"
SHOWN = ["pyproject.toml", "ssl_timeseries/plugin.py", "ssl_timeseries/model.py", "ssl_timeseries/data.py",
         "tests/test_timeseries.py"]


def worked_example_blocks() -> dict[str, str]:
    page = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = page.split("<!-- worked-example:start -->")[1].split("<!-- worked-example:end -->")[0]
    pattern = r"#### `examples/sslkit-timeseries/([^`]+)`\n\n```\w+\n(.*?)```\n"
    return {m.group(1): m.group(2) for m in re.finditer(pattern, section, flags=re.S)}


def test_every_file_of_the_example_is_shown_verbatim() -> None:
    blocks = worked_example_blocks()
    assert sorted(blocks) == sorted(SHOWN)
    for rel in SHOWN:
        assert blocks[rel] == (EXAMPLE / rel).read_text(encoding="utf-8"), f"docs/plugins.md is out of date for {rel}"
