"""Sample names resolve inside the sample folder only; sounds are encoded to latent trajectories."""

import os

import numpy as np
import pytest

from sonolatent.engine.slots import SampleCache, resolve_sample
from sonolatent.errors import SonolatentError
from sonolatent.models.synth import StreamingSynth


def test_names_with_and_without_extension_and_in_subfolders(samples_dir):
    assert resolve_sample(samples_dir, "sine") == (samples_dir / "sine.wav").resolve()
    assert resolve_sample(samples_dir, "sine.wav") == (samples_dir / "sine.wav").resolve()
    assert resolve_sample(samples_dir, "sub/short") == (samples_dir / "sub" / "short.wav").resolve()


@pytest.mark.parametrize("name", ["../outside", "sub/../../outside", "/etc/passwd", "", "~/x", "a\x00b"])
def test_names_leaving_the_folder_or_malformed_are_refused(tmp_path, name):
    root = tmp_path / "samples"
    root.mkdir()
    (tmp_path / "outside.wav").write_bytes(b"RIFF")
    with pytest.raises(SonolatentError):
        resolve_sample(root, name)


def test_dotdot_to_a_real_sound_outside_is_refused_with_a_clear_reason(tmp_path, samples_dir):
    root = tmp_path / "samples"
    root.mkdir()
    with pytest.raises(SonolatentError, match="outside the sample folder"):
        resolve_sample(root, os.path.relpath(samples_dir / "sine.wav", root))


def test_symlink_leaving_the_folder_is_refused(tmp_path, samples_dir):
    root = tmp_path / "samples"
    root.mkdir()
    (root / "evil.wav").symlink_to(samples_dir / "sine.wav")
    (root / "evildir").symlink_to(samples_dir)
    with pytest.raises(SonolatentError, match="outside"):
        resolve_sample(root, "evil")
    with pytest.raises(SonolatentError, match="outside"):
        resolve_sample(root, "evildir/saw")


def test_symlink_inside_the_folder_is_fine(tmp_path, samples_dir):
    root = tmp_path / "samples"
    (root / "real").mkdir(parents=True)
    (root / "real" / "a.wav").write_bytes((samples_dir / "sine.wav").read_bytes())
    (root / "alias.wav").symlink_to(root / "real" / "a.wav")
    assert resolve_sample(root, "alias") == (root / "real" / "a.wav").resolve()


def test_missing_sound_names_the_folder(samples_dir):
    with pytest.raises(SonolatentError, match="not found"):
        resolve_sample(samples_dir, "nope")


def test_cache_encodes_once_and_columns_interpolate(bundle, samples_dir):
    cache = SampleCache(StreamingSynth(bundle), samples_dir)
    s = cache.load("sine")
    D = bundle.vae.latent_dim
    assert s.latents.shape[0] == D and s.n_frames == int(0.6 * 44100) // 512 + 1
    assert s.latents.shape[1] == -(-s.n_frames // bundle.vae.config.downsample)
    assert np.allclose(s.column(0.0), s.latents[:, 0]) and np.allclose(s.column(1.0), s.latents[:, -1])
    mid = s.column(0.5)
    assert np.all(mid >= s.latents.min(1) - 1e-9) and np.all(mid <= s.latents.max(1) + 1e-9)
    again = cache.load("sine.wav")
    assert again.latents is s.latents and again.name == "sine.wav"
    assert len(s.sha256) == 64
