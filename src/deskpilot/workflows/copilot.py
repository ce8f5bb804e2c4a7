"""Build the copilot from settings: the reply template, the guard, the LLM policy and, when an endpoint is
configured, the model gateway with its budget ledger in the store."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from deskpilot.config import Settings
from deskpilot.copilot.budget_store import StoreBudgetLedger
from deskpilot.copilot.gateway.config import BudgetConfig, BudgetLimit, GatewayConfig, ProviderConfig
from deskpilot.copilot.gateway.factory import build_gateway
from deskpilot.copilot.gateway.router import Gateway
from deskpilot.copilot.gateway.stats import GatewayObserver
from deskpilot.copilot.guardrails import GuardConfig
from deskpilot.copilot.policy import PolicyConfig
from deskpilot.copilot.prompts import load_template
from deskpilot.copilot.suggest import Copilot
from deskpilot.data.pii import PiiRedactor
from deskpilot.errors import ConfigError
from deskpilot.store.knowledge import KnowledgeStore

API_KEY_ENV = "DESKPILOT_LLM_API_KEY"


def gateway_config(settings: Settings, environ: Mapping[str, str] | None = None) -> GatewayConfig | None:
    """The fallback chain the settings describe; ``None`` when no LLM endpoint is configured."""
    env = os.environ if environ is None else environ
    if settings.llm_base_url is None:
        if settings.llm_fallback_base_url is not None:
            raise ConfigError("DESKPILOT_LLM_FALLBACK_BASE_URL needs DESKPILOT_LLM_BASE_URL")
        return None
    key_env = API_KEY_ENV if settings.llm_api_key_file is None and env.get(API_KEY_ENV) else None
    key_file = str(settings.llm_api_key_file) if settings.llm_api_key_file is not None else None

    def provider(name: str, base_url: str, model: str | None, what: str) -> ProviderConfig:
        if not model:
            raise ConfigError(f"{what} is set, so DESKPILOT_{name.upper().replace('-', '_')}_MODEL is needed")
        return ProviderConfig(
            name=name,
            base_url=base_url.rstrip("/"),
            model=model,
            api_key_env=key_env,
            api_key_file=key_file,
            stream=settings.llm_stream,
            timeout_s=settings.llm_timeout_s,
            deadline_s=max(settings.llm_timeout_s * (settings.llm_max_retries + 1), settings.llm_timeout_s),
            max_retries=settings.llm_max_retries,
            prompt_price_per_1k=settings.llm_prompt_price_per_1k,
            completion_price_per_1k=settings.llm_completion_price_per_1k,
        )

    providers = [provider("llm", settings.llm_base_url, settings.llm_model, "DESKPILOT_LLM_BASE_URL")]
    if settings.llm_fallback_base_url is not None:
        providers.append(
            provider(
                "llm-fallback",
                settings.llm_fallback_base_url,
                settings.llm_fallback_model,
                "DESKPILOT_LLM_FALLBACK_BASE_URL",
            )
        )
    return GatewayConfig(providers=tuple(providers), budget=budget_config(settings))


def budget_config(settings: Settings) -> BudgetConfig:
    default = BudgetLimit(tokens=settings.llm_budget_tokens_per_day, cost_usd=settings.llm_budget_usd_per_day)
    per_tenant: dict[str, BudgetLimit | None] = {}
    for tenant, limits in settings.llm_tenant_budgets.items():
        unknown = set(limits) - {"tokens", "usd"}
        if unknown:
            raise ConfigError(
                f"DESKPILOT_LLM_TENANT_BUDGETS[{tenant!r}]: unknown keys {sorted(unknown)} (use tokens, usd)"
            )
        tokens = limits.get("tokens")
        per_tenant[tenant] = BudgetLimit(
            tokens=None if tokens is None else int(tokens), cost_usd=limits.get("usd")
        )
    return BudgetConfig(default=default, per_tenant=per_tenant, period="day")


def build_copilot(
    settings: Settings,
    redactor: PiiRedactor,
    knowledge: KnowledgeStore,
    observers: Sequence[GatewayObserver] = (),
) -> tuple[Copilot, Gateway | None]:
    """The copilot, and its gateway (the caller closes it) when an LLM is configured; build it on the event
    loop that will use it (the gateway's HTTP clients belong to one loop)."""
    template = load_template(settings.copilot_template)
    config = gateway_config(settings)
    gateway = (
        None if config is None else build_gateway(config, StoreBudgetLedger(knowledge), observers=observers)
    )
    copilot = Copilot(
        template=template,
        redactor=redactor,
        gateway=gateway,
        guard=GuardConfig(
            min_support=settings.copilot_min_support, max_chars=settings.copilot_max_draft_chars
        ),
        policy=PolicyConfig(
            skip_when_accepted=settings.copilot_skip_llm_when_accepted,
            min_verdicts=settings.copilot_min_verdicts,
            llm_for_human_routes=settings.copilot_llm_for_human_routes,
        ),
    )
    return copilot, gateway
