"""`make run` with a local.settings.json from before a feature's setting existed."""

from __future__ import annotations

import json
from pathlib import Path

from localdev.run import add_missing_settings

ROOT = Path(__file__).resolve().parents[2]


def test_settings_the_example_has_are_added_and_what_is_set_stays(tmp_path: Path) -> None:
    example = ROOT / "local.settings.example.json"
    values = json.loads(example.read_text(encoding="utf-8-sig"))["Values"]
    assert "SYNC_SCHEDULE" in values
    older = {k: v for k, v in values.items() if k not in ("SYNC_SCHEDULE", "SYNC_CHUNK_SIZE")}
    older["MAIL_DROP_DIR"] = "/somewhere/of/mine"
    target = tmp_path / "local.settings.json"
    target.write_text(json.dumps({"IsEncrypted": False, "Values": older}))

    assert add_missing_settings(target, example) == ["SYNC_CHUNK_SIZE", "SYNC_SCHEDULE"]
    now = json.loads(target.read_text())
    assert now["Values"]["SYNC_SCHEDULE"] == values["SYNC_SCHEDULE"]
    assert now["Values"]["MAIL_DROP_DIR"] == "/somewhere/of/mine"
    assert now["IsEncrypted"] is False
    assert add_missing_settings(target, example) == []  # nothing more to add
