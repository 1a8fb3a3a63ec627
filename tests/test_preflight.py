"""Check, then start (study.preflight): a path or store a command cannot use is one line naming it and the
reason, exit 2, before Ray or MLflow starts, and nothing is created. Read-only folders are real: as root
(whom permission bits do not stop) the check runs in a child process that has dropped to user nobody."""

import os
import shutil
import sqlite3
import stat
import tempfile
from pathlib import Path

import pytest
import yaml

from study import preflight
from study.cli import main
from study.errors import UserError

SPEC = {"name": "pre", "base": {"task": {"address_bits": 1}, "hidden": [4], "episodes": 100, "report_every": 50,
                                "eval_episodes": 8, "seeds": 1}}


def problem(fn, *args) -> str | None:
    """The UserError ``fn(*args)`` raises (where: problem), or None."""
    try:
        fn(*args)
    except UserError as err:
        return f"{err.where}: {err.problem}"
    return None


def problem_as_nobody(fn, *args) -> str | None:
    """:func:`problem` in a forked child that runs as user nobody when this process is root."""
    if os.geteuid() != 0:
        return problem(fn, *args)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: drop privileges, run the check, send its answer, leave at once
        try:
            os.setgid(65534)
            os.setuid(65534)
            answer = problem(fn, *args)
            os.write(write, ("ok" if answer is None else "!" + answer).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        answer = f.read()
    os.waitpid(pid, 0)
    assert answer, "the child process sent no answer"
    return None if answer == "ok" else answer[1:]


@pytest.fixture
def shared():
    """A folder user nobody can reach (pytest's tmp_path is private to its owner), with a read-only folder in it."""
    root = Path(tempfile.mkdtemp(prefix="uwm-preflight-test-"))
    root.chmod(0o755)
    (root / "ro").mkdir()
    (root / "ro").chmod(0o555)
    yield root
    (root / "ro").chmod(0o755)
    shutil.rmtree(root)


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_spec_path_that_is_a_folder_a_fifo_or_missing_is_named_with_its_reason(tmp_path):
    fifo = tmp_path / "spec.fifo"
    os.mkfifo(fifo)
    assert problem(preflight.check_input_file, tmp_path) == f"{tmp_path}: is a folder, not a spec file"
    assert problem(preflight.check_input_file, fifo) == f"{fifo}: is a FIFO (named pipe), not a spec file"
    assert problem(preflight.check_input_file, tmp_path / "nope.yaml", "config") == \
        f"{tmp_path / 'nope.yaml'}: no such config file"
    (tmp_path / "ok.yaml").write_text("name: x\n")
    assert problem(preflight.check_input_file, tmp_path / "ok.yaml") is None
    (tmp_path / "link.yaml").symlink_to(tmp_path / "ok.yaml")   # a link to a spec is that spec
    assert problem(preflight.check_input_file, tmp_path / "link.yaml") is None


def test_an_output_folder_that_is_a_file_under_a_file_or_read_only_is_refused(shared):
    (shared / "file").write_text("x")
    before = listing(shared)
    assert problem(preflight.check_output_folder, shared / "file", "--storage") == \
        f"--storage: {shared / 'file'} is a file, not a folder"
    assert problem(preflight.check_output_folder, shared / "file" / "runs", "--storage") == \
        f"--storage: cannot create the folder {shared / 'file' / 'runs'}: {shared / 'file'} is a file"
    assert problem_as_nobody(preflight.check_output_folder, shared / "ro", "--out") == \
        f"--out: cannot write in the folder {shared / 'ro'} (permission denied)"
    assert problem_as_nobody(preflight.check_output_folder, shared / "ro" / "a" / "b", "--storage") == \
        f"--storage: cannot create the folder {shared / 'ro' / 'a' / 'b'}: {shared / 'ro'} is not writable " \
        "(permission denied)"
    assert problem_as_nobody(preflight.check_output_folder, shared / "new" / "runs", "--storage") is not None  # root's
    assert problem(preflight.check_output_folder, shared / "new" / "runs", "--storage") is None
    assert listing(shared) == before   # nothing created, the probe files removed


def test_a_sqlite_store_that_cannot_be_written_is_refused_at_once(shared):
    folder_db = shared / "dir.db"
    folder_db.mkdir()
    assert problem(preflight.check_sqlite_store, folder_db, "sqlite:///x") == \
        f"tracking: the SQLite store {folder_db} of sqlite:///x is a folder, not a file"
    (shared / "text.db").write_text("not a database, but long enough to have a header of sixteen bytes\n" * 4)
    assert "is not a SQLite store" in problem(preflight.check_sqlite_store, shared / "text.db", "sqlite:///t")
    good = shared / "ro" / "good.db"
    (shared / "ro").chmod(0o755)
    con = sqlite3.connect(good)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    good.chmod(0o666)
    (shared / "ro").chmod(0o555)
    content = good.read_bytes()
    assert problem(preflight.check_sqlite_store, good, "sqlite:///g") is None   # root may write there
    assert good.read_bytes() == content   # the probe's write was rolled back
    # an existing store in a read-only folder (SQLite writes its journal beside it), and a new one
    assert problem_as_nobody(preflight.check_sqlite_store, good, "sqlite:///g") == \
        f"tracking: cannot write the SQLite store sqlite:///g: its folder {shared / 'ro'} is not writable " \
        "(permission denied)"
    assert problem_as_nobody(preflight.check_sqlite_store, shared / "ro" / "new.db", "sqlite:///n") is not None
    assert not (shared / "ro" / "new.db").exists()


def test_a_read_only_store_file_in_a_writable_folder_is_refused(shared):
    (shared / "open").mkdir()
    (shared / "open").chmod(0o777)
    db = shared / "open" / "mlflow.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    db.chmod(0o444)
    assert "cannot write the SQLite store sqlite:///s (attempt to write a readonly database)" in \
        problem_as_nobody(preflight.check_sqlite_store, db, "sqlite:///s")


def _spec(tmp_path, **changes) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **changes}))
    return path


