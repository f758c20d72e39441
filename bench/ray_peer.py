"""The benchmark's peer: Ray Serve running the same runtime class as mk1's RuntimeAlpha.

Runs ONLY inside the bench venv (.mk1/bench-venv, where `ray[serve]` is installed;
never mk1's own .venv). Started by bench/peer.py as a subprocess:

    python ray_peer.py PORT TEMP_DIR FUNCTIONS_DIR

Two Serve applications, each 3 replicas with max_ongoing_requests=1 and num_cpus=0
(mk1's reserved concurrency of 3, one call per execution environment):

    POST /2015-03-31/functions/noop/invocations    GENERATE_SECONDS=0     (figure 1)
    POST /2015-03-31/functions/gen50/invocations   GENERATE_SECONDS=0.05  (figure 2)

The routes are Lambda-shaped so the very same boto3 `lambda` client that calls mk1 can
call the peer (FunctionName="noop"); Serve does not check the SigV4 signature.

The handler mirrors functions/alpha/handler.py: parse_prompt, time generate(), answer
{"response", "runtime", "generate_ms"}. Prints "READY <port>" when both answer, then
serves until its stdin closes.
"""
from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402
from ray import serve  # noqa: E402


@serve.deployment(num_replicas=3, max_ongoing_requests=1, ray_actor_options={"num_cpus": 0})
class Runtime:
    def __init__(self, functions_dir: str, generate_seconds: float):
        for sub in ("common", "alpha"):
            path = os.path.join(functions_dir, sub)
            if path not in sys.path:
                sys.path.insert(0, path)
        os.environ["LOAD_SECONDS"] = "0"
        os.environ["GENERATE_SECONDS"] = str(generate_seconds)
        from runtime_alpha import RuntimeAlpha
        from runtime_base import parse_prompt
        self.parse_prompt = parse_prompt
        self.runtime = RuntimeAlpha()
        self.runtime.load()

    async def __call__(self, request):
        prompt = self.parse_prompt(await request.json())
        started = time.monotonic()
        response = self.runtime.generate(prompt)
        return {"response": response, "runtime": self.runtime.name,
                "generate_ms": round((time.monotonic() - started) * 1000, 3)}


def main() -> int:
    port, temp_dir, functions_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    ray.init(include_dashboard=False, _temp_dir=temp_dir, _node_ip_address="127.0.0.1",
             log_to_driver=False, configure_logging=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Runtime.options(name="noop").bind(functions_dir, 0.0), name="noop",
              route_prefix="/2015-03-31/functions/noop")
    serve.run(Runtime.options(name="gen50").bind(functions_dir, 0.05), name="gen50",
              route_prefix="/2015-03-31/functions/gen50")
    print(f"READY {port}", flush=True)
    try:
        sys.stdin.read()   # until the benchmark closes our stdin
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
