"""The model registry on the data root: numbered, immutable model versions and a ``production`` alias.

A training run (the training DAG, or ``train`` by hand) works in ``registry/training/<key>/``; when it
is finished, ``models register`` scores it on held-out products (and the production model on the same
products), writes its metrics and model card, and copies it into the next version folder ``vN``, read-only.
The same training key registered twice gives the same version. A person promotes a version with
``models promote``: the alias file is replaced atomically and the promotion appended to a history.

CLI::

    python -m cloud_tasks models list DATA_ROOT
    python -m cloud_tasks models show DATA_ROOT VERSION|production [--kind day|thermal]
    python -m cloud_tasks models promote DATA_ROOT VERSION [--reason TEXT]
    python -m cloud_tasks models register DATA_ROOT TRAINING_DIR --key KEY [--holdout H5 ...]
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cloud_tasks.atomic import atomic_dir, write_json
from cloud_tasks.errors import CloudTasksError, InputError
from cloud_tasks.layout import DataRoot, ModelFiles, RegistryFiles

PRODUCTION = "production"
KINDS = ("day", "thermal")  # model kinds: 9 channels by day; brightness temperatures at night and in twilight
UNREGISTERED = "unregistered"  # the version recorded for a model outside the registry
VERSION_RE = re.compile(r"^v([1-9][0-9]{0,5})$")
MODEL_NAME_PATTERN = r"^(production|v[1-9][0-9]{0,5})$"  # what a run's `model` Param may name
NO_MODEL = "none"  # a run's `thermal_model` Param: mask by day only
OPTIONAL_MODEL_NAME_PATTERN = r"^(production|none|v[1-9][0-9]{0,5})$"  # what a run's `thermal_model` may name
COPIED = ("model", "params", "history_csv", "history_json", "curves")  # ModelFiles entries a version keeps


@dataclass(frozen=True)
class Version:
    """A registered model version, as ``version.json`` describes it."""

    name: str
    files: ModelFiles
    info: dict

    @property
    def sha256(self) -> str:
        return self.info["model_sha256"]

    @property
    def kind(self) -> str:
        return self.info.get("kind", KINDS[0])


class ModelRegistry:
    """Versions, the production alias and promotions under one data root's registry folder."""

    def __init__(self, data_root: str | Path):
        self.files: RegistryFiles = DataRoot(data_root).registry

    def versions(self) -> list[Version]:
        """Every registered version, oldest first."""
        if not self.files.versions.is_dir():
            return []
        names = [p.name for p in self.files.versions.iterdir() if VERSION_RE.match(p.name)]
        return [self.version(name) for name in sorted(names, key=lambda n: int(VERSION_RE.match(n)[1]))]

    def version(self, name: str, kind: str = KINDS[0]) -> Version:
        """The version ``name`` (``vN``) or the one the ``kind``'s ``production`` alias names; an error if none."""
        if name == PRODUCTION:
            name = self.production_name(kind)
            if name is None:
                raise CloudTasksError(f"{self.files.folder}: no {kind} model has been promoted to production yet")
        if not VERSION_RE.match(name):
            raise CloudTasksError(f"{name!r} is not a model version (v1, v2, ...) nor {PRODUCTION!r}")
        files = self.files.version(name)
        if not files.version_info.is_file() or not files.model.is_file():
            raise InputError(files.folder, f"no registered model version {name}")
        return Version(name, files, _read_json(files.version_info))

    def production_name(self, kind: str = KINDS[0]) -> str | None:
        if kind not in KINDS:
            raise CloudTasksError(f"model kind must be one of {', '.join(KINDS)}, not {kind!r}")
        path = self.files.production(kind)
        return _read_json(path)["version"] if path.is_file() else None

    def promotions(self) -> list[dict]:
        if not self.files.promotions.is_file():
            return []
        return [json.loads(line) for line in self.files.promotions.read_text().splitlines() if line.strip()]

    def register(self, training: ModelFiles, *, key: str, info: dict, write_extras) -> Version:
        """Copy a finished training run into the next version (or return the version it already became).

        ``write_extras(folder)`` writes the version's own files (metrics, model card) into the new folder
        before it appears under its final name.
        """
        if not training.model.is_file():
            raise InputError(training.folder, "holds no finished training run (no model file)")
        with self._locked():
            for version in self.versions():
                if version.info.get("key") == key:
                    return version
            numbers = [int(VERSION_RE.match(v.name)[1]) for v in self.versions()]
            name = f"v{max(numbers, default=0) + 1}"
            final = self.files.version(name)
            with atomic_dir(final.folder) as tmp:
                staged = ModelFiles(tmp)
                for entry in COPIED:
                    if getattr(training, entry).is_file():
                        shutil.copy2(getattr(training, entry), getattr(staged, entry))
                write_extras(staged)
                write_json(staged.version_info, {**info, "version": name, "key": key})
                _make_read_only(tmp)
        return self.version(name)

    def promote(self, name: str, *, reason: str = "", by: str | None = None) -> dict:
        """Make version ``name`` the production model of its kind; the alias is replaced atomically, the
        promotion logged."""
        version = self.version(name)
        record = {
            "version": version.name,
            "kind": version.kind,
            "model_sha256": version.sha256,
            "promoted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "by": by or _user(),
            "reason": reason,
            "previous": self.production_name(version.kind),
        }
        with self._locked():
            with self.files.promotions.open("a") as history:
                history.write(json.dumps(record, sort_keys=True) + "\n")
                history.flush()
                os.fsync(history.fileno())
            write_json(self.files.production(version.kind), record)
        return record

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time (registrations and promotions from concurrent runs or people)."""
        self.files.folder.mkdir(parents=True, exist_ok=True)
        with self.files.lock.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def registered_version(model: str | Path) -> str | None:
    """The version name of a registered model file (from its folder's ``version.json``); None if unregistered."""
    info = ModelFiles(Path(model).parent).version_info
    try:
        name = json.loads(info.read_text()).get("version") if info.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and VERSION_RE.match(name) else None


def _make_read_only(folder: Path) -> None:
    for path in folder.iterdir():
        path.chmod(0o444)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot be read as JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError(path, "is not a JSON object")
    return value


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def register(subparsers) -> None:
    """Add the ``models`` sub-command and its verbs."""
    parser = subparsers.add_parser("models", help="list, show, register and promote model versions")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="the registered versions, the production one marked")
    listing.add_argument("data_root", metavar="DATA_ROOT")
    show = verbs.add_parser("show", help="a version's provenance, metrics and model card")
    show.add_argument("data_root", metavar="DATA_ROOT")
    show.add_argument("version", metavar="VERSION", help=f"vN or {PRODUCTION}")
    show.add_argument("--kind", choices=KINDS, default=KINDS[0], help=f"the model kind whose {PRODUCTION} to show")
    promote = verbs.add_parser("promote", help="make a version the production model")
    promote.add_argument("data_root", metavar="DATA_ROOT")
    promote.add_argument("version", metavar="VERSION")
    promote.add_argument("--reason", default="", help="why (kept in the promotion history)")
    promote.add_argument("--by", default=None, help="who promotes (default: the user running the command)")
    add = verbs.add_parser("register", help="score a finished training run on held-out products and register it")
    add.add_argument("data_root", metavar="DATA_ROOT")
    add.add_argument("training", metavar="TRAINING_DIR", help="the training run's output folder")
    add.add_argument("--key", required=True, help="the run's key: registering the same key again is a no-op")
    add.add_argument("--inputs", nargs="+", required=True, metavar="HDF", help="the training inputs")
    add.add_argument("--holdout", nargs="+", metavar="HDF", help="held-out products (default: training's test set)")
    add.add_argument("--start", default=None, help="training period start (recorded)")
    add.add_argument("--end", default=None, help="training period end, exclusive (recorded)")
    parser.set_defaults(func=run_cli)


