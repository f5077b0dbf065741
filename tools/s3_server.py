"""A local S3-compatible server for tests: moto's S3 on 127.0.0.1.

Usage: s3_server.py BUCKET [BUCKET...]

Binds an ephemeral port on 127.0.0.1, creates the buckets, prints
`PORT <n>` on stdout and serves until stdin closes (the test that started
it exits or drops the pipe) or SIGTERM.
"""

import signal
import sys

import boto3
from moto.server import ThreadedMotoServer


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server._server.server_port  # the port the OS picked for port 0
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    for bucket in sys.argv[1:]:
        s3.create_bucket(Bucket=bucket)
    print(f"PORT {port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        sys.stdin.read()  # returns when the parent closes the pipe or dies
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
