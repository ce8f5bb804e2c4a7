"""One exception tree for DeskPilot: each class has a stable machine-readable ``code`` and an ``http_status``.

The API's single error handler renders any of them with the status of its class; the CLI maps them to its exit
statuses. Codes and statuses are part of the public contract and never change meaning once shipped: a 4xx is
the caller's mistake, 500 a bug, 503 "retry later". Errors that do not come from a request keep the 400 they
have always had. ``not_found`` is shared on purpose (see :class:`StoreNotFoundError`).

    DeskPilotError                        500  internal_error           a bug; the body carries no internals
    ├── UsageError                        400  usage_error              the caller asked the impossible
    │   ├── DataFileNotFoundError         400  data_file_not_found
    │   ├── UnsupportedFormatError        400  unsupported_format
    │   ├── ConfigError                   400  config_invalid
    │   │   ├── PolicyError               400  policy_invalid           a gate policy file is malformed
    │   │   └── SuiteError                400  behavioral_suite_invalid a behavioral suite is malformed
    │   ├── UnknownFamilyError            400  unknown_model_family
    │   └── RequestError                  400  bad_request              an HTTP request the API refuses
    │       ├── AuthenticationError       401  unauthorized             missing or unknown API key
    │       ├── RateLimitedError          429  rate_limited             the tenant's token bucket is empty
    │       ├── PayloadTooLargeError      413  payload_too_large        body or batch over its limit
    │       ├── InvalidEncodingError      400  invalid_encoding         body is not UTF-8
    │       ├── UnsupportedMediaTypeError 415  unsupported_media_type   body is not JSON
    │       ├── InvalidJsonError          400  invalid_json             body does not parse as JSON
    │       ├── RequestValidationError    422  validation_error         body does not match the schema
    │       │   └── UnknownIntentError    422  unknown_intent           feedback names no intent served
    │       ├── NotFoundError             404  not_found                no such route or resource
    │       ├── MethodNotAllowedError     405  method_not_allowed       the route lacks this method
    │       └── RequestTimeoutError       408  request_timeout          the body did not arrive in time
    ├── OverloadedError                   503  overloaded               at capacity: retry after Retry-After
    ├── KnowledgeIndexUnavailableError    503  knowledge_index_unavailable  no retrieval index loaded yet
    ├── GatewayExhausted                  503  llm_unavailable          no LLM provider answered (drafts only;
    │                                                                   defined in deskpilot.copilot.gateway)
    ├── BatchEngineUnavailableError       503  batch_engine_unavailable Ray missing or its cluster unreachable
    ├── DataError                         400  data_invalid             the data itself is wrong
    │   ├── DataFormatError               400  data_malformed           binary, bad delimiter, no header
    │   ├── MissingColumnError            400  missing_column
    │   ├── EmptyDatasetError             400  data_empty               no rows, or none left after filtering
    │   └── ContractViolationError        400  contract_violation       rows break the contract; has a report
    ├── SnapshotError                     400  snapshot_error
    │   ├── SnapshotNotFoundError         400  snapshot_not_found
    │   └── SnapshotCorruptError          400  snapshot_corrupt         bytes no longer match the digest
    ├── PiiConfigError                    400  pii_config_invalid       a custom PII pattern does not compile
    ├── ModelError                        400  model_error
    │   ├── ModelNotFoundError            400  model_not_found          no such model, version or alias
    │   ├── ArtifactError                 400  artifact_invalid         model files missing or corrupt
    │   ├── NoReferenceProfileError       400  no_reference_profile     nothing to monitor the model against
    │   └── TrainingError                 400  training_failed
    ├── RegistryError                     400  registry_error           the tracking/registry backend failed
    ├── RolloutError                      400  rollout_refused          a promotion or rollback refused
    │   ├── RolloutConflictError          400  rollout_conflict         the rollout state changed underneath
    │   └── NoShadowDataError             400  no_shadow_data           no challenger or shadow answers
    └── StoreError                        503  store_error              the decision/feedback store failed
        ├── StoreUnavailableError         503  store_unavailable        database unreachable; retry later
        ├── AuditWriteError               503  audit_write_failed       done, but its audit entry was not kept
        ├── DecisionPendingError          503  decision_pending         decision not written yet; retry later
        └── StoreNotFoundError            404  not_found                no such request for this tenant
"""

from __future__ import annotations

from typing import Any, ClassVar


class DeskPilotError(Exception):
    """Base of every error DeskPilot raises on purpose."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The wire shape shared by the CLI's ``--json`` output and the HTTP API."""
        return {"code": self.code, "message": self.message, "details": self.details}


class UsageError(DeskPilotError):
    code = "usage_error"
    http_status = 400


class DataFileNotFoundError(UsageError):
    code = "data_file_not_found"
    http_status = 400


class UnsupportedFormatError(UsageError):
    code = "unsupported_format"
    http_status = 400


