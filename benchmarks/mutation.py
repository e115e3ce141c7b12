"""Mutation score of the maths and evaluator modules, measured with cosmic-ray.

    .venv/bin/pip install "cosmic-ray==8.7.0"      # benchmark-only: not a dependency of the toolkit
    .venv/bin/python benchmarks/mutation.py [--modules knn,few_shot,...] [--timeout 120] [--survivors-only]

cosmic-ray (https://github.com/sixty-north/cosmic-ray) makes one small change at a time to a
module's source (an operator, a comparison, a constant, a boolean, a loop that runs zero times,
a removed decorator), runs a test command, and calls the mutant "killed" when the command fails
(or times out) and "survived" when it passes. We use cosmic-ray rather than mutmut because it
edits the real file in place (here: in a scratch copy of the repository) and runs any command,
so it works with this repository's layout (a core package plus plugin packages found through
entry points) and mutates decorated functions too; mutmut 3.8 needs a ``src/`` copy of the code
to import from, and in that copy it recorded no test hits at all (see the git history).

A test command per mutant that starts Python and imports torch costs 5-30 s on a loaded 2-core
machine, longer than the unit tests themselves. So the script starts one *fork server* that
imports torch, numpy and pytest once (never the repository's packages) and, for each mutant,
forks a child that runs ``pytest`` on that module's fast unit tests; the child imports the
mutated module from disk. cosmic-ray's test command is a small client (this file with
``--client``, no torch import) that asks the server and exits with the child's status; when
cosmic-ray times a mutant out and kills the client, the server kills the child.

Each module is tested only with the few fast unit tests that cover it (``MODULES`` below), so a
surviving mutant means "the fast tests miss this", not "the whole suite misses this". Results go
to ``benchmarks/results/mutation.json`` (merged per module, so modules can be run one at a time);
``benchmarks/results/mutation.md`` explains each survivor. After tests are added for the
survivors, ``--survivors-only`` re-runs just the mutants at the survivors' (operator, line) and
carries the others over as killed: valid because the module's source is the same (its sha256 is
checked against the last complete run) and tests were only added. Not part of CI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutation.json"

# module short name -> (file, pytest arguments selecting the fast unit tests that check its maths)
MODULES: dict[str, tuple[str, list[str]]] = {
    "knn": ("ssl_core/evaluators/knn.py", ["tests/core/test_evaluator_settings.py", "tests/core/test_evaluators.py",
                                           "-k", "knn"]),
    "few_shot": ("ssl_core/evaluators/few_shot.py", ["tests/core/test_evaluator_settings.py", "-k", "few_shot"]),
    "ema": ("plugins/vision/ssl_vision/ema.py", ["tests/vision/test_method_maths.py",
                                                 "tests/vision/test_maths_details.py", "-k", "ema"]),
    "dino": ("plugins/vision/ssl_vision/dino.py", ["tests/vision/test_method_maths.py", "tests/vision/test_teachers.py",
                                                   "-k", "dino"]),
    # not the reconstruction PNG test: it loads the digits through scikit-learn (3-10 s a mutant);
    # test_mae.py's fast tests of reconstruct and on_train_end check the same code
    "mae": ("plugins/vision/ssl_vision/mae.py", ["tests/vision/test_method_maths.py", "tests/vision/test_mae.py",
                                                 "-k", "(mae or mask or patchify) and not png"]),
    "quantizer": ("plugins/audio/ssl_audio/quantizer.py", ["tests/audio/test_quantizer_grads.py",
                                                           "tests/audio/test_quantizer.py", "-k", "not hubert and not align"]),
    "losses": ("plugins/vision/ssl_vision/losses.py", ["tests/vision/test_losses.py",
                                                       "tests/vision/test_maths_details.py"]),
    "health": ("ssl_core/evaluators/health.py", ["tests/core/test_evaluators.py", "-k", "health or rank"]),
    # slower tests (10-60 s a mutant under load): last
    "byol": ("plugins/vision/ssl_vision/byol.py", ["tests/vision/test_method_maths.py", "-k", "byol"]),
    # the scikit-learn comparison (6-25 s, most of it importing scikit-learn) stays in the suite;
    # the stationary-point test checks the same objective in milliseconds
    "linear_probe": ("ssl_core/evaluators/linear_probe.py", ["tests/core/test_evaluator_settings.py",
                                                             "-k", "linear and not regularised_logistic"]),
    "hubert": ("plugins/audio/ssl_audio/hubert.py", ["tests/audio/test_quantizer_grads.py", "tests/audio/test_objectives.py",
                                                     "-k", "hubert or align or mfcc or layer_targets or collect_frames"
                                                           " or resolve_target"]),
}

# The operators used (everything else is filtered out, to keep a module to tens of minutes):
# + <-> -, * <-> /, ** -> *; each comparison flipped to its negation and moved across its
# boundary (< to >= and <=, == to !=, is to is not); a unary minus or `not` deleted; +-1 on
# every number; `not` added to conditions; True <-> False; and <-> or; break <-> continue;
# loops that run zero times; removed decorators; replaced exception types. Left out: swaps into
# bitwise, shift, modulo and power operators and cosmic-ray's random variable replacer/inserter
# (they add count, not information: nearly all crash the maths at once).
KEPT_OPERATORS = [
    r"ReplaceBinaryOperator_(Add_Sub|Sub_Add|Mul_Div|Div_Mul|Pow_Mul)",
    r"ReplaceComparisonOperator_(Eq_NotEq|NotEq_Eq|Lt_LtE|Lt_GtE|LtE_Lt|LtE_Gt|Gt_GtE|Gt_LtE|GtE_Gt|GtE_Lt"
    r"|Is_IsNot|IsNot_Is)",
    r"ReplaceUnaryOperator_Delete_(USub|Not)", r"NumberReplacer", r"AddNot", r"ReplaceTrueWithFalse",
    r"ReplaceFalseWithTrue", r"ReplaceAndWithOr", r"ReplaceOrWithAnd", r"ReplaceBreakWithContinue",
    r"ReplaceContinueWithBreak", r"ZeroIterationForLoop", r"RemoveDecorator", r"ExceptionReplacer",
]
EXCLUDED_OPERATORS = [rf"(?!core/({'|'.join(KEPT_OPERATORS)})$)"]  # cr-filter-operators skips matches


# ---------------------------------------------------------------------------- fork server
def third_party_modules(root: str, warm: list[str]) -> list[str]:
    """Names of the modules, from outside ``root``, that collecting ``warm`` imports (in a child)."""
    import pytest

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *warm])
        names = [n for n, m in list(sys.modules.items())
                 if getattr(m, "__file__", None) and not str(m.__file__).startswith(root)]
        with os.fdopen(write, "w") as f:
            json.dump(names, f)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        names = json.load(f)
    os.waitpid(pid, 0)
    return names


def serve(sock_path: str, root: str, warm: list[str]) -> None:
    """Import the third-party libraries once; fork a pytest child per request.

    The server itself never imports the repository's packages: a child collects ``warm`` (the
    test files) once to learn which third-party modules they pull in (torch, torchvision, timm,
    pytest plugins...), the server imports those, and each request's child imports the
    repository's modules fresh from disk, so it sees the mutant.
    """
    import importlib
    import select

    sys.dont_write_bytecode = True  # a mutant and the original can share size and mtime second
    import pytest
    import torch

    os.chdir(root)
    for name in third_party_modules(str(Path(root).resolve()), warm):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module that only imports in its parent's context
            pass
    # an optimiser's first construction imports torch._dynamo and sympy (5 s): once, here
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    print(f"[mutation] fork server ready on {sock_path} (torch {torch.__version__})", flush=True)
    child = [0]

    def stop(*_: object) -> None:  # the driver is done (or stopped): take the running test with us
        if child[0]:
            try:
                os.killpg(child[0], signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        conn, _ = srv.accept()
        args = json.loads(conn.makefile().readline())
        pid = child[0] = os.fork()
        if pid == 0:  # child: fresh imports of the repository's (mutated) modules
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            srv.close()
            conn.close()
            os.setsid()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            torch.set_num_threads(1)
            code = pytest.main(["-x", "-q", "-p", "no:cacheprovider", *args])
            os._exit(int(code))
        status = None
        while status is None:  # wait for the child, or for the client to go away (timeout)
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(st)
                break
            readable, _, _ = select.select([conn], [], [], 0.2)
            if readable and not conn.recv(1, socket.MSG_PEEK):
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = -9
        try:
            conn.sendall(f"{status}\n".encode())
        except OSError:
            pass
        conn.close()


def client(sock_path: str, args: list[str]) -> int:
    """cosmic-ray's test command: ask the fork server to run ``pytest ARGS``; its exit status."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    s.sendall((json.dumps(args) + "\n").encode())
    reply = s.makefile().readline().strip()
    return int(reply) if reply.lstrip("-").isdigit() else 3


