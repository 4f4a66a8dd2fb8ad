/*-------------------------------------------------------------------------
 *
 * event.h
 *	  An event as a pump reads it: the source row's values, kept as they
 *	  are stored (the payload and headers stay jsonb, never re-encoded).
 *
 * The pump fills an Event pointing into its query's memory; the tracker
 * keeps a copy in one allocation (event_copy) until the event is done.
 * protocol.c turns events into the wire form and into jsonb; a SQL
 * function taking cluster.event[] gets them as rows.
 *
 *-------------------------------------------------------------------------
 */
#ifndef CLUSTER_EVENT_H
#define CLUSTER_EVENT_H

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

typedef struct Event
{
	int64		id;
	char	   *key;			/* NULL: none */
	Jsonb	   *payload;
	Jsonb	   *headers;		/* NULL: none */
	bool		has_created_at;
	TimestampTz created_at;
} Event;

extern void event_copy(Event *dst, const Event *src, MemoryContext cxt);
extern void event_free(Event *ev);
extern Size event_size(const Event *ev);

#endif							/* CLUSTER_EVENT_H */
