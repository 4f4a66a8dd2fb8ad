# bench/realistic's Python worker: dials in with CLUSTER_WORKER_TOKEN to
# the leader at $1 (ws://host:port/) as worker $2.  Every tenth event
# takes 50 ms; an event whose id is 7 modulo 20 fails its first attempt;
# each answer patches the state with the delivery's id under seen.<name>.
import asyncio
import os
import sys

from cluster_worker import Worker

url, name = sys.argv[1], sys.argv[2]


async def handle(events, context):
    failed = []
    for e in events:
        n = int(e["id"])
        if n % 10 == 0:
            await asyncio.sleep(0.05)
        if n % 20 == 7 and e["attempt"] == 1:
            failed.append({"eventId": e["id"], "error": "fails once"})
    return {"failed": failed,
            "patch": [{"op": "set", "path": ["seen", name], "value": context["deliveryId"]}]}


worker = Worker(handle, connect=url, token=os.environ["CLUSTER_WORKER_TOKEN"], capacity=4)
asyncio.run(worker.run_until_signal())
