/*-------------------------------------------------------------------------
 *
 * protocol.c
 *	  The wire protocol, worker side: decode what the leader sends, encode
 *	  what the worker answers.  JSON is jansson's job throughout.
 *
 * Leader to worker: hello, events, ping (the types dispatch.c acts on).
 * Worker to leader: ack (settling a whole delivery, or with "failed"
 * naming the events that failed, each with its own error), fail, pong.
 * Text that is not a JSON object is no message at all.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "protocol.h"

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
 * Decode one complete message into out, without acting on it.  Returns
 * true, out then holding a reference to the message that
 * protocol_parse_free releases; or false for text that is not a message,
 * the reason written to why (valid UTF-8, as a WebSocket close reason must
 * be) and nothing to free.
 */
bool
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
		return false;
	}
	if (!json_is_object(msg))
	{
		json_decref(msg);
		snprintf(why, whylen, "a message must be a JSON object");
		return false;
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
	return true;
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

/*
 * An answer as compact JSON text, malloc'd; takes msg.  NULL if it could
 * not be encoded (json_pack failed on msg): the caller logs that the
 * answer is lost, since this file logs nothing.
 */
static char *
encode(json_t *msg)
{
	char	   *text = json_dumps(msg, JSON_COMPACT);

	json_decref(msg);
	return text;
}

char *
protocol_encode_pong(void)
{
	return encode(json_pack("{s:s}", "type", "pong"));
}

/* The whole delivery is done. */
char *
protocol_encode_ack(const char *delivery_id)
{
	return encode(json_pack("{s:s, s:s}", "type", "ack",
							"deliveryId", delivery_id));
}

/* The whole delivery failed, with error. */
char *
protocol_encode_fail(const char *delivery_id, const char *error)
{
	json_t	   *text = json_string(error);

	/* callers pass valid UTF-8; never send an answer without its error */
	if (text == NULL)
		text = json_string("(the error text is not valid UTF-8)");
	return encode(json_pack("{s:s, s:s, s:o}", "type", "fail",
							"deliveryId", delivery_id, "error", text));
}

/*
 * One answer for a delivery whose events ran one by one: the events in
 * failed ([{eventId, error}]) failed, the others are done.  done, when not
 * NULL, narrows "the others" to the ids it lists (a forced shutdown left
 * the rest unrun: the leader sends them again without counting an
 * attempt).  Takes both references.
 */
char *
protocol_encode_ack_failed(const char *delivery_id, json_t *done,
						   json_t *failed)
{
	json_t	   *msg;

	msg = json_pack("{s:s, s:s}", "type", "ack", "deliveryId", delivery_id);
	if (done != NULL)
		json_object_set_new(msg, "eventIds", done);
	/* none failed: the plain ack says the same */
	if (json_array_size(failed) > 0)
		json_object_set(msg, "failed", failed);
	json_decref(failed);
	return encode(msg);
}
