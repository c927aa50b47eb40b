"""Multi-node DDP proven over loopback (issue 21): two "machines" on this host, each its own ``accelerate launch``
(``--num_machines 2 --machine_rank 0|1``, static rendezvous on 127.0.0.1, one process per machine, gloo), training
the real recipe on the tiny backbone.

Checked: the two ranks train on disjoint shards that together cover every training row each epoch (observed by
tracing Accelerate's ``BatchSamplerShard`` in a wrapper that then runs the unchanged recipe); gradients are
averaged (the adapter equals a single process that accumulates the same two batches per optimizer step); only
the main machine writes outputs (machine 1's working folder stays empty; the output folder holds one run); the
adapter loads and predicts. Faults: ``kill -9`` of machine 1 mid-epoch makes machine 0 exit promptly with one
error line naming the lost peer; rerunning both machines resumes from the last checkpoint and ends with the
uninterrupted run's adapter. A frozen machine (SIGSTOP) is given up on after ``--ddp_timeout``.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, tiny_args
from tests.test_faults import complete_steps, max_weight_diff, recipe_in_process

RECIPE = REPO / "recipes" / "lora_sentiment.py"
ACCELERATE = Path(sys.executable).parent / "accelerate"  # the console script users run (`accelerate launch`)
RUN_TIMEOUT = 240  # seconds any one launch may take before the test fails (no hang)
WEIGHT_TOL = 1e-6

# Runs the unchanged recipe (as __main__) after wrapping Accelerate's BatchSamplerShard.__iter__ so that every
# training epoch's shard (the row indices of each batch this process trains on) is appended to
# $SKEWTUNE_TEST_SHARDS/rank<R>.jsonl. Evaluation does not go through BatchSamplerShard.
TRACER = '''
import json, os, runpy, sys
from accelerate.data_loader import BatchSamplerShard
_iter = BatchSamplerShard.__iter__
def traced(self):
    batches = []
    for batch in _iter(self):
        batches.append(list(batch))
        yield batch
    path = os.path.join(os.environ["SKEWTUNE_TEST_SHARDS"], f"rank{os.environ['RANK']}.jsonl")
    with open(path, "a") as handle:
        handle.write(json.dumps({"epoch": getattr(self.batch_sampler, "epoch", None), "batches": batches}) + "\\n")
BatchSamplerShard.__iter__ = traced
recipe = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(recipe, run_name="__main__")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_flags(tiny_bert: Path, data: Path, out: Path, *extra: str) -> list[str]:
    """12 epochs × 6 optimizer steps (192 rows, 12 batches of 16 shared by 2 processes), a checkpoint every 4
    steps, no dropout (the single-process comparison must see the same computation), one thread per process."""
    return tiny_args(tiny_bert, data, out, "--num_train_epochs", "12", "--checkpoint_every_steps", "4",
                     "--lora_dropout", "0", "--backbone_dropout", "0", "--num_threads", "1",
                     "--ddp_timeout", "60", *extra)


def launch_line(rank: int, port: int, script: Path, argv: list[str]) -> list[str]:
    """One machine's launcher: two machines, one process each, rendezvous on machine 0 at 127.0.0.1:port."""
    return [str(ACCELERATE), "launch", "--config_file", str(REPO / "recipes" / "configs" / "accelerate_multinode.yaml"),
            "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
            str(script), *argv]


