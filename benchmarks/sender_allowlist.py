"""Benchmark: the sender_allowlist module against bare postmap on the same data.

    .venv/bin/python benchmarks/sender_allowlist.py [--entries 1000000] [--type lmdb]

Everything runs in one process tree, side by side, on the same generated data:
bare `postmap` builds the baseline map; the module then applies the same pairs
(full apply), applies them again (no-op), adds one entry and removes one entry.
Each figure is printed with its ratio to postmap's build time and the bound
from issue 11. A module that only starts Ansible's AnsibleModule and exits runs
beside them: the floor under any module's no-op. Every step starts after a
sync, so that no step pays for the write-back of the one before it. Needs
Postfix's postmap (scripts/test installs it).
"""

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "collections"))
from ansible_collections.mailops.submission.plugins.module_utils.table_source import (  # noqa: E402
    MAP_SUFFIX as SUFFIX,
)
from ansible_collections.mailops.submission.tests.unit.plugins.modules.allowlist_harness import (  # noqa: E402
    POSTMAP,
    empty_postfix_config,
    module_command,
    module_result,
)

# The least a module does: import Ansible's module code, check its arguments, print its result.
FLOOR_MODULE = """
from ansible.module_utils.basic import AnsibleModule
AnsibleModule(argument_spec={}, supports_check_mode=True).exit_json(changed=False)
"""


def generate(path, entries):
    with open(path, "w") as out:
        for i in range(entries):
            out.write(f"user{i}@dom{i % 5000}.example login{i % 300000}@runbox.com\n")


def timed(cmd, **kwargs):
    """Run cmd; return (seconds, peak RSS in MiB of that process, stdout)."""
    os.sync()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, **kwargs)
        # wait4 gives this process's own peak RSS, not the largest of all children so far.
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {stdout} {stderr}")
    return elapsed, usage.ru_maxrss / 1024, stdout


def run_module(work, config, **params):
    params.setdefault("postfix_config_dir", str(config))
    cmd, env = module_command(params, work)
    seconds, peak, out = timed(cmd, env=env)
    result = module_result(out)
    if result.get("failed"):
        raise SystemExit(f"module failed: {result['msg']}")
    return seconds, peak, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--type", choices=sorted(SUFFIX), default="lmdb")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every step; the median round is reported")
    parser.add_argument("--noop-runs", type=int, default=5, help="no-op runs (and floor runs) in each round")
    options = parser.parse_args()
    postmap = POSTMAP
    if not postmap:
        raise SystemExit("postmap not found: apt-get install postfix postfix-lmdb")

    with tempfile.TemporaryDirectory(prefix="allowlist-bench-", dir="/var/tmp") as tmp:
        work = pathlib.Path(tmp)
        config = work / "postfix"
        config.mkdir()
        empty_postfix_config(config)
        floor = work / "floor_module.py"
        floor.write_text(FLOOR_MODULE)
        data = work / "pairs.txt"
        generate(data, options.entries)
        baseline_src = work / "baseline"
        shutil.copyfile(data, baseline_src)
        tables = work / "tables"
        tables.mkdir()
        kind = options.type

        runs, peaks = [], []
        for attempt in range(options.repeat):
            table = str(tables / f"senders{attempt}")
            # Baseline and module alternate, so that load on the machine hits both alike.
            # A fresh build each time, as the module makes a fresh map for a full apply.
            pathlib.Path(f"{baseline_src}{SUFFIX[kind]}").unlink(missing_ok=True)
            postmap_s, postmap_rss, _ = timed([postmap, "-c", str(config), f"{kind}:{baseline_src}"])
            full_s, full_rss, full = run_module(work, config, path=table, src=str(data), exclusive=True, type=kind)
            noops, floors = [], []
            for _ in range(options.noop_runs):
                floor_cmd, env = module_command({}, work)
                floors.append(timed([floor_cmd[0], str(floor), floor_cmd[2]], env=env)[0])
                seconds, _, noop = run_module(work, config, path=table, src=str(data), exclusive=True, type=kind)
                noops.append(seconds)
            noop_s, floor_s = statistics.median(noops), statistics.median(floors)
            new = {"sender": "new.sender@runbox.com", "login": "login1@runbox.com"}
            add_s, _, add = run_module(work, config, path=table, type=kind, entries=[new])
            gone = {"sender": "user5@dom5.example", "state": "absent"}
            remove_s, _, remove = run_module(work, config, path=table, type=kind, entries=[gone])
            runs.append((postmap_s, full_s, noop_s, floor_s, add_s, remove_s))
            peaks.append((postmap_rss, full_rss))
        check = subprocess.run(
            [postmap, "-c", str(config), "-q", "-", f"{kind}:{table}"],
            input="new.sender@runbox.com\nuser5@dom5.example\nuser6@dom6.example\n",
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        postmap_s, full_s, noop_s, floor_s, add_s, remove_s = (
            statistics.median(column) for column in zip(*runs, strict=True)
        )
        postmap_rss, full_rss = (max(column) for column in zip(*peaks, strict=True))

    assert full["pairs"] == options.entries and full["changed"], full
    assert noop["changed"] is False, noop
    assert (add["added"], remove["removed"]) == (1, 1), (add, remove)
    assert "new.sender@runbox.com\tlogin1@runbox.com" in check and "user5@dom5.example" not in check, check

    rows = [
        ("postmap build (baseline)", postmap_s, None, ""),
        ("module full apply", full_s, 2.0, full["rebuild"]),
        ("module no-op re-apply", noop_s, 0.1, noop["rebuild"]),
        ("  AnsibleModule alone (floor)", floor_s, None, ""),
        ("module add one entry", add_s, 0.35, add["rebuild"]),
        ("module remove one entry", remove_s, 0.35, remove["rebuild"]),
    ]
    title = (
        f"{options.entries:,} pairs, {kind} map, {os.cpu_count()} CPUs,"
        f" median of {options.repeat} rounds ({options.noop_runs} no-op runs a round)"
    )
    sys.exit(1 if report(title, rows, postmap_s, full_rss, postmap_rss) else 0)


def report(title, rows, postmap_s, full_rss, postmap_rss):
    """Print the table of figures; return True when a target was missed."""
    print(f"sender_allowlist benchmark: {title}")
    print(f"{'step':28} {'seconds':>8} {'x postmap':>10} {'target':>8}  map update")
    failed = False
    for name, seconds, target, how in rows:
        ratio = seconds / postmap_s
        verdict = "" if target is None else ("ok" if ratio <= target else "MISSED")
        failed |= verdict == "MISSED"
        tgt = "" if target is None else f"<= {target}"
        print(f"{name:28} {seconds:8.3f} {ratio:10.3f} {tgt:>8}  {how} {verdict}")
    print(f"peak RSS: module full apply {full_rss:.0f} MiB (target <= 1024), postmap build {postmap_rss:.0f} MiB")
    return failed or full_rss > 1024


if __name__ == "__main__":
    main()
