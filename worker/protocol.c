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

/*
 * A close reason must be UTF-8 (RFC 6455, 5.5.1), but jansson's error text
 * quotes the input near the error, which can end inside a UTF-8 sequence,
 * and so can the cut to a close reason's length: then mask every byte
 * beyond ASCII.
 */
static void
utf8_reason(char *why)
{
	json_t	   *check = json_string(why);

	if (check == NULL)
	{
		for (char *p = why; *p != '\0'; p++)
			if ((unsigned char) *p >= 0x80)
				*p = '?';
	}
	json_decref(check);
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

/*
 * Decode one complete message into out, without acting on it: no
 * connection, no log, no answer.  Returns 0, out then holding a reference
 * to the message that protocol_parse_free releases; or the WebSocket
 * status to close the connection with, the reason written to why and
 * nothing to free.
 */
int
protocol_parse(const char *text, size_t len, LeaderMessage *out,
			   char *why, size_t whylen)
{
	json_error_t error;
	bool		lossy;
	json_t	   *msg = decode(text, len, &lossy, &error);
	json_t	   *protocol;

	memset(out, 0, sizeof(LeaderMessage));
	if (msg == NULL)
	{
		snprintf(why, whylen, "invalid JSON: %s", error.text);
		utf8_reason(why);
		return CLOSE_INVALID_PAYLOAD;
	}
	if (!json_is_object(msg))
	{
		json_decref(msg);
		snprintf(why, whylen, "a message must be a JSON object");
		return CLOSE_INVALID_PAYLOAD;
	}

	out->json = msg;
	out->lossy = lossy;
	out->type_name = json_string_value(json_object_get(msg, "type"));
	if (out->type_name == NULL)
		out->type = LEADER_UNTYPED;
	else if (strcmp(out->type_name, "events") == 0)
		out->type = LEADER_EVENTS;
	else if (strcmp(out->type_name, "ping") == 0)
		out->type = LEADER_PING;
	else if (strcmp(out->type_name, "hello") == 0)
		out->type = LEADER_HELLO;
	else if (strcmp(out->type_name, "pong") == 0)
		out->type = LEADER_PONG;
	else
		out->type = LEADER_UNKNOWN;

	switch (out->type)
	{
		case LEADER_EVENTS:
			out->delivery_id = json_string_value(json_object_get(msg, "deliveryId"));
			if (out->delivery_id != NULL && out->delivery_id[0] == '\0')
				out->delivery_id = NULL;
			out->events = json_object_get(msg, "events");
			if (!json_is_array(out->events))
				out->events = NULL;
			break;
		case LEADER_HELLO:
			out->handler = json_string_value(json_object_get(msg, "handler"));
			out->leader = field_text(msg, "leader", out->leader_buf,
									 sizeof(out->leader_buf));
			out->fence = field_text(msg, "fence", out->fence_buf,
									sizeof(out->fence_buf));
			out->version = field_text(msg, "protocol", out->version_buf,
									  sizeof(out->version_buf));
			protocol = json_object_get(msg, "protocol");
			out->other_protocol = json_is_integer(protocol) &&
				json_integer_value(protocol) != PROTOCOL_VERSION;
			break;
		default:
			break;
	}
	return 0;
}

void
protocol_parse_free(LeaderMessage *m)
{
	json_decref(m->json);
	memset(m, 0, sizeof(LeaderMessage));
}

/* The id an answer names an event by; NULL if it has none to name. */
json_t *
protocol_event_id(json_t *event)
{
	json_t	   *id = json_object_get(event, "id");

	return (json_is_string(id) || json_is_integer(id)) ? id : NULL;
}

static void
receive_events(Connection *c, const LeaderMessage *m)
{
	const char *id = m->delivery_id;

	if (id == NULL)
	{
		wlog("WARNING", "events message from %s without a deliveryId: ignored",
			 c->peer);
		return;
	}
	if (m->events == NULL)
	{
		wlog("WARNING", "delivery %s from %s has no events array",
			 id, c->peer);
		protocol_fail(c, id, "\"events\" must be an array");
		return;
	}
	if (m->lossy)
	{
		wlog("WARNING", "delivery %s from %s holds an integer beyond 64 bits",
			 id, c->peer);
		protocol_fail(c, id, "an event holds an integer beyond 64 bits, which this worker cannot pass on exactly");
		return;
	}
	delivery_receive(c, id, m->events);
}

static void
receive_hello(Connection *c, const LeaderMessage *m)
{
	wlog("LOG", "hello from leader %s at %s: fence %s, handler \"%s\", protocol %s",
		 m->leader, c->peer, m->fence, m->handler ? m->handler : "",
		 m->version);
	if (m->handler != NULL && strcmp(m->handler, worker.opt.handler) != 0)
		wlog("WARNING", "leader at %s sends for handler \"%s\", but this worker serves \"%s\"",
			 c->peer, m->handler, worker.opt.handler);
	if (m->other_protocol)
		wlog("WARNING", "leader at %s speaks protocol %s, this worker %d",
			 c->peer, m->version, PROTOCOL_VERSION);
}

/*
 * Decode and act on one complete message.  Returns 0, or the WebSocket
 * status to close the connection with, the reason written to why.
 */
int
protocol_receive(Connection *c, const char *text, size_t len,
				 char *why, size_t whylen)
{
	LeaderMessage m;
	int			status = protocol_parse(text, len, &m, why, whylen);

	if (status != 0)
		return status;
	switch (m.type)
	{
		case LEADER_UNTYPED:
			wlog("WARNING", "message without a type from %s: ignored", c->peer);
			break;
		case LEADER_EVENTS:
			receive_events(c, &m);
			break;
		case LEADER_PING:
			server_send(c, json_pack("{s:s}", "type", "pong"));
			break;
		case LEADER_HELLO:
			receive_hello(c, &m);
			break;
		case LEADER_PONG:
			break;
		case LEADER_UNKNOWN:
			wlog("WARNING", "message of unknown type \"%s\" from %s: ignored",
				 m.type_name, c->peer);
			break;
	}
	protocol_parse_free(&m);
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
