/*-------------------------------------------------------------------------
 *
 * protocol.c
 *	  The wire protocol, worker side: decode what the leader sends, build
 *	  what the worker answers.  JSON is jansson's job throughout.
 *
 * Leader to worker: hello, events, ping (anything else is logged and
 * ignored).  Worker to leader: ack (settling a whole delivery, or with
 * "failed" naming the events that failed, each with its own error), fail,
 * pong.  A message that is not a JSON object closes the connection with
 * 1007.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "worker.h"

/*
 * jansson refuses integers outside the 64-bit range.  Such a message is
 * still valid JSON, so decode it again with every integer as a double, to
 * answer it rather than close a connection that did nothing wrong.
 */
static json_t *
decode(const char *text, size_t len, bool *lossy, json_error_t *error)
{
	json_t	   *msg = json_loadb(text, len, 0, error);

	*lossy = false;
	if (msg == NULL && json_error_code(error) == json_error_numeric_overflow)
	{
		msg = json_loadb(text, len, JSON_DECODE_INT_AS_REAL, error);
		*lossy = (msg != NULL);
	}
	return msg;
}

static void
receive_events(Connection *c, json_t *msg, bool lossy)
{
	const char *id = json_string_value(json_object_get(msg, "deliveryId"));
	json_t	   *events = json_object_get(msg, "events");

	if (id == NULL || id[0] == '\0')
	{
		wlog("WARNING", "events message from %s without a deliveryId: ignored",
			 c->peer);
		return;
	}
	if (!json_is_array(events))
	{
		wlog("WARNING", "delivery %s from %s has no events array",
			 id, c->peer);
		protocol_fail(c, id, "\"events\" must be an array");
		return;
	}
	if (lossy)
	{
		wlog("WARNING", "delivery %s from %s holds an integer beyond 64 bits",
			 id, c->peer);
		protocol_fail(c, id, "an event holds an integer beyond 64 bits, which this worker cannot pass on exactly");
		return;
	}
	delivery_receive(c, id, events);
}

/* A JSON number, string or nothing, as text for the log. */
static const char *
field_text(json_t *msg, const char *key, char *buf, size_t size)
{
	json_t	   *v = json_object_get(msg, key);

	if (json_is_string(v))
		return json_string_value(v);
	if (json_is_integer(v))
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, size, "%g", json_real_value(v));
	else
		snprintf(buf, size, "(none)");
	return buf;
}

static void
receive_hello(Connection *c, json_t *msg)
{
	const char *handler = json_string_value(json_object_get(msg, "handler"));
	json_t	   *protocol = json_object_get(msg, "protocol");
	char		leader[64];
	char		fence[32];
	char		version[32];

	wlog("LOG", "hello from leader %s at %s: fence %s, handler \"%s\", protocol %s",
		 field_text(msg, "leader", leader, sizeof(leader)), c->peer,
		 field_text(msg, "fence", fence, sizeof(fence)),
		 handler ? handler : "",
		 field_text(msg, "protocol", version, sizeof(version)));
	if (handler != NULL && strcmp(handler, worker.opt.handler) != 0)
		wlog("WARNING", "leader at %s sends for handler \"%s\", but this worker serves \"%s\"",
			 c->peer, handler, worker.opt.handler);
	if (json_is_integer(protocol) &&
		json_integer_value(protocol) != PROTOCOL_VERSION)
		wlog("WARNING", "leader at %s speaks protocol %s, this worker %d",
			 c->peer, version, PROTOCOL_VERSION);
}

/*
 * Decode and act on one complete message.  Returns 0, or the WebSocket
 * status to close the connection with, the reason written to why.
 */
int
protocol_receive(Connection *c, const char *text, size_t len,
				 char *why, size_t whylen)
{
	json_error_t error;
	bool		lossy;
	json_t	   *msg = decode(text, len, &lossy, &error);
	const char *type;

	if (msg == NULL)
	{
		snprintf(why, whylen, "invalid JSON: %s", error.text);
		return CLOSE_INVALID_PAYLOAD;
	}
	if (!json_is_object(msg))
	{
		json_decref(msg);
		snprintf(why, whylen, "a message must be a JSON object");
		return CLOSE_INVALID_PAYLOAD;
	}

	type = json_string_value(json_object_get(msg, "type"));
	if (type == NULL)
		wlog("WARNING", "message without a type from %s: ignored", c->peer);
	else if (strcmp(type, "events") == 0)
		receive_events(c, msg, lossy);
	else if (strcmp(type, "ping") == 0)
		server_send(c, json_pack("{s:s}", "type", "pong"));
	else if (strcmp(type, "hello") == 0)
		receive_hello(c, msg);
	else if (strcmp(type, "pong") != 0)
		wlog("WARNING", "message of unknown type \"%s\" from %s: ignored",
			 type, c->peer);
	json_decref(msg);
	return 0;
}

void
protocol_ack(Connection *c, const char *delivery_id)
{
	if (c == NULL)
	{
		wlog("LOG", "delivery %s done, but its connection has closed: ack dropped",
			 delivery_id);
		return;
	}
	server_send(c, json_pack("{s:s, s:s}", "type", "ack",
							 "deliveryId", delivery_id));
}

void
protocol_fail(Connection *c, const char *delivery_id, const char *error)
{
	json_t	   *text = json_string(error);

	if (c == NULL)
	{
		wlog("LOG", "delivery %s failed, but its connection has closed: fail dropped",
			 delivery_id);
		json_decref(text);
		return;
	}
	/* callers pass valid UTF-8; never send an answer without its error */
	if (text == NULL)
		text = json_string("(the error text is not valid UTF-8)");
	server_send(c, json_pack("{s:s, s:s, s:o}", "type", "fail",
							 "deliveryId", delivery_id, "error", text));
}

/*
 * One answer for a delivery whose events ran one by one: the events in
 * failed ([{eventId, error}]) failed, the others are done.  done, when not
 * NULL, narrows "the others" to the ids it lists (a forced shutdown left
 * the rest unrun: the leader sends them again without counting an
 * attempt).  Takes both references.
 */
void
protocol_ack_failed(Connection *c, const char *delivery_id, json_t *done,
					json_t *failed)
{
	json_t	   *msg;

	if (c == NULL)
	{
		wlog("LOG", "delivery %s done (%zu events failed), but its connection has closed: ack dropped",
			 delivery_id, json_array_size(failed));
		json_decref(done);
		json_decref(failed);
		return;
	}
	msg = json_pack("{s:s, s:s}", "type", "ack", "deliveryId", delivery_id);
	if (done != NULL)
		json_object_set_new(msg, "eventIds", done);
	/* none failed: the plain ack says the same */
	if (json_array_size(failed) > 0)
		json_object_set(msg, "failed", failed);
	json_decref(failed);
	server_send(c, msg);
}
