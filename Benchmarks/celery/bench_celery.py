"""Celery 5 side of the queue benchmark: a prefork worker drains no-op tasks from a RabbitMQ priority queue.

Starts `celery -A bench_app worker -c 2 -P prefork -Q <queue>`, waits until it consumes, has --publishers processes
publish --tasks tasks in total with priorities 0–9 (each carrying its enqueue time), and waits until every task
has run (each appends "enqueued finished" to a file) and RabbitMQ holds no ready or unacknowledged message of the
queue. With --prefill the worker starts only after every task was published. Prints the figures as text or, with --json, as one JSON object. Exit code 1 when the run did not finish.

    python bench_celery.py --broker-url amqp://guest:guest@127.0.0.1:5672/%2f --tasks 10000 [--json]
"""
import argparse
import json
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=2, help="prefork pool processes")
    parser.add_argument("--publishers", type=int, default=4, help="publishing processes")
    parser.add_argument(
        "--prefill", action="store_true", help="publish every task first, then start the worker; the drain rate "
        "then counts from the first to the last finished task, so the worker's start-up is not counted")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for every task")
    parser.add_argument(
        "--rabbitmqctl", help="an executable running rabbitmqctl against the broker's node; used to confirm that "
        "no message is left unacknowledged (without it: the queue's ready count and `inspect active`)")
    parser.add_argument("--workdir", help="where the worker's log and the task file go (default: a temp folder)")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


def publisher(indices, queue, ready, start, done):
    """One publishing process: connect, wait for the start signal, publish its share, report when it finished.

    The connection is closed with the AMQP close handshake before the process exits: a process that just exits
    drops the tail of what it published (without publisher confirms nothing tells it).
    """
    from bench_app import app

    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=3)
        producer = app.amqp.Producer(connection)
        ready.release()
        start.wait()
        for index in indices:
            app.send_task("bench.noop", args=[time.time()], queue=queue, priority=index % 10, producer=producer)
    done.put(time.time())


def queue_counts(broker_url, queue):
    """(ready messages, consumers) of the queue, or None while it does not exist."""
    import kombu

    with kombu.Connection(broker_url) as connection:
        channel = connection.channel()
        try:
            _, ready, consumers = channel.queue_declare(queue=queue, passive=True)
            return ready, consumers
        except Exception:
            return None
        finally:
            try:
                channel.close()
            except Exception:
                pass


