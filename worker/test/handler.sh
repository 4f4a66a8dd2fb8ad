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
	head -c 4095 /dev/zero | tr '\0' x >&2
	printf '\303\251 and more' >&2
	exit 1 ;;
*'"do":"sleep"'*)
	sleep 1 ;;
*'"do":"kill"'*)
	kill -9 $$ ;;
esac
exit 0
