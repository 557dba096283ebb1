"""Command line entry that runs the sandbox: python -m acquisition_assets.sandbox."""

import argparse

from acquisition_assets.sandbox.server import SandboxServerError, serve
from acquisition_assets.sandbox.state import DEFAULT_CRM_TOKEN, DEFAULT_EMAIL_TOKEN


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the sandbox command."""
    parser = argparse.ArgumentParser(
        prog="python -m acquisition_assets.sandbox",
        description="Serve the email provider (Postmark API) and CRM (HubSpot API) sandboxes.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="Loopback address to listen on: 127.0.0.1, ::1 or localhost.",
    )
    parser.add_argument(
        "--email-port",
        type=int,
        default=8025,
        help="TCP port of the email sandbox; 0 picks a free one.",
    )
    parser.add_argument(
        "--crm-port",
        type=int,
        default=8026,
        help="TCP port of the CRM sandbox; 0 picks a free one.",
    )
    parser.add_argument(
        "--email-token",
        default=DEFAULT_EMAIL_TOKEN,
        help="Server token expected in the X-Postmark-Server-Token header.",
    )
    parser.add_argument(
        "--crm-token",
        default=DEFAULT_CRM_TOKEN,
        help="Token expected in the 'Authorization: Bearer' header of CRM requests.",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Seed of the engagement outcomes and the fault randomness.",
    )
    parser.add_argument(
        "--ports-file",
        default=None,
        help='File to write {"email_url": ..., "crm_url": ...} to once both services listen.',
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve until SIGTERM or SIGINT."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        serve(
            host=args.host,
            email_port=args.email_port,
            crm_port=args.crm_port,
            email_token=args.email_token,
            crm_token=args.crm_token,
            seed=args.seed,
            ports_file=args.ports_file,
        )
    except (ValueError, SandboxServerError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")


if __name__ == "__main__":
    main()
