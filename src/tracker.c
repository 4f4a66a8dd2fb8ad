/*-------------------------------------------------------------------------
 *
 * tracker.c
 *	  The delivery tracker of one handler.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "backoff.h"
#include "tracker.h"

#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 30000

static void
free_event(TrackedEvent *ev)
{
	if (ev->event.payload)
		event_free(&ev->event);
	if (ev->last_error)
		pfree(ev->last_error);
}

Tracker *
tracker_create(MemoryContext parent, int capacity, bool key_order)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "cluster tracker",
											  ALLOCSET_DEFAULT_SIZES);
	Tracker    *t = MemoryContextAllocZero(cxt, sizeof(Tracker));

	t->cxt = cxt;
	t->capacity = capacity;
	t->size = capacity;
	t->key_order = key_order;
	t->events = MemoryContextAllocZero(cxt, sizeof(TrackedEvent) * capacity);
	t->maxsteps = 16;
	t->steps = MemoryContextAlloc(cxt, sizeof(TrackerStep) * t->maxsteps);
	return t;
}

static void
drop_first_step(Tracker *t)
{
	pfree(t->base);
	t->base = t->steps[0].target;
	t->nsteps--;
	memmove(t->steps, t->steps + 1, sizeof(TrackerStep) * t->nsteps);
	t->cursor_in_step = false;
}

static void
push_step(Tracker *t, const TxSnapshot *target)
{
	if (t->nsteps == t->maxsteps)
	{
		t->maxsteps *= 2;
		t->steps = repalloc(t->steps, sizeof(TrackerStep) * t->maxsteps);
	}
	t->steps[t->nsteps].seq = t->next_seq++;
	t->steps[t->nsteps].target = txsnap_copy(target, t->cxt);
	t->nsteps++;
	t->step_read = 0;
}

/*
 * Forget everything: the next events are read after "cursor", finishing
 * its step first if it is inside one.
 */
void
tracker_reset(Tracker *t, const Position *cursor)
{
	for (int i = 0; i < t->count; i++)
		free_event(&t->events[i]);
	t->count = 0;
	t->done_count = 0;
	if (t->base)
		pfree(t->base);
	for (int i = 0; i < t->nsteps; i++)
		pfree(t->steps[i].target);
	t->nsteps = 0;
	t->base = txsnap_copy(cursor->snapshot, t->cxt);
	t->cursor_in_step = t->reading = false;
	if (cursor->step)
	{
		push_step(t, cursor->step);
		t->cursor_in_step = t->reading = true;
		t->cursor_after = t->read_after = cursor->after;
	}
	tracker_restore_end(t);
}

/*
 * What the last leader left above the cursor, sorted by "from" (ranges
 * never overlap): applied to the events as they are read, until
 * tracker_restore_end.  A done range holds every event the last leader
 * read between its ends, and the restoring reads read exactly what it had
 * read, so no other event can fall in one.
 */
void
tracker_restore(Tracker *t, int n, RestoreRange *ranges)
{
	tracker_restore_end(t);
	t->n_restore = n;
	t->restore = MemoryContextAlloc(t->cxt, sizeof(RestoreRange) * Max(n, 1));
	memcpy(t->restore, ranges, sizeof(RestoreRange) * n);
	for (int i = 0; i < n; i++)
		if (ranges[i].error)
			t->restore[i].error = MemoryContextStrdup(t->cxt, ranges[i].error);
}

void
tracker_restore_end(Tracker *t)
{
	for (int i = 0; i < t->n_restore; i++)
		if (t->restore[i].error)
			pfree(t->restore[i].error);
	if (t->restore)
		pfree(t->restore);
	t->restore = NULL;
	t->n_restore = 0;
}

int
tracker_room(Tracker *t)
{
	int			room = t->capacity - tracker_waiting(t);

	return Max(Min(room, t->capacity * TRACKER_DONE_KEPT - t->count), 0);
}

/*
 * The step to read now: true, with the snapshot before it, its target and
 * where its reading stands, when one is being read; false when the next
 * read begins a new one (from *prev).
 */