class ConfigError(UsageError):
    code = "config_invalid"
    http_status = 400


class PolicyError(ConfigError):
    code = "policy_invalid"
    http_status = 400


class SuiteError(ConfigError):
    code = "behavioral_suite_invalid"
    http_status = 400


class UnknownFamilyError(UsageError):
    code = "unknown_model_family"
    http_status = 400


class RequestError(UsageError):
    code = "bad_request"
    http_status = 400


class AuthenticationError(RequestError):
    code = "unauthorized"
    http_status = 401


class RateLimitedError(RequestError):
    code = "rate_limited"
    http_status = 429


class PayloadTooLargeError(RequestError):
    code = "payload_too_large"
    http_status = 413


class InvalidEncodingError(RequestError):
    code = "invalid_encoding"
    http_status = 400


class UnsupportedMediaTypeError(RequestError):
    code = "unsupported_media_type"
    http_status = 415


class InvalidJsonError(RequestError):
    code = "invalid_json"
    http_status = 400


class RequestValidationError(RequestError):
    code = "validation_error"
    http_status = 422


class UnknownIntentError(RequestValidationError):
    """A verdict whose ``correct_intent`` is none of the serving models' classes (nor the "none of these"
    value): refused rather than stored, since free text would reach the feedback log and retraining."""

    code = "unknown_intent"
    http_status = 422


class NotFoundError(RequestError):
    code = "not_found"
    http_status = 404


class MethodNotAllowedError(RequestError):
    code = "method_not_allowed"
    http_status = 405


class RequestTimeoutError(RequestError):
    code = "request_timeout"
    http_status = 408


class OverloadedError(DeskPilotError):
    """The service is at capacity (its queue is full, or a request waited in it past its budget): not the
    caller's mistake and not a bug; ``details["retry_after_s"]`` says when to try again."""

    code = "overloaded"
    http_status = 503


class KnowledgeIndexUnavailableError(DeskPilotError):
    """No retrieval index is loaded (none was built yet, or the catalog is unreadable): the copilot's
    endpoints cannot answer until an operator imports knowledge; triage is unaffected."""

    code = "knowledge_index_unavailable"
    http_status = 503


class DataError(DeskPilotError):
    code = "data_invalid"
    http_status = 400


class DataFormatError(DataError):
    code = "data_malformed"
    http_status = 400


class MissingColumnError(DataError):
    code = "missing_column"
    http_status = 400


class EmptyDatasetError(DataError):
    code = "data_empty"
    http_status = 400


class ContractViolationError(DataError):
    """``report`` (a :class:`deskpilot.data.contracts.ValidationReport`) has every rule and located row."""

    code = "contract_violation"
    http_status = 400

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, report: Any = None) -> None:
        super().__init__(message, details=details)
        self.report = report


class SnapshotError(DeskPilotError):
    code = "snapshot_error"
    http_status = 400


class SnapshotNotFoundError(SnapshotError):
    code = "snapshot_not_found"
    http_status = 400


class SnapshotCorruptError(SnapshotError):
    code = "snapshot_corrupt"
    http_status = 400


class PiiConfigError(DeskPilotError):
    code = "pii_config_invalid"
    http_status = 400


class ModelError(DeskPilotError):
    code = "model_error"
    http_status = 400


class ModelNotFoundError(ModelError):
    code = "model_not_found"
    http_status = 400


class ArtifactError(ModelError):
    code = "artifact_invalid"
    http_status = 400


class NoReferenceProfileError(ModelError):
    code = "no_reference_profile"
    http_status = 400


class TrainingError(ModelError):
    code = "training_failed"
    http_status = 400


class RegistryError(DeskPilotError):
    code = "registry_error"
    http_status = 400


class StoreError(DeskPilotError):
    code = "store_error"
    http_status = 503


class BatchEngineUnavailableError(DeskPilotError):
    """The batch engine asked for cannot run: Ray is not installed, or its cluster cannot be reached."""

    code = "batch_engine_unavailable"
    http_status = 503


class StoreUnavailableError(StoreError):
    code = "store_unavailable"
    http_status = 503


class AuditWriteError(StoreError):
    """The action happened but its audit entry could not be written (the message says which action)."""

    code = "audit_write_failed"
    http_status = 503


class DecisionPendingError(StoreError):
    """Feedback on a decision still in the write buffer while the decision log cannot write (a locked or
    lost database): the decision may yet be written, so "retry later" rather than "not found"."""

    code = "decision_pending"
    http_status = 503


class StoreNotFoundError(StoreError):
    """Also raised for another tenant's request, so that a tenant cannot probe for other tenants' ids."""

    code = "not_found"
    http_status = 404


class RolloutError(DeskPilotError):
    code = "rollout_refused"
    http_status = 400


class RolloutConflictError(RolloutError):
    code = "rollout_conflict"
    http_status = 400


class NoShadowDataError(RolloutError):
    code = "no_shadow_data"
    http_status = 400