@dataclass
class Machine:
    rank: int
    proc: subprocess.Popen
    log: Path
    cwd: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def start_machines(argv: list[str], root: Path, tag: str, shards: Path | None = None) -> list[Machine]:
    """Both machines' launchers, each in its own working folder."""
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    script = RECIPE
    if shards is not None:
        shards.mkdir(parents=True, exist_ok=True)
        script = root / "trace_shards.py"
        script.write_text(TRACER)
        env["SKEWTUNE_TEST_SHARDS"] = str(shards)
    machines = []
    for rank in (0, 1):
        cwd = root / f"{tag}-machine{rank}"
        cwd.mkdir(parents=True, exist_ok=True)
        log = root / f"{tag}-machine{rank}.log"
        args = launch_line(rank, port, script, [str(RECIPE), *argv] if shards is not None else argv)
        with open(log, "ab") as handle:
            proc = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        machines.append(Machine(rank, proc, log, cwd))
    return machines


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (torchrun starts each worker in a session of its own: a process-group kill
    would miss it)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL a launcher and everything it started, at once (as losing its machine would)."""
    for member in process_tree(pid):
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def finish(machines: list[Machine], timeout: float = RUN_TIMEOUT) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    try:
        for m in machines:
            codes.append(m.proc.wait(timeout=max(1.0, deadline - time.monotonic())))
    finally:
        for m in machines:
            if m.proc.poll() is None:
                kill_tree(m.proc.pid)
                m.proc.wait()
    return codes


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


@dataclass
class TwoMachineRun:
    out: Path
    shards: Path
    machines: list[Machine]
    seconds: float


@pytest.fixture(scope="module")
def two_machines(tiny_bert: Path, toy_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> TwoMachineRun:
    """The uninterrupted two-machine run (shards traced)."""
    root = tmp_path_factory.mktemp("multinode")
    out = root / "shared" / "run"  # on storage both machines see, as --output_dir must be
    start = time.perf_counter()
    machines = start_machines(run_flags(tiny_bert, toy_csv, out), root, "ref", shards=root / "shards")
    codes = finish(machines)
    assert codes == [0, 0], "\n".join(m.text()[-3000:] for m in machines)
    return TwoMachineRun(out, root / "shards", machines, time.perf_counter() - start)


def test_two_machines_over_loopback_train_one_averaged_adapter(two_machines: TwoMachineRun, tiny_bert: Path,
                                                               toy_csv: Path, tmp_path: Path) -> None:
    out = two_machines.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2
    train_size = metrics["train_size"]
    assert train_size == 192 and metrics["train_steps"] == 12 * 6

    # (a) disjoint shards: per epoch each rank trains on half the rows, none shared, together every row once
    shards = {r: [json.loads(line) for line in (two_machines.shards / f"rank{r}.jsonl").read_text().splitlines()]
              for r in (0, 1)}
    assert len(shards[0]) == len(shards[1]) == 12
    for e0, e1 in zip(shards[0], shards[1]):
        assert e0["epoch"] == e1["epoch"]
        rows0 = [i for b in e0["batches"] for i in b]
        rows1 = [i for b in e1["batches"] for i in b]
        assert len(rows0) == len(rows1) == train_size // 2
        assert not set(rows0) & set(rows1)
        assert sorted(rows0 + rows1) == list(range(train_size))

    # (b) averaged gradients: one process accumulating two batches per optimizer step — the two batches the
    # two ranks took at that step (BatchSamplerShard deals batch 2k to rank 0, 2k+1 to rank 1) — lands on the
    # same adapter
    single = tmp_path / "single"
    assert recipe_in_process(run_flags(tiny_bert, toy_csv, single, "--gradient_accumulation_steps", "2")) == 0
    single_metrics = json.loads((single / "metrics.json").read_text())
    assert single_metrics["num_processes"] == 1 and single_metrics["train_steps"] == metrics["train_steps"]
    diff = max_weight_diff(out, single)
    assert diff < 1e-5, diff
    assert metrics["eval_macro_f1"] == pytest.approx(single_metrics["eval_macro_f1"])
    # the comparison has teeth: one process stepping on every batch (no averaging of pairs) differs clearly
    alone = tmp_path / "alone"
    assert recipe_in_process(run_flags(tiny_bert, toy_csv, alone, "--max_steps", "72")) == 0
    assert max_weight_diff(out, alone) > 1e-3

    # (c) only the main machine writes: machine 1's working folder stays empty, the output folder holds one run
    # (checkpoints carry every process's RNG state, random_states_<rank>.pkl, saved by that process)
    machine0, machine1 = two_machines.machines
    assert list(machine1.cwd.iterdir()) == [] and list(machine0.cwd.iterdir()) == []
    visible = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert visible == {"adapter", "checkpoints", "metrics.json", "config.json", "tracking"}  # rank 0 writes all
    for checkpoint in (out / "checkpoints").iterdir():
        assert {p.name for p in checkpoint.iterdir()} >= {"random_states_0.pkl", "random_states_1.pkl"}
    assert "test macro-F1" in machine0.text() and "test macro-F1" not in machine1.text()
    assert error_lines(machine0.text()) == error_lines(machine1.text()) == []

    # (d) the adapter loads and predicts
    import skewtune

    model = skewtune.load_adapter(out / "adapter")
    predictions = model.predict(["what a wonderful great day", "awful terrible service"])
    assert [p["label"] for p in predictions] == ["positive", "negative"]
    assert metrics["eval_macro_f1"] > 0.9


@pytest.mark.slow  # real backbone and data: the loopback test above covers the default run
def test_two_machines_on_real_tweets_with_8bit_minilm(tmp_path: Path) -> None:
    """The issue's setting: the bundled MiniLM in 8-bit on 200 real tweets, one process on each machine."""
    out = tmp_path / "shared" / "run"
    machines = start_machines(["--dataset", "tweets", "--max_train_samples", "200", "--max_eval_samples", "100",
                               "--backbone", "minilm", "--quant", "8bit", "--num_train_epochs", "1",
                               "--per_device_train_batch_size", "16", "--num_threads", "1", "--baselines", "false",
                               "--report_plots", "false", "--output_dir", str(out)], tmp_path, "tweets")
    assert finish(machines) == [0, 0], "\n".join(m.text()[-3000:] for m in machines)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["train_size"] == 200 and metrics["quant"] == "8bit"
    # the packaged random_over sampler balances the 200 rows to 3 × the largest class; 2 processes share the batches
    assert metrics["train_steps"] <= math.ceil(3 * 200 / 16 / 2)
    assert list(machines[1].cwd.iterdir()) == [] and "test macro-F1" not in machines[1].text()
    import skewtune

    model = skewtune.load_adapter(out / "adapter")
    predictions = model.predict(["I love this so much", "worst day ever", "the meeting is at 3pm"])
    assert len(predictions) == 3 and {p["label"] for p in predictions} <= set(metrics["labels"])


