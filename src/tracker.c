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

int
eventpos_cmp(EventPos a, EventPos b)
{
	if (a.txid != b.txid)
		return a.txid < b.txid ? -1 : 1;
	if (a.id != b.id)
		return a.id < b.id ? -1 : 1;
	return 0;
}

Tracker *
tracker_create(MemoryContext parent, int capacity, bool key_order)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "cluster tracker",
											  ALLOCSET_DEFAULT_SIZES);
	Tracker    *t = MemoryContextAllocZero(cxt, sizeof(Tracker));

	t->cxt = cxt;
	t->capacity = capacity;
	t->key_order = key_order;
	t->events = MemoryContextAllocZero(cxt, sizeof(TrackedEvent) * capacity);
	return t;
}

/* Forget everything: the next events are read after "cursor". */
void
tracker_reset(Tracker *t, EventPos cursor)
{
	for (int i = 0; i < t->count; i++)
	{
		event_free(&t->events[i].event);
		if (t->events[i].last_error)
			pfree(t->events[i].last_error);
	}
	t->count = 0;
	t->cursor = cursor;
	t->read_pos = cursor;
	t->n_restore = 0;
}

/*
 * What the last leader left above the cursor, in (txid, id) order: applied
 * to the events as they are read.  A done range holds every event read
 * between its ends: the pump never reads an event into a stretch it has
 * read already.
 */
void
tracker_restore(Tracker *t, int n, RestoreRange *ranges)
{
	if (t->restore)
		pfree(t->restore);
	t->n_restore = n;
	t->next_restore = 0;
	t->restore = MemoryContextAlloc(t->cxt, sizeof(RestoreRange) * Max(n, 1));
	memcpy(t->restore, ranges, sizeof(RestoreRange) * n);
	for (int i = 0; i < n; i++)
		if (ranges[i].error)
			t->restore[i].error = MemoryContextStrdup(t->cxt, ranges[i].error);
}

int
tracker_room(Tracker *t)
{
	return t->capacity - t->count;
}

void
tracker_add(Tracker *t, EventPos pos, const Event *event)
{
	TrackedEvent *ev = &t->events[t->count++];

	Assert(t->count <= t->capacity);
	Assert(eventpos_cmp(pos, t->read_pos) > 0);
	memset(ev, 0, sizeof(TrackedEvent));
	ev->pos = pos;
	ev->has_key = (event->key != NULL);
	ev->key_hash = event->key ? hash_bytes((const unsigned char *) event->key, strlen(event->key)) : 0;
	event_copy(&ev->event, event, t->cxt);
	t->read_pos = pos;

	while (t->next_restore < t->n_restore &&
		   eventpos_cmp(t->restore[t->next_restore].to, pos) < 0)
		t->next_restore++;
	if (t->next_restore < t->n_restore &&
		eventpos_cmp(t->restore[t->next_restore].from, pos) <= 0)
	{
		RestoreRange *r = &t->restore[t->next_restore];

		if (r->attempts < 0)
		{
			ev->done = true;
			r->count--;
		}
		else
		{
			ev->attempts = r->attempts;
			if (r->error)
				ev->last_error = MemoryContextStrdup(t->cxt, r->error);
		}
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

/* The event at "pos", if the tracker holds it (binary search). */
TrackedEvent *
tracker_find(Tracker *t, EventPos pos)
{
	int			lo = 0,
				hi = t->count - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			cmp = eventpos_cmp(t->events[mid].pos, pos);

		if (cmp == 0)
			return &t->events[mid];
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
	ev->done = true;
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

/* Move the cursor over the done events at the head; true if it moved. */
bool
tracker_advance(Tracker *t)
{
	int			n = 0;

	while (n < t->count && t->events[n].done)
	{
		t->cursor = t->events[n].pos;
		event_free(&t->events[n].event);
		if (t->events[n].last_error)
			pfree(t->events[n].last_error);
		n++;
	}
	if (n == 0)
		return false;
	t->count -= n;
	memmove(t->events, t->events + n, sizeof(TrackedEvent) * t->count);
	return true;
}

/* Events read and not yet done. */
int
tracker_waiting(Tracker *t)
{
	int			n = 0;

	for (int i = 0; i < t->count; i++)
		if (!t->events[i].done)
			n++;
	return n;
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

/*
 * What the last leader left beyond what has been read again: without it a
 * commit would forget events done above a stuck one that this leader has
 * not read yet, and the next leader would hand them out again.  A done
 * range is cut to what lies past the read position.
 */
static void
unread_restore_json(Tracker *t, StringInfo done, StringInfo retry)
{
	EventPos	after = {t->read_pos.txid, t->read_pos.id + 1};

	for (int i = t->next_restore; i < t->n_restore; i++)
	{
		RestoreRange *r = &t->restore[i];

		if (eventpos_cmp(r->to, t->read_pos) <= 0)
			continue;
		if (r->attempts >= 0)
			append_retry(retry, r->from, r->attempts, r->error);
		else if (r->count > 0)
			append_done(done, eventpos_cmp(r->from, after) < 0 ? after : r->from,
						r->to, r->count);
	}
}

/*
 * The persistent part, as JSON for the round's commit: the cursor,
 * the done events above it as ranges of consecutive events ([from txid,
 * from id, to txid, to id, count]: a stuck event with thousands done
 * behind it is one range), and the attempts of failed events (keyed by
 * id, with their txid, so that the next leader can place them).
 */
void
tracker_state_json(Tracker *t, StringInfo cursor, StringInfo done,
				   StringInfo retry)
{
	appendStringInfo(cursor, "[\"" UINT64_FORMAT "\", \"" INT64_FORMAT "\"]",
					 t->cursor.txid, t->cursor.id);
	appendStringInfoChar(done, '[');
	appendStringInfoChar(retry, '{');
	for (int i = 0; i < t->count; i++)
	{
		TrackedEvent *ev = &t->events[i];

		if (ev->done)
		{
			int			last = i;

			while (last + 1 < t->count && t->events[last + 1].done)
				last++;
			append_done(done, ev->pos, t->events[last].pos, last - i + 1);
			i = last;
		}
		else if (ev->attempts > 0)
			append_retry(retry, ev->pos, ev->attempts, ev->last_error);
	}
	unread_restore_json(t, done, retry);
	appendStringInfoChar(done, ']');
	appendStringInfoChar(retry, '}');
}
