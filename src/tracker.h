/*-------------------------------------------------------------------------
 *
 * tracker.h
 *	  The delivery tracker: one handler's events between its cursor and
 *	  what has been read, and which of them may be handed out next.
 *
 * Events enter in (txid, id) order, at most max_in_flight at a time.  An
 * event is done once handled or dead-lettered; the cursor moves over done
 * events at the head only, so it never passes an event still to do.  A
 * failed event waits for its backoff (1 s doubling to 30 s); with key
 * ordering, later events of the same key wait behind it.  Nothing here
 * touches the database: the leader persists what the tracker reports.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_TRACKER_H
#define CLUSTER_TRACKER_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "event.h"

typedef struct EventPos
{
	uint64		txid;
	int64		id;
} EventPos;

typedef struct TrackedEvent
{
	EventPos	pos;
	uint32		key_hash;		/* 0: no key */
	bool		has_key;
	Event		event;			/* as read */
	int			attempts;		/* failed attempts so far */
	int			losses;			/* connections lost while a worker held it */
	TimestampTz not_before;
	char	   *last_error;
	bool		done;
	bool		selected;		/* in the batch being handled */
} TrackedEvent;

typedef struct Tracker
{
	MemoryContext cxt;
	EventPos	cursor;			/* everything up to here is done */
	EventPos	read_pos;		/* everything up to here has been read */
	bool		key_order;
	int			capacity;		/* max_in_flight */
	int			count;
	TrackedEvent *events;		/* [count], in (txid, id) order */
	/* state of the last run, from the handler's row, in (txid, id) order */
	int			n_restore;
	int			next_restore;
	struct RestoreRange *restore;
} Tracker;

/*
 * What the last leader left above the cursor: a range of done events
 * (attempts -1) and how many of them are still to be read, or one failed
 * event (from = to) with its attempts and last error.
 */
typedef struct RestoreRange
{
	EventPos	from;
	EventPos	to;
	int			attempts;
	int			count;
	char	   *error;
} RestoreRange;

extern int	eventpos_cmp(EventPos a, EventPos b);
extern Tracker *tracker_create(MemoryContext parent, int capacity, bool key_order);
extern void tracker_reset(Tracker *t, EventPos cursor);
extern void tracker_restore(Tracker *t, int n, RestoreRange *ranges);
extern int	tracker_room(Tracker *t);
extern void tracker_add(Tracker *t, EventPos pos, const Event *event);
typedef bool (*TrackerFilter) (TrackedEvent *ev, void *arg);

extern int	tracker_select(Tracker *t, int max, Size max_bytes, int max_keys,
						   TimestampTz now, TrackedEvent **batch,
						   TrackerFilter filter, void *arg);
extern void tracker_count_ready(Tracker *t, TimestampTz now,
								TrackerFilter filter, void *arg,
								int *events, int *keys);
extern TrackedEvent *tracker_find(Tracker *t, EventPos pos);
extern void tracker_done(Tracker *t, TrackedEvent *ev);
extern void tracker_give_back(Tracker *t, TrackedEvent *ev);
extern int	tracker_lost(Tracker *t, TrackedEvent *ev);
extern bool tracker_failed(Tracker *t, TrackedEvent *ev, const char *error,
						   int max_attempts, TimestampTz now);
extern bool tracker_advance(Tracker *t);
extern int	tracker_waiting(Tracker *t);
extern long tracker_next_due_ms(Tracker *t, TimestampTz now);
extern void tracker_state_json(Tracker *t, StringInfo cursor, StringInfo done,
							   StringInfo retry);

#endif							/* CLUSTER_TRACKER_H */
