"""RabbitMQ's own CPU time per task message, with no worker and no database: the floor under any RabbitMQ figure.

Publishes N persistent messages (priorities 0-9) to a fresh durable queue declared with x-max-priority 10, then
consumes them all with manual acknowledgements (prefetch --window, a `multiple` ack every half window), the way
integrator's worker uses the broker. Publisher confirms are left off, so the figure is a lower bound: integrator also
has the broker confirm every publish. Reads the broker's CPU time (user + system, from /proc/<pid>/stat) before and
after each phase and prints microseconds of broker CPU per message.

    python3 Benchmarks/rabbitmq_cost.py --url amqp://guest:guest@127.0.0.1:5672/ --pid <beam.smp pid> [--messages 50000]

Needs py-amqp (installed with Celery in the benchmark's virtualenv).
"""
import argparse
import json
import os
import time
import urllib.parse
import uuid

import amqp


def broker_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connect(url):
    parts = urllib.parse.urlparse(url)
    vhost = urllib.parse.unquote(parts.path[1:]) or "/"
    connection = amqp.Connection(
        host=f"{parts.hostname}:{parts.port or 5672}", userid=parts.username or "guest",
        password=parts.password or "guest", virtual_host=vhost)
    connection.connect()
    return connection


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", type=int, required=True, help="process id of the RabbitMQ node (beam.smp)")
    parser.add_argument("--messages", type=int, default=50000)
    parser.add_argument("--window", type=int, default=500)
    args = parser.parse_args()

    connection = connect(args.url)
    channel = connection.channel()
    queue = "cost-" + uuid.uuid4().hex[:12]
    channel.queue_declare(queue, durable=True, auto_delete=False, arguments={"x-max-priority": 10})
    body = json.dumps({"id": str(uuid.uuid4()), "name": "core.noop", "args": {}, "queue": queue, "priority": 0,
                       "attempt": 1, "enqueued_at": time.time(), "integration": None, "schedule": None,
                       "max_attempts": None}).encode()

    cpu_before, started = broker_cpu_seconds(args.pid), time.monotonic()
    for index in range(args.messages):
        channel.basic_publish(amqp.Message(body, delivery_mode=2, priority=index % 10), routing_key=queue)
    publish_seconds = time.monotonic() - started
    cpu_published = broker_cpu_seconds(args.pid)

    consumer = connection.channel()
    consumer.basic_qos(0, args.window, False)
    received = []
    tag = consumer.basic_consume(queue, callback=lambda message: received.append(message.delivery_tag))
    acknowledged = 0
    started = time.monotonic()
    while acknowledged < args.messages:
        connection.drain_events(timeout=10)
        if len(received) - acknowledged >= min(args.window // 2, args.messages - acknowledged):
            consumer.basic_ack(received[-1], multiple=True)
            acknowledged = len(received)
    consume_seconds = time.monotonic() - started
    cpu_consumed = broker_cpu_seconds(args.pid)
    consumer.basic_cancel(tag)
    consumer.queue_delete(queue)
    connection.close()

    publish_us = (cpu_published - cpu_before) / args.messages * 1e6
    consume_us = (cpu_consumed - cpu_published) / args.messages * 1e6
    print(json.dumps({
        "messages": args.messages,
        "publish_rate": round(args.messages / publish_seconds),
        "consume_rate": round(args.messages / consume_seconds),
        "broker_cpu_us_per_publish": round(publish_us, 1),
        "broker_cpu_us_per_delivery_and_ack": round(consume_us, 1),
        "broker_cpu_us_per_task": round(publish_us + consume_us, 1),
        "tasks_per_second_if_the_broker_had_both_cores": round(2e6 / (publish_us + consume_us)),
    }))


if __name__ == "__main__":
    main()
