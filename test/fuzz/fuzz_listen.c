/*
 * libFuzzer target for the parser of the "listen" endpoints a cluster_admin
 * gives create_coordinator / alter_coordinator (listen_parse in
 * src/listen.c, built with FRONTEND).
 */
#include "postgres_fe.h"

#include "listen.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *endpoint;
	ListenAddress addr;
	const char *why = NULL;

	if (size > 4096)
		return 0;
	endpoint = malloc(size + 1);
	memcpy(endpoint, data, size);
	endpoint[size] = '\0';
	if (listen_parse(endpoint, &addr, &why))
	{
		/* what a parsed endpoint promises: a short host of host characters, a port */
		size_t		len = strlen(addr.host);

		if (len == 0 || len >= LISTEN_MAX_HOST || addr.port < 1 || addr.port > 65535 ||
			strspn(addr.host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") != len)
			abort();
	}
	else if (why == NULL)
		abort();
	free(endpoint);
	return 0;
}
