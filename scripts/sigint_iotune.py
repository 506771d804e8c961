#!/usr/bin/env python3
"""SIGINT iotune at random moments, N times (4 at once); count exit statuses and "Exception ignored".

    python scripts/sigint_iotune.py [N=100] [SOURCE_DIR=repo]

SOURCE_DIR is where ``tools/iotune.py`` is taken from (e.g. an older checkout, to compare).
"""
import concurrent.futures as cf
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one(i: int, src: str) -> tuple[int, bool]:
    rng = random.Random(1000 + i)
    (REPO / ".scratch").mkdir(exist_ok=True)
    d = tempfile.mkdtemp(dir=REPO / ".scratch", prefix="sigint-")
    try:
        p = subprocess.Popen([sys.executable, "-m", "ioengine.tools.iotune", "--evaluation-directory", d,
                              "--duration", "2", "--no-progress", "--properties-file", d + "/p.yaml"], cwd=src,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.3, 3.0))
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    if "Exception ignored" in err:
        print(err[-1500:], file=sys.stderr)
    return p.returncode, "Exception ignored" in err


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    src = sys.argv[2] if len(sys.argv) > 2 else str(REPO)
    with cf.ThreadPoolExecutor(4) as ex:
        res = list(ex.map(lambda i: one(i, src), range(n)))
    codes: dict[int, int] = {}
    for rc, _ in res:
        codes[rc] = codes.get(rc, 0) + 1
    print(f"runs {n}; exit statuses {codes}; 'Exception ignored' in {sum(ign for _, ign in res)}")


if __name__ == "__main__":
    main()
