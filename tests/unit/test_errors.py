"""The exception tree: each class has a stable code and an HTTP status; the API answers with that status."""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from deskpilot import errors
from deskpilot.api.errors import error_response, install_error_handlers
from deskpilot.api.middleware import BodyGuard
from deskpilot.errors import DeskPilotError

ERROR_CLASSES = sorted(
    (cls for _, cls in inspect.getmembers(errors, inspect.isclass) if issubclass(cls, DeskPilotError)),
    key=lambda cls: cls.__name__,
)
SHARED_CODES = {"not_found": {errors.NotFoundError, errors.StoreNotFoundError}}


def test_the_tree_is_found() -> None:
    assert DeskPilotError in ERROR_CLASSES
    assert len(ERROR_CLASSES) > 30


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_class_states_its_own_code_and_status(cls: type[DeskPilotError]) -> None:
    # declared on the class itself, not inherited: a new class decides both on purpose
    assert isinstance(cls.__dict__.get("code"), str)
    assert cls.code
    assert isinstance(cls.__dict__.get("http_status"), int)
    assert 400 <= cls.http_status <= 599


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_class_appears_in_the_drawn_tree_with_its_code_and_status(cls: type[DeskPilotError]) -> None:
    doc = errors.__doc__ or ""
    drawn = [line.split() for line in doc.splitlines() if line.strip(" │├└─").startswith(f"{cls.__name__} ")]
    assert len(drawn) == 1, f"{cls.__name__} is not drawn exactly once in the module docstring"
    line = drawn[0]
    name_at = line.index(cls.__name__)
    assert line[name_at + 1 : name_at + 3] == [str(cls.http_status), cls.code]


def test_codes_are_unique_except_the_documented_not_found() -> None:
    counts = Counter(cls.code for cls in ERROR_CLASSES)
    shared = {code for code, n in counts.items() if n > 1}
    assert shared == set(SHARED_CODES)
    for code, classes in SHARED_CODES.items():
        assert {cls for cls in ERROR_CLASSES if cls.code == code} == classes
        assert {cls.http_status for cls in classes} == {404}


def test_statuses_the_api_has_always_answered() -> None:
    expected = {
        errors.DeskPilotError: 500,
        errors.RequestError: 400,
        errors.AuthenticationError: 401,
        errors.NotFoundError: 404,
        errors.MethodNotAllowedError: 405,
        errors.PayloadTooLargeError: 413,
        errors.UnsupportedMediaTypeError: 415,
        errors.RequestValidationError: 422,
        errors.RateLimitedError: 429,
        errors.InvalidEncodingError: 400,
        errors.InvalidJsonError: 400,
        errors.StoreError: 503,
        errors.StoreUnavailableError: 503,
        errors.StoreNotFoundError: 404,
        errors.ModelNotFoundError: 400,
    }
    assert {cls: cls.http_status for cls in expected} == expected


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_error_response_uses_the_class_status(cls: type[DeskPilotError]) -> None:
    response = error_response(cls("what went wrong", details={"field": "text"}))
    assert response.status_code == cls.http_status
    assert response.body == (
        b'{"error":{"code":"'
        + cls.code.encode()
        + b'","message":"what went wrong","details":{"field":"text"}}}'
    )


class Body(BaseModel):
    text: str


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(BodyGuard, max_body_bytes=64)

    @app.get("/raise/{name}")
    async def raise_named(name: str) -> None:
        cls = getattr(errors, name)
        details = {"retry_after_s": 2.5} if cls is errors.RateLimitedError else {}
        raise cls(f"raised {name}", details=details)

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("secret internals")

    @app.post("/echo")
    async def echo(body: Body) -> Body:
        return body

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_a_raised_error_answers_with_its_class_status(client: TestClient, cls: type[DeskPilotError]) -> None:
    response = client.get(f"/raise/{cls.__name__}")
    assert response.status_code == cls.http_status
    assert response.json()["error"]["code"] == cls.code


def test_rate_limited_and_unauthorized_keep_their_headers(client: TestClient) -> None:
    assert client.get("/raise/RateLimitedError").headers["retry-after"] == "2"
    assert client.get("/raise/AuthenticationError").headers["www-authenticate"] == 'Bearer realm="deskpilot"'


def test_framework_refusals_map_to_classes(client: TestClient) -> None:
    missing = client.get("/nothing")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    wrong_method = client.put("/bug")
    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (405, "method_not_allowed")
    assert wrong_method.headers["allow"] == "GET"
    bad_json = client.post("/echo", content=b"{", headers={"content-type": "application/json"})
    assert (bad_json.status_code, bad_json.json()["error"]["code"]) == (400, "invalid_json")
    wrong_shape = client.post("/echo", json={"txt": "hello"})
    assert (wrong_shape.status_code, wrong_shape.json()["error"]["code"]) == (422, "validation_error")
    assert wrong_shape.json()["error"]["details"]["errors"][0]["field"] == "text"


def test_an_unexpected_exception_is_a_500_without_internals(client: TestClient) -> None:
    response = client.get("/bug")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "internal error; it has been logged", "details": {}}
    }


def test_the_body_guard_refuses_with_the_class_status(client: TestClient) -> None:
    not_json = client.post("/echo", content=b"text", headers={"content-type": "text/plain"})
    assert (not_json.status_code, not_json.json()["error"]["code"]) == (415, "unsupported_media_type")
    latin1 = client.post(
        "/echo", content=b"{}", headers={"content-type": "application/json; charset=latin-1"}
    )
    assert (latin1.status_code, latin1.json()["error"]["code"]) == (400, "invalid_encoding")
    not_utf8 = client.post("/echo", content=b'{"text": "\xff"}', headers={"content-type": "application/json"})
    assert (not_utf8.status_code, not_utf8.json()["error"]["code"]) == (400, "invalid_encoding")
    too_big = client.post("/echo", json={"text": "x" * 100})
    assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "payload_too_large")
    assert too_big.json()["error"]["details"] == {"max_body_bytes": 64}
    assert client.post("/echo", json={"text": "hello"}).json() == {"text": "hello"}
