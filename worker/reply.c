/*-------------------------------------------------------------------------
 *
 * reply.c
 *	  The worker's answers to a leader: encoded by protocol.c, queued on
 *	  the connection by server.c.
 *
 * Both dispatch.c (pong, and the fail of an events message it can't
 * deliver) and delivery.c (the answer to each delivery) answer; this is
 * the one place that turns an answer into text on a connection, below
 * both, so that neither reaches into the other for it.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "protocol.h"
#include "reply.h"

/* Queue text, an encoded answer, for c and free it; NULL: not encoded. */
static void
send_text(Connection *c, char *text)
{
	if (text == NULL)
	{
		wlog("ERROR", "could not encode a message to %s", server_peer(c));
		return;
	}
	server_send(c, text, strlen(text));
	free(text);
}

void
reply_pong(Connection *c)
{
	send_text(c, protocol_encode_pong());
}

void
reply_ack(Connection *c, const char *delivery_id)
{
	if (c == NULL)
	{
		wlog("LOG", "delivery %s done, but its connection has closed: ack dropped",
			 delivery_id);
		return;
	}
	send_text(c, protocol_encode_ack(delivery_id));
}

void
reply_fail(Connection *c, const char *delivery_id, const char *error)
{
	if (c == NULL)
	{
		wlog("LOG", "delivery %s failed, but its connection has closed: fail dropped",
			 delivery_id);
		return;
	}
	send_text(c, protocol_encode_fail(delivery_id, error));
}

/*
 * The ack of a delivery whose events ran one by one (see
 * protocol_encode_ack_failed); takes both references.
 */
void
reply_ack_failed(Connection *c, const char *delivery_id, json_t *done,
				 json_t *failed)
{
	if (c == NULL)
	{
		wlog("LOG", "delivery %s done (%zu events failed), but its connection has closed: ack dropped",
			 delivery_id, json_array_size(failed));
		json_decref(done);
		json_decref(failed);
		return;
	}
	send_text(c, protocol_encode_ack_failed(delivery_id, done, failed));
}
