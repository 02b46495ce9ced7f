#!/usr/bin/env python3
"""The export benchmark: audit-exporter (A) against the shell pipeline a user would write (B)
and the database's own limit (L), on the same data in the same run, rounds alternating A B.

Run it through scripts/bench.sh, which builds the binaries and installs the AWS CLI first.
"""

import argparse
import datetime
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import bench_many

COMPRESSIONS = {
    # compression: (the pipeline's compressor, the object's extension)
    "none": ("", ".jsonl"),
    "gzip": ("gzip -1 -c", ".jsonl.gz"),
    "zstd": ("zstd -1 -q -c", ".jsonl.zst"),
}

# The other shapes the exporter writes, measured beside its JSON lines (A only: no shell
# pipeline writes them): label: (encoding, schema).
FORMATS = {
    "parquet": ("parquet", "native"),
    "ocsf": ("ndjson", "ocsf"),
    "ocsf-parquet": ("parquet", "ocsf"),
}

# The events of one window, as both the exporter and the pipeline select them.
COLUMNS = "event_id, occurred_at, recorded_at, tenant_id, action, actor, target, metadata"
WINDOW = "txid < pg_snapshot_xmin(pg_current_snapshot())"

# About 575 bytes per event as compact JSON: varied actions, tenants, actors with ips and user
# agents, targets (a fifth of them null) and metadata; one event in a hundred holds quotes,
# a backslash, a newline and non-ASCII text.
SEED_BATCH = 50_000
SEED_SQL = r"""
INSERT INTO audit_events (occurred_at, tenant_id, action, actor, target, metadata)
SELECT timestamptz '2026-01-01 00:00:00+00' + make_interval(secs => g * 0.137),
       'tenant-' || lpad((g % @TENANTS@)::text, 4, '0'),
       (ARRAY['user.login','user.logout','user.password.changed','project.created','project.deleted',
              'api_key.created','api_key.revoked','member.invited','member.role.changed',
              'billing.plan.changed'])[1 + g % 10],
       jsonb_build_object(
           'type', CASE WHEN g % 11 = 0 THEN 'service' ELSE 'user' END,
           'id', 'u-' || (g * 7919 % 100003),
           'name', (ARRAY['Ada Lovelace','Grace Hopper','Alan Turing','Edsger Dijkstra',
                          'Barbara Liskov','Ken Thompson','Margaret Hamilton'])[1 + g % 7],
           'ip', (ARRAY['203.0.113.','198.51.100.','192.0.2.','10.20.'])[1 + g % 4] || (g * 31 % 254 + 1),
           'user_agent', (ARRAY[
               'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36',
               'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15',
               'curl/8.8.0',
               'audit-sdk-python/2.3.1 (CPython 3.12.4; Linux x86_64)'])[1 + g % 4]),
       CASE WHEN g % 5 <> 0 THEN jsonb_build_object(
           'type', (ARRAY['project','api_key','member','invoice'])[1 + g % 4],
           'id', 'r-' || (g * 104729 % 1000003),
           'name', 'res-' || (g % 5000)) END,
       jsonb_build_object(
           'request_id', md5(g::text),
           'session_id', substr(md5((g / 16)::text), 1, 12),
           'source', (ARRAY['web','api','cli','sso'])[1 + g % 4],
           'geo', jsonb_build_object(
               'country', (ARRAY['DE','US','FR','JP','BR','IN'])[1 + g % 6],
               'city', (ARRAY['Berlin','Austin','Lyon','Osaka','Recife','Pune'])[1 + g % 6]),
           'changes', CASE WHEN g % 3 = 0 THEN jsonb_build_object(
               'role', jsonb_build_object('from', 'viewer', 'to', 'admin')) ELSE '{}'::jsonb END,
           'note', CASE WHEN g % 100 = 0
                        THEN E'quoted "text", a \\ backslash,\na newline and ünïcödé ✓'
                        ELSE 'ok' END)
FROM generate_series(@LO@::bigint, @HI@::bigint) g;
"""


