"""settings.from_env: PF_* parsing, defaults and fail-fast errors naming the variable."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from shared import settings
from shared.errors import ConfigError
from shared.settings import Settings


def test_empty_environment_gives_the_documented_defaults() -> None:
    assert settings.from_env({}) == Settings()


def test_defaults_keep_state_under_var() -> None:
    loaded = settings.from_env({})
    assert loaded.var_dir == Path("var")
    assert loaded.database.url == "sqlite:///var/punchingfist.db"
    assert loaded.broker.url == "sqla+sqlite:///var/broker.db"
    assert loaded.config_dir is None
    assert loaded.kubernetes_secrets is False


def test_var_dir_moves_the_default_database_and_broker(tmp_path: Path) -> None:
    loaded = settings.from_env({"PF_VAR_DIR": str(tmp_path)})
    assert loaded.var_dir == tmp_path
    assert loaded.database.url == f"sqlite:///{tmp_path}/punchingfist.db"
    assert loaded.broker.url == f"sqla+sqlite:///{tmp_path}/broker.db"


def test_explicit_urls_win_over_var_dir(tmp_path: Path) -> None:
    loaded = settings.from_env(
        {
            "PF_VAR_DIR": str(tmp_path),
            "PF_DATABASE_URL": "postgresql://pf@db/pf",
            "PF_BROKER_URL": "redis://broker:6379/0",
        }
    )
    assert loaded.database.url == "postgresql://pf@db/pf"
    assert loaded.broker.url == "redis://broker:6379/0"


@pytest.mark.parametrize(
    ("variable", "raw", "read", "expected"),
    [
        ("PF_SQLITE_BUSY_TIMEOUT", "2.5", lambda s: s.database.sqlite_busy_timeout, 2.5),
        ("PF_DATABASE_POOL_SIZE", "12", lambda s: s.database.pool_size, 12),
        ("PF_BROKER_PUBLISH_TIMEOUT", "0.25", lambda s: s.broker.publish_timeout, 0.25),
        ("PF_BROKER_PUBLISH_BACKOFF", "0", lambda s: s.broker.publish_backoff, 0.0),
        ("PF_BROKER_PUBLISH_BACKOFF", "7.5", lambda s: s.broker.publish_backoff, 7.5),
        ("PF_INGEST_BIND", "0.0.0.0:9000", lambda s: s.ingest.bind, "0.0.0.0:9000"),
        ("PF_INGEST_MAX_BODY_BYTES", "1024", lambda s: s.ingest.max_body_bytes, 1024),
        ("PF_INGEST_WORKERS", " 4 ", lambda s: s.ingest.workers, 4),
        ("PF_RESOURCE_REFRESH_SECONDS", "0", lambda s: s.ingest.resource_refresh_seconds, 0.0),
        ("PF_OUTBOX_RELAY_INTERVAL", "0.1", lambda s: s.outbox.relay_interval, 0.1),
        ("PF_OUTBOX_LEASE_SECONDS", "60", lambda s: s.outbox.lease_seconds, 60.0),
        ("PF_OUTBOX_BATCH_SIZE", "1", lambda s: s.outbox.batch_size, 1),
        ("PF_SECRETS_DIR", "/run/secrets", lambda s: s.secrets_dir, Path("/run/secrets")),
        ("PF_CONFIG_DIR", "deploy/config", lambda s: s.config_dir, Path("deploy/config")),
        ("PF_LOG_LEVEL", "DEBUG", lambda s: s.log_level, "DEBUG"),
        ("PF_LOG_LEVEL", " WARNING ", lambda s: s.log_level, "WARNING"),
        ("PF_LOG_FORMAT", "text", lambda s: s.log_format, "text"),
        (
            "PF_DATABASE_URL",
            "sqlite:////data/pf.db",
            lambda s: s.database.url,
            "sqlite:////data/pf.db",
        ),
        (
            "PF_DATABASE_URL",
            "postgresql+psycopg2://pf@db/pf",
            lambda s: s.database.url,
            "postgresql+psycopg2://pf@db/pf",
        ),
        (
            "PF_BROKER_URL",
            "rediss://broker:6380/1",
            lambda s: s.broker.url,
            "rediss://broker:6380/1",
        ),
        ("PF_BROKER_URL", "amqp://guest@mq//", lambda s: s.broker.url, "amqp://guest@mq//"),
        ("PF_BROKER_URL", "memory://", lambda s: s.broker.url, "memory://"),
        ("PF_ENGINE_LOCAL_RUNNER", "false", lambda s: s.engine.local_runner, False),
        ("PF_ENGINE_KUBERNETES_NAMESPACE", "jobs", lambda s: s.engine.kubernetes_namespace, "jobs"),
        (
            "PF_ENGINE_JOB_REQUESTS",
            "cpu=50m, memory=64Mi",
            lambda s: s.engine.job_requests,
            (("cpu", "50m"), ("memory", "64Mi")),
        ),
        ("PF_ENGINE_JOB_LIMITS", "memory=1Gi", lambda s: s.engine.job_limits, (("memory", "1Gi"),)),
        ("PF_ENGINE_JOB_RUN_AS_USER", "0", lambda s: s.engine.job_run_as_user, 0),
        (
            "PF_API_TOKEN_FILE",
            "/run/secrets/api/token",
            lambda s: s.ingest.api_token_file,
            Path("/run/secrets/api/token"),
        ),
        ("PF_RETENTION_DAYS", "7", lambda s: s.retention.days, 7),
        ("PF_RETENTION_DAYS", "0", lambda s: s.retention.days, 0),
        ("PF_RETENTION_INTERVAL", "60", lambda s: s.retention.interval, 60.0),
        ("PF_RETENTION_BATCH_SIZE", "50", lambda s: s.retention.batch_size, 50),
    ],
)
def test_reads_each_variable(
    variable: str, raw: str, read: Callable[[Settings], object], expected: object
) -> None:
    loaded = settings.from_env({variable: raw})
    assert read(loaded) == expected
    assert type(read(loaded)) is type(expected)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_kubernetes_secrets_boolean(raw: str, expected: bool) -> None:
    assert settings.from_env({"PF_KUBERNETES_SECRETS": raw}).kubernetes_secrets is expected


@pytest.mark.parametrize(
    "variable",
    ["PF_INGEST_WORKERS", "PF_LOG_LEVEL", "PF_DATABASE_URL", "PF_KUBERNETES_SECRETS", "PF_VAR_DIR"],
)
def test_empty_value_means_default(variable: str) -> None:
    assert settings.from_env({variable: ""}) == Settings()


PARSE_ERRORS = [
    # negative or zero where a positive number is needed
    ("PF_SQLITE_BUSY_TIMEOUT", "0", "greater than zero"),
    ("PF_SQLITE_BUSY_TIMEOUT", "-1.5", "greater than zero"),
    ("PF_DATABASE_POOL_SIZE", "0", "greater than zero"),
    ("PF_BROKER_PUBLISH_TIMEOUT", "-0.1", "greater than zero"),
    ("PF_INGEST_MAX_BODY_BYTES", "-1", "greater than zero"),
    ("PF_INGEST_WORKERS", "0", "greater than zero"),
    ("PF_OUTBOX_RELAY_INTERVAL", "0", "greater than zero"),
    ("PF_OUTBOX_LEASE_SECONDS", "-10", "greater than zero"),
    ("PF_OUTBOX_BATCH_SIZE", "-200", "greater than zero"),
    ("PF_RETENTION_INTERVAL", "0", "greater than zero"),
    ("PF_RETENTION_BATCH_SIZE", "0", "greater than zero"),
    # negative where zero is allowed
    ("PF_BROKER_PUBLISH_BACKOFF", "-1", "must not be negative"),
    ("PF_RESOURCE_REFRESH_SECONDS", "-0.5", "must not be negative"),
    ("PF_RETENTION_DAYS", "-1", "must not be negative"),
    ("PF_RETENTION_DAYS", "30d", "invalid literal"),
    # not a number, or not an integer
    ("PF_SQLITE_BUSY_TIMEOUT", "thirty", "could not convert"),
    ("PF_DATABASE_POOL_SIZE", "5.0", "invalid literal"),
    ("PF_DATABASE_POOL_SIZE", "five", "invalid literal"),
    ("PF_BROKER_PUBLISH_TIMEOUT", "1s", "could not convert"),
    ("PF_BROKER_PUBLISH_BACKOFF", "soon", "could not convert"),
    ("PF_INGEST_MAX_BODY_BYTES", "10MiB", "invalid literal"),
    ("PF_INGEST_WORKERS", "2.5", "invalid literal"),
    ("PF_RESOURCE_REFRESH_SECONDS", "2 s", "could not convert"),
    ("PF_OUTBOX_RELAY_INTERVAL", "fast", "could not convert"),
    ("PF_OUTBOX_LEASE_SECONDS", "  ", "could not convert"),
    ("PF_OUTBOX_BATCH_SIZE", "1e3", "invalid literal"),
    # not one of the choices
    ("PF_KUBERNETES_SECRETS", "maybe", "true or false"),
    ("PF_KUBERNETES_SECRETS", "2", "true or false"),
    ("PF_LOG_LEVEL", "info", "one of DEBUG, INFO, WARNING, ERROR"),
    ("PF_LOG_LEVEL", "TRACE", "one of DEBUG, INFO, WARNING, ERROR"),
    ("PF_LOG_FORMAT", "xml", "one of json, text"),
    ("PF_ENGINE_LOCAL_RUNNER", "sometimes", "true or false"),
    ("PF_ENGINE_JOB_REQUESTS", "gpu=1", "'gpu' is not one of cpu, memory"),
    ("PF_ENGINE_JOB_LIMITS", "memory=lots", "'lots' is not a quantity"),
]
URL_ERRORS = [
    # schemes the services cannot use
    ("PF_DATABASE_URL", "mysql://pf@db/pf", "sqlite:///PATH or postgresql://"),
    ("PF_DATABASE_URL", "postgres://pf@db/pf", "sqlite:///PATH or postgresql://"),
    ("PF_DATABASE_URL", "/var/pf.db", "sqlite:///PATH or postgresql://"),
    ("PF_BROKER_URL", "http://broker:6379", "redis://HOST:PORT/DB"),
    ("PF_BROKER_URL", "redis:broker", "redis://HOST:PORT/DB"),
    ("PF_BROKER_URL", "sqlite:///var/broker.db", "redis://HOST:PORT/DB"),
]


@pytest.mark.parametrize(("variable", "raw", "problem"), PARSE_ERRORS + URL_ERRORS)
def test_bad_value_raises_config_error_naming_the_variable(
    variable: str, raw: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        settings.from_env({variable: raw})
    message = str(caught.value)
    assert message.startswith(f"{variable}={raw!r}: ")
    assert problem in message


@pytest.mark.parametrize(("variable", "raw", "problem"), PARSE_ERRORS)
def test_parse_errors_chain_their_cause(variable: str, raw: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings.from_env({variable: raw})
    assert isinstance(caught.value.__cause__, ValueError)


def test_bad_variable_is_named_among_valid_ones() -> None:
    env = {"PF_INGEST_WORKERS": "4", "PF_OUTBOX_BATCH_SIZE": "zero", "PF_LOG_FORMAT": "text"}
    with pytest.raises(ConfigError, match=r"^PF_OUTBOX_BATCH_SIZE="):
        settings.from_env(env)


def test_ignores_variables_without_the_prefix() -> None:
    assert settings.from_env({"DATABASE_URL": "mysql://x", "INGEST_WORKERS": "-1"}) == Settings()


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("PF_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PF_INGEST_WORKERS", "7")
    assert settings.from_env().ingest.workers == 7
    monkeypatch.setenv("PF_INGEST_WORKERS", "-7")
    with pytest.raises(ConfigError, match="PF_INGEST_WORKERS"):
        settings.from_env()


@pytest.mark.parametrize(
    "variable", ["PF_SQLITE_BUSY_TIMEOUT", "PF_OUTBOX_RELAY_INTERVAL", "PF_BROKER_PUBLISH_BACKOFF"]
)
def test_nan_is_rejected(variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        settings.from_env({variable: "nan"})


@pytest.mark.parametrize(
    ("name", "group", "field"),
    [
        ("PF_ENGINE_METRICS_BIND", "engine", "metrics_bind"),
        ("PF_NOTIFIER_METRICS_BIND", "notifier", "metrics_bind"),
        ("PF_CONTROLLER_METRICS_BIND", "controller", "metrics_bind"),
        ("PF_SCHEDULER_METRICS_BIND", "engine", "scheduler_metrics_bind"),
    ],
)
def test_metrics_binds_are_off_by_default_and_checked(name: str, group: str, field: str) -> None:
    assert getattr(getattr(settings.from_env({}), group), field) == ""
    given = settings.from_env({name: "0.0.0.0:9100"})
    assert getattr(getattr(given, group), field) == "0.0.0.0:9100"
    assert settings.split_host_port("[::]:9100") == ("::", 9100)
    for wrong in ("9100", "0.0.0.0:", "0.0.0.0:port", ":9100", "host:70000"):
        with pytest.raises(ConfigError, match=name):
            settings.from_env({name: wrong})