@pytest.mark.parametrize("victim", [1, 0])
def test_kill_one_machine_then_rerun_resumes_to_the_same_adapter(victim: int, two_machines: TwoMachineRun,
                                                                 tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    """Machine ``victim`` dies (1: a worker machine; 0: the main one, which hosts the rendezvous and writes)."""
    out = tmp_path / "shared" / "run"
    argv = run_flags(tiny_bert, toy_csv, out)
    machines = start_machines(argv, tmp_path, "first")
    dead, survivor = machines[victim], machines[1 - victim]
    # kill the machine (its launcher and worker together) once step 20 of 72 is checkpointed: mid-epoch
    deadline = time.monotonic() + RUN_TIMEOUT
    while max(complete_steps(out), default=0) < 20:
        assert time.monotonic() < deadline, survivor.text()[-3000:]
        assert machines[0].proc.poll() is None and machines[1].proc.poll() is None, survivor.text()[-3000:]
        time.sleep(0.01)
    kill_tree(dead.proc.pid)
    killed = time.monotonic()
    code = finish([survivor], timeout=60)[0]
    survivor_seconds = time.monotonic() - killed
    dead.proc.wait()
    text = survivor.text()
    assert code != 0, text[-3000:]
    # one clear line, then nothing from the launcher (no ChildFailedError traceback)
    lines = error_lines(text)
    assert len(lines) == 1, text[-3000:]
    assert re.match(rf"error: lost rank {victim} .*\(fix: .*resumes from the last checkpoint", lines[0]), lines[0]
    assert "Traceback" not in text and "ChildFailedError" not in text, text[-3000:]
    assert survivor_seconds < 30, survivor_seconds
    last = max(complete_steps(out))
    assert 20 <= last < 72 and not (out / "adapter").exists()

    # rerun both machines with the same commands: resume from the last checkpoint, finish, nothing lost
    again = start_machines(argv, tmp_path, "again")
    codes = finish(again)
    assert codes == [0, 0], "\n".join(m.text()[-3000:] for m in again)
    assert f"(step {last})" in again[0].text() and "resuming from" in again[0].text()
    assert max_weight_diff(out, two_machines.out) <= WEIGHT_TOL
    ours = json.loads((out / "metrics.json").read_text())
    reference = json.loads((two_machines.out / "metrics.json").read_text())
    assert ours["train_steps"] == reference["train_steps"] == 72
    assert math.isclose(ours["eval_macro_f1"], reference["eval_macro_f1"], abs_tol=1e-9)
    assert [h["train_loss"] for h in ours["history"]] == pytest.approx([h["train_loss"] for h in reference["history"]],
                                                                       rel=1e-6)



def test_a_frozen_machine_is_given_up_on_after_ddp_timeout(tiny_bert: Path, toy_csv: Path, tmp_path: Path) -> None:
    """SIGSTOP keeps machine 1's sockets open (no reset to notice): only the collective timeout ends the wait."""
    out = tmp_path / "shared" / "run"
    machines = start_machines(run_flags(tiny_bert, toy_csv, out, "--ddp_timeout", "8"), tmp_path, "frozen")
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while max(complete_steps(out), default=0) < 8:
            assert time.monotonic() < deadline and machines[0].proc.poll() is None, machines[0].text()[-3000:]
            time.sleep(0.01)
        frozen = process_tree(machines[1].proc.pid)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        code = finish(machines[:1], timeout=90)[0]
        waited = time.monotonic() - stopped
    finally:
        kill_tree(machines[1].proc.pid)
        machines[1].proc.wait()
    text = machines[0].text()
    assert code != 0, text[-3000:]
    lines = error_lines(text)
    assert len(lines) == 1 and lines[0].startswith("error: lost rank 1"), text[-3000:]
    assert "did not answer within --ddp_timeout" in lines[0], lines[0]
    assert 8 <= waited < 60, waited



# ------------------------------------------------------------------------------------------ failure messages
GLOO_RESET = ("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:15520: Connection "
              "reset by peer. This is typically caused by a remote worker hanging or bugs in the application.")


@pytest.fixture
def fake_group(monkeypatch: pytest.MonkeyPatch):
    """A two-process group as torch.distributed reports it (this is rank 0)."""
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a: 2)
    monkeypatch.setattr(dist, "get_rank", lambda *a: 0)
    return dist


