"""`python -m cluster up|down|status|kill|pause|resume|restart|start`: the local cluster tool."""

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
    for name, text in (("kill", "SIGKILL a process"), ("pause", "SIGSTOP a process"),
                       ("resume", "SIGCONT a paused process"), ("start", "start a process"),
                       ("restart", "stop and start a process")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("name", help="process name, e.g. node-3, gateway-1, kes-2")
    return p


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
        else:
            getattr(cluster, args.command)(args.name)
            print(f"{args.command} {args.name}: {cluster.state_of(args.name)}")
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
