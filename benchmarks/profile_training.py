"""Where a training job's time goes, against a PyTorch reference of the same recipe.

    python benchmarks/profile_training.py [--epochs 60] [--repeats 3] [--logs DIR]

On the bundled digits (1,293 training images after the validation split) with the
default CNN and pretraining recipe (batch 64, SGD momentum 0.9, coupled weight decay
5e-4, 10% linear warm-up then cosine, an evaluation of the test split every epoch),
one process measures, in this order and interleaved over --repeats rounds:

- import: a fresh interpreter importing jax, flax, optax and gex_core's training code;
- jax cold: `gex_core.training.recipes.pretrain` with the persistent compilation
  cache off and nothing compiled (what a job pays without the cache), its seconds
  of tracing, lowering and compiling counted by JAX's monitoring events;
- jax compute: jax cold less its compilation (each call builds its own jitted
  functions, so a second call in one process would compile again);
- jax warm: the same call in a fresh process whose persistent compilation cache
  already holds every program (filled by a process before it), as the workflow's
  later pretraining and retraining jobs run it; it still traces and lowers;
- jax steps: the compiled train step alone, called once per step of the recipe on
  the same batches (the stepping floor);
- torch: the same CNN (PyTorch default init), recipe and per-epoch evaluation in
  PyTorch on the same threads (optional: `pip install -e '.[bench]'`).

It prints the median of each and the ratios of jax cold, warm, compute and steps to
torch.
With --logs (a workflow run's logs/ folder) it also splits each rule's job time into
start-up (the process before the job's first line: interpreter and imports),
compilation and the rest, from the jobs' `jax-compile` lines and the run's
benchmarks/ files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# measured without the persistent cache: a cold job compiles, a warm call does not
os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "false")

import jax  # noqa: E402
import jax.monitoring  # noqa: E402
import numpy as np  # noqa: E402

from gex_core.data.datasets import load_digits, with_validation  # noqa: E402
from gex_core.training.batching import batch_index_stream  # noqa: E402
from gex_core.training.devices import data_mesh  # noqa: E402
from gex_core.training.models import make_model  # noqa: E402
from gex_core.training.recipes import pretrain  # noqa: E402
from gex_core.training.seeds import host_rng, jax_key  # noqa: E402
from gex_core.training.steps import make_train_step, sgd, warmup_cosine_schedule  # noqa: E402
from gex_core.workflow.jobenv import COMPILE_EVENTS, COMPILE_REPORT  # noqa: E402

RECIPE = dict(batch_size=64, lr=0.05, weight_decay=5e-4, warmup_ratio=0.1, momentum=0.9)


def digits():
    data = with_validation(load_digits(), 0.1)
    return data.x_train, data.y_train, data.x_test, data.y_test


def import_seconds() -> float:
    code = (
        "import time; t = time.perf_counter(); import jax, flax, optax; "
        "import gex_core.training.recipes; print(time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


COMPILE_SECONDS = [0.0]


def _count_compile(event: str, duration: float, **_) -> None:
    if event in COMPILE_EVENTS:
        COMPILE_SECONDS[0] += duration


def jax_pretrain(data, epochs: int) -> tuple[float, float]:
    """(wall seconds, compile seconds) of one pretrain call."""
    x_train, y_train, x_test, y_test = data
    model = make_model("cnn", 10, x_train.shape[1:])
    COMPILE_SECONDS[0] = 0.0
    start = time.perf_counter()
    result = pretrain(
        model, x_train, y_train, x_test, y_test, seed=0, epochs=epochs,
        num_checkpoints=1, eval_batch_size=512, log=lambda _: None, **RECIPE,
    )  # fmt: skip
    jax.block_until_ready(result.params)
    return time.perf_counter() - start, COMPILE_SECONDS[0]


def jax_pretrain_warm(epochs: int) -> tuple[float, float]:
    """(wall seconds, compile seconds) of `jax_pretrain` in a fresh process with the
    workflow's job settings and a persistent compilation cache that a first process
    filled."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); "
        "from gex_core.workflow.jobenv import start_job; start_job(None); "
        "import jax.monitoring, profile_training as p; "
        "jax.monitoring.register_event_duration_secs_listener(p._count_compile); "
        f"print(json.dumps(p.jax_pretrain(p.digits(), {epochs})))"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {
            **os.environ,
            "JAX_ENABLE_COMPILATION_CACHE": "true",
            "JAX_COMPILATION_CACHE_DIR": cache,
        }
        for _ in range(2):  # the first process fills the cache
            done = subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
    wall, compiled = json.loads(done.stdout.strip().splitlines()[-1])
    return wall, compiled


def jax_steps(data, epochs: int) -> float:
    """Seconds of the compiled train step alone over the recipe's steps (compiled
    before the clock starts)."""
    x_train, y_train, _, _ = data
    model = make_model("cnn", 10, x_train.shape[1:])
    n = len(y_train)
    steps = epochs * math.ceil(n / RECIPE["batch_size"])
    tx = sgd(warmup_cosine_schedule(RECIPE["lr"], steps, 0.1), RECIPE["momentum"])
    mesh = data_mesh()
    step = make_train_step(
        model.train_forward, tx, RECIPE["weight_decay"], "none", mesh
    )
    params = model.init(jax_key(0, "init"))
    opt_state = tx.init(params)
    x_all, y_all = jax.numpy.asarray(x_train), jax.numpy.asarray(y_train)
    batches = batch_index_stream(n, RECIPE["batch_size"], host_rng(0, "pretrain_order"))
    key = jax_key(0, "augment")
    out = step(params, opt_state, x_all, y_all, next(batches), key, 0)
    jax.block_until_ready(out)
    start = time.perf_counter()
    for t in range(steps):
        out = step(out.params, out.opt_state, x_all, y_all, next(batches), key, t)
    jax.block_until_ready(out)
    return time.perf_counter() - start