def test_distributed_failures_become_one_line_naming_the_lost_peer(fake_group) -> None:
    from skewtune.errors import OutputError, TrainingError
    from skewtune.training.engine import _distributed_errors, distributed_failure

    error = distributed_failure(RuntimeError(GLOO_RESET))
    assert isinstance(error, TrainingError)
    line = error.one_line()
    assert line.startswith("error: lost rank 1 at 127.0.0.1:15520: it stopped during a collective of this 2-process")
    assert "Connection reset by peer" in line and "pair.cc" not in line and "\n" not in line
    assert "resumes from the last checkpoint" in line
    timeout = distributed_failure(fake_group.DistBackendError("Timed out waiting 8000ms for recv operation"))
    assert timeout is not None and "did not answer within --ddp_timeout" in timeout.message
    assert "raise --ddp_timeout" in timeout.hint
    assert distributed_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    assert distributed_failure(ValueError(GLOO_RESET)) is None
    # a checkpoint save wraps a failed barrier as a disk error: the lost peer is named instead
    with pytest.raises(TrainingError, match="lost rank 1"), _distributed_errors():
        raise OutputError("could not write checkpoint step-4", "free disk space") from RuntimeError(GLOO_RESET)
    with pytest.raises(OutputError, match="disk"), _distributed_errors():
        raise OutputError("disk full", "free disk space") from OSError(28, "No space left on device")


