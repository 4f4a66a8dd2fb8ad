"""Workers for the cluster PostgreSQL extension, on asyncio.

The application writes one coroutine (or function), handle(events, context),
that returns None (every event done) or a dict with "failed" (a list of
{"eventId", "error"}) and/or "patch" (state patch operations); raising fails
the whole delivery.  The worker does the rest of docs/protocol.md: the
connection (dialing in with a token, or listening and registering through
psycopg2 with heartbeats), capacity, per-event results, reconnects with
backoff, and a graceful drain on stop() (or SIGTERM / SIGINT with
run_until_signal()).

Dependencies: websockets (Debian's python3-websockets) and, to be dialled,
psycopg2 (python3-psycopg2).
"""
import asyncio
import json
import logging
import signal

import websockets

__all__ = ["Worker"]

DIAL_MIN = 0.1
DIAL_MAX = 1.0  # a takeover's gap stays about a second
QUEUE_FACTOR = 4  # deliveries waiting for a slot, per slot
MAX_ERROR = 1024


def _error_text(err):
    text = str(err) or type(err).__name__
    return text[:MAX_ERROR]


class Worker:
    """A worker of one handler: Worker(handle, connect=..., token=...) dials
    in; Worker(handle, listen=(host, port), register={...}) is dialled."""

    def __init__(self, handle, *, connect=None, token=None, ssl=None,
                 listen=None, secret=None, register=None, capacity=4,
                 logger=None):
        if (connect is None) == (listen is None):
            raise TypeError("give exactly one of connect (dial in) and listen (be dialled)")
        if connect is not None and not token:
            raise TypeError("connect needs a token")
        if listen is not None and register is None:
            raise TypeError("listen needs register={'dsn': ..., 'handler': ...}")
        self.handle = handle
        self.connect = connect
        self.token = token
        self.ssl = ssl
        self.listen = listen
        self.secret = secret
        self.register = register
        self.capacity = capacity
        self.log = logger or logging.getLogger("cluster_worker")
        self.handler = register["handler"] if register else None
        self.worker_id = None
        self.port = None
        self._slots = asyncio.Semaphore(capacity)
        self._waiting = 0
        self._running = set()
        self._sockets = set()
        self._stopping = False
        self._stopped = None
        self._tasks = []
        self.connections = 0  # how many times a connection was made

    # --- life ------------------------------------------------------------

    async def start(self):
        """Dial in, or listen and register; returns once started."""
        self._stopped = asyncio.get_running_loop().create_future()
        if self.connect:
            self._tasks.append(asyncio.create_task(self._dial_loop()))
            return
        import psycopg2  # only needed to be dialled
        self._db = await asyncio.to_thread(psycopg2.connect, self.register.get("dsn", ""))
        self._db.autocommit = True
        host, port = self.listen
        self._server = await websockets.serve(self._serve, host, port,
                                              process_request=self._check_secret,
                                              max_size=None)
        self.port = self._server.sockets[0].getsockname()[1]
        await self._register()
        self._tasks.append(asyncio.create_task(self._heartbeats()))

    async def stop(self):
        """Finish what is in flight, refuse new deliveries, unregister, close (1001)."""
        if self._stopping:
            return await asyncio.shield(self._stopped)
        self._stopping = True
        self.log.info("stopping: finishing %d deliveries", len(self._running))
        for task in self._tasks:
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self.worker_id is not None:
            try:
                await asyncio.to_thread(self._sql, "SELECT cluster.unregister_worker(%s)", self.worker_id)
            except Exception as err:  # the database may be gone: nothing to undo
                self.log.warning("could not unregister: %s", err)
        for ws in list(self._sockets):
            await ws.close(1001, "worker is shutting down")
        if self.listen:
            self._server.close()
            await self._server.wait_closed()
            self._db.close()
        if not self._stopped.done():
            self._stopped.set_result(None)

    async def run_until_signal(self):
        """start(), then stop() at SIGTERM or SIGINT."""
        loop = asyncio.get_running_loop()
        await self.start()
        for signo in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signo, lambda: asyncio.ensure_future(self.stop()))
        await self._stopped

    # --- dialing in ------------------------------------------------------

    async def _dial_loop(self):
        delay = DIAL_MIN
        while not self._stopping:
            try:
                async with websockets.connect(
                        self.connect, ssl=self.ssl, max_size=None,
                        extra_headers={"Authorization": f"Bearer {self.token}"}) as ws:
                    delay = DIAL_MIN
                    self.log.info("connected to the leader at %s", self.connect)
                    await self._serve(ws)
                    why = f"connection closed ({ws.close_code} {ws.close_reason})"
            except websockets.exceptions.InvalidStatusCode as err:
                why = f"the leader refused the connection: HTTP {err.status_code}"
            except (OSError, websockets.exceptions.WebSocketException) as err:
                why = f"connection error: {_error_text(err)}"
            if self._stopping:
                return
            self.log.warning("%s; dialing again in %.1f s", why, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, DIAL_MAX)

    # --- being dialled ---------------------------------------------------

    def _check_secret(self, path, headers):
        if self.secret and headers.get("Authorization") != f"Bearer {self.secret}":
            return (401, [], b"missing or wrong bearer token\n")
        return None

    def _sql(self, query, *args):
        with self._db.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchone()[0]

    async def _register(self):
        reg = self.register
        address = reg.get("address") or f"ws://{self.listen[0]}:{self.port}/"
        self.worker_id = await asyncio.to_thread(
            self._sql, "SELECT cluster.register_worker(%s, %s, %s, %s)",
            reg["handler"], address, self.secret, self.capacity)
        self.log.info("registered as worker %s of handler %r at %s", self.worker_id, reg["handler"], address)

    async def _heartbeats(self):
        every = self.register.get("heartbeat", 5.0)
        while True:
            await asyncio.sleep(every)
            try:
                alive = await asyncio.to_thread(self._sql, "SELECT cluster.worker_heartbeat(%s)", self.worker_id)
                if not alive:
                    self.log.warning("the registration lapsed: registering again")
                    await self._register()
            except Exception as err:
                self.log.warning("heartbeat failed: %s", err)

    # --- the protocol ----------------------------------------------------

    async def _serve(self, ws, path=None):
        self._sockets.add(ws)
        self.connections += 1
        try:
            async for data in ws:
                if isinstance(data, bytes):
                    await ws.close(1003, "binary messages are not part of the protocol")
                    return
                try:
                    msg = json.loads(data)
                except ValueError:
                    await ws.close(1007, "invalid JSON")
                    return
                kind = msg.get("type") if isinstance(msg, dict) else None
                if kind == "hello":
                    self.handler = msg.get("handler")
                    self.log.info("hello from leader %s: fence %s, handler %r",
                                  msg.get("leader"), msg.get("fence"), self.handler)
                elif kind == "ping":
                    await ws.send('{"type": "pong"}')
                elif kind == "events":
                    self._receive(ws, msg)
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            self._sockets.discard(ws)

    def _receive(self, ws, msg):
        delivery_id = msg.get("deliveryId")
        if not isinstance(delivery_id, str) or not isinstance(msg.get("events"), list):
            return
        if self._stopping:
            work = self._send(ws, {"type": "fail", "deliveryId": delivery_id, "error": "worker is shutting down"})
        elif self._waiting >= QUEUE_FACTOR * self.capacity:
            work = self._send(ws, {"type": "fail", "deliveryId": delivery_id, "error": "worker is over capacity"})
        else:
            work = self._run(ws, msg)
        task = asyncio.create_task(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, ws, msg):
        self._waiting += 1
        async with self._slots:
            self._waiting -= 1
            context = {"deliveryId": msg["deliveryId"], "fence": msg.get("fence"),
                       "handler": self.handler, "log": self.log}
            try:
                result = self.handle(msg["events"], context)
                if asyncio.iscoroutine(result):
                    result = await result
                answer = {"type": "ack", "deliveryId": msg["deliveryId"]}
                result = result or {}
                if result.get("failed"):
                    answer["failed"] = [{"eventId": str(f["eventId"]),
                                         "error": _error_text(f.get("error", "failed"))}
                                        for f in result["failed"]]
                if result.get("patch"):
                    answer["patch"] = result["patch"]
            except Exception as err:
                answer = {"type": "fail", "deliveryId": msg["deliveryId"], "error": _error_text(err)}
            # the answer belongs to the connection the delivery came on
            await self._send(ws, answer)

    async def _send(self, ws, answer):
        try:
            await ws.send(json.dumps(answer))
        except websockets.exceptions.ConnectionClosed:
            pass  # the leader sends those events again
