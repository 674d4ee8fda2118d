#!/usr/bin/env python3
"""Turns bench/out/*.json (one `orderflow-load --json` report per scenario) into BENCHMARKS.md and
BENCHMARKS.json. Called by bench/run.sh; can be re-run on a kept bench/out.

`report.py --partial bench/out` records a partial run (`BENCH_ONLY`) instead: the full run's
figures stay as BENCHMARKS.json holds them (its date, machine, versions and runs), the partial
run is added to BENCHMARKS.json's `partial_runs` (replacing one of the same date) and gets a
section of its own in BENCHMARKS.md with its date, what it ran and its no-op ceiling. A full run
drops the partial runs (it measures everything again)."""
import datetime
import json
import os
import platform
import subprocess
import sys
import urllib.parse

args = sys.argv[1:]
partial = "--partial" in args
args = [a for a in args if a != "--partial"]
out_dir = args[0] if args else "bench/out"


def load_runs(path):
    found = {}
    for name in sorted(os.listdir(path)):
        if name.endswith(".json"):
            with open(os.path.join(path, name)) as f:
                r = json.load(f)
            found[r.get("bench_name", name[:-5])] = r
    return found


def out_file(name):
    """A one-line file bench/run.sh left in out_dir (commit, baseline, only), or None."""
    path = os.path.join(out_dir, name)
    return open(path).read().strip() if os.path.exists(path) else None


runs = load_runs(out_dir)
# The scenarios in the order they ran (bench/run.sh writes each one's file when it ends).
ran_order = [r.get("bench_name", n[:-5]) for n in sorted(
    (n for n in os.listdir(out_dir) if n.endswith(".json")), key=lambda n: os.path.getmtime(os.path.join(out_dir, n)))
    for r in [runs.get(n[:-5]) or {}]]


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return "unknown"


def get_in(rs, name, *path):
    v = rs.get(name)
    for p in path:
        if v is None:
            return None
        v = v.get(p)
    return v


def cpu_in(rs, name, who):
    return get_in(rs, name, f"{who}_cpu", "cpu_ms_per_order")


# This run's figures, kept aside: with --partial, `runs` becomes the full run's (BENCHMARKS.json).
this_runs = runs
if partial:
    if not os.path.exists("BENCHMARKS.json"):
        sys.exit("report.py --partial: no BENCHMARKS.json to add the partial run to (run the full suite first)")
    with open("BENCHMARKS.json") as f:
        stored = json.load(f)
    runs = stored["runs"]


def get(name, *path):
    return get_in(runs, name, *path)


def cpu(name, who):
    return cpu_in(runs, name, who)


def ceilings_of(rs):
    """The first and last no-op ceiling of a run and the higher of the two (None where not run)."""
    first, last = get_in(rs, "ceiling", "orders_per_s"), get_in(rs, "ceiling-end", "orders_per_s")
    both = [c for c in (first, last) if c]
    return first, last, (max(both) if both else None)


def events_summary(rs):
    """The order-events figures (issue 19) of a run: the PostgreSQL burst with the event relay
    publishing, against the same burst with publishing off and, when run, the baseline's."""
    off, on, base = (get_in(rs, n, "orders_per_s") for n in ("burst-postgres", "burst-postgres-events", "burst-postgres-baseline"))
    e = get_in(rs, "burst-postgres-events", "events") or {}
    lag = e.get("publish_lag") or {}
    return {
        "events_burst_orders_per_s": on,
        "events_burst_share_of_burst": round(on / off, 3) if on and off else None,
        "events_burst_worker_cpu_ms_per_order": cpu_in(rs, "burst-postgres-events", "worker"),
        "events_burst_server_cpu_ms_per_order": cpu_in(rs, "burst-postgres-events", "server"),
        "events_per_order": e.get("events_per_order"),
        "events_all_published": e.get("all_published"),
        "relay_events_per_s": e.get("events_per_s"),
        "relay_publish_lag_p50_ms": lag.get("p50_ms"),
        "relay_publish_lag_p99_ms": lag.get("p99_ms"),
        "relay_publish_lag_max_ms": lag.get("max_ms"),
        # Writing the outbox with publishing off, against the baseline's worker (BENCH_BASELINE).
        "burst_share_of_baseline": round(off / base, 3) if off and base else None,
    }


