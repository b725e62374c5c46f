import numpy as np
import pytest
import soundfile as sf

from sonolatent.audio.io import AudioReader, AudioWriter, peak_normalize, read_audio, resample, write_audio
from sonolatent.errors import AudioFileError, SonolatentError


def _stereo(sr, seconds=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 660 * t)], 1).astype(np.float32) * 0.5


@pytest.mark.parametrize("ext,fmt,sub", [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_24"),
                                          ("ogg", "OGG", "VORBIS"), ("aiff", "AIFF", "PCM_16")])
def test_reads_formats_rates_and_channels(tmp_path, ext, fmt, sub):
    p = tmp_path / f"x.{ext}"
    sf.write(p, _stereo(48000), 48000, format=fmt, subtype=sub)
    y, sr = read_audio(p, 44100)
    assert sr == 44100 and y.ndim == 1 and y.dtype == np.float32
    assert abs(len(y) - 22050) <= 2
    assert 0.3 < np.abs(y).max() < 0.8


def test_mixes_to_mono(tmp_path):
    p = tmp_path / "s.wav"
    x = _stereo(44100)
    sf.write(p, x, 44100, subtype="FLOAT")
    y, _ = read_audio(p)
    np.testing.assert_allclose(y, x.mean(1), atol=1e-6)


@pytest.mark.parametrize("fmt,sub,tol", [("16", "PCM_16", 1e-4), ("24", "PCM_24", 1e-6), ("float", "FLOAT", 0)])
def test_write_formats_roundtrip(tmp_path, fmt, sub, tol):
    x = (np.random.default_rng(0).standard_normal(1000) * 0.1).astype(np.float32)
    p = write_audio(tmp_path / "o.wav", x, 44100, fmt)
    assert sf.info(p).subtype == sub
    y, _ = sf.read(p, dtype="float32")
    assert np.abs(y - x).max() <= tol
    assert not list(tmp_path.glob(".*part"))


def test_bad_inputs_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio at all" * 10)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0,), np.float32), 44100)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(4410, np.float32), 44100)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.array([0.1, np.nan, 0.2] * 100, np.float32), 44100, subtype="FLOAT")
    short = tmp_path / "short.wav"
    sf.write(short, np.full(100, 0.5, np.float32), 44100)
    long = tmp_path / "long.wav"
    sf.write(long, np.full(44100 * 3, 0.1, np.float32), 44100)
    cases = [(tmp_path / "missing.wav", {}, "no such file"), (garbage, {}, "not a readable sound file"),
             (empty, {}, "no audio"), (silent, {}, "silent"), (nan, {}, "NaN"),
             (short, {"min_seconds": 0.1}, "too short"), (long, {"max_seconds": 2}, "too long"),
             (tmp_path, {}, "folder")]
    for path, kw, words in cases:
        with pytest.raises(AudioFileError) as e:
            read_audio(path, **kw)
        msg = str(e.value)
        assert str(path) in msg and words in msg and "\n" not in msg


def test_write_refuses_bad_targets_and_nan(tmp_path):
    with pytest.raises(SonolatentError, match="does not exist"):
        write_audio(tmp_path / "nope" / "o.wav", np.zeros(10), 44100)
    with pytest.raises(SonolatentError, match="NaN"):
        write_audio(tmp_path / "o.wav", np.array([np.nan]), 44100)
    with pytest.raises(SonolatentError, match="format"):
        write_audio(tmp_path / "o.wav", np.zeros(10), 44100, "32")
    assert not (tmp_path / "o.wav").exists()


def test_write_names_a_file_used_as_a_folder_and_leaves_nothing_on_ctrl_c(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SonolatentError, match="afile is a file, not a folder"):
        write_audio(tmp_path / "afile" / "o.wav", np.zeros(10), 44100)
    with pytest.raises(SonolatentError, match="is a folder"):
        write_audio(tmp_path, np.zeros(10), 44100)

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr("sonolatent.audio.io.sf.SoundFile.write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_audio(tmp_path / "o.wav", np.zeros(10), 44100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]   # no o.wav, no .o.wav.*.part


def test_peak_normalize():
    y = peak_normalize(np.array([0.1, -0.5, 0.2], np.float32), -6.0)
    assert abs(np.abs(y).max() - 10 ** (-6 / 20)) < 1e-6
    assert np.all(peak_normalize(np.zeros(4, np.float32)) == 0)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_the_block_reader_gives_the_whole_files_samples_in_bounded_blocks(tmp_path, rate):
    """AudioReader decodes, mixes and resamples a block at a time (streaming soxr): the blocks together
    are the file read whole and resampled in one piece, sample for sample, and none is much longer than
    a block."""
    p = tmp_path / "s.wav"
    x = _stereo(rate, 2.3)
    sf.write(p, x, rate, subtype="FLOAT")
    reader = AudioReader(p, 44100, blocksize=1001)
    blocks = list(reader)
    whole = resample(x.mean(1).astype(np.float32), rate, 44100)
    got = np.concatenate(blocks)
    assert len(blocks) > 50 and max(len(b) for b in blocks) <= 2 * 1001
    assert reader.samples == len(got) == len(whole) and np.array_equal(got, whole)


def test_the_block_reader_refuses_what_read_audio_refuses(tmp_path):
    p = tmp_path / "q.wav"
    sf.write(p, np.zeros(44100, np.float32), 44100)
    with pytest.raises(AudioFileError, match="silent"):
        list(AudioReader(p, blocksize=1000))
    assert len(list(AudioReader(p, blocksize=1000, allow_silent=True))) == 45
    x = _stereo(44100, 1.0)
    x[30000, 1] = np.nan
    sf.write(p, x, 44100, subtype="FLOAT")
    got = []
    with pytest.raises(AudioFileError, match="NaN"):
        for b in AudioReader(p, blocksize=1000):
            got.append(b)
    assert len(got) == 30   # found in the block that holds it


def test_the_block_writer_leaves_nothing_when_stopped_half_way(tmp_path):
    """A failure (or Ctrl-C) between blocks: no file under the final name, no temporary file; a whole run
    resamples on the way like resample() of the whole."""
    out = tmp_path / "o.wav"
    with pytest.raises(KeyboardInterrupt):
        with AudioWriter(out, 44100, "float") as w:
            w.write(np.zeros(1000, np.float32))
            raise KeyboardInterrupt
    with pytest.raises(SonolatentError, match="NaN"):
        with AudioWriter(out, 44100, "float") as w:
            w.write(np.zeros(1000, np.float32))
            w.write(np.array([np.nan], np.float32))
    assert list(tmp_path.iterdir()) == []
    x = _stereo(44100, 1.0)[:, 0]
    with AudioWriter(out, 22050, "float", source_rate=44100) as w:
        for i in range(0, len(x), 999):
            w.write(x[i:i + 999])
    y, sr = sf.read(out, dtype="float32")
    assert sr == 22050 and w.frames == len(y) and np.array_equal(y, resample(x, 44100, 22050))
    assert [p.name for p in tmp_path.iterdir()] == ["o.wav"]
