"""One exception tree for DeskPilot, each class with a stable machine-readable ``code``.

Callers (the CLI, the API's single error handler) map codes to exit statuses and HTTP statuses; the codes
are part of the public contract and never change meaning once shipped.

    DeskPilotError                       internal_error
    ├── UsageError                       usage_error           the caller asked for something impossible
    │   ├── DataFileNotFoundError        data_file_not_found
    │   ├── UnsupportedFormatError       unsupported_format
    │   ├── ConfigError                  config_invalid
    │   │   ├── PolicyError              policy_invalid        a gate policy file is malformed (file:line)
    │   │   └── SuiteError               behavioral_suite_invalid   a behavioral suite file is malformed
    │   ├── UnknownFamilyError           unknown_model_family
    │   └── RequestError                 bad_request           an HTTP request the API refuses
    │       ├── AuthenticationError      unauthorized          missing or unknown API key (401)
    │       ├── RateLimitedError         rate_limited          the tenant's token bucket is empty (429)
    │       ├── PayloadTooLargeError     payload_too_large     body or batch over its limit (413)
    │       ├── InvalidEncodingError     invalid_encoding      body is not UTF-8 (400)
    │       ├── UnsupportedMediaTypeError unsupported_media_type  body is not JSON (415)
    │       ├── InvalidJsonError         invalid_json          body does not parse as JSON (400)
    │       ├── RequestValidationError   validation_error      body does not match the schema (422)
    │       └── NotFoundError            not_found             no such route or resource (404)
    ├── DataError                        data_invalid          the data itself is wrong
    │   ├── DataFormatError              data_malformed        unreadable: binary, bad delimiter, no header
    │   ├── MissingColumnError           missing_column
    │   ├── EmptyDatasetError            data_empty            no rows, or none left after filtering
    │   └── ContractViolationError       contract_violation    rows break the data contract (has a report)
    ├── SnapshotError                    snapshot_error
    │   ├── SnapshotNotFoundError        snapshot_not_found
    │   └── SnapshotCorruptError         snapshot_corrupt      stored bytes no longer match the digest
    ├── PiiConfigError                   pii_config_invalid    a custom PII pattern does not compile
    ├── ModelError                       model_error
    │   ├── ModelNotFoundError           model_not_found       no such registered model, version or alias
    │   ├── ArtifactError                artifact_invalid      a model directory is missing files or corrupt
    │   └── TrainingError                training_failed
    ├── RegistryError                    registry_error        the tracking/registry backend failed
    ├── RolloutError                     rollout_refused       a promotion or rollback that must not happen
    │   ├── RolloutConflictError         rollout_conflict      the rollout state changed underneath
    │   └── NoShadowDataError            no_shadow_data        no challenger, or no shadow answers to report
    └── StoreError                       store_error           the decision/feedback store failed
        ├── StoreUnavailableError        store_unavailable     the database cannot be reached; retry later
        └── StoreNotFoundError           not_found             no such request for this tenant
"""

from __future__ import annotations

from typing import Any, ClassVar


class DeskPilotError(Exception):
    """Base of every error DeskPilot raises on purpose."""

    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The wire shape shared by the CLI's ``--json`` output and the HTTP API."""
        return {"code": self.code, "message": self.message, "details": self.details}


class UsageError(DeskPilotError):
    code = "usage_error"


class DataFileNotFoundError(UsageError):
    code = "data_file_not_found"


class UnsupportedFormatError(UsageError):
    code = "unsupported_format"


class ConfigError(UsageError):
    code = "config_invalid"


class PolicyError(ConfigError):
    code = "policy_invalid"


class SuiteError(ConfigError):
    code = "behavioral_suite_invalid"


class UnknownFamilyError(UsageError):
    code = "unknown_model_family"


class RequestError(UsageError):
    code = "bad_request"


class AuthenticationError(RequestError):
    code = "unauthorized"


class RateLimitedError(RequestError):
    code = "rate_limited"


class PayloadTooLargeError(RequestError):
    code = "payload_too_large"


class InvalidEncodingError(RequestError):
    code = "invalid_encoding"


class UnsupportedMediaTypeError(RequestError):
    code = "unsupported_media_type"


class InvalidJsonError(RequestError):
    code = "invalid_json"


class RequestValidationError(RequestError):
    code = "validation_error"


class NotFoundError(RequestError):
    code = "not_found"


class DataError(DeskPilotError):
    code = "data_invalid"


class DataFormatError(DataError):
    code = "data_malformed"


class MissingColumnError(DataError):
    code = "missing_column"


class EmptyDatasetError(DataError):
    code = "data_empty"


class ContractViolationError(DataError):
    code = "contract_violation"


class SnapshotError(DeskPilotError):
    code = "snapshot_error"


class SnapshotNotFoundError(SnapshotError):
    code = "snapshot_not_found"


class SnapshotCorruptError(SnapshotError):
    code = "snapshot_corrupt"


class PiiConfigError(DeskPilotError):
    code = "pii_config_invalid"


class ModelError(DeskPilotError):
    code = "model_error"


class ModelNotFoundError(ModelError):
    code = "model_not_found"


class ArtifactError(ModelError):
    code = "artifact_invalid"


class TrainingError(ModelError):
    code = "training_failed"


class RegistryError(DeskPilotError):
    code = "registry_error"


class StoreError(DeskPilotError):
    code = "store_error"


class StoreUnavailableError(StoreError):
    code = "store_unavailable"


class StoreNotFoundError(StoreError):
    """Also raised for another tenant's request, so that a tenant cannot probe for other tenants' ids."""

    code = "not_found"


class RolloutError(DeskPilotError):
    code = "rollout_refused"


class RolloutConflictError(RolloutError):
    code = "rollout_conflict"


class NoShadowDataError(RolloutError):
    code = "no_shadow_data"
