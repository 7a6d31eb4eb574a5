from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from server.data.table_files import Format, TabularError, detect_format, read_columns, read_rows
from server.data.table_import import ColumnMapping, ImportPlan, RowError, plan_file, plan_import
from server.projects.label_tree import LabelIndex

LABEL_ROWS: list[dict[str, Any]] = [
    {"id": 1, "parent_id": None, "name": "Animal"},
    {"id": 2, "parent_id": 1, "name": "Cat"},
    {"id": 3, "parent_id": 1, "name": "Dog"},
    {"id": 4, "parent_id": None, "name": "Color"},
    {"id": 5, "parent_id": 4, "name": "Black"},
    {"id": 6, "parent_id": None, "name": "Fur"},
    {"id": 7, "parent_id": 6, "name": "Black"},
    {"id": 8, "parent_id": None, "name": "Café, au lait"},
    {"id": 9, "parent_id": None, "name": "Ünïcødé 猫"},
]
LABELS = LabelIndex.from_rows(LABEL_ROWS)
FULL = ColumnMapping(image="image", category="label", confidence="score")


def resolve_image(value: str) -> str:
    if value.startswith("missing"):
        raise ValueError(f"no file {value!r} in the datastore")
    return f"images/{value}"


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), "utf-8")
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]], **kwargs: Any) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path, **kwargs)
    return path


def plan(
    path: Path, fmt: Format, task: str, mapping: ColumnMapping = FULL, max_rows: int = 1000
) -> ImportPlan:
    return plan_file(path, fmt, mapping, task, LABELS, resolve_image, max_rows)


def errors(p: ImportPlan) -> list[tuple[int, str]]:
    return [(e.row, e.column) for e in p.errors]


def test_label_index_resolves_paths_and_unambiguous_bare_names() -> None:
    assert LABELS.resolve("Animal/Cat") == 2
    assert LABELS.resolve("  aNiMaL/CAT ") == 2
    assert LABELS.resolve("ＣＡＴ") == 2  # fullwidth folds under NFKC
    assert LABELS.resolve("Cat") == 2
    assert LABELS.resolve("Animal") == 1
    assert LABELS.resolve("Color/Black") == 5
    assert LABELS.resolve("fur/black") == 7
    assert LABELS.resolve("Black") is None
    assert LABELS.resolve("Animal/Black") is None
    assert LABELS.resolve("Horse") is None
    assert "'Color/Black', 'Fur/Black'" in LABELS.problem("Black")
    assert LABELS.problem("Horse") == "unknown label 'Horse'"


def test_label_index_prefers_an_exact_root_path_over_a_bare_name() -> None:
    index = LabelIndex.from_rows([*LABEL_ROWS, {"id": 10, "parent_id": None, "name": "Dog"}])
    assert index.resolve("Dog") == 10
    assert index.resolve("Animal/Dog") == 3


def test_label_rows_must_list_parents_first() -> None:
    with pytest.raises(ValueError, match="before its parent"):
        LabelIndex.from_rows([
            {"id": 2, "parent_id": 1, "name": "Cat"}, {"id": 1, "parent_id": None, "name": "Animal"}
        ])


def test_detect_format_by_declared_value_then_extension() -> None:
    assert detect_format("data.CSV", None) == "csv"
    assert detect_format("data.ndjson", None) == "jsonl"
    assert detect_format("data.jsonl", "") == "jsonl"
    assert detect_format("data.parquet", None) == "parquet"
    assert detect_format("data.txt", "Parquet") == "parquet"
    with pytest.raises(TabularError, match="cannot tell"):
        detect_format("data.xlsx", None)
    with pytest.raises(TabularError, match="unknown table format"):
        detect_format("data.csv", "excel")


def test_multiclass_csv_keeps_unicode_and_commas_through_quoting(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["image", "label", "score"], [
        ["a.png", "Café, au lait", "0.9"],
        ["b.png", "ünïcødé 猫", ""],
        ["c.png", '["Animal/Dog"]', "1"],
        ["d.png", "", ""],
        ["e.png", '["Cat", "Dog"]', ""],
    ])
    assert '"Café, au lait"' in path.read_text("utf-8")
    p = plan(path, "csv", "multiclass")
    assert [(r.row, r.key, r.annotation, r.confidence) for r in p.rows] == [
        (1, "images/a.png", {"classes": [8]}, 0.9),
        (2, "images/b.png", {"classes": [9]}, None),
        (3, "images/c.png", {"classes": [3]}, 1.0),
        (4, "images/d.png", None, None),
    ]
    assert p.errors == [RowError(5, "label", "multiclass takes one label per image, got 2")]
    assert p.total == 5


