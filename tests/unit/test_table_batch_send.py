"""The transaction writer sends a transaction once more when the connection broke before an
answer (the SDK's pipeline retries no POST), and no more than once."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import ServiceResponseError

from shared.adapters.tables import batch

ANSWER = (
    b"--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_1\r\n\r\n"
    b"--changesetresponse_1\r\nContent-Type: application/http\r\n\r\n"
    b"HTTP/1.1 204 No Content\r\nETag: W/\"datetime'1'\"\r\n\r\n\r\n"
    b"--changesetresponse_1--\r\n--batchresponse_1--\r\n"
)


class _Answer:
    status_code = 202

    def read(self) -> bytes:
        return ANSWER


class _Pipeline:
    def __init__(self, failures: int) -> None:
        self.failures, self.sent = failures, 0

    def send_request(self, request: Any, stream: bool = False) -> _Answer:
        self.sent += 1
        if self.sent <= self.failures:
            raise ServiceResponseError("Connection aborted: RemoteDisconnected")
        return _Answer()


class _Table:
    scheme, _primary_hostname, table_name, api_version = "http", "h/acct", "T", "2019-02-02"

    def __init__(self, failures: int) -> None:
        self._client = _Pipeline(failures)


def test_a_transaction_whose_connection_broke_is_sent_once_more_and_answers_its_etags():
    table = _Table(failures=1)
    metas = batch.submit(table, [("create", {"PartitionKey": "p", "RowKey": "r"})])  # type: ignore[arg-type]
    assert table._client.sent == 2
    assert metas == [{"etag": "W/\"datetime'1'\""}]


def test_a_connection_that_breaks_twice_is_the_callers_failure():
    table = _Table(failures=2)
    with pytest.raises(ServiceResponseError):
        batch.submit(table, [("create", {"PartitionKey": "p", "RowKey": "r"})])  # type: ignore[arg-type]
    assert table._client.sent == 2
