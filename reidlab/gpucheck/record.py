"""The GPU check's record: `gpucheck_<device>.json` and `.md`, both rewritten whenever a part adds a row, so a
check stopped at any point still leaves what it measured. Each part renders its own Markdown section."""
from __future__ import annotations

import json
import re
from pathlib import Path


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class Record:
    """`data`: the machine and versions at the top level, each part's fields under data["parts"][name].
    `parts`: the part modules, whose `render(fields)` gives their Markdown lines."""

    def __init__(self, paths: list[Path], meta: dict, parts):
        self.paths, self.parts, self.data = paths, parts, {**meta, "parts": {}}

    def part(self, name: str, **fields) -> None:
        self.data["parts"].setdefault(name, {}).update(fields)
        self.write()

    def note(self, **fields) -> None:
        """Top-level facts (the data used, the weights), shown in the Markdown's first paragraph."""
        self.data.update(fields)
        self.write()

    def write(self) -> None:
        markdown = render_markdown(self.data, self.parts)
        for base in self.paths:
            base.parent.mkdir(parents=True, exist_ok=True)
            base.with_suffix(".json").write_text(json.dumps(self.data, indent=2, default=str) + "\n")
            base.with_suffix(".md").write_text(markdown)


def render_markdown(data: dict, parts) -> str:
    """The header, one status line per part run so far, then each part's own section."""
    lines = [f"# GPU check: {data['device']}", "",
             f"`{data['command']}`, {data['started']}; torch {data['torch']}, CUDA {data['cuda']}, "
             f"{data['cpus']} CPU cores; data: {data.get('data', '?')}; MobileNetV2 weights: "
             f"{data.get('weights', '?')}.", ""]
    if data.get("note"):
        lines += [f"Note: {data['note']}.", ""]
    lines += ["| part | status | seconds |", "|---|---|---|"]
    lines += [f"| {k} | {v.get('status', '?')}{': ' + v['error'] if v.get('error') else ''} | {v.get('seconds', '')} |"
              for k, v in data["parts"].items()]
    for part in parts:
        if part.NAME in data["parts"]:
            lines += part.render(data["parts"][part.NAME])
    return "\n".join(lines) + "\n"