# ---------------------------------------------------------------------------- driver
def copy_tree(dest: Path) -> None:
    """A scratch copy of the tracked files: cosmic-ray edits files in place."""
    if dest.exists():
        shutil.rmtree(dest)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def pythonpath(copy: Path) -> str:
    """The copy's packages first, ahead of any installed (editable) sslkit."""
    paths = [copy] + sorted(p for p in (copy / "plugins").iterdir() if p.is_dir())
    paths += [copy / "tests" / "fixtures" / "sslkit_testplugins", copy / "examples" / "sslkit-vicreg"]
    return os.pathsep.join(str(p) for p in paths)


def write_config(path: Path, module: str, test_command: str, timeout: float) -> None:
    excluded = ", ".join(json.dumps(x) for x in EXCLUDED_OPERATORS)
    path.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(module)}\n"
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(test_command)}\n\n"
        "[cosmic-ray.distributor]\nname = \"local\"\n\n"
        "[cosmic-ray.filters.operators-filter]\n"
        f"exclude-operators = [{excluded}]\n"
    )


def summarise(session: Path) -> dict:
    """Counts and every survivor's diff, from ``cosmic-ray dump``."""
    dump = subprocess.run([str(Path(sys.executable).parent / "cosmic-ray"), "dump", str(session)],
                          capture_output=True, text=True, check=True).stdout
    counts = {"killed": 0, "timeout": 0, "survived": 0, "incompetent": 0, "skipped": 0, "pending": 0}
    survivors = []
    for line in dump.splitlines():
        item, result = json.loads(line)
        if result is None:
            counts["pending"] += 1
        elif result["worker_outcome"] == "skipped":
            counts["skipped"] += 1
        elif result["test_outcome"] == "killed":
            counts["timeout" if result.get("output") == "timeout" else "killed"] += 1
        elif result["test_outcome"] == "survived":
            counts["survived"] += 1
            m = item["mutations"][0]
            survivors.append({"job": item["job_id"], "operator": m["operator_name"],
                              "line": m["start_pos"][0], "diff": result.get("diff") or ""})
        else:
            counts["incompetent"] += 1
    tested = counts["killed"] + counts["timeout"] + counts["survived"]
    counts["score"] = round((counts["killed"] + counts["timeout"]) / tested, 4) if tested else None
    return {**counts, "survivors": survivors}


