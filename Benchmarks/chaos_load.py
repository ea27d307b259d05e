#!/usr/bin/env python3
"""The chaos run's load and its checks (started by Benchmarks/chaos.sh, which runs the fleet and the kills).

It runs a receiver that answers 500 to 10 % of requests, configures the fleet through its API, sends a mixed load for
the run's duration — demo fetches on a 1-second schedule, webhook sends, scheduled messages falling due during the
run, chat buffer traffic — then waits for everything to settle and checks that nothing was lost or done twice.
Exit status 1 on any loss; the figures go to standard output as JSON and as text.
"""
import argparse
import concurrent.futures
import datetime
import http.server
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

FAILURE_SHARE = 0.10


class Receiver:
    """Records every request it accepts (2xx) per path, and refuses a random tenth with 500."""

    def __init__(self):
        self.lock = threading.Lock()
        self.accepted = {"/hooks": [], "/scheduled": [], "/chat": []}
        self.refused = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                refuse = random.random() < FAILURE_SHARE
                if not refuse:
                    with receiver.lock:
                        receiver.accepted.setdefault(self.path, []).append(
                            (self.headers.get("webhook-id"), json.loads(body or b"null"), time.time()))
                else:
                    with receiver.lock:
                        receiver.refused += 1
                status = 500 if refuse else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self, path):
        with self.lock:
            return list(self.accepted.get(path, []))


