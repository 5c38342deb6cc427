"""`manage.py ingest PATH...`: load documents into the knowledge base (see docs/retrieval.md)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.errors import RetrievalError
from chat.retrieval.chunking import DEFAULT_CHUNK_SIZE, DEFAULT_OVERLAP
from chat.retrieval.ingest import IngestReport, ingest_paths
from chat.retrieval.loaders import SUPPORTED_SUFFIXES


class Command(BaseCommand):
    help = (
        "Ingest files and folders (recursively) into a Chroma collection. Supported: "
        + ", ".join(sorted(SUPPORTED_SUFFIXES))
        + ". Ingesting a file again replaces its chunks."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
        parser.add_argument(
            "--collection",
            default=None,
            help=f"collection name (default: CHAT_COLLECTION, {settings.CHAT_COLLECTION})",
        )
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=DEFAULT_CHUNK_SIZE,
            help="maximum characters per chunk (default %(default)s)",
        )
        parser.add_argument(
            "--overlap",
            type=int,
            default=DEFAULT_OVERLAP,
            help="characters repeated from the previous chunk (default %(default)s)",
        )
        parser.add_argument(
            "--reset", action="store_true", help="delete the collection before ingesting"
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="no progress bar, even on a terminal"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = ingest_paths(
                options["paths"],
                collection=options["collection"],
                chunk_size=options["chunk_size"],
                overlap=options["overlap"],
                reset=options["reset"],
                progress=False if options["no_progress"] else None,
            )
        except FileNotFoundError as err:
            raise CommandError(str(err), returncode=2) from err
        except ValueError as err:
            raise CommandError(str(err), returncode=2) from err
        except RetrievalError as err:
            raise CommandError(err.message) from err
        if options["verbosity"] >= 1:
            self._summary(report)
        if report.files == 0:
            skipped = f" ({_count(len(report.skipped), 'file')} skipped)" if report.skipped else ""
            raise CommandError(f"nothing was ingested{skipped}")

    def _summary(self, report: IngestReport) -> None:
        removed = f", {_count(report.removed, 'stale chunk')} removed" if report.removed else ""
        self.stdout.write(
            f"Ingested {_count(report.files, 'file')} into {report.collection!r}: "
            f"{_count(report.chunks, 'chunk')}{removed}, in {report.seconds:.1f} s."
        )
        if report.skipped:
            self.stdout.write(f"Skipped {_count(len(report.skipped), 'file')}:")
            for source, reason in report.skipped:
                self.stdout.write(f"  {source}: {reason}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