def test_multilabel_accepts_json_arrays_and_semicolons(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "t.csv", ["image", "label"], [
        ["a.png", '["Cat","Color/Black"]'],
        ["b.png", "Cat; Dog;cat"],
        ["c.png", "[]"],
        ["d.png", "Café, au lait;Fur/Black"],
    ])
    p = plan(csv_path, "csv", "multilabel", ColumnMapping("image", "label"))
    assert p.errors == []
    assert [r.annotation for r in p.rows] == [
        {"classes": [2, 5]}, {"classes": [2, 3]}, {"classes": []}, {"classes": [8, 7]}
    ]
    native = [{"image": "a.png", "label": ["Dog", "Animal/Dog", "Cat"]}]
    jsonl_path = write_jsonl(tmp_path / "t.jsonl", native)
    assert plan(jsonl_path, "jsonl", "multilabel", ColumnMapping("image", "label")).rows[0].annotation == {
        "classes": [3, 2]
    }


def test_bbox_automl_rows_become_box_shapes_with_the_row_confidence(tmp_path: Path) -> None:
    boxes = [
        {"label": "Cat", "topX": 0.1, "topY": 0.2, "bottomX": 0.5, "bottomY": 0.6, "isCrowd": False},
        {"label": "Color/Black", "topX": 0, "topY": 0, "bottomX": 1, "bottomY": 1},
    ]
    path = write_jsonl(tmp_path / "t.jsonl", [
        {"image": "a.png", "label": boxes, "score": 0.75},
        {"image": "b.png", "label": [], "score": None},
    ])
    p = plan(path, "jsonl", "bbox")
    assert p.errors == []
    first, second = p.rows[0].annotation["shapes"]  # type: ignore[index]
    assert first == {
        "id": "import-1-0", "kind": "box", "label": 2, "x": 0.1, "y": 0.2,
        "w": pytest.approx(0.4), "h": pytest.approx(0.4), "source": "import", "confidence": 0.75,
    }
    assert (second["id"], second["label"], second["w"], second["h"]) == ("import-1-1", 5, 1.0, 1.0)
    assert p.rows[1].annotation == {"shapes": []}
    assert p.rows[1].confidence is None


def test_bbox_csv_cells_bad_json_and_out_of_range_coordinates(tmp_path: Path) -> None:
    good = json.dumps([{"label": "Dog", "topX": 0.1, "topY": 0.1, "bottomX": 0.2, "bottomY": 0.3}])
    path = write_csv(tmp_path / "t.csv", ["image", "label"], [
        ["a.png", good],
        ["b.png", '[{"label": "Dog", "topX": 0.1'],
        ["c.png", json.dumps([{"label": "Dog", "topX": 0.1, "topY": 0.1, "bottomX": 1.2, "bottomY": 0.3}])],
        ["d.png", json.dumps([{"label": "Dog", "topX": 0.5, "topY": 0.1, "bottomX": 0.2, "bottomY": 0.3}])],
        ["e.png", json.dumps({"label": "Dog"})],
    ])
    p = plan(path, "csv", "bbox", ColumnMapping("image", "label"))
    assert [r.row for r in p.rows] == [1]
    assert p.rows[0].annotation["shapes"][0]["confidence"] is None  # type: ignore[index]
    assert errors(p) == [(2, "label"), (3, "label"), (4, "label"), (5, "label")]
    messages = [e.message for e in p.errors]
    assert "not valid JSON" in messages[0]
    assert messages[1] == "box 1: bottomX 1.2 is outside [0, 1]; coordinates are normalized"
    assert "less than" in messages[2]
    assert "must be a list" in messages[3]


def test_polygon_parquet_rings_become_separate_shapes(tmp_path: Path) -> None:
    square = [0.1, 0.1, 0.5, 0.1, 0.5, 0.5, 0.1, 0.5]
    path = write_parquet(tmp_path / "t.parquet", [
        {"image": "a.png", "label": [{"label": "Cat", "polygon": [square, [0.6, 0.6, 0.9, 0.6, 0.9, 0.9]]}],
         "score": float("nan")},
        {"image": "b.png", "label": [{"label": "Cat", "polygon": [[0.1, 0.1, 0.2, 0.2]]}], "score": 0.5},
        {"image": "c.png", "label": [{"label": "Cat", "polygon": [[0.1, 0.1, 0.2, 0.2, 1.5, 0.3]]}],
         "score": 0.5},
        {"image": "d.png", "label": None, "score": 0.5},
    ])
    p = plan(path, "parquet", "polygon")
    assert [r.row for r in p.rows] == [1, 4]
    shapes = p.rows[0].annotation["shapes"]  # type: ignore[index]
    assert [(s["id"], s["kind"], s["label"], s["points"]) for s in shapes] == [
        ("import-1-0", "polygon", 2, square), ("import-1-1", "polygon", 2, [0.6, 0.6, 0.9, 0.6, 0.9, 0.9])
    ]
    assert p.rows[0].confidence is None
    assert p.rows[1].annotation is None
    assert errors(p) == [(2, "label"), (3, "label")]
    assert "at least 3 points" in p.errors[0].message
    assert "coordinate 4 1.5 is outside" in p.errors[1].message