@pytest.mark.parametrize("case", ["storage_file", "under_file", "store_dir", "spec_dir"])
def test_run_refuses_an_unusable_path_in_one_line_before_ray_or_mlflow(tmp_path, capsys, monkeypatch, case):
    import ray

    monkeypatch.chdir(tmp_path)
    spec = _spec(tmp_path)
    (tmp_path / "afile").write_text("x")
    args = {"storage_file": [str(spec), "--storage", "afile"],
            "under_file": [str(spec), "--storage", "afile/runs"],
            "store_dir": [str(spec), "--tracking-uri", f"sqlite:///{tmp_path / 'store'}"],
            "spec_dir": [str(tmp_path / "store")]}[case]
    (tmp_path / "store").mkdir()
    before = listing(tmp_path)
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert {"storage_file": "afile is a file, not a folder", "under_file": "afile is a file",
            "store_dir": "is a folder, not a file", "spec_dir": "is a folder, not a spec file"}[case] in err
    assert listing(tmp_path) == before and not ray.is_initialized()


def test_report_into_a_folder_it_cannot_create_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    assert main(["report", "any", "--out", "afile/report"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: --out: cannot create the folder {tmp_path / 'afile' / 'report'}: " \
                          f"{tmp_path / 'afile'} is a file"


@pytest.mark.slow
def test_a_half_started_study_is_refused_naming_the_command_that_works(tmp_path, capsys, monkeypatch):
    """A parent run in MLflow with no study folder in --storage: `run --fresh` starts it again."""
    from study import tracking

    monkeypatch.chdir(tmp_path)
    spec = _spec(tmp_path)
    tracking.StudyTracker(tracking.default_tracking_uri(tmp_path), "pre").open_parent("name: pre\n", "h")
    assert main(["run", "spec.yaml"]) == 2
    err = capsys.readouterr().err
    assert "`uwm-study run spec.yaml --fresh`" in err and "uwm-study resume pre --storage" in err, err
    assert not (tmp_path / "runs").exists()
    assert stat.S_ISREG(spec.stat().st_mode)
