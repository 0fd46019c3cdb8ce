"""Settings read once from the environment at start-up.

Every knob has the ``PF_`` prefix and is parsed, validated and grouped here, so that a
bad value stops the process with a message naming the variable instead of failing on
first use. No other module reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from shared.errors import ConfigError

T = TypeVar("T")

DEFAULT_VAR_DIR = Path("var")


@dataclasses.dataclass(frozen=True)
class DatabaseSettings:
    # SQLite under ./var by default so that `make run` needs nothing installed.
    url: str = f"sqlite:///{DEFAULT_VAR_DIR}/punchingfist.db"
    # Seconds a writer waits for SQLite's lock before giving up; generous because
    # several sync gunicorn workers share one file.
    sqlite_busy_timeout: float = 30.0
    # Connections kept per process and pool (PostgreSQL); sync workers use one at a
    # time. An engine process has two pools (a step's read and write in autocommit).
    pool_size: int = 5


@dataclasses.dataclass(frozen=True)
class BrokerSettings:
    # Celery broker. The embedded default is kombu's SQLAlchemy transport on a SQLite
    # file, so that several processes can share queues with no server installed.
    url: str = f"sqla+sqlite:///{DEFAULT_VAR_DIR}/broker.db"
    # Seconds to wait for a broker connection while publishing from a request. Short:
    # the outbox relay retries anything that was not published.
    publish_timeout: float = 1.0
    # Seconds to stop publishing from requests after a failure; the relay takes over.
    # One request per period pays redis-py's built-in connect retries (about 2 s).
    publish_backoff: float = 10.0


@dataclasses.dataclass(frozen=True)
class IngestSettings:
    # HOST:PORT the ingest API listens on; loopback unless asked (0.0.0.0 in a container).
    bind: str = "127.0.0.1:8080"
    # Largest accepted webhook body, bytes. AlertManager sends about 1 KiB an alert;
    # 10 MiB leaves room for groups of thousands without inviting abuse.
    max_body_bytes: int = 10 * 1024 * 1024
    # Worker processes, each running one request at a time (SQLite serialises
    # writers anyway) while its event loop reads the next requests whole.
    workers: int = 2
    # Seconds a client has, from connecting, to send its whole request (head and
    # body); then it gets 408. AlertManager sends a webhook in milliseconds; 10 s
    # leaves room for a slow link and bounds what a client trickling bytes can hold.
    read_timeout: float = 10.0
    # Seconds a Source definition is cached before it is read again from the store.
    resource_refresh_seconds: float = 2.0
    # File holding the bearer token of the read API (/api/v1/*): alerts, annotations
    # and every step's output. Unset: the read API answers 403 (it shares a listener
    # with the webhooks, which AlertManager must reach). Read once at start-up.
    api_token_file: Path | None = None
    # File holding the Slack app's signing secret, which verifies the button clicks
    # Slack posts to /slack/interactions (Approve / Deny). Unset: that endpoint
    # answers 403. Read once at start-up.
    slack_signing_secret_file: Path | None = None


@dataclasses.dataclass(frozen=True)
class OutboxSettings:
    # Seconds between relay passes over unpublished outbox entries.
    relay_interval: float = 1.0
    # Seconds a publisher holds an entry before the relay may take it over; covers
    # the in-request publish so that both do not send the same entry.
    lease_seconds: float = 10.0
    # Entries claimed per relay pass.
    batch_size: int = 200


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    # Pool processes per engine worker. Steps mostly wait on commands and the
    # Kubernetes API, so a few more than CPUs is fine; each holds one DB connection.
    concurrency: int = 4
    # "prefork" isolates steps in processes, so that a SIGKILLed step loses only its
    # own message (redelivered at once); "threads" or "solo" for debugging.
    pool: str = "prefork"
    # Seconds a step attempt may take when the step gives no timeout (the seed's
    # example used 5 minutes; ten leaves room for slow clusters).
    default_step_timeout: float = 600.0
    # Bytes of stdout and of stderr kept per cli step (each); the rest is counted and
    # dropped. 64 KiB keeps the context row small while holding a useful log tail.
    output_limit_bytes: int = 64 * 1024
    # Seconds before the first retry of a temporary failure; doubles per attempt.
    retry_backoff: float = 2.0
    # Longest wait between retries, seconds.
    retry_backoff_max: float = 300.0
    # Seconds a Running step stays claimed without a heartbeat; after that another
    # worker takes it over. Heartbeats come every third of it.
    lease_seconds: float = 30.0
    # Seconds between recovery passes (stalled runs, expired leases) in each worker.
    recovery_interval: float = 10.0
    # Seconds a Running run may show no progress, with no live step, before a
    # recovery pass re-drives it (a lost chain message). Longer than queueing delays.
    stall_seconds: float = 120.0
    # Namespace where cli steps with runner: kubernetes create their Jobs; empty means
    # the Workflow's own namespace, so that a Workflow's Jobs (and the service account
    # they run as) stay with the team that owns it. Set it to keep every Job in one.
    kubernetes_namespace: str = ""
    # Seconds a finished Job (and its pod) is kept before Kubernetes deletes it.
    job_ttl_seconds: int = 300
    # Kubernetes API URL for the Job runner; empty means in-cluster configuration.
    kubernetes_api_url: str = ""
    # Seconds between scheduler passes over schedule Sources (cron resolution is 1 min).
    scheduler_interval: float = 1.0
    # HOST:PORT where `punchingfist scheduler` serves Prometheus metrics (/metrics):
    # ticks started and found taken by another replica, by Source; errors; the time
    # of the last pass that completed (a stalled scheduler starts nothing and says
    # nothing). Empty: off; the image's manifests set 0.0.0.0:9100.
    scheduler_metrics_bind: str = ""
    # Run cli steps with runner: local as subprocesses of the worker. Such a command
    # runs as the worker's user, next to its database credentials (a same-user process
    # can read /proc/<worker>/environ): whoever may create a Workflow may act as the
    # engine. On for `make run`, where that is you; turn it off (false) in a cluster,
    # where steps then use runner: kubernetes and a local step fails saying why.
    local_runner: bool = True
    # Requests and limits of every Job container ("cpu=100m,memory=128Mi"); a
    # Workflow's runtime.resources overrides them per resource. Small requests so that
    # a burst of steps schedules; limits so that one step cannot starve its node.
    job_requests: tuple[tuple[str, str], ...] = (("cpu", "100m"), ("memory", "128Mi"))
    # Limits of every Job container, same form; a request above a limit raises it.
    job_limits: tuple[tuple[str, str], ...] = (("cpu", "1"), ("memory", "512Mi"))
    # User id Job containers run as (runAsNonRoot is always set); 0 leaves it to the
    # image, which must then name a non-root user. 65532 is the usual "nonroot" uid.
    job_run_as_user: int = 65532
    # Folder of the agent's own investigation templates (YAML, the format of
    # services/engine/agent/templates/); a file named like a built-in replaces it.
    # Unset: the built-in templates only.
    agent_templates_dir: Path | None = None
    # HOST:PORT where the engine worker serves Prometheus metrics (/metrics): task
    # counts and durations of every pool process, queue depth, runs, agent tool and
    # model calls. Empty turns it off (the default: `make run` starts several workers
    # on one machine); the image's manifests set 0.0.0.0:9100.
    metrics_bind: str = ""


@dataclasses.dataclass(frozen=True)
class NotifierSettings:
    # Pool processes per notifier worker. Deliveries wait on Slack and webhooks, so a
    # few per CPU; each holds one database connection.
    concurrency: int = 4
    # "prefork" (processes; a killed one loses only its own delivery) or "solo".
    # Not "threads": pybreaker holds a lock per breaker around each call, which
    # would serialise every delivery to one Sink in a threaded worker.
    pool: str = "prefork"
    # Seconds an HTTP call to a Sink may take (connect + read). Slack answers in
    # well under a second; 10 leaves room for a slow webhook receiver.
    http_timeout: float = 10.0
    # Attempts a delivery gets for temporary failures before it is Failed; with the
    # backoff below, 8 attempts span about ten minutes of outage.
    max_attempts: int = 8
    # Seconds before the first retry of a temporary failure; doubles per attempt.
    retry_backoff: float = 5.0
    # Longest wait between retries, seconds.
    retry_backoff_max: float = 300.0
    # Longest Retry-After (seconds) waited inside the Slack call; a longer one sends
    # the delivery back to the queue instead of holding a worker process.
    rate_limit_wait_max: float = 5.0
    # Seconds a claimed delivery belongs to its worker. Longer than the longest send
    # (two HTTP calls plus the rate-limit wait); after it a recovery pass takes over.
    lease_seconds: float = 60.0
    # Seconds between recovery passes in each worker (abandoned claims, lost messages).
    recovery_interval: float = 10.0
    # Seconds a Pending delivery may sit unclaimed past its due time before a
    # recovery pass sends it again (its message was lost). Longer than queueing delays.
    stall_seconds: float = 120.0
    # Consecutive temporary failures of one Sink that open its circuit breaker.
    breaker_fail_max: int = 5
    # Seconds an open breaker stays open before one trial delivery is let through.
    breaker_reset_seconds: float = 60.0
    # Redis URL where breaker state lives, shared by every notifier process; empty
    # means the broker when it is Redis, else per-process memory (the embedded default).
    breaker_redis_url: str = ""
    # Base URL of the ingest API as people reach it, for links to a run in messages
    # and silence comments; empty means http://<PF_INGEST_BIND>.
    public_url: str = ""
    # HOST:PORT where the notifier worker serves Prometheus metrics (/metrics): task
    # counts and durations, queue depth, deliveries by Sink type. Empty: off.
    metrics_bind: str = ""
    # Seconds between silence-watch passes in each worker; also how long one check of
    # an alert keeps every worker off it, so each silenced alert is asked about once
    # per interval whatever the number of workers. An AlertManager silence mutes the
    # alert's resolved notification too; the watch asks AlertManager whether the
    # alert still fires, so a resolve during a silence is reported within about this
    # long. 0 turns the watch off (resolves then wait for the silence to end).
    silence_watch_interval: float = 60.0
    # Seconds AlertManager must have been up before its not holding an alert is
    # believed. It keeps alerts in memory only: after a restart it holds an alert
    # again once Prometheus re-sends it (resend_delay, 1 min by default, at the next
    # rule evaluation). 5 minutes leaves room for a few re-sends.
    silence_watch_grace: float = 300.0
    # Silenced alerts one pass of one worker checks at most (one GET /api/v2/alerts
    # each); the least recently checked go first, the rest wait for the next pass.
    silence_watch_batch: int = 100


@dataclasses.dataclass(frozen=True)
class ControllerSettings:
    # Seconds between looks at --config-dir for changed files (file mode). Cheap (a
    # stat per file), and short so an edit is live before the next alert.
    poll_interval: float = 1.0
    # Seconds between status refreshes of each resource in a cluster: references are
    # checked again and counters read from the database. Each refresh that changes
    # something is one PATCH per resource, so not much below the events' pace.
    status_interval: float = 30.0
    # Namespaces to watch, comma-separated in PF_CONTROLLER_NAMESPACES; empty means
    # every namespace (the CRDs are namespaced, the controller cluster-wide).
    namespaces: tuple[str, ...] = ()
    # ClusterKopfPeering (KopfPeering when namespaces are set) through which replicas
    # agree that one of them is active; k8s/crds/kopf-peering.yaml creates it.
    peering: str = "punchingfist"
    # Peering priority of this replica; 0 picks a random one at start, so that with
    # two replicas exactly one works (equal priorities make kopf freeze both).
    priority: int = 0
    # Seconds a replica's peering record counts as alive; it is renewed 5-10 s before
    # it expires (every second when shorter), so a replica that died without saying
    # so is replaced after at most this long.
    peering_lifetime: int = 60
    # Post Kubernetes Events for handler failures (kubectl describe shows them).
    post_events: bool = True
    # Seconds the API server keeps one watch request open before kopf re-opens it
    # from the last resourceVersion; below typical load-balancer idle timeouts.
    watch_timeout: float = 300.0
    # HOST:PORT where the controller serves Prometheus metrics (/metrics):
    # reconciliations and errors by kind, in both modes. Empty: off.
    metrics_bind: str = ""


@dataclasses.dataclass(frozen=True)
class RetentionSettings:
    # Days finished records are kept: source events (raw bodies), resolved alerts,
    # ended runs with their steps and deliveries, published outbox rows, schedule
    # ticks. 30 covers a month of post-mortems; 0 keeps everything forever.
    days: int = 30
    # Seconds between retention passes (run by `punchingfist scheduler`); the first
    # pass runs at start. Hourly keeps each pass small.
    interval: float = 3600.0
    # Rows deleted per transaction, so that a pass never holds SQLite's write lock
    # (or PostgreSQL row locks) for long.
    batch_size: int = 500


@dataclasses.dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = dataclasses.field(default_factory=DatabaseSettings)
    broker: BrokerSettings = dataclasses.field(default_factory=BrokerSettings)
    ingest: IngestSettings = dataclasses.field(default_factory=IngestSettings)
    outbox: OutboxSettings = dataclasses.field(default_factory=OutboxSettings)
    engine: EngineSettings = dataclasses.field(default_factory=EngineSettings)
    controller: ControllerSettings = dataclasses.field(default_factory=ControllerSettings)
    notifier: NotifierSettings = dataclasses.field(default_factory=NotifierSettings)
    # Folder laid out like mounted Secrets: <dir>/<secret name>/<key>.
    secrets_dir: Path = Path("secrets")
    # Read secrets from the Kubernetes API instead of secrets_dir.
    kubernetes_secrets: bool = False
    # Where Sources, Workflows and Sinks are loaded from when there is no cluster.
    config_dir: Path | None = None
    # Least severe log level written.
    log_level: str = "INFO"
    # "json" for machines, "text" for a terminal.
    log_format: str = "json"
    # Writable folder for local state: the embedded SQLite database and broker,
    # ingest's per-worker metrics files. The image sets /var/lib/punchingfist.
    var_dir: Path = DEFAULT_VAR_DIR
    retention: RetentionSettings = dataclasses.field(default_factory=RetentionSettings)


def _positive(kind: Callable[[str], T]) -> Callable[[str], T]:
    def parse(raw: str) -> T:
        value = kind(raw)
        if not value > 0:  # type: ignore[operator]  # also rejects NaN
            raise ValueError("must be greater than zero")
        return value

    return parse


def _non_negative(kind: Callable[[str], T]) -> Callable[[str], T]:
    def parse(raw: str) -> T:
        value = kind(raw)
        if not value >= 0:  # type: ignore[operator]  # also rejects NaN
            raise ValueError("must not be negative")
        return value

    return parse


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false")


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value

    return parse


def _read(env: Mapping[str, str], name: str, parse: Callable[[str], T], default: T) -> T:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: {exc}") from exc


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``env`` (default ``os.environ``); raise ConfigError on bad values."""
    env = os.environ if env is None else env
    var_dir = _read(env, "PF_VAR_DIR", Path, DEFAULT_VAR_DIR)
    database = DatabaseSettings(
        url=_read(env, "PF_DATABASE_URL", str, f"sqlite:///{var_dir}/punchingfist.db"),
        sqlite_busy_timeout=_read(
            env, "PF_SQLITE_BUSY_TIMEOUT", _positive(float), DatabaseSettings.sqlite_busy_timeout
        ),
        pool_size=_read(env, "PF_DATABASE_POOL_SIZE", _positive(int), DatabaseSettings.pool_size),
    )
    broker = BrokerSettings(
        url=_read(env, "PF_BROKER_URL", str, f"sqla+sqlite:///{var_dir}/broker.db"),
        publish_timeout=_read(
            env, "PF_BROKER_PUBLISH_TIMEOUT", _positive(float), BrokerSettings.publish_timeout
        ),
        publish_backoff=_read(
            env, "PF_BROKER_PUBLISH_BACKOFF", _non_negative(float), BrokerSettings.publish_backoff
        ),
    )
    ingest = IngestSettings(
        bind=_read(env, "PF_INGEST_BIND", str, IngestSettings.bind),
        max_body_bytes=_read(
            env, "PF_INGEST_MAX_BODY_BYTES", _positive(int), IngestSettings.max_body_bytes
        ),
        workers=_read(env, "PF_INGEST_WORKERS", _positive(int), IngestSettings.workers),
        read_timeout=_read(
            env, "PF_INGEST_READ_TIMEOUT", _positive(float), IngestSettings.read_timeout
        ),
        resource_refresh_seconds=_read(
            env,
            "PF_RESOURCE_REFRESH_SECONDS",
            _non_negative(float),
            IngestSettings.resource_refresh_seconds,
        ),
        api_token_file=_read(env, "PF_API_TOKEN_FILE", Path, IngestSettings.api_token_file),
        slack_signing_secret_file=_read(
            env,
            "PF_SLACK_SIGNING_SECRET_FILE",
            Path,
            IngestSettings.slack_signing_secret_file,
        ),
    )
    outbox = OutboxSettings(
        relay_interval=_read(
            env, "PF_OUTBOX_RELAY_INTERVAL", _positive(float), OutboxSettings.relay_interval
        ),
        lease_seconds=_read(
            env, "PF_OUTBOX_LEASE_SECONDS", _positive(float), OutboxSettings.lease_seconds
        ),
        batch_size=_read(env, "PF_OUTBOX_BATCH_SIZE", _positive(int), OutboxSettings.batch_size),
    )
    engine = _engine_from_env(env)
    controller = _controller_from_env(env)
    notifier = _notifier_from_env(env)
    config_dir = _read(env, "PF_CONFIG_DIR", Path, None)
    settings = Settings(
        database=database,
        broker=broker,
        ingest=ingest,
        outbox=outbox,
        engine=engine,
        controller=controller,
        notifier=notifier,
        secrets_dir=_read(env, "PF_SECRETS_DIR", Path, Path("secrets")),
        kubernetes_secrets=_read(env, "PF_KUBERNETES_SECRETS", _boolean, False),
        config_dir=config_dir,
        log_level=_read(env, "PF_LOG_LEVEL", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
        log_format=_read(env, "PF_LOG_FORMAT", _choice("json", "text"), "json"),
        var_dir=var_dir,
        retention=_retention_from_env(env),
    )
    _check_urls(settings)
    return settings


def _names(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _controller_from_env(env: Mapping[str, str]) -> ControllerSettings:
    d = ControllerSettings
    return ControllerSettings(
        poll_interval=_read(env, "PF_CONTROLLER_POLL_INTERVAL", _positive(float), d.poll_interval),
        status_interval=_read(
            env, "PF_CONTROLLER_STATUS_INTERVAL", _positive(float), d.status_interval
        ),
        namespaces=_read(env, "PF_CONTROLLER_NAMESPACES", _names, d.namespaces),
        peering=_read(env, "PF_CONTROLLER_PEERING", str, d.peering),
        priority=_read(env, "PF_CONTROLLER_PRIORITY", _non_negative(int), d.priority),
        peering_lifetime=_read(
            env, "PF_CONTROLLER_PEERING_LIFETIME", _positive(int), d.peering_lifetime
        ),
        post_events=_read(env, "PF_CONTROLLER_POST_EVENTS", _boolean, d.post_events),
        watch_timeout=_read(env, "PF_CONTROLLER_WATCH_TIMEOUT", _positive(float), d.watch_timeout),
        metrics_bind=_read(env, "PF_CONTROLLER_METRICS_BIND", _host_port, d.metrics_bind),
    )


def _host_port(raw: str) -> str:
    """``HOST:PORT`` (``[::]:9100`` for IPv6); checked here so that a typo stops start-up."""
    value = raw.strip()
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT, such as 0.0.0.0:9100")
    return value


def split_host_port(bind: str) -> tuple[str, int]:
    """``"0.0.0.0:9100"`` -> ("0.0.0.0", 9100); ``"[::]:9100"`` -> ("::", 9100)."""
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


def _base_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


def _notifier_from_env(env: Mapping[str, str]) -> NotifierSettings:
    d = NotifierSettings
    return NotifierSettings(
        concurrency=_read(env, "PF_NOTIFIER_CONCURRENCY", _positive(int), d.concurrency),
        pool=_read(env, "PF_NOTIFIER_POOL", _choice("prefork", "solo"), d.pool),
        http_timeout=_read(env, "PF_NOTIFIER_HTTP_TIMEOUT", _positive(float), d.http_timeout),
        max_attempts=_read(env, "PF_NOTIFIER_MAX_ATTEMPTS", _positive(int), d.max_attempts),
        retry_backoff=_read(
            env, "PF_NOTIFIER_RETRY_BACKOFF", _non_negative(float), d.retry_backoff
        ),
        retry_backoff_max=_read(
            env, "PF_NOTIFIER_RETRY_BACKOFF_MAX", _non_negative(float), d.retry_backoff_max
        ),
        rate_limit_wait_max=_read(
            env, "PF_NOTIFIER_RATE_LIMIT_WAIT_MAX", _non_negative(float), d.rate_limit_wait_max
        ),
        lease_seconds=_read(env, "PF_NOTIFIER_LEASE_SECONDS", _positive(float), d.lease_seconds),
        recovery_interval=_read(
            env, "PF_NOTIFIER_RECOVERY_INTERVAL", _positive(float), d.recovery_interval
        ),
        stall_seconds=_read(env, "PF_NOTIFIER_STALL_SECONDS", _positive(float), d.stall_seconds),
        breaker_fail_max=_read(
            env, "PF_NOTIFIER_BREAKER_FAIL_MAX", _positive(int), d.breaker_fail_max
        ),
        breaker_reset_seconds=_read(
            env, "PF_NOTIFIER_BREAKER_RESET_SECONDS", _positive(float), d.breaker_reset_seconds
        ),
        breaker_redis_url=_read(env, "PF_NOTIFIER_BREAKER_REDIS_URL", str, d.breaker_redis_url),
        public_url=_read(env, "PF_PUBLIC_URL", _base_url, d.public_url),
        metrics_bind=_read(env, "PF_NOTIFIER_METRICS_BIND", _host_port, d.metrics_bind),
        silence_watch_interval=_read(
            env,
            "PF_NOTIFIER_SILENCE_WATCH_INTERVAL",
            _non_negative(float),
            d.silence_watch_interval,
        ),
        silence_watch_grace=_read(
            env, "PF_NOTIFIER_SILENCE_WATCH_GRACE", _non_negative(float), d.silence_watch_grace
        ),
        silence_watch_batch=_read(
            env, "PF_NOTIFIER_SILENCE_WATCH_BATCH", _positive(int), d.silence_watch_batch
        ),
    )


def _engine_from_env(env: Mapping[str, str]) -> EngineSettings:
    d = EngineSettings
    return EngineSettings(
        concurrency=_read(env, "PF_ENGINE_CONCURRENCY", _positive(int), d.concurrency),
        pool=_read(env, "PF_ENGINE_POOL", _choice("prefork", "threads", "solo"), d.pool),
        default_step_timeout=_read(
            env, "PF_ENGINE_STEP_TIMEOUT", _positive(float), d.default_step_timeout
        ),
        output_limit_bytes=_read(
            env, "PF_ENGINE_OUTPUT_LIMIT_BYTES", _positive(int), d.output_limit_bytes
        ),
        retry_backoff=_read(env, "PF_ENGINE_RETRY_BACKOFF", _non_negative(float), d.retry_backoff),
        retry_backoff_max=_read(
            env, "PF_ENGINE_RETRY_BACKOFF_MAX", _non_negative(float), d.retry_backoff_max
        ),
        lease_seconds=_read(env, "PF_ENGINE_LEASE_SECONDS", _positive(float), d.lease_seconds),
        recovery_interval=_read(
            env, "PF_ENGINE_RECOVERY_INTERVAL", _positive(float), d.recovery_interval
        ),
        stall_seconds=_read(env, "PF_ENGINE_STALL_SECONDS", _positive(float), d.stall_seconds),
        kubernetes_namespace=_read(
            env, "PF_ENGINE_KUBERNETES_NAMESPACE", str, d.kubernetes_namespace
        ),
        job_ttl_seconds=_read(
            env, "PF_ENGINE_JOB_TTL_SECONDS", _non_negative(int), d.job_ttl_seconds
        ),
        kubernetes_api_url=_read(env, "PF_ENGINE_KUBERNETES_API_URL", str, d.kubernetes_api_url),
        scheduler_interval=_read(
            env, "PF_SCHEDULER_INTERVAL", _positive(float), d.scheduler_interval
        ),
        scheduler_metrics_bind=_read(
            env, "PF_SCHEDULER_METRICS_BIND", _host_port, d.scheduler_metrics_bind
        ),
        local_runner=_read(env, "PF_ENGINE_LOCAL_RUNNER", _boolean, d.local_runner),
        job_requests=_read(env, "PF_ENGINE_JOB_REQUESTS", _resource_list, d.job_requests),
        job_limits=_read(env, "PF_ENGINE_JOB_LIMITS", _resource_list, d.job_limits),
        job_run_as_user=_read(
            env, "PF_ENGINE_JOB_RUN_AS_USER", _non_negative(int), d.job_run_as_user
        ),
        agent_templates_dir=_read(env, "PF_AGENT_TEMPLATES_DIR", Path, d.agent_templates_dir),
        metrics_bind=_read(env, "PF_ENGINE_METRICS_BIND", _host_port, d.metrics_bind),
    )


_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")


def _resource_list(raw: str) -> tuple[tuple[str, str], ...]:
    """``cpu=100m,memory=128Mi`` -> (("cpu", "100m"), ("memory", "128Mi"))."""
    pairs = []
    for part in _names(raw):
        name, _, quantity = part.partition("=")
        name, quantity = name.strip(), quantity.strip()
        if name not in _RESOURCE_NAMES:
            raise ValueError(f"{name!r} is not one of {', '.join(_RESOURCE_NAMES)}")
        if not _QUANTITY.match(quantity):
            raise ValueError(f"{quantity!r} is not a quantity such as 100m or 128Mi")
        pairs.append((name, quantity))
    return tuple(pairs)


def _check_urls(settings: Settings) -> None:
    db = settings.database.url
    if not db.startswith(("sqlite:", "postgresql:", "postgresql+psycopg2:")):
        raise ConfigError(
            f"PF_DATABASE_URL={db!r}: use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    broker = settings.broker.url
    if not broker.startswith(("redis://", "rediss://", "sqla+", "memory://", "amqp://")):
        raise ConfigError(
            f"PF_BROKER_URL={broker!r}: use redis://HOST:PORT/DB (or sqla+sqlite:///PATH, memory://)"
        )
    notifier = settings.notifier
    if notifier.breaker_redis_url and not notifier.breaker_redis_url.startswith(
        ("redis://", "rediss://")
    ):
        raise ConfigError(
            f"PF_NOTIFIER_BREAKER_REDIS_URL={notifier.breaker_redis_url!r}: use redis://HOST:PORT/DB"
        )
    # A send is at most two HTTP calls (one rate-limit retry) and the wait between
    # them; a lease shorter than that would let a recovery pass resend a live send.
    longest_send = 2 * notifier.http_timeout + notifier.rate_limit_wait_max
    if notifier.lease_seconds <= longest_send:
        raise ConfigError(
            f"PF_NOTIFIER_LEASE_SECONDS={notifier.lease_seconds:g}: must exceed "
            f"2 * PF_NOTIFIER_HTTP_TIMEOUT + PF_NOTIFIER_RATE_LIMIT_WAIT_MAX = {longest_send:g}"
        )


def _retention_from_env(env: Mapping[str, str]) -> RetentionSettings:
    d = RetentionSettings
    return RetentionSettings(
        days=_read(env, "PF_RETENTION_DAYS", _non_negative(int), d.days),
        interval=_read(env, "PF_RETENTION_INTERVAL", _positive(float), d.interval),
        batch_size=_read(env, "PF_RETENTION_BATCH_SIZE", _positive(int), d.batch_size),
    )
