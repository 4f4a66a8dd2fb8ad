"""The README's dial-in example runs as written: its code block, with the
test server's endpoint for 127.0.0.1:7800, as a program of its own."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import psycopg2

from watchdog import Watched

HERE = os.path.dirname(os.path.abspath(__file__))


def sql(query, *args):
    with psycopg2.connect("") as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall() if cur.description else None


class ReadmeTest(Watched, unittest.TestCase):
    def test_example(self):
        with open(os.path.join(HERE, "..", "README.md")) as f:
            readme = f.read()
        code = re.search(r"```python\n(# mailer\.py.*?)```", readme, re.S).group(1)
        code = code.replace("ws://127.0.0.1:7800/", os.environ["CLUSTER_LISTEN"])
        sql("SELECT cluster.create_pump('porders')")
        sql("SELECT cluster.create_handler('pmailer', 'porders', max_attempts => 1)")
        token = sql("SELECT cluster.issue_worker_token('pmailer', capacity => 4)")[0][0]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "mailer.py")
            with open(path, "w") as f:
                f.write(code)
            env = dict(os.environ, CLUSTER_WORKER_TOKEN=token, PYTHONPATH=os.path.join(HERE, ".."),
                       PYTHONUNBUFFERED="1")  # what it printed, up to a failure
            # its output goes to a file: nothing to read while it runs, and
            # no pipe that could fill up
            out_path = os.path.join(tmp, "out")
            with open(out_path, "w") as out_file:
                child = subprocess.Popen([sys.executable, path], env=env, stdout=out_file,
                                         stderr=subprocess.DEVNULL, text=True)

            def printed():
                with open(out_path) as f:
                    return f.read()

            # however the test ends, the example does not outlive it: killed,
            # and waited for
            try:
                sql("""SELECT cluster.publish('porders', p) FROM (VALUES ('{"email": "a@example.com"}'::jsonb),
                       ('{"email": "b@example.com"}'), ('{"name": "no mail"}')) v(p)""")
                deadline = time.monotonic() + 20
                while not sql("SELECT lag_events = 0 AND dead_letters = 1 FROM cluster.handlers "
                              "WHERE name = 'pmailer'")[0][0]:
                    self.assertLess(time.monotonic(), deadline,
                                    f"the example handled the events; it printed:\n{printed()}")
                    time.sleep(0.02)
                self.assertTrue(sql("SELECT cluster.handler_state('pmailer') ? 'last_delivery'")[0][0])
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.fail(f"the example still runs 20 s after SIGTERM; it printed:\n{printed()}")
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            out = printed()
            self.assertEqual(child.returncode, 0, f"the example exits 0 on SIGTERM; it printed:\n{out}")
            self.assertIn("pmailer: mail to a@example.com", out)
            self.assertIn("pmailer: mail to b@example.com", out)


if __name__ == "__main__":
    unittest.main()