def log(message):
    print(message, file=sys.stderr, flush=True)


class Fixture:
    """The PostgreSQL and S3 server of the benchmark, in their own process."""

    def __init__(self, binary, directory, s3_directory):
        self.process = subprocess.Popen(
            [binary, directory, s3_directory], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit("the benchmark fixture did not start")
        self.__dict__.update(json.loads(line))
        self.admin_url = self.database_url.rsplit("/", 1)[0] + "/postgres"

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def psql(url, sql, *extra):
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-d", url, "-c", sql, *extra],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def database_for(fixture, exporter, n, fresh, tenants=97):
    """A database holding exactly n seeded events over `tenants` tenants, made once and reused
    across runs."""
    name = f"bench_{n}" if tenants == 97 else f"bench_{n}_t{tenants}"
    seed_sql = SEED_SQL.replace("@TENANTS@", str(tenants))
    seed = hashlib.sha256(seed_sql.encode()).hexdigest()[:16]
    url = fixture.database_url.rsplit("/", 1)[0] + "/" + name
    exists = psql(fixture.admin_url, f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
    if exists and fresh:
        psql(fixture.admin_url, f"DROP DATABASE {name}")
        exists = ""
    if exists:
        try:
            seeded = psql(url, "SELECT n || ' ' || seed FROM bench_seeded")
        except subprocess.CalledProcessError:
            seeded = ""
        if seeded == f"{n} {seed}":
            log(f"N={n}: reusing the seeded database {name}")
            return url
        psql(fixture.admin_url, f"DROP DATABASE {name}")
    psql(fixture.admin_url, f"CREATE DATABASE {name}")
    run([exporter, "migrate"], env=exporter_env(url, {}), quiet=True)
    started = time.monotonic()
    script = "".join(
        seed_sql.replace("@LO@", str(lo)).replace("@HI@", str(min(lo + SEED_BATCH - 1, n)))
        for lo in range(1, n + 1, SEED_BATCH)
    )
    # One transaction a batch, as many writers would commit them.
    subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
        input=script,
        text=True,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    psql(url, "VACUUM (ANALYZE) audit_events")
    psql(url, f"CREATE TABLE bench_seeded AS SELECT {n}::bigint AS n, '{seed}'::text AS seed")
    log(f"N={n}: seeded in {time.monotonic() - started:.1f} s")
    return url


def exporter_env(url, destinations):
    env = dict(os.environ)
    env.update(
        {
            "AUDIT_EXPORTER__DATABASE__URL": url,
            "AUDIT_EXPORTER__LOG__LEVEL": "error",
        }
    )
    env.update(destinations)
    return env


def run(argv, env=None, quiet=False, shell=False):
    """Runs a command to its end; returns (wall seconds, peak RSS in KiB, stdout)."""
    # Output goes to files, read at the end: a pipe left unread would stop a command that
    # prints more than its buffer (status --json of many destinations).
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        started = time.monotonic()
        process = subprocess.Popen(
            argv,
            env=env,
            shell=shell,
            executable="/bin/bash" if shell else None,
            stdout=stdout,
            stderr=stderr if quiet else None,
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        out = stdout.read().decode()
        if process.returncode != 0:
            err = stderr.read().decode() if quiet else ""
            raise SystemExit(f"command failed ({process.returncode}): {argv}\n{out}{err}")
    return wall, usage.ru_maxrss, out


class Bench:
    def __init__(self, args, fixture):
        self.args = args
        self.fixture = fixture
        self.stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H%M%S")
        self.aws_env = dict(os.environ)
        self.aws_env.update(
            {
                "AWS_ACCESS_KEY_ID": fixture.access_key_id,
                "AWS_SECRET_ACCESS_KEY": fixture.secret_access_key,
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true",
                "PGTZ": "UTC",
            }
        )

    def object_path(self, key):
        return os.path.join(self.fixture.s3_root, self.fixture.bucket, key)

    def exporter(self, url, n, compression, label, part_mib=None, shape=None):
        """A: the release binary exporting one window holding all n events (as JSON lines, or
        in one of FORMATS)."""
        name = f"b{n}_{self.stamp}_{label}_{compression}"
        if shape:
            name += "_" + shape.replace("-", "_")
        prefix = f"AUDIT_EXPORTER__DESTINATIONS__{name.upper()}__"
        destination = {
            prefix + "URL": f"s3://{self.fixture.bucket}/a",
            prefix + "REGION": "us-east-1",
            prefix + "ENDPOINT": self.fixture.s3_endpoint,
            prefix + "FORCE_PATH_STYLE": "true",
            prefix + "ACCESS_KEY_ID": self.fixture.access_key_id,
            prefix + "SECRET_ACCESS_KEY": self.fixture.secret_access_key,
            prefix + "COMPRESSION": compression,
        }
        if shape:
            encoding, schema = FORMATS[shape]
            destination[prefix + "ENCODING"] = encoding
            destination[prefix + "SCHEMA"] = schema
        if part_mib:
            destination["AUDIT_EXPORTER__EXPORTER__PART_SIZE_MIB"] = str(part_mib)
            destination["AUDIT_EXPORTER__EXPORTER__UPLOADS_IN_FLIGHT"] = "1"
        wall, rss, _ = run(
            [self.args.exporter, "export", "--destination", name],
            env=exporter_env(url, destination),
        )
        # The run's objects (several once the window passes max_object_bytes): key, bytes and
        # SHA-256 of each, in order.
        row = psql(
            url,
            "SELECT r.event_count, string_agg(o.key || ' ' || o.bytes || ' ' || o.sha256, ';' "
            "ORDER BY o.seq) FROM export_runs r JOIN export_run_objects o ON o.run_id = r.id "
            f"WHERE r.destination = '{name}' AND r.status = 'done' GROUP BY r.id",
        ).split("|")
        events = int(row[0])
        if events != n:
            raise SystemExit(f"A exported {events} events, not {n}")
        total, hashes = 0, []
        for item in row[1].split(";"):
            key, size, sha256 = item.rsplit(" ", 2)
            path = self.object_path(key)
            if os.path.getsize(path) != int(size):
                raise SystemExit(f"A's object {key} is not {size} bytes")
            os.remove(path)
            total += int(size)
            hashes.append(sha256)
        return {"wall": wall, "rss_kib": rss, "bytes": total, "sha256": ",".join(hashes),
                "objects": len(hashes)}

    def pipeline(self, url, n, compression, label):
        """B: psql row_to_json | compressor | aws s3 cp -."""
        compressor, ext = COMPRESSIONS[compression]
        key = f"b/{n}_{self.stamp}_{label}{ext}"
        query = (
            f"SELECT row_to_json(e) FROM (SELECT {COLUMNS} FROM audit_events "
            f"WHERE {WINDOW} ORDER BY txid, id) e"
        )
        # CSV with quote and delimiter bytes that JSON never holds, so the JSON text comes out
        # unchanged (text format would double every backslash).
        copy = f"\\copy ({query}) to stdout with (format csv, quote e'\\x01', delimiter e'\\x02')"
        stages = [f"psql -X -q -d '{url}' -c \"{copy}\""]
        if compressor:
            stages.append(compressor)
        stages.append(
            f"'{self.args.aws}' s3 cp - 's3://{self.fixture.bucket}/{key}' "
            f"--endpoint-url '{self.fixture.s3_endpoint}' --only-show-errors"
        )
        wall, _, _ = run("set -o pipefail; " + " | ".join(stages), env=self.aws_env, shell=True)
        path = self.object_path(key)
        size = os.path.getsize(path)
        os.remove(path)
        return {"wall": wall, "bytes": size}

    def limit(self, url):
        """L: the database's own limit, its binary COPY of the window to /dev/null."""
        copy = (
            f"\\copy (SELECT {COLUMNS} FROM audit_events WHERE {WINDOW} ORDER BY txid, id) "
            "to '/dev/null' with (format binary)"
        )
        wall, _, _ = run(["psql", "-X", "-q", "-d", url, "-c", copy], env=self.aws_env)
        return {"wall": wall}

    def measure(self, n):
        url = database_for(self.fixture, self.args.exporter, n, self.args.fresh)
        compressions = self.args.compressions
        # Warm the caches once, untimed.
        self.limit(url)
        results = {"L": []}
        for c in compressions:
            results["A", c] = []
            results["B", c] = []
            for f in self.args.formats:
                results["F", f, c] = []
        for r in range(1, self.args.rounds + 1):
            for c in compressions:
                results["A", c].append(self.exporter(url, n, c, f"r{r}"))
                log(f"N={n} round {r} A {c}: {results['A', c][-1]['wall']:.2f} s")
                results["B", c].append(self.pipeline(url, n, c, f"r{r}"))
                log(f"N={n} round {r} B {c}: {results['B', c][-1]['wall']:.2f} s")
                for f in self.args.formats:
                    results["F", f, c].append(self.exporter(url, n, c, f"r{r}", shape=f))
                    log(f"N={n} round {r} A {f} {c}: {results['F', f, c][-1]['wall']:.2f} s")
            results["L"].append(self.limit(url))
            log(f"N={n} round {r} L: {results['L'][-1]['wall']:.2f} s")
        checks = []
        if self.args.check:
            # Exported again one small part at a time: the same bytes.
            for c in compressions:
                slow = self.exporter(url, n, c, "slow", part_mib=5)
                same = {a["sha256"] for a in results["A", c]} == {slow["sha256"]}
                checks.append((c, same))
                if not same:
                    raise SystemExit(f"N={n} {c}: the bytes depend on the part size or the round")
                for f in self.args.formats:
                    slow = self.exporter(url, n, c, "slow", part_mib=5, shape=f)
                    same = {a["sha256"] for a in results["F", f, c]} == {slow["sha256"]}
                    checks.append((f"{f} {c}", same))
                    if not same:
                        raise SystemExit(f"N={n} {f} {c}: the bytes depend on the part size or the round")
        return results, checks


def fmt_range(values, unit="", digits=2):
    return (
        f"{statistics.median(values):.{digits}f}{unit} "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def report(n, rounds, results, checks):
    lines = []
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(f"N = {n:,} events, {rounds} rounds A B alternating, {today}; median (min-max)")
    header = (
        "| compression | A export s | B pipeline s | A events/s | B events/s | A/B speed "
        "| A MB/s out | A MB | B MB | A peak RSS MiB |"
    )
    lines.append(header)
    lines.append("|" + "---|" * (header.count("|") - 1))
    limit = statistics.median(r["wall"] for r in results["L"])
    a_none = None
    for (kind, c), runs in ((k, v) for k, v in results.items() if k != "L" and len(k) == 2):
        if kind != "A":
            continue
        b_runs = results["B", c]
        a_wall = statistics.median(r["wall"] for r in runs)
        b_wall = statistics.median(r["wall"] for r in b_runs)
        a_bytes = runs[0]["bytes"]
        b_bytes = statistics.median(r["bytes"] for r in b_runs)
        rss = [r["rss_kib"] / 1024 for r in runs]
        if c == "none":
            a_none = a_wall
        lines.append(
            f"| {c} | {fmt_range([r['wall'] for r in runs])} | {fmt_range([r['wall'] for r in b_runs])} "
            f"| {n / a_wall:,.0f} | {n / b_wall:,.0f} | {b_wall / a_wall:.2f}x "
            f"| {a_bytes / 1e6 / a_wall:,.0f} | {a_bytes / 1e6:,.1f} | {b_bytes / 1e6:,.1f} "
            f"| {fmt_range(rss, digits=1)} |"
        )
    lines.append(
        f"L, binary COPY to /dev/null: {fmt_range([r['wall'] for r in results['L']], ' s')}, "
        f"{n / limit:,.0f} events/s"
        + (f"; A(none)/L = {a_none / limit:.2f}" if a_none else "")
    )
    formats = [(k[1], k[2], v) for k, v in results.items() if k[0] == "F"]
    if formats:
        lines.append("")
        lines.append(f"The other shapes, same window and rounds (A only); vs JSON lines: A's wall of "
                     "`ndjson` with the same compression over this one's")
        header = (
            "| shape (encoding, schema) | compression | A export s | A events/s | vs JSON lines "
            "| A MB/s out | A MB | A peak RSS MiB |"
        )
        lines.append(header)
        lines.append("|" + "---|" * (header.count("|") - 1))
        for f, c, runs in formats:
            wall = statistics.median(r["wall"] for r in runs)
            json_wall = statistics.median(r["wall"] for r in results["A", c])
            size = runs[0]["bytes"]
            rss = [r["rss_kib"] / 1024 for r in runs]
            encoding, schema = FORMATS[f]
            lines.append(
                f"| {f} ({encoding}, {schema}) | {c} | {fmt_range([r['wall'] for r in runs])} "
                f"| {n / wall:,.0f} | {json_wall / wall:.2f}x | {size / 1e6 / wall:,.0f} "
                f"| {size / 1e6:,.1f} | {fmt_range(rss, digits=1)} |"
            )
    if checks:
        lines.append(
            "Same bytes in every round and exported one 5 MiB part at a time: "
            + ", ".join(f"{c} {'yes' if ok else 'NO'}" for c, ok in checks)
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", default="100000,1000000", help="comma-separated N values")
    parser.add_argument("--with-10m", action="store_true", help="also N = 10,000,000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compressions", default="none,gzip,zstd")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help="the other shapes to measure beside JSON lines: "
                        + ", ".join(FORMATS) + " (empty: none)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the slow re-export that checks the bytes")
    parser.add_argument("--fresh", action="store_true", help="seed the databases again")
    parser.add_argument(
        "--many", default="", help="comma-separated T values: T tenant destinations against one "
        "destination of the same events (e.g. 50,500)"
    )
    parser.add_argument("--many-events", type=int, default=1_000_000,
                        help="events of the many-destinations case")
    parser.add_argument("--many-compression", default="zstd")
    parser.add_argument("--dir", default="target/bench")
    parser.add_argument(
        "--s3-dir",
        default="/dev/shm/audit-exporter-bench-s3" if os.path.isdir("/dev/shm") else None,
        help="where the S3 server keeps objects (memory by default: the stand-in for S3 should "
        "not wait on this machine's disk)",
    )
    parser.add_argument("--exporter", required=True)
    parser.add_argument("--fixture", required=True)
    parser.add_argument("--aws", required=True)
    args = parser.parse_args()
    args.compressions = [c for c in args.compressions.split(",") if c]
    args.formats = [f for f in args.formats.split(",") if f]
    for f in args.formats:
        if f not in FORMATS:
            raise SystemExit(f"--formats: {f!r} is not one of {', '.join(FORMATS)}")
    sizes = [int(n) for n in args.events.split(",") if n]
    if args.with_10m and 10_000_000 not in sizes:
        sizes.append(10_000_000)
    for tool in ("psql", "gzip", "zstd"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is needed on PATH")

    s3_dir = args.s3_dir or os.path.join(args.dir, "s3")
    fixture = Fixture(args.fixture, args.dir, s3_dir)
    tables = []
    try:
        bench = Bench(args, fixture)
        for n in sizes:
            results, checks = bench.measure(n)
            table = report(n, args.rounds, results, checks)
            tables.append(table)
            print(table + "\n", flush=True)
        for tenants in [int(t) for t in args.many.split(",") if t]:
            result = bench_many.measure(bench, args.many_events, tenants, args.many_compression)
            table = bench_many.report(
                args.many_events, tenants, args.rounds, args.many_compression, result
            )
            tables.append(table)
            print(table + "\n", flush=True)
    finally:
        fixture.close()
    os.makedirs(args.dir, exist_ok=True)
    with open(os.path.join(args.dir, "results.md"), "a") as out:
        out.write("\n\n".join(tables) + "\n\n")


if __name__ == "__main__":
    main()
