"""docs/crm.md's import examples are what the box does: its two JSON-lines files, imported with
`footfall members import` and `footfall appointments import`, give the output the page shows."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from footfall.cli.main import main

PAGE = Path(__file__).resolve().parents[2] / "docs" / "crm.md"


def example(name: str) -> str:
    """The JSON-lines block the page shows under `name`."""
    found = re.search(rf"^`{re.escape(name)}`:\n\n```json\n(.*?)```", PAGE.read_text(), re.MULTILINE | re.DOTALL)
    assert found, f"docs/crm.md shows no {name}"
    return found.group(1)


def shown_output() -> list[str]:
    """The output block that follows the two examples."""
    text = PAGE.read_text()
    block = text[text.index("The two\nfiles above, imported"):]
    return block[block.index("```\n") + 4:block.index("\n```", block.index("```\n") + 4)].splitlines()


def test_the_import_examples_of_the_crm_page_give_the_output_it_shows(tmp_path, faces_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    photos = tmp_path / "photos" / "M-2001"
    photos.mkdir(parents=True)
    for name in ("1.jpg", "2.jpg"):  # the paths the example names, relative to the file
        shutil.copy(faces_dir / "deepface_p07" / name, photos / name)
    config = tmp_path / "footfall.toml"
    config.write_text(f'store_id = "sh-001"\ntimezone = "Asia/Shanghai"\n[storage]\ndir = "{tmp_path / "state"}"\n')
    (tmp_path / "members.jsonl").write_text(example("members.jsonl"))
    (tmp_path / "appointments.jsonl").write_text(example("appointments.jsonl"))

    said = []
    for kind in ("members", "appointments"):
        assert main([kind, "import", "--config", str(config), f"{kind}.jsonl"]) == 1, "a line was skipped"
        out = capsys.readouterr()
        # stderr holds the progress bar too, on the same lines: only the skipped-line reports count
        said += re.findall(rf"{kind}\.jsonl:\d+: skipped: [^\r\n]*", out.err) + out.out.splitlines()
    assert said == shown_output()
