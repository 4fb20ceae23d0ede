"""train on several processes: ``train.processes: N`` runs one training as N DDP workers.

The stage command stays ``rerank-lab train ...``. Its process -- the launcher -- keeps what the
stage contract owns: the guarded outputs and their temporaries (rerank_lab.stage), the checkpoint
folder and its lock (rerank_lab.checkpoints), the metrics file and the plots. It runs torch's
own launcher -- torchrun, ``torch.distributed.run --standalone --nproc_per_node N -m
rerank_lab.train_ddp <handoff>``, its rendezvous a TCP store on the loopback interface -- and
each worker runs the same training code (``rerank_lab.train._train``); the trainer takes DDP from
the environment torchrun sets: gloo on the CPU, nccl on CUDA, one GPU per worker.

* Only rank 0 writes, and only the model folder (into the path the launcher gave it); it hands
  its metrics and log back through ``<handoff>``, a private temporary folder outside the
  workspace, and the launcher writes plots and metrics once. The other ranks create nothing.
* The dev evaluation runs once per evaluation, on rank 0, with its forward passes shared across
  the ranks (sentence-transformers' distributed evaluation); its values are broadcast, so every
  rank sees the same numbers (the launcher checks it), and a tier-B trial is reported by rank 0
  alone, its prune decision broadcast to all (rerank_lab.hpo_trial).
* ``train.batch_size`` stays the number of lists per optimizer step: each worker takes
  ``batch_size / N`` of them (a multiple of N is required). When the examples do not fill whole
  steps, the first ones are repeated to fill the last (as ``DistributedSampler`` pads), so every
  worker takes as many steps as the others and as a one-process run.
* Seeds: every worker seeds as a one-process run does; the same settings give the same result
  again (tested on CPU with gloo). A run on N processes is not bit-equal to one on one process:
  the gradients are summed in another order (README "Several GPUs").
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from rerank_lab.config import FieldError
from rerank_lab.errors import ConfigError, InputError, RerankLabError

log = logging.getLogger(__name__)

LAUNCHER = "RERANK_LAB_TRAIN_LAUNCHER"  # the launcher's pid, in each worker's environment
RESULT = "result-{rank}.pkl"  # in the handoff folder: what a worker hands back (metrics and log, or a user error)


def world_size() -> int:
    """The number of workers this process belongs to (torchrun's ``WORLD_SIZE``); 1 outside a launch."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This worker's rank (torchrun's ``RANK``); 0 outside a launch."""
    return int(os.environ.get("RANK", "0"))


def local_device(device: str) -> str:
    """The device a worker trains on: its own GPU (``cuda:<LOCAL_RANK>``) under a launch, else ``device``."""
    if device == "cuda" and world_size() > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def available(device: str) -> tuple[int, str]:
    """How many workers this machine can run for ``device``, and what they are counted in."""
    if device == "cuda":
        import torch

        return torch.cuda.device_count(), "visible GPUs"
    if device == "mps":
        return 1, "MPS devices (DDP needs CUDA GPUs or the CPU)"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores, "CPU cores"


def not_launched() -> None:
    """Refuse a stage run started by torchrun or ``accelerate launch``: each copy would write the outputs."""
    if world_size() > 1:
        raise ConfigError(
            f"rerank-lab train was started as one of {world_size()} distributed workers (WORLD_SIZE is set)",
            fix="run it as a plain command and set train.processes: it launches its own workers",
        )


def check_processes(processes: int, device: str) -> None:
    """Refuse more workers than the machine has GPUs (on CUDA) or cores (on the CPU), before any work."""
    count, what = available(device)
    if processes > count:
        raise FieldError(
            ("processes",),
            f"asks for more processes than this machine has {what} ({count})",
            processes,
            fix=f"set train.processes to at most {count}",
            where="train",
        )


def pad_examples(examples: Any, batch_size: int) -> Any:
    """``examples`` (a ``datasets.Dataset``) with its first rows repeated up to a whole number of
    steps of ``batch_size`` rows, so the N workers' shares of every step, the last included, are
    equal (a worker with fewer batches than the others would wait for them forever).

    >>> import datasets
    >>> list(pad_examples(datasets.Dataset.from_dict({"x": [0, 1, 2, 3, 4, 5]}), 4)["x"])
    [0, 1, 2, 3, 4, 5, 0, 1]
    """
    missing = -len(examples) % batch_size
    if not missing:
        return examples
    import datasets

    log.info("repeating the first %d of %d examples to fill the last step of %d", missing, len(examples), batch_size)
    return datasets.concatenate_datasets([examples, examples.select(range(missing))])


def one_forward_per_step(loss: Any) -> None:
    """Make the list losses score a worker's whole batch in one forward pass (``mini_batch_size`` -1).

    They score a batch in chunks by default, one forward pass each; DDP's gradient hooks allow a
    single forward pass per backward pass ("marked ready twice" otherwise). The cached MNRL loss
    keeps its chunks: it replays them itself, in step with DDP.
    """
    for module in loss.modules():
        if hasattr(module, "mini_batch_size") and "Cached" not in type(module).__name__:
            module.mini_batch_size = -1  # <= 0: the whole batch at once (0 would read as "unset")


def for_workers(examples: Any, loss: Any, batch_size: int) -> Any:
    """Under a launch: the examples padded to whole steps (:func:`pad_examples`) and the loss set to
    one forward pass per step (:func:`one_forward_per_step`); the examples unchanged otherwise."""
    if world_size() == 1:
        return examples
    one_forward_per_step(loss)
    return pad_examples(examples, batch_size)


def trainer_arguments(batch_size: int, device: str) -> dict[str, Any]:
    """The trainer's arguments that depend on the launch: ``batch_size`` (lists per step) split
    evenly across the processes, and DDP's settings.

    >>> trainer_arguments(8, "cpu")
    {'per_device_train_batch_size': 8}
    """
    n = world_size()
    args: dict[str, Any] = {"per_device_train_batch_size": batch_size // n}
    if n > 1:
        args["use_cpu"] = device == "cpu"  # what makes accelerate run DDP over gloo on CPU processes
        args["dataloader_drop_last"] = True  # drops nothing (pad_examples filled the last step); sentence-transformers sets it anyway
        # every parameter of a cross-encoder takes part in its forward pass; DDP's search for unused
        # ones misses the head behind sentence-transformers' output dict, then fails ("marked ready twice")
        args["ddp_find_unused_parameters"] = False
    return args


def evaluate_once(evaluator: Any, model: Any) -> dict[str, float]:
    """The dev evaluation run once: on rank 0, its inference shared by the ranks; ``{}`` elsewhere."""
    if world_size() == 1:
        return evaluator(model)
    try:
        from sentence_transformers.util.distributed import distributed_evaluation
    except ImportError:  # an older sentence-transformers: rank 0 alone
        return evaluator(model) if rank() == 0 else {}
    with distributed_evaluation(model) as here:
        return evaluator(model) if here else {}


# --- the launcher ------------------------------------------------------------------------------


def launch(processes: int, job: dict[str, Any]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Run ``rerank_lab.train._train(**job)`` on ``processes`` workers; returns rank 0's metrics and log.

    A user error in a worker (bad data, a model that does not load) comes back as that error, one
    line; the workers' own output goes to this process's stdout and stderr as it comes.
    """
    from rerank_lab.models import best_device

    env = {LAUNCHER: str(os.getpid())}
    if best_device() == "cpu":  # share the cores out (torchrun would give each worker one thread)
        env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", str(max(1, available("cpu")[0] // processes)))
    with tempfile.TemporaryDirectory(prefix="rerank-lab-train-") as handoff:
        folder = Path(handoff)
        (folder / "job.pkl").write_bytes(pickle.dumps(job))
        failed = _torchrun(processes, folder, env)
        results = {r: pickle.loads(f.read_bytes()) for r in range(processes) if (f := folder / RESULT.format(rank=r)).is_file()}
    errors = [res["error"] for res in results.values() if "error" in res]
    if errors:
        kind, message = errors[0]
        raise next((c for c in (InputError, ConfigError) if kind == c.__name__), RerankLabError)(message)
    if failed or 0 not in results:
        raise RuntimeError(f"train: the worker processes failed ({failed or 'rank 0 handed nothing back'}); their output is above")
    _check_agree(results)
    return results[0]["metrics"], results[0]["history"]


def _torchrun(processes: int, handoff: Path, env: dict[str, str]) -> str | None:
    """``torchrun --standalone --nproc_per_node N -m rerank_lab.train_ddp <handoff>``, run in this
    process through torch's own parser and launcher, so that a failed worker raises here instead of
    printing torchrun's report; returns what failed (rank, exit status), or None.

    ``--standalone``: a one-machine rendezvous on a free loopback port; ``--max_restarts=0``: a
    failure is final. The launcher's signal handlers, logging and environment are put back after.
    """
    import signal

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    argv = ["--standalone", "--nnodes=1", f"--nproc_per_node={processes}", "--max_restarts=0", "-m", "rerank_lab.train_ddp", str(handoff)]
    log.info("training on %d processes: torchrun %s", processes, " ".join(argv))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)}
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", *env)}
    disabled = logging.root.manager.disable
    logging.disable(logging.ERROR)  # the agent's report of a failed worker: the worker says it better
    os.environ.update(env)
    try:
        run(parse_args(argv))
    except ChildFailedError as exc:
        return ", ".join(f"rank {r}: exit status {f.exitcode}" for r, f in sorted(exc.failures.items()))
    except SignalException as exc:  # the workers are stopped; this process ends as the signal asked
        if exc.sigval == signal.SIGINT:
            raise KeyboardInterrupt from None
        raise SystemExit(128 + int(exc.sigval)) from None
    finally:
        logging.disable(disabled)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return None


def _check_agree(results: dict[int, dict[str, Any]]) -> None:
    """Every rank saw the dev values and the step count rank 0 saw (the trainer broadcasts them)."""
    from rerank_lab.train import DEV_NAME

    def seen(res: dict[str, Any]) -> list:  # the values, not the timings (eval_runtime ...)
        return [(h["step"], sorted((k, v) for k, v in h.items() if k.startswith(f"eval_{DEV_NAME}_"))) for h in res["history"]]

    for r, res in results.items():
        if seen(res) != seen(results[0]) or res["steps"] != results[0]["steps"]:
            raise RuntimeError(f"train: rank {r}'s dev evaluations or step count differ from rank 0's (a bug: the trainer broadcasts them)")


# --- a worker ----------------------------------------------------------------------------------


def _work(handoff: Path) -> None:
    from rerank_lab.train import _train

    job = pickle.loads((handoff / "job.pkl").read_bytes())
    out = handoff / RESULT.format(rank=rank())
    try:
        metrics, history = _train(**job)
    except RerankLabError as exc:  # the user's to fix: the launcher raises it, one line
        kind = next((c.__name__ for c in (InputError, ConfigError) if isinstance(exc, c)), "RerankLabError")
        out.write_bytes(pickle.dumps({"error": (kind, str(exc))}))
        sys.exit(2)
    out.write_bytes(pickle.dumps({"metrics": metrics, "history": history, "steps": metrics.get("steps")}))


def _die_with_launcher() -> None:
    """On Linux, have the kernel kill this worker when the launcher (its parent) dies, even by
    SIGKILL: an orphan would go on writing into the checkpoint folder the next run resumes from."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    if str(os.getppid()) != os.environ.get(LAUNCHER, str(os.getppid())):  # it died before that took hold
        os._exit(1)


def main() -> None:
    """A worker: ``python -m rerank_lab.train_ddp <handoff folder>`` under torchrun."""
    _die_with_launcher()
    logging.basicConfig(
        level=logging.INFO if rank() == 0 else logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*broadcast_buffers.* is deprecated", category=FutureWarning)  # accelerate's, not ours
    _work(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
