"""`python -m cluster up|down|status|kill|stop|resume|restart|start|heal|corrupt`: the local
cluster tool. `stop` is SIGSTOP (a frozen process, as in the chaos tests; `pause` is the same),
`kill` is SIGKILL, `resume` is SIGCONT; `down` stops the whole cluster gracefully."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .launcher import Cluster, ClusterError, ClusterSpec


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cluster", description=__doc__)
    p.add_argument("--root", default=".cluster", help="cluster directory (default .cluster)")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster (or the processes of it that are down)")
    up.add_argument("--nodes", type=int, default=6)
    up.add_argument("--gateways", type=int, default=2)
    up.add_argument("--kes", type=int, default=2)
    up.add_argument("--parity", type=int, default=2)
    up.add_argument("--set-size", type=int, default=None)
    up.add_argument("--ports", choices=("fixed", "auto"), default="fixed",
                    help="fixed: the documented port scheme; auto: free ephemeral ports")
    sub.add_parser("down", help="stop every process of the cluster (data stays)")
    sub.add_parser("status", help="one line per process, with its health")
    for name, text in (("kill", "SIGKILL a process"), ("stop", "SIGSTOP a process (freeze it)"),
                       ("pause", "same as stop"),
                       ("resume", "SIGCONT a stopped process"), ("start", "start a process"),
                       ("restart", "stop (gracefully) and start a process")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("name", help="process name, e.g. node-3, gateway-1, kes-2")
    heal = sub.add_parser("heal", help="run a full heal pass now and print what it repaired")
    heal.add_argument("--bucket", action="append", help="only this bucket (repeatable)")
    heal.add_argument("--deep", action="store_true",
                      help="also read and hash every shard block on every node (slow)")
    heal.add_argument("--concurrency", type=int, default=8, help="objects healed at once")
    heal.add_argument("-v", "--verbose", action="store_true", help="one line per repair")
    corrupt = sub.add_parser("corrupt", help="flip a byte of a stored shard block on a node")
    corrupt.add_argument("name", help="storage node, e.g. node-3")
    corrupt.add_argument("--bucket", required=True)
    corrupt.add_argument("--key", required=True)
    corrupt.add_argument("--block", type=int, default=0, help="shard block (default 0)")
    corrupt.add_argument("--part", type=int, default=1, help="part number (default 1)")
    return p


_SIGNALS = {"stop": "pause", "pause": "pause", "kill": "kill", "resume": "resume",
            "start": "start", "restart": "restart"}


def _print_summary(cluster: Cluster) -> None:
    access, secret = cluster.credentials
    print("\nTessera cluster is up.")
    for r in cluster.records:
        extra = f"  https://{r.extra['https']}" if r.extra.get("https") else ""
        print(f"  {r.name:<11} {r.role:<8} {r.address:<16}{extra}  pid {r.pid}")
    print(f"\n  access key: {access}\n  secret key: {secret}")
    env = cluster.env_path
    shown = env.relative_to(Path.cwd()) if env.is_relative_to(Path.cwd()) else env
    print(f"\n  source {shown}")
    if cluster.by_role("gateway"):
        print(f"  aws s3 ls --endpoint-url {cluster.gateway_url(0)}")


def _status(cluster: Cluster) -> int:
    if not cluster.records:
        print("no cluster here (run `make cluster`)")
        return 1
    bad = 0
    for r in cluster.records:
        state = cluster.state_of(r.name)
        health = cluster.probe(r, timeout=1.0) if state == "running" else None
        detail = health.detail if health else "-"
        if not (health and health.ok):
            bad += 1
        print(f"{r.name:<11} {r.role:<8} {r.address:<16} pid {r.pid:<8} {state:<8} {detail}")
    return 0 if bad == 0 else 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cluster = Cluster(args.root)
    try:
        if args.command == "up":
            spec = ClusterSpec(nodes=args.nodes, gateways=args.gateways, kes=args.kes,
                               parity=args.parity, set_size=args.set_size,
                               ports=args.ports)
            cluster.up(spec)
            _print_summary(cluster)
        elif args.command == "down":
            stopped = cluster.down()
            print(f"stopped {len(stopped)} processes" + (f": {', '.join(stopped)}"
                                                          if stopped else ""))
        elif args.command == "status":
            return _status(cluster)
        elif args.command == "heal":
            from .healing import run_heal

            return run_heal(cluster, buckets=args.bucket, deep=args.deep,
                            concurrency=args.concurrency, verbose=args.verbose)
        elif args.command == "corrupt":
            from .healing import corrupt_shard

            print(corrupt_shard(cluster, args.name, args.bucket, args.key, block=args.block,
                                part=args.part))
        else:
            getattr(cluster, _SIGNALS[args.command])(args.name)
            print(f"{args.command} {args.name}: {cluster.state_of(args.name)}")
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
