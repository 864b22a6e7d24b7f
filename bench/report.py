#!/usr/bin/env python3
"""The report of one `make bench` (bench/run.sh): prints each durability setting's table,
writes bench/results/<date>-<time>.md and a PNG chart beside it (requests/s and p99 per
endpoint, and the flash sale's timeline), and copies both to bench/results/latest.*.

usage: report.py [--partial] <run directory> <machine line>
(--partial: print the tables only; a run of some endpoints or settings writes no report)
The run directory holds `waiting` (the waiting step's figures, one "name value" per line)
and, per Redis `appendfsync` setting S that was measured:
  S.wrk    one line per wrk run: "<endpoint> RESULT requests=… seconds=… p50=… p99=… p999=…
           bad=…" (latencies in µs), the /health runs named "GET /health…"
           and the runs at half the rate "<endpoint> @ half rate"
  S.cpu    one line per wrk run: "<endpoint> CPU seatrush=… redis=… mysql=… replica=… other=…"
           (% of one core during the run)
  S.drains one line per run: how long the write-behind took to drain after it
  S.flash.json   the flash sale's figures and timeline (bench/flashsale/)
  S.fair.json    the same sale with a fair opening (everysec only)
and `streams.json`, the open event streams' figures (bench/streams.rs),
and the same files for S = ha, the `ha` run (holds, charges and payments with a replica
attached, without and with `WAIT 1`), and S = history, the `history` run (token issuance and
holds without and with 5 000 finished schedules), and S = crowd, the `crowd` run (holds by one
user on a fresh schedule, and by a different user per request on a schedule of 100 000 seats
with 500 000 ACTIVE tokens).
"""

import datetime
import json
import os
import shutil
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
SETTINGS = ["everysec", "always", "ha", "history", "crowd"]
# The table titles: a Redis `appendfsync` setting, or the `ha` run (bench/run.sh).
TITLES = {"everysec": "Redis `appendfsync everysec`", "always": "Redis `appendfsync always`",
          "ha": "A replica attached (`make stack-ha`), `appendfsync everysec`: each write "
                "made on the plain Redis URL, then with a replica confirming it (`WAIT 1`, "
                "through Sentinel)",
          "history": "History: each run on the main server, then on one whose Redis holds "
                     "5 000 finished schedules (booking opened and closed days ago), "
                     "alternated round by round, `appendfsync everysec`",
          "crowd": "Holds at scale: each round, holds by `seatIds` and by `quantity` (1 seat) "
                   "by one user on a fresh schedule of 100 000 seats and by a different "
                   "user per request on a schedule of 100 000 seats with 500 000 ACTIVE "
                   "tokens (its holds expire between runs), 2 s runs in an order that "
                   "alternates between rounds, `appendfsync everysec`"}


HALF = " @ half rate"
CPU_PARTS = ["seatrush", "redis", "mysql", "replica", "other"]


def read_cpu(path):
    """{endpoint: "seatrush/redis/mysql/replica/other"} (% of one core)."""
    shares = {}
    if os.path.exists(path):
        for line in open(path):
            name, _, rest = line.strip().partition(" CPU ")
            if rest:
                fields = dict(kv.split("=") for kv in rest.split())
                shares[name] = " / ".join(fields[p] for p in CPU_PARTS)
    return shares


def read_wrk(path):
    """The full-speed runs, one row per endpoint with the medians over its rounds (its ratio
    to the ceiling: each run's req/s over the mean of the /health runs beside it), the
    half-rate runs, and the ceiling (the mean of all /health runs)."""
    runs = []
    with open(path) as f:
        for line in f:
            name, _, rest = line.strip().partition(" RESULT ")
            if not rest:
                continue
            fields = dict(kv.split("=") for kv in rest.split())
            runs.append({
                "name": name,
                "rps": int(fields["requests"]) / float(fields["seconds"]),
                "p50": int(fields["p50"]) / 1000, "p99": int(fields["p99"]) / 1000,
                "p999": int(fields["p999"]) / 1000, "bad": int(fields["bad"]),
            })
    health_at = [i for i, r in enumerate(runs) if r["name"].startswith("GET /health")]
    ceiling = statistics.mean(runs[i]["rps"] for i in health_at)
    for i, r in enumerate(runs):
        before = [runs[j]["rps"] for j in health_at if j <= i][-1:]
        after = [runs[j]["rps"] for j in health_at if j >= i][:1]
        r["ratio"] = r["rps"] / statistics.mean(before + after or [ceiling])
    full, half = [], []
    for r in runs:
        if r["name"].endswith(HALF):
            r["name"] = r["name"][: -len(HALF)]
            half.append(r)
        elif r["name"] == "GET /health (again)":
            continue
        elif not any(f["name"] == r["name"] for f in full):
            full.append(median_row([x for x in runs if x["name"] == r["name"]]))
    for r in half:
        r["max"] = next(f["rps"] for f in full if f["name"] == r["name"])
    return full, half, ceiling