def test_the_entry_points_guard_names_a_peer_lost_after_training(fake_group, capsys) -> None:
    from skewtune.cli.main import run_guarded

    def final_evaluation() -> int:  # e.g. the test split's gather after the loop
        raise RuntimeError(GLOO_RESET)

    assert run_guarded(final_evaluation) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: lost rank 1 at 127.0.0.1:15520"), err


def test_no_process_group_no_distributed_error() -> None:
    from skewtune.training.engine import distributed_failure

    assert distributed_failure(RuntimeError(GLOO_RESET)) is None  # single process: not a lost peer


def test_ddp_timeout_is_a_flag_with_a_bounded_value(tmp_path: Path) -> None:
    from skewtune.errors import ConfigError
    from skewtune.training.config import TrainConfig
    from skewtune.training.engine import build_accelerator

    assert TrainConfig().ddp_timeout == 1800
    with pytest.raises(ConfigError, match="--ddp_timeout must be ≥ 1"):
        TrainConfig(ddp_timeout=0).validate()
    with pytest.raises(ConfigError, match="--ddp_timeout must be > 0"):
        build_accelerator(ddp_timeout=-1)


# ------------------------------------------------------------------------------------------ cluster templates
LAUNCH = REPO / "recipes" / "launch"
SBATCH = LAUNCH / "slurm_multinode.sbatch"