def torch_pretrain(data, epochs: int) -> float | None:
    """Seconds of the same recipe in PyTorch (None without torch)."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    x_train, y_train, x_test, y_test = data
    to_nchw = lambda x: torch.tensor(np.asarray(x, np.float32)).permute(0, 3, 1, 2)  # noqa: E731
    xs, ys = to_nchw(x_train), torch.tensor(np.asarray(y_train, np.int64))
    xt, yt = to_nchw(x_test), torch.tensor(np.asarray(y_test, np.int64))
    torch.manual_seed(0)
    h, w = x_train.shape[1:3]
    model = torch.nn.Sequential(
        torch.nn.Conv2d(x_train.shape[3], 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(64 * (h // 2) * (w // 2), 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )  # fmt: skip
    n, batch = len(ys), RECIPE["batch_size"]
    per_epoch = math.ceil(n / batch)
    total, warm = epochs * per_epoch, int(0.1 * epochs * per_epoch)
    opt = torch.optim.SGD(
        model.parameters(), lr=RECIPE["lr"], momentum=RECIPE["momentum"],
        weight_decay=RECIPE["weight_decay"],
    )  # fmt: skip

    def rate(t: int) -> float:
        if t < warm:
            return t / warm
        return 0.5 * (1 + math.cos(math.pi * (t - warm) / (total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, rate)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.tensor(rng.permutation(n))
        model.train()
        for b in range(per_epoch):
            idx = order[b * batch : (b + 1) * batch]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xs[idx]), ys[idx]).backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            (model(xt).argmax(1) == yt).float().mean().item()
    return time.perf_counter() - start


def stage_split(logs: Path) -> list[dict]:
    """Per rule: jobs, seconds of start-up, compilation and the rest (sums), from
    each job log's jax-compile line and the run's benchmark file of that job."""
    run = logs.parent
    rows: dict[str, dict] = {}
    for log in sorted(logs.rglob("*.log")):
        record = None
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(f"{COMPILE_REPORT} "):
                record = json.loads(line.split(" ", 1)[1])
        bench = run / "benchmarks" / "out" / log.relative_to(logs).with_suffix(".tsv")
        if record is None or not bench.exists():
            continue
        wall = float(bench.read_text().splitlines()[1].split("\t")[0])
        row = rows.setdefault(
            record["rule"], dict(jobs=0, wall=0.0, start=0.0, compile=0.0)
        )
        row["jobs"] += 1
        row["wall"] += wall
        row["start"] += max(wall - record["job_s"], 0.0)
        row["compile"] += record["compile_s"]
    return [
        {"rule": rule, **row, "rest": row["wall"] - row["start"] - row["compile"]}
        for rule, row in sorted(rows.items(), key=lambda kv: -kv[1]["wall"])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--logs", type=Path, default=None)
    args = parser.parse_args()
    jax.monitoring.register_event_duration_secs_listener(_count_compile)
    data = digits()
    runs: dict[str, list[float]] = {
        k: []
        for k in (
            "import",
            "jax cold",
            "compile",
            "jax compute",
            "jax warm",
            "warm compile",
            "jax steps",
            "torch",
        )  # fmt: skip
    }
    for _ in range(args.repeats):
        jax.clear_caches()
        runs["import"].append(import_seconds())
        cold, compiled = jax_pretrain(data, args.epochs)
        runs["jax cold"].append(cold)
        runs["compile"].append(compiled)
        runs["jax compute"].append(cold - compiled)
        warm, warm_compiled = jax_pretrain_warm(args.epochs)
        runs["jax warm"].append(warm)
        runs["warm compile"].append(warm_compiled)
        runs["jax steps"].append(jax_steps(data, args.epochs))
        seconds = torch_pretrain(data, args.epochs)
        if seconds is not None:
            runs["torch"].append(seconds)
    median = {k: statistics.median(v) for k, v in runs.items() if v}
    print(
        f"digits CNN, {args.epochs} epochs, median of {args.repeats} interleaved rounds"
    )
    for name, seconds in median.items():
        print(f"  {name:12s} {seconds:7.2f} s")
    if "torch" in median:
        for name in ("jax cold", "jax warm", "jax compute", "jax steps"):
            print(f"  {name} / torch = {median[name] / median['torch']:.2f}")
    if args.logs:
        print("\nper rule (sums over jobs): start-up, compilation, the rest")
        for row in stage_split(args.logs):
            print(
                f"  {row['rule']:24s} {row['jobs']:3d} jobs {row['wall']:8.1f} s = "
                f"{row['start']:6.1f} + {row['compile']:6.1f} + {row['rest']:7.1f}"
            )


if __name__ == "__main__":
    main()
