import numpy as np
import pytest

from sonolatent.audio.mel import MelConfig
from sonolatent.errors import SonolatentError
from sonolatent.render.plots import log_mel, plot_map, plot_morph, plot_traverse


def assert_real_png(p, min_bytes=10_000):
    import matplotlib.image

    assert p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert p.stat().st_size > min_bytes
    img = matplotlib.image.imread(p)
    assert img.shape[0] > 200 and img.shape[1] > 300
    assert float(img[..., :3].std()) > 0.05  # not a blank canvas
    assert not list(p.parent.glob(f".{p.name}.*"))  # no temporary left over


def test_pictures(tmp_path):
    mc = MelConfig()
    t = np.arange(22050) / 44100
    a = log_mel(mc, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    b = log_mel(mc, (0.5 * np.sin(2 * np.pi * 2000 * t)).astype(np.float32)[::2], sr=22050)
    assert a.shape == (100, 22050 // 512 + 1) and b.shape[0] == 100
    out = np.concatenate([a, b], axis=1)
    p = plot_morph(tmp_path / "m.png", [("A", a), ("B", b)], ("morph", out), mc.frame_rate,
                   {"blend": np.linspace(0, 1, out.shape[1])})
    assert_real_png(p)
    p = plot_map(tmp_path / "map.png", np.random.default_rng(0).standard_normal((6, 2)),
                 [f"s{i}" for i in range(6)], ["x", "x", "y", "y", "z", "z"], "PCA 0", "PCA 1", "t")
    assert_real_png(p)
    p = plot_traverse(tmp_path / "tr.png", [a, b, a], [-1, 0, 1], mc.frame_rate, 0, "t")
    assert_real_png(p)
    with pytest.raises(SonolatentError, match="the folder .*nowhere does not exist"):
        plot_traverse(tmp_path / "nowhere" / "tr.png", [a], [0], mc.frame_rate, 0)
    assert not (tmp_path / "nowhere").exists()


def test_an_unwritable_place_is_one_line_and_a_failed_save_leaves_nothing(tmp_path, monkeypatch):
    from sonolatent.render.plots import _figure, save_figure

    with pytest.raises(SonolatentError, match=r"^/proc/x\.png: the folder /proc is not writable"):
        save_figure(_figure(2, 2), "/proc/x.png")     # root passes any mode check; /proc still refuses files
    fig = _figure(2, 2)
    fig.add_subplot(111).plot([0, 1])
    for exc, caught in ((RuntimeError("no"), SonolatentError), (KeyboardInterrupt(), KeyboardInterrupt)):
        def savefig(*a, **k):
            raise exc
        monkeypatch.setattr(fig, "savefig", savefig)
        with pytest.raises(caught):
            save_figure(fig, tmp_path / "p.png")
        assert list(tmp_path.iterdir()) == []          # neither the picture nor its temporary file
