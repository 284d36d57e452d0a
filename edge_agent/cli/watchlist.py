"""`edge-agent watchlist ...`: accountable enrolment, inspection, removal, expiry, bundles, audit."""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from edge_agent.cli.args import EXIT_OK, open_watchlist, settings_from
from edge_agent.cli.audit import add_audit_commands
from edge_agent.cli.operating_point import (
    add_operating_point_command,
    operating_point_for,
    report_operating_point,
)
from edge_agent.cli.options import with_progress
from edge_agent.cli.watchlist_text import stats_text, subject_text
from edge_agent.errors import EdgeAgentError
from edge_agent.watchlist.records import NewSubject, Subject, utc_text

DURATION = re.compile(r"^(\d+)([hdw])$")
UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_expiry(text: str, now: datetime) -> datetime:
    """`30d`, `12h`, `2w`, a date (`2027-01-31`: its end, 23:59:59 UTC) or an ISO time with a zone."""
    if match := DURATION.match(text.strip()):
        moment = now + timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
    else:
        try:
            parsed = datetime.fromisoformat(text.strip())
        except ValueError:
            raise EdgeAgentError(
                f"--expires {text!r}: use a duration like 30d, 12h, 2w, or a date like 2027-01-31"
            ) from None
        if len(text.strip()) == 10:  # a bare date: valid through that whole day
            parsed = parsed.replace(hour=23, minute=59, second=59, tzinfo=UTC)
        elif parsed.tzinfo is None:
            raise EdgeAgentError(f"--expires {text!r}: give a time zone, e.g. {text}+00:00")
        moment = parsed
    if moment <= now:
        raise EdgeAgentError(f"--expires {text!r} is not in the future")
    return moment


def add_watchlist_commands(commands: Any) -> None:
    watchlist = commands.add_parser("watchlist", help="the local watchlist: enrol, search, remove, audit")
    sub = watchlist.add_subparsers(dest="watchlist_command", required=True, metavar="ACTION")
    _add_subject_commands(sub)
    add_audit_commands(sub)
    _add_bundle_commands(sub)


def _add_subject_commands(sub: Any) -> None:
    enroll = sub.add_parser("enroll", help="add a person from one or more photos")
    enroll.add_argument("name")
    enroll.add_argument("photos", nargs="+", type=Path, metavar="PHOTO")
    enroll.add_argument("--reason", required=True, help="why this person is on the watchlist")
    enroll.add_argument("--source", required=True, help="case or source reference of the photos")
    enroll.add_argument("--expires", required=True, help="30d, 12h, 2w, or a date (2027-01-31)")
    enroll.add_argument("--watchlist", help="watchlist name (default from config)")
    enroll.add_argument("--by", default=None, help="who enrols (default: the login name)")
    enroll.add_argument(
        "--face", choices=["largest"], help="in photos with several faces, use the largest (else refused)"
    )
    enroll.add_argument(
        "--force",
        action="store_true",
        help="enrol faces beyond the calibrated impostor bound from the others (only that check)",
    )
    enroll.set_defaults(handler=_cmd_enroll)

    listing = sub.add_parser("list", help="subjects (active ones unless --all)")
    listing.add_argument("--all", action="store_true", help="include removed and expired subjects")
    listing.set_defaults(handler=_cmd_list)

    show = sub.add_parser("show", help="one subject, its templates, exclusions and audit rows")
    show.add_argument("id")
    show.set_defaults(handler=_cmd_show)

    remove = sub.add_parser("remove", help="remove a subject: templates and vectors are deleted")
    remove.add_argument("id")
    remove.add_argument("--why", required=True, help="reason for the removal (audited)")
    remove.add_argument("--by", default=None)
    remove.set_defaults(handler=_cmd_remove)

    purge = sub.add_parser("purge-expired", help="delete the templates of every expired subject")
    purge.add_argument("--by", default=None)
    purge.set_defaults(handler=_cmd_purge)

    search = sub.add_parser("search", help="the nearest subjects to each face of a photo")
    search.add_argument("photo", type=Path)
    search.add_argument("-k", type=int, default=None, help="how many subjects (default from config)")
    search.set_defaults(handler=_cmd_search)

    stats = sub.add_parser("stats", help="counts, index and audit head")
    stats.set_defaults(handler=_cmd_stats)
    add_operating_point_command(sub)


