/*
 * libFuzzer target for cluster-worker's decoder of the messages a leader
 * sends (protocol_parse and protocol_receive in worker/protocol.c, with
 * jansson), without a network: the rest of the worker that
 * protocol_receive reaches (wlog, server_send, delivery_receive) is
 * stubbed here, each stub checking what it is handed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

Worker		worker;

/* what the stubs saw of one protocol_receive */
static struct
{
	const LeaderMessage *m;		/* protocol_parse's view of the same bytes */
	int			sent;
	int			delivered;
} seen;

#define CHECK(cond) do { if (!(cond)) { \
	fprintf(stderr, "fuzz_worker: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
	abort(); } } while (0)

/* jansson takes only valid UTF-8 without NUL for a string */
static bool
valid_utf8(const char *s)
{
	json_t	   *j = json_string(s);
	bool		ok = j != NULL;

	json_decref(j);
	return ok;
}

void
wlog(const char *level, const char *fmt,...)
{
	char		buf[1024];
	va_list		ap;

	(void) level;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
}

/* What the worker would answer: a pong to a ping, a fail to an events. */
void
server_send(Connection *c, json_t *msg)
{
	const char *type = json_string_value(json_object_get(msg, "type"));
	char	   *text;

	CHECK(c != NULL);
	CHECK(msg != NULL);			/* json_pack failed: the answer is lost */
	CHECK(type != NULL);
	text = json_dumps(msg, JSON_COMPACT);
	CHECK(text != NULL);
	free(text);
	if (strcmp(type, "pong") == 0)
		CHECK(seen.m->type == LEADER_PING);
	else
	{
		CHECK(strcmp(type, "fail") == 0);
		CHECK(seen.m->type == LEADER_EVENTS);
		CHECK(json_is_string(json_object_get(msg, "error")));
		CHECK(strcmp(json_string_value(json_object_get(msg, "deliveryId")),
					 seen.m->delivery_id) == 0);
	}
	seen.sent++;
	json_decref(msg);
}

/* What a delivery gets: a named batch, every integer in it exact. */
void
delivery_receive(Connection *c, const char *id, json_t *events)
{
	size_t		i;
	json_t	   *event;

	CHECK(c != NULL);
	CHECK(seen.m->type == LEADER_EVENTS && !seen.m->lossy);
	CHECK(id != NULL && id[0] != '\0');
	CHECK(strcmp(id, seen.m->delivery_id) == 0);
	CHECK(json_is_array(events));
	CHECK(json_array_size(events) == json_array_size(seen.m->events));
	json_array_foreach(events, i, event)
	{
		json_t	   *eid = protocol_event_id(event);

		/* the ids an ack echoes back in eventIds and failed[].eventId */
		CHECK(eid == NULL || json_is_string(eid) || json_is_integer(eid));
		if (eid != NULL)
		{
			json_t	   *answer = json_pack("{s:O, s:s}", "eventId", eid,
										   "error", "x");

			CHECK(answer != NULL);
			json_decref(answer);
		}
	}
	seen.delivered++;
}

static void
check_parsed(const LeaderMessage *m)
{
	CHECK(json_is_object(m->json));
	CHECK((m->type == LEADER_UNTYPED) == (m->type_name == NULL));
	if (m->type_name)
		CHECK(valid_utf8(m->type_name));
	if (m->type == LEADER_EVENTS)
	{
		CHECK(m->delivery_id == NULL || m->delivery_id[0] != '\0');
		/* echoed unchanged: the whole string, valid UTF-8 */
		if (m->delivery_id)
		{
			json_t	   *v = json_object_get(m->json, "deliveryId");

			CHECK(json_string_value(v) == m->delivery_id);
			CHECK(json_string_length(v) == strlen(m->delivery_id));
			CHECK(valid_utf8(m->delivery_id));
		}
		CHECK(m->events == NULL || json_is_array(m->events));
		CHECK(m->events == NULL ||
			  m->events == json_object_get(m->json, "events"));
	}
	else
	{
		CHECK(m->delivery_id == NULL && m->events == NULL);
	}
	if (m->type == LEADER_HELLO)
	{
		CHECK(m->leader != NULL && m->fence != NULL && m->version != NULL);
		CHECK(m->handler == NULL || valid_utf8(m->handler));
		/* the texts made here end inside their buffers */
		CHECK(m->leader != m->leader_buf ||
			  strlen(m->leader) < sizeof(m->leader_buf));
		CHECK(m->fence != m->fence_buf ||
			  strlen(m->fence) < sizeof(m->fence_buf));
		CHECK(m->version != m->version_buf ||
			  strlen(m->version) < sizeof(m->version_buf));
	}
	else
	{
		CHECK(m->handler == NULL && m->leader == NULL && !m->other_protocol);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the connection's buffer: exactly the message, no terminator */
	char	   *text;
	LeaderMessage m;
	char		why[124];		/* as server.c: a close reason's 123 bytes */
	char		why2[124];
	int			status;
	int			status2;
	Connection	c;

	if (size > PROTOCOL_MAX_MESSAGE)
		return 0;
	text = malloc(size ? size : 1);
	memcpy(text, data, size);
	if (worker.opt.handler == NULL)
		worker.opt.handler = "mailer";

	memset(why, 0, sizeof(why));
	status = protocol_parse(text, size, &m, why, sizeof(why));
	if (status != 0)
	{
		/* a close with a reason the peer can read */
		CHECK(status == CLOSE_INVALID_PAYLOAD);
		CHECK(m.json == NULL);
		CHECK(why[0] != '\0' && strlen(why) < sizeof(why));
		CHECK(valid_utf8(why));
	}
	else
		check_parsed(&m);

	/* the whole path, acting on what was parsed */
	memset(&c, 0, sizeof(c));
	strcpy(c.peer, "127.0.0.1:1");
	memset(&seen, 0, sizeof(seen));
	seen.m = &m;
	memset(why2, 0, sizeof(why2));
	status2 = protocol_receive(&c, text, size, why2, sizeof(why2));
	CHECK(status2 == status);
	if (status != 0)
	{
		CHECK(strcmp(why, why2) == 0);
		CHECK(seen.sent == 0 && seen.delivered == 0);
	}
	else
	{
		/* an events message with an id is answered or delivered, once */
		if (m.type == LEADER_EVENTS && m.delivery_id != NULL)
			CHECK(seen.sent + seen.delivered == 1);
		else if (m.type == LEADER_PING)
			CHECK(seen.sent == 1 && seen.delivered == 0);
		else
			CHECK(seen.sent == 0 && seen.delivered == 0);
		protocol_parse_free(&m);
		CHECK(m.json == NULL);
	}
	free(text);
	return 0;
}
