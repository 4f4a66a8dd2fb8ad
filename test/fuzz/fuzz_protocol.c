/*
 * libFuzzer target for the decoder of worker messages (src/protocol.c),
 * built with PostgreSQL's frontend JSON parser from libpgcommon.
 */
#include "postgres_fe.h"

#include "protocol.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	WorkerMessage msg;
	char	   *why;

	if (size > 1 << 20)
		return 0;
	if (protocol_decode((const char *) data, (int) size, &msg, &why))
	{
		/* what a decoded message promises */
		if ((msg.type == WORKER_ACK || msg.type == WORKER_FAIL) && msg.delivery_id == NULL)
			abort();
		if (msg.patch && msg.patch[0] != '[')
			abort();
		/* an error text is cut, whatever was sent */
		if (msg.error && strlen(msg.error) > PROTOCOL_MAX_ERROR + 32)
			abort();
		/* failed events only in an ack, each with its (cut) error */
		if (msg.n_failed > 0 && (msg.type != WORKER_ACK || !msg.failed_ids))
			abort();
		for (int i = 0; i < msg.n_failed; i++)
			if (msg.failed_errors[i] && strlen(msg.failed_errors[i]) > PROTOCOL_MAX_ERROR + 32)
				abort();
		protocol_free(&msg);
	}
	else
	{
		if (why == NULL)
			abort();
		pfree(why);
	}
	return 0;
}
