"""Copy the files of examples/sslkit-timeseries into docs/plugins.md's worked example.

    python scripts/sync_docs_example.py

tests/examples/test_docs_example.py fails when the page and the files disagree.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ["pyproject.toml", "ssl_timeseries/plugin.py", "ssl_timeseries/model.py", "ssl_timeseries/data.py",
         "tests/test_timeseries.py"]
START, END = "<!-- worked-example:start -->", "<!-- worked-example:end -->"


def main() -> None:
    page_path = ROOT / "docs" / "plugins.md"
    page = page_path.read_text(encoding="utf-8")
    head, rest = page.split(START)
    _, tail = rest.split(END)
    blocks = []
    for rel in FILES:
        text = (ROOT / "examples" / "sslkit-timeseries" / rel).read_text(encoding="utf-8")
        lang = "toml" if rel.endswith(".toml") else "python"
        blocks.append(f"#### `examples/sslkit-timeseries/{rel}`\n\n```{lang}\n{text}```\n")
    page_path.write_text(head + START + "\n\n" + "\n".join(blocks) + "\n" + END + tail, encoding="utf-8")


if __name__ == "__main__":
    main()