def _add_bundle_commands(sub: Any) -> None:
    keygen = sub.add_parser("keygen", help="make an Ed25519 key for signing bundles")
    keygen.add_argument("path", type=Path)
    keygen.set_defaults(handler=_cmd_keygen)

    export = sub.add_parser("export", help="write the live subjects to a signed bundle (no photos)")
    export.add_argument("bundle", type=Path)
    export.add_argument("--expires", default="7d", help="how long the bundle may be imported (default 7d)")
    export.set_defaults(handler=_cmd_export)

    load = sub.add_parser("import", help="add the subjects of a signed bundle from a trusted key")
    load.add_argument("bundle", type=Path)
    load.add_argument("--by", default=None)
    load.set_defaults(handler=_cmd_import)


def _actor(args: argparse.Namespace) -> str:
    return str(args.by or getpass.getuser())


def _cmd_enroll(args: argparse.Namespace) -> int:
    from edge_agent.cli.enrol import read_batch
    from edge_agent.vision.faces import FacePipeline

    settings = settings_from(args)
    now = datetime.now(UTC)
    subject = NewSubject(
        display_name=args.name,
        watchlist=args.watchlist or settings.watchlist.default_watchlist,
        reason=args.reason,
        source=args.source,
        created_by=_actor(args),
        expires_at=parse_expiry(args.expires, now),
    )
    subject.check(now)  # before any model work: a bad expiry or empty reason fails fast
    pipeline = FacePipeline.from_settings(settings)
    batch = read_batch(
        args.photos,
        pipeline,
        args.face,
        args.force,
        each=lambda ps: with_progress(ps, args, "photo", len(ps)),
    )
    for note in batch.notes:
        print(f"note: {note}", file=sys.stderr)
    if batch.problems:
        if len(batch.problems) > 1:
            for problem in batch.problems:
                print(f"  {problem}", file=sys.stderr)
        raise EdgeAgentError(batch.refusal(len(args.photos)))
    with open_watchlist(settings, pipeline.embedder) as watchlist:
        enrolled = watchlist.enroll(subject, batch.templates)
        print(
            f"enrolled {enrolled.id} {enrolled.display_name!r}: {enrolled.templates} template(s), "
            f"expires {enrolled.expires_at}"
        )
        report_operating_point(settings, watchlist)
    return EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    with open_watchlist(settings_from(args)) as watchlist:
        subjects = watchlist.subjects(include_inactive=args.all)
        now = watchlist.clock()
    for subject in subjects:
        if args.json:
            print(json.dumps(subject.as_dict() | {"live": subject.is_live(now)}))
        else:
            print(_subject_line(subject, now))
    return EXIT_OK


def _subject_line(subject: Subject, now: datetime) -> str:
    state = subject.status if subject.status != "active" or subject.is_live(now) else "expired (not purged)"
    return (
        f"{subject.id}  {subject.display_name!r}  [{subject.watchlist}]  {state}  "
        f"{subject.templates} template(s)  expires {subject.expires_at}  reason: {subject.reason}"
    )


def _cmd_show(args: argparse.Namespace) -> int:
    from edge_agent.watchlist import audit

    with open_watchlist(settings_from(args)) as watchlist:
        subject = watchlist.subject(args.id)
        record = subject.as_dict() | {
            "live": subject.is_live(watchlist.clock()),
            "template_list": watchlist.templates(subject.id),
            "exclusions": [asdict(exclusion) for exclusion in watchlist.exclusions(subject.id)],
            "audit": [asdict(row) for row in audit.rows(watchlist.conn, subject_id=subject.id)],
        }
    print(json.dumps(record, indent=2) if args.json else "\n".join(subject_text(record)))
    return EXIT_OK


