"""Evaluation data loaders: identity folders and pairs CSVs, on the shared photos and on hand-made files."""

from pathlib import Path

import pytest

from edge_agent.errors import EdgeAgentError
from edge_agent.lab.evaluation.datasets import (
    LabelledPhoto,
    Pair,
    identification_split,
    load_identity_folders,
    load_pairs_csv,
    pair_images,
)

PEOPLE = {
    "alex_lacamoire": 3,
    "barack_obama": 4,
    "joe_biden": 2,
    "kit_harington": 3,
    "lin_manuel_miranda": 1,
    "rose_leslie": 2,
}


def test_identity_folders_of_the_shared_people(faces_dir: Path) -> None:
    photos = load_identity_folders(faces_dir / "people")
    counts: dict[str, int] = {}
    for path, identity in photos:
        assert path.is_file() and path.parent.name == identity
        counts[identity] = counts.get(identity, 0) + 1
    assert counts == PEOPLE
    assert [photo.identity for photo in photos] == sorted(photo.identity for photo in photos)
    suffixes = {photo.path.suffix for photo in photos}
    assert {".jpg", ".jpeg", ".png"} <= suffixes


def test_identity_folders_skip_what_is_not_a_labelled_photo(tmp_path: Path) -> None:
    for name in ("ann/b.JPG", "ann/a.png", "ann/notes.txt", "ann/.hidden.jpg", ".cache/x.jpg", "loose.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert load_identity_folders(tmp_path) == [
        LabelledPhoto(tmp_path / "ann" / "a.png", "ann"),
        LabelledPhoto(tmp_path / "ann" / "b.JPG", "ann"),
    ]


def test_identity_folders_errors(tmp_path: Path) -> None:
    with pytest.raises(EdgeAgentError, match="not a folder"):
        load_identity_folders(tmp_path / "absent")
    (tmp_path / "bob").mkdir()
    with pytest.raises(EdgeAgentError, match=r"no \.jpg"):
        load_identity_folders(tmp_path)


def _pairs_folder(tmp_path: Path) -> Path:
    for name in ("img/ann/1.jpg", "img/ann/2.jpg", "img/bob/1.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pairs.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("spelling", "same"),
    [
        ("yes", True), ("YES", True), ("Yes", True), ("1", True), ("true", True), ("TRUE", True),
        ("True", True), (" yes ", True), ("no", False), ("NO", False), ("No", False), ("0", False),
        ("false", False), ("FALSE", False), ("False", False),
    ],
)  # fmt: skip
def test_every_same_spelling(tmp_path: Path, spelling: str, same: bool) -> None:
    folder = _pairs_folder(tmp_path)
    csv_path = _write(folder, f"image_a,image_b,same\nimg/ann/1.jpg,img/ann/2.jpg,{spelling}\n")
    assert load_pairs_csv(csv_path) == [Pair(folder / "img/ann/1.jpg", folder / "img/ann/2.jpg", same)]


def test_pairs_csv_header_order_bom_blank_lines_and_extra_columns(tmp_path: Path) -> None:
    folder = _pairs_folder(tmp_path)
    csv_path = folder / "pairs.csv"
    csv_path.write_text(
        "\ufeffsame,note,Image_B,image_a\n\nno,x,img/bob/1.jpg,img/ann/1.jpg\r\n1,,img/ann/2.jpg,img/ann/1.jpg\n",
        encoding="utf-8",
    )
    assert load_pairs_csv(csv_path) == [
        Pair(folder / "img/ann/1.jpg", folder / "img/bob/1.jpg", False),
        Pair(folder / "img/ann/1.jpg", folder / "img/ann/2.jpg", True),
    ]


@pytest.mark.parametrize(
    ("rows", "line", "message"),
    [
        ("img/ann/1.jpg,img/ann/2.jpg\n", 2, "missing value for column same"),
        ("img/ann/1.jpg,,yes\n", 2, "missing value for column image_b"),
        ("img/ann/1.jpg,img/ann/2.jpg,yes\n\nimg/ann/1.jpg,img/ann/2.jpg,maybe\n", 4, "same='maybe'"),
        ("img/ann/1.jpg,img/ann/9.jpg,yes\n", 2, "9.jpg does not exist"),
    ],
)
def test_bad_rows_are_one_line_errors_naming_file_and_line(
    tmp_path: Path, rows: str, line: int, message: str
) -> None:
    csv_path = _write(_pairs_folder(tmp_path), "image_a,image_b,same\n" + rows)
    with pytest.raises(EdgeAgentError) as caught:
        load_pairs_csv(csv_path)
    text = str(caught.value)
    assert text.startswith(f"{csv_path}:{line}: ")
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("a,b,same\nx,y,yes\n", ":1: header lacks column image_a, image_b"),
        ("image_a,image_b,same\n", "no pairs"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path: Path, content: str, message: str) -> None:
    csv_path = _write(tmp_path, content)
    with pytest.raises(EdgeAgentError, match=message) as caught:
        load_pairs_csv(csv_path)
    assert str(caught.value).startswith(str(csv_path)) and "\n" not in str(caught.value)
    with pytest.raises(EdgeAgentError, match="cannot read"):
        load_pairs_csv(tmp_path / "absent.csv")


def test_pair_images_are_labelled_by_folder(tmp_path: Path) -> None:
    folder = _pairs_folder(tmp_path)
    ann1, ann2, bob1 = folder / "img/ann/1.jpg", folder / "img/ann/2.jpg", folder / "img/bob/1.jpg"
    photos = pair_images([Pair(ann1, ann2, True), Pair(ann1, bob1, False)])
    assert photos == [LabelledPhoto(ann1, "ann"), LabelledPhoto(ann2, "ann"), LabelledPhoto(bob1, "bob")]
    with pytest.raises(EdgeAgentError, match="folder names are not identities"):
        pair_images([Pair(ann1, bob1, True)])


def test_lfw_devtrain_pairs(faces_dir: Path) -> None:
    pairs = load_pairs_csv(faces_dir / "lfw-devtrain" / "pairs.csv")
    assert len(pairs) == 2200
    assert sum(pair.same for pair in pairs) == 1100
    photos = pair_images(pairs)
    assert len(photos) == 3443
    assert len({photo.identity for photo in photos}) == 2132


def test_identification_split() -> None:
    split = identification_split(["a", "b", "a", "c", "a", "b"])
    assert split.gallery == (0, 1)  # first photo of a and of b
    assert split.mated == (2, 4, 5)
    assert split.non_mated == (3,)  # c has a single photo: never enrolled


def test_a_line_break_inside_a_quoted_field_stays_a_one_line_error(tmp_path: Path) -> None:
    csv_path = _write(_pairs_folder(tmp_path), 'image_a,image_b,same\n"img/ann/1.jpg\nx",img/ann/2.jpg,yes\n')
    with pytest.raises(EdgeAgentError) as caught:
        load_pairs_csv(csv_path)
    assert str(caught.value).startswith(f"{csv_path}:3: image ") and "\n" not in str(caught.value)
