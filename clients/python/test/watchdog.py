"""The backstop against a test that hangs (the tests' own waits are
bounded): after CLIENT_TEST_TIMEOUT seconds (default 120) in one test,
with its set-up and tear-down, every thread's stack is printed and the
process exits with an error, so that the run fails instead of hanging."""
import faulthandler
import os

TIMEOUT = float(os.environ.get("CLIENT_TEST_TIMEOUT", "120"))


class Watched:
    """Put first among a TestCase's bases."""

    def run(self, result=None):
        faulthandler.dump_traceback_later(TIMEOUT, exit=True)
        try:
            return super().run(result)
        finally:
            faulthandler.cancel_dump_traceback_later()
