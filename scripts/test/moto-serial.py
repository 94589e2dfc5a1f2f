#!/usr/bin/env python3
"""moto's server, answering one request at a time.

DynamoDB applies each write to an item atomically: a conditional UpdateItem reads, tests and
writes as one step. moto's DynamoDB does the same steps in Python without a lock, and
`moto_server` answers requests on threads, so two UpdateItems racing on one item can lose an
update (seen as a roll-up counting 17 of 19 racing matches). The tests that race invocations
against the state store run moto through this launcher instead: each request runs whole before
the next starts, which is DynamoDB's per-request atomicity, while the invocations' own steps
(count, claim, publish, mark) still interleave freely between requests.

Usage: moto-serial.py -H 127.0.0.1 -p PORT
"""
import argparse

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    run_simple(args.host, args.port, DomainDispatcherApplication(create_backend_app),
               threaded=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
