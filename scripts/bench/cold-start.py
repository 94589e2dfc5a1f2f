#!/usr/bin/env python3
"""Cold start of the Lambda function, measured locally: from process start to its first request
for an event on the Lambda runtime API (configuration read, SDK clients built, rules loaded and
compiled). A stub runtime API on 127.0.0.1 notes when the request arrives, then the process is
stopped. No network beyond loopback; dummy credentials, no instance metadata.

  cold-start.py BINARY [--runs N] [--rules SOURCES]...   prints the median and range per rule set
"""
import argparse
import http.server
import os
import statistics
import subprocess
import threading
import time


def measure(binary, rules, runs):
    arrived = []
    event = threading.Event()

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # the runtime asks for the next event: it is ready
            arrived.append(time.perf_counter())
            event.set()
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ,
               AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
               AWS_LAMBDA_FUNCTION_NAME="trail-alerts", AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
               AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256", AWS_LAMBDA_LOG_GROUP_NAME="g",
               AWS_LAMBDA_LOG_STREAM_NAME="s", AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", RULES=rules,
               ALERT_TOPIC_ARN="arn:aws:sns:us-east-1:123456789012:alerts")
    times = []
    for _ in range(runs):
        arrived.clear()
        event.clear()
        start = time.perf_counter()
        proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ok = event.wait(10)
        proc.kill()
        proc.wait()
        if not ok:
            raise SystemExit(f"{binary} with RULES={rules} never asked for an event")
        times.append((arrived[0] - start) * 1000)
    server.shutdown()
    return times


def main():
    p = argparse.ArgumentParser()
    p.add_argument("binary")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--rules", action="append", default=[])
    a = p.parse_args()
    for rules in a.rules or ["builtin"]:
        t = measure(a.binary, rules, a.runs)
        print(f"init with RULES={rules}: median {statistics.median(t):.1f} ms "
              f"(min {min(t):.1f}, max {max(t):.1f}, {a.runs} runs)")


if __name__ == "__main__":
    main()
