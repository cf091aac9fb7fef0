"""A FunctionApp exercising every trigger the local host serves; functions record their calls.

Settings it reads: SAMPLE_RECORD_DIR (where `<function>.jsonl` records go), SAMPLE_FAIL_QUEUE,
SAMPLE_OK_QUEUE, SAMPLE_RELAY_QUEUE, SAMPLE_TIMER_SCHEDULE, SAMPLE_TIMER_SLEEP (seconds).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

_write_lock = threading.Lock()


def record(function: str, **fields: Any) -> None:
    """Append one JSON line to SAMPLE_RECORD_DIR/<function>.jsonl (tests read it back)."""
    directory = Path(os.environ["SAMPLE_RECORD_DIR"])
    with _write_lock, (directory / f"{function}.jsonl").open("a", encoding="utf-8") as file:
        file.write(json.dumps(fields) + "\n")


@app.route(route="items/{id:guid}", methods=["GET"])
def http_get_item(req: func.HttpRequest) -> func.HttpResponse:
    """Echo the route parameter and a query parameter as JSON."""
    body = {"id": req.route_params["id"], "q": req.params.get("q"), "url": req.url}
    return func.HttpResponse(
        json.dumps(body), mimetype="application/json", headers={"X-Sample": "1"}
    )


@app.route(route="items/new", methods=["GET"])
def http_new_item(req: func.HttpRequest) -> str:
    """A literal segment that must win over a parameter."""
    return "new"


@app.route(route="items/{name:alpha}", methods=["DELETE"])
def http_delete_item(req: func.HttpRequest) -> func.HttpResponse:
    """Only DELETE with letters."""
    return func.HttpResponse(status_code=202)


@app.route(route="echo/{*rest}", methods=["POST", "PUT"], auth_level=func.AuthLevel.ANONYMOUS)
async def http_echo(req: func.HttpRequest) -> func.HttpResponse:
    """An async function: echoes the catch-all value, a header and the body."""
    body = {
        "rest": req.route_params.get("rest"),
        "header": req.headers.get("x-test"),
        "body": req.get_body().decode(),
        "method": req.method,
    }
    return func.HttpResponse(json.dumps(body), status_code=201, mimetype="application/json")


@app.route(route="counts/{n:int}/{flag:bool?}")
def http_counts(req: func.HttpRequest) -> func.HttpResponse:
    """int and optional bool constraints."""
    return func.HttpResponse(json.dumps(dict(req.route_params)), mimetype="application/json")


@app.route(route="boom")
def http_boom(req: func.HttpRequest) -> func.HttpResponse:
    """Always fails: the host must answer 500 with an empty body."""
    raise RuntimeError("secret internals must not leak")


@app.route(route="nothing", methods=["POST"])
def http_nothing(req: func.HttpRequest) -> None:
    """Returns nothing: 204."""
    return None


@app.queue_trigger(
    arg_name="msg", queue_name="%SAMPLE_FAIL_QUEUE%", connection="AzureWebJobsStorage"
)
def queue_always_fails(msg: func.QueueMessage) -> None:
    """Records the attempt, then raises, so the host retries and finally poisons the message."""
    record("queue_always_fails", body=msg.get_body().decode(), dequeue_count=msg.dequeue_count)
    raise ValueError("this message never succeeds")


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_OK_QUEUE%", connection="AzureWebJobsStorage")
def queue_records(msg: func.QueueMessage) -> None:
    """Records what it received."""
    record(
        "queue_records",
        id=msg.id,
        body=msg.get_body().decode(),
        dequeue_count=msg.dequeue_count,
        inserted=msg.insertion_time.isoformat() if msg.insertion_time else None,
        pop_receipt=bool(msg.pop_receipt),
    )


@app.queue_trigger(
    arg_name="msg", queue_name="%SAMPLE_RELAY_QUEUE%", connection="AzureWebJobsStorage"
)
@app.queue_output(arg_name="out", queue_name="%SAMPLE_OK_QUEUE%", connection="AzureWebJobsStorage")
def queue_relay(msg: func.QueueMessage, out: func.Out[str]) -> None:
    """Forwards the body, upper-cased, through a queue output binding."""
    out.set(msg.get_body().decode().upper())


@app.timer_trigger(schedule="%SAMPLE_TIMER_SCHEDULE%", arg_name="timer", run_on_startup=False)
def timer_sleeps(timer: func.TimerRequest) -> None:
    """Records start and end of each run; sleeps in between so overlaps would show."""
    started = time.time()
    time.sleep(float(os.environ.get("SAMPLE_TIMER_SLEEP", "0")))
    record("timer_sleeps", start=started, end=time.time(), past_due=timer.past_due)
