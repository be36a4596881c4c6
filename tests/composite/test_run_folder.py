"""An out_dir always holds one complete run (issue 19): two runs at once, reruns with other
settings that fail or are killed half-way, and a publication interrupted between its moves.

"Complete" is checked by :func:`assert_one_complete_run`: the folder holds exactly what its
``run.json`` says it published, the rasters carry the record's run key and settings, the metrics
file is the record's, and no staging folder is left."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio

from cloudseg.run_folder import FolderBusyError
from composite import publication
from composite.publication import STAGING, RunFolder
from composite.run import run_composite
from helpers.composite import compose_composite

REPO = Path(__file__).resolve().parents[2]


def overrides(stack, out_dir: Path, *extra: str) -> list[str]:
    """A tiny run with SCL masks and the unmasked baseline (``evaluation=none`` in ``extra``:
    the composite alone)."""
    evidence = [] if "evaluation=none" in extra else ["evaluation.baselines=[none]"]
    return [
        f"stack.source={stack.folder}", "masks.source=scl", "composite.window_size=32",
        *evidence, f"out_dir={out_dir}", *extra,
    ]  # fmt: skip


def assert_one_complete_run(out_dir: Path) -> dict:
    """The folder's run.json agrees with every output in it; returns the record."""
    record = json.loads((out_dir / "run.json").read_text())
    visible = sorted(path.name for path in out_dir.iterdir() if not path.name.startswith("."))
    assert visible == record["published"]
    composite = record["composite"]
    rasters = [record["outputs"][name] for name in ("composite", "count", "provenance")]
    for name in filter(None, rasters):
        with rasterio.open(out_dir / name) as dataset:
            tags = dataset.tags()
        assert tags["RUN_KEY"] == record["run_key"], name
        assert (tags["Q"], tags["METHOD"]) == (f"{composite['q']:g}", composite["method"]), name
    assert ("provenance.tif" in visible) == (composite["method"] != "linear")
    evidence = (record.get("reports") or {}).get("evidence")
    if evidence is not None:
        assert json.loads((out_dir / "metrics.json").read_text()) == evidence["metrics"]
        computed = evidence["baselines"]["computed"]
        assert sorted(computed) == sorted(p.name for p in (out_dir / "baselines").glob("*"))
        for source, folder in computed.items():
            assert Path(folder) == out_dir / "baselines" / source  # not the staging folder
            assert json.loads((Path(folder) / "run.json").read_text())["run_key"]
    else:
        assert "metrics.json" not in visible and "baselines" not in visible
    return record


