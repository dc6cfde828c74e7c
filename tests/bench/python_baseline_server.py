#!/usr/bin/python3
"""A minimal fedcl.v1.Federation server in Python (grpcio + numpy): the baseline for fedcl-server.

Usage (from the repository root):
    /usr/bin/python3 tests/bench/python_baseline_server.py --values 100000 --clients 32
        [--listen 127.0.0.1:0] [--module model] [--max-message-bytes 4194304]
        [--chunk-bytes 1048576] [--workers 0] [--retry-after-ms 100]

It serves the same traffic as fedcl-server, so that tests/bench/fedcl_submit_load can drive both
(tests/bench/server_compare.py runs the comparison). It is deliberately what a competent Python
developer would write in an afternoon, with the same validation and the same aggregation rule:

  * one module `--module` of D = `--values` float32 values, laid out as one tensor "w" of shape
    [D]; DownloadModule streams it as a serialized ModulePayload in chunks with a CRC-32;
  * Join enrols any client id (auth metadata is ignored: every token is accepted); GetWork answers
    ACTION_TRAIN for the open round, or ACTION_WAIT once the client has submitted in it;
  * SubmitUpdate reads the UpdateHeader, reassembles the chunks into one buffer, checks the
    layout, the size, the CRC-32 and that every value is finite, then folds it with its FedAU
    weight (algorithms.md §1.3, K = ∞; an enrolment at round r starts the interval counter at r)
    into a float64 running sum, counting each (client, round) once;
  * the round closes when `--clients` updates were accepted (the quota): the module moves by
    γ · sum / N (N = enrolled clients, γ = 1), its version becomes the closed round + 1, and the
    next round opens.

The generated Python stubs are produced at start-up into a temporary directory with protoc and
grpc_python_plugin; python3-grpcio, python3-protobuf and python3-numpy are installed with apt-get
if missing. The bound address is printed on stdout as "listening on 127.0.0.1:PORT".
"""
import argparse
import concurrent.futures
import glob
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PROTO_DIR = os.path.join(REPO, "proto")
GRPC_PYTHON_PLUGIN = "/usr/bin/grpc_python_plugin"


def ensure_environment():
    """Installs Debian's python3-grpcio, python3-protobuf and python3-numpy if needed."""
    need = []
    for module, package in (("grpc", "python3-grpcio"), ("google.protobuf", "python3-protobuf"),
                            ("numpy", "python3-numpy")):
        try:
            __import__(module)
        except ImportError:
            need.append(package)
    if need:
        print(f"installing {' '.join(need)} with apt-get ...", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *need], check=True,
                       env=env, stdout=subprocess.DEVNULL)
        os.execv(sys.executable, [sys.executable] + sys.argv)


def generate_stubs(out_dir):
    """Compiles proto/fedcl/v1/*.proto into `out_dir` and returns (federation_pb2, _pb2_grpc)."""
    protos = sorted(glob.glob(os.path.join(PROTO_DIR, "fedcl", "v1", "*.proto")))
    subprocess.run(["protoc", "-I", PROTO_DIR, f"--python_out={out_dir}",
                    f"--grpc_python_out={out_dir}",
                    f"--plugin=protoc-gen-grpc_python={GRPC_PYTHON_PLUGIN}", *protos], check=True)
    sys.path.insert(0, out_dir)
    from fedcl.v1 import federation_pb2, federation_pb2_grpc, tensor_pb2  # noqa: E402
    return federation_pb2, federation_pb2_grpc, tensor_pb2


class FedAuClient:
    """One client's FedAU estimator state, lazy form (algorithms.md §1.3, item 6, K = ∞)."""

    def __init__(self, enrolled_round):
        self.enrolled_round = enrolled_round
        self.last_round = enrolled_round - 1  # the counter starts at the enrolment round
        self.intervals = 0
        self.mean_interval = 0.0
        self.participations = 0

    def weight(self):
        return self.mean_interval if self.intervals > 0 else 1.0

    def participate(self, round_):
        """Returns the weight for `round_`, then records the interval that ends there."""
        weight = self.weight()
        gap = round_ - self.last_round - 1
        self.mean_interval = (self.intervals * self.mean_interval + gap + 1) / (self.intervals + 1)
        self.intervals += 1
        self.last_round = round_
        self.participations += 1
        return weight