def median_row(rounds):
    """One endpoint's rounds as one row: medians, the non-2xx summed, the ratio's range."""
    row = {"name": rounds[0]["name"], "rounds": len(rounds),
           "bad": sum(r["bad"] for r in rounds),
           "ratio_min": min(r["ratio"] for r in rounds),
           "ratio_max": max(r["ratio"] for r in rounds)}
    for field in ("rps", "p50", "p99", "p999", "ratio"):
        row[field] = statistics.median(r[field] for r in rounds)
    return row


def rounds_of(rows):
    """The rounds the endpoints were measured in (the `ha` run measures /health twice a
    round)."""
    measured = [r["rounds"] for r in rows if not r["name"].startswith("GET /health")]
    return max(measured or [r["rounds"] for r in rows])


def ratio_text(r):
    if r["rounds"] == 1:
        return f"{r['ratio']:.2f}"
    return f"{r['ratio']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f})"


def wrk_table(rows, ceiling, cpu):
    out = ["| endpoint | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | ratio | CPU % |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r['name']} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                   f"{r['p999']:.2f} | {r['bad']} | {ratio_text(r)} | "
                   f"{cpu.get(r['name'], '')} |")
    rounds = rounds_of(rows)
    out.append(f"\nMedians of {rounds} rounds. ratio = req/s over the mean of the `/health` "
               f"runs before and after it (in brackets: its range over the rounds); the "
               f"`/health` runs averaged {ceiling:.0f} req/s. CPU % = share of one core during "
               f"the last round's run, for "
               f"seatrush / Redis / MariaDB primary / replica / the rest (wrk, kernel); "
               f"the machine has {os.cpu_count()} cores.")
    return "\n".join(out)


