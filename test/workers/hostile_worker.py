#!/usr/bin/python3
"""A misbehaving worker on Debian's python3-websockets, a second WebSocket
implementation beside node's ws: it answers each delivery the way MODE says
and appends every close it sees to CLOSEFILE as "<code> <reason>".

usage: hostile_worker.py PORT CLOSEFILE MODE
MODE: bad-json, binary, deep, foreign-ids (as in hostile-worker.js)
"""
import asyncio
import json
import sys

import websockets

port, close_file, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def answer(msg):
    ack = {"type": "ack", "deliveryId": msg["deliveryId"]}
    if mode == "bad-json":
        return '{"type": "ack", "deliveryId": '
    if mode == "binary":
        return json.dumps(ack).encode()
    if mode == "deep":
        return '{"type": "ack", "deliveryId": "%s", "x": %s%s}' % (
            msg["deliveryId"], "[" * 100000, "]" * 100000)
    if mode == "foreign-ids":
        return json.dumps({**ack, "eventIds": ["999999999"]})
    return json.dumps(ack)


async def serve(ws, path=None):
    try:
        async for data in ws:
            msg = json.loads(data)
            if msg.get("type") == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif msg.get("type") == "events":
                await ws.send(answer(msg))
    except websockets.ConnectionClosed:
        pass
    with open(close_file, "a") as f:
        f.write("%s %s\n" % (ws.close_code, ws.close_reason))


async def main():
    async with websockets.serve(serve, "127.0.0.1", port, max_size=None):
        print("listening on %d" % port, flush=True)
        await asyncio.Future()


asyncio.run(main())
