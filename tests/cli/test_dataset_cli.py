import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sonolatent.cli.main import main

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SONOLATENT = Path(sys.executable).parent / "sonolatent"
SMALL = ["--programs", "0,73", "--pitches", "60,72", "--velocities", "100", "--durations", "0.5",
         "--release", "0.5", "--quiet"]


def _tone(path, seconds=0.3, sr=44100):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), 0.4 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * sr)) / sr), sr)


def test_sf2_in_process(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["dataset", "sf2", "--soundfont", SOUNDFONT, "--out", str(out), *SMALL, "--valid-programs", "73"]) == 0
    stdout = capsys.readouterr().out
    assert "wrote 4 files" in stdout
    lines = (out / "manifest.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert {(e["program"], e["pitch"], e["split"]) for e in entries} == {
        (0, 60, "train"), (0, 72, "train"), (73, 60, "valid"), (73, 72, "valid")}
    summary = json.loads((out / "dataset.json").read_text())
    assert summary["settings"]["valid_programs"] == [73] and summary["counts"] == {"train": 2, "valid": 2}


def test_folder_in_process(tmp_path, capsys):
    _tone(tmp_path / "src" / "a" / "one.wav")
    _tone(tmp_path / "src" / "b" / "two.wav")
    (tmp_path / "src" / "b" / "x.wav").write_bytes(b"garbage" * 30)
    rc = main(["dataset", "folder", str(tmp_path / "src"), "--out", str(tmp_path / "ds"), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 0
    assert "wrote 2 files" in captured.out and "skipped 1" in captured.out
    warning_lines = captured.err.strip().splitlines()
    assert len(warning_lines) == 1 and warning_lines[0].startswith("sonolatent: warning:") and "x.wav" in warning_lines[0]


def _bad_cases(tmp_path):
    (tmp_path / "afile").write_text("x")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "manifest.jsonl").write_text("")
    return {
        "missing soundfont": (["sf2", "--soundfont", str(tmp_path / "no.sf2"), "--out", str(tmp_path / "o1")], "no such file"),
        "out not writable": (["sf2", "--out", str(tmp_path / "afile" / "sub"), *SMALL], "cannot create"),
        "existing dataset": (["sf2", "--out", str(existing), *SMALL], "--force"),
        "nothing rendered": (["sf2", "--out", str(tmp_path / "o2"), "--programs", "0", "--pitches", "127",
                              "--velocities", "100", "--durations", "0.5"], "nothing rendered"),
        "bad pitches": (["sf2", "--out", str(tmp_path / "o3"), "--pitches", "96:24"], "--pitches"),
        "missing drum kit": (["sf2", "--out", str(tmp_path / "o4"), "--drums", "60", *SMALL], "--drums"),
        "missing folder": (["folder", str(tmp_path / "nope"), "--out", str(tmp_path / "o5")], "no such folder"),
    }


@pytest.mark.parametrize("case", ["missing soundfont", "out not writable", "existing dataset", "nothing rendered",
                                  "bad pitches", "missing drum kit", "missing folder"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case):
    argv, words = _bad_cases(tmp_path)[case]
    assert main(["dataset", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sonolatent: error:") and words in err
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))


def test_subprocess(tmp_path):
    out = tmp_path / "ds"
    r = subprocess.run([str(SONOLATENT), "dataset", "sf2", "--out", str(out), *SMALL],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "wrote 4 files" in r.stdout and r.stderr == ""
    r = subprocess.run([str(SONOLATENT), "dataset", "sf2", "--out", str(out), *SMALL],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "already holds a dataset" in r.stderr
    r = subprocess.run([str(SONOLATENT), "dataset", "sf2", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "examples:" in r.stdout and "--valid-programs" in r.stdout
