"""Settings: one flat, typed set of options read from ``DESKPILOT_*`` environment variables.

Only the CLI callback (``--home`` overrides ``DESKPILOT_HOME``) and the API's worker entry point build it. The
API and the workflows read it; the layers below them receive plain values and may not import this module
(import-linter checks). Paths that are not options (snapshots, keys, artifacts, caches, the default
databases) derive from ``home``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from deskpilot.domain import DEFAULT_MODEL_NAME
from deskpilot.errors import ConfigError


class Settings(BaseSettings):
    """Where DeskPilot keeps its state, the defaults of the data contract and training, and the limits and
    timings of the service."""

    model_config = SettingsConfigDict(env_prefix="DESKPILOT_", extra="ignore")

    home: Path = Field(default=Path(".deskpilot"), description="Root of snapshots, runs and stores.")
    max_text_length: int = Field(
        default=2000, gt=0, description="Longest message, in characters, after trimming."
    )
    min_examples_per_class: int = Field(default=5, ge=1, description="Fewest examples a label may have.")

    tracking_uri: str | None = Field(
        default=None, description="MLflow tracking/registry URI; default: a SQLite database under home."
    )
    model_name: str = Field(default=DEFAULT_MODEL_NAME, min_length=1, description="Registered model name.")
    target_precision: float = Field(
        default=0.97, gt=0.0, le=1.0, description="Precision the auto-routed share must keep on validation."
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description="API keys from configuration: TENANT:KEY pairs, comma-separated or a JSON list.",
    )

    database_url: str | None = Field(
        default=None, description="Prediction/feedback store (SQLAlchemy URL); default: SQLite under home."
    )
    max_body_bytes: int = Field(default=1_048_576, gt=0, description="Largest request body the API reads.")
    max_batch_items: int = Field(default=256, gt=0, description="Most tickets in one batch request.")
    rate_limit_per_s: float = Field(
        default=200.0, description="Sustained requests (tickets) per second per tenant; 0 turns it off."
    )
    rate_limit_burst: int = Field(default=400, gt=0, description="Tickets a tenant may send at once.")
    rate_limit_overrides: str = Field(
        default="", description="Per-tenant limits: TENANT=RATE/BURST, comma-separated (e.g. big=1000/2000)."
    )
    micro_batch_max: int = Field(default=64, gt=0, description="Most texts in one model call.")
    micro_batch_wait_ms: float = Field(
        default=2.0, ge=0.0, description="How long a batch waits for stragglers when several requests race."
    )
    model_timeout_s: float = Field(
        default=2.0,
        gt=0.0,
        description="Time budget of a model before the next in line (champion, then fallback) answers.",
    )
    reload_interval_s: float = Field(
        default=5.0, ge=0.0, description="How often the service checks the registry for a new champion."
    )
    store_buffer: int = Field(default=10_000, gt=0, description="Decisions buffered while the store is down.")
    policy_file: Path | None = Field(
        default=None,
        description="Gate policy whose rollout section drives automatic rollback (default: packaged).",
    )
    guard_interval_s: float = Field(
        default=1.0, gt=0.0, description="How often the rollback rules are checked."
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Server processes of `deskpilot serve`; each has its own model copy, batches and "
        "rate-limit share (the tenant limit divided evenly).",
    )
    tracing: str = Field(
        default="none", pattern="^(none|console|memory)$", description="OpenTelemetry span exporter."
    )
    # Admission and the HTTP edge (docs: the security findings' ADR). Each server process enforces its own.
    queue_max_chars: int = Field(
        default=2_000_000,
        gt=0,
        description="Characters of text that may wait for one model in one process; past it requests are "
        "shed with 503 and Retry-After, the tenant holding the most queued text first. At least "
        "max_batch_items x max_text_length.",
    )
    rate_limit_bytes_per_token: int = Field(
        default=4096,
        gt=0,
        description="A request costs at least one token per this many body bytes, taken before the body is "
        "read and kept when the request is refused (a valid request costs max(tickets, that)).",
    )
    body_timeout_s: float = Field(
        default=10.0, gt=0.0, description="Longest time to receive a request body; then 408 and close."
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        description="Longest time a connection may take to send a request's headers (`deskpilot serve`).",
    )
    keep_alive_timeout_s: int = Field(
        default=5, gt=0, description="Idle keep-alive connections close after this (`deskpilot serve`)."
    )
    limit_concurrency: int = Field(
        default=1024,
        gt=0,
        description="Connections plus requests in progress per process before new requests get 503 "
        "(`deskpilot serve`).",
    )
    ops_key: str | None = Field(
        default=None,
        repr=False,
        min_length=16,
        description="Operator key: when set, GET /metrics needs `Authorization: Bearer <it>`, and /readyz "
        "shows why it is not ready only to it (everyone else gets a generic body).",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve /metrics on this port instead of the API's (`deskpilot serve`).",
    )
    metrics_host: str = Field(default="127.0.0.1", description="Interface of metrics_port.")

    # The copilot: retrieval index, reply drafts, and the optional LLM behind the gateway.
    kb_dir: Path | None = Field(
        default=None, description="Root of the retrieval index catalog; default: kb under home."
    )
    kb_reload_interval_s: float = Field(
        default=5.0, ge=0.0, description="How often the service checks for a new index version (0: never)."
    )
    llm_base_url: str | None = Field(
        default=None,
        description="An OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, LM Studio) for reply drafts, e.g. "
        "http://127.0.0.1:11434/v1; unset: drafts are extractive, no LLM.",
    )
    llm_model: str | None = Field(default=None, description="Model name at llm_base_url (required with it).")
    llm_api_key_file: Path | None = Field(
        default=None, description="File holding the LLM API key; else DESKPILOT_LLM_API_KEY if set."
    )
    llm_stream: bool = Field(default=False, description="Ask the LLM to stream its answer (SSE).")
    llm_timeout_s: float = Field(default=30.0, gt=0.0, description="Longest time one LLM call may take.")
    llm_max_retries: int = Field(default=2, ge=0, description="Retries per provider on retryable failures.")
    llm_prompt_price_per_1k: float = Field(default=0.0, ge=0.0, description="USD per 1,000 prompt tokens.")
    llm_completion_price_per_1k: float = Field(
        default=0.0, ge=0.0, description="USD per 1,000 completion tokens."
    )
    llm_fallback_base_url: str | None = Field(
        default=None, description="A second OpenAI-compatible endpoint tried when the first fails."
    )
    llm_fallback_model: str | None = Field(default=None, description="Model name at llm_fallback_base_url.")
    llm_budget_tokens_per_day: int | None = Field(
        default=None, ge=0, description="Each tenant's LLM tokens per UTC day (unset: unlimited)."
    )
    llm_budget_usd_per_day: float | None = Field(
        default=None, ge=0.0, description="Each tenant's LLM spend per UTC day in USD (unset: unlimited)."
    )
    llm_tenant_budgets: Annotated[dict[str, dict[str, float]], NoDecode] = Field(
        default_factory=dict,
        description="Per-tenant budgets overriding the defaults, as JSON: "
        '{"acme": {"tokens": 200000, "usd": 5}}.',
    )
    copilot_template: Path | None = Field(
        default=None, description="A reply template YAML replacing the bundled one (its version is stored)."
    )
    copilot_min_support: float = Field(
        default=0.6,
        gt=0.0,
        le=1.0,
        description="Cosine similarity a draft sentence needs with a cited source sentence to stay.",
    )
    copilot_max_draft_chars: int = Field(default=1200, gt=0, description="Longest draft, in characters.")
    copilot_skip_llm_when_accepted: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description="No LLM for an intent whose template drafts agents send unchanged at least this often.",
    )
    copilot_min_verdicts: int = Field(
        default=20, ge=1, description="Verdicts an intent needs before that acceptance rule applies."
    )
    copilot_llm_for_human_routes: bool = Field(
        default=True, description="Whether tickets routed to a person may get an LLM draft."
    )

    # The console (/console): sign-in sessions.
    console_session_ttl_s: int = Field(
        default=8 * 3600,
        ge=60,
        le=30 * 86400,
        description="How long a console sign-in lasts before the browser must sign in again.",
    )
    console_operator_tenants: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Tenants whose keys may hold the operator role (comma-separated). Operators steer the "
        "models every tenant shares and read the whole audit log, so on a shared deployment list only the "
        "team that runs it; empty (the default) lets an operator key of any tenant sign in as operator.",
    )
    console_secure_cookie: bool = Field(
        default=False,
        description="Mark the console's cookies Secure (HTTPS only): set it when a TLS proxy fronts the "
        "service; off by default because the demo serves plain HTTP on 127.0.0.1.",
    )

    @field_validator("llm_tenant_budgets", mode="before")
    @classmethod
    def _parse_budgets(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"DESKPILOT_LLM_TENANT_BUDGETS is not JSON: {exc}") from exc
        return value

    @property
    def resolved_kb_dir(self) -> Path:
        return self.kb_dir or self.home / "kb"

    @field_validator("console_operator_tenants", mode="before")
    @classmethod
    def _split_operator_tenants(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def may_operate(self, tenant: str) -> bool:
        """Whether an operator-role key of ``tenant`` acts as an operator here."""
        return not self.console_operator_tenants or tenant in self.console_operator_tenants

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_api_keys(cls, value: object) -> object:
        """``DESKPILOT_API_KEYS=a:k1,b:k2`` is easier to set than a JSON list; both work."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @property
    def snapshot_dir(self) -> Path:
        return self.home / "snapshots"

    @property
    def tenant_rate_limits(self) -> dict[str, tuple[float, int]]:
        """``rate_limit_overrides`` parsed; a malformed entry is a ConfigError naming it."""
        limits: dict[str, tuple[float, int]] = {}
        for entry in filter(None, (part.strip() for part in self.rate_limit_overrides.split(","))):
            tenant, _, spec = entry.partition("=")
            rate, _, burst = spec.partition("/")
            try:
                limits[tenant.strip()] = (float(rate), int(burst))
            except ValueError as exc:
                raise ConfigError(
                    f"DESKPILOT_RATE_LIMIT_OVERRIDES: {entry!r} is not TENANT=RATE/BURST"
                ) from exc
        return limits

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'deskpilot.db').resolve()}"

    @property
    def keys_file(self) -> Path:
        return self.home / "keys.jsonl"

    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def model_cache_dir(self) -> Path:
        return self.home / "cache" / "models"

    @property
    def encoder_cache_dir(self) -> Path:
        return self.home / "cache" / "encoders"

    # The store's integrity and lifetime (ADR: audit keys, head ledger, roles, retention and erasure).
    audit_key: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description="HMAC keys of the audit chain, comma-separated: the first signs new entries, all verify "
        "(rotation: put the new key first). Each 64+ hex digits or 32+ characters. Default: a key file.",
    )
    audit_key_file: Path | None = Field(
        default=None,
        description="Audit key file (one hex key a line, the last signs), created 0600 on the first audited "
        "action when no DESKPILOT_AUDIT_KEY is set; default: audit.key under home.",
    )
    audit_ledger: Path | None = Field(
        default=None,
        description="Where every audit append records the chain's head, outside the database; `deskpilot "
        "audit verify` checks them all. Default: audit-heads.jsonl under home.",
    )
    migration_database_url: str | None = Field(
        default=None,
        repr=False,
        description="PostgreSQL URL of the role that owns the store's tables, used by `deskpilot store "
        "migrate`, `store backup` and `store restore` only; the role in DESKPILOT_DATABASE_URL then gets "
        "INSERT/SELECT on the audit log.",
    )
    retention_days: int | None = Field(
        default=None,
        gt=0,
        description="Delete decisions (with their feedback) and shadow answers older than this many days; "
        "the service applies it periodically. Default: keep everything.",
    )
    retention_interval_s: float = Field(
        default=3600.0, gt=0.0, description="How often the service applies retention_days."
    )

    # Monitoring (ADR 0013): the audit sample of auto routes and the service's own monitor task.
    review_sample_rate: float = Field(
        default=0.02,
        ge=0.0,
        le=1.0,
        description="Share of auto-routed tickets also marked for a person's review (`review: true`), so "
        "that the accuracy of auto routes is measured without the bias of reviewing only human routes.",
    )
    monitor_interval_s: float | None = Field(
        default=None,
        gt=0.0,
        description="Run the monitor inside the service this often over the last monitor_window_s and export "
        "its signals on /metrics. Default: off (run `deskpilot monitor` on a schedule instead).",
    )
    monitor_window_s: float = Field(
        default=3600.0, gt=0.0, description="How far back the service's monitor task reads decisions."
    )

    @field_validator("audit_key", mode="before")
    @classmethod
    def _split_audit_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def resolved_audit_key_file(self) -> Path:
        return self.audit_key_file or self.home / "audit.key"

    @property
    def resolved_audit_ledger(self) -> Path:
        return self.audit_ledger or self.home / "audit-heads.jsonl"