bool
tracker_step(Tracker *t, const TxSnapshot **prev, const TxSnapshot **target,
			 EventPos *after)
{
	int			last = t->nsteps - 1;

	if (!t->reading)
	{
		*prev = last >= 0 ? t->steps[last].target : t->base;
		return false;
	}
	*prev = last >= 1 ? t->steps[last - 1].target : t->base;
	*target = t->steps[last].target;
	*after = t->read_after;
	return true;
}

void
tracker_begin_step(Tracker *t, const TxSnapshot *target)
{
	Assert(!t->reading);
	push_step(t, target);
	t->reading = true;
	t->read_after = EVENTPOS_START;
}

/* the restore range holding "pos", if any (binary search) */
static RestoreRange *
restore_find(Tracker *t, EventPos pos)
{
	int			lo = 0,
				hi = t->n_restore - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		RestoreRange *r = &t->restore[mid];

		if (eventpos_cmp(pos, r->from) < 0)
			hi = mid - 1;
		else if (eventpos_cmp(pos, r->to) > 0)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

/* An event of the step being read, after the ones read so far. */
void
tracker_add(Tracker *t, EventPos pos, const Event *event)
{
	TrackedEvent *ev;
	RestoreRange *r;

	Assert(t->reading && eventpos_cmp(pos, t->read_after) > 0);
	if (t->count == t->size)
	{
		/* restoring more than max_in_flight, after it was lowered */
		t->size *= 2;
		t->events = repalloc(t->events, sizeof(TrackedEvent) * t->size);
	}
	ev = &t->events[t->count++];
	memset(ev, 0, sizeof(TrackedEvent));
	ev->pos = pos;
	ev->step = t->steps[t->nsteps - 1].seq;
	ev->has_key = (event->key != NULL);
	ev->key_hash = event->key ? hash_bytes((const unsigned char *) event->key, strlen(event->key)) : 0;
	t->read_after = pos;
	t->step_read++;

	r = restore_find(t, pos);
	if (r && r->attempts < 0)
	{
		/* done by the last leader: only its position is kept, no copy */
		tracker_done(t, ev);
		return;
	}
	event_copy(&ev->event, event, t->cxt);
	if (r)
	{
		ev->attempts = r->attempts;
		if (r->error)
			ev->last_error = MemoryContextStrdup(t->cxt, r->error);
	}
}

/*
 * A read of the step ended: "to_end" when it found everything the step
 * has, else up to *upto when given (a restoring read stops where the last
 * leader had read to).  A step that found nothing is forgotten.
 */
void
tracker_end_read(Tracker *t, bool to_end, const EventPos *upto)
{
	Assert(t->reading);
	if (!to_end)
	{
		if (upto)
			t->read_after = *upto;
		return;
	}
	t->reading = false;
	/* with nothing left to do, the cursor moves over every step */
	(void) tracker_advance(t);
	if (t->count > 0 && t->step_read == 0)
	{
		Assert(t->nsteps >= 2);
		pfree(t->steps[--t->nsteps].target);
	}
}

void
tracker_cursor(Tracker *t, Position *cursor)
{
	cursor->snapshot = t->base;
	cursor->step = t->cursor_in_step ? t->steps[0].target : NULL;
	cursor->after = t->cursor_after;
}

void
tracker_read_position(Tracker *t, Position *read)
{
	int			last = t->nsteps - 1;

	read->step = NULL;
	if (last < 0)
		read->snapshot = t->base;
	else if (!t->reading)
		read->snapshot = t->steps[last].target;
	else
	{
		read->snapshot = last >= 1 ? t->steps[last - 1].target : t->base;
		read->step = t->steps[last].target;
		read->after = t->read_after;
	}
}

/*
 * The keys held back while choosing a batch: an open-addressing set of key
 * hashes (0 marks a free slot, so hash 0 is stored as 1: a collision only
 * holds back more).
 */
typedef struct KeySet
{
	uint32	   *slots;
	uint32		mask;
} KeySet;

static void
keyset_init(KeySet *set, int expected)
{
	uint32		size = 16;

	while (size < (uint32) expected * 2)
		size <<= 1;
	set->slots = palloc0(sizeof(uint32) * size);
	set->mask = size - 1;
}

static bool
keyset_probe(KeySet *set, uint32 hash, bool add)
{
	uint32		key = hash ? hash : 1;

	for (uint32 i = key & set->mask;; i = (i + 1) & set->mask)
	{
		if (set->slots[i] == key)
			return true;
		if (set->slots[i] == 0)
		{
			if (add)
				set->slots[i] = key;
			return false;
		}
	}
}

/*
 * Choose up to "max" events to hand out now, in order, of at most
 * "max_bytes" in all (stored jsonb; 0: no bound).  With key ordering, an
 * event whose key has an earlier event still to do (waiting or in flight
 * elsewhere) is held back, and the batch takes events of at most
 * "max_keys" keys (0: no bound), leaving the others for the next batch.  An event that was out when a connection was
 * lost is a suspect (it may be what killed the worker): it goes alone, so
 * that the events lost with it are not blamed for it.
 */
int
tracker_select(Tracker *t, int max, Size max_bytes, int max_keys, TimestampTz now,
			   TrackedEvent **batch, TrackerFilter filter, void *arg)
{
	int			n = 0;
	Size		bytes = 0;
	KeySet		blocked = {0};
	KeySet		taken = {0};
	int			keys = 0;

	if (t->key_order)
		keyset_init(&blocked, t->count);
	if (t->key_order && max_keys > 0)
		keyset_init(&taken, max_keys);
	for (int i = 0; i < t->count && n < max; i++)
	{
		TrackedEvent *ev = &t->events[i];
		bool		ready = !ev->done && !ev->selected && ev->not_before <= now;

		if (ev->done)
			continue;
		if (ready && t->key_order && ev->has_key &&
			keyset_probe(&blocked, ev->key_hash, false))
			ready = false;
		if (ready && filter && !filter(ev, arg))
			continue;			/* another worker's key: it blocks nothing here */
		if (ready && taken.slots && ev->has_key &&
			!keyset_probe(&taken, ev->key_hash, false))
		{
			if (keys == max_keys)
				ready = false;	/* a key for another batch */
			else
			{
				keyset_probe(&taken, ev->key_hash, true);
				keys++;
			}
		}
		if (ready && max_bytes > 0 && bytes + event_size(&ev->event) > max_bytes)
			break;				/* the batch is full; this one starts the next */
		if (ready && ev->losses > 0 && n > 0)
			break;				/* a suspect goes alone: it starts the next */
		if (ready)
		{
			ev->selected = true;
			batch[n++] = ev;
			bytes += event_size(&ev->event);
			if (ev->losses > 0)
				break;
		}
		else if (t->key_order && ev->has_key)
			keyset_probe(&blocked, ev->key_hash, true);
	}
	if (blocked.slots)
		pfree(blocked.slots);
	if (taken.slots)
		pfree(taken.slots);
	return n;
}

/*
 * How many events could be chosen now (that the filter accepts), and, with
 * key ordering, of how many keys: so that a caller may spread them over
 * several batches with tracker_select's max_keys.
 */
void
tracker_count_ready(Tracker *t, TimestampTz now, TrackerFilter filter, void *arg,
					int *events, int *keys)
{
	KeySet		blocked = {0},
				ready = {0};

	*events = *keys = 0;
	if (t->key_order)
	{
		keyset_init(&blocked, t->count);
		keyset_init(&ready, t->count);
	}
	for (int i = 0; i < t->count; i++)
	{
		TrackedEvent *ev = &t->events[i];
		bool		keyed = t->key_order && ev->has_key;

		if (ev->done || (keyed && keyset_probe(&blocked, ev->key_hash, false)))
			continue;
		if (ev->selected || ev->not_before > now)
		{
			if (keyed)
				keyset_probe(&blocked, ev->key_hash, true);
		}
		else if (!filter || filter(ev, arg))
		{
			(*events)++;
			if (keyed && !keyset_probe(&ready, ev->key_hash, true))
				(*keys)++;
		}
	}
	if (t->key_order)
	{
		pfree(blocked.slots);
		pfree(ready.slots);
	}
}

/*
 * What the events still to do wait for: an answer (in flight), their
 * retry's backoff (the earliest due at *next_retry, DT_NOEND: none), an
 * earlier event of their key, or nothing (ready).
 */
void
tracker_summarize(Tracker *t, TimestampTz now, TrackerSummary *sum)
{
	KeySet		blocked = {0};

	memset(sum, 0, sizeof(TrackerSummary));
	sum->next_retry = DT_NOEND;
	if (t->key_order)
		keyset_init(&blocked, t->count);
	for (int i = 0; i < t->count; i++)
	{
		TrackedEvent *ev = &t->events[i];
		bool		keyed = t->key_order && ev->has_key;

		if (ev->done)
			continue;
		if (ev->selected || ev->not_before > now)
		{
			if (ev->selected)
				sum->in_flight++;
			else
			{
				sum->retrying++;
				sum->next_retry = Min(sum->next_retry, ev->not_before);
			}
			/* later events of its key wait for it */
			if (keyed)
				keyset_probe(&blocked, ev->key_hash, true);
		}
		else if (keyed && keyset_probe(&blocked, ev->key_hash, false))
			sum->key_blocked++;
		else
			sum->ready++;
	}
	if (t->key_order)
		pfree(blocked.slots);
}

/*
 * The event at "pos", if the tracker holds it: it was read by the first
 * step whose target shows its transaction (the snapshots only grow), and
 * a step's events are in (txid, id) order.
 */
TrackedEvent *
tracker_find(Tracker *t, EventPos pos)
{
	int			lo = 0,
				hi = t->nsteps - 1;
	int64		seq;

	if (t->nsteps == 0 || txsnap_visible(t->base, pos.txid))
		return NULL;
	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (txsnap_visible(t->steps[mid].target, pos.txid))
			hi = mid;
		else
			lo = mid + 1;
	}
	seq = t->steps[lo].seq;
	lo = 0;
	hi = t->count - 1;
	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		TrackedEvent *ev = &t->events[mid];
		int			cmp = ev->step != seq ? (ev->step < seq ? -1 : 1) : eventpos_cmp(ev->pos, pos);

		if (cmp == 0)
			return ev;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

void
tracker_done(Tracker *t, TrackedEvent *ev)
{
	if (!ev->done)
	{
		/* from now on only its position counts */
		ev->done = true;
		t->done_count++;
		if (ev->event.payload)
			event_free(&ev->event);
	}
	ev->selected = false;
}

/* Handed out but not handled (a delivery ended unanswered): ready again. */
void
tracker_give_back(Tracker *t, TrackedEvent *ev)
{
	ev->selected = false;
}

/*
 * Handed out to a worker whose connection was lost: ready again, and the
 * number of such losses is returned (the caller decides when they count).
 */
int
tracker_lost(Tracker *t, TrackedEvent *ev)
{
	ev->selected = false;
	return ++ev->losses;
}

/*
 * A failed attempt.  Returns true when the event has used its attempts:
 * the caller dead-letters it and marks it done.
 */
bool
tracker_failed(Tracker *t, TrackedEvent *ev, const char *error,
			   int max_attempts, TimestampTz now)
{
	int			backoff = 0;

	ev->selected = false;
	ev->attempts++;
	if (ev->last_error)
		pfree(ev->last_error);
	ev->last_error = MemoryContextStrdup(t->cxt, error ? error : "");
	if (ev->attempts >= max_attempts)
		return true;
	for (int i = 0; i < ev->attempts && backoff < RETRY_MAX_MS; i++)
		backoff = backoff_next(backoff, RETRY_MIN_MS, RETRY_MAX_MS);
	ev->not_before = TimestampTzPlusMilliseconds(now, backoff);
	return false;
}

/*
 * Move the cursor over the done events at the head, and over every step
 * read to its end that has none left; true if it moved.
 */
bool
tracker_advance(Tracker *t)
{
	int			n = 0;
	bool		moved = false;

	for (;;)
	{
		/* the first step is passed once read and without events */
		while (t->nsteps > 0 && !(t->reading && t->nsteps == 1) &&
			   (n == t->count || t->events[n].step != t->steps[0].seq))
		{
			drop_first_step(t);
			moved = true;
		}
		if (n == t->count || !t->events[n].done)
			break;
		Assert(t->events[n].step == t->steps[0].seq);
		t->cursor_in_step = true;
		t->cursor_after = t->events[n].pos;
		free_event(&t->events[n]);
		t->done_count--;
		n++;
		moved = true;
	}
	if (n > 0)
	{
		t->count -= n;
		memmove(t->events, t->events + n, sizeof(TrackedEvent) * t->count);
	}
	return moved;
}

/* Events read and not yet done. */
int
tracker_waiting(Tracker *t)
{
	return t->count - t->done_count;
}

/* ms until the earliest retry is due; -1 when none waits. */
long
tracker_next_due_ms(Tracker *t, TimestampTz now)
{
	TimestampTz next = DT_NOEND;

	/* events ready now wait for something else (a key before them) */
	for (int i = 0; i < t->count; i++)
	{
		TrackedEvent *ev = &t->events[i];

		if (!ev->done && !ev->selected && ev->not_before > now && ev->not_before < next)
			next = ev->not_before;
	}
	if (next == DT_NOEND)
		return -1;
	return Max(1, TimestampDifferenceMilliseconds(now, next));
}

/* A done range, [from txid, from id, to txid, to id, count], to "done". */
static void
append_done(StringInfo done, EventPos from, EventPos to, int count)
{
	appendStringInfo(done, "%s[\"" UINT64_FORMAT "\", \"" INT64_FORMAT "\", \""
					 UINT64_FORMAT "\", \"" INT64_FORMAT "\", %d]",
					 done->len > 1 ? ", " : "", from.txid, from.id, to.txid, to.id, count);
}

/* A failed event, keyed by id with its txid, attempts and error, to "retry". */
static void
append_retry(StringInfo retry, EventPos pos, int attempts, const char *error)
{
	appendStringInfo(retry, "%s\"" INT64_FORMAT "\": {\"txid\": \"" UINT64_FORMAT "\", \"attempts\": %d, \"error\": ",
					 retry->len > 1 ? ", " : "", pos.id, pos.txid, attempts);
	escape_json(retry, error ? error : "");
	appendStringInfoChar(retry, '}');
}

static int
compare_by_pos(const void *a, const void *b)
{
	return eventpos_cmp((*(TrackedEvent *const *) a)->pos, (*(TrackedEvent *const *) b)->pos);
}

/*
 * The events in (txid, id) order: the order of reading unless a later step
 * brought a transaction that began before an earlier step's.
 */
static TrackedEvent **
events_by_pos(Tracker *t)
{
	TrackedEvent **sorted = palloc(sizeof(TrackedEvent *) * Max(t->count, 1));
	bool		in_order = true;

	for (int i = 0; i < t->count; i++)
	{
		sorted[i] = &t->events[i];
		if (i > 0 && eventpos_cmp(sorted[i - 1]->pos, sorted[i]->pos) > 0)
			in_order = false;
	}
	if (!in_order)
		qsort(sorted, t->count, sizeof(TrackedEvent *), compare_by_pos);
	return sorted;
}

/*
 * The persistent part, as JSON for the round's commit: the cursor and the
 * read position (position.h); the done events between them, as ranges of
 * events consecutive in (txid, id) order among those read ([from txid,
 * from id, to txid, to id, count]: a stuck event with thousands done
 * behind it is one range; as every event read after the cursor is here,
 * nothing read lies inside a range but the done ones); and the attempts
 * of failed events (keyed by id, with their txid).
 */
void
tracker_state_json(Tracker *t, StringInfo cursor, StringInfo read,
				   StringInfo done, StringInfo retry)
{
	Position	p;
	TrackedEvent **sorted = events_by_pos(t);

	tracker_cursor(t, &p);
	position_json(cursor, &p);
	tracker_read_position(t, &p);
	position_json(read, &p);
	appendStringInfoChar(done, '[');
	appendStringInfoChar(retry, '{');
	for (int i = 0; i < t->count; i++)
	{
		TrackedEvent *ev = sorted[i];

		if (ev->done)
		{
			int			last = i;

			while (last + 1 < t->count && sorted[last + 1]->done)
				last++;
			append_done(done, ev->pos, sorted[last]->pos, last - i + 1);
			i = last;
		}
		else if (ev->attempts > 0)
			append_retry(retry, ev->pos, ev->attempts, ev->last_error);
	}
	appendStringInfoChar(done, ']');
	appendStringInfoChar(retry, '}');
	pfree(sorted);
}
