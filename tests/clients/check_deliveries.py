"""Independent checks of captured deliveries, for tests/it/formats.rs.

Reads a JSON list of requests on stdin, each {"check": ..., "headers": {...}, "body": <base64>,
...}, and prints a JSON list of results:
  cloudevents  parse with the CloudEvents Python SDK (structured mode); the event's attributes
               and data
  hmac         {"algorithm": "sha1"|"sha256", "key": <text>}: the hex HMAC of the body
"""
import base64
import hashlib
import hmac
import json
import sys

from cloudevents.v1.http import from_http

results = []
for request in json.load(sys.stdin):
    body = base64.b64decode(request["body"])
    if request["check"] == "cloudevents":
        event = from_http(request["headers"], body)
        attributes = {k: (v if isinstance(v, str) else str(v)) for k, v in event.get_attributes().items()}
        results.append({"attributes": attributes, "data": event.get_data()})
    elif request["check"] == "hmac":
        digest = getattr(hashlib, request["algorithm"])
        results.append(hmac.new(request["key"].encode(), body, digest).hexdigest())
    else:
        raise SystemExit("unknown check " + request["check"])
json.dump(results, sys.stdout)