def source_hash(path: Path) -> str:
    """sha256 of a module's source: a survivors-only re-run is valid only for the same source."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def carry_over(session: Path, previous: dict) -> int:
    """Mark every pending mutant that is not at a previous survivor's (operator, line) as killed,
    carried over from ``previous`` (a complete run of the same source; tests were only added since,
    so what was killed stays killed). Returns how many were carried over."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    again = {(s["operator"], s["line"]) for s in previous["survivors"]}
    with use_db(str(session), WorkDB.Mode.open) as db:
        carried = [item.job_id for item in db.pending_work_items
                   if (item.mutations[0].operator_name, item.mutations[0].start_pos[0]) not in again]
        db.set_multiple_results(carried, WorkResult(worker_outcome=WorkerOutcome.NORMAL, output="carried over",
                                                    test_outcome=TestOutcome.KILLED))
    return len(carried)


def run_module(name: str, copy: Path, work: Path, timeout: float, env: dict[str, str], sock: str,
               previous: dict | None = None) -> dict:
    """Mutate module ``name`` and run its tests per mutant; with ``previous`` (survivors-only), only
    the mutants at the previous run's survivors' (operator, line) run again."""
    module, tests = MODULES[name]
    cr = str(Path(sys.executable).parent / "cosmic-ray")
    cfg, session = work / f"{name}.toml", work / f"{name}.sqlite"
    quoted = (f"'{a}'" if " " in a else a for a in tests)
    cmd = " ".join([sys.executable, str(Path(__file__).resolve()), "--client", sock, "--", *quoted])
    write_config(cfg, module, cmd, timeout)
    session.unlink(missing_ok=True)
    subprocess.run([cr, "init", str(cfg), str(session)], cwd=copy, env=env, check=True)
    subprocess.run([str(Path(sys.executable).parent / "cr-filter-operators"), str(session), str(cfg)],
                   cwd=copy, env=env, check=True)
    carried = carry_over(session, previous) if previous else 0
    base = client(sock, tests)  # the unmutated module must pass its tests
    if base != 0:
        raise SystemExit(f"[mutation] {name}: the tests fail on the unmutated code (exit {base}): {tests}")
    start = time.time()
    subprocess.run([cr, "exec", str(cfg), str(session)], cwd=copy, env=env, check=True)
    out = summarise(session)
    out.update(module=module, tests=tests, seconds=round(time.time() - start, 1), source_sha256=source_hash(copy / module))
    if previous:
        out["rerun"] = f"survivors only: {carried} mutants carried over as killed, the rest run again"
    return out


