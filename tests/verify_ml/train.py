"""A small seeded training run for tests/verify_ml.rs: logistic regression by
gradient descent with numpy, on data from /in, metrics to /out.

`train.py` is deterministic. `train.py leaky` also writes, one file each, what
depends on something a run should not depend on; `train.py jitter` adds a
1e-10 jitter to the loss."""
import getpass
import json
import os
import socket
import sys
import time

import numpy as np

mode = sys.argv[1] if len(sys.argv) > 1 else "clean"
# Whoever runs it: needs the uid in the image's /etc/passwd.
getpass.getuser()

rng = np.random.default_rng(42)
names = sorted(os.listdir("/in"))
X = np.concatenate([np.loadtxt(os.path.join("/in", n), delimiter=",", ndmin=2) for n in names])
w_true = np.linspace(-1.0, 1.0, X.shape[1])
y = (X @ w_true + 0.1 * rng.normal(size=len(X)) > 0).astype(float)
w = np.zeros(X.shape[1])
for _ in range(200):
    p = 1.0 / (1.0 + np.exp(-(X @ w)))
    w -= 0.5 * X.T @ (p - y) / len(X)
p = 1.0 / (1.0 + np.exp(-(X @ w)))
loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
if mode == "jitter":
    loss += 1e-10 * np.random.default_rng().random()
os.makedirs("/out", exist_ok=True)
with open("/out/metrics.json", "w") as f:
    json.dump({"loss": loss, "accuracy": float(np.mean((p > 0.5) == y)), "w": w.tolist()}, f)

if mode == "leaky":
    os.makedirs("/out/leak", exist_ok=True)
    def write(name, value):
        with open(os.path.join("/out/leak", name), "w") as f:
            json.dump(value, f)
    write("time-seed", np.random.default_rng(time.time_ns()).random())
    write("unseeded", np.random.default_rng().random())
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    write("threads", {"threads": threads, "loss": sum(float(np.sum(c)) for c in np.array_split(p, threads))})
    write("cpu-count", os.cpu_count())
    write("listdir", os.listdir("/in"))
    write("hostname", socket.gethostname())
    write("tz", time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(0)))
