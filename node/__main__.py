"""`python -m node --data DIR --listen HOST:PORT --node-id NAME (TLS flags | --insecure)`."""

from __future__ import annotations

import logging
import sys

from .config import ConfigError, parse_args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = parse_args(argv)
        from .tuning import tune_malloc

        tune_malloc()  # before gRPC and the stores allocate anything
        from .app import run  # after the flags: a bad flag answers without importing gRPC

        run(config)
    except ConfigError as exc:
        print(f"node: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