def first_run(previous: dict | None, latest: dict) -> dict:
    """The counts of a module's first complete run, kept across re-runs (before tests were added)."""
    if previous and previous.get("first_run"):
        return previous["first_run"]
    source = previous if previous and not previous.get("partial") else latest
    return {k: source[k] for k in ("killed", "timeout", "survived", "score")}


def table(results: dict) -> str:
    """The per-module score table of ``results`` (the JSON file), as Markdown."""
    rows = ["| module | file | mutants | killed | timeout | survived | score | seconds | first run: killed+timeout / survived (score) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in results.items():
        n = r["killed"] + r["timeout"] + r["survived"]
        f = r.get("first_run")
        first = f"{f['killed'] + f['timeout']} / {f['survived']} ({f['score']:.0%})" if f else "-"
        first += f", partial: {f['partial']}" if f and f.get("partial") else ""
        rows.append(f"| {name} | `{r['module']}` | {n} | {r['killed']} | {r['timeout']} | {r['survived']} "
                    f"| {r['score']:.0%} | {r['seconds']:.0f} | {first} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", default=",".join(MODULES), help="comma-separated names from MODULES")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant before it counts as killed")
    parser.add_argument("--workdir", default="/tmp/sslkit-mutation", help="scratch copy + sessions (recreated)")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--table", action="store_true", help="print the score table of --results and exit")
    parser.add_argument("--survivors-only", action="store_true",
                        help="re-run only the mutants at the (operator, line) of the last run's survivors and carry the "
                             "others over as killed; needs a complete last run of the same module source (tests added since)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.client:
        sys.exit(client(args.client, [a for a in rest if a != "--"]))
    if args.table:
        print(table(json.loads(Path(args.results).read_text())))
        return
    if args.serve:
        serve(args.serve, args.root, [a for a in rest if a != "--"])
        return
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop cosmic-ray and the server too
    names = [n.strip() for n in args.modules.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {sorted(MODULES)}")
    work = Path(args.workdir)
    copy = work / "repo"
    copy_tree(copy)
    env = {**os.environ, "PYTHONPATH": pythonpath(copy), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           # the audio tests' spoken words: synthesised once (5 s), not once per mutant
           "SSLKIT_TEST_WORDS_CACHE": str(work / "words-cache")}
    sock = str(work / "server.sock")
    Path(sock).unlink(missing_ok=True)
    warm = sorted({a for n in names for a in MODULES[n][1] if a.startswith("tests/")})
    server = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve", sock, "--root", str(copy),
                               "--", *warm], env=env, cwd=copy)
    try:
        while not Path(sock).exists():
            if server.poll() is not None:
                raise SystemExit("[mutation] the fork server did not start")
            time.sleep(0.5)
        results_path = Path(args.results)
        for name in names:
            print(f"[mutation] {name}: {MODULES[name][0]}", flush=True)
            merged = json.loads(results_path.read_text()) if results_path.exists() else {}
            previous = None
            if args.survivors_only:
                previous = merged.get(name)
                if not previous or previous.get("partial") or previous.get("source_sha256") != source_hash(copy / MODULES[name][0]):
                    raise SystemExit(f"[mutation] {name}: --survivors-only needs a complete last run of this exact source; "
                                     "run the module in full")
            res = run_module(name, copy, work, args.timeout, env, sock, previous)
            # read again: other runs (other modules) may have written the file meanwhile
            merged = json.loads(results_path.read_text()) if results_path.exists() else {}
            res["first_run"] = first_run(merged.get(name), res)
            merged[name] = res
            results_path.write_text(json.dumps(merged, indent=1) + "\n")  # after each module
            print(f"[mutation] {name}: killed {res['killed']} timeout {res['timeout']} survived "
                  f"{res['survived']} incompetent {res['incompetent']} score {res['score']} "
                  f"({res['seconds']} s)", flush=True)
    finally:
        server.terminate()  # the server kills its running test child, then exits
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
