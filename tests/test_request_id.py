import logging

from artifacts_project.request_id import RequestIdLogFilter, request_id_scope


def test_middleware_echoes_a_given_request_id(client, db):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    assert response.status_code == 200
    assert response["X-Request-ID"] == "abc-123"


def test_middleware_makes_one_when_missing_or_unsafe(client, db):
    made = client.get("/healthz")["X-Request-ID"]
    replaced = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")["X-Request-ID"]
    assert len(made) == 32 and len(replaced) == 32 and made != replaced


def test_log_records_carry_the_request_id():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "msg", None, None)
    with request_id_scope("req-9"):
        RequestIdLogFilter().filter(record)
    assert record.request_id == "req-9"


def test_healthz_checks_the_database(client, db):
    assert client.get("/healthz").json()["status"] == "ok"
