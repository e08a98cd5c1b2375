"""``metaseg-server``: load the models, then serve them with uvicorn.

Options override the ``METASEG_*`` environment variables. Binding to an address other than
localhost without an API key is refused unless ``--no-api-key-ok`` says it is intended.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys

from metaseg_viewer.errors import MetaSegError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metaseg-server", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", help="default model for requests that name no model or sequence and whose upload "
                                        "names no sequence of a loaded model (env METASEG_DEFAULT_MODEL)")
    parser.add_argument("--models", nargs="+", help="models to load (env METASEG_MODELS; default: all shipped)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                        help="auto: bf16 where the CPU/GPU has native bf16, else fp32 (env METASEG_PRECISION)")
    parser.add_argument("--workers", type=int, help="inference threads")
    parser.add_argument("--queue-size", type=int, help="requests that may wait; more get 503")
    parser.add_argument("--max-upload-mb", type=float)
    parser.add_argument("--save-uploads-dir",
                        help="keep accepted uploads (patient data) here under generated names (off by default)")
    parser.add_argument("--no-api-key-ok", action="store_true", help="allow a non-localhost --host without METASEG_API_KEY")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)

    import uvicorn

    from server.app import create_app
    from server.engine import Engine
    from server.settings import InvalidSettings, load_settings

    given = {"default_model": args.model, "models": args.models, "device": args.device,
             "precision": args.precision, "workers": args.workers,
             "queue_size": args.queue_size, "max_upload_mb": args.max_upload_mb, "save_uploads_dir": args.save_uploads_dir}
    given = {k: v for k, v in given.items() if v is not None}
    logging.getLogger("metaseg.server").setLevel(args.log_level.upper())
    try:
        if args.model and not args.models:
            given["models"] = list(dict.fromkeys([*load_settings().models, args.model]))
        settings = load_settings(**given)
    except InvalidSettings as exc:
        print(f"metaseg-server: {exc}", file=sys.stderr)
        return 2
    if not _is_loopback(args.host) and settings.api_key is None and not args.no_api_key_ok:
        print(f"metaseg-server: refusing to listen on {args.host} without an API key: set METASEG_API_KEY "
              "(clients send it as X-API-Key), or pass --no-api-key-ok if the network is trusted", file=sys.stderr)
        return 2
    try:
        engine = Engine(settings)
    except (MetaSegError, OSError) as exc:
        print(f"metaseg-server: cannot start: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(create_app(settings, engine), host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
