/*-------------------------------------------------------------------------
 *
 * delivery.c
 *	  Remote delivery over the transport.
 *
 * Runs inside the leader's round transaction (SPI connected), after the
 * transport has moved what the network had: it reads the workers'
 * answers, expires deliveries, and sends new ones.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <libwebsockets.h>

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "delivery.h"
#include "protocol.h"
#include "transport.h"
#include "xact.h"

#define RING_POINTS 32			/* virtual nodes per worker */

/* Loads of handlers in this process, so that delivery ids never repeat. */
static uint32 runs = 0;

typedef struct Delivery
{
	char		id[48];
	WorkerConn *conn;
	TimestampTz sent_at;
	TimestampTz deadline;
	int			n;
	EventPos   *events;			/* replays: the event ids, txid 0 */
	int64	   *replay_ids;		/* NULL, or the dead letters replayed */
	bool		suspect;		/* one event, out before when a connection was lost */
} Delivery;

typedef struct RingPoint
{
	uint32		hash;
	WorkerConn *conn;
} RingPoint;

typedef struct Ring
{
	int			n;
	RingPoint  *points;
	WorkerConn *target;			/* the worker a batch is chosen for */
} Ring;

/*
 * What delivery keeps per handler: this module alone writes it.  Entries
 * and deliveries live in remote_cxt until the leader unloads its handlers.
 */
typedef struct Remote
{
	int32		handler_id;		/* the hash key */
	HandlerRun *handler;
	List	   *conns;			/* WorkerConn *: its registered workers */
	List	   *deliveries;		/* Delivery *: in flight to them */
	List	   *late;			/* Delivery *: timed out, newest last */
	uint32		run;			/* tells this tracker's deliveries from older ones */
	int64		next_delivery;
} Remote;

static HTAB *remotes = NULL;
static MemoryContext remote_cxt = NULL;