def run_cli(args) -> None:
    registry = ModelRegistry(args.data_root)
    if args.verb == "list":
        production = {registry.production_name(kind) for kind in KINDS}
        for version in registry.versions():
            accuracy = _read_json(version.files.metrics)["candidate"].get("accuracy")
            mark = "*" if version.name in production else " "
            period = version.info.get("period") or {}
            print(
                f"{mark} {version.name:6s} {version.kind:8s} {version.info.get('registered_at', '')}  "
                f"accuracy {accuracy}  period {period.get('start')}..{period.get('end')}  "
                f"label {version.info.get('label')}"
            )
    elif args.verb == "show":
        version = registry.version(args.version, args.kind)
        print(json.dumps({"version": version.name, **version.info}, indent=2, sort_keys=True))
        print(version.files.card.read_text())
    elif args.verb == "promote":
        print(json.dumps(registry.promote(args.version, reason=args.reason, by=args.by), indent=2, sort_keys=True))
    else:
        _register_cli(args)


def _register_cli(args) -> None:
    from cloud_tasks.ml.registration import held_out, register_training
    from cloud_tasks.paths import expand_inputs

    training = ModelFiles(args.training)
    holdout = expand_inputs(args.holdout, ".h5") if args.holdout else held_out(training, args.inputs)
    period = {key: value for key, value in (("start", args.start), ("end", args.end)) if value}
    version = register_training(args.data_root, training, key=args.key, holdout=holdout, period=period)
    print(version.name)
