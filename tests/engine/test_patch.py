"""Patch files: the shipped patches, the full format, line-numbered errors, save/load round trips."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from sonolatent.params.namespace import build_namespace
from sonolatent.engine.patch import (checkpoint_warning, load_patch, parse_patch, patch_text, read_patch,
                                     resolve_patch, write_patch)
from sonolatent.engine.runtime import Engine
from sonolatent.errors import ConfigError, SonolatentError
from sonolatent.midi import load_mapping
from sonolatent.models.synth import StreamingSynth

from .test_runtime import wait_for

REPO = Path(__file__).resolve().parents[2]
PATCHES = REPO / "patches"
SHIPPED = ["demo", "morph_modwheel", "xy_pad", "drone_knobs", "chords", "mpe"]
MAPS = {"demo": "modwheel_morph", "morph_modwheel": "modwheel_morph", "xy_pad": "xy_pad",
        "drone_knobs": "drone_knobs", "chords": "chords", "mpe": "mpe"}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_patches_are_complete_and_point_at_real_files(name):
    ns = build_namespace(16)
    p = load_patch(PATCHES / f"{name}.toml", ns)
    assert p.name == name and p.description and p.warnings == []
    assert p.checkpoint == "checkpoints/default" and p.checkpoint_path() == REPO / "checkpoints" / "default"
    assert p.midi_map_path() == PATCHES / "midi" / f"{MAPS[name]}.toml"
    load_mapping(p.midi_map_path())
    for sample in p.slots.values():
        assert (PATCHES / "samples" / f"{sample}.wav").is_file()
    # every settable parameter is in it (the views /sono/xy/x|y and the single offsets aside)
    settable = {a for a, prm in ns.items() if not prm.action and prm.access & 2 and a not in ("/sono/xy/x", "/sono/xy/y")
                and not (a.startswith("/sono/latent/") and not a.endswith("/scale"))}
    assert {a for a, _ in p.changes} == settable
    assert p.autoplay == (name not in ("morph_modwheel", "chords", "mpe"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_patches_load_into_the_engine_and_autoplay_sounds(name, bundle, capsys):
    """A tiny model (8 latent coordinates, another checkpoint): one warning line, no error, sound when autoplay."""
    e = Engine(StreamingSynth(bundle), samples_dir=PATCHES / "samples", mode="headless", patches_dir=PATCHES)
    try:
        e.load_patch_file(PATCHES / f"{name}.toml")
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "made for checkpoint checkpoints/default" in err[0] and f"{name}.toml:" in err[0]
        patch = load_patch(PATCHES / f"{name}.toml")
        for k, sample in patch.slots.items():
            assert e.value(f"/sono/slot/{k}/name") == (sample,)
        assert e.value("/sono/gain") == dict(patch.changes)["/sono/gain"]
        y = np.concatenate([e.core.render_block() for _ in range(40)])
        if patch.autoplay:
            assert e.core.env_target == pytest.approx(patch.velocity) and np.sqrt(np.mean(y ** 2)) > 1e-4
        else:
            assert e.core.env_target == 0.0 and np.abs(y).max() == 0.0
    finally:
        e.close()


def test_patch_text_round_trips_the_full_format(tmp_path):
    ns = build_namespace(16)
    a = load_patch(PATCHES / "xy_pad.toml", ns)
    values = dict(a.changes)
    text = patch_text(a.slots, values, ns, ("/sono/xy",), name=a.name, description=a.description,
                      checkpoint=a.checkpoint, autoplay=a.autoplay, velocity=a.velocity, midi_map=a.midi_map)
    (tmp_path / "midi").mkdir()
    b = parse_patch(text, tmp_path / "again.toml", ns)
    assert (b.name, b.description, b.checkpoint, b.slots, b.changes, b.autoplay, b.velocity, b.midi_map) == \
        (a.name, a.description, a.checkpoint, a.slots, a.changes, a.autoplay, a.velocity, a.midi_map)
    assert patch_text(b.slots, dict(b.changes), ns, ("/sono/xy",), name=b.name, description=b.description,
                      checkpoint=b.checkpoint, autoplay=b.autoplay, velocity=b.velocity, midi_map=b.midi_map) == text


def test_the_interim_format_still_loads(tmp_path):
    p = tmp_path / "old.toml"
    p.write_text('[slots]\n0 = "piano"\n[params]\n"/sono/morph" = 0.25\n"/sono/xy" = [0.2, 0.7]\n')
    slots, changes = read_patch(p, build_namespace(16))
    assert slots == {0: "piano"} and changes == [("/sono/morph", (0.25,)), ("/sono/xy", (0.2, 0.7))]
    patch = load_patch(p)
    assert patch.name == "old" and not patch.autoplay and patch.midi_map is None and patch.checkpoint is None
    assert checkpoint_warning(patch, "/anything") is None


def test_autoplay_adds_play_last_and_latent_coordinates_fit_the_model(tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('[params]\n"/sono/latent" = [1, 2, 0, 0]\n"/sono/latent/3/scale" = 0.5\n'
                 '"/sono/latent/1/scale" = 1.0\n[play]\nautoplay = true\nvelocity = 0.5\n')
    slots, changes = read_patch(p, build_namespace(2))
    assert changes == [("/sono/latent", (1.0, 2.0)), ("/sono/latent/1/scale", (1.0,)), ("/sono/play", (0.5,))]
    patch = load_patch(p, build_namespace(2))
    assert len(patch.warnings) == 1 and "p.toml:3:" in patch.warnings[0] and "coordinate 3 ignored" in patch.warnings[0]
    patch = load_patch(p, build_namespace(6))       # padded with zeros
    assert patch.changes[0] == ("/sono/latent", (1.0, 2.0, 0.0, 0.0, 0.0, 0.0)) and patch.warnings == []
    p.write_text('[params]\n"/sono/latent" = [0, 0, 3]\n')
    assert "the ones beyond 2 ignored" in load_patch(p, build_namespace(2)).warnings[0]


@pytest.mark.parametrize("text, message", [
    ('[patch]\nname = "x"\nauthor = "me"\n', r"p\.toml:3: \[patch\] key 'author': unknown key"),
    ('[slots]\n0 = "a"\n9 = "b"\n', r"p\.toml:3: \[slots\] key '9': not a slot number 0\.\.7"),
    ('[slots]\n0 = 3\n', r"p\.toml:2: \[slots\] key '0': must be a sample name"),
    ('[params]\n"/sono/gain" = 0.5\n"/sono/nope" = 1\n', r"p\.toml:3: \[params\] key '/sono/nope': not an address"),
    ('[params]\n"/sono/play" = 1\n', r"p\.toml:2: \[params\] key '/sono/play': cannot be set from a patch"),
    ('[params]\n\n"/sono/xy" = [1]\n', r"p\.toml:3: \[params\] key '/sono/xy': /sono/xy: expects 2 value"),
    ('[params]\n"/sono/gain" = "loud"\n', r"p\.toml:2: \[params\] key '/sono/gain': .*must be a finite number"),
    ('[play]\nautoplay = "yes"\n', r"p\.toml:2: \[play\] key 'autoplay': must be true or false"),
    ('[play]\nautoplay = true\nvelocity = 2\n', r"p\.toml:3: \[play\] key 'velocity': must be a number 0\.\.1"),
    ('[midi]\nmap = ""\n', r"p\.toml:2: \[midi\] key 'map': must be a non-empty string"),
    ('[midi]\nmapping = "x.toml"\n', r"p\.toml:2: \[midi\] key 'mapping': unknown key \(expected map\)"),
    ('[slots]\n0 = "a"\n[extra]\nx = 1\n', r"p\.toml:3: unknown section 'extra'"),
    ('[slots]\n0 = "a\n', r"p\.toml:2: TOML syntax error"),
])
def test_mistakes_name_the_file_line_and_key(tmp_path, text, message):
    p = tmp_path / "p.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_patch(p)


def test_checkpoint_references_resolve_from_the_patch_or_the_repo(tmp_path):
    (tmp_path / "mine").mkdir()
    p = tmp_path / "p.toml"
    p.write_text('[patch]\ncheckpoint = "mine"\n')
    patch = load_patch(p)
    assert patch.checkpoint_path() == tmp_path / "mine" and checkpoint_warning(patch, tmp_path / "mine") is None
    w = checkpoint_warning(patch, REPO / "checkpoints" / "default")
    assert w.startswith(f"{p}:2: [patch] key 'checkpoint': made for checkpoint mine")
    p.write_text('[patch]\ncheckpoint = "checkpoints/default"\n')
    assert checkpoint_warning(load_patch(p), REPO / "checkpoints" / "default") is None
    p.write_text('[patch]\ncheckpoint = "nowhere/model"\n')
    assert "checkpoint nowhere/model not found" in checkpoint_warning(load_patch(p), tmp_path)


def test_patch_names_are_names(tmp_path):
    assert resolve_patch(tmp_path, "v1.2") == (tmp_path / "v1.2.toml").resolve()
    for bad in ("../x", "/etc/passwd", ".hidden", "a/b", ""):
        with pytest.raises(SonolatentError):
            resolve_patch(tmp_path, bad)


def test_write_patch_is_atomic_fsynced_0644_and_fails_in_one_line(tmp_path, monkeypatch):
    import os

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    p = tmp_path / "p.toml"
    p.write_text("old")
    os.chmod(p, 0o600)
    write_patch(p, "[slots]\n")
    assert p.read_text() == "[slots]\n" and p.stat().st_mode & 0o777 == 0o644 and len(synced) == 1
    assert [f.name for f in tmp_path.iterdir()] == ["p.toml"]
    for bad, why in ((tmp_path / "no" / "p.toml", "No such file"), (Path("/proc/p.toml"), "")):
        with pytest.raises(SonolatentError, match=f"^{bad}: cannot write .*{why}"):
            write_patch(bad, "x\n")
    assert not (tmp_path / "no").exists()


def test_save_over_osc_writes_the_full_format_atomically_and_recalls_it(bundle, tmp_path, capsys):
    """Load a shipped patch, change things, save by name, change more, load by name: all back."""
    patches = tmp_path / "patches"
    shutil.copytree(PATCHES / "midi", patches / "midi")
    shutil.copy(PATCHES / "morph_modwheel.toml", patches)
    e = Engine(StreamingSynth(bundle), samples_dir=PATCHES / "samples", mode="headless", patches_dir=patches,
               checkpoint=str(bundle.folder))
    e.load_patch_file(patches / "morph_modwheel.toml")
    e.start()
    try:
        e.submit([("/sono/morph", (0.75,)), ("/sono/latent/1", (2.0,)), ("/sono/slot/2/load", ("flute_c5",)),
                  ("/sono/position", (0.3,))], None, None)
        assert wait_for(lambda: e.value("/sono/slot/2/name") == ("flute_c5",))
        e.submit([("/sono/patch/save", ("mine",))], None, None)
        assert wait_for(lambda: (patches / "mine.toml").exists())
        saved = load_patch(patches / "mine.toml", e.namespace)
        assert saved.name == "mine" and saved.slots == {0: "piano_c4", 1: "strings_c4", 2: "flute_c5"}
        assert saved.description.startswith("Piano to strings") and saved.midi_map == "midi/modwheel_morph.toml"
        assert not saved.autoplay and saved.checkpoint == str(Path(bundle.folder).resolve())
        ch = dict(saved.changes)
        assert ch["/sono/morph"] == (0.75,) and ch["/sono/latent"][1] == 2.0 and ch["/sono/position"] == (0.3,)
        assert [a for a, _ in saved.changes][-2:] == ["/sono/morph/pair", "/sono/morph"]
        assert not list(patches.glob(".*"))                       # no temporary file left
        assert (patches / "mine.toml").stat().st_mode & 0o777 == 0o644
        e.submit([("/sono/morph", (0.1,)), ("/sono/latent/1", (0.0,)), ("/sono/slot/2/clear", ()),
                  ("/sono/play", (0.9,))], None, None)
        assert wait_for(lambda: e.value("/sono/slot/2/name") == ("",))
        e.submit([("/sono/patch/save", ("playing",))], None, None)     # the voice is on: autoplay
        assert wait_for(lambda: (patches / "playing.toml").exists())
        p2 = load_patch(patches / "playing.toml", e.namespace)
        assert p2.autoplay and p2.velocity == pytest.approx(0.9)
        e.submit([("/sono/patch/load", ("mine",))], None, None)
        assert wait_for(lambda: e.value("/sono/slot/2/name") == ("flute_c5",))
        assert e.value("/sono/morph") == (0.75,) and e.value("/sono/latent/1") == (2.0,)
        assert e.core.start_point == 0.3
    finally:
        e.request_quit()
        e.wait(10)
        e.close()
