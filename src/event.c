/*-------------------------------------------------------------------------
 *
 * event.c
 *	  Copy, free and size an event.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "event.h"

/* the bytes an event's values take (its key, payload and headers) */
Size
event_size(const Event *ev)
{
	return MAXALIGN(VARSIZE(ev->payload)) +
		(ev->headers ? MAXALIGN(VARSIZE(ev->headers)) : 0) +
		(ev->key ? strlen(ev->key) + 1 : 0);
}

/* "src" into "dst", its values in one allocation in "cxt" */
void
event_copy(Event *dst, const Event *src, MemoryContext cxt)
{
	char	   *p = MemoryContextAlloc(cxt, event_size(src));

	*dst = *src;
	dst->payload = (Jsonb *) p;
	memcpy(p, src->payload, VARSIZE(src->payload));
	p += MAXALIGN(VARSIZE(src->payload));
	if (src->headers)
	{
		dst->headers = (Jsonb *) p;
		memcpy(p, src->headers, VARSIZE(src->headers));
		p += MAXALIGN(VARSIZE(src->headers));
	}
	if (src->key)
	{
		dst->key = p;
		strcpy(p, src->key);
	}
}

/* a copy made by event_copy */
void
event_free(Event *ev)
{
	pfree(ev->payload);
	ev->payload = NULL;
	ev->headers = NULL;
	ev->key = NULL;
}
