"""A gateway-like child process for the crash test: commit readings, then drain them.

Usage: python -m tests.edge.drain_child OUTBOX URL DB COUNT
Prints "committed N" once every reading is committed, then "drained N" after each batch.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from edge import schema
from edge.config import InfluxV1Sink
from edge.outbox import Outbox
from edge.reading import Reading
from edge.sink import Drainer, InfluxV1Writer

T0 = datetime(2026, 11, 24, 12, tzinfo=UTC)


def main() -> None:
    path, url, db, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    writer = InfluxV1Writer(InfluxV1Sink(type="influxdb_v1", url=url, database=db))
    outbox = Outbox(path, sinks=[writer.name])
    if outbox.count() == 0:
        for start in range(0, count, 1000):
            outbox.append(
                [
                    Reading(
                        branch="b",
                        device="seq",
                        measurement=schema.OCCUPANCY,
                        fields={"entered": i},
                        time=T0 + timedelta(milliseconds=i),
                    )
                    for i in range(start, min(count, start + 1000))
                ]
            )
    print(f"committed {outbox.count()}", flush=True)
    drainer = Drainer(outbox=outbox, writer=writer, batch_size=200)
    total = 0
    while handled := drainer.drain_once():
        total += handled
        print(f"drained {total}", flush=True)


if __name__ == "__main__":
    main()