class API:
    def __init__(self, base, token):
        self.base = base
        self.token = token

    def call(self, method, path, body=None, attempts=60):
        """Calls the API, retrying connection errors and 5xx (the fleet is being broken on purpose). Only for calls that
        are safe to repeat; returns (status, json)."""
        last = None
        for _ in range(attempts):
            try:
                return self.once(method, path, body)
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as error:
                last = error
            except ServerError as error:
                last = error
            time.sleep(0.5)
        raise RuntimeError(f"{method} {path} kept failing: {last}")

    def once(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("authorization", f"Bearer {self.token}")
        request.add_header("content-type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read()
                return response.status, (json.loads(text) if text else None)
        except urllib.error.HTTPError as error:
            text = error.read()
            if error.code >= 500:
                raise ServerError(f"{error.code}: {text[:200]!r}")
            return error.code, (json.loads(text) if text else None)


class ServerError(Exception):
    pass


def iso(moment):
    return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def psql(url, query):
    output = subprocess.run(["psql", url, "-AtX", "-c", query], check=True, capture_output=True, text=True).stdout
    return [line.split("|") for line in output.splitlines() if line]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--api", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--webhooks", type=int, default=20_000)
    parser.add_argument("--scheduled", type=int, default=10_000)
    parser.add_argument("--chat-users", type=int, default=1_000)
    parser.add_argument("--settle-seconds", type=int, default=240)
    parser.add_argument("--started-file", help="written when the load starts, so the kills start with it")
    options = parser.parse_args()

    receiver = Receiver()
    target = f"http://127.0.0.1:{receiver.port}"
    api = API(options.api, options.token)
    run_id = f"{int(time.time())}"

    # Retries come back within seconds (and never give up here: the receiver refuses only by chance).
    retry_policy = {"max_retries": 12, "initial_delay_seconds": 1, "backoff_multiplier": 2, "max_delay_seconds": 8}
    status, answer = api.call("POST", "/api/v1/webhooks/configure", {
        "tenant_id": "chaos", "base_url": target + "/hooks", "secret_key": "chaos-secret-key-0001", "retry_policy": retry_policy})
    assert status in (200, 201), answer
    status, answer = api.call("PUT", "/api/v1/chat-buffer/config", {"webhook_url": target + "/chat"})
    assert status == 200, answer
    status, integration = api.call("POST", "/api/v1/integrations", {
        "name": f"chaos-demo-{run_id}", "provider": "demo", "config": {"records": 20}})
    assert status == 201, integration
    status, schedule = api.call("POST", "/api/v1/schedules", {
        "name": f"chaos-every-second-{run_id}", "integration": integration["id"], "interval": {"every": 1},
        "misfire": "run_all", "misfire_grace_seconds": 3600, "overlap": "allow"})
    assert status == 201, schedule

    start = time.time()
    end = start + options.seconds
    if options.started_file:
        with open(options.started_file, "w") as marker:
            marker.write(str(start))
    lock = threading.Lock()
    sent_events = set()
    scheduled = {}
    chat_sent = {}        # user -> [text] whose POST was answered 200, in order
    chat_ambiguous = set()  # texts whose POST got no answer: each may arrive at most once
    chat_refused = set()    # texts answered 4xx/5xx: must never arrive
    post_failures = []

    def send_webhooks():
        batch = 50
        batches = options.webhooks // batch
        pace = (options.seconds * 0.6) / max(batches, 1)
        for index in range(batches):
            events = [{"tenant_id": "chaos", "event_type": "chaos.event", "event_id": f"chaos-{run_id}-{index * batch + n}",
                       "payload": {"n": index * batch + n}} for n in range(batch)]
            status, answer = api.call("POST", "/api/v1/webhooks/send/batch", {"events": events})
            if status != 202:
                post_failures.append(f"webhook batch {index}: {status} {answer}")
                continue
            with lock:
                sent_events.update(event["event_id"] for event in events)
            time.sleep(max(0, start + (index + 1) * pace - time.time()))

    def schedule_messages():
        # Due times spread over the run, from 15 s after the start to 85 % of it; posted in the first third.
        count = options.scheduled
        first, last = start + 15, start + options.seconds * 0.85
        posting_window = options.seconds / 3

        def post(index):
            message_id = f"chaos-{run_id}-{index:06d}"
            due = first + (last - first) * index / max(count - 1, 1)
            body = {"id": message_id, "scheduleTo": iso(due), "payload": {"message": message_id}, "webhookUrl": target + "/scheduled"}
            status, answer = api.call("POST", "/messages", body)
            if status not in (200, 201):
                post_failures.append(f"scheduled {message_id}: {status} {answer}")
                return
            with lock:
                scheduled[message_id] = due

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for chunk_start in range(0, count, 200):
                list(pool.map(post, range(chunk_start, min(count, chunk_start + 200))))
                time.sleep(max(0, start + posting_window * (chunk_start + 200) / count - time.time()))

    def chat_traffic():
        # Each user talks in bursts: a few messages a second apart with a 2-second ttl, then quiet, until the end.
        users = [f"chaos-{run_id}-user-{n}" for n in range(options.chat_users)]
        counters = {user: 0 for user in users}

        def speak(user):
            counters[user] += 1
            text = f"{user}-m{counters[user]}"
            try:
                status, _ = api.once("POST", "/api/message", {"user": user, "message": text, "ttl": 2})
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, ServerError):
                with lock:
                    chat_ambiguous.add(text)
                return
            with lock:
                if status == 200:
                    chat_sent.setdefault(user, []).append(text)
                else:
                    chat_refused.add(text)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            while time.time() < end - 20:
                burst = random.sample(users, min(len(users), 20))
                for _ in range(3):
                    list(pool.map(speak, burst))
                time.sleep(1)

    def tune_owned_tenants():
        # The scheduled-messages and chat-buffer tenants are made on first use; once they exist, they get the same
        # patient retry policy as the chaos tenant (5 retries would leave one event in a million dead by chance).
        pending = {"scheduled-messages", "chat-buffer"}
        while pending and time.time() < end:
            for tenant in sorted(pending):
                status, _ = api.call("GET", f"/api/v1/webhooks/config/{tenant}/secret")
                if status == 200:
                    status, answer = api.call("POST", "/api/v1/webhooks/configure", {
                        "tenant_id": tenant, "base_url": target + "/unused", "retry_policy": retry_policy})
                    if status in (200, 201):
                        pending.discard(tenant)
                    else:
                        post_failures.append(f"configuring {tenant}: {status} {answer}")
                        pending.discard(tenant)
            time.sleep(1)

    threads = [threading.Thread(target=work) for work in (send_webhooks, schedule_messages, chat_traffic, tune_owned_tenants)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load_done = time.time()
    time.sleep(max(0, end - time.time()))
    # The schedule stops at the end of the run, so its fire times form a closed range.
    api.call("PATCH", f"/api/v1/schedules/{schedule['id']}", {"enabled": False})

    # Settle: wait until every expected delivery arrived, or the settle time runs out.
    expected_chat = sum(len(texts) for texts in chat_sent.values())
    settle_deadline = time.time() + options.settle_seconds
    while time.time() < settle_deadline:
        hooks = {webhook_id for webhook_id, _, _ in receiver.snapshot("/hooks")}
        fired = {body["message"] for _, body, _ in receiver.snapshot("/scheduled") if isinstance(body, dict)}
        chat_arrived = sum(len(body.get("messages", [])) for _, body in
                           {wid: body for wid, body, _ in receiver.snapshot("/chat")}.items())
        running = int(psql(options.database_url, "SELECT count(*) FROM task_runs WHERE state IN ('started', 'queued', 'retrying')")[0][0])
        if sent_events <= hooks and set(scheduled) <= fired and chat_arrived >= expected_chat and running == 0:
            break
        time.sleep(2)
    settled = time.time()

    problems = list(post_failures)
    # 1. Every send delivered; a repeat carries the same webhook-id (the event id the send answered).
    hooks = receiver.snapshot("/hooks")
    by_id = {}
    for webhook_id, body, _ in hooks:
        by_id.setdefault(webhook_id, set()).add(json.dumps(body, sort_keys=True))
    missing = sent_events - set(by_id)
    if missing:
        problems.append(f"{len(missing)} webhook sends never delivered, e.g. {sorted(missing)[:3]}")
    payload_ids = {}
    for webhook_id, body, _ in hooks:
        # Fetched demo records fan out to this tenant too; only the sends are checked here.
        if not isinstance(body, dict) or body.get("event_type") != "chaos.event":
            continue
        payload_ids.setdefault(body["payload"].get("n"), set()).add(webhook_id)
    doubled = [n for n, ids in payload_ids.items() if len(ids) > 1]
    if doubled:
        problems.append(f"{len(doubled)} webhook payloads arrived under two webhook-ids")
    webhook_duplicates = len(hooks) - len(by_id)

    # 2. Every scheduled message fired exactly once (a repeated delivery keeps its webhook-id).
    fired_ids = {}
    lateness = []
    for webhook_id, body, arrived in receiver.snapshot("/scheduled"):
        message_id = body.get("message") if isinstance(body, dict) else None
        if message_id not in fired_ids and message_id in scheduled:
            lateness.append(arrived - scheduled[message_id])
        fired_ids.setdefault(message_id, set()).add(webhook_id)
    never = set(scheduled) - set(fired_ids)
    twice = [message for message, ids in fired_ids.items() if len(ids) > 1]
    if never:
        problems.append(f"{len(never)} scheduled messages never fired, e.g. {sorted(never)[:3]}")
    if twice:
        problems.append(f"{len(twice)} scheduled messages fired more than once, e.g. {twice[:3]}")

    # 3. Every chat message in exactly one flush, in order. Flushes of one user are ordered by their webhook-id (the
    #    buffer's id, which grows with time).
    flushes = {}
    for webhook_id, body, _ in receiver.snapshot("/chat"):
        flushes[webhook_id] = body
    received = {}
    for webhook_id in sorted(flushes):
        body = flushes[webhook_id]
        received.setdefault(body.get("user"), []).extend(body.get("messages", []))
    chat_messages = 0
    for user, texts in received.items():
        chat_messages += len(texts)
        if len(texts) != len(set(texts)):
            problems.append(f"chat user {user}: a message arrived in two flushes")
        acknowledged = chat_sent.get(user, [])
        arrived = [text for text in texts if text in set(acknowledged)]
        if arrived != acknowledged:
            problems.append(f"chat user {user}: flushed {len(arrived)} of {len(acknowledged)} messages or out of order")
        stray = [text for text in texts if text not in set(acknowledged) and text not in chat_ambiguous]
        if stray:
            problems.append(f"chat user {user}: {len(stray)} messages that were refused or never sent arrived")
    for user, acknowledged in chat_sent.items():
        if user not in received:
            problems.append(f"chat user {user}: none of {len(acknowledged)} messages flushed")

    # 4. The schedule's fire times: one run each, none missing between the first and the last.
    fires = [row[0] for row in psql(options.database_url,
                                    f"SELECT extract(epoch FROM scheduled_for) FROM task_runs WHERE schedule_id = '{schedule['id']}' ORDER BY scheduled_for")]
    fire_times = [round(float(value)) for value in fires]
    gaps = [b - a for a, b in zip(fire_times, fire_times[1:]) if b - a != 1]
    if len(set(fire_times)) != len(fire_times):
        problems.append("a schedule fire time ran twice")
    if gaps:
        problems.append(f"{len(gaps)} gaps in the schedule's fire times (largest {max(gaps)} s)")
    if len(fire_times) < options.seconds * 0.9:
        problems.append(f"only {len(fire_times)} fire times in a {options.seconds} s run")
    worst_fire_delay = psql(options.database_url, f"""
        SELECT coalesce(max(extract(epoch FROM enqueued_at - scheduled_for)), 0) FROM task_runs WHERE schedule_id = '{schedule['id']}'""")[0][0]

    # 5. No run left started (or waiting), and nothing dead.
    states = dict(psql(options.database_url, "SELECT state, count(*) FROM task_runs GROUP BY state"))
    for state in ("started", "queued", "retrying"):
        if int(states.get(state, 0)):
            problems.append(f"{states[state]} task runs left {state}")
    if int(states.get("dead", 0)):
        problems.append(f"{states['dead']} task runs dead")
    for tenant in ("chaos", "scheduled-messages", "chat-buffer"):
        status, dead = api.call("GET", f"/api/v1/webhooks/dead-letter?tenant_id={tenant}")
        count = len(dead.get("items", dead.get("events", []))) if isinstance(dead, dict) else 0
        if count:
            problems.append(f"{count} dead letters for tenant {tenant} (the receiver refuses only by chance)")

    figures = {
        "seconds": options.seconds,
        "webhook_sends": len(sent_events), "webhook_requests_accepted": len(hooks), "webhook_duplicates_same_id": webhook_duplicates,
        "scheduled_messages": len(scheduled), "scheduled_fired": len(fired_ids),
        "scheduled_lateness_p50_s": round(sorted(lateness)[len(lateness) // 2], 3) if lateness else None,
        "scheduled_lateness_max_s": round(max(lateness), 3) if lateness else None,
        "chat_messages_acknowledged": sum(len(t) for t in chat_sent.values()), "chat_messages_ambiguous": len(chat_ambiguous),
        "chat_flushes": len(flushes), "chat_messages_flushed": chat_messages,
        "schedule_fire_times": len(fire_times), "worst_fire_delay_s": round(float(worst_fire_delay), 3),
        "requests_refused_by_receiver": receiver.refused,
        "load_seconds": round(load_done - start, 1), "settle_seconds": round(settled - max(end, load_done), 1),
        "deliveries_per_second": round((len(hooks) + len(fired_ids) + len(flushes)) / max(settled - start, 1), 1),
        "task_states": states,
        "problems": problems,
    }
    print(json.dumps(figures, indent=2))
    if problems:
        print("CHAOS RUN FAILED:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    print("chaos run passed: nothing lost, nothing done twice", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
