import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from sonolatent.audio.mel import MelConfig
from sonolatent.errors import CheckpointError
from sonolatent.models import MelVAE, VAEConfig, Vocoder, VocoderConfig, load_bundle, load_checkpoint, save_checkpoint
from sonolatent.models.checkpoint import DEFAULT_CHECKPOINT

TINY = VAEConfig(channels=32, dec_layers=2, enc_blocks=1)


@pytest.fixture
def vae_dir(tmp_path):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / "vae", MelVAE(MelConfig(), TINY), {"data": "unit test", "steps": 0})


def test_round_trip_is_exact_and_records_provenance(vae_dir):
    model, meta = load_checkpoint(vae_dir, "vae")
    ref = load_file(str(vae_dir / "model.safetensors"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k])
    assert meta["format_version"] == 1 and meta["kind"] == "vae"
    prov = meta["provenance"]
    assert prov["data"] == "unit test" and len(prov["sha256"]) == 64 and "created" in prov and "git_commit" in prov
    assert MelConfig.from_dict(meta["mel"]) == MelConfig() and model.config == TINY


def _edit(folder, fn):
    meta = json.loads((folder / "config.json").read_text())
    fn(meta)
    (folder / "config.json").write_text(json.dumps(meta))


def _resign(folder):
    from sonolatent.models.checkpoint import sha256_file
    _edit(folder, lambda m: m["provenance"].__setitem__("sha256", sha256_file(folder / "model.safetensors")))


@pytest.mark.parametrize("case,words", [
    ("no_folder", "not found"),
    ("no_config", "missing config.json"),
    ("no_weights", "missing model.safetensors"),
    ("bad_json", "not valid JSON"),
    ("version", "unknown format version 99"),
    ("not_ours", "not a sonolatent checkpoint"),
    ("sha", "sha256 mismatch"),
    ("missing_key", "missing dec_out.weight"),
    ("extra_key", "unexpected bogus"),
    ("shape", "has shape"),
    ("bad_config", "bad config"),
    ("wrong_kind", "a vocoder was expected"),
    ("garbage_weights", "unreadable weights"),
])
def test_every_load_error_is_one_clear_line(vae_dir, tmp_path, case, words):
    f = vae_dir
    w = f / "model.safetensors"
    kind = "vae"
    if case == "no_folder":
        f = tmp_path / "nothing"
    elif case == "no_config":
        (f / "config.json").unlink()
    elif case == "no_weights":
        w.unlink()
    elif case == "bad_json":
        (f / "config.json").write_text("{not json")
    elif case == "version":
        _edit(f, lambda m: m.__setitem__("format_version", 99))
    elif case == "not_ours":
        _edit(f, lambda m: m.__setitem__("format", "pickle-party"))
    elif case == "sha":
        t = load_file(str(w))
        t["dec_out.bias"] = t["dec_out.bias"] + 1
        save_file(t, str(w))
    elif case in ("missing_key", "extra_key", "shape"):
        t = load_file(str(w))
        if case == "missing_key":
            del t["dec_out.weight"]
        elif case == "extra_key":
            t["bogus"] = torch.zeros(1)
        else:
            t["dec_out.bias"] = torch.zeros(3)
        save_file(t, str(w))
        _resign(f)
    elif case == "bad_config":
        _edit(f, lambda m: m["model"].__setitem__("latent_dim", 99))
    elif case == "wrong_kind":
        kind = "vocoder"
    elif case == "garbage_weights":
        w.write_bytes(b"\x00" * 64)
        _resign(f)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(f, kind)
    msg = str(e.value)
    assert words in msg and "\n" not in msg, msg


@pytest.mark.parametrize("kind,path,value,words", [
    ("vae", ("model", "channels"), -5, "vae: channels must be positive, got -5"),
    ("vae", ("mel", "hop_length"), 512.5, "mel.hop_length: expected a whole number, got 512.5"),
    ("vae", ("mel", "log_floor"), 0.0, "mel: log_floor must be positive"),
    ("vae", ("mel", "n_mels"), 0, "mel: n_mels must be positive"),
    ("vae", ("kind",), ["vae"], "unknown model kind"),
    ("vae", ("provenance",), [], "records no sha256"),
    ("vocoder", ("model", "upsample"), 0, "vocoder: upsample must be positive"),
    ("vocoder", ("model", "dim"), 0, "vocoder: dim must be positive"),
    ("vocoder", ("model", "mlp_ratio"), float("nan"), "vocoder.mlp_ratio: expected a number"),
    ("vae", ("trainer_notes",), "x", "unknown top-level key(s) 'trainer_notes'"),   # strict means strict
])
def test_a_hand_edited_config_is_one_clear_line(tmp_path, kind, path, value, words):
    """Values no model can be built from are refused by name, never a torch/ZeroDivision traceback."""
    model = MelVAE(MelConfig(), TINY) if kind == "vae" else Vocoder(MelConfig(), VocoderConfig(dim=16, n_layers=1))
    f = save_checkpoint(tmp_path / kind, model)

    def put(meta):
        for key in path[:-1]:
            meta = meta[key]
        meta[path[-1]] = value
    _edit(f, put)
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(f, kind)
    msg = str(e.value)
    assert words in msg and "\n" not in msg, msg