# The no-op ceiling is run first and again last: on this VM it has varied from 54 to 99 workflows/s
# between runs while the order figures did not, so the share is taken against the higher of the
# two (the stricter comparison), and both are shown.
ceiling = ceilings_of(runs)[2]
pg = "burst-postgres"
summary = {
    # PostgreSQL burst (2,000 orders, half paid, half timing out after 5 s)
    "orders_per_s": get(pg, "orders_per_s"),
    "ceiling_wf_per_s": ceiling,
    "ceiling_first_wf_per_s": get("ceiling", "orders_per_s"),
    "ceiling_last_wf_per_s": get("ceiling-end", "orders_per_s"),
    "orders_per_s_share_of_ceiling": round(get(pg, "orders_per_s") / ceiling, 3) if ceiling and get(pg, "orders_per_s") else None,
    "worker_cpu_ms_per_order": cpu(pg, "worker"),
    "server_cpu_ms_per_order": cpu(pg, "server"),
    "state_transitions_per_order": get(pg, "state_transitions_per_order"),
    "history_events_per_order": get(pg, "history_events_per_order"),
    # Paced run (10 orders/s for 40 s): payment signal -> PAID, and closed - deadline
    "paid_p50_ms": get("paced-postgres", "payment_to_paid", "p50_ms"),
    "paid_p99_ms": get("paced-postgres", "payment_to_paid", "p99_ms"),
    "start_to_paid_p50_ms": get("paced-postgres", "start_to_paid", "p50_ms"),
    "close_lateness_p50_ms": get("paced-postgres", "close_lateness", "p50_ms"),
    "close_lateness_p99_ms": get("paced-postgres", "close_lateness", "p99_ms"),
    "mass_expiry_close_lateness_p99_ms": get("mass-expiry", "close_lateness", "p99_ms"),
    "mass_expiry_close_lateness_max_ms": get("mass-expiry", "close_lateness", "max_ms"),
    "hot_sku_postgres_edge_reservations_per_s": get("hot-sku-postgres-edge", "reservations_per_s"),
    "hot_sku_sqlite_edge_reservations_per_s": get("hot-sku-sqlite-edge", "reservations_per_s"),
    "hot_sku_postgres_reservations_per_s": get("hot-sku-postgres", "reservations_per_s"),
    "hot_sku_postgres_raw_reservations_per_s": get("hot-sku-postgres-raw", "reservations_per_s"),
    "hot_sku_sqlite_reservations_per_s": get("hot-sku-sqlite", "reservations_per_s"),
    "hot_sku_sqlite_raw_reservations_per_s": get("hot-sku-sqlite-raw", "reservations_per_s"),
    # The same burst and hot SKU on MariaDB/MySQL (issue 17), None where not run.
    "burst_mysql_orders_per_s": get("burst-mysql", "orders_per_s"),
    "hot_sku_mysql_edge_reservations_per_s": get("hot-sku-mysql-edge", "reservations_per_s"),
    "hot_sku_mysql_reservations_per_s": get("hot-sku-mysql", "reservations_per_s"),
    "hot_sku_mysql_raw_reservations_per_s": get("hot-sku-mysql-raw", "reservations_per_s"),
    # The burst with order events published (issue 19), None where not run.
    **events_summary(runs),
}


def ratio(a, b):
    return round(a / b, 3) if a and b else None


summary["hot_sku_postgres_share_of_raw"] = ratio(summary["hot_sku_postgres_reservations_per_s"], summary["hot_sku_postgres_raw_reservations_per_s"])
summary["hot_sku_sqlite_share_of_raw"] = ratio(summary["hot_sku_sqlite_reservations_per_s"], summary["hot_sku_sqlite_raw_reservations_per_s"])
summary["hot_sku_postgres_edge_share_of_raw"] = ratio(summary["hot_sku_postgres_edge_reservations_per_s"], summary["hot_sku_postgres_raw_reservations_per_s"])
summary["hot_sku_sqlite_edge_share_of_raw"] = ratio(summary["hot_sku_sqlite_edge_reservations_per_s"], summary["hot_sku_sqlite_raw_reservations_per_s"])
summary["hot_sku_mysql_share_of_raw"] = ratio(summary["hot_sku_mysql_reservations_per_s"], summary["hot_sku_mysql_raw_reservations_per_s"])
summary["hot_sku_mysql_edge_share_of_raw"] = ratio(summary["hot_sku_mysql_edge_reservations_per_s"], summary["hot_sku_mysql_raw_reservations_per_s"])
summary["burst_mysql_share_of_postgres"] = ratio(summary["burst_mysql_orders_per_s"], summary["orders_per_s"])


def mysql_version():
    """The MariaDB/MySQL server's version: as bench/run.sh recorded it, else asked now."""
    path = os.path.join(out_dir, "mysql_version")
    if os.path.exists(path):
        return open(path).read().strip() or "unknown"
    url = urllib.parse.urlsplit(os.environ.get("BENCH_MYSQL_ADMIN_URL", "mysql://root@127.0.0.1:3306/test"))
    try:
        return subprocess.run(
            ["mariadb", "--protocol=tcp", "-h", url.hostname or "127.0.0.1", "-P", str(url.port or 3306),
             "-u", urllib.parse.unquote(url.username or "root"), "-N", "-e", "SELECT VERSION()"],
            env={**os.environ, "MYSQL_PWD": urllib.parse.unquote(url.password or "")},
            capture_output=True, text=True, timeout=20).stdout.strip() or "unknown"
    except Exception:
        return "unknown"

