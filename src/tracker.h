/*-------------------------------------------------------------------------
 *
 * tracker.h
 *	  The delivery tracker: one handler's events between its cursor and
 *	  what has been read, and which of them may be handed out next.
 *
 * Events enter step by step (see position.h), in (txid, id) order within
 * a step, at most max_in_flight not yet done at a time.  An event is done
 * once handled or dead-lettered, and from then on only its position is
 * kept; the cursor moves over done events at the head only, so it never
 * passes an event still to do.  Done events behind one still to do (a
 * retry waiting for its backoff) don't count against max_in_flight, up to
 * TRACKER_DONE_KEPT times it in all: a retry at the head holds back the
 * cursor, not the reading and handing out of the events after it.  A failed event waits for its
 * backoff (1 s doubling to 30 s); with key ordering, later events of the
 * same key wait behind it.  Nothing here touches the database: the pump
 * reads into the tracker, the leader persists what the tracker reports.
 *
 * The tracker owns the steps: the snapshot below the first (the cursor's),
 * each step's target, and how far the last one has been read.  A step
 * that found no event is forgotten (the next reads from the one before:
 * it adds nothing to it), unless nothing is left to do, when the cursor
 * moves to it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_TRACKER_H
#define CLUSTER_TRACKER_H

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "event.h"
#include "position.h"

#define TRACKER_DONE_KEPT 16

typedef struct TrackedEvent
{
	EventPos	pos;
	int64		step;			/* the step that read it */
	uint32		key_hash;		/* 0: no key */
	bool		has_key;
	Event		event;			/* as read; freed once done */
	int			attempts;		/* failed attempts so far */
	int			losses;			/* connections lost while a worker held it */
	TimestampTz not_before;
	char	   *last_error;
	bool		done;
	bool		selected;		/* in the batch being handled */
} TrackedEvent;

typedef struct TrackerStep
{
	int64		seq;
	TxSnapshot *target;
} TrackerStep;

typedef struct Tracker
{
	MemoryContext cxt;
	bool		key_order;
	int			capacity;		/* max_in_flight */
	int			size;			/* of events[]: more while restoring */
	int			count;
	int			done_count;		/* of them done, waiting to be passed */
	TrackedEvent *events;		/* [count], in (step, txid, id) order */
	/* the cursor: base, and steps[0] up to cursor_after if cursor_in_step */
	TxSnapshot *base;
	bool		cursor_in_step;
	EventPos	cursor_after;
	/* the steps of the events, oldest first; the one before steps[0] is base */
	int			nsteps;
	int			maxsteps;
	TrackerStep *steps;
	int64		next_seq;
	bool		reading;		/* the last step is not read to its end... */
	EventPos	read_after;		/* ...but up to here */
	int			step_read;		/* events the last step read */
	/* what the last leader left above the cursor, sorted, while restoring */
	int			n_restore;
	struct RestoreRange *restore;
} Tracker;

/*
 * What the last leader left above the cursor: a range of done events, in
 * (txid, id) order (attempts -1: all the events it read between the ends),
 * or one failed event (from = to) with its attempts and last error.
 */
typedef struct RestoreRange
{
	EventPos	from;
	EventPos	to;
	int			attempts;
	char	   *error;
} RestoreRange;

extern Tracker *tracker_create(MemoryContext parent, int capacity, bool key_order);
extern void tracker_reset(Tracker *t, const Position *cursor);
extern void tracker_restore(Tracker *t, int n, RestoreRange *ranges);
extern void tracker_restore_end(Tracker *t);
extern int	tracker_room(Tracker *t);

extern bool tracker_step(Tracker *t, const TxSnapshot **prev,
						 const TxSnapshot **target, EventPos *after);
extern void tracker_begin_step(Tracker *t, const TxSnapshot *target);
extern void tracker_add(Tracker *t, EventPos pos, const Event *event);
extern void tracker_end_read(Tracker *t, bool to_end, const EventPos *upto);
extern void tracker_cursor(Tracker *t, Position *cursor);
extern void tracker_read_position(Tracker *t, Position *read);

typedef bool (*TrackerFilter) (TrackedEvent *ev, void *arg);

extern int	tracker_select(Tracker *t, int max, Size max_bytes, int max_keys,
						   TimestampTz now, TrackedEvent **batch,
						   TrackerFilter filter, void *arg);
extern void tracker_count_ready(Tracker *t, TimestampTz now,
								TrackerFilter filter, void *arg,
								int *events, int *keys);
/* What the events still to do wait for (tracker_summarize). */
typedef struct TrackerSummary
{
	int			in_flight;		/* handed out, not answered */
	int			retrying;		/* waiting for their backoff */
	TimestampTz next_retry;		/* the earliest of those; DT_NOEND: none */
	int			key_blocked;	/* behind an earlier event of their key */
	int			ready;			/* could go out now */
} TrackerSummary;

extern void tracker_summarize(Tracker *t, TimestampTz now, TrackerSummary *sum);
extern TrackedEvent *tracker_find(Tracker *t, EventPos pos);
extern void tracker_done(Tracker *t, TrackedEvent *ev);
extern void tracker_give_back(Tracker *t, TrackedEvent *ev);
extern int	tracker_lost(Tracker *t, TrackedEvent *ev);
extern bool tracker_failed(Tracker *t, TrackedEvent *ev, const char *error,
						   int max_attempts, TimestampTz now);
extern bool tracker_advance(Tracker *t);
extern int	tracker_waiting(Tracker *t);
extern long tracker_next_due_ms(Tracker *t, TimestampTz now);
extern void tracker_state_json(Tracker *t, StringInfo cursor, StringInfo read,
							   StringInfo done, StringInfo retry);

#endif							/* CLUSTER_TRACKER_H */
