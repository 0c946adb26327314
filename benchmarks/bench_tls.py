"""W1 with security on: TLS, token authentication and both, beside plaintext, in one run.

The same sequential synchronous FG echo as W1 (``bench_calls``), through a controller in
another process, for: plaintext over a Unix socket and over TCP, TLS over TCP, a token over
TCP (plaintext), and mutual TLS with a token. Rounds are interleaved (one fresh client per
mode per round) so the machine's drift hits every mode alike. Certificates are made for the
run with ``trustme`` in a temp dir.

Under TLS a sync caller has no call channel of its own (a channel bypasses the stream, and a
TLS stream must see every byte): its calls go through daffi's event loop, so the figure is
the loop path's cost plus encryption. A token costs only the handshake.

    python -m benchmarks.bench_tls [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Sequence

from benchmarks._common import (
    DEFAULT,
    QUICK,
    Measurement,
    RoundResult,
    Settings,
    child_process,
    median_measurement,
    python_module,
    read_ready_line,
    run_child,
)

WORKLOAD = "W1 echo with security, sequential sync FG"
_SERVER_START_TIMEOUT = 30.0
# (label, transport, --security): what each round measures; the first two are the baselines.
MODES = (
    ("unix", "unix", "plain"),
    ("tcp", "tcp", "plain"),
    ("tcp+tls", "tcp", "tls"),
    ("tcp+token", "tcp", "token"),
    ("tcp+mtls+token", "tcp", "mtls-token"),
)


def run(settings: Settings) -> list[Measurement]:
    """Measure every mode; one median measurement per mode."""
    import trustme  # a test and bench dependency, not the library's

    with tempfile.TemporaryDirectory(prefix="daffi-bench-tls-") as tmp:
        ca = trustme.CA()
        ca.cert_pem.write_to_path(f"{tmp}/ca.pem")
        ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
            f"{tmp}/server.pem"
        )
        ca.issue_cert("bench-client").private_key_and_cert_chain_pem.write_to_path(
            f"{tmp}/client.pem"
        )
        return _measure(settings, tmp)


def _measure(settings: Settings, tmp: str) -> list[Measurement]:
    where: dict[str, Sequence[str]] = {}
    results: dict[str, list[RoundResult]] = {}
    with contextlib.ExitStack() as servers:
        for label, transport, security in MODES:
            server = servers.enter_context(
                child_process(
                    python_module(
                        "daffi_echo",
                        "server",
                        "--transport",
                        transport,
                        "--path",
                        f"{tmp}/{label}",
                        "--security",
                        security,
                        "--certs",
                        tmp,
                    )
                )
            )
            info = read_ready_line(server, _SERVER_START_TIMEOUT)
            where[label] = (
                ("--port", str(info["port"])) if "port" in info else ("--path", str(info["path"]))
            )
        timeout = 30 + settings.calls / 200
        for round_no in range(1, settings.rounds + 1):
            for label, transport, security in MODES:
                cmd = python_module(
                    "daffi_echo",
                    "client",
                    "--transport",
                    transport,
                    *where[label],
                    "--security",
                    security,
                    "--certs",
                    tmp,
                    "--calls",
                    str(settings.calls),
                    "--warmup",
                    str(settings.warmup),
                    "--deadline",
                    str(timeout - 5),
                )
                result = run_child(cmd, timeout)
                results.setdefault(label, []).append(result)
                print(
                    f"  W1 {label:<15} round {round_no}/{settings.rounds} "
                    f"{result.calls_per_s:>9,.0f} calls/s  p50 {result.p50_ns / 1000:>7,.1f} us",
                    file=sys.stderr,
                    flush=True,
                )
    return [
        median_measurement(rounds, workload=WORKLOAD, transport=label, library="daffi", mode="sync")
        for label, rounds in results.items()
    ]


def ratios(measurements: Sequence[Measurement]) -> str:
    """Each mode's calls/s against plaintext TCP and plaintext unix, as a small table."""
    by_label = {m.transport: m for m in measurements}
    tcp, unix = by_label["tcp"].calls_per_s, by_label["unix"].calls_per_s
    lines = [
        "| mode | calls/s | p50 us | / tcp plaintext | / unix plaintext |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in measurements:
        lines.append(
            f"| {m.transport} | {m.calls_per_s:,.0f} | {m.p50_us:,.1f} | "
            f"{m.calls_per_s / tcp:.2f} | {m.calls_per_s / unix:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    args = parser.parse_args(argv)
    measurements = run(QUICK if args.quick else DEFAULT)
    print(ratios(measurements))
    return 0


if __name__ == "__main__":
    sys.exit(main())
