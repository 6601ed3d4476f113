"""A deltagate cluster on loopback for the Python tests, as `deltagate up` builds one: N real
`deltagate worker` processes (built-in tiny model) and a real `deltagate front` routing to them, each with
its own /metrics port. Also compiles the gRPC stubs from our .proto files (Debian's protoc and
grpc_python_plugin) into the build directory at test time.

Runs under Debian's /usr/bin/python3 with python3-grpcio and python3-protobuf (deploy/install-deps.sh)."""
import os
import shutil
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def compile_stubs(proto_dir, out_dir):
    """Generates *_pb2.py / *_pb2_grpc.py for deltagate.v1, deltagate.worker.v1 and grpc.health.v1 and puts
    out_dir on sys.path.
    Debian's protoc (3.21) is used rather than python3-grpc-tools' bundled one (3.5), which rejects the
    proto3 `optional` fields of inference.proto."""
    protoc, plugin = shutil.which("protoc"), shutil.which("grpc_python_plugin")
    if not protoc or not plugin:
        raise SystemExit("protoc and grpc_python_plugin are needed (Debian protobuf-compiler, protobuf-compiler-grpc)")
    os.makedirs(out_dir, exist_ok=True)
    # health.proto is compiled from this folder's root, so its module is `health_pb2` (package
    # grpc.health.v1 on the wire): a generated `grpc/` folder would shadow grpcio's own `grpc` package.
    subprocess.run([protoc, f"-I{proto_dir}", f"-I{HERE}", f"--python_out={out_dir}",
                    f"--grpc_python_out={out_dir}", f"--plugin=protoc-gen-grpc_python={plugin}",
                    "deltagate/v1/inference.proto", "deltagate/worker/v1/worker.proto", "health.proto"], check=True)
    sys.path.insert(0, out_dir)


def parse_args():
    """The arguments every test here takes (tests/cmake/python_grpc.cmake); the rest go to unittest."""
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--deltagate", required=True)
    p.add_argument("--proto-dir", required=True)
    p.add_argument("--work", required=True)
    args, rest = p.parse_known_args()
    return args, [sys.argv[0]] + rest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Starts the processes on enter, SIGTERMs them (and waits) on exit. Logs go to work_dir."""

    def __init__(self, deltagate, work_dir, workers=2, front_args=(), worker_args=None, worker_token=None):
        """worker_args: a list of extra flags per worker (None: none). worker_token: the workers require it
        (--auth-token-file) and the front sends it (--worker-token-file), through a file in work_dir."""
        self.deltagate, self.work_dir, self.n, self.front_args = deltagate, work_dir, workers, list(front_args)
        self.worker_token = worker_token
        self.worker_args = worker_args or [[] for _ in range(workers)]
        self.procs, self.logs = [], []
        self.worker_addrs, self.worker_metrics = [], []

    def _spawn(self, name, argv):
        log = open(os.path.join(self.work_dir, name + ".log"), "w")
        self.logs.append(log)
        self.procs.append((name, subprocess.Popen([self.deltagate] + argv, stdout=log, stderr=subprocess.STDOUT)))

    def __enter__(self):
        os.makedirs(self.work_dir, exist_ok=True)
        worker_auth, front_auth = [], []
        if self.worker_token is not None:
            token_file = os.path.join(self.work_dir, "worker-token")
            with open(os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write(self.worker_token + "\n")
            worker_auth, front_auth = ["--auth-token-file", token_file], ["--worker-token-file", token_file]
        for i in range(self.n):
            addr, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
            self._spawn(f"worker{i}", ["worker", "--listen", addr, "--metrics-listen", metrics] + worker_auth +
                        self.worker_args[i])
            self.worker_addrs.append(addr)
            self.worker_metrics.append(metrics)
        self.front = f"127.0.0.1:{free_port()}"
        self.front_metrics = f"127.0.0.1:{free_port()}"
        self._spawn("front", ["front", "--workers", ",".join(self.worker_addrs), "--listen", self.front,
                              "--metrics-listen", self.front_metrics] + front_auth + self.front_args)
        return self

    def wait_ready(self, health_stub_factory, timeout_s=120):
        """Until the front's grpc.health.v1 says SERVING and ListModels counts every worker healthy. A process
        that exits meanwhile fails at once with its log."""
        import grpc
        import health_pb2
        from deltagate.v1 import inference_pb2, inference_pb2_grpc
        channel = grpc.insecure_channel(self.front)
        health, inference = health_stub_factory(channel), inference_pb2_grpc.InferenceStub(channel)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.check_alive()
            try:
                if health.Check(health_pb2.HealthCheckRequest(service="deltagate.v1.Inference"),
                                timeout=5).status == health_pb2.HealthCheckResponse.SERVING:
                    m = inference.ListModels(inference_pb2.ListModelsRequest(), timeout=5).models[0]
                    if m.workers_healthy == self.n:
                        channel.close()
                        return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
        channel.close()
        raise AssertionError(f"cluster not ready after {timeout_s} s:\n" + self.read_logs())

    def check_alive(self):
        for name, p in self.procs:
            if p.poll() is not None:
                raise AssertionError(f"{name} exited with {p.returncode}:\n" + self.read_logs())

    def read_logs(self):
        out = []
        for log in self.logs:
            log.flush()
            with open(log.name) as f:
                out.append(f"--- {os.path.basename(log.name)}\n{f.read()[-4000:]}")
        return "\n".join(out)

    def __exit__(self, *exc):
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for _, p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in self.logs:
            log.close()
        return False
