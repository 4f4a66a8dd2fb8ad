#!/bin/sh
# The --exec command of the tests: acts on the "do" field of the events.
input=$(cat)
case "$input" in
*'"do":"echo"'*)
	printf '%s\n' "$input" ;;
*'"do":"stderr"'*)
	printf '\n  something broke:\n  details \303\251  \n\n' >&2
	exit 1 ;;
*'"do":"long-stderr"'*)
	head -c 1023 /dev/zero | tr '\0' x >&2
	printf '\303\251 and more' >&2
	exit 1 ;;
*'"do":"sleep"'*)
	sleep 1 ;;
*'"do":"kill"'*)
	kill -9 $$ ;;
*'"bad":true'*)
	# a line of stderr for each bad event: alone, it says which
	printf '%s\n' "$input" | sed -n 's/.*"name":"\([^"]*\)","bad":true.*/\1 is bad/p' >&2
	exit 1 ;;
esac
exit 0