def test_polygon_odd_coordinate_count_is_refused() -> None:
    rows = [{"image": "a.png", "label": [{"label": "Cat", "polygon": [[0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4]]}]}]
    p = plan_import(rows, ColumnMapping("image", "label"), "polygon", LABELS, resolve_image)
    assert errors(p) == [(1, "label")]
    assert "even number" in p.errors[0].message


def test_semantic_category_is_a_row_error_but_unlabeled_rows_import(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["image", "label"], [["a.png", "Cat"], ["b.png", ""]])
    p = plan(path, "csv", "semantic", ColumnMapping("image", "label"))
    assert p.errors == [RowError(
        1, "label", "semantic segmentation labels cannot be imported from a table; import masks instead"
    )]
    assert [(r.key, r.annotation) for r in p.rows] == [("images/b.png", None)]


def test_row_errors_carry_one_based_rows_and_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["image", "label", "score"], [
        ["a.png", "Cat", "0.5"],
        ["b.png", "Horse", ""],
        ["c.png", "Cat", "high"],
        ["d.png", "Cat", "1.5"],
        ["", "Cat", ""],
        ["a.png", "Dog", ""],
        ["missing.png", "Cat", ""],
        ["h.png", "Black", "-1"],
        ["i.png", "Multi\nline, cell", ""],
        ["j.png", "Dog", " 0.25 "],
    ])
    p = plan(path, "csv", "multiclass")
    assert p.total == 10
    assert [(r.row, r.key, r.confidence) for r in p.rows] == [
        (1, "images/a.png", 0.5), (10, "images/j.png", 0.25)
    ]
    assert errors(p) == [
        (2, "label"), (3, "score"), (4, "score"), (5, "image"), (6, "image"), (7, "image"),
        (8, "score"), (8, "label"), (9, "label"),
    ]
    by_row = {(e.row, e.column): e.message for e in p.errors}
    assert by_row[2, "label"] == "unknown label 'Horse'"
    assert by_row[3, "score"] == "confidence 'high' is not a number"
    assert by_row[4, "score"] == "confidence '1.5' is not between 0 and 1"
    assert "non-empty" in by_row[5, "image"]
    assert by_row[6, "image"] == "duplicate image 'images/a.png': first seen on row 1"
    assert by_row[7, "image"] == "no file 'missing.png' in the datastore"
    assert "ambiguous" in by_row[8, "label"]


def test_malformed_jsonl_lines_are_row_errors(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [
        {"image": "a.png", "label": "Cat"},
        '{"image": "b.png", "label": ',
        "",
        "[1, 2]",
        {"image": "e.png", "label": "Dog"},
        {"image": 5, "label": "Dog"},
    ])
    p = plan(path, "jsonl", "multiclass", ColumnMapping("image", "label"))
    assert p.total == 5
    assert [(r.row, r.key) for r in p.rows] == [(1, "images/a.png"), (4, "images/e.png")]
    assert errors(p) == [(2, ""), (3, ""), (5, "image")]
    assert p.errors[0].message.startswith("line 2 is not valid JSON")
    assert p.errors[1].message == "line 4 is not a JSON object"


