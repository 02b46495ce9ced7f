#!/usr/bin/env python3
"""The prune benchmark: on a table of N seeded events of which a destination has delivered the
first half, `audit-exporter prune` deletes that half while an application keeps inserting
(pgbench, one event a transaction at a steady rate). It reports the prune's time, the worst and
the 99th-percentile insert latency during it (the database's time: pgbench's schedule lag, a
busy client's own wait, taken out) against inserts alone just before, and the table's size before and after; then
cycles of steady insert + prune show whether the space is reused (the size stays flat).

Run it through scripts/bench_prune.sh, which builds the binaries first.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Fixture, database_for, exporter_env, log, psql, run  # noqa: E402

INSERT_SQL = """INSERT INTO audit_events (tenant_id, action, actor, metadata)
VALUES ('tenant-0001', 'user.login',
        '{"type":"user","id":"u-1","ip":"203.0.113.9","user_agent":"Mozilla/5.0"}',
        '{"request_id":"0123456789abcdef0123456789abcdef","source":"web"}');
"""


def size(url):
    return int(psql(url, "SELECT pg_total_relation_size('audit_events')"))


def mib(n):
    return f"{n / 2**20:,.0f} MiB"


def deliver_up_to(url, event_id):
    """The state of a destination that has exported every event below `event_id` (the seeded
    events are committed 50,000 a transaction, so a transaction boundary)."""
    psql(
        url,
        f"""INSERT INTO export_destinations (name, every_hours, anchor, stream_started, stream_lo, watermark)
            VALUES ('bench', 1, now(), true, '0', (SELECT txid FROM audit_events WHERE id = {event_id}))
            ON CONFLICT (name) DO UPDATE SET watermark = EXCLUDED.watermark""",
    )


class Inserts:
    """pgbench inserting at `rate` transactions a second until stopped, with a per-transaction
    latency log."""

    def __init__(self, url, rate, directory):
        self.directory = directory
        script = os.path.join(directory, "insert.sql")
        with open(script, "w") as f:
            f.write(INSERT_SQL)
        self.process = subprocess.Popen(
            ["pgbench", "-n", "-c", "2", "-j", "1", "-R", str(rate), "-T", "86400", "-l",
             "--log-prefix", os.path.join(directory, "lat"), "-f", script, url],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self):
        """Stops pgbench: SIGINT, then SIGTERM and SIGKILL if it keeps running (with -R and a
        long -T, pgbench 15 may not end on SIGINT)."""
        self.process.send_signal(2)
        for escalate in (self.process.terminate, self.process.kill):
            try:
                self.process.wait(timeout=10)
                return
            except subprocess.TimeoutExpired:
                escalate()
        self.process.wait()

    def latencies_ms(self, start, end):
        """Latencies (ms) of the inserts that finished between the epoch seconds start and end."""
        found = []
        for name in os.listdir(self.directory):
            if not name.startswith("lat"):
                continue
            with open(os.path.join(self.directory, name)) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) < 6:
                        continue  # a line pgbench is still writing
                    # client, transaction, latency us, script, epoch s, us [, schedule lag us]
                    at = int(parts[4]) + int(parts[5]) / 1e6
                    # With -R, the latency counts from the scheduled start: take the wait for
                    # a busy client (schedule lag) out, keeping the database's own time.
                    lag = int(parts[6]) if len(parts) > 6 else 0
                    if start <= at <= end:
                        found.append((int(parts[2]) - lag) / 1000.0)
        return sorted(found)


def prune(exporter, url, note):
    cutoff = psql(url, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
    started = time.time()
    wall, rss, out = run([exporter, "prune", "--before", cutoff], env=exporter_env(url, {}))
    log(f"{note}: {out.strip().splitlines()[0]} in {wall:.1f} s")
    return started, time.time(), wall, rss, out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--rate", type=int, default=500, help="inserts a second during the prune")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--in-place", action="store_true",
                        help="prune the seeded database itself rather than a copy (half the disk; "
                        "it is seeded again next time)")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--exporter", required=True)
    parser.add_argument("--fixture", required=True)
    args = parser.parse_args()

    n = args.events
    fixture = Fixture(args.fixture, args.dir, os.path.join(args.dir, "s3"))
    try:
        seeded = database_for(fixture, args.exporter, n, False)
        admin = fixture.admin_url
        if args.in_place:
            url = seeded
            # No longer the seeded events: the next run seeds again.
            psql(url, "DROP TABLE bench_seeded")
        else:
            name = f"bench_prune_{n}"
            psql(admin, f"DROP DATABASE IF EXISTS {name}")
            psql(admin, f"CREATE DATABASE {name} TEMPLATE {seeded.rsplit('/', 1)[1]}")
            url = seeded.rsplit("/", 1)[0] + "/" + name
        run([args.exporter, "migrate"], env=exporter_env(url, {}), quiet=True)
        deliver_up_to(url, n // 2 + 1)
        psql(url, "VACUUM (ANALYZE) audit_events")
        before = size(url)

        with tempfile.TemporaryDirectory() as tmp:
            inserts = Inserts(url, args.rate, tmp)
            # Inserts alone first: what latency the machine gives without a prune.
            baseline_started = time.time()
            time.sleep(20)
            baseline = inserts.latencies_ms(baseline_started, time.time())
            start, end, wall, rss, _ = prune(args.exporter, url, f"N={n}")
            during = inserts.latencies_ms(start, end)
            vacuum_started = time.time()
            psql(url, "VACUUM audit_events")
            vacuum_wall = time.time() - vacuum_started
            after_vacuum = size(url)
            during_vacuum = inserts.latencies_ms(vacuum_started, time.time())

            # Steady insert + prune: each cycle adds n/10 events (and the inserts of pgbench),
            # the destination delivers them, the prune deletes what was delivered, and
            # (auto)vacuum makes the space reusable.
            sizes = []
            chunk = max(n // 10, 10_000)
            for cycle in range(args.cycles):
                last = int(psql(url, "SELECT max(id) FROM audit_events"))
                psql(
                    url,
                    "INSERT INTO audit_events (tenant_id, action, actor, metadata) "
                    "SELECT 'tenant-0002', 'user.login', '{\"type\":\"user\",\"id\":\"u-2\"}', "
                    "jsonb_build_object('request_id', md5(g::text), 'padding', repeat('x', 400)) "
                    f"FROM generate_series(1, {chunk}) g",
                )
                deliver_up_to(url, int(psql(url, "SELECT max(id) FROM audit_events")))
                prune(args.exporter, url, f"cycle {cycle + 1}")
                psql(url, "VACUUM audit_events")
                sizes.append(size(url))
                log(f"cycle {cycle + 1}: {chunk} events added after id {last}, table {mib(sizes[-1])}")
            inserts.stop()
            total = inserts.latencies_ms(0, time.time() + 1)

        def pct(values, p):
            return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")

        report = [
            f"## Prune benchmark, N={n:,} events, half delivered ({time.strftime('%Y-%m-%d %H:%M')})",
            "",
            "| measure | value |",
            "|---|---|",
            f"| prune of {n // 2:,} events | {wall:.1f} s ({n // 2 / wall:,.0f} events/s), peak RSS {rss / 1024:.0f} MiB |",
            f"| inserts alone for 20 s before it ({args.rate}/s asked) | {len(baseline):,} done, "
            f"p99 {pct(baseline, 0.99):.1f} ms, worst {max(baseline, default=float('nan')):.1f} ms |",
            f"| inserts during the prune ({args.rate}/s asked) | {len(during):,} done, "
            f"p99 {pct(during, 0.99):.1f} ms, worst {max(during, default=float('nan')):.1f} ms |",
            f"| plain VACUUM after the prune | {vacuum_wall:.1f} s; inserts meanwhile worst "
            f"{max(during_vacuum, default=float('nan')):.1f} ms |",
            f"| table + indexes before / after prune + VACUUM | {mib(before)} / {mib(after_vacuum)} "
            "(the space is free for new rows, not given back to the OS) |",
            f"| after each of {args.cycles} cycles of +{chunk:,} events, prune, VACUUM | "
            + ", ".join(mib(s) for s in sizes) + " |",
            f"| all inserts of the run | {len(total):,}, p99 {pct(total, 0.99):.1f} ms, "
            f"worst {max(total, default=float('nan')):.1f} ms |",
            "",
        ]
        print("\n".join(report))
        with open(os.path.join(args.dir, "results.md"), "a") as f:
            f.write("\n".join(report) + "\n")
    finally:
        fixture.close()


if __name__ == "__main__":
    main()
