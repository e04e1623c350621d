"""The model registry: immutable numbered versions, idempotent registration, the production alias and its
history, and the `models` command. Real files throughout; the model file's bytes do not matter here."""

from __future__ import annotations

import json
import stat

import pytest

from cloud_tasks.cli import main
from cloud_tasks.errors import CloudTasksError
from cloud_tasks.layout import ModelFiles
from cloud_tasks.registry import ModelRegistry


def finished_run(folder, content: bytes = b"model bytes") -> ModelFiles:
    files = ModelFiles(folder)
    folder.mkdir(parents=True)
    files.model.write_bytes(content)
    files.params.write_text(json.dumps({"parameters": {"label": "bayes"}}))
    files.history_csv.write_text("epoch,loss\n0,0.5\n")
    return files


def card(staged: ModelFiles) -> None:
    staged.metrics.write_text(json.dumps({"candidate": {"accuracy": 0.93}}))
    staged.card.write_text("# card\n")


def register(registry, folder, key):
    return registry.register(finished_run(folder), key=key, info={"model_sha256": key * 2}, write_extras=card)


def test_versions_are_numbered_immutable_and_registered_once_per_key(tmp_path):
    registry = ModelRegistry(tmp_path / "data")
    first = register(registry, tmp_path / "a", "key-a")
    assert first.name == "v1" and first.info["key"] == "key-a" and first.sha256 == "key-akey-a"
    assert register(registry, tmp_path / "a2", "key-a").name == "v1", "the same run registered twice"
    second = register(registry, tmp_path / "b", "key-b")
    assert [v.name for v in registry.versions()] == ["v1", "v2"] and second.name == "v2"
    for path in second.files.folder.iterdir():
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), f"{path.name} is writable"
    assert second.files.model.read_bytes() == b"model bytes" and second.files.metrics.is_file()
    assert not any(p.name.startswith(".") for p in registry.files.versions.iterdir()), "a temporary left behind"


def test_an_unfinished_run_is_not_registered(tmp_path):
    registry = ModelRegistry(tmp_path / "data")
    (tmp_path / "run").mkdir()
    with pytest.raises(CloudTasksError, match="no finished training run"):
        registry.register(ModelFiles(tmp_path / "run"), key="k", info={}, write_extras=card)
    assert registry.versions() == []


def test_promotion_moves_the_alias_and_keeps_a_history(tmp_path):
    registry = ModelRegistry(tmp_path / "data")
    with pytest.raises(CloudTasksError, match="no day model has been promoted"):
        registry.version("production")
    register(registry, tmp_path / "a", "key-a")
    register(registry, tmp_path / "b", "key-b")
    registry.promote("v1", reason="first", by="alice")
    assert registry.version("production").name == "v1"
    registry.promote("v2", reason="better F1", by="bob")
    assert registry.production_name() == "v2"
    history = registry.promotions()
    assert [(h["version"], h["by"], h["reason"], h["previous"]) for h in history] == [
        ("v1", "alice", "first", None),
        ("v2", "bob", "better F1", "v1"),
    ]
    with pytest.raises(CloudTasksError, match="no registered model version v7"):
        registry.promote("v7")
    with pytest.raises(CloudTasksError, match="is not a model version"):
        registry.version("../v1")
    assert registry.production_name() == "v2", "a refused promotion changed the alias"


def test_models_command_lists_shows_and_promotes(tmp_path, capsys):
    data = tmp_path / "data"
    registry = ModelRegistry(data)
    register(registry, tmp_path / "a", "key-a")
    register(registry, tmp_path / "b", "key-b")
    assert main(["models", "promote", str(data), "v2", "--reason", "best so far", "--by", "carol"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "v2"
    assert main(["models", "list", str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["v1", "*"] and "v2" in lines[1] and "0.93" in lines[1]
    assert main(["models", "show", str(data), "production"]) == 0
    shown = capsys.readouterr().out
    assert '"version": "v2"' in shown and "# card" in shown
    assert main(["models", "promote", str(data), "v9"]) == 2
    assert "error: " in capsys.readouterr().err


def test_each_model_kind_has_its_own_production_alias(tmp_path):
    registry = ModelRegistry(tmp_path / "data")
    day = register(registry, tmp_path / "a", "key-a")
    thermal = registry.register(
        finished_run(tmp_path / "t"), key="key-t", info={"model_sha256": "t" * 64, "kind": "thermal"}, write_extras=card
    )
    registry.promote(day.name)
    registry.promote(thermal.name)
    assert registry.version("production").name == "v1" and registry.version("production", "thermal").name == "v2"
    assert registry.files.production("thermal") != registry.files.production("day")
    assert [p["kind"] for p in registry.promotions()] == ["day", "thermal"]
    with pytest.raises(CloudTasksError, match="model kind must be one of"):
        registry.production_name("infrared")