def test_csv_row_with_extra_cells_is_a_row_error(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    # Rows of empty cells (a spreadsheet's trailing rows) are skipped and not counted.
    path.write_text("image,label\na.png,Cat\n,\n ,\nb.png,Café, au lait\n", "utf-8")
    p = plan(path, "csv", "multiclass", ColumnMapping("image", "label"))
    assert [r.row for r in p.rows] == [1]
    assert p.errors == [RowError(2, "", "the row has 1 more cell(s) than the header has columns")]
    assert p.total == 2


def test_missing_mapped_column_is_a_file_error_in_every_format(tmp_path: Path) -> None:
    mapping = ColumnMapping("image", "label", "conf")
    files: list[tuple[Path, Format]] = [
        (write_csv(tmp_path / "t.csv", ["image", "label"], [["a.png", "Cat"]]), "csv"),
        (write_csv(tmp_path / "empty.csv", ["image", "label"], []), "csv"),
        (write_jsonl(tmp_path / "t.jsonl", ["{bad", {"image": "a.png", "label": "Cat"}]), "jsonl"),
        (write_parquet(tmp_path / "t.parquet", [{"image": "a.png", "label": "Cat"}]), "parquet"),
        (_empty_parquet(tmp_path / "empty.parquet"), "parquet"),
    ]
    for path, fmt in files:
        with pytest.raises(TabularError, match="'conf'"):
            plan(path, fmt, "multiclass", mapping)
    with pytest.raises(TabularError, match="'label'"):
        plan_import([{"image": "a.png"}], ColumnMapping("image", "label"), "bbox", LABELS, resolve_image)


def _empty_parquet(path: Path) -> Path:
    pq.write_table(pa.table({"image": pa.array([], pa.string()), "label": pa.array([], pa.string())}), path)
    return path


def test_empty_files_with_a_header_give_an_empty_plan(tmp_path: Path) -> None:
    mapping = ColumnMapping("image", "label")
    bom = tmp_path / "bom.csv"
    bom.write_text("image,label\n", encoding="utf-8-sig")
    assert read_columns(bom, "csv") == ["image", "label"]
    for path, fmt in [(bom, "csv"), (_empty_parquet(tmp_path / "e.parquet"), "parquet")]:
        p = plan(path, fmt, "multiclass", mapping)  # type: ignore[arg-type]
        assert (p.rows, p.errors, p.total) == ([], [], 0)
    (tmp_path / "nothing.csv").write_text("", "utf-8")
    with pytest.raises(TabularError, match="header row"):
        plan(tmp_path / "nothing.csv", "csv", "multiclass", mapping)


def test_unreadable_files_and_doubled_headers_are_file_errors(tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes("image,label\na.png,Caf\xe9\n".encode("latin-1"))
    not_parquet = tmp_path / "t.parquet"
    not_parquet.write_text("image,label\n", "utf-8")
    doubled = write_csv(tmp_path / "d.csv", ["image", "label", "image"], [["a", "b", "c"]])
    for path, fmt, match in [
        (latin, "csv", "cannot read"), (not_parquet, "parquet", "cannot read"),
        (tmp_path / "absent.csv", "csv", "cannot read"), (doubled, "csv", "twice: 'image'"),
    ]:
        with pytest.raises(TabularError, match=match):
            plan(path, fmt, "multiclass", ColumnMapping("image", "label"))  # type: ignore[arg-type]


def test_more_rows_than_allowed_is_a_file_error(tmp_path: Path) -> None:
    rows = [{"image": f"{i}.png", "label": "Cat"} for i in range(5)]
    files: list[tuple[Path, Format]] = [
        (write_csv(tmp_path / "t.csv", ["image", "label"], [[r["image"], r["label"]] for r in rows]), "csv"),
        (write_jsonl(tmp_path / "t.jsonl", rows), "jsonl"),
        (write_parquet(tmp_path / "t.parquet", rows), "parquet"),
    ]
    for path, fmt in files:
        assert plan(path, fmt, "multiclass", ColumnMapping("image", "label"), max_rows=5).total == 5
        with pytest.raises(TabularError, match="more than 4 rows"):
            plan(path, fmt, "multiclass", ColumnMapping("image", "label"), max_rows=4)
        with pytest.raises(TabularError, match="more than 4 rows"):
            list(read_rows(path, fmt, 4))


def test_parquet_row_limit_is_checked_from_metadata_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_parquet(tmp_path / "t.parquet", [{"image": f"{i}.png"} for i in range(5)])
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", lambda *a, **k: pytest.fail("batches were read"))
    with pytest.raises(TabularError, match="more than 4 rows"):
        list(read_rows(path, "parquet", 4))


def test_parquet_is_read_in_bounded_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"image": f"img/{i:05}.png", "label": "Dog" if i % 2 else "Cat", "wide": "x" * 50}
            for i in range(10_000)]
    path = write_parquet(tmp_path / "big.parquet", rows, row_group_size=2_500)
    batches: list[int] = []
    original = pq.ParquetFile.iter_batches

    def spy(self: pq.ParquetFile, *args: Any, **kwargs: Any) -> Iterator[pa.RecordBatch]:
        for batch in original(self, *args, **kwargs):
            batches.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    p = plan(path, "parquet", "multiclass", ColumnMapping("image", "label"), max_rows=10_000)
    assert p.total == 10_000
    assert len(p.rows) == 10_000 and p.errors == []
    assert p.rows[-1].row == 10_000 and p.rows[-1].key == "images/img/09999.png"
    assert p.rows[1].annotation == {"classes": [3]}
    assert sum(batches) == 10_000 and len(batches) > 1 and max(batches) <= 4096
    first = next(read_rows(path, "parquet", 10_000, columns=["image"]))
    assert first == {"image": "img/00000.png"}


def test_unknown_task_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown task type"):
        plan_import([], ColumnMapping("image"), "keypoints", LABELS, resolve_image)
