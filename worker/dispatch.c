/*-------------------------------------------------------------------------
 *
 * dispatch.c
 *	  Acting on the leader's messages: each one decoded by protocol.c,
 *	  then handed to delivery.c, answered through reply.c, or logged.
 *
 * It sits above delivery.c and the wire format so that protocol.c stays a
 * pure decoder and encoder, and server.c a transport: neither needs to
 * know what a message makes the worker do.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "delivery.h"
#include "dispatch.h"
#include "log.h"
#include "protocol.h"
#include "reply.h"
#include "worker.h"

static void
receive_events(Connection *c, const LeaderMessage *m)
{
	const char *id = m->delivery_id;

	if (id == NULL)
	{
		wlog("WARNING", "events message from %s without a deliveryId: ignored",
			 server_peer(c));
		return;
	}
	if (m->events == NULL)
	{
		wlog("WARNING", "delivery %s from %s has no events array",
			 id, server_peer(c));
		reply_fail(c, id, "\"events\" must be an array");
		return;
	}
	if (m->lossy)
	{
		wlog("WARNING", "delivery %s from %s holds an integer beyond 64 bits",
			 id, server_peer(c));
		reply_fail(c, id, "an event holds an integer beyond 64 bits, which this worker cannot pass on exactly");
		return;
	}
	delivery_receive(c, id, m->events);
}

static void
receive_hello(Connection *c, const LeaderMessage *m)
{
	wlog("LOG", "hello from leader %s at %s: fence %s, handler \"%s\", protocol %s",
		 m->leader, server_peer(c), m->fence, m->handler ? m->handler : "",
		 m->version);
	if (m->handler != NULL && worker.opt.handler != NULL &&
		strcmp(m->handler, worker.opt.handler) != 0)
		wlog("WARNING", "leader at %s sends for handler \"%s\", but this worker serves \"%s\"",
			 server_peer(c), m->handler, worker.opt.handler);
	if (m->other_protocol)
		wlog("WARNING", "leader at %s speaks protocol %s, this worker %d",
			 server_peer(c), m->version, PROTOCOL_VERSION);
}

/*
 * Decode and act on one complete message.  Returns 0, or the WebSocket
 * status to close the connection with, the reason written to why.
 */
int
dispatch_message(Connection *c, const char *text, size_t len,
				 char *why, size_t whylen)
{
	LeaderMessage m;

	if (!protocol_parse(text, len, &m, why, whylen))
		return CLOSE_INVALID_PAYLOAD;
	switch (m.type)
	{
		case LEADER_UNTYPED:
			wlog("WARNING", "message without a type from %s: ignored",
				 server_peer(c));
			break;
		case LEADER_EVENTS:
			receive_events(c, &m);
			break;
		case LEADER_PING:
			reply_pong(c);
			break;
		case LEADER_HELLO:
			receive_hello(c, &m);
			break;
		case LEADER_PONG:
			break;
		case LEADER_UNKNOWN:
			wlog("WARNING", "message of unknown type \"%s\" from %s: ignored",
				 m.type_name, server_peer(c));
			break;
	}
	protocol_parse_free(&m);
	return 0;
}