def stub_bin(folder: Path) -> Path:
    """Fake ``scontrol`` (expands gpu[07-08]), and ``torchrun``/``accelerate``/``srun`` that print their argv."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scontrol").write_text('#!/bin/bash\n[ "$1 $2" = "show hostnames" ] || exit 1\n'
                                     '[ "$3" = "gpu[07-08]" ] && printf "gpu07\\ngpu08\\n" || echo "$3"\n')
    for name in ("torchrun", "accelerate", "srun"):
        (folder / name).write_text(f'#!/bin/bash\necho {name} "$@"\n')
    for path in folder.iterdir():
        path.chmod(0o755)
    return folder


def slurm_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "DRY_RUN", "LAUNCHER", "SKEWTUNE_", "OUTPUT_DIR", "RECIPE", "PROCS_PER_NODE", "MASTER_", "DDP_TIMEOUT"))}
    env.update(PATH=f"{stub_bin(tmp_path / 'bin')}:{env['PATH']}", SLURM_NNODES="2", SLURM_JOB_ID="77",
               SLURM_JOB_NODELIST="gpu[07-08]", SLURM_GPUS_ON_NODE="4", SKEWTUNE_DIR="/shared/skewtune",
               RECIPE_ARGS="--dataset tweets --max_train_samples 200")
    env.update(extra)
    return env


def test_sbatch_script_parses_and_builds_each_nodes_launch_line(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True).returncode == 0
    header = SBATCH.read_text()
    assert "#SBATCH --nodes=2" in header and "#SBATCH --ntasks-per-node=1" in header

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(SBATCH)], capture_output=True, text=True, timeout=30,
                              env=slurm_env(tmp_path, **extra), cwd=tmp_path)

    tail = ("recipes/lora_sentiment.py --output_dir /shared/skewtune/outputs/slurm-77 --ddp_timeout 600 "
            "--dataset tweets --max_train_samples 200")
    dry = run(DRY_RUN="1")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "srun --nodes 2 --ntasks-per-node 1 --kill-on-bad-exit=1 env SKEWTUNE_SLURM_NODE=1 bash "
        "/shared/skewtune/recipes/launch/slurm_multinode.sbatch",
        *(f"node {n}: torchrun --nnodes 2 --nproc-per-node 4 --node-rank {n} --rdzv-backend static "
          f"--master-addr gpu07 --master-port 29518 {tail}" for n in (0, 1)),
    ]
    # the per-node step (what srun runs on node 1) executes that node's line
    node = run(SKEWTUNE_SLURM_NODE="1", SLURM_NODEID="1", MASTER_ADDR="gpu07", SKEWTUNE_DIR=str(tmp_path))
    assert node.returncode == 0, node.stderr
    assert node.stdout.strip() == (f"torchrun --nnodes 2 --nproc-per-node 4 --node-rank 1 --rdzv-backend static "
                                   f"--master-addr gpu07 --master-port 29518 {tail}").replace(
        "/shared/skewtune/outputs", f"{tmp_path}/outputs")
    # the batch step hands every node to srun (the stub prints it)
    batch = run(SKEWTUNE_DIR=str(tmp_path))
    assert batch.returncode == 0 and batch.stdout.startswith("srun --nodes 2 --ntasks-per-node 1"), batch.stderr
    # CPU-only nodes: one process per node
    cpu = run(DRY_RUN="1", PROCS_PER_NODE="1", OUTPUT_DIR="/shared/runs/a b", DDP_TIMEOUT="120")
    assert cpu.stdout.splitlines()[2].startswith("node 1: torchrun --nnodes 2 --nproc-per-node 1 --node-rank 1 ")
    assert "--output_dir /shared/runs/a b --ddp_timeout 120" in cpu.stdout
    # accelerate launch: the multinode config, processes over all machines
    acc = run(DRY_RUN="1", LAUNCHER="accelerate", MASTER_PORT="30001")
    assert ("node 1: accelerate launch --config_file recipes/configs/accelerate_multinode.yaml --num_machines 2 "
            f"--num_processes 8 --machine_rank 1 --main_process_ip gpu07 --main_process_port 30001 {tail}"
            ) in acc.stdout.splitlines()
    bad = run(DRY_RUN="1", LAUNCHER="mpirun")
    assert bad.returncode != 0 and bad.stderr.strip().startswith("error: LAUNCHER must be torchrun or accelerate")
    outside = subprocess.run(["bash", str(SBATCH)], capture_output=True, text=True, timeout=30,
                             env={k: v for k, v in slurm_env(tmp_path).items() if k != "SLURM_JOB_NODELIST"})
    assert outside.returncode != 0 and "SLURM_JOB_NODELIST is not set" in outside.stderr


def test_pytorchjob_manifest_has_what_the_operator_needs(tmp_path: Path) -> None:
    import yaml

    docs = list(yaml.safe_load_all((LAUNCH / "pytorchjob.yaml").read_text()))
    assert len(docs) == 1
    job = docs[0]
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob" and job["metadata"]["name"]
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert set(specs) == {"Master", "Worker"} and specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] >= 1
    assert str(job["spec"]["nprocPerNode"]).isdigit()
    stub_bin(tmp_path / "bin")
    lines = []
    for role, spec in specs.items():
        assert spec["restartPolicy"] in ("OnFailure", "ExitCode", "Always", "Never")
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == "pytorch" and container["image"], role  # the operator's required name
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
        assert mounts.keys() == claims.keys() == {"shared"}
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["OUTPUT_DIR"].startswith(mounts["shared"] + "/")  # outputs on the shared volume
        # run the container's command as the operator would start node 1, with a stub torchrun
        pet = {"PET_NNODES": "2", "PET_NODE_RANK": "1", "PET_NPROC_PER_NODE": "1", "PET_MASTER_ADDR": "skewtune-lora-master-0",
               "PET_MASTER_PORT": "23456", "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
        proc = subprocess.run([*container["command"], *container["args"]], capture_output=True, text=True,
                              timeout=30, env={**pet, **env})
        assert proc.returncode == 0, proc.stderr
        lines.append(proc.stdout.strip())
    assert lines[0] == lines[1] == (
        "torchrun --nnodes 2 --nproc-per-node 1 --node-rank 1 --rdzv-backend static --master-addr "
        "skewtune-lora-master-0 --master-port 23456 recipes/lora_sentiment.py --output_dir /shared/runs/skewtune-lora "
        "--ddp_timeout 600 --dataset tweets --checkpoint_every_steps 200")
    assert (REPO / "recipes" / "lora_sentiment.py").is_file()
