"""The local host runs at most PYTHON_THREADPOOL_THREAD_COUNT sync queue/timer functions at
once, as the Python worker's thread pool does, however many messages the host hands over."""

from __future__ import annotations

import threading
import time

import azure.functions as func

from localdev.funchost.invocation import Invoker, index_functions

app = func.FunctionApp()
RUNNING = {"now": 0, "most": 0}
LOCK = threading.Lock()


@app.queue_trigger(arg_name="msg", queue_name="work", connection="AzureWebJobsStorage")
def queue_slow(msg: func.QueueMessage) -> None:
    with LOCK:
        RUNNING["now"] += 1
        RUNNING["most"] = max(RUNNING["most"], RUNNING["now"])
    time.sleep(0.05)
    with LOCK:
        RUNNING["now"] -= 1


def test_no_more_functions_run_at_once_than_the_workers_threads():
    spec = index_functions(app)[0]
    invoker = Invoker(worker_threads=2)
    message = func.QueueMessage(body=b"x")  # type: ignore[no-untyped-call]
    threads = [
        threading.Thread(target=invoker.invoke, args=(spec, message, "test")) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert RUNNING["most"] == 2