def half_table(half, cpu):
    out = ["| endpoint | half of max, req/s | reached req/s | p50 ms | p99 ms | p99.9 ms | "
           "non-2xx | CPU % |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in half:
        out.append(f"| {r['name']} | {r['max'] / 2:.0f} | {r['rps']:.0f} | {r['p50']:.2f} | "
                   f"{r['p99']:.2f} | {r['p999']:.2f} | {r['bad']} | "
                   f"{cpu.get(r['name'] + HALF, '')} |")
    return "\n".join(out)


def print_wrk(setting, rows, half, ceiling, cpu):
    print(f"\n{TITLES[setting].replace('`', '')}")
    print(f"{'endpoint':<50}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}"
          f"{'non-2xx':>9}  {'ratio (range)':<18}CPU % seatrush/redis/mysql/replica/other")
    for r in rows:
        print(f"{r['name']:<50}{r['rps']:>10.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}"
              f"{r['p999']:>10.2f}{r['bad']:>9}  {ratio_text(r):<18}{cpu.get(r['name'], '')}")
    print(f"medians of {rounds_of(rows)} rounds; ratio = req/s over the mean of "
          f"the /health runs beside it; /health averaged {ceiling:.0f} req/s")
    for r in half:
        print(f"{r['name'] + ' @ ' + str(round(r['max'] / 2)) + '/s':<40}{r['rps']:>10.0f}"
              f"{r['p50']:>9.2f}{r['p99']:>9.2f}{r['p999']:>10.2f}{r['bad']:>9}"
              f"{'':>7}  {cpu.get(r['name'] + HALF, '')}")


def flash_text(f):
    sold = f"{f['sold_out_s']:.1f} s" if f["sold_out_s"] is not None else "NOT sold out"
    taken = ""
    if f.get("all_taken_s") is not None:
        taken = (f" (every seat sold or held after **{f['all_taken_s']:.1f} s**; what sold "
                 f"after that came back from holds their buyers let expire)")
    out = [f"{f['users']} users, {f['seats']} seats, admission {f['admission_per_second']:.0f}/s: "
           f"sold out after **{sold}**{taken}; {f['server_errors']} 5xx, {f['seats_sold_twice']} seats "
           f"sold twice; MySQL equal to Redis {f['consistent_after_last_payment_s']:.1f} s after "
           f"the last payment.", "",
           "| step | requests | req/s | p50 ms | p99 ms | p99.9 ms |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for s in f["steps"]:
        out.append(f"| {s['step']} | {s['requests']} | {s['per_second']:.0f} | "
                   f"{s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['p999_ms']:.2f} |")
    out.append("")
    out.append("Refusals by code: " + (", ".join(f["errors"]) or "none") + ".")
    if "waited" in f:
        (streaming, polling), (per_stream, per_poll) = f["waited"], f["status_per_waiting_user"]
        share = 100 * f["hold_conflicts"] / max(f["holds"], 1)
        out += ["", f"Waiting users: {streaming} on the event stream ({f['streams_opened']} "
                f"streams opened, {f['streams_failed']} refused or broken, whose users polled "
                f"instead; {f.get('streams_not_sent', 0)} of those never sent, this client being "
                f"out of open files), **{per_stream:.2f}** status requests each; {polling} polling at "
                f"`pollAfterMs`, {per_poll:.2f} each. Holds refused because another buyer held "
                f"a seat first: {f['hold_conflicts']} of {f['holds']} (**{share:.2f} %**)."]
    opening = f.get("opening")
    if opening:
        after = f.get("sold_out_after_opening_s")
        sold = f"**{after:.1f} s** after the opening" if after is not None else "NOT sold out"
        chunk = chunks_text(opening)
        out += ["", f"Fair opening (`SHUFFLE_AT_OPEN`): {opening['pre_queued']} users were "
                f"pre-queued before booking opened ({opening['opens_after_s']:.1f} s into the "
                f"run); the pre-queue was shuffled **{opening['shuffled_after_opening_s']:.3f} s** "
                f"after the opening. From a second before the opening until then Redis ran "
                f"{opening['slow_commands']} commands of 100 µs or more, the longest "
                f"**{opening['longest_command_us']} µs** (`{opening['longest_command']}`); the "
                f"shuffle's chunks (500 tokens each): {chunk}. Sold out {sold}."]
    return "\n".join(out)


def chunks_text(o):
    """The shuffle's chunks as Redis's slow log saw them (wall clock, so the longest may
    include time the machine gave to other processes)."""
    if not o.get("shuffle_chunks"):
        return "each under 100 µs"
    return (f"{o['shuffle_chunks']} logged, median **{o['median_shuffle_chunk_us']} µs**, "
            f"longest {o['longest_shuffle_chunk_us']} µs")


def opening_text(o):
    """The `opening` run's figures (bench/crowd.rs with an opening)."""
    chunk = chunks_text(o)
    return (f"{o['pre_queued']} users pre-queued on one schedule; at the opening the pre-queue "
            f"was shuffled **{o['shuffled_after_opening_s']:.2f} s** after it (500 tokens per "
            f"script call). From a second before the opening until then Redis ran "
            f"{o['slow_commands']} commands of 100 µs or more, the longest "
            f"**{o['longest_command_us']} µs** (`{o['longest_command']}`); the shuffle's "
            f"chunks: {chunk}.")


def crowd_text(rows):
    """The `crowd` run: each way of holding, by the crowd as a share of by one user."""
    by_name = {r["name"]: r for r in rows}
    out = []
    for variant in ("seatIds", "quantity"):
        one = by_name.get(f"POST /api/v1/reservations ({variant}, one user)")
        crowd = next((r for name, r in by_name.items()
                      if name.startswith(f"POST /api/v1/reservations ({variant}, ")
                      and name.endswith("ACTIVE users)")), None)
        if one and crowd:
            out.append(f"by `{variant}`: {crowd['rps']:.0f} holds/s with the crowd, "
                       f"{one['rps']:.0f} by one user: **{crowd['rps'] / one['rps']:.2f}**")
    return ("Holds with the crowd as a share of holds by one user (medians): "
            + "; ".join(out) + ".") if out else ""


def listing_text(path):
    """The 10 000-seat listing's and seat map's bytes on the wire (bench/run.sh)."""
    f = dict(line.split() for line in open(path) if line.strip())
    kb = lambda name: f"{int(f[name]) / 1024:.0f} KB"
    return (f"A listing of 10 000 seats: {kb('listing_plain')} of JSON, **{kb('listing_gzip')} "
            f"gzipped**; the seat map (`?view=map`) {kb('map_plain')}, **{kb('map_gzip')} "
            f"gzipped**. With the current tag in `If-None-Match` it is answered "
            f"{f['not_modified_status']} without a body: the rate of that path is the "
            f"`GET …/seats (10 000 seats, unchanged: 304)` row above.")


def streams_text(s):
    """The `streams` run's figures (bench/streams.rs)."""
    ms = lambda v: "?" if v is None else f"{v * 1000:.0f} ms"
    return (f"{s['streams_open']} streams open on one instance ({s['streams_refused']} refused; "
            f"{s['users']} users asked): seatrush's RSS **{s['rss_per_stream_bytes'] / 1024:.1f} "
            f"KB per open stream** ({s['rss_before_bytes'] / 1e6:.0f} → "
            f"{s['rss_open_bytes'] / 1e6:.0f} MB). `GET /health` "
            f"{s['health_without']:.0f} req/s without them, {s['health_with']:.0f} with them "
            f"open (ratio **{s['health_with'] / s['health_without']:.2f}**). Admitted 2 000 a "
            f"second, {s['admitted']} heard `active` within {ms(s['active_p50_s'])} of their "
            f"admission at p50 and **{ms(s['active_p99_s'])} at p99** (histogram bucket "
            f"bounds).")


def waiting_text(path):
    """The 1 000 000-waiting step (bench/run.sh `waiting`), as a table."""
    f = {}
    for line in open(path):
        key, _, value = line.strip().partition(" ")
        if key in ("issuance", "back_status"):
            value = dict(kv.split("=") for kv in value.split()[1:])
        f[key] = value
    n = int(f["waiting_users"])
    keys = {k[4:]: int(v) for k, v in f.items() if k.startswith("key_") and v.isdigit()}
    per_user = sum(keys.values()) / n
    delta = (int(f["used_memory_after"]) - int(f["used_memory_before"])) / n
    status = f["back_status"]
    status_rps = int(status["requests"]) / float(status["seconds"])
    issued = f["issuance"]
    out = ["| measure | value |", "| --- | ---: |",
           f"| users WAITING on one schedule | {n} |",
           f"| issued in | {f['issued_s']} s ({issued['bad']} non-2xx) |",
           f"| **Redis bytes per WAITING user** (the schedule's keys) | **{per_user:.1f}** |",
           f"| Redis `used_memory` growth per WAITING user | {delta:.1f} |",
           f"| seatrush RSS | {int(f['rss_after']) / 2**20:.0f} MiB "
           f"(was {int(f['rss_before']) / 2**20:.0f} MiB before the queue filled) |",
           f"| the last user's queuePosition | {f['back_position']} |",
           f"| their status, again and again (wrk -c64) | {status_rps:.0f} req/s, p50 "
           f"{int(status['p50']) / 1000:.2f} ms, p99 {int(status['p99']) / 1000:.2f} ms, "
           f"non-2xx {status['bad']} |",
           "", "Redis bytes by key (`MEMORY USAGE … SAMPLES 0`, outbox drained): " +
           ", ".join(f"`{k}` {v / n:.1f} B/user" for k, v in keys.items()) + "."]
    return "\n".join(out)


def chart(path, measured):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    (rps_ax, p99_ax), (sold_ax, steps_ax) = axes
    names = [r["name"] for r in measured[0][1]]
    width = 0.8 / len(measured)
    for i, (setting, rows, *_) in enumerate(measured):
        xs = [j + i * width for j in range(len(rows))]
        rps_ax.bar(xs, [r["rps"] for r in rows], width, label=f"appendfsync {setting}")
        p99_ax.bar(xs, [r["p99"] for r in rows], width, label=f"appendfsync {setting}")
    for ax, title in ((rps_ax, "requests/s (wrk -t1 -c64)"), (p99_ax, "p99 latency, ms")):
        ax.set_title(title)
        ax.set_xticks([j + width * (len(measured) - 1) / 2 for j in range(len(names))])
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.legend(fontsize=8)
    for setting, _, _, flash, *_ in measured:
        if not flash:
            continue
        t, n = zip(*flash["sold_timeline"]) if flash["sold_timeline"] else ((), ())
        sold_ax.plot(t, n, label=f"appendfsync {setting}")
        if setting == measured[0][0]:
            for step, counts in sorted(flash["requests_per_second"].items()):
                steps_ax.plot(range(len(counts)), counts, label=step)
    sold_ax.set_title("flash sale: seats sold")
    sold_ax.set_xlabel("seconds")
    sold_ax.legend(fontsize=8)
    steps_ax.set_title(f"flash sale: requests/s by step (appendfsync {measured[0][0]})")
    steps_ax.set_xlabel("seconds")
    steps_ax.set_yscale("symlog")
    steps_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    partial = sys.argv[1] == "--partial"
    run_dir, machine = sys.argv[1 + partial], sys.argv[2 + partial]
    measured = []
    for setting in SETTINGS:
        wrk = os.path.join(run_dir, f"{setting}.wrk")
        if not os.path.exists(wrk):
            continue
        rows, half, ceiling = read_wrk(wrk)
        cpu = read_cpu(os.path.join(run_dir, f"{setting}.cpu"))
        flash_path = os.path.join(run_dir, f"{setting}.flash.json")
        flash = json.load(open(flash_path)) if os.path.exists(flash_path) else None
        fair_path = os.path.join(run_dir, f"{setting}.fair.json")
        fair = json.load(open(fair_path)) if os.path.exists(fair_path) else None
        measured.append((setting, rows, ceiling, flash, fair))
        print_wrk(setting, rows, half, ceiling, cpu)
        drains = os.path.join(run_dir, f"{setting}.drains")
        if os.path.exists(drains):
            print(open(drains).read().rstrip())
        if setting == "crowd":
            print(crowd_text(rows))

    waiting = os.path.join(run_dir, "waiting")
    waiting = waiting_text(waiting) if os.path.exists(waiting) else None
    if waiting:
        print("\n" + waiting)
    listing = os.path.join(run_dir, "listing")
    listing = listing_text(listing) if os.path.exists(listing) else None
    if listing:
        print("\n" + listing)
    opening = os.path.join(run_dir, "opening.json")
    opening = opening_text(json.load(open(opening))) if os.path.exists(opening) else None
    if opening:
        print("\n" + opening)
    streams = os.path.join(run_dir, "streams.json")
    streams = streams_text(json.load(open(streams))) if os.path.exists(streams) else None
    if streams:
        print("\n" + streams)
    if partial:
        return
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d-%H%M")
    os.makedirs(RESULTS, exist_ok=True)
    png = f"{stamp}.png"
    md = [f"# Benchmark {stamp} UTC", "", machine, "",
          f"![requests/s, p99 and the flash sale]({png})", ""]
    for setting, rows, ceiling, flash, fair in measured:
        cpu = read_cpu(os.path.join(run_dir, f"{setting}.cpu"))
        _, half, _ = read_wrk(os.path.join(run_dir, f"{setting}.wrk"))
        md += [f"## {TITLES[setting]}", "", wrk_table(rows, ceiling, cpu), ""]
        if setting == "crowd":
            md += [crowd_text(rows), ""]
        if half:
            md += ["At half the rate each endpoint reached (requests sent on a fixed "
                   "schedule, `bench/report.lua`):", "", half_table(half, cpu), ""]
        drains = os.path.join(run_dir, f"{setting}.drains")
        if os.path.exists(drains):
            md += ["Write-behind after each run:", ""]
            md += [f"- {line}" for line in open(drains).read().splitlines()] + [""]
        if flash:
            md += ["### Flash sale", "", flash_text(flash), ""]
        if fair:
            md += ["### Flash sale with a fair opening", "", flash_text(fair), ""]
    if waiting:
        md += ["## One schedule with 1 000 000 waiting", "", waiting, ""]
    if listing:
        md += ["## A seat listing of 10 000 seats", "", listing, ""]
    if opening:
        md += ["## A fair opening with 1 000 000 pre-queued", "", opening, ""]
    if streams:
        md += ["## Open event streams on one instance", "", streams, ""]
    flames = os.path.join(RESULTS, "flamegraphs")
    if os.path.isdir(flames):
        md += ["## Flamegraphs", "", "seatrush under each full-speed run, from "
               "`BENCH_PROFILE=1 make bench` (perf at 199 Hz):", ""]
        md += [f"- [{f}](flamegraphs/{f})" for f in sorted(os.listdir(flames))
               if f.endswith(".svg")] + [""]
    changes = os.path.join(ROOT, "bench", "CHANGES.md")
    if os.path.exists(changes):
        md += [open(changes).read().replace("# ", "## ", 1)]
    report = os.path.join(RESULTS, f"{stamp}.md")
    with open(report, "w") as f:
        f.write("\n".join(md))
    chart(os.path.join(RESULTS, png), [m for m in measured if m[0] in ("everysec", "always")])
    shutil.copy(report, os.path.join(RESULTS, "latest.md"))
    shutil.copy(os.path.join(RESULTS, png), os.path.join(RESULTS, "latest.png"))
    with open(os.path.join(RESULTS, "latest.md")) as f:
        text = f.read().replace(f"]({png})", "](latest.png)")
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write(text)
    print(f"\nreport: {os.path.relpath(report, ROOT)} (and bench/results/latest.md, latest.png)")


if __name__ == "__main__":
    main()
