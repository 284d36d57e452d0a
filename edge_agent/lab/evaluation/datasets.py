"""The two layouts of labelled face photos used for evaluation (see ../shared/faces/README.md).

- Identity folders: `<root>/<identity>/<photo>.jpg|jpeg|png`; the folder name is the identity.
- A pairs CSV: header `image_a,image_b,same`, one pair a line, image paths relative to the CSV's folder,
  `same` one of yes/no, 1/0, true/false in any case. In the LFW layout (`img/<person>/<file>`) the
  parent folder of each image names its person, so every cross-person combination of the CSV's photos
  is an impostor pair (`pair_images`).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple, TextIO

from edge_agent.errors import EdgeAgentError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
PAIRS_COLUMNS = ("image_a", "image_b", "same")
_SAME: Mapping[str, bool] = MappingProxyType(
    {"yes": True, "1": True, "true": True, "no": False, "0": False, "false": False}
)


class LabelledPhoto(NamedTuple):
    """One photo and the identity it shows."""

    path: Path
    identity: str


class Pair(NamedTuple):
    """Two photos and whether they show the same person."""

    a: Path
    b: Path
    same: bool


@dataclass(frozen=True)
class IdentificationSplit:
    """Indices into a photo list: an enrolment gallery, mated probes and non-mated probes."""

    gallery: tuple[int, ...]
    mated: tuple[int, ...]
    non_mated: tuple[int, ...]


def photos_in(folder: Path) -> list[Path]:
    """Every photo (.jpg, .jpeg, .png) under `folder`, recursively, sorted; hidden files skipped."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def people_and_strangers(faces_dir: Path) -> list[Path]:
    """The shared faces' `people/<identity>/` photos, then its `strangers/` photos."""
    return photos_in(faces_dir / "people") + photos_in(faces_dir / "strangers")


def load_identity_folders(root: Path) -> list[LabelledPhoto]:
    """Every photo under `root/<identity>/`, sorted by identity then file name.

    Files directly in `root`, hidden files and folders, and non-image files are skipped.
    """
    if not root.is_dir():
        raise EdgeAgentError(f"{root}: not a folder of identity sub-folders")
    photos = [
        LabelledPhoto(path, folder.name)
        for folder in sorted(root.iterdir())
        if folder.is_dir() and not folder.name.startswith(".")
        for path in sorted(folder.iterdir())
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not photos:
        raise EdgeAgentError(f"{root}: no .jpg, .jpeg or .png photos in identity sub-folders")
    return photos


def load_pairs_csv(csv_path: Path) -> list[Pair]:
    """The pairs of a CSV with columns image_a, image_b, same (extra columns are ignored).

    Every error is one line naming the file and line: unreadable file, missing header column, a row
    with a missing or empty value, an unknown `same` value, or an image that does not exist.
    """
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            return _parse_pairs(csv_path, handle)
    except OSError as exc:
        raise EdgeAgentError(f"{csv_path}: cannot read pairs CSV ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise EdgeAgentError(f"{csv_path}: not a UTF-8 text file ({exc.reason})") from None


def identity_of(path: Path) -> str:
    """The identity of a photo in the LFW layout: its parent folder's name."""
    return path.parent.name


def pair_images(pairs: Iterable[Pair]) -> list[LabelledPhoto]:
    """Each distinct photo of `pairs` once (sorted), labelled by its parent folder.

    Raises when the folder names contradict the pairs (a same-person pair across folders, or a
    different-person pair within one), since then folder names are not identities.
    """
    photos: set[Path] = set()
    for pair in pairs:
        if (identity_of(pair.a) == identity_of(pair.b)) != pair.same:
            relation = "same-person" if pair.same else "different-person"
            raise EdgeAgentError(
                f"{pair.a} / {pair.b}: a {relation} pair whose folders say otherwise; "
                "folder names are not identities in this layout"
            )
        photos.update((pair.a, pair.b))
    return [LabelledPhoto(path, identity_of(path)) for path in sorted(photos)]


def identification_split(identities: Sequence[str]) -> IdentificationSplit:
    """A fixed open-set split: of each identity with 2+ photos the first is enrolled and the rest are
    mated probes; identities with a single photo are non-mated probes (never enrolled)."""
    by_identity: dict[str, list[int]] = {}
    for index, identity in enumerate(identities):
        by_identity.setdefault(identity, []).append(index)
    gallery: list[int] = []
    mated: list[int] = []
    non_mated: list[int] = []
    for indices in by_identity.values():
        if len(indices) == 1:
            non_mated.extend(indices)
        else:
            gallery.append(indices[0])
            mated.extend(indices[1:])
    return IdentificationSplit(tuple(sorted(gallery)), tuple(sorted(mated)), tuple(sorted(non_mated)))


def _parse_pairs(csv_path: Path, handle: TextIO) -> list[Pair]:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        raise EdgeAgentError(f"{csv_path}: empty file, expected the header {','.join(PAIRS_COLUMNS)}")
    names = [name.strip().lower() for name in header]
    missing = [column for column in PAIRS_COLUMNS if column not in names]
    if missing:
        raise EdgeAgentError(
            f"{csv_path}:1: header lacks column {', '.join(missing)} (need {','.join(PAIRS_COLUMNS)})"
        )
    columns = [names.index(column) for column in PAIRS_COLUMNS]
    pairs = []
    try:
        for row in reader:
            if any(field.strip() for field in row):
                # line_num counts physical lines read so far: the row's (last) line
                pairs.append(_parse_row(csv_path, reader.line_num, row, columns))
    except csv.Error as exc:
        raise EdgeAgentError(_one_line(f"{csv_path}:{reader.line_num}: not valid CSV ({exc})")) from None
    if not pairs:
        raise EdgeAgentError(f"{csv_path}: no pairs after the header")
    return pairs


def _parse_row(csv_path: Path, line: int, row: list[str], columns: list[int]) -> Pair:
    where = _one_line(f"{csv_path}:{line}")
    values = [row[index].strip() if index < len(row) else "" for index in columns]
    for column, value in zip(PAIRS_COLUMNS, values, strict=True):
        if not value:
            raise EdgeAgentError(f"{where}: missing value for column {column}")
    first, second, same = values
    if same.lower() not in _SAME:
        raise EdgeAgentError(f"{where}: same={same!r} is not one of yes/no, 1/0, true/false")
    images = (csv_path.parent / first, csv_path.parent / second)
    for image in images:
        if not image.is_file():
            raise EdgeAgentError(_one_line(f"{where}: image {image} does not exist"))
    return Pair(images[0], images[1], _SAME[same.lower()])


def _one_line(text: str) -> str:
    """Errors print as one line even when a quoted CSV field holds a line break."""
    return " ".join(text.splitlines())