def make_servicer(pb, pb_grpc, tpb, np, grpc, args):
    """The Federation servicer over one module of args.values float32 values."""
    dim = args.values
    chunk_bytes = args.chunk_bytes

    class Federation(pb_grpc.FederationServicer):
        def __init__(self):
            self.lock = threading.Lock()
            self.round = 0
            self.version = 0
            rng = np.random.default_rng(1)
            self.module = rng.standard_normal(dim, dtype=np.float32) * np.float32(0.01)
            self.sum = np.zeros(dim, dtype=np.float64)
            self.clients = {}  # client id -> FedAuClient
            self.accepted = {}  # client id -> weight, this round
            self.in_flight = set()

        # ---- helpers ----------------------------------------------------------------------

        def descriptor(self, held_version=None):
            return pb.ModuleDescriptor(name=args.module, version=self.version, role="backbone",
                                       num_values=dim, download=held_version != self.version)

        def server_info(self):
            return pb.ServerInfo(protocol="fedcl.v1", max_message_bytes=args.max_message_bytes,
                                 chunk_bytes=chunk_bytes)

        def close_round_locked(self):
            # x^{t+1} = x^t + γ (1/N) Σ ω Δ, N = enrolled clients.
            n = max(1, len(self.clients))
            self.module += (self.sum / n).astype(np.float32)
            self.sum.fill(0.0)
            self.accepted.clear()
            self.round += 1
            self.version = self.round

        # ---- RPCs -------------------------------------------------------------------------

        def Join(self, request, context):
            with self.lock:
                client = self.clients.get(request.client_id)
                if client is None:
                    client = self.clients[request.client_id] = FedAuClient(self.round)
                return pb.JoinResponse(client_id=request.client_id,
                                       enrolled_round=client.enrolled_round,
                                       server=self.server_info())

        def GetWork(self, request, context):
            held = {m.name: m.version for m in request.held}
            with self.lock:
                if request.client_id not in self.clients:
                    context.abort(grpc.StatusCode.NOT_FOUND, "unknown client: Join first")
                if request.client_id in self.accepted or request.client_id in self.in_flight:
                    return pb.GetWorkResponse(action=pb.GetWorkResponse.ACTION_WAIT,
                                              round=self.round,
                                              retry_after_ms=args.retry_after_ms)
                return pb.GetWorkResponse(
                    action=pb.GetWorkResponse.ACTION_TRAIN, round=self.round,
                    deadline_unix_ms=int(time.time() * 1000) + 600_000,
                    recipe=pb.Recipe(local_steps=5, batch_size=16, learning_rate=0.1,
                                     optimizer="sgd"),
                    modules=[self.descriptor(held.get(args.module))])

        def DownloadBackbone(self, request, context):
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "the baseline has no backbone")

        def DownloadModule(self, request, context):
            with self.lock:
                if request.name != args.module or request.version != self.version:
                    context.abort(grpc.StatusCode.NOT_FOUND,
                                  f"no module {request.name} at version {request.version}")
                values = self.module.tobytes()
                descriptor = self.descriptor()
            tensor = tpb.Tensor(name="w", shape=[dim], dtype=tpb.DTYPE_FLOAT32, data=values,
                                trainable=True)
            payload = pb.ModulePayload(parameters=tpb.ParameterSet(name=args.module,
                                                                   tensors=[tensor]))
            # Field 1 is the descriptor, whatever it is called (C++ reserves `descriptor`).
            getattr(payload, pb.ModulePayload.DESCRIPTOR.fields_by_number[1].name).CopyFrom(
                descriptor)
            data = payload.SerializeToString()
            for offset in range(0, max(1, len(data)), chunk_bytes):
                chunk = pb.Chunk(offset=offset, data=data[offset:offset + chunk_bytes])
                if offset == 0:
                    chunk.total_bytes = len(data)
                    chunk.crc32 = zlib.crc32(data)
                yield chunk

        def SubmitUpdate(self, request_iterator, context):
            first = next(request_iterator, None)
            if first is None or not first.HasField("header"):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              "the stream must open with a header")
            header = first.header
            client_id, round_ = header.client_id, header.round
            with self.lock:
                duplicate = self.admit_locked(header, context)
                if duplicate:
                    return pb.SubmitUpdateResponse(round=round_, duplicate=True,
                                                   weight=self.accepted[client_id])
                self.in_flight.add(client_id)
            try:
                delta = self.receive_delta(header, request_iterator, context)
                with self.lock:
                    if round_ != self.round:
                        context.abort(grpc.StatusCode.ABORTED, f"round {round_} has closed")
                    weight = self.clients[client_id].participate(round_)
                    # float32 delta scaled and added into the float64 sum.
                    self.sum += delta * weight
                    self.accepted[client_id] = weight
                    if len(self.accepted) >= args.clients:
                        self.close_round_locked()
            finally:
                with self.lock:
                    self.in_flight.discard(client_id)
            return pb.SubmitUpdateResponse(round=round_, duplicate=False, weight=weight)

        def admit_locked(self, header, context):
            """Checks identity, round and layout; True if this (client, round) was accepted."""
            if header.client_id not in self.clients:
                context.abort(grpc.StatusCode.NOT_FOUND, "unknown client: Join first")
            if header.round < self.round:
                context.abort(grpc.StatusCode.ABORTED, f"round {header.round} has closed")
            if header.round > self.round:
                context.abort(grpc.StatusCode.OUT_OF_RANGE, f"round {header.round} is not open")
            if header.client_id in self.accepted:
                return True
            if header.client_id in self.in_flight:
                context.abort(grpc.StatusCode.UNAVAILABLE, "the same update is in flight")
            if len(header.modules) != 1 or header.modules[0].name != args.module:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"expected one delta for "
                              f"module '{args.module}'")
            delta = header.modules[0]
            if delta.base_version != self.version:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"trained from version {delta.base_version}, current is "
                              f"{self.version}")
            tensors = delta.layout.tensors
            if (len(tensors) != 1 or tensors[0].name != "w" or list(tensors[0].shape) != [dim]
                    or tensors[0].dtype != tpb.DTYPE_FLOAT32):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"layout must be one float32 tensor 'w' of shape [{dim}]")
            if header.total_bytes != 4 * dim:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"total_bytes {header.total_bytes}, expected {4 * dim}")
            return False

        def receive_delta(self, header, request_iterator, context):
            """Reassembles the data chunks and returns them as a float32 array."""
            buffer = bytearray(header.total_bytes)
            view = memoryview(buffer)
            size = 0
            for chunk in request_iterator:
                if chunk.WhichOneof("part") != "data":
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a second header")
                n = len(chunk.data)
                if n > chunk_bytes or size + n > len(buffer):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "chunk too large or too many")
                view[size:size + n] = chunk.data
                size += n
            if size != len(buffer):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"received {size} bytes of {len(buffer)}")
            if zlib.crc32(buffer) != header.crc32:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "CRC-32 mismatch")
            delta = np.frombuffer(buffer, dtype="<f4")
            if not np.isfinite(delta).all():
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "non-finite value")
            return delta

        def Leave(self, request, context):
            with self.lock:
                if request.permanent:
                    self.clients.pop(request.client_id, None)
            return pb.LeaveResponse()

        def GetStatus(self, request, context):
            with self.lock:
                weights = [c.weight() for c in self.clients.values()] or [0.0]
                return pb.GetStatusResponse(
                    round=self.round, round_state="collecting" if self.accepted else "open",
                    accepted_this_round=len(self.accepted), enrolled_clients=len(self.clients),
                    modules=[pb.ModuleVersion(name=args.module, version=self.version)],
                    aggregator="adaptive", weight_min=min(weights),
                    weight_mean=sum(weights) / len(weights), weight_max=max(weights))

    return Federation()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--values", type=int, required=True, help="D, float32 values in the module")
    parser.add_argument("--clients", type=int, required=True,
                        help="updates per round: the round closes when this many were accepted")
    parser.add_argument("--module", default="model", help="name of the single module")
    parser.add_argument("--max-message-bytes", type=int, default=4 << 20)
    parser.add_argument("--chunk-bytes", type=int, default=1 << 20)
    parser.add_argument("--workers", type=int, default=0,
                        help="gRPC handler threads (0: 2 per client + 4)")
    parser.add_argument("--retry-after-ms", type=int, default=100,
                        help="the delay suggested with ACTION_WAIT (fedcl's minimum)")
    args = parser.parse_args()
    if args.values <= 0 or args.clients <= 0 or args.chunk_bytes > args.max_message_bytes // 2:
        sys.exit("--values and --clients must be positive, --chunk-bytes at most half of "
                 "--max-message-bytes")

    ensure_environment()
    import grpc
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="fedcl-pystubs-") as stub_dir:
        pb, pb_grpc, tpb = generate_stubs(stub_dir)
        workers = args.workers or 2 * args.clients + 4
        options = [("grpc.max_receive_message_length", args.max_message_bytes),
                   ("grpc.max_send_message_length", args.max_message_bytes)]
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=workers),
                             options=options)
        pb_grpc.add_FederationServicer_to_server(
            make_servicer(pb, pb_grpc, tpb, np, grpc, args), server)
        host = args.listen.rsplit(":", 1)[0]
        port = server.add_insecure_port(args.listen)
        if port == 0:
            sys.exit(f"cannot listen on {args.listen}")
        server.start()
        print(f"listening on {host}:{port}", flush=True)

        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(0.5):
            pass
        server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
