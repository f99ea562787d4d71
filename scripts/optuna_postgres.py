"""
Two rl_zoo3 workers on one Optuna study in a real PostgreSQL server: how hyperparameter searches and seeds scale out.

rl_zoo3's ``--optimize --storage URL --study-name NAME`` lets any number of worker processes, on one machine or many,
share one Optuna study: each asks the study for its next trial and reports the result there. On one machine the
default sqlite file is enough (``--storage sqlite:///study.db``); across machines a database server is the usual
engine. This script shows it end to end with PostgreSQL: it starts a private cluster in a temporary folder
(``initdb`` / ``pg_ctl``, no system service; as root it runs them as the ``postgres`` user, as PostgreSQL requires),
creates the study, runs ``--workers`` copies of ``python -m sb3_parsing.zoo train --optimize`` at once against it,
prints which worker ran which trial, and stops the server::

    python scripts/optuna_postgres.py --workers 2 --trials-per-worker 2 --steps 2048

The URL of each worker's storage is ``postgresql+psycopg://<user>@127.0.0.1:<port>/optuna`` (``pip install
"psycopg[binary]"``, part of the ``zoo`` extra). Point the workers of a real search at your own server the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna

STUDY = "sb3-parsing-ppo-mask"


def _postgres_bin(name: str) -> str:
    """The path of a PostgreSQL server program (Debian keeps them out of PATH)."""
    found = shutil.which(name) or next(iter(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise SystemExit(f"{name} not found: install the PostgreSQL server (Debian: apt-get install postgresql)")
    return str(found)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def private_postgres(folder: Path) -> Iterator[str]:
    """
    A PostgreSQL cluster of its own in ``folder``, started for the ``with`` block and stopped after it.

    :param folder: an empty folder for the data, the socket and the log
    :return: the SQLAlchemy URL of its ``optuna`` database
    """
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chmod(folder, 0o755)
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    subprocess.run([*as_postgres, _postgres_bin("initdb"), "-D", str(data), "-U", "optuna", "--auth=trust"], check=True,
                   capture_output=True)  # fmt: skip
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    pg_ctl = [*as_postgres, _postgres_bin("pg_ctl"), "-D", str(data), "-l", str(folder / "server.log")]
    subprocess.run([*pg_ctl, "-o", options, "-w", "start"], check=True, capture_output=True)
    try:
        subprocess.run([_postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "optuna", "optuna"], check=True)
        yield f"postgresql+psycopg://optuna@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], check=True, capture_output=True)


def run_workers(storage: str, n_workers: int, trials_per_worker: int, steps: int, folder: Path) -> dict[str, list[int]]:
    """
    Run ``n_workers`` rl_zoo3 ``--optimize`` processes at once on the study ``STUDY`` in ``storage``.

    :return: for each worker, the numbers of the trials it ran
    """
    optuna.create_study(study_name=STUDY, storage=storage, direction="maximize", load_if_exists=True)
    command = [
        sys.executable, "-m", "sb3_parsing.zoo", "train", "--algo", "ppo_mask", "--env", "LinguisticParse-v0",
        "--optimize", "--storage", storage, "--study-name", STUDY, "--n-trials", str(trials_per_worker), "--n-jobs", "1",
        "-n", str(steps), "--n-evaluations", "1", "--eval-episodes", "5", "--num-threads", "1", "--sampler", "random",
        "--pruner", "none",
    ]  # fmt: skip
    workers = []
    for i in range(n_workers):
        log = open(folder / f"worker{i}.log", "w")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        args = [*command, "-f", str(folder / f"logs{i}"), "--seed", str(i)]
        workers.append((subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    ran: dict[str, list[int]] = {}
    for i, (process, log) in enumerate(workers):
        process.wait(timeout=1800)
        log.close()
        text = (folder / f"worker{i}.log").read_text()
        if process.returncode != 0:
            raise SystemExit(f"worker {i} failed:\n{text[-3000:]}")
        ran[f"worker {i}"] = sorted(int(n) for n in re.findall(r"Trial (\d+) finished", text))
    return ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trials-per-worker", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2048, help="training steps per trial")
    parser.add_argument("--json", help="write the result to this file")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sb3_parsing_pg_"))
    try:
        with private_postgres(folder) as storage:
            ran = run_workers(storage, args.workers, args.trials_per_worker, args.steps, folder)
            study = optuna.load_study(study_name=STUDY, storage=storage)
            trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            print(f"study {STUDY!r} in PostgreSQL: {len(trials)} complete trials from {args.workers} workers")
            print("| worker | trials it ran |\n|---|---|")
            for worker, numbers in ran.items():
                print(f"| {worker} | {', '.join(map(str, numbers))} |")
            print(f"best value {study.best_value:.3f} with {study.best_params}")
            result = {"complete_trials": len(trials), "trials_by_worker": ran, "best_value": study.best_value}
            if args.json:
                Path(args.json).write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
