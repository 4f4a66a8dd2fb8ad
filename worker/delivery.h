/*-------------------------------------------------------------------------
 *
 * delivery.h
 *	  Processing deliveries: --print writes events out and acks at once,
 *	  --exec runs a shell command per delivery, or per event.
 *
 * Contract.  delivery_receive takes one events message (a delivery id and
 * an events array) from c and answers it exactly once, through reply.c:
 * at once, or when its commands have exited, which delivery_reap notices
 * after SIGCHLD.  At most worker.opt.capacity commands run at once.  Once
 * worker.shutting_down is set new deliveries fail; delivery_kill_all ends
 * those in flight.  delivery_connection_gone, delivery_stderr_readable and
 * delivery_stderr_closed are server callbacks (see server.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_WORKER_DELIVERY_H
#define CLUSTER_WORKER_DELIVERY_H

#include <stdbool.h>

#include <jansson.h>

#include "server.h"

extern void delivery_receive(Connection *c, const char *id, json_t *events);
extern void delivery_reap(void);
extern void delivery_kill_all(void);
extern bool delivery_none_in_flight(void);
extern int	delivery_running(void);
extern int	delivery_queued(void);

/* server callbacks */
extern void delivery_connection_gone(Connection *c);
extern int	delivery_stderr_readable(void *delivery, int fd);
extern void delivery_stderr_closed(void *delivery);

#endif							/* CLUSTER_WORKER_DELIVERY_H */