def folder_bytes(out_dir: Path) -> dict[str, str]:
    """sha256 of every file under ``out_dir`` but the hidden ones (lock, a killed run's
    staging folder, which the next run removes)."""
    return {
        str(path.relative_to(out_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(out_dir.rglob("*"))
        if path.is_file() and not path.relative_to(out_dir).parts[0].startswith(".")
    }


def test_two_runs_at_once_one_out_dir_refuses_another_out_dir_completes(tiny_stack, tmp_path):
    """While run A holds out_dir `a` (between its rasters and its run.json), a run into `a`
    stops at once naming A, and a run with the same settings into `b`, sharing the default
    work_dir, completes; then A completes. Both folders hold one complete run."""
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    meanwhile: dict = {}

    def second_and_third_runs(result):
        with pytest.raises(FolderBusyError) as busy:
            run_composite(compose_composite(overrides(tiny_stack, out_a), tmp_path))
        meanwhile["busy"] = str(busy.value)
        meanwhile["b"] = run_composite(compose_composite(overrides(tiny_stack, out_b), tmp_path))

    first = run_composite(
        compose_composite(overrides(tiny_stack, out_a), tmp_path),
        reporters={"meanwhile": second_and_third_runs},
    )
    assert meanwhile["busy"].startswith(
        f"out_dir={out_a} is in use by another run: pid {os.getpid()} (started "
    )
    assert meanwhile["busy"].endswith("Wait for it to finish, or write to another folder.")
    record_a, record_b = assert_one_complete_run(out_a), assert_one_complete_run(out_b)
    assert record_a["run_key"] == record_b["run_key"]  # same settings, own work folders
    assert first.outputs.composite == out_a / "composite.tif" and first.record == record_a
    assert not (out_a / STAGING).exists() and not (out_b / STAGING).exists()
    assert meanwhile["b"].outputs.out_dir == out_b
    work = tmp_path / "outputs" / "cache" / "composite_windows"
    assert not list(work.glob("*/*/windows"))  # both work folders removed once published


def test_a_rerun_that_fails_half_way_leaves_the_previous_run_byte_identical(tiny_stack, tmp_path):
    out = tmp_path / "out"
    run_composite(compose_composite(overrides(tiny_stack, out), tmp_path))
    before = folder_bytes(out)

    def killed(result):  # the rerun's rasters exist (staged) when it dies
        assert (out / STAGING / "composite.tif").is_file()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_composite(
            compose_composite(overrides(tiny_stack, out, "composite.q=50"), tmp_path),
            reporters={"killed": killed},
        )
    assert folder_bytes(out) == before
    assert assert_one_complete_run(out)["composite"]["q"] == 25


def test_a_rerun_with_other_outputs_removes_what_it_does_not_write(tiny_stack, tmp_path):
    """method=lower writes provenance.tif and baselines/none; a completed rerun with linear and
    no baselines leaves neither behind (they were stale), and keeps files that are not a run's."""
    out = tmp_path / "out"
    run_composite(compose_composite(overrides(tiny_stack, out, "composite.method=lower"), tmp_path))
    assert (out / "provenance.tif").is_file() and (out / "baselines" / "none").is_dir()
    (out / "notes.txt").write_text("mine")
    rerun = ["composite.method=linear", "evaluation=none"]
    run_composite(compose_composite(overrides(tiny_stack, out, *rerun), tmp_path))
    record = json.loads((out / "run.json").read_text())
    assert not (out / "provenance.tif").exists() and not (out / "baselines").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(record["published"]) == ["composite.tif", "count.tif", "run.json"]


def test_a_publication_interrupted_between_moves_is_finished_by_the_next_run(tmp_path, monkeypatch):
    out = tmp_path / "out"
    for run_key, names in (("old", ["a.tif", "gone.tif"]), ("new", ["a.tif", "b.tif"])):
        with RunFolder(out, tmp_path / "work") as folder:
            for name in names:
                (folder.staging / name).write_text(run_key)
            (folder.staging / "run.json").write_text(json.dumps({"run_key": run_key}))
            if run_key == "new":
                moves = []
                real_replace = os.replace

                def replace_then_die(source, target, moves=moves, real=real_replace):
                    moves.append(target)
                    if len(moves) == 3:
                        raise KeyboardInterrupt  # killed mid-publication
                    real(source, target)

                monkeypatch.setattr(publication.os, "replace", replace_then_die)
                with pytest.raises(KeyboardInterrupt):
                    folder.publish()
                monkeypatch.undo()
            else:
                folder.publish()
    assert not (out / "run.json").exists()  # mid-publication: not a finished run
    with RunFolder(out, tmp_path / "work"):  # the next run finishes it first
        pass
    record = json.loads((out / "run.json").read_text())
    assert record == {"run_key": "new", "published": ["a.tif", "b.tif", "run.json"]}
    assert [(out / name).read_text() for name in ("a.tif", "b.tif")] == ["new", "new"]
    assert not (out / "gone.tif").exists() and not (out / STAGING).exists()


def test_a_killed_rerun_leaves_the_previous_run_byte_identical(tiny_stack, tmp_path, kill_when):
    """The real thing: `python composite.py composite.q=50` SIGKILLed once its rasters are
    staged, in a folder holding a complete q=25 run."""
    out = tmp_path / "out"
    run_composite(compose_composite(overrides(tiny_stack, out), tmp_path))
    before = folder_bytes(out)
    command = [
        sys.executable, "composite.py", *overrides(tiny_stack, out, "composite.q=50"),
        f"paths.log_dir={tmp_path / 'outputs'}", f"hydra.run.dir={tmp_path / 'hydra'}",
        "progress=false",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    kill_when(process, (out / STAGING / "composite.tif").is_file, "its rasters were staged")
    assert folder_bytes(out) == before
    assert assert_one_complete_run(out)["composite"]["q"] == 25
    # the next run removes the killed run's staging folder, and publishes
    run_composite(compose_composite(overrides(tiny_stack, out, "composite.q=50"), tmp_path))
    assert assert_one_complete_run(out)["composite"]["q"] == 50
    assert not (out / STAGING).exists()


@pytest.mark.slow
def test_four_cli_runs_at_once_two_per_out_dir(tiny_stack, tmp_path):
    """Four `python composite.py` processes started together, two into each of two out_dirs,
    all with the default work_dir: each completes or refuses at once, and each folder holds one
    complete run."""
    processes = []
    for name in ("a", "a", "b", "b"):
        command = [
            sys.executable, "composite.py", *overrides(tiny_stack, tmp_path / name),
            f"paths.log_dir={tmp_path / 'outputs'}", "progress=false",
            f"hydra.run.dir={tmp_path / 'hydra' / str(len(processes))}",
        ]  # fmt: skip
        processes.append(
            subprocess.Popen(
                command,
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )  # fmt: skip
        )
    outcomes = [(process.wait(timeout=600), process.stderr.read()) for process in processes]
    for code, stderr in outcomes:
        assert code == 0 or "is in use by another run: pid" in stderr, stderr[-2000:]
    assert sum(code == 0 for code, _ in outcomes) >= 2
    for name in ("a", "b"):
        assert_one_complete_run(tmp_path / name)
