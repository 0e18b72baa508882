"""`python -m cluster up|down|status|kill|stop|resume|restart|start|heal|corrupt|fill-disk|
free-disk|load|prometheus-token|drain|undrain|reload`: the local cluster tool. `stop` is
SIGSTOP (a frozen process, as in the chaos tests; `pause` is the same), `kill` is SIGKILL,
`resume` is SIGCONT; `down` stops the whole cluster gracefully; `drain` / `undrain` take a
gateway out of a load balancer's rotation and back, `reload` makes it re-read its
certificates (SIGHUP)."""

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
    up.add_argument("--node-tmpfs", action="append", default=[], metavar="[NODE=]SIZE",
                    help="put a node's data dir on its own tmpfs of SIZE (e.g. node-3=64M; "
                         "a bare SIZE: every node); needs root; its data is lost at `down`")
    sub.add_parser("down", help="stop every process of the cluster (data stays)")
    sub.add_parser("status", help="processes, node disks, quorum per set, KES, heal backlog")
    fill = sub.add_parser("fill-disk", help="fill a node's own (tmpfs) disk with a ballast")
    fill.add_argument("name", help="storage node, e.g. node-3")
    fill.add_argument("--leave", default="0", help="bytes to leave free (e.g. 1M)")
    free = sub.add_parser("free-disk", help="remove a node's ballast")
    free.add_argument("name", help="storage node, e.g. node-3")
    sub.add_parser("prometheus-token", help="print a bearer token for the metrics endpoint")
    load = sub.add_parser("load", help="a bounded mixed S3 load through every gateway, "
                                       "verifying every read (cluster/chaos.py)")
    load.add_argument("--ops", type=int, default=400, help="operations to run")
    load.add_argument("--concurrency", type=int, default=8)
    load.add_argument("--max-size", default="20M", help="largest object (default 20M)")
    load.add_argument("--bucket", default="chaos-load")
    for name, text in (("kill", "SIGKILL a process"), ("stop", "SIGSTOP a process (freeze it)"),
                       ("pause", "same as stop"),
                       ("resume", "SIGCONT a stopped process"), ("start", "start a process"),
                       ("restart", "stop (gracefully) and start a process")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("name", help="process name, e.g. node-3, gateway-1, kes-2")
    for name, text in (("drain", "make a gateway's readiness answer 503 (draining) while it "
                                 "still serves S3"),
                       ("undrain", "put a drained gateway back (readiness 200)"),
                       ("reload", "SIGHUP a gateway: re-read its KES client and HTTPS "
                                  "certificates")):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("name", help="gateway name, e.g. gateway-1")
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


def _shown(path: Path) -> Path:
    path = Path(path)
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def _print_summary(cluster: Cluster) -> None:
    access, secret = cluster.credentials
    spec = cluster.meta.get("spec", {})
    nodes, gateways = cluster.by_role("node"), cluster.by_role("gateway")
    layout = ""
    if nodes:
        size = cluster.topology.set_size
        parity = spec.get("parity")
        layout = (f"{len(nodes)} nodes in {len(cluster.topology.sets)} erasure set(s)"
                  + (f" of EC {size - parity}+{parity}" if parity is not None else ""))
    print(f"\nTessera cluster is up: {layout}, {len(gateways)} gateways, "
          f"{len(cluster.by_role('kes'))} KES servers.")
    for r in cluster.records:
        if r.role == "gateway":
            where = f"http://{r.address}  https://{r.extra['https']}"
        elif r.role == "kes":
            where = f"https://{r.address}"
        else:
            disk = f" (tmpfs {r.extra['tmpfs']})" if r.extra.get("tmpfs") else ""
            where = f"{r.address} gRPC/mTLS, data {_shown(Path(r.data_dir))}{disk}"
        print(f"  {r.name:<11} {r.role:<8} pid {r.pid:<8} {where}")
    print(f"\n  access key  {access}\n  secret key  {secret}\n"
          f"  CA          {_shown(cluster.ca_path)}")
    print(f"\n  source {_shown(cluster.env_path)}   # AWS_* (endpoint, keys, region, CA "
          "bundle), S3CMD_CONFIG, MINIO_KMS_KES_*")
    if gateways:
        url = cluster.gateway_url(0)
        root = _shown(cluster.root)
        print(f"  aws s3 mb s3://demo && aws s3 cp FILE s3://demo/ --sse AES256\n"
              f"  s3cmd ls                              # config {root}/s3cfg\n"
              f"  mc alias set tessera {url} {access} $MINIO_ROOT_PASSWORD\n"
              f"  curl -H \"Authorization: Bearer $(cat {root}/prometheus.token)\" "
              f"{url}/minio/v2/metrics/cluster   # scrape config: {root}/prometheus.yml")
    print(f"  logs in {_shown(cluster.root / 'logs')}/; make cluster-status; "
          "make cluster-down (data stays)")


def _tmpfs(values: list[str]) -> dict[str, str]:
    out = {}
    for value in values:
        name, _, size = value.rpartition("=")
        out[name or "*"] = size
    return out


def _operate(cluster: Cluster, args: argparse.Namespace) -> int:
    from .disks import DiskError, parse_size

    if not cluster.records:
        raise ClusterError("no cluster here (run `make cluster`)")
    if args.command == "prometheus-token":
        from gateway.ops.prometheus_auth import make_token

        print(make_token(*cluster.credentials))
    elif args.command == "fill-disk":
        try:
            leave = parse_size(args.leave)
        except DiskError as exc:
            raise ClusterError(str(exc)) from None
        added = cluster.fill_disk(args.name, leave)
        print(f"fill-disk {args.name}: ballast grew by {added} bytes")
    elif args.command == "free-disk":
        print(f"free-disk {args.name}: {cluster.free_disk(args.name)} bytes freed")
    else:
        from .chaos import LoadSpec, run_load

        report = run_load(cluster, LoadSpec(operations=args.ops, concurrency=args.concurrency,
                                            max_size=parse_size(args.max_size),
                                            bucket=args.bucket))
        print(report.summary())
        return 0 if report.clean else 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cluster = Cluster(args.root)
    try:
        if args.command == "up":
            spec = ClusterSpec(nodes=args.nodes, gateways=args.gateways, kes=args.kes,
                               parity=args.parity, set_size=args.set_size,
                               ports=args.ports, node_tmpfs=_tmpfs(args.node_tmpfs))
            cluster.up(spec)
            _print_summary(cluster)
        elif args.command == "down":
            stopped = cluster.down()
            print(f"stopped {len(stopped)} processes" + (f": {', '.join(stopped)}"
                                                          if stopped else ""))
        elif args.command == "status":
            if not cluster.records:
                print("no cluster here (run `make cluster`)")
                return 1
            from .status import print_status

            return print_status(cluster)
        elif args.command in ("fill-disk", "free-disk", "prometheus-token", "load"):
            return _operate(cluster, args)
        elif args.command == "heal":
            from .healing import run_heal

            return run_heal(cluster, buckets=args.bucket, deep=args.deep,
                            concurrency=args.concurrency, verbose=args.verbose)
        elif args.command in ("drain", "undrain", "reload"):
            from . import gateway_control

            print(getattr(gateway_control, args.command)(cluster, args.name))
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
