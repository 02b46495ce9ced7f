"""The many-destinations case of the benchmark (README "Performance", docs/performance.md):
T tenant destinations, one per tenant, against one destination of the same events, and what
`run`'s check, `status --json` and a /metrics scrape cost with T destinations.

Imported by scripts/bench.py, which owns the fixture and the seeded databases.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

import bench


def config_file(fixture, names, tenants, compression):
    """A config file of destinations `names` (tenant `tenants[i]`, or every event for None),
    each writing under a prefix of its own name in the bench bucket."""
    lines = []
    for name, tenant in zip(names, tenants):
        lines += [
            f"[destinations.{name}]",
            # The name alone (it starts with the round's label): the test S3 server names a
            # multipart upload's files after the bucket and key, within 255 bytes.
            f'url = "s3://{fixture.bucket}/{name}"',
            'region = "us-east-1"',
            f'endpoint = "{fixture.s3_endpoint}"',
            "force_path_style = true",
            f'access_key_id = "{fixture.access_key_id}"',
            f'secret_access_key = "{fixture.secret_access_key}"',
            f'compression = "{compression}"',
        ]
        if tenant is not None:
            lines.append(f'tenant_id = "{tenant}"')
        lines.append("")
    handle = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    handle.write("\n".join(lines))
    handle.close()
    return handle.name


def timed(args, argv, config, url, extra=None):
    """Runs the exporter with `config`: (wall s, peak RSS KiB, stdout)."""
    env = bench.exporter_env(url, extra or {})
    return bench.run([args.exporter, "--config", config, *argv], env=env)


def delivered(url, names):
    """(events, runs) of the committed scheduled runs of `names`."""
    listed = ",".join(f"'{n}'" for n in names)
    row = bench.psql(
        url,
        "SELECT coalesce(sum(event_count), 0) || '|' || count(*) FROM export_runs "
        f"WHERE destination IN ({listed}) AND kind = 'scheduled' AND status = 'done'",
    )
    events, runs = row.split("|")
    return int(events), int(runs)


def scrape(args, config, url):
    """Starts `run` with the config, waits until /metrics shows its first read of every
    destination from the database, and times scrapes: (first read s, scrape s median, bytes)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = bench.exporter_env(
        url,
        {
            "AUDIT_EXPORTER__RUN__LISTEN": f"127.0.0.1:{port}",
            "AUDIT_EXPORTER__RUN__METRICS_REFRESH_SECS": "1",
            # No check while it is timed: the scrape alone.
            "AUDIT_EXPORTER__RUN__CHECK_CRON": "0 0 0 1 1 *",
        },
    )
    started = time.monotonic()
    process = subprocess.Popen(
        [args.exporter, "--config", config, "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = started + 120
        first = None
        while time.monotonic() < deadline:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
                text = body.decode()
                if "\naudit_exporter_database_up 1" in text:
                    first = time.monotonic() - started
                    break
            except OSError:
                pass
            time.sleep(0.05)
        if first is None:
            raise SystemExit("run's /metrics never showed every destination")
        walls = []
        for _ in range(5):
            begin = time.monotonic()
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
            walls.append(time.monotonic() - begin)
        return first, statistics.median(walls), len(body)
    finally:
        process.terminate()
        process.wait(timeout=60)


def measure(b, n, tenants, compression):
    """Rounds of: one destination of all n events, then `tenants` tenant destinations in one
    `export`; then, with the last round's destinations, a check, status and a scrape."""
    args, fixture = b.args, b.fixture
    url = bench.database_for(fixture, args.exporter, n, args.fresh, tenants)
    b.limit(url)  # warm the caches, untimed
    tenant_ids = [f"tenant-{i:04}" for i in range(tenants)]
    result = {"one": [], "many": [], "rss_one": [], "rss_many": []}
    for r in range(1, args.rounds + 1):
        label = f"m{tenants}_{b.stamp}_r{r}"
        one = config_file(fixture, [f"{label}_all"], [None], compression)
        names = [f"{label}_{i:04}" for i in range(tenants)]
        many = config_file(fixture, names, tenant_ids, compression)
        wall, rss, _ = timed(args, ["export"], one, url)
        result["one"].append(wall)
        result["rss_one"].append(rss / 1024)
        if delivered(url, [f"{label}_all"]) != (n, 1):
            raise SystemExit(f"T={tenants}: the one destination did not deliver {n} events")
        wall, rss, _ = timed(args, ["export"], many, url)
        result["many"].append(wall)
        result["rss_many"].append(rss / 1024)
        if delivered(url, names) != (n, tenants):
            raise SystemExit(f"T={tenants}: the tenant destinations did not deliver {n} events")
        bench.log(
            f"T={tenants} round {r}: one {result['one'][-1]:.2f} s, "
            f"{tenants} tenants {result['many'][-1]:.2f} s"
        )
        shutil.rmtree(b.object_path(label), ignore_errors=True)
        os.remove(one)
        if r < args.rounds:
            os.remove(many)
    # The last round's destinations, all registered and exported: nothing is due.
    check, _, out = timed(args, ["export", "--if-due"], many, url)
    if out.count(": not due") != tenants:
        raise SystemExit(f"T={tenants}: a check found destinations due:\n{out}")
    status, _, out = timed(args, ["status", "--json"], many, url)
    if len(json.loads(out)["destinations"]) != tenants:
        raise SystemExit(f"T={tenants}: status did not list every destination")
    config_check, _, _ = timed(args, ["config", "check"], many, url)
    first, scraped, size = scrape(args, many, url)
    os.remove(many)
    result.update(
        check=check, status=status, config_check=config_check, first=first, scrape=scraped,
        scrape_bytes=size,
    )
    return result


def report(n, tenants, rounds, compression, result):
    fmt = bench.fmt_range
    one, many = statistics.median(result["one"]), statistics.median(result["many"])
    return "\n".join(
        [
            f"T = {tenants} tenant destinations against one destination of the same {n:,} "
            f"events ({compression}), {rounds} rounds; median (min-max)",
            "| one destination s | T tenant destinations s | ratio | peak RSS MiB, one | peak RSS MiB, T |",
            "|---|---|---|---|---|",
            f"| {fmt(result['one'])} | {fmt(result['many'])} | {many / one:.2f}x "
            f"| {fmt(result['rss_one'], digits=1)} | {fmt(result['rss_many'], digits=1)} |",
            f"With the {tenants} destinations exported: a check of all (`export --if-due`, "
            f"the work of `run`'s check) {result['check']:.2f} s, `status --json` "
            f"{result['status']:.2f} s, `config check` {result['config_check']:.2f} s; `run` "
            f"served every destination's gauges {result['first']:.2f} s after its start, a "
            f"/metrics scrape ({result['scrape_bytes'] / 1e3:,.0f} kB) {result['scrape'] * 1e3:.0f} ms",
        ]
    )