def test_no_pickle_on_the_loading_path(tiny_bundle_dir, monkeypatch):
    """Loading must work with every unpickling entry point poisoned."""
    import pickle

    def boom(*a, **k):
        raise AssertionError("pickle used while loading a checkpoint")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, boom)
    monkeypatch.setattr(torch, "load", boom)
    b = load_bundle(tiny_bundle_dir)
    assert b.vae.latent_dim == 8


def test_bundle_refuses_a_mel_mismatch(tmp_path):
    save_checkpoint(tmp_path / "b" / "vae", MelVAE(MelConfig(), TINY))
    save_checkpoint(tmp_path / "b" / "vocoder", Vocoder(MelConfig(n_mels=80), VocoderConfig(dim=16, n_layers=1)))
    with pytest.raises(CheckpointError, match="different mel definitions.*n_mels 100 vs 80"):
        load_bundle(tmp_path / "b")


def test_bundle_loads_and_reports_delay(tiny_bundle_dir):
    b = load_bundle(tiny_bundle_dir)
    assert b.sample_rate == 44100 and b.delay == 512


def test_a_bundle_can_name_its_parts_and_share_a_model(tiny_bundle_dir, tmp_path):
    """bundle.json points a bundle at models elsewhere (relative to it): one VAE, two vocoders."""
    other = tmp_path / "other"
    save_checkpoint(other / "vocoder", Vocoder(MelConfig(), VocoderConfig(dim=16, n_layers=1, istft_n_fft=2048,
                                                                            upsample=1)))
    (other / "bundle.json").write_text(json.dumps({"vae": os.path.relpath(tiny_bundle_dir / "vae", other)}))
    b = load_bundle(other)
    assert b.vocoder.config.istft_n_fft == 2048 and b.delay == 1024
    assert b.meta["vae"]["provenance"]["sha256"] == load_bundle(tiny_bundle_dir).meta["vae"]["provenance"]["sha256"]
    for bad, why in (("{", "not readable JSON"), ('{"voc": "x"}', "expected"), ('{"vae": 3}', "expected")):
        (other / "bundle.json").write_text(bad)
        with pytest.raises(CheckpointError, match=why):
            load_bundle(other)
    (other / "bundle.json").write_text('{"vae": "nowhere"}')
    with pytest.raises(CheckpointError, match="nowhere"):
        load_bundle(other)


def test_save_replaces_atomically(vae_dir):
    torch.manual_seed(1)
    save_checkpoint(vae_dir, MelVAE(MelConfig(), TINY))
    load_checkpoint(vae_dir, "vae")
    assert not list(vae_dir.parent.glob(".vae*"))


def test_shipped_bundles_share_one_vae():
    """The default bundle (1024-point vocoder, 11.6 ms) and the long-window one (2048-point, twice the delay)."""
    default, long = load_bundle(), load_bundle(DEFAULT_CHECKPOINT.parent / "long-window")
    assert long.meta["vae"]["provenance"]["sha256"] == default.meta["vae"]["provenance"]["sha256"]
    assert (default.vocoder.config.istft_n_fft, default.delay) == (1024, 512)
    assert (long.vocoder.config.istft_n_fft, long.delay) == (2048, 1024)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_checkpoints_take_the_users_umask(tmp_path, mask):
    """Not 0700 folders and 0600 weights (mkdtemp's and safetensors' own modes): what mkdir and open give."""
    model = MelVAE(MelConfig(), VAEConfig(channels=8, dec_layers=1, enc_blocks=0, latent_dim=2))
    old = os.umask(mask)
    try:
        folder = save_checkpoint(tmp_path / "ck" / "vae", model)
        save_checkpoint(folder, model)        # replacing one, too
    finally:
        os.umask(old)
    mode = lambda p: os.stat(p).st_mode & 0o777   # noqa: E731
    assert mode(folder) == 0o777 & ~mask
    assert mode(folder / "model.safetensors") == mode(folder / "config.json") == 0o666 & ~mask
    assert sorted(p.name for p in folder.parent.iterdir()) == ["vae"]   # no temporary folder left


def test_an_export_cut_short_is_reported_by_the_next_run(tmp_path, monkeypatch):
    """What a killed export leaves (its temporary folder, as the cleanup never ran) is found and named."""
    import sonolatent.models.checkpoint as ck
    from sonolatent.outputs import report_stale_parts

    def killed(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ck, "save_file", killed)
    monkeypatch.setattr(ck.shutil, "rmtree", lambda *a, **k: None)     # as after kill -9: no cleanup
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "vae", MelVAE(MelConfig(), TINY))
    monkeypatch.undo()
    (tmp_path / ".notes.txt").write_text("not ours")
    said = []
    found = report_stale_parts(tmp_path, tmp_path, warn=said.append)
    assert [p.name.startswith(".vae.") and p.is_dir() for p in found] == [True]
    assert len(said) == 1 and "1 unfinished temporary file" in said[0] and found[0].name in said[0]
