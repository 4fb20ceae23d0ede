"""Push and pull through a real S3 API (moto's server on loopback): sizes, times, objects.

    .venv/bin/python bench/s3_roundtrip.py                     # shaped like this checkout's dvc.lock
    .venv/bin/python bench/s3_roundtrip.py --scale 0.1 --jobs 4

Needs ``make moto``. A scratch DVC project gets one stage whose outputs have the shape of every output
``dvc.lock`` records (same number of folders, files per folder and bytes; seeded random content, so
nothing compresses or deduplicates), reproduced once. Then, as the team setup in the README does:
``dvc push --run-cache`` to the S3 remote; the local cache and the outputs deleted; ``dvc pull
--run-cache``; every file compared byte for byte; a second ``dvc push`` (nothing to send). It prints
each step's wall time, the objects and bytes in the bucket, and the objects DVC reports moving.
Speed is measured here, never asserted in a test; exits 1 if a pulled file differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.s3_server import bucket_objects, clean_env, moto_s3  # noqa: E402

DVC = [sys.executable, "-m", "dvc"]
PUSHED, FETCHED, NOOP = r"\d+ files? pushed", r"\d+ files? fetched.*", r"(\d+ files? pushed|Everything is up to date\.)"
GEN = """
import json, random, sys
from pathlib import Path
for i, (nfiles, size) in enumerate(json.load(open("shape.json"))):
    out = Path(f"data/out{i:02d}")
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(i)
    for j in range(nfiles):
        n = size // nfiles + (1 if j < size % nfiles else 0)
        (out / f"part{j:04d}.bin").write_bytes(rng.randbytes(n))
"""


def shape(lock: Path, scale: float) -> list[tuple[int, int]]:
    """(files, bytes) of every output in ``lock``, bytes scaled."""
    stages = yaml.safe_load(lock.read_text(encoding="utf-8"))["stages"]
    outs = [o for st in stages.values() for o in st.get("outs", [])]
    return [(int(o.get("nfiles", 1)), max(1, int(o.get("size", 0) * scale))) for o in outs]


def sh(args: list, cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return time.monotonic() - start, proc.stdout + proc.stderr


def digests(root: Path) -> dict[str, str]:
    """sha256 of every output file (data/.gitignore is git's, not an output)."""
    files = [f for f in sorted(root.rglob("*")) if f.is_file() and f.name != ".gitignore"]
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lock", type=Path, default=REPO / "dvc.lock", help="dvc.lock whose outputs give the shape")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every output's size by this")
    ap.add_argument("--jobs", type=int, default=None, help="dvc push/pull -j (DVC's default: 4 x cores)")
    args = ap.parse_args()
    outs = shape(args.lock, args.scale)
    files, size = sum(n for n, _ in outs), sum(s for _, s in outs)
    print(f"shape of {args.lock} x {args.scale}: {len(outs)} outputs, {files} files, {size / 1e6:.1f} MB")
    jobs = ["-j", str(args.jobs)] if args.jobs else []
    with tempfile.TemporaryDirectory(prefix="s3-roundtrip-") as tmp_name:
        tmp = Path(tmp_name)
        with moto_s3(tmp) as s3:
            env = clean_env(DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@example.invalid", **s3.env())
            env.update(GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@example.invalid")
            repo = tmp / "repo"
            repo.mkdir()
            (repo / "gen.py").write_text(GEN, encoding="utf-8")
            (repo / "shape.json").write_text(json.dumps(outs), encoding="utf-8")
            stage = {
                "cmd": f"{sys.executable} gen.py",
                "deps": ["gen.py", "shape.json"],
                "outs": [f"data/out{i:02d}" for i in range(len(outs))],
            }
            (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"gen": stage}}), encoding="utf-8")
            for cmd in (["git", "init", "-q"], [*DVC, "init", "-q"]):
                sh(cmd, repo, env)
            t_repro, _ = sh([*DVC, "repro", "-q"], repo, env)
            sh([*DVC, "remote", "add", "-d", "storage", f"s3://{s3.bucket}/cache"], repo, env)
            sh([*DVC, "remote", "modify", "storage", "endpointurl", s3.endpoint], repo, env)
            before = digests(repo / "data")

            t_push, out_push = sh([*DVC, "push", "--run-cache", *jobs], repo, env)
            objects = bucket_objects(s3)
            shutil.rmtree(repo / ".dvc" / "cache")
            shutil.rmtree(repo / "data")
            t_pull, out_pull = sh([*DVC, "pull", "--run-cache", *jobs], repo, env)
            same = digests(repo / "data") == before
            t_noop, out_noop = sh([*DVC, "push", "--run-cache", *jobs], repo, env)

    def said(text: str, pattern: str) -> str:
        m = re.search(pattern, text)
        return m.group(0) if m else text.strip().splitlines()[-1]

    runs = sum(k.startswith("cache/runs/") for k in objects)
    dirs = sum(k.endswith(".dir") for k in objects)
    print(f"dvc repro (write the outputs): {t_repro:.1f} s")
    print(
        f"bucket after push: {len(objects)} objects ({dirs} .dir listings, {runs} run-cache entries), {sum(objects.values()) / 1e6:.1f} MB"
    )
    print(f"dvc push --run-cache: {t_push:.1f} s ({size / 1e6 / t_push:.1f} MB/s); dvc said: {said(out_push, PUSHED)}")
    print(f"dvc pull --run-cache (empty cache): {t_pull:.1f} s ({size / 1e6 / t_pull:.1f} MB/s); dvc said: {said(out_pull, FETCHED)}")
    print(f"dvc push again: {t_noop:.1f} s; dvc said: {said(out_noop, NOOP)}")
    print(f"pulled files byte-identical: {same} ({len(before)} files)")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