def _cmd_remove(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with open_watchlist(settings) as watchlist:
        subject = watchlist.remove(args.id, _actor(args), args.why)
        print(f"removed {subject.id} {subject.display_name!r}: templates and index vectors deleted")
        report_operating_point(settings, watchlist)
    return EXIT_OK


def _cmd_purge(args: argparse.Namespace) -> int:
    with open_watchlist(settings_from(args)) as watchlist:
        purged = watchlist.purge_expired(_actor(args))
    for subject in purged:
        print(f"purged {subject.id} {subject.display_name!r} (expired {subject.expires_at})")
    print(f"{len(purged)} expired subject(s) purged")
    return EXIT_OK


def _cmd_search(args: argparse.Namespace) -> int:
    from edge_agent.capture.media import read_image
    from edge_agent.vision.faces import FacePipeline

    settings = settings_from(args)
    pipeline = FacePipeline.from_settings(settings)
    faces = pipeline.describe_all(read_image(args.photo))
    if not faces:
        raise EdgeAgentError(f"{args.photo}: no face found")
    thresholds = pipeline.embedder.calibration.thresholds if pipeline.embedder.calibration else ()
    with open_watchlist(settings, pipeline.embedder) as watchlist:
        point = operating_point_for(settings, watchlist).chosen.point  # the live agent's, at this size
        threshold = point.threshold
        for number, face in enumerate(faces, start=1):
            matches = watchlist.search(face.descriptor, args.k or settings.watchlist.search_k)
            box = [round(v) for v in face.face.box.as_list()]
            rows = [
                {
                    "subject": m.subject.id,
                    "name": m.subject.display_name,
                    "watchlist": m.subject.watchlist,
                    "distance": round(m.distance, 4),
                    "match": m.distance < threshold,
                    "strictest_fmr": _strictest_fmr(thresholds, m.distance),
                }
                for m in matches
            ]
            if args.json:
                print(json.dumps({"face": number, "box": box, "threshold": threshold, "candidates": rows}))
                continue
            print(f"face {number} at {box}:")
            for row in rows:
                fmr = row["strictest_fmr"]
                level = f"would match at FMR {fmr:g}" if fmr is not None else "no match at any calibrated FMR"
                verdict = "MATCH" if row["match"] else "no match"
                print(
                    f"  {row['subject']}  {row['name']!r}  distance {row['distance']:.4f}  "
                    f"{verdict}  ({level})"
                )
            if not rows:
                print("  (the watchlist is empty)")
    print(f"match = distance < {threshold:.4f} (false-match rate {point.target_fmr:g})", file=sys.stderr)
    return EXIT_OK


def _strictest_fmr(thresholds: Any, distance: float) -> float | None:
    """The lowest calibrated false-match rate at which this distance would still be a match."""
    passing = [t.target_fmr for t in thresholds if distance < t.threshold]
    return min(passing) if passing else None


def _cmd_stats(args: argparse.Namespace) -> int:
    with open_watchlist(settings_from(args)) as watchlist:
        stats = watchlist.stats()
    print(json.dumps(stats.__dict__, indent=2) if args.json else "\n".join(stats_text(stats.__dict__)))
    return EXIT_OK


def _cmd_keygen(args: argparse.Namespace) -> int:
    from edge_agent.watchlist.bundle import generate_key

    public = generate_key(args.path)
    print(f"private key written to {args.path}; public key (for trusted_keys on other devices): {public}")
    return EXIT_OK


def _cmd_export(args: argparse.Namespace) -> int:
    from edge_agent.files import atomic_write_bytes
    from edge_agent.watchlist.transfer import export_bundle

    settings = settings_from(args)
    if settings.watchlist.signing_key is None:
        raise EdgeAgentError(
            "watchlist.signing_key is not set: create one with `edge-agent watchlist keygen`"
        )
    now = datetime.now(UTC)
    with open_watchlist(settings) as watchlist:
        data, count = export_bundle(
            watchlist, settings.watchlist.signing_key, settings.device_id, parse_expiry(args.expires, now)
        )
    atomic_write_bytes(args.bundle, data)
    print(f"{count} subject(s) exported to {args.bundle} (signed, no photos)")
    return EXIT_OK


def _cmd_import(args: argparse.Namespace) -> int:
    from edge_agent.watchlist.bundle import BUNDLE
    from edge_agent.watchlist.transfer import import_bundle

    settings = settings_from(args)
    try:
        size = args.bundle.stat().st_size
        if size > BUNDLE.max_envelope:  # measured before it is read into memory
            raise EdgeAgentError(
                f"{args.bundle}: {size:,} bytes, over the bundle limit of {BUNDLE.max_envelope:,}"
            )
        data = args.bundle.read_bytes()
    except OSError as exc:
        raise EdgeAgentError(f"{args.bundle}: {exc.strerror}") from None
    with open_watchlist(settings) as watchlist:
        added = import_bundle(watchlist, data, settings.watchlist.trusted_keys, _actor(args))
        print(f"{len(added)} subject(s) imported from {args.bundle}")
        report_operating_point(settings, watchlist)
    return EXIT_OK


__all__ = ["add_watchlist_commands", "parse_expiry", "utc_text"]
