/*
 * libFuzzer target for the parser of worker addresses that registering
 * roles send (allowlist_url_host in src/allowlist.c, built with FRONTEND).
 */
#include "postgres_fe.h"

#include "allowlist.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *url;
	char		host[ALLOWLIST_MAX_HOST];
	const char *why = NULL;

	if (size > 4096)
		return 0;
	url = malloc(size + 1);
	memcpy(url, data, size);
	url[size] = '\0';
	if (allowlist_url_host(url, host, &why))
	{
		/* what a parsed host promises: a non-empty, lower-case name or
		 * address with nothing of the path, query or user information */
		size_t		len = strlen(host);

		if (len == 0 || len >= ALLOWLIST_MAX_HOST || strpbrk(host, "/?#@"))
			abort();
		for (size_t i = 0; i < len; i++)
			if (host[i] >= 'A' && host[i] <= 'Z')
				abort();
		if (strncmp(url, "ws://", 5) != 0 && strncmp(url, "wss://", 6) != 0)
			abort();
	}
	else if (why == NULL)
		abort();
	free(url);
	return 0;
}
