"""Parses a Prometheus text exposition (stdin) with the prometheus-client package's parser,
an implementation independent of the one that wrote it, and prints its families and samples
as JSON: {"families": {name: {"type", "help"}}, "samples": [{"name", "labels", "value"}]}."""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    out = {"families": {}, "samples": []}
    for family in text_string_to_metric_families(sys.stdin.read()):
        out["families"][family.name] = {"type": family.type, "help": family.documentation}
        for sample in family.samples:
            value = sample.value
            out["samples"].append(
                {
                    "name": sample.name,
                    "labels": sample.labels,
                    "value": None if math.isinf(value) or math.isnan(value) else value,
                }
            )
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