def unacked_by_rabbitmqctl(ctl, queue):
    """(ready, unacknowledged) of the queue as RabbitMQ reports them."""
    output = subprocess.run(
        [ctl, "list_queues", "-q", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged"],
        check=True, capture_output=True, text=True, timeout=60).stdout
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == queue:
            return int(parts[1]), int(parts[2])
    raise RuntimeError(f"rabbitmqctl does not list queue {queue}")


def peak_rss_mib(root_pid):
    """Sum of the peak resident memory (VmHWM) of a process and all its descendants, in MiB."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                parents[int(entry)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                pass
    family, frontier = {root_pid}, [root_pid]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in family:
                family.add(child)
                frontier.append(child)
    total_kib = 0
    for pid in family:
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        total_kib += int(line.split()[1])
        except OSError:
            pass
    return total_kib / 1024, len(family)


def percentile(sorted_values, fraction):
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def main():
    args = parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="integrator-bench-celery.")
    os.makedirs(workdir, exist_ok=True)
    queue = "bench-celery-" + uuid.uuid4().hex[:12]
    out_path = os.path.join(workdir, f"{queue}.done")
    log_path = os.path.join(workdir, f"{queue}.worker.log")
    open(out_path, "wb").close()
    os.environ.update(BENCH_BROKER_URL=args.broker_url, BENCH_QUEUE=queue, BENCH_OUT=out_path)
    sys.path.insert(0, HERE)
    import celery
    from bench_app import app

    worker = None

    def start_worker():
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "bench_app", "worker", "-c", str(args.concurrency), "-P", "prefork",
             "-Q", queue, "-n", f"bench-{queue}@%h", "--loglevel=WARNING", f"--logfile={log_path}"],
            cwd=HERE, env=os.environ.copy(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def fail(message):
        print(f"celery benchmark failed: {message}", file=sys.stderr)
        try:
            with open(log_path) as handle:
                tail = handle.readlines()[-20:]
            if tail:
                print("last lines of the worker log:\n" + "".join(tail), file=sys.stderr)
        except OSError:
            pass
        sys.exit(1)

    def wait_consuming():
        # The worker consumes once the queue (which it declares) has a consumer.
        deadline = time.monotonic() + 120
        while True:
            counts = queue_counts(args.broker_url, queue)
            if counts and counts[1] >= 1:
                return
            if worker.poll() is not None:
                fail(f"the worker exited with code {worker.returncode} before consuming")
            if time.monotonic() > deadline:
                fail("the worker did not start consuming within 120 s")
            time.sleep(0.2)

    try:
        if args.prefill:
            # The queue must exist before anything is published to it, with the arguments the worker declares.
            with app.connection_for_write() as connection:
                app.conf.task_queues[0](connection.default_channel).declare()
        else:
            worker = start_worker()
            wait_consuming()

        # Publish: every publisher connects first, then all start together.
        context = multiprocessing.get_context("fork")
        ready, start, done = context.Semaphore(0), context.Event(), context.Queue()
        processes = []
        for number in range(args.publishers):
            indices = list(range(number, args.tasks, args.publishers))
            process = context.Process(target=publisher, args=(indices, queue, ready, start, done))
            process.start()
            processes.append(process)
        for _ in processes:
            if not ready.acquire(timeout=60):
                fail("a publisher could not connect to the broker")
        publish_start = time.time()
        start.set()
        ends = [done.get(timeout=args.timeout) for _ in processes]
        for process in processes:
            process.join()
            if process.exitcode != 0:
                fail(f"a publisher exited with code {process.exitcode}")
        publish_seconds = max(ends) - publish_start
        if args.prefill:
            worker = start_worker()

        # Wait until every task has appended its line.
        deadline = time.monotonic() + args.timeout
        seen, offset = 0, 0
        stalled_since, stalled_at = time.monotonic(), 0
        with open(out_path, "rb") as handle:
            while seen < args.tasks:
                handle.seek(offset)
                chunk = handle.read()
                complete = chunk[: chunk.rfind(b"\n") + 1]
                seen += complete.count(b"\n")
                offset += len(complete)
                if seen >= args.tasks:
                    break
                if worker.poll() is not None:
                    fail(f"the worker exited with code {worker.returncode}; {seen} of {args.tasks} tasks ran")
                if time.monotonic() > deadline:
                    fail(f"timed out after {args.timeout:.0f} s: {seen} of {args.tasks} tasks ran")
                if seen != stalled_at:
                    stalled_since, stalled_at = time.monotonic(), seen
                elif args.rabbitmqctl and time.monotonic() - stalled_since > 10:
                    # No progress for 10 s: if RabbitMQ holds nothing of the queue, the rest never arrived.
                    if unacked_by_rabbitmqctl(args.rabbitmqctl, queue) == (0, 0):
                        fail(f"{args.tasks - seen} of {args.tasks} messages were lost: {seen} tasks ran and "
                             "the queue holds no ready or unacknowledged message")
                    stalled_since = time.monotonic()
                time.sleep(0.1)

        # Then until RabbitMQ holds nothing of the queue: every task was acknowledged.
        deadline = time.monotonic() + 60
        while True:
            if args.rabbitmqctl:
                ready_count, unacked = unacked_by_rabbitmqctl(args.rabbitmqctl, queue)
                settled = ready_count == 0 and unacked == 0
            else:
                counts = queue_counts(args.broker_url, queue)
                active = app.control.inspect(timeout=1.0).active() or {}
                settled = counts is not None and counts[0] == 0 and not any(active.values())
            if settled:
                break
            if time.monotonic() > deadline:
                fail("every task ran, but messages stayed unacknowledged for 60 s")
            time.sleep(0.1)
        confirmed_at = time.time()
        memory_mib, process_count = peak_rss_mib(worker.pid)
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()

    enqueued, finished = [], []
    with open(out_path) as handle:
        for line in handle:
            first, second = line.split()
            enqueued.append(float(first))
            finished.append(float(second))
    if len(finished) != args.tasks:
        fail(f"expected {args.tasks} finished tasks, the file holds {len(finished)} (a task ran twice?)")
    first_enqueue = min(enqueued)
    # Concurrent: from the first publish. Prefilled: from the first finished task (tasks - 1 intervals).
    drain_seconds = max(finished) - (min(finished) if args.prefill else first_enqueue)
    drained = args.tasks - 1 if args.prefill and args.tasks > 1 else args.tasks
    latencies = sorted((f - e) * 1000 for e, f in zip(enqueued, finished))
    report = {
        "system": "celery", "celery_version": celery.__version__, "broker": "amqp", "queue": queue,
        "tasks": args.tasks, "concurrency": args.concurrency, "publishers": args.publishers,
        "publish_seconds": round(publish_seconds, 3), "publish_rate": round(args.tasks / publish_seconds, 1),
        "drain_seconds": round(drain_seconds, 3), "drain_rate": round(drained / drain_seconds, 1),
        "mode": "prefill" if args.prefill else "concurrent",
        "confirmed_seconds": round(confirmed_at - first_enqueue, 3),
        "latency_p50_ms": round(percentile(latencies, 0.50), 1), "latency_p99_ms": round(percentile(latencies, 0.99), 1),
        "peak_rss_mib": round(memory_mib, 1), "worker_processes": process_count,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"celery {report['celery_version']} queue benchmark: RabbitMQ, queue {queue}\n"
              f"  tasks {args.tasks}, prefork processes {args.concurrency}, publishers {args.publishers}, "
              f"{report['mode']}\n"
              f"  publish   {report['publish_rate']:.0f} tasks/s  ({publish_seconds:.2f} s to publish all)\n"
              f"  drain     {report['drain_rate']:.0f} tasks/s  ({drain_seconds:.2f} s from the first "
              f"{'task end' if args.prefill else 'publish'} to the last task's end; all acknowledged {report['confirmed_seconds']:.2f} s after the first publish)\n"
              f"  latency   p50 {report['latency_p50_ms']:.0f} ms, p99 {report['latency_p99_ms']:.0f} ms  "
              f"(publish to the task's end)\n"
              f"  peak RSS  {memory_mib:.1f} MiB  (sum of VmHWM of the worker's {process_count} processes)")


if __name__ == "__main__":
    main()
