"""`python -m mixunlearn`: a table with rows f_D, Retrain and MixUnlearn, or one clear error and exit 2."""
import socket

import pytest

from mixunlearn.__main__ import main


def test_a_run_prints_the_three_row_table(tmp_path, capsys):
    code = main(["--dataset", "tiny", "--ref-epochs", "2", "--epochs", "1", "--batch-size", "16",
                 "--mia-samples", "200", "--cache-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    rows = [line.split()[0] for line in out.splitlines() if line.split()[:1] in (["f_D"], ["Retrain"], ["MixUnlearn"])]
    assert rows == ["f_D", "Retrain", "MixUnlearn"]
    assert "avg_gap" in out and "ASR attacker" in out
    assert list(tmp_path.glob("splits/*.parquet")), "the forget-set indices must be written"


@pytest.mark.parametrize("flags, words", [
    (["--forget-class", "12"], ["forget_class", "12"]),
    (["--task", "data", "--data-classes", "3", "11"], ["data_classes", "11"]),
    (["--task", "random", "--random-ratio", "1.5"], ["random_ratio", "between 0 and 1"]),
    (["--task", "klass"], ["task", "class, data, random, noisy, semi"]),
])
def test_bad_task_specs_exit_2_naming_the_field(tmp_path, capsys, flags, words):
    assert main(["--dataset", "tiny", "--cache-dir", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    for word in words:
        assert word in err


def test_a_missing_data_set_exits_2_saying_where_it_looked(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: (_ for _ in ()).throw(socket.gaierror("offline")))
    monkeypatch.setenv("MIXSWEEP_SHARED_DATA", str(tmp_path / "shared"))
    assert main(["--dataset", "svhn", "--data-root", str(tmp_path / "root"), "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "svhn" in err and str(tmp_path / "root") in err
    assert "Traceback" not in err


def test_a_baseline_runs_from_flags_and_another_methods_flag_is_refused(tmp_path, capsys):
    assert main(["--method", "ga", "--alpha", "0.5", "--cache-dir", str(tmp_path)]) == 2
    assert "field 'alpha' is not a field of method 'ga'" in capsys.readouterr().err
    assert main(["--method", "ga", "--dataset", "tiny", "--ref-epochs", "1", "--epochs", "1", "--lr", "1e-3",
                 "--mia-samples", "50", "--cache-dir", str(tmp_path)]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert {"f_D", "Retrain", "GA"} <= set(rows)