static Remote *
remote(HandlerRun *h)
{
	Remote	   *r;
	bool		found;

	if (remotes == NULL)
	{
		HASHCTL		ctl = {0};

		if (remote_cxt == NULL)
			remote_cxt = AllocSetContextCreate(TopMemoryContext, "cluster deliveries",
											   ALLOCSET_DEFAULT_SIZES);
		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(Remote);
		ctl.hcxt = remote_cxt;
		remotes = hash_create("cluster delivery handlers", 64, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	r = hash_search(remotes, &h->id, HASH_ENTER, &found);
	if (!found)
	{
		r->handler = h;
		r->conns = NIL;
		r->deliveries = NIL;
		r->late = NIL;
		r->run = ++runs;
		r->next_delivery = 0;
	}
	return r;
}

static void
remember(List **list, void *item)
{
	MemoryContext old = MemoryContextSwitchTo(remote_cxt);

	*list = lappend(*list, item);
	MemoryContextSwitchTo(old);
}

/*
 * What delivery keeps per connection; transport.c owns WorkerConn and
 * writes it, this module owns and writes these.
 */
typedef struct Peer
{
	WorkerConn *conn;			/* the hash key */
	int			in_flight;
	bool		suspect_out;	/* a suspect's delivery is in flight: alone */
	int64		delivered;
	int64		acked;
	int64		failed;
	double		rtt_ms;			/* 0: not measured yet */
	TimestampTz ping_sent;		/* 0: no ping outstanding */
	int			timeouts;		/* deliveries timed out in a row */
	TimestampTz unhealthy_until;	/* no new keys until then */
	int			warnings_left;	/* WARNINGs this connection may still cost */
	char		last_error[256];	/* the last failure of a delivery */
	TimestampTz last_error_at;
} Peer;

static HTAB *peers = NULL;

static Peer *
peer(WorkerConn *c)
{
	Peer	   *p;
	bool		found;

	if (peers == NULL)
	{
		HASHCTL		ctl = {0};

		ctl.keysize = sizeof(WorkerConn *);
		ctl.entrysize = sizeof(Peer);
		peers = hash_create("cluster delivery peers", 64, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	p = hash_search(peers, &c, HASH_ENTER, &found);
	if (!found)
	{
		memset(&p->in_flight, 0, sizeof(Peer) - offsetof(Peer, in_flight));
		p->warnings_left = PROTOCOL_MAX_WARNINGS;
	}
	return p;
}

static void
peer_failed(Peer *p, const char *error)
{
	p->failed++;
	strlcpy(p->last_error, error, sizeof(p->last_error));
	p->last_error_at = GetCurrentTimestamp();
}

/*
 * A worker whose delivery timed out is unhealthy for a while: it gets no
 * new keys while a healthy worker is there, as a Kafka consumer that
 * misses max.poll.interval leaves its group.  The pause doubles with each
 * timeout in a row (2 x ack_timeout, up to 64 x); an answer in time ends
 * it, and after it the worker is tried again.
 */
static void
mark_unhealthy(HandlerRun *h, WorkerConn *c, TimestampTz now)
{
	Peer	   *p = peer(c);
	int64		pause_ms = (int64) h->ack_timeout_ms << Min(p->timeouts + 1, 6);

	p->timeouts++;
	p->unhealthy_until = TimestampTzPlusMilliseconds(now, pause_ms);
}

static bool
healthy(WorkerConn *c, TimestampTz now)
{
	return c->connected && c->close_status == 0 && peer(c)->unhealthy_until <= now;
}

/* Is a worker of the handler other than "except" healthy? */
static bool
healthy_other(HandlerRun *h, WorkerConn *except, TimestampTz now)
{
	ListCell   *lc;

	foreach(lc, remote(h)->conns)
	{
		WorkerConn *c = lfirst(lc);

		if (c != except && healthy(c, now))
			return true;
	}
	return false;
}

/* Does the worker get events now?  The unhealthy only when nobody else can. */
static bool
takes_keys(WorkerConn *c, bool any_healthy, TimestampTz now)
{
	if (!c->connected || c->close_status != 0)
		return false;
	return healthy(c, now) || !any_healthy;
}

static int
ring_cmp(const void *a, const void *b)
{
	uint32		x = ((const RingPoint *) a)->hash;
	uint32		y = ((const RingPoint *) b)->hash;

	return x < y ? -1 : x > y;
}

static void
ring_build(HandlerRun *h, Ring *ring, bool any_healthy)
{
	List	   *conns = remote(h)->conns;
	ListCell   *lc;

	ring->n = 0;
	ring->points = palloc(sizeof(RingPoint) * Max(1, list_length(conns) * RING_POINTS));
	foreach(lc, conns)
	{
		WorkerConn *c = lfirst(lc);

		if (!takes_keys(c, any_healthy, GetCurrentTimestamp()))
			continue;
		for (int i = 0; i < RING_POINTS; i++)
		{
			char		point[96];

			snprintf(point, sizeof(point), "%s#%d", c->id, i);
			ring->points[ring->n].hash = hash_bytes((unsigned char *) point, strlen(point));
			ring->points[ring->n++].conn = c;
		}
	}
	qsort(ring->points, ring->n, sizeof(RingPoint), ring_cmp);
}

/* Does the batch being chosen for ring->target take this event? */
static bool
ring_owns(TrackedEvent *ev, void *arg)
{
	Ring	   *ring = arg;
	int			lo = 0,
				hi = ring->n;

	if (!ev->has_key)
		return true;
	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (ring->points[mid].hash < ev->key_hash)
			lo = mid + 1;
		else
			hi = mid;
	}
	return ring->points[lo % ring->n].conn == ring->target;
}

static void
send_text(WorkerConn *c, StringInfo buf)
{
	transport_send(c, buf->data, buf->len);
}

static void
send_hello(Leader *l, HandlerRun *h, WorkerConn *c)
{
	StringInfoData buf;

	initStringInfo(&buf);
	protocol_encode_hello(&buf, l->lease_key, l->fence, h->name);
	send_text(c, &buf);
	resetStringInfo(&buf);
	protocol_encode_ping(&buf);
	send_text(c, &buf);
	peer(c)->ping_sent = GetCurrentTimestamp();
}

/* Send a batch of events; the delivery is returned, in flight. */
static Delivery *
send_batch(Leader *l, HandlerRun *h, WorkerConn *c, Event **events,
		   int *attempts, EventPos *positions, int n)
{
	Remote	   *r = remote(h);
	Delivery   *d = MemoryContextAllocZero(remote_cxt, sizeof(Delivery));
	StringInfoData buf;

	d->events = MemoryContextAlloc(remote_cxt, sizeof(EventPos) * n);
	memcpy(d->events, positions, sizeof(EventPos) * n);
	snprintf(d->id, sizeof(d->id), INT64_FORMAT ".%u." INT64_FORMAT,
			 l->fence, r->run, ++r->next_delivery);
	d->conn = c;
	d->n = n;
	d->sent_at = GetCurrentTimestamp();
	d->deadline = TimestampTzPlusMilliseconds(d->sent_at, h->ack_timeout_ms);

	initStringInfo(&buf);
	protocol_encode_events(&buf, d->id, l->fence, h->pump->name, events, attempts, n);
	send_text(c, &buf);

	remember(&r->deliveries, d);
	peer(c)->in_flight++;
	peer(c)->delivered++;
	return d;
}

/*
 * A suspect (an event that was out when a connection was lost, see
 * tracker_select) goes alone to a worker with nothing else in flight, so
 * that if it kills the connection again no other event is lost with it.
 */
static void
send_events(Leader *l, HandlerRun *h, WorkerConn *c, TrackedEvent **batch, int n)
{
	Delivery   *d;
	Event	  **events = palloc(sizeof(Event *) * n);
	int		   *attempts = palloc(sizeof(int) * n);
	EventPos   *positions = palloc(sizeof(EventPos) * n);

	for (int i = 0; i < n; i++)
	{
		events[i] = &batch[i]->event;
		attempts[i] = batch[i]->attempts + 1;
		positions[i] = batch[i]->pos;
	}
	d = send_batch(l, h, c, events, attempts, positions, n);
	d->suspect = batch[0]->losses > 0;
	if (d->suspect)
		peer(c)->suspect_out = true;
}

/*
 * Give a delivery's unanswered events back, to be sent again (what a
 * replay left unanswered stays marked, and is fetched again).
 */
static void
delivery_end(HandlerRun *h, Delivery *d)
{
	Remote	   *r = remote(h);

	for (int i = 0; i < d->n && !d->replay_ids; i++)
	{
		TrackedEvent *ev = tracker_find(h->tracker, d->events[i]);

		if (ev && !ev->done)
			tracker_give_back(h->tracker, ev);
	}
	peer(d->conn)->in_flight--;
	if (d->suspect)
		peer(d->conn)->suspect_out = false;
	r->deliveries = list_delete_ptr(r->deliveries, d);
	pfree(d->events);
	if (d->replay_ids)
		pfree(d->replay_ids);
	pfree(d);
}

/*
 * Deliveries whose ack_timeout passed are kept a while, LATE_KEPT per
 * handler at most (the oldest goes first): a late ack from the worker one
 * was sent to still settles those of its events that nothing has settled
 * since (late_ack).  They go when the handler is reloaded (its tracker is
 * rebuilt, perhaps after a reset) and when their connection is lost or
 * dropped: an answer counts only on the connection the delivery went out
 * on.
 */
#define LATE_KEPT 64

static void
late_free(Remote *r, Delivery *d)
{
	r->late = list_delete_ptr(r->late, d);
	pfree(d->events);
	pfree(d);
}

static void
late_keep(HandlerRun *h, Delivery *d)
{
	Remote	   *r = remote(h);
	Delivery   *kept = MemoryContextAlloc(remote_cxt, sizeof(Delivery));

	*kept = *d;
	kept->events = MemoryContextAlloc(remote_cxt, sizeof(EventPos) * d->n);
	memcpy(kept->events, d->events, sizeof(EventPos) * d->n);
	kept->replay_ids = NULL;
	if (list_length(r->late) == LATE_KEPT)
		late_free(r, linitial(r->late));
	remember(&r->late, kept);
}

/* the late deliveries of "c" (NULL: all of them) are forgotten */
static void
late_forget(HandlerRun *h, WorkerConn *c)
{
	Remote	   *r = remote(h);
	ListCell   *lc;

	foreach(lc, r->late)
	{
		Delivery   *d = lfirst(lc);

		if (c == NULL || d->conn == c)
		{
			late_free(r, d);
			late_forget(h, c);	/* the list changed under us */
			return;
		}
	}
}

static Delivery *
late_find(HandlerRun *h, const char *id)
{
	ListCell   *lc;

	foreach(lc, remote(h)->late)
		if (strcmp(((Delivery *) lfirst(lc))->id, id) == 0)
			return lfirst(lc);
	return NULL;
}

static bool
in_list(int64 id, WorkerMessage *msg)
{
	if (!msg->has_event_ids)
		return true;
	for (int i = 0; i < msg->n_event_ids; i++)
		if (msg->event_ids[i] == id)
			return true;
	return false;
}

typedef struct PatchApply
{
	HandlerRun *h;
	const char *text;
} PatchApply;

static void
apply_patch(void *arg)
{
	PatchApply *apply = arg;

	handler_apply_patch(apply->h,
						DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(apply->text))));
}

/*
 * A patch from a worker is checked and applied like one from a SQL
 * function, in a subtransaction: one that fails fails the delivery.
 */
static bool
applied_patch(HandlerRun *h, const char *text, char **error)
{
	PatchApply	apply = {h, text};

	return subxact_run(apply_patch, &apply, error);
}

/*
 * Harmless oddities (late answers, unknown types) are logged, but a worker
 * can repeat them at will: each connection gets PROTOCOL_MAX_WARNINGS.
 */
static bool
may_warn(HandlerRun *h, WorkerConn *c)
{
	Peer	   *p = peer(c);

	if (p->warnings_left <= 0)
		return false;
	if (--p->warnings_left == 0)
		ereport(WARNING,
				(errmsg("further warnings about worker %s of handler \"%s\" are suppressed until it reconnects",
						c->id, h->name)));
	return true;
}

static void
untrusted(HandlerRun *h, WorkerConn *c, int status, const char *why)
{
	ereport(WARNING,
			(errmsg("closing worker %s of handler \"%s\" (%s): %s",
					c->id, h->name, c->address, why)));
	transport_close(c, status, why);
}

/* Does a list name an event the delivery doesn't have?  Which one? */
static bool
names_foreign_event(Delivery *d, int64 *ids, int n, int64 *foreign)
{
	for (int i = 0; i < n; i++)
	{
		bool		found = false;

		for (int k = 0; k < d->n && !found; k++)
			found = (d->events[k].id == ids[i]);
		if (!found)
		{
			*foreign = ids[i];
			return true;
		}
	}
	return false;
}

/* The error an ack's "failed" gives for an event; NULL: it didn't fail. */
static char *
failed_error(int64 id, WorkerMessage *msg)
{
	for (int i = 0; i < msg->n_failed; i++)
		if (msg->failed_ids[i] == id)
			return msg->failed_errors[i] ? msg->failed_errors[i] : "the worker failed the event";
	return NULL;
}

/*
 * Naming events the delivery doesn't have is a violation, not an answer
 * about nothing: the delivery's events would otherwise go out again at
 * once, without an attempt counted, for as long as it likes.  False (and
 * the connection closed) for such an answer.
 */
static bool
names_its_own(HandlerRun *h, WorkerConn *c, Delivery *d, WorkerMessage *msg)
{
	int64		foreign;

	if (msg->n_event_ids > d->n || msg->n_failed > d->n)
	{
		untrusted(h, c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
				  psprintf("an answer names more events than delivery \"%s\" has (%d)",
						   msg->delivery_id, d->n));
		return false;
	}
	if (names_foreign_event(d, msg->event_ids, msg->n_event_ids, &foreign) ||
		names_foreign_event(d, msg->failed_ids, msg->n_failed, &foreign))
	{
		untrusted(h, c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
				  psprintf("an answer names event " INT64_FORMAT ", which is not in delivery \"%s\"",
						   foreign, msg->delivery_id));
		return false;
	}
	return true;
}

static void
answer(Leader *l, HandlerRun *h, WorkerConn *c, Delivery *d,
	   WorkerMessage *msg, BatchOutcome *out)
{
	char	   *error = msg->error ? pstrdup(msg->error) : "the worker failed the delivery";

	if (!names_its_own(h, c, d, msg))
	{
		delivery_end(h, d);
		return;
	}

	if (msg->type == WORKER_ACK && msg->patch)
	{
		if (applied_patch(h, msg->patch, &error))
			out->patched = true;
		else
			msg->type = WORKER_FAIL;	/* a bad patch fails the delivery */
	}
	for (int i = 0; i < d->n && d->replay_ids; i++)
	{
		char	   *event_error = msg->type == WORKER_ACK ? failed_error(d->events[i].id, msg) : NULL;

		if (event_error || in_list(d->events[i].id, msg))
			handler_replay_outcome(h, d->replay_ids[i],
								   event_error ? event_error :
								   msg->type == WORKER_ACK ? NULL : error, out);
	}
	for (int i = 0; i < d->n && !d->replay_ids; i++)
	{
		TrackedEvent *ev = tracker_find(h->tracker, d->events[i]);
		char	   *event_error;

		if (ev == NULL || ev->done)
			continue;
		/* an ack's "failed" events fail; the rest it names are done */
		if (msg->type == WORKER_ACK && (event_error = failed_error(ev->pos.id, msg)) != NULL)
			handler_event_failed(h, ev, pstrdup(event_error), out);
		else if (!in_list(ev->pos.id, msg))
			continue;
		else if (msg->type == WORKER_ACK)
		{
			tracker_done(h->tracker, ev);
			out->processed++;
		}
		else
			handler_event_failed(h, ev, error, out);
	}
	peer(c)->timeouts = 0;		/* it answered in time */
	peer(c)->unhealthy_until = 0;
	if (msg->type == WORKER_ACK)
	{
		peer(c)->acked++;
		transport_works(c);
	}
	else
		peer_failed(peer(c), error);
	delivery_end(h, d);
}

/*
 * Could this leader, or an earlier one, have sent the delivery "id"
 * ("fence.run.seq", see send_batch)?  An earlier leader's (a lower fence),
 * or one of this leader's with a run of this process and a sequence number
 * already handed out.
 */
static bool
sent_before(Leader *l, HandlerRun *h, const char *id)
{
	char	   *rest;
	long long	fence = strtoll(id, &rest, 10);
	unsigned long run;
	long long	seq;

	if (*rest != '.' || fence <= 0)
		return false;
	run = strtoul(rest + 1, &rest, 10);
	if (*rest != '.' || run == 0)
		return false;
	seq = strtoll(rest + 1, &rest, 10);
	if (*rest != '\0' || seq <= 0)
		return false;
	if (fence != l->fence)
		return fence < l->fence;
	return run <= runs && (run != remote(h)->run || seq <= remote(h)->next_delivery);
}

/*
 * An answer to a delivery that is not in flight.  One sent before is late
 * (after a timeout, a reload or a change of leader) or a duplicate: its
 * events were taken back and went out again, so it is only worth a
 * warning.  An id never sent can't be trusted.
 */
/*
 * An ack to a delivery whose ack_timeout passed, from the worker it was
 * sent to: its events that nothing settled since are done (those it
 * reports failed, and a fail, count nothing: they went out again without
 * an attempt), and its patch is applied, as an ack in time would have.
 * An event it names may be in flight again to another worker: that
 * worker's answer then finds it done.
 */
static void
late_ack(HandlerRun *h, WorkerConn *c, Delivery *d, WorkerMessage *msg,
		 BatchOutcome *out)
{
	char	   *error;

	if (!names_its_own(h, c, d, msg))
	{
		late_free(remote(h), d);
		return;
	}
	if (msg->patch && !applied_patch(h, msg->patch, &error))
	{
		if (may_warn(h, c))
			ereport(WARNING,
					(errmsg("worker %s of handler \"%s\" answered delivery \"%s\" late with a patch that failed: %s; ignored",
							c->id, h->name, d->id, error)));
		late_free(remote(h), d);
		return;
	}
	out->patched = out->patched || msg->patch != NULL;
	for (int i = 0; i < d->n; i++)
	{
		TrackedEvent *ev = tracker_find(h->tracker, d->events[i]);

		if (ev == NULL || ev->done || failed_error(ev->pos.id, msg) || !in_list(ev->pos.id, msg))
			continue;
		tracker_done(h->tracker, ev);
		out->processed++;
	}
	peer(c)->acked++;
	late_free(remote(h), d);
}

static void
answer_not_in_flight(Leader *l, HandlerRun *h, WorkerConn *c, WorkerMessage *msg,
					 BatchOutcome *out)
{
	Delivery   *late = late_find(h, msg->delivery_id);

	if (late && late->conn != c)
	{
		untrusted(h, c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
				  psprintf("answer to delivery \"%s\" of another worker", msg->delivery_id));
		return;
	}
	if (late && msg->type == WORKER_ACK)
	{
		late_ack(h, c, late, msg, out);
		return;
	}
	if (late)
		late_free(remote(h), late);
	if (sent_before(l, h, msg->delivery_id))
	{
		if (may_warn(h, c))
			ereport(WARNING,
					(errmsg("worker %s of handler \"%s\" answered delivery \"%s\", which is no longer in flight; ignored",
							c->id, h->name, msg->delivery_id),
					 errdetail("A late or duplicate answer: the delivery's events were handed out again.")));
		return;
	}
	untrusted(h, c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
			  psprintf("answer to delivery \"%s\", which was never sent", msg->delivery_id));
}

static void
handle_message(Leader *l, HandlerRun *h, WorkerConn *c, WireMessage *m,
			   BatchOutcome *out)
{
	WorkerMessage msg;
	char	   *why;
	ListCell   *lc;

	if (!protocol_decode(m->data, (int) m->len, &msg, &why))
	{
		untrusted(h, c, LWS_CLOSE_STATUS_INVALID_PAYLOAD, why);
		return;
	}
	if (msg.has_fence && msg.fence > l->fence)
	{
		untrusted(h, c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
				  psprintf("fence " INT64_FORMAT " is ahead of the leader's (" INT64_FORMAT ")",
						   msg.fence, l->fence));
		return;
	}
	if (msg.has_fence && msg.fence < l->fence)
	{
		/* an answer to an earlier leader: its events were handed out again */
		if (may_warn(h, c))
			ereport(WARNING,
					(errmsg("worker %s of handler \"%s\" answered for fence " INT64_FORMAT ", the leader's is " INT64_FORMAT "; ignored",
							c->id, h->name, msg.fence, l->fence)));
		return;
	}
	switch (msg.type)
	{
		case WORKER_PING:
			if (c->out_count >= PROTOCOL_MAX_QUEUED)
				untrusted(h, c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
						  "it sends pings faster than it reads the answers");
			else
			{
				StringInfoData buf;

				initStringInfo(&buf);
				protocol_encode_pong(&buf);
				send_text(c, &buf);
			}
			return;
		case WORKER_PONG:
			if (peer(c)->ping_sent)
				peer(c)->rtt_ms = (GetCurrentTimestamp() - peer(c)->ping_sent) / 1000.0;
			peer(c)->ping_sent = 0;
			return;
		case WORKER_UNKNOWN:
			if (may_warn(h, c))
				ereport(WARNING,
						(errmsg("worker %s of handler \"%s\" sent a message of unknown type \"%s\"; ignored",
								c->id, h->name, msg.type_name)));
			return;
		case WORKER_ACK:
		case WORKER_FAIL:
			break;
	}
	foreach(lc, remote(h)->deliveries)
	{
		Delivery   *d = lfirst(lc);

		if (strcmp(d->id, msg.delivery_id) != 0)
			continue;
		if (d->conn == c)
			answer(l, h, c, d, &msg, out);
		else
			untrusted(h, c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
					  psprintf("answer to delivery \"%s\" of another worker", msg.delivery_id));
		return;
	}
	answer_not_in_flight(l, h, c, &msg, out);
}

static void
expire(HandlerRun *h, TimestampTz now, BatchOutcome *out)
{
	ListCell   *lc;

	foreach(lc, remote(h)->deliveries)
	{
		Delivery   *d = lfirst(lc);
		bool		attempt;

		if (d->deadline > now)
			continue;
		mark_unhealthy(h, d->conn, now);
		/* a healthy worker takes them over: only latency was lost */
		attempt = !healthy_other(h, d->conn, now) && d->replay_ids == NULL;
		for (int i = 0; i < d->n; i++)
		{
			TrackedEvent *ev = tracker_find(h->tracker, d->events[i]);

			if (ev && !ev->done && attempt)
				handler_event_failed(h, ev, "no answer within ack_timeout", out);
		}
		peer_failed(peer(d->conn), psprintf("delivery %s got no answer within ack_timeout", d->id));
		if (d->replay_ids == NULL)
			late_keep(h, d);
		delivery_end(h, d);
		expire(h, now, out);	/* the list changed under us */
		return;
	}
}

/*
 * Deliveries of a connection that went away: their events go elsewhere.
 * The first such loss of an event costs no attempt (a worker restarted, a
 * network blip); every further one counts as a failed attempt, so that an
 * event that kills every worker it reaches is dead-lettered after
 * max_attempts instead of going round forever.  A connection the leader
 * closed for a violation is the worker's fault, never the event's: no
 * attempt.  Such a worker is only dialled again after its backoff, which a
 * working connection's first ack resets: meanwhile its keys map to the
 * other workers.
 */
static void
take_back(HandlerRun *h, WorkerConn *c, BatchOutcome *out)
{
	ListCell   *lc;

	foreach(lc, remote(h)->deliveries)
	{
		Delivery   *d = lfirst(lc);

		if (d->conn != c)
			continue;
		for (int i = 0; i < d->n && !d->replay_ids; i++)
		{
			TrackedEvent *ev = tracker_find(h->tracker, d->events[i]);
			int			losses;

			if (ev == NULL || ev->done)
				continue;
			if (c->closed_by_leader)
			{
				tracker_give_back(h->tracker, ev);
				continue;
			}
			losses = tracker_lost(h->tracker, ev);
			if (losses > 1)
				handler_event_failed(h, ev,
									 psprintf("the connection to the worker was lost while it held the event (%d times)",
											  losses),
									 out);
		}
		delivery_end(h, d);
		take_back(h, c, out);
		return;
	}
	late_forget(h, c);
}

/* Before connections of unregistered workers are closed and freed. */
static void
drop_unwanted(HandlerRun *h)
{
	ListCell   *lc;

	foreach(lc, remote(h)->deliveries)
	{
		Delivery   *d = lfirst(lc);

		if (!d->conn->wanted)
		{
			delivery_end(h, d);
			drop_unwanted(h);
			return;
		}
	}
	foreach(lc, remote(h)->late)
	{
		Delivery   *d = lfirst(lc);

		if (!d->conn->wanted)
		{
			late_forget(h, d->conn);
			drop_unwanted(h);
			return;
		}
	}
}

/*
 * The leader tells which workers each handler has: delivery_clear_workers(),
 * delivery_add_worker() for each, then delivery_workers_added(), before the
 * transport frees the connections no longer wanted.
 */
void
delivery_clear_workers(void)
{
	HASH_SEQ_STATUS seq;
	Remote	   *r;

	if (remotes == NULL)
		return;
	hash_seq_init(&seq, remotes);
	while ((r = hash_seq_search(&seq)) != NULL)
	{
		list_free(r->conns);
		r->conns = NIL;
	}
}

void
delivery_add_worker(HandlerRun *h, WorkerConn *c)
{
	remember(&remote(h)->conns, c);
}

void
delivery_workers_added(void)
{
	HASH_SEQ_STATUS seq;
	Remote	   *r;
	Peer	   *p;

	if (remotes == NULL)
		return;
	hash_seq_init(&seq, remotes);
	while ((r = hash_seq_search(&seq)) != NULL)
		drop_unwanted(r->handler);
	if (peers == NULL)
		return;
	hash_seq_init(&seq, peers);
	while ((p = hash_seq_search(&seq)) != NULL)
		if (!p->conn->wanted)
			(void) hash_search(peers, &p->conn, HASH_REMOVE, NULL);
}

/*
 * The leader no longer runs this HandlerRun (the handler changed or went;
 * remote_forget() gave its deliveries back first): forget its workers.
 */
void
delivery_forget_handler(HandlerRun *h)
{
	Remote	   *r;

	if (remotes == NULL ||
		(r = hash_search(remotes, &h->id, HASH_FIND, NULL)) == NULL)
		return;
	Assert(r->deliveries == NIL);
	list_free(r->conns);
	(void) hash_search(remotes, &h->id, HASH_REMOVE, NULL);
}

/*
 * The leader stops: forget every handler (remote_forget() gave
 * their deliveries back first).  With "connections_too" (the leader stepped
 * down), every connection goes as well.
 */
void
delivery_forget_all(bool connections_too)
{
	if (remotes)
		hash_destroy(remotes);
	remotes = NULL;
	if (remote_cxt)
		MemoryContextReset(remote_cxt);
	if (connections_too && peers)
	{
		hash_destroy(peers);
		peers = NULL;
	}
}

/* A connection's counters and last error, for cluster.workers. */
void
delivery_report(WorkerConn *c, WorkerStat *stat)
{
	Peer	   *p = peer(c);

	stat->in_flight = p->in_flight;
	stat->delivered = p->delivered;
	stat->acked = p->acked;
	stat->failed = p->failed;
	stat->rtt_ms = p->rtt_ms;
	stat->unhealthy_until = p->unhealthy_until;
	strlcpy(stat->last_error,
			p->last_error_at > c->last_error_at ? p->last_error : c->last_error,
			sizeof(stat->last_error));
}

static void
remote_forget(HandlerRun *h)
{
	Remote	   *r = remote(h);

	while (r->deliveries != NIL)
		delivery_end(h, linitial(r->deliveries));
	late_forget(h, NULL);
	r->run = ++runs;
	r->next_delivery = 0;
}

/*
 * Take in what the workers said and what their connections did, and give
 * up on deliveries past their deadline.  Runs whenever the handler has
 * workers, connected or not, so that nothing stays with a lost one.
 */
static void
remote_settle(Leader *l, HandlerRun *h, BatchOutcome *out)
{
	ListCell   *lc;

	foreach(lc, remote(h)->conns)
	{
		WorkerConn *c = lfirst(lc);
		WireMessage *m;

		if (transport_take_lost(c))
		{
			ereport(WARNING,
					(errmsg("lost the connection to worker %s of handler \"%s\" (%s)",
							c->id, h->name, c->address),
					 errdetail("%s", c->last_error[0] ? c->last_error : "no reason given"),
					 errhint("Its deliveries go to the other workers; it is dialled again after a backoff.")));
			take_back(h, c, out);
		}
		if (transport_take_connected(c))
		{
			peer(c)->warnings_left = PROTOCOL_MAX_WARNINGS;
			send_hello(l, h, c);
		}
		while ((m = transport_receive(c)) != NULL)
		{
			/* after a violation, the rest of what it sent is not read */
			if (c->close_status == 0)
				handle_message(l, h, c, m, out);
			free(m);
		}
	}
	expire(h, GetCurrentTimestamp(), out);
}

/*
 * An event larger than the handler's max_batch_bytes fits in no delivery:
 * sending it would only have a worker (or this leader) close the
 * connection again and again.  It is dead-lettered at once, with the
 * reason.
 */
static void
refuse_oversized(HandlerRun *h, BatchOutcome *out)
{
	Tracker    *t = h->tracker;

	for (int i = 0; i < t->count; i++)
	{
		TrackedEvent *ev = &t->events[i];

		if (!ev->done && !ev->selected && event_size(&ev->event) > (Size) h->max_batch_bytes)
			handler_event_refused(h, ev,
								  psprintf("the event is %zu bytes, more than the handler's max_batch_bytes (%d)",
										   event_size(&ev->event), h->max_batch_bytes),
								  out);
	}
}

/*
 * With key ordering a key is in one delivery at a time: a batch that took
 * every ready key would leave nothing for the worker's other free slots,
 * and its deliveries would take turns instead of overlapping.  The ready
 * keys are spread over as many deliveries as the ready events fill, at
 * most one per free slot; 0 (no bound) when that is one.
 */
static int
batch_keys(HandlerRun *h, WorkerConn *c, Ring *ring, TimestampTz now)
{
	int			slots = c->capacity - peer(c)->in_flight;
	int			events,
				keys,
				deliveries;

	if (!h->key_order || slots <= 1)
		return 0;
	tracker_count_ready(h->tracker, now, ring_owns, ring, &events, &keys);
	deliveries = Min(slots, (events + h->batch_size - 1) / h->batch_size);
	if (deliveries <= 1 || keys == 0)
		return 0;
	return (keys + deliveries - 1) / deliveries;
}

/* Hand out what is ready; returns ms until a deadline needs a look, or -1. */
static long
remote_run(Leader *l, HandlerRun *h, BatchOutcome *out)
{
	TimestampTz now = GetCurrentTimestamp();
	Remote	   *r = remote(h);
	ListCell   *lc;
	Ring		ring;
	TrackedEvent **batch = palloc(sizeof(TrackedEvent *) * h->batch_size);
	long		wait = -1;
	bool		any_healthy;

	refuse_oversized(h, out);
	any_healthy = healthy_other(h, NULL, now);
	ring_build(h, &ring, any_healthy);
	foreach(lc, r->conns)
	{
		WorkerConn *c = lfirst(lc);
		int			n;

		ring.target = c;
		while (takes_keys(c, any_healthy, now) && peer(c)->in_flight < c->capacity &&
			   !peer(c)->suspect_out &&
			   (n = tracker_select(h->tracker, h->batch_size, h->max_batch_bytes,
								   batch_keys(h, c, &ring, now), now, batch,
								   h->key_order ? ring_owns : NULL, &ring)) > 0)
		{
			if (batch[0]->losses > 0 && peer(c)->in_flight > 0)
			{
				tracker_give_back(h->tracker, batch[0]);
				break;			/* the suspect waits for the others' answers */
			}
			send_events(l, h, c, batch, n);
		}
	}
	foreach(lc, r->deliveries)
	{
		long		ms = TimestampDifferenceMilliseconds(now, ((Delivery *) lfirst(lc))->deadline);

		wait = wait < 0 ? ms : Min(wait, ms);
	}
	return wait;
}

/*
 * Replay dead letters through the workers: one batch at a time, oldest
 * first, to a healthy worker with room, so that replays keep their order
 * (keys included).  Their answers delete the dead letters or count an
 * attempt (handler_replay_outcome); what stays unanswered stays marked and
 * is fetched again.  Returns false once nothing is marked or in flight.
 */
static bool
remote_replay(Leader *l, HandlerRun *h, BatchOutcome *out)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		any_healthy = healthy_other(h, NULL, now);
	Remote	   *r = remote(h);
	ListCell   *lc;

	foreach(lc, r->deliveries)
		if (((Delivery *) lfirst(lc))->replay_ids)
			return true;		/* one replay at a time */
	foreach(lc, r->conns)
	{
		WorkerConn *c = lfirst(lc);
		int64	   *ids;
		Event	  **events;
		int		   *attempts;
		EventPos   *positions;
		Delivery   *d;
		int			n;

		if (!takes_keys(c, any_healthy, now) || peer(c)->in_flight >= c->capacity)
			continue;
		n = handler_replay_fetch(h, h->batch_size, &ids, &positions, &events, &attempts);
		if (n == 0)
			return false;
		d = send_batch(l, h, c, events, attempts, positions, n);
		d->replay_ids = MemoryContextAlloc(remote_cxt, sizeof(int64) * n);
		memcpy(d->replay_ids, ids, sizeof(int64) * n);
		return true;
	}
	return true;				/* no worker has room yet */
}

