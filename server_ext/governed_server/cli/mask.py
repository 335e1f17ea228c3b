"""``jupyter governance mask [FILE...]``: copy stdin or files to stdout with every PAN masked.

Streams in 64 KiB pieces through :class:`~governed_kernel.masking.StreamMasker`, so input of any
size is handled in bounded memory and everything but PAN digits (and whole tracks) comes out
byte-identical, including bytes that are not valid UTF-8.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, BinaryIO

from governed_server.cli.errors import EXIT_OK, EXIT_USAGE, CLIError

CHUNK = 64 * 1024


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "mask",
        help="mask card numbers (PANs) in stdin or files, write to stdout",
        description="Copy stdin (or each FILE in turn) to stdout with every card number masked; all other "
        "bytes are unchanged. Magnetic-stripe track data is masked whole.",
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="files to mask ('-' or none: stdin)")
    parser.add_argument(
        "--reveal",
        choices=("last4", "bin6", "none"),
        default="last4",
        help="digits left visible: last four (default), first six and last four, or none",
    )
    parser.add_argument("--mask-char", default="*", help="mask character (default: *)")
    parser.add_argument("--stats", action="store_true", help="print counts of what was masked to stderr")
    parser.set_defaults(handler=run)


def mask_stream(source: BinaryIO, sink: BinaryIO, streamer: Any) -> None:
    """Mask ``source`` into ``sink`` piece by piece (undecodable bytes survive via surrogateescape)."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
    while True:
        data = source.read1(CHUNK) if hasattr(source, "read1") else source.read(CHUNK)
        if not data:
            break
        out = streamer.feed(decoder.decode(data))
        if out:
            sink.write(out.encode("utf-8", "surrogateescape"))
    tail = streamer.feed(decoder.decode(b"", final=True)) + streamer.flush()
    if tail:
        sink.write(tail.encode("utf-8", "surrogateescape"))
    sink.flush()


def run(args: argparse.Namespace) -> int:
    from governed_kernel.masking import Masker, MaskingConfig, StreamMasker

    try:
        config = MaskingConfig(reveal=args.reveal, mask_char=args.mask_char)
    except ValueError as error:
        raise CLIError(str(error), EXIT_USAGE) from None
    masker = Masker(config)
    sink = sys.stdout.buffer
    paths = args.files or ["-"]
    total = None
    failed = []
    for path in paths:
        streamer = StreamMasker(masker)
        if path == "-":
            mask_stream(sys.stdin.buffer, sink, streamer)
        else:
            try:
                with open(path, "rb") as source:
                    mask_stream(source, sink, streamer)
            except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
                print(f"jupyter governance mask: {path}: {error.strerror}", file=sys.stderr)
                failed.append(path)
                continue
        total = streamer.report if total is None else total.merge(streamer.report)
    if args.stats and total is not None:
        print(f"masked: {total.summary()}", file=sys.stderr)
    if failed:
        raise CLIError(f"could not read {len(failed)} file(s): {', '.join(failed)}", EXIT_USAGE)
    return EXIT_OK
