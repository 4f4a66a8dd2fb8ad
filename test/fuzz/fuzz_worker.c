/*
 * libFuzzer target for cluster-worker's wire format (worker/protocol.c,
 * with jansson), without a network: protocol_parse decodes each input as a
 * leader message, and every answer the worker could give to that message
 * is encoded and read back.  protocol.c calls nothing else of the worker,
 * so nothing is stubbed; what the worker does with a message (dispatch.c)
 * is left to the worker's own tests.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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

/*
 * An encoded answer, as the leader reads it: one compact JSON object of
 * the given type, naming delivery_id (unless NULL).  Frees text; returns
 * the decoded answer for the caller to look further into and release.
 */
static json_t *
read_answer(char *text, const char *type, const char *delivery_id)
{
	json_error_t error;
	json_t	   *answer;

	CHECK(text != NULL);		/* json_pack failed: the answer is lost */
	CHECK(strchr(text, '\n') == NULL);
	answer = json_loads(text, 0, &error);
	free(text);
	CHECK(json_is_object(answer));
	CHECK(strcmp(json_string_value(json_object_get(answer, "type")),
				 type) == 0);
	if (delivery_id != NULL)
		CHECK(strcmp(json_string_value(json_object_get(answer, "deliveryId")),
					 delivery_id) == 0);
	return answer;
}

static void
check_fail(const char *id, const char *error, const char *expected)
{
	json_t	   *answer = read_answer(protocol_encode_fail(id, error),
									 "fail", id);

	CHECK(strcmp(json_string_value(json_object_get(answer, "error")),
				 expected) == 0);
	json_decref(answer);
}

/*
 * The ack of a delivery run one event at a time, every other event failed
 * (as dispatch.c hands the events to delivery.c: an array, no integer
 * beyond 64 bits).  Every event id is one an answer can echo back.
 */
static void
check_ack_failed(const char *id, json_t *events, bool narrowed)
{
	json_t	   *done = json_array();
	json_t	   *failed = json_array();
	char	   *text;
	json_t	   *answer;
	json_t	   *event;
	size_t		n_failed;
	size_t		i;

	json_array_foreach(events, i, event)
	{
		json_t	   *eid = protocol_event_id(event);

		CHECK(eid == NULL || json_is_string(eid) || json_is_integer(eid));
		if (eid == NULL)
			continue;
		if (i % 2 == 0)
			CHECK(json_array_append(done, eid) == 0);
		else
		{
			json_t	   *f = json_pack("{s:O, s:s}", "eventId", eid,
									  "error", "x");

			CHECK(f != NULL);
			CHECK(json_array_append_new(failed, f) == 0);
		}
	}
	n_failed = json_array_size(failed);
	text = protocol_encode_ack_failed(id, narrowed ? json_incref(done) : NULL,
									  json_incref(failed));
	answer = read_answer(text, "ack", id);
	if (narrowed)
		CHECK(json_equal(json_object_get(answer, "eventIds"), done));
	else
		CHECK(json_object_get(answer, "eventIds") == NULL);
	/* none failed: a plain ack */
	if (n_failed == 0)
		CHECK(json_object_get(answer, "failed") == NULL);
	else
		CHECK(json_equal(json_object_get(answer, "failed"), failed));
	json_decref(answer);
	json_decref(done);
	json_decref(failed);
}

/* Every answer the worker could give to m, encoded and read back. */
static void
check_answers(const LeaderMessage *m)
{
	const char *id = m->delivery_id;

	if (m->type == LEADER_PING)
		json_decref(read_answer(protocol_encode_pong(), "pong", NULL));
	if (m->type != LEADER_EVENTS || id == NULL)
		return;
	json_decref(read_answer(protocol_encode_ack(id), "ack", id));
	check_fail(id, "worker is over capacity", "worker is over capacity");
	check_fail(id, "\xff", "(the error text is not valid UTF-8)");
	if (m->events != NULL && !m->lossy)
	{
		check_ack_failed(id, m->events, false);
		check_ack_failed(id, m->events, true);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the connection's buffer: exactly the message, no terminator */
	char	   *text;
	LeaderMessage m;
	char		why[124];		/* as server.c: a close reason's 123 bytes */

	if (size > PROTOCOL_MAX_MESSAGE)
		return 0;
	text = malloc(size ? size : 1);
	memcpy(text, data, size);

	memset(why, 0, sizeof(why));
	if (!protocol_parse(text, size, &m, why, sizeof(why)))
	{
		/* a close with a reason the peer can read */
		CHECK(m.json == NULL);
		CHECK(why[0] != '\0' && strlen(why) < sizeof(why));
		CHECK(valid_utf8(why));
	}
	else
	{
		check_parsed(&m);
		check_answers(&m);
		protocol_parse_free(&m);
		CHECK(m.json == NULL);
	}
	free(text);
	return 0;
}
