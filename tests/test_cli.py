"""The command line turns bad input into one line that names the problem and the fix, never a traceback."""
import pytest

from reidlab.__main__ import build_config, main


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return str(exit_info.value.code), capsys.readouterr()


def test_missing_dataset_is_one_line(tmp_path, capsys):
    message, _ = run_cli(["verify", "market1501", "--root", str(tmp_path / "nothere")], capsys)
    assert message.startswith("error: DatasetError: market1501: no dataset found")
    assert "prepare_market1501.py" in message


def test_unreadable_checkpoint_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"not a zip")
    build_config("bot", "cpu", []).save(run / "config.json")  # the same config: the checkpoint is the problem
    message, _ = run_cli(["train", "--preset", "bot", "--profile", "cpu", "--out", str(run)], capsys)
    assert message.startswith("error: CheckpointError: no readable checkpoint"), message
    assert "--restart" in message


def test_debug_variable_shows_the_traceback(tmp_path, monkeypatch):
    from reidlab.datasets import DatasetError
    monkeypatch.setenv("REIDLAB_DEBUG", "1")
    with pytest.raises(DatasetError):
        main(["verify", "market1501", "--root", str(tmp_path / "nothere")])
