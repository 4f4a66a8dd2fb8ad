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

HERE = os.path.dirname(os.path.abspath(__file__))


def sql(query, *args):
    with psycopg2.connect("") as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall() if cur.description else None


class ReadmeTest(unittest.TestCase):
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
            env = dict(os.environ, CLUSTER_WORKER_TOKEN=token, PYTHONPATH=os.path.join(HERE, ".."))
            child = subprocess.Popen([sys.executable, path], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
            try:
                sql("""SELECT cluster.publish('porders', p) FROM (VALUES ('{"email": "a@example.com"}'::jsonb),
                       ('{"email": "b@example.com"}'), ('{"name": "no mail"}')) v(p)""")
                deadline = time.monotonic() + 20
                while not sql("SELECT lag_events = 0 AND dead_letters = 1 FROM cluster.handlers "
                              "WHERE name = 'pmailer'")[0][0]:
                    self.assertLess(time.monotonic(), deadline, "the example handled the events")
                    time.sleep(0.02)
                self.assertTrue(sql("SELECT cluster.handler_state('pmailer') ? 'last_delivery'")[0][0])
                child.send_signal(signal.SIGTERM)
                out, _ = child.communicate(timeout=20)
            finally:
                if child.poll() is None:
                    child.kill()
            self.assertEqual(child.returncode, 0)
            self.assertIn("pmailer: mail to a@example.com", out)
            self.assertIn("pmailer: mail to b@example.com", out)


if __name__ == "__main__":
    unittest.main()
