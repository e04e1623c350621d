"""Security of the deployment: locked-down ML containers, no secret in the repository, secrets only from
the uncommitted ``docker/.env``.

Safe extraction (no path outside the output folder, no link followed, bounded disk use) is tested in
tests/test_extract.py.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker" / "docker-compose.yaml"
ENV_EXAMPLE = REPO / "docker" / "env.example"
SECRET_VARIABLES = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "POSTGRES_PASSWORD")

# ---------------------------------------------------------------- ML containers


@pytest.fixture(scope="module")
def dag():
    from airflow.models import DagBag

    return DagBag(dag_folder=str(REPO / "dags")).dags


# (DAG, ML task) -> what the step only reads, mounted read-only
ML_STEPS = {
    ("slstr_train_model", "train_kind.train"): ["/data/hdf", "/data/registry/training"],
    ("slstr_train_model", "train_kind.register"): [],
    ("slstr_cloud_mask", "mask"): ["/data/hdf/day", "/data/registry/versions/v1/model.keras"],
}


@pytest.mark.parametrize(("dag_id", "task_id"), ML_STEPS)
def test_ml_containers_of_the_dags_are_locked_down(dag, dag_id, task_id, monkeypatch):
    """The DockerOperator each ML task of the DAGs builds (with its templates rendered as a run would)."""
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "worker-secret")  # the worker's secrets stay on the worker
    monkeypatch.delenv("CLOUD_TASKS_CONTAINER_USER", raising=False)
    task = dag[dag_id].get_task(task_id)
    inputs = ML_STEPS[dag_id, task_id]
    step = copy.copy(task)
    step.arguments, step.data_root, step.runner, step.gpu, step.image = [task_id], "/data", "docker", True, "ml:1"
    step.read_only_mounts = inputs
    docker = step.docker_operator()

    assert docker.network_mode == "none"
    uid = docker.user.split(":")[0]
    assert uid not in ("0", "root", ""), f"container runs as {docker.user}"
    assert docker.privileged is False and not docker.cap_add and not docker.port_bindings and not docker.extra_hosts
    assert docker.ipc_mode in (None, "private", "none")
    assert set(docker.environment) <= {"PYTHONUNBUFFERED", "TF_CPP_MIN_LOG_LEVEL"}
    assert docker.env_file is None and not docker._private_environment
    writable = [m["Source"] for m in docker.mounts if not m.get("ReadOnly")]
    assert writable == ["/data"], "only the data root is writable"
    assert [m["Source"] for m in docker.mounts if m.get("ReadOnly")] == inputs, "inputs are mounted read-only"
    assert all("docker.sock" not in m["Source"] for m in docker.mounts)


def test_ml_image_runs_as_a_non_root_user():
    users = re.findall(r"^USER\s+(\S+)", (REPO / "docker" / "Dockerfile").read_text(), re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")


# ---------------------------------------------------------------- no secret in the repository

# A committed Fernet key of any origin is found by its shape (32 bytes, url-safe base64), which covers the
# defaults copied from tutorials and compose examples (81HqDtbq..., 46BKJoQY...). Only config-like files are
# checked for secret settings with a literal value (Python code assigns such names from the environment).
SECRETS = {
    "PEM private key": re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key": re.compile(r"aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}", re.I),
    "Fernet key": re.compile(r"(?<![\w-])[\w-]{43}=(?![\w=-])"),
    # a password in a URL, unless it is a placeholder: ${VAR}, {name} (f-string, format), %(name)s
    "password in a URL": re.compile(r"\w[\w+.-]*://[^/\s:@'\"]+:(?![$%]?[{(])[^@\s'\"/]+@"),
}
SECRET_SETTING = re.compile(
    r"^[\s-]*[\"']?([A-Z0-9_]*(?:FERNET_KEY|JWT_SECRET|SECRET_KEY|PASSWORD|TOKEN))[\"']?\s*[:=][ \t]*"
    r"(?!\$\{)[\"']?([^\s\"'#]+)",
    re.M,
)
CONFIG_FILE = re.compile(r"(\.(ya?ml|env|example|cfg|ini|toml|conf|sh|md|txt|json)|Dockerfile|Makefile|/\.env[^/]*)$")


def secrets_in(path: Path) -> list[str]:
    """What looks like a committed secret in one file, as 'kind: excerpt' lines."""
    data = path.read_bytes()
    if b"\0" in data:  # binary
        return []
    text = data.decode(errors="replace")
    found = [f"{kind}: {m.group(0)[:24]}" for kind, rx in SECRETS.items() for m in rx.finditer(text)]
    if CONFIG_FILE.search(str(path)):
        found += [f"secret setting: {m.group(1)}={m.group(2)[:8]}" for m in SECRET_SETTING.finditer(text)]
    return found


def repository_files() -> list[Path]:
    """Committed files and those that would be (untracked but not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [REPO / name for name in listed.stdout.decode().split("\0") if name and (REPO / name).is_file()]


def test_no_secret_is_committed():
    files = repository_files()
    assert COMPOSE in files and Path(__file__) in files
    found = {str(path.relative_to(REPO)): hits for path in files if (hits := secrets_in(path))}
    assert found == {}


def test_the_secret_scan_finds_real_secrets(tmp_path):
    """The scan is not vacuous: freshly made secrets of each kind are found."""
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    weak = "airflow"
    samples = {
        "key.pem": pem.decode(),
        "notes.py": f"key = {Fernet.generate_key().decode()!r}\naws = 'AKIA{'Q' * 16}'\n",
        "compose.yaml": f"POSTGRES_PASSWORD: {weak}\nURL: postgresql+psycopg2://airflow:{weak}@postgres/airflow\n",
        ".env": f"AIRFLOW__API_AUTH__JWT_SECRET={Fernet.generate_key().hex()}\n",
    }
    kinds = set()
    for name, text in samples.items():
        (tmp_path / name).write_text(text)
        kinds |= {hit.split(":")[0] for hit in secrets_in(tmp_path / name)}
    assert kinds == {"PEM private key", "Fernet key", "AWS access key id", "password in a URL", "secret setting"}
    (tmp_path / "ok.yaml").write_text("POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set in docker/.env}\nPASSWORD=\n")
    assert secrets_in(tmp_path / "ok.yaml") == []


# ---------------------------------------------------------------- the compose deployment


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_secrets_come_from_the_uncommitted_env_file(compose):
    """The DB password is interpolated from docker/.env (compose refuses to start without it), the JWT secret
    and the Fernet key reach Airflow through ``env_file: .env``; env.example leaves all three blank, and
    docker/.env is ignored by git. (No literal secret anywhere: test_no_secret_is_committed.)"""
    assert "${POSTGRES_PASSWORD:?" in COMPOSE.read_text(), "compose must refuse to start without the DB password"
    for name, service in compose["services"].items():
        if name.startswith("airflow-"):
            assert service.get("env_file") == [".env"], name
    example = dict(re.findall(r"^([A-Z0-9_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.M))
    assert {name: example.get(name) for name in SECRET_VARIABLES} == dict.fromkeys(SECRET_VARIABLES, "")
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=REPO)
    tracked = subprocess.run(["git", "ls-files", "docker/.env"], cwd=REPO, capture_output=True, text=True)
    assert ignored.returncode == 0 and tracked.stdout == "", "docker/.env must be ignored and never committed"


READ_ONLY_TARGETS = re.compile(r":(/opt/airflow/dags|/opt/airflow/plugins|/neodc)(:|$)")


def test_compose_services_are_locked_down(compose):
    services = compose["services"]
    for name, service in services.items():
        assert not service.get("privileged") and service.get("network_mode") != "host", name
        volumes = [str(v) for v in service.get("volumes", [])]
        assert name == "airflow-worker" or not any("docker.sock" in v for v in volumes), name
        for volume in filter(READ_ONLY_TARGETS.search, volumes):
            assert volume.endswith(":ro"), f"{name}: {volume} must be read-only"
    published = sorted(name for name, service in services.items() if service.get("ports"))
    assert published == ["airflow-apiserver"], "the database and the broker must not be published"
