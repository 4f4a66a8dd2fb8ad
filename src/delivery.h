/*-------------------------------------------------------------------------
 *
 * delivery.h
 *	  The delivery tracker's remote side: hand a handler's events to its
 *	  workers and take back their answers.
 *
 * A delivery is one batch sent to one worker, named "fence.run.seq" so that
 * answers to an older leader or an older load of the handler are told
 * apart.  It ends with an ack (its events are done, its patch is applied
 * at once in a subtransaction and made durable by the next commit; an
 * ack's "failed" events fail), a fail (a failed attempt for its events),
 * or the handler's ack_timeout.  A lost connection gives its deliveries'
 * events back at once, without counting an attempt.  With
 * key ordering, keys map to the connected workers by consistent hashing,
 * and an event waits while an earlier one of its key is in flight, so
 * per-key order holds while workers come and go.  Each worker gets at
 * most "capacity" deliveries in flight.  Everything a worker sends is
 * untrusted: what can't be trusted closes its connection with a status.
 * A delivery whose ack_timeout passes makes its worker unhealthy for a
 * while (no new keys while another is healthy) and goes to a healthy
 * worker without an attempt.  Dead letters marked for replay go out one
 * batch at a time.  It is the leader's remote executor (executor.h); it
 * owns what it keeps per handler (workers, deliveries in flight) and per
 * connection (counters, health), and reports the latter with
 * delivery_report() for the leader to push into shared memory.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_DELIVERY_H
#define CLUSTER_DELIVERY_H

#include "executor.h"
#include "shmem.h"
#include "transport.h"

extern const Executor remote_executor;

extern void delivery_clear_workers(void);
extern void delivery_add_worker(HandlerRun *h, WorkerConn *c);
extern void delivery_workers_added(void);
extern void delivery_forget_handler(HandlerRun *h);
extern void delivery_forget_all(bool connections_too);
extern void delivery_report(WorkerConn *c, WorkerStat *stat);

#endif							/* CLUSTER_DELIVERY_H */
