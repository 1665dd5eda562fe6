"""The runner end to end on the smoke profile: records, idempotence, --force, failing cells."""

import json
import textwrap

import pytest

from bench.cli import main
from bench.records import RecordStore

BROKEN_WARPER = textwrap.dedent('''
    from bench.registry import WARPERS
    from bench.warp import Warper

    @WARPERS.register("explodes_in_forward")
    class Explodes(Warper):
        def warp(self, scale, source_features, target_feature, plan):
            raise RuntimeError("deliberate failure inside the warper")
''')


def _run(tmp_path, *extra):
    return main([
        "run", "--profile", "smoke", "--tasks", "pose_synthetic",
        "--results-dir", str(tmp_path / "results"), "--work-dir", str(tmp_path / "runs"),
        "--data-root", str(tmp_path / "data"), "--no-floors", *extra,  # floors: tests/test_oracle_floors.py
    ])


@pytest.fixture(scope="module")
def broken_plugin(tmp_path_factory):
    # one file for the module: these tests run in one process, where a second file registering the
    # same warper name is (rightly) a duplicate-registration error
    path = tmp_path_factory.mktemp("plugin") / "broken_warper.py"
    path.write_text(BROKEN_WARPER)
    return path


def test_smoke_run_records_skips_and_forces(tmp_path):
    assert _run(tmp_path, "--methods", "none") == 0
    store = RecordStore(tmp_path / "results")
    records = store.read()
    assert len(records) == 1
    record = records[0]
    assert record["status"] == "ok", record["error"]
    assert record["config"]["profile"] == "smoke" and record["config"]["train"]["batch_size"] == 2
    for name in ("ssim", "psnr", "l1"):
        assert record["metrics"][name]["value"] is not None
    assert record["protocol"]["num_generated"] == record["metrics"]["ssim"]["count"] > 0
    assert record["environment"]["libraries"]["torch"]
    assert set(record["timings"]) >= {"data_s", "train_s", "eval_s", "total_s"}
    board = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "none" in board

    # a second identical run skips the cell
    assert _run(tmp_path, "--methods", "none") == 0
    assert len(store.read()) == 1
    # --force reruns it
    assert _run(tmp_path, "--methods", "none", "--force") == 0
    assert len(store.read()) == 2


def test_failing_cell_is_recorded_and_others_still_run(tmp_path, broken_plugin):
    assert _run(tmp_path, "--plugin", str(broken_plugin), "--methods", "explodes_in_forward,none") == 0
    latest = {r["cell"]["method"]: r for r in RecordStore(tmp_path / "results").read()}
    failed = latest["explodes_in_forward"]
    assert failed["status"] == "failed"
    assert failed["error"]["phase"] == "train"
    assert "deliberate failure inside the warper" in failed["error"]["message"]
    assert "Traceback" in failed["error"]["traceback"]
    assert latest["none"]["status"] == "ok"
    board = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "explodes_in_forward" in board and "failed" in board


def test_failed_cells_are_retried_on_the_next_run(tmp_path, broken_plugin):
    assert _run(tmp_path, "--plugin", str(broken_plugin), "--methods", "explodes_in_forward") == 0
    assert _run(tmp_path, "--plugin", str(broken_plugin), "--methods", "explodes_in_forward") == 0
    statuses = [r["status"] for r in RecordStore(tmp_path / "results").read()]
    assert statuses == ["failed", "failed"]


def test_unknown_method_or_task_fails_before_running(tmp_path, capsys):
    assert _run(tmp_path, "--methods", "plain_flwo") == 2
    assert "did you mean 'plain_flow'" in capsys.readouterr().out
    assert main(["run", "--profile", "smoke", "--tasks", "pose_synthetc",
                 "--results-dir", str(tmp_path / "r")]) == 2
    assert not (tmp_path / "results" / "records.jsonl").exists()


def test_bad_override_fails_naming_the_key(tmp_path, capsys):
    assert _run(tmp_path, "--methods", "none", "--set", "train.batch_size=two") == 2
    assert "train.batch_size" in capsys.readouterr().out


def test_leaderboard_command_rebuilds_identical_tables(tmp_path):
    assert _run(tmp_path, "--methods", "none") == 0
    results = tmp_path / "results"
    written = {p.name: p.read_bytes() for p in results.iterdir() if p.name.startswith("leaderboard")}
    for path in results.glob("leaderboard.*"):
        path.unlink()
    assert main(["leaderboard", "--results-dir", str(results)]) == 0
    rebuilt = {p.name: p.read_bytes() for p in results.iterdir() if p.name.startswith("leaderboard")}
    assert rebuilt == written and {"leaderboard.md", "leaderboard.csv", "leaderboard.tex"} <= set(written)
    lines = (results / "records.jsonl").read_text().splitlines()
    assert all(json.loads(line)["status"] == "ok" for line in lines)


def test_task_selection_accepts_kinds_and_defaults_to_the_embedded_suite():
    from bench.registry import UnknownNameError
    from bench.taskspec import select_tasks

    assert select_tasks(None) == ["face_synthetic", "pose_synthetic", "view_synthetic_chair"]
    assert select_tasks(["pose_transfer"]) == ["pose_synthetic"]  # a kind: its embedded tasks only
    assert select_tasks(["view_synthesis", "view_synthetic_car", "view_synthetic_chair"]) == [
        "view_synthetic_chair", "view_synthetic_car"]
    with pytest.raises(UnknownNameError, match="unknown task 'pose_transfr'"):
        select_tasks(["pose_transfr"])


def test_cells_score_pairs_up_to_num_images_and_every_frame_of_every_video():
    from bench.cell import evaluated_indices
    from bench.taskspec import load_task

    assert evaluated_indices(load_task("pose_synthetic", "smoke", ["eval.num_images=3"]), range(10)) == [0, 1, 2]
    assert evaluated_indices(load_task("pose_synthetic", "smoke", ["eval.num_images=20"]), range(10)) == list(range(10))
    assert evaluated_indices(load_task("face_synthetic", "smoke", ["eval.num_images=1"]), range(4)) == [0, 1, 2, 3]