static bool
remote_ready(HandlerRun *h)
{
	ListCell   *lc;

	foreach(lc, remote(h)->conns)
		if (((WorkerConn *) lfirst(lc))->connected)
			return true;
	return false;
}

/* A worker said something, connected or went away since the last round. */
static bool
remote_stirred(HandlerRun *h)
{
	ListCell   *lc;

	foreach(lc, remote(h)->conns)
	{
		WorkerConn *c = lfirst(lc);

		if (c->in_head || c->just_connected || c->just_lost)
			return true;
	}
	return false;
}

/*
 * A batch for each free slot of a connected worker is read ahead (one at
 * least), so that the next deliveries are ready when answers come and can
 * be chosen from enough keys (batch_keys).
 */
static int
remote_appetite(HandlerRun *h)
{
	ListCell   *lc;
	int			slots = 0;

	foreach(lc, remote(h)->conns)
	{
		WorkerConn *c = lfirst(lc);

		if (c->connected)
			slots += Max(c->capacity - peer(c)->in_flight, 0);
	}
	return h->batch_size * Max(slots, 1);
}

const Executor remote_executor = {
	.name = "workers",
	.ready = remote_ready,
	.appetite = remote_appetite,
	.stirred = remote_stirred,
	.settle = remote_settle,
	.replay = remote_replay,
	.run = remote_run,
	.forget = remote_forget,
};
