"""cluster_worker against a real server (test/run starts it): both modes,
per-event results, patches, failures, a wrong token, a takeover, the drain."""
import asyncio
import logging
import os
import sys
import time
import unittest

import psycopg2

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from cluster_worker import Worker  # noqa: E402
from watchdog import Watched  # noqa: E402

LISTEN = os.environ.get("CLUSTER_LISTEN")
QUIET = logging.getLogger("quiet")
QUIET.addHandler(logging.NullHandler())
QUIET.propagate = False


def sql(query, *args):
    with psycopg2.connect("") as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall() if cur.description else None


def value(query, *args):
    return sql(query, *args)[0][0]


async def until(fn, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def handler_named(name, options=""):
    sql(f"SELECT cluster.create_pump('{name}')")
    sql(f"SELECT cluster.create_handler('{name}', '{name}'{options})")


def publish(stream, n):
    sql("SELECT count(cluster.publish(%s, jsonb_build_object('n', i), key => 'k' || (i %% 5))) "
        "FROM generate_series(1, %s) i", stream, n)


def token(handler, args=""):
    return value(f"SELECT cluster.issue_worker_token('{handler}'{args})")


async def passed(handler):
    await until(lambda: value("SELECT lag_events = 0 AND in_flight = 0 FROM cluster.handlers WHERE name = %s",
                              handler), f"handler {handler} to pass every event")


class WorkerTest(Watched, unittest.IsolatedAsyncioTestCase):
    async def test_dial_in(self):
        handler_named("pdial", ", batch_size => 7")
        seen = []

        async def handle(events, context):
            self.assertEqual(context["handler"], "pdial")
            seen.extend(events)

        w = Worker(handle, connect=LISTEN, token=token("pdial"), logger=QUIET)
        await w.start()
        try:
            publish("pdial", 60)
            await passed("pdial")
        finally:
            await w.stop()
        self.assertEqual(len({e["id"] for e in seen}), 60)
        self.assertIsInstance(seen[0]["id"], str)
        self.assertEqual(seen[0]["attempt"], 1)
        by_key = {}
        for e in seen:
            by_key.setdefault(e["key"], []).append(int(e["id"]))
        for ids in by_key.values():
            self.assertEqual(ids, sorted(ids))

    async def test_failed_and_patch(self):
        handler_named("presults", ", batch_size => 10, max_attempts => 2")

        def handle(events, context):
            return {"failed": [{"eventId": e["id"], "error": f"bad {e['payload']['n']}"}
                               for e in events if e["payload"]["n"] % 10 == 0],
                    "patch": [{"op": "set", "path": ["seen", e["id"]], "value": e["attempt"]} for e in events]}

        w = Worker(handle, connect=LISTEN, token=token("presults"), logger=QUIET)
        await w.start()
        try:
            publish("presults", 30)
            await until(lambda: value("SELECT count(*) FROM cluster.dead_letters d JOIN cluster.handler h "
                                      "ON h.id = d.handler_id WHERE h.name = 'presults'") == 3, "dead letters")
            await passed("presults")
        finally:
            await w.stop()
        errors = [r[0] for r in sql("SELECT d.last_error FROM cluster.dead_letters d JOIN cluster.handler h "
                                    "ON h.id = d.handler_id WHERE h.name = 'presults' ORDER BY d.event_id")]
        self.assertEqual(errors, ["bad 10", "bad 20", "bad 30"])
        seen = value("SELECT cluster.handler_state('presults') -> 'seen'")
        self.assertEqual(len(seen), 30)
        self.assertIn(2, seen.values())

    async def test_raising_fails_the_delivery(self):
        handler_named("praise")
        handled = set()

        def handle(events, context):
            if any(e["attempt"] == 1 for e in events):
                raise RuntimeError("not yet")
            handled.update(e["id"] for e in events)

        w = Worker(handle, connect=LISTEN, token=token("praise"), logger=QUIET)
        await w.start()
        try:
            publish("praise", 5)
            await until(lambda: len(handled) == 5, "the second attempts")
        finally:
            await w.stop()

    async def test_dialled(self):
        handler_named("pdialled")
        seen = []
        w = Worker(lambda events, context: seen.extend(events), listen=("127.0.0.1", 0), secret="s3cret",
                   register={"dsn": "", "handler": "pdialled", "heartbeat": 0.5}, logger=QUIET)
        await w.start()
        try:
            self.assertRegex(w.worker_id, r"^[0-9a-f-]{36}$")
            publish("pdialled", 20)
            await passed("pdialled")
            row = sql("SELECT dialed_in, connected, address FROM cluster.workers WHERE handler = 'pdialled'")[0]
            self.assertEqual(row, (False, True, f"ws://127.0.0.1:{w.port}/"))
        finally:
            await w.stop()
        self.assertEqual(len(seen), 20)
        self.assertEqual(value("SELECT count(*) FROM cluster.worker"), 0)

    async def test_wrong_token_and_takeover(self):
        handler_named("ptakeover")
        warnings = []

        class Capture(logging.Handler):
            def emit(self, record):
                warnings.append(record.getMessage())

        log = logging.getLogger("capture")
        log.addHandler(Capture())
        log.propagate = False
        wrong = Worker(lambda e, c: None, connect=LISTEN, token="cwt_wrong", logger=log)
        await wrong.start()
        try:
            await until(lambda: any("the leader refused the connection: HTTP 401" in m for m in warnings),
                        "a refusal with its status")
        finally:
            await wrong.stop()
        seen = set()
        w = Worker(lambda events, c: seen.update(e["id"] for e in events), connect=LISTEN,
                   token=token("ptakeover"), logger=QUIET)
        await w.start()
        try:
            await until(lambda: w.connections == 1, "a connection")
            pid = value("SELECT pid FROM cluster.engines WHERE role = 'leader'")
            sql("SELECT pg_terminate_backend(%s)", pid)
            await until(lambda: w.connections == 2, "a connection to the new leader")
            publish("ptakeover", 10)
            await passed("ptakeover")
        finally:
            await w.stop()
        self.assertEqual(len(seen), 10)

    async def test_stop_drains(self):
        handler_named("pdrain", ", batch_size => 1")
        gate = asyncio.Event()
        done = []
        running = []

        async def handle(events, context):
            running.append(True)
            await gate.wait()
            done.extend(e["id"] for e in events)

        w = Worker(handle, connect=LISTEN, token=token("pdrain", ", capacity => 1"), capacity=1, logger=QUIET)
        await w.start()
        try:
            publish("pdrain", 3)
            # the handler runs a delivery (in_flight alone may be ahead of the worker)
            await until(lambda: running, "a delivery running in the handler")
            stopping = asyncio.ensure_future(w.stop())
            await asyncio.sleep(0)
            gate.set()
            await stopping
        finally:
            # if the test failed first: let the delivery finish, or stop() waits for it
            gate.set()
            await w.stop()
        self.assertEqual(len(done), 1)
        await until(lambda: value("SELECT (state #>> '{counters,processed}')::int FROM cluster.handler "
                                  "WHERE name = 'pdrain'") == 1, "its ack committed")


if __name__ == "__main__":
    unittest.main()
