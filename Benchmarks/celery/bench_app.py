"""The Celery side of the queue benchmark: one app, one no-op task, one priority queue.

Configured to match the integrator's worker: RabbitMQ broker, a queue declared with x-max-priority 10, acks after
the task ran (task_acks_late), no prefetch beyond one message per process, no result backend.

Environment: BENCH_BROKER_URL (amqp://…), BENCH_QUEUE (queue name), BENCH_OUT (file each finished task appends to).
"""
import os
import time

from celery import Celery
from kombu import Exchange, Queue

QUEUE = os.environ.get("BENCH_QUEUE", "bench-celery")

app = Celery("bench_app", broker=os.environ.get("BENCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"))
app.conf.update(
    task_queues=[Queue(QUEUE, Exchange(QUEUE), routing_key=QUEUE, queue_arguments={"x-max-priority": 10})],
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    task_queue_max_priority=10,
    task_default_priority=5,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    result_backend=None,
    task_ignore_result=True,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_out = {"pid": None, "fd": None}


def _out_fd():
    # One append-mode descriptor per pool process, opened after the fork.
    if _out["pid"] != os.getpid():
        _out["fd"] = os.open(os.environ["BENCH_OUT"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _out["pid"] = os.getpid()
    return _out["fd"]


@app.task(name="bench.noop")
def noop(enqueued_at):
    """Does nothing but note when it finished: one short O_APPEND write, atomic across processes."""
    os.write(_out_fd(), b"%.6f %.6f\n" % (enqueued_at, time.time()))
