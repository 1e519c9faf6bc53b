#!/usr/bin/env python3
"""Load driver for the example services (examples/serving/README.md has the protocol).

Starts a service, keeps CLIENTS clients predicting before, during and after one unlearning
run on the same model, and checks every answer: no error, no GRADTAU_BUSY, and each
prediction bit-identical to the model before the run or the model after it, never a mix.
Then starts the service again and runs the same unlearning with no load, and checks that
the weights come out identical. Prints throughput and p50/p99 latency per phase and the
unlearning time under load against idle; --json writes them. Python standard library only.

    python3 examples/serving/load_driver.py --service examples/serving/cpp/run.sh
"""

import argparse
import http.client
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import threading
import time

REQUEST_POOL = 64  # distinct requests, each answered many times
FIRST_REQUEST_INDEX = 2000  # t10k images before this are the validation set


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A service process on 127.0.0.1, started and stopped by the driver."""

    def __init__(self, command, extra, start_timeout):
        self.port = free_port()
        argv = shlex.split(command) + ["--port", str(self.port)] + extra
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + start_timeout
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("listening on"):
                # Keep draining stdout so the service never blocks on a full pipe.
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()
                return
        self.proc.kill()
        raise SystemExit(f"{command}: did not print 'listening on' within {start_timeout} s "
                         f"(last line: {line!r}, exit code {self.proc.poll()})")

    def request(self, method, path, body=b"", timeout=600):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body)
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    def stop(self):
        try:
            self.request("POST", "/shutdown", timeout=30)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def request_bodies(batch):
    return [",".join(str(FIRST_REQUEST_INDEX + r * batch + k) for k in range(batch)).encode()
            for r in range(REQUEST_POOL)]


class Clients:
    """CLIENTS threads, each with one keep-alive connection, predicting until stopped."""

    def __init__(self, service, clients, bodies):
        self.service = service
        self.bodies = bodies
        self.stop_flag = threading.Event()
        self.records = []  # (start, end, request id, status, body)
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.loop, args=(c, clients), daemon=True)
                        for c in range(clients)]

    def loop(self, offset, stride):
        conn = http.client.HTTPConnection("127.0.0.1", self.service.port, timeout=60)
        mine = []
        rid = offset
        while not self.stop_flag.is_set():
            rid = (rid + stride) % len(self.bodies)
            start = time.monotonic()
            try:
                conn.request("POST", "/predict", body=self.bodies[rid])
                r = conn.getresponse()
                status, body = r.status, r.read().decode()
            except (OSError, http.client.HTTPException) as e:
                status, body = -1, f"connection error: {e}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.service.port, timeout=60)
            mine.append((start, time.monotonic(), rid, status, body))
        conn.close()
        with self.lock:
            self.records.extend(mine)

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join()


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def phase_stats(records, t0, t1):
    done = [r for r in records if t0 <= r[1] < t1]
    lat = [(r[1] - r[0]) * 1000 for r in done]
    seconds = max(t1 - t0, 1e-9)
    return {"predictions": len(done), "seconds": round(seconds, 3),
            "per_second": round(len(done) / seconds, 1),
            "p50_ms": round(percentile(lat, 0.50), 3), "p99_ms": round(percentile(lat, 0.99), 3)}


def loaded_run(args, bodies):
    svc = Service(args.service, args.service_args, args.start_timeout)
    try:
        clients = Clients(svc, args.clients, bodies)
        t_start = time.monotonic()
        clients.start()
        time.sleep(args.idle)
        t_run = time.monotonic()
        status, body = svc.request("POST", "/unlearn")
        t_done = time.monotonic()
        time.sleep(args.after)
        clients.stop()
        t_end = time.monotonic()
        if status != 200:
            raise SystemExit(f"POST /unlearn under load answered {status}: {body}")
        report = json.loads(body)
        after_direct = {}
        for rid, b in enumerate(bodies):
            s, text = svc.request("POST", "/predict", body=b)
            if s != 200:
                raise SystemExit(f"POST /predict after the run answered {s}: {text}")
            after_direct[rid] = text
        status, weights_hash = svc.request("GET", "/weights_hash")
        if status != 200 or weights_hash.strip() != report["weights_hash"]:
            raise SystemExit(f"GET /weights_hash answered {status} {weights_hash!r}, the run "
                             f"reported {report['weights_hash']!r}")
    finally:
        svc.stop()
    return clients.records, (t_start, t_run, t_done, t_end), report, after_direct


def idle_run(args):
    svc = Service(args.service, args.service_args, args.start_timeout)
    try:
        t = time.monotonic()
        status, body = svc.request("POST", "/unlearn")
        wall = time.monotonic() - t
        if status != 200:
            raise SystemExit(f"POST /unlearn without load answered {status}: {body}")
        report = json.loads(body)
        report["wall"] = wall
        return report
    finally:
        svc.stop()


def judge(records, times, after_direct):
    """Sorts every answer into before / after / torn, and counts errors and BUSY."""
    t_start, t_run, t_done, t_end = times
    failures = []
    errors = [r for r in records if r[3] not in (200, 503)]
    busy = [r for r in records if r[3] == 503 and "GRADTAU_BUSY" in r[4]]
    other_503 = [r for r in records if r[3] == 503 and "GRADTAU_BUSY" not in r[4]]
    errors += other_503
    ok = [r for r in records if r[3] == 200]
    before = {}
    for start, end, rid, _, body in ok:
        if end < t_run:  # answered before the run started: the original model
            if before.setdefault(rid, body) != body:
                failures.append(f"request {rid} got two different answers before the run")
    after = after_direct
    torn = 0
    old = new = 0
    for start, end, rid, _, body in ok:
        if body == before.get(rid):
            old += 1
        elif body == after[rid]:
            new += 1
            if end < t_run:
                failures.append(f"request {rid} saw the new model before the run started")
        else:
            torn += 1
        if start > t_done and body != after[rid]:
            failures.append(f"request {rid} saw the old model after the run returned")
    if errors:
        failures.append(f"{len(errors)} errors, e.g. {errors[0][3]} {errors[0][4][:200]!r}")
    if busy:
        failures.append(f"{len(busy)} GRADTAU_BUSY answers")
    if torn:
        failures.append(f"{torn} answers matched neither the model before nor after the run")
    return failures, {"errors": len(errors), "busy": len(busy), "torn": torn,
                      "old_model": old, "new_model": new}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--service", required=True, help="command that starts the service")
    p.add_argument("--service-arg", dest="service_args", action="append", default=[],
                   help="extra argument for the service (repeatable)")
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--batch", type=int, default=1, help="samples per prediction request")
    p.add_argument("--idle", type=float, default=6.0, help="seconds of load before the run")
    p.add_argument("--after", type=float, default=5.0, help="seconds of load after the run")
    p.add_argument("--min-predictions", type=int, default=10000)
    p.add_argument("--start-timeout", type=float, default=600.0)
    p.add_argument("--json", help="write the measurements here")
    args = p.parse_args()

    bodies = request_bodies(args.batch)
    records, times, report, after_direct = loaded_run(args, bodies)
    idle = idle_run(args)
    failures, counts = judge(records, times, after_direct)
    if len(records) < args.min_predictions:
        failures.append(f"only {len(records)} predictions (want ≥ {args.min_predictions}): "
                        f"raise --idle/--after")
    if idle["weights_hash"] != report["weights_hash"]:
        failures.append(f"the unlearned weights differ from an idle run's "
                        f"({report['weights_hash']} vs {idle['weights_hash']})")
    t_start, t_run, t_done, t_end = times
    phases = {"before": phase_stats(records, t_start, t_run),
              "during": phase_stats(records, t_run, t_done),
              "after": phase_stats(records, t_done, t_end)}
    result = {
        "service": args.service, "clients": args.clients, "batch": args.batch,
        "predictions": len(records), **counts, "phases": phases,
        "unlearn_seconds_loaded": report["seconds"], "unlearn_seconds_idle": idle["seconds"],
        "unlearn_steps": report["steps"],
        "throughput_during_over_before": round(
            phases["during"]["per_second"] / max(phases["before"]["per_second"], 1e-9), 3),
        "p99_during_over_before": round(
            phases["during"]["p99_ms"] / max(phases["before"]["p99_ms"], 1e-9), 3),
        "unlearn_loaded_over_idle": round(report["seconds"] / max(idle["seconds"], 1e-9), 3),
        "weights_equal_to_idle_run": idle["weights_hash"] == report["weights_hash"],
        "weights_hash": report["weights_hash"],
    }
    print(f"{args.service}: {len(records)} predictions, {counts['errors']} errors, "
          f"{counts['busy']} busy, {counts['torn']} torn "
          f"({counts['old_model']} from the model before, {counts['new_model']} after)")
    for name, s in phases.items():
        print(f"  {name:6s} {s['predictions']:6d} predictions in {s['seconds']:7.2f} s: "
              f"{s['per_second']:8.1f}/s  p50 {s['p50_ms']:7.2f} ms  p99 {s['p99_ms']:7.2f} ms")
    print(f"  unlearning: {report['steps']} steps, {report['seconds']:.2f} s under load, "
          f"{idle['seconds']:.2f} s idle (×{result['unlearn_loaded_over_idle']}); "
          f"throughput during/before ×{result['throughput_during_over_before']}; "
          f"weights equal to the idle run: {result['weights_equal_to_idle_run']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if failures:
        for f in failures:
            print("FAILED:", f)
        sys.exit(1)
    print("load driver: passed")


if __name__ == "__main__":
    main()