machine = {
    "cores": os.cpu_count(),
    "memory_gib": round(int(sh("awk '/MemTotal/ {print $2}' /proc/meminfo") or 0) / 1024 / 1024, 1),
    "cpu": sh("awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo"),
    "kernel": platform.release(),
}
versions = {
    "orderflow_commit": out_file("commit")
    or sh("git rev-parse --short HEAD") + (" (uncommitted changes)" if sh("git status --porcelain --untracked-files=no") else ""),
    "rustc": sh("rustc --version"),
    "temporal_cli": sh(".venv/bin/temporal --version"),
    "postgresql": sh("psql postgres://postgres@127.0.0.1:5432/postgres -tAc 'show server_version'"),
    "mysql": mysql_version(),
    "sqlite": "bundled with sqlx (libsqlite3-sys)",
}
# What the mysql:// engine ran on, for the tables' labels.
MY = "MariaDB" if "mariadb" in versions["mysql"].lower() else "MySQL" if versions["mysql"] != "unknown" else "MariaDB/MySQL"
# When the last scenario finished (so a re-run of this script on a kept bench/out keeps the date).
finished_at = max(os.path.getmtime(os.path.join(out_dir, n)) for n in os.listdir(out_dir) if n.endswith(".json"))
now = datetime.datetime.fromtimestamp(finished_at, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
partial_runs = []
if partial:
    first, last, higher = ceilings_of(this_runs)
    partial_runs = [p for p in stored.get("partial_runs", []) if p.get("date") != now] + [{
        "date": now,
        "started": out_file("started"),
        "order": ran_order,
        "bench_only": out_file("only"),
        "baseline": out_file("baseline"),
        "machine": machine,
        "versions": versions,
        "summary": {"ceiling_wf_per_s": higher, "ceiling_first_wf_per_s": first, "ceiling_last_wf_per_s": last,
                    "burst_postgres_orders_per_s": get_in(this_runs, "burst-postgres", "orders_per_s"),
                    **events_summary(this_runs)},
        "runs": this_runs,
    }]
    # The full run's page as it was: its date, machine and versions.
    now, machine, versions = stored["date"], stored["machine"], stored["versions"]
    MY = "MariaDB" if "mariadb" in versions["mysql"].lower() else "MySQL" if versions["mysql"] != "unknown" else "MariaDB/MySQL"
record = {"date": now, "machine": machine, "versions": versions, "summary": summary, "runs": runs}
if partial_runs:
    record["partial_runs"] = partial_runs
with open("BENCHMARKS.json", "w") as f:
    json.dump(record, f, indent=1)
    f.write("\n")


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        v = f"{v:.2f}".rstrip("0").rstrip(".")
    return f"{v}{unit}"


def check(ok):
    """met / NOT met, or "–" where the scenarios it needs were not run (ok is None)."""
    if ok is None:
        return "–"
    return "met" if ok else "NOT met"


def cell(v, unit=""):
    """A figure of a scenario that may not have been run (the MariaDB ones): "–" then."""
    return "–" if v is None else fmt(v, unit)


def at_least(v, goal):
    return None if v is None else v >= goal


share = summary["orders_per_s_share_of_ceiling"]


def pct(v):
    return fmt(v and v * 100, "%")


def hot(engine):
    edge = summary[f"hot_sku_{engine}_edge_share_of_raw"]
    default = summary[f"hot_sku_{engine}_share_of_raw"]
    return f"{pct(edge)} (each workflow reserving: {pct(default)})"


targets = [
    ("Worker CPU per order (PostgreSQL burst)", "<= 3 ms", fmt(summary["worker_cpu_ms_per_order"], " ms"), summary["worker_cpu_ms_per_order"] is not None and summary["worker_cpu_ms_per_order"] <= 3),
    ("Orders/s as a share of the no-op ceiling (the higher of the first and last ceiling runs)", ">= 45%", f"{fmt(summary['orders_per_s'])} / {fmt(ceiling)} = {fmt(share and share * 100, '%')} (ceilings {fmt(summary['ceiling_first_wf_per_s'])}, {fmt(summary['ceiling_last_wf_per_s'])})", share is not None and share >= 0.45),
    ("Paid-path latency p50 at 10 orders/s", "<= 150 ms", fmt(summary["paid_p50_ms"], " ms"), summary["paid_p50_ms"] is not None and summary["paid_p50_ms"] <= 150),
    ("Close lateness p99 at 10 orders/s", "<= 100 ms", fmt(summary["close_lateness_p99_ms"], " ms"), summary["close_lateness_p99_ms"] is not None and summary["close_lateness_p99_ms"] <= 100),
    ("Close lateness p99, mass expiry", "<= 2 s", fmt(summary["mass_expiry_close_lateness_p99_ms"], " ms"), summary["mass_expiry_close_lateness_p99_ms"] is not None and summary["mass_expiry_close_lateness_p99_ms"] <= 2000),
    ("Hot SKU: reservations vs raw update (PostgreSQL), stock decided at the edge", ">= 50%", hot("postgres"), (summary["hot_sku_postgres_edge_share_of_raw"] or 0) >= 0.5),
    ("Hot SKU: reservations vs raw update (SQLite), stock decided at the edge", ">= 50%", hot("sqlite"), (summary["hot_sku_sqlite_edge_share_of_raw"] or 0) >= 0.5),
    # Issue 17's goals for MariaDB/MySQL ("–" where its scenarios were not run).
    (f"Hot SKU: reservations vs raw update ({MY}), stock decided at the edge", ">= 50%",
     f"{cell(summary['hot_sku_mysql_edge_reservations_per_s'])} / {cell(summary['hot_sku_mysql_raw_reservations_per_s'])} = "
     f"{cell(summary['hot_sku_mysql_edge_share_of_raw'] and summary['hot_sku_mysql_edge_share_of_raw'] * 100, '%')} "
     f"(each workflow reserving: {cell(summary['hot_sku_mysql_share_of_raw'] and summary['hot_sku_mysql_share_of_raw'] * 100, '%')})",
     at_least(summary["hot_sku_mysql_edge_share_of_raw"], 0.5)),
    (f"Burst on {MY}: orders/s against PostgreSQL's, same run", ">= 90% (within 10%)",
     f"{cell(summary['burst_mysql_orders_per_s'])} / {cell(summary['orders_per_s'])} = "
     f"{cell(summary['burst_mysql_share_of_postgres'] and summary['burst_mysql_share_of_postgres'] * 100, '%')}",
     at_least(summary["burst_mysql_share_of_postgres"], 0.9)),
]
# Issue 19's goal: from this run, else from every partial run that measured it (met only if met in
# each: the runs are one machine's spread, not independent samples to average).
events_partials = [p for p in partial_runs if p["summary"].get("events_burst_orders_per_s")]


def hhmm(date):
    return date[11:16]


if summary["events_burst_orders_per_s"] or not events_partials:
    ev = summary
    targets.append((
        "Burst with order events published (NATS JetStream): orders/s against the same burst with publishing off, same run",
        ">= 90% (within 10%)",
        f"{cell(ev['events_burst_orders_per_s'])} / {cell(ev['orders_per_s'])} = "
        f"{cell(ev['events_burst_share_of_burst'] and ev['events_burst_share_of_burst'] * 100, '%')}"
        + (f"; relay {cell(ev['relay_events_per_s'])} events/s, lag p99 {cell(ev['relay_publish_lag_p99_ms'], ' ms')}" if ev["events_burst_orders_per_s"] else ""),
        at_least(ev["events_burst_share_of_burst"], 0.9)))
else:
    shares = [p["summary"]["events_burst_share_of_burst"] for p in events_partials]
    lags = [p["summary"]["relay_publish_lag_p99_ms"] for p in events_partials]
    targets.append((
        "Burst with order events published (NATS JetStream): orders/s against the same burst with publishing off, same run",
        ">= 90% (within 10%)",
        ", ".join(f"{cell(p['summary']['events_burst_orders_per_s'])} / {cell(p['summary']['burst_postgres_orders_per_s'])} = "
                  f"{cell(p['summary']['events_burst_share_of_burst'] * 100, '%')}" for p in events_partials)
        + f" in the {len(events_partials)} partial runs of {events_partials[0]['date'][:10]} (below; met in {sum(x >= 0.9 for x in shares)});"
        f" relay lag p99 {cell(min(lags))}–{cell(max(lags))} ms",
        all(x >= 0.9 for x in shares)))


def burst_orders(rs):
    n = get_in(rs, "burst-postgres-events", "orders")
    return f"{n:,}" if n else "?"


def events_table(rs, base, ceil, order):
    """The burst with order events published next to the same burst with publishing off (and the
    baseline's, when run) from one run's scenarios `rs`, in the order they ran."""
    off = get_in(rs, "burst-postgres", "orders_per_s")
    rows = sorted([
        ("burst-postgres", "publishing off: each status change writes its event to the outbox, no relay"),
        ("burst-postgres-baseline", f"`{base}`'s worker (`BENCH_BASELINE`): no outbox, no events"),
        ("burst-postgres-events", "publishing on: the worker's relay publishes every event to NATS JetStream"),
    ], key=lambda row: order.index(row[0]) if row[0] in order else len(order))
    w("| worker | orders/s | share of burst-postgres | share of ceiling | transitions/order | worker CPU ms/order | server CPU ms/order | events/order | relay events/s | publish lag p50 / p99 / max ms |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for name, what in rows:
        if name not in rs:
            continue
        rate = get_in(rs, name, "orders_per_s")
        e = get_in(rs, name, "events") or {}
        lag = e.get("publish_lag") or {}
        w(f"| {what} | {fmt(rate)} | {cell(ratio(rate, off) and ratio(rate, off) * 100, '%')} | {cell(ratio(rate, ceil) and ratio(rate, ceil) * 100, '%')} | "
          f"{fmt(get_in(rs, name, 'state_transitions_per_order'))} | {fmt(cpu_in(rs, name, 'worker'))} | {fmt(cpu_in(rs, name, 'server'))} | "
          f"{cell(e.get('events_per_order'))} | {cell(e.get('events_per_s'))} | "
          + (f"{fmt(lag.get('p50_ms'))} / {fmt(lag.get('p99_ms'))} / {fmt(lag.get('max_ms'))}" if lag.get("n") else "–") + " |")
    w("")
    e = get_in(rs, "burst-postgres-events", "events")
    if e:
        types = ", ".join(f"{k} {v}" for k, v in e["types"].items())
        w(f"Events of the run in the outbox: {e['events']} ({types}); published {e['published']}"
          + (f", all of them {fmt(e['drained_after_s'])} s after the last order finished" if e["all_published"]
             else f", {e['unpublished']} NOT published {fmt(e['drained_after_s'])} s after the last order finished")
          + f"; relay rate over {fmt(e['span_s'])} s.")
        w("")


EVENTS_DEFINITIONS = ("The relay's events/s are the run's published events over the time from the first event's `created_at_ms` to"
                      " the last `published_at_ms`; the publish lag is `published_at_ms − created_at_ms` of each event (both stamped by"
                      " the worker's clock; `orderflow-load --events-report` reads them from the outbox once every event of the run is"
                      " published). The relay keeps up when its rate is the bursts' events/order × orders/s: then it measures the load,"
                      " not the relay's ceiling.")


def events_commands(rs):
    w("```sh")
    for name in ("burst-postgres", "burst-postgres-events"):
        if name in rs:
            r = rs[name]
            env = r.get("worker_env")
            w(f"# {name}: worker `{env + ' ' if env else ''}orderflow-worker {r.get('worker_flags', '')}`")
            w(r.get("command", ""))
    w("```")
    w("")


lines = []
w = lines.append
w("# Benchmarks")
w("")
w(f"Measured {now} by `bench/run.sh` on this machine: {machine['cores']} cores, {machine['memory_gib']} GiB, {machine['cpu']}, Linux {machine['kernel']}.")
w(f"Versions: Orderflow {versions['orderflow_commit']}; {versions['rustc']}; Temporal CLI `{versions['temporal_cli']}` (dev server, in memory, SQLite WAL, `synchronous=normal`); PostgreSQL {versions['postgresql']}; {MY} {versions['mysql']}; SQLite {versions['sqlite']}.")
w("")
w("Every figure comes from the same run: one dev server, a fresh release worker per scenario, the load")
w("generator `orderflow-load` (see its doc comment in `bench/load/src/lib.rs` for how each figure is taken).")
w("Paid-path latency is from the moment the provider's payment signal is sent until the order's row says")
w("`PAID` (the workflow's last step writes it); close lateness is the `CLOSED` row's time minus the payment deadline, both from the orders")
w("database; CPU is utime+stime of the worker and server processes from `/proc` over the run's window,")
w("divided by the orders finished; state transitions are `DescribeWorkflowExecution`'s count averaged over")
w("20 finished workflows. No test asserts any of these times.")
if partial_runs:
    w("")
    w("Partial runs since (`BENCH_ONLY`, each on a dev server of its own, its figures not mixed into the tables of the")
    w("full run): " + ", ".join(p["date"] for p in partial_runs) + "; below, after the full run's tables.")
w("")
w("## Targets")
w("")
w("| target | goal | measured | |")
w("|---|---|---|---|")
for name, goal, measured, ok in targets:
    w(f"| {name} | {goal} | {measured} | {check(ok)} |")
w("")
w("## Scenarios")
w("")
w("| scenario | db | orders | finished/s | outcomes | worker CPU ms/order | server CPU ms/order | transitions/order | payment→paid p50/p99 ms | close lateness p50/p99/max ms | reservations/s |")
w("|---|---|---|---|---|---|---|---|---|---|---|")
for name, r in runs.items():
    outcomes = ", ".join(f"{k} {v}" for k, v in r["outcomes"].items())
    if not r.get("outcomes_match"):
        outcomes += " (NOT as expected)"
    p = r["payment_to_paid"]
    c = r["close_lateness"]
    w(f"| {name} | {r['engine']} | {r['orders']} | {fmt(r['orders_per_s'])} | {outcomes} | {fmt(cpu(name, 'worker'))} | {fmt(cpu(name, 'server'))} | {fmt(r.get('state_transitions_per_order'))} | "
      + (f"{fmt(p['p50_ms'])} / {fmt(p['p99_ms'])}" if p["n"] else "") + " | "
      + (f"{fmt(c['p50_ms'])} / {fmt(c['p99_ms'])} / {fmt(c['max_ms'])}" if c["n"] else "") + f" | {fmt(r.get('reservations_per_s'))} |")
w("")
w("Stock invariant (`available + reserved + sold = total`, ledger = inventory) after every order scenario: "
  + ("holds" if all(r.get("stock_invariant_holds") in (True, None) for r in runs.values()) else "VIOLATED (see BENCHMARKS.json)") + ".")
w("")
w(f"## PostgreSQL, {MY} and SQLite side by side")
w("")
w("The same scenarios on each engine, in this run (\"–\": not run). The burst: 2,000 orders, half paid, half timing")
w("out after 5 s, tuned pollers; the share is of PostgreSQL's orders/s.")
w("")
w("| engine | orders/s | share of PostgreSQL | transitions/order | worker CPU ms/order | server CPU ms/order | payment→paid p50 / p99 ms | close lateness p50 / p99 ms |")
w("|---|---|---|---|---|---|---|---|")
engines = [("PostgreSQL", "postgres"), (MY, "mysql"), ("SQLite", "sqlite")]


def p50_p99(name, what):
    d = get(name, what) or {}
    return f"{cell(d.get('p50_ms'))} / {cell(d.get('p99_ms'))}" if d.get("n") or name not in runs else ""


for label, engine in engines:
    name = f"burst-{engine}"
    burst_share = ratio(get(name, "orders_per_s"), summary["orders_per_s"])
    w(f"| {label} | {cell(get(name, 'orders_per_s'))} | {cell(burst_share and burst_share * 100, '%')} | {cell(get(name, 'state_transitions_per_order'))} | "
      f"{cell(cpu(name, 'worker'))} | {cell(cpu(name, 'server'))} | {p50_p99(name, 'payment_to_paid')} | {p50_p99(name, 'close_lateness')} |")
w("")
w("The hot SKU (5,000 buyers, 1,000 units): decisions/s, each share against the same engine's raw conditional")
w("update; \"winners ready\" is from a winner's decision at the edge until its payment exists.")
w("")
w("| engine | raw update decisions/s | at the edge decisions/s | edge share of raw | edge winners ready p50 / max ms | each workflow reserving decisions/s | its share of raw |")
w("|---|---|---|---|---|---|---|")
for label, engine in engines:
    raw = get(f"hot-sku-{engine}-raw", "reservations_per_s")
    edge = get(f"hot-sku-{engine}-edge", "reservations_per_s")
    each = get(f"hot-sku-{engine}", "reservations_per_s")
    ready = get(f"hot-sku-{engine}-edge", "start_to_ready") or {}
    edge_share, each_share = ratio(edge, raw), ratio(each, raw)
    w(f"| {label} | {cell(raw)} | {cell(edge)} | {cell(edge_share and edge_share * 100, '%')} | "
      f"{cell(ready.get('p50_ms'))} / {cell(ready.get('max_ms'))} | {cell(each)} | {cell(each_share and each_share * 100, '%')} |")
w("")
changes = [
    ("burst-postgres", "the shipped benchmark setup: tuned pollers, gRPC compression off"),
    ("burst-postgres-gzip", "the shipped setup with gRPC gzip on (the SDK default) instead of `ORDERFLOW_GRPC_COMPRESSION=none`"),
    ("burst-postgres-default-tuning", "the shipped setup with the SDK's default pollers instead of the tuned ones"),
]

w("## What the shipped settings buy")
w("")
w("The PostgreSQL burst (2,000 orders, half paid, half timing out after 5 s) as shipped, then with gRPC compression")
w("and then the poller tuning put back to the SDK's defaults, all in this run (compression is off in every row but")
w("the gzip one):")
w("")
w("| worker | finished/s | share of ceiling | transitions/order | worker CPU ms/order | server CPU ms/order |")
w("|---|---|---|---|---|---|")
for name, what in changes:
    if name in runs:
        w(f"| {what} | {fmt(get(name, 'orders_per_s'))} | {fmt(ratio(get(name, 'orders_per_s'), ceiling) and ratio(get(name, 'orders_per_s'), ceiling) * 100, '%')} | "
          f"{fmt(get(name, 'state_transitions_per_order'))} | {fmt(cpu(name, 'worker'))} | {fmt(cpu(name, 'server'))} |")
w("")
if "burst-postgres-events" in runs:
    w("## Order events published")
    w("")
    w(f"The PostgreSQL burst ({burst_orders(runs)} orders, half paid, half timing out after 5 s) with the worker's event relay")
    w("publishing every order event to NATS JetStream (`ORDERFLOW_NATS_URL`, a stream of the run's own), next to")
    w("the same burst with publishing off, one after the other in this run in the order of the table; the goal is")
    w("≥ 90 % of the orders/s with publishing off:")
    w("")
    events_table(runs, out_file("baseline") or "?", ceiling, ran_order)
    w(EVENTS_DEFINITIONS)
    w("")
pairs = [name[: -len("-baseline")] for name in runs if name.endswith("-baseline") and name[: -len("-baseline")] in runs]
if pairs:
    base = open(os.path.join(out_dir, "baseline")).read().strip() if os.path.exists(os.path.join(out_dir, "baseline")) else "?"
    w(f"## Against the baseline ({base}), same run")
    w("")
    w(f"Each scenario run with this build's worker, then with the worker of `{base}` (`BENCH_BASELINE`), on a")
    w("fresh database each, one after the other on the same server; the load driver is this build's for both.")
    w("")
    w("| scenario | worker | orders/s | transitions/order | worker CPU ms/order | server CPU ms/order | paid p50 / p99 ms | close lateness p50 / p99 ms | reservations/s |")
    w("|---|---|---|---|---|---|---|---|---|")
    for name in pairs:
        for label, run_name in (("this build", name), (base, name + "-baseline")):
            r = runs[run_name]
            p, c = r["payment_to_paid"], r["close_lateness"]
            w(f"| {name} | {label} | {fmt(r['orders_per_s'])} | {fmt(r.get('state_transitions_per_order'))} | "
              f"{fmt(cpu(run_name, 'worker'))} | {fmt(cpu(run_name, 'server'))} | "
              + (f"{fmt(p['p50_ms'])} / {fmt(p['p99_ms'])}" if p["n"] else "") + " | "
              + (f"{fmt(c['p50_ms'])} / {fmt(c['p99_ms'])}" if c["n"] else "") + f" | {fmt(r.get('reservations_per_s'))} |")
    w("")
hold = [
    ("hot-sku-postgres-raw", "the raw conditional update, no order written (the ceiling the edge is measured against)"),
    ("hot-sku-postgres-edge-no-hold", "stock decided at the edge, each winner's workflow started at once (`--relay-hold-secs 0`)"),
    ("hot-sku-postgres-edge", "stock decided at the edge, the relay holding starts while buyers keep coming (the default)"),
    ("hot-sku-postgres", "each order's workflow reserving its own stock (the default flow)"),
]
if any(name in runs for name, _ in hold):
    w("The hot SKU on PostgreSQL (5,000 buyers at once, 1,000 units), all in this run; \"winners ready\" is from a")
    w("winner's decision until its payment exists (its workflow started and opened):")
    w("")
    w("| how stock is decided | decisions/s | share of raw | winners ready p50/max ms | whole sale s |")
    w("|---|---|---|---|---|")
    raw = get("hot-sku-postgres-raw", "reservations_per_s")
    for name, what in hold:
        if name in runs:
            rate = get(name, "reservations_per_s")
            share = ratio(rate, raw)
            ready = get(name, "start_to_ready") or {}
            w(f"| {what} | {fmt(rate)} | {fmt(share and share * 100, '%')} | "
              f"{fmt(ready.get('p50_ms'))} / {fmt(ready.get('max_ms'))} | {fmt(get(name, 'window_s'))} |")
    w("")


def partial_intro(p):
    """One line: when, what ran in which order, the code, and the no-op ceiling of that run."""
    first, last = p["summary"]["ceiling_first_wf_per_s"], p["summary"]["ceiling_last_wf_per_s"]
    base, order = p.get("baseline"), p.get("order") or []
    base_first = base and "burst-postgres-baseline" in order and "burst-postgres" in order \
        and order.index("burst-postgres-baseline") < order.index("burst-postgres")
    command = ("BENCH_BASELINE_FIRST=1 " if base_first else "") + f"BENCH_ONLY='{p['bench_only']}'" \
        + (f" BENCH_BASELINE={base}" if base else "") + " bench/run.sh"
    return (f"{p.get('started') or '?'} – {p['date']}, `{command}`, Orderflow {p['versions']['orderflow_commit']}; ran "
            + ", ".join(order) + f"; no-op ceiling {cell(first)} workflows/s first, {cell(last)} last.")


if events_partials:
    pm = events_partials[-1]["machine"]
    base = events_partials[-1].get("baseline")
    w(f"## Order events published: partial runs of {events_partials[0]['date'][:10]}")
    w("")
    w(f"The PostgreSQL burst ({burst_orders(events_partials[-1]['runs'])} orders, half paid, half timing out after 5 s) with the worker's event")
    w("relay publishing every order event to NATS JetStream (`ORDERFLOW_NATS_URL`, a stream of the run's own), next to the")
    w("same burst with publishing off" + (f" and with the worker of `{base}` (before the outbox)" if base else "") + ", one after the other on one")
    w("dev server. Partial runs (`BENCH_ONLY`), each on a dev server of its own, on "
      f"{pm['cores']} cores, {pm['memory_gib']} GiB, {pm['cpu']}, Linux {pm['kernel']}"
      + (" (the full run's machine)" if pm == machine else " (not the full run's machine)") + ": compare figures within a run,")
    w("not with the full run's above. The goal is ≥ 90 % of the orders/s with publishing off, in the same run.")
    w("")
    w("| run (UTC) | bursts in the order run | no-op ceiling first / last | publishing off orders/s | publishing on orders/s | on / off | "
      + (f"`{base}` orders/s | off / `{base}` | " if base else "") + "relay events/s | publish lag p50 / p99 / max ms | all published |")
    w("|---|---|---|---|---|---|" + ("---|---|" if base else "") + "---|---|---|")
    for p in events_partials:
        su, rs = p["summary"], p["runs"]
        base_rate = get_in(rs, "burst-postgres-baseline", "orders_per_s")
        label = {"burst-postgres": "off", "burst-postgres-baseline": "baseline", "burst-postgres-events": "on"}
        bursts = ", ".join(label[n] for n in (p.get("order") or []) if n in label)
        w(f"| {hhmm(p.get('started') or p['date'])}–{hhmm(p['date'])} | {bursts} | {cell(su['ceiling_first_wf_per_s'])} / {cell(su['ceiling_last_wf_per_s'])} | "
          f"{cell(su['burst_postgres_orders_per_s'])} | {cell(su['events_burst_orders_per_s'])} | "
          f"{cell(su['events_burst_share_of_burst'] and su['events_burst_share_of_burst'] * 100, '%')} | "
          + (f"{cell(base_rate)} | {cell(su['burst_share_of_baseline'] and su['burst_share_of_baseline'] * 100, '%')} | " if base else "")
          + f"{cell(su['relay_events_per_s'])} | {cell(su['relay_publish_lag_p50_ms'])} / {cell(su['relay_publish_lag_p99_ms'])} / "
          f"{cell(su['relay_publish_lag_max_ms'])} | {'yes' if su['events_all_published'] else 'NO'} |")
    w("")
    w(EVENTS_DEFINITIONS)
    w("")
    for p in events_partials:
        w(f"### Run of {p['date']}")
        w("")
        w(partial_intro(p))
        w("")
        events_table(p["runs"], p.get("baseline") or "?", p["summary"]["ceiling_wf_per_s"], p.get("order") or [])
    events_commands(events_partials[-1]["runs"])
# Partial runs of other scenarios: their figures, one table each.
for p in partial_runs:
    if p in events_partials:
        continue
    w(f"## Partial run of {p['date']}")
    w("")
    w(partial_intro(p))
    w("")
    w("| scenario | db | orders | finished/s | worker CPU ms/order | server CPU ms/order | transitions/order | reservations/s |")
    w("|---|---|---|---|---|---|---|---|")
    for name, r in p["runs"].items():
        w(f"| {name} | {r['engine']} | {r['orders']} | {fmt(r['orders_per_s'])} | {fmt(cpu_in(p['runs'], name, 'worker'))} | "
          f"{fmt(cpu_in(p['runs'], name, 'server'))} | {fmt(r.get('state_transitions_per_order'))} | {fmt(r.get('reservations_per_s'))} |")
    w("")
w("## Commands")
w("")
w("```sh")
w("bench/run.sh    # everything below, then this file")
for name, r in runs.items():
    env = r.get("worker_env")
    w(f"# {name}: worker `{env + ' ' if env else ''}orderflow-worker {r.get('worker_flags', '')}`")
    w(r.get("command", ""))
w("```")
w("")
if os.path.exists("bench/NOTES.md"):
    w(open("bench/NOTES.md").read().rstrip())
    w("")
with open("BENCHMARKS.md", "w") as f:
    f.write("\n".join(lines))
print("\n".join(lines[:20 + len(targets)]))
print(f"\nwrote BENCHMARKS.md and BENCHMARKS.json ({len(runs)} scenarios)")
