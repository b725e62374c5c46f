"""Training tasks: what one step, validation and export mean for each model."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel as DDP

from ..audio.mel import MelConfig, MelSpectrogram, check_positive, config_from_dict
from ..errors import ConfigError
from ..models.checkpoint import load_checkpoint, save_checkpoint
from ..models.vae import MelVAE, VAEConfig
from ..models.vocoder import Vocoder, VocoderConfig
from .data import ClipBank
from .losses import (MelLoss, MultiResolutionDiscriminator, MultiResolutionSTFTLoss, discriminator_loss,
                     feature_matching_loss, generator_adv_loss)


def _at_least(config, what: str, **lows) -> None:
    for name, low in lows.items():
        v = getattr(config, name)
        if not v >= low:
            raise ConfigError(f"{what}: {name} must be at least {low}, got {v!r}")


@dataclass(frozen=True)
class VAETrainConfig:
    batch_size: int = 16
    frames: int = 128               # mel frames per crop (~1.5 s)
    lr: float = 1e-3
    kl_beta: float = 0.02           # weight of the KL term per mel element
    kl_warmup_steps: int = 5000     # beta rises linearly from 0
    gain_db: tuple = (-9.0, 0.0)    # random gain of each crop
    grad_clip: float = 1.0
    stretch_prob: float = 0.5       # share of crops time-stretched (mel frames resampled in time) ...
    stretch: tuple = (0.5, 4.0)     # ... by a log-uniform factor in this range (> 1: slower)
    interp_weight: float = 0.0      # weight of the morph term: blends of two crops' latents must decode
                                    # to a brightness and loudness between theirs, in proportion
    lr_half_life: int = 0           # steps over which the learning rate halves (0: constant)
    eq_prob: float = 0.0            # share of crops given a random smooth EQ (new timbres from known ones) ...
    eq_db: float = 12.0             # ... of at most this many dB of boost or cut
    mag_weight: float = 0.0         # weight of an L1 on the mel's magnitudes (not logs) relative to the crop's
                                    # total: the loudest bands, the ones heard, weigh most

    def __post_init__(self):
        check_positive(self, "train", ("batch_size", "lr", "grad_clip"))
        _at_least(self, "train", frames=16, kl_beta=0, kl_warmup_steps=0, stretch_prob=0, interp_weight=0,
                  lr_half_life=0, eq_prob=0, eq_db=0, mag_weight=0)
        if self.eq_prob > 1:
            raise ConfigError(f"train: eq_prob must be within 0..1, got {self.eq_prob!r}")
        lo, hi = self.stretch
        if not (self.stretch_prob <= 1 and 0 < lo <= 1 <= hi <= 16):
            raise ConfigError(f"train: stretch must be (low <= 1, high >= 1) within (0, 16] and "
                              f"stretch_prob in 0..1, got {self.stretch!r}, {self.stretch_prob!r}")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return config_from_dict(cls, d, "train")


@dataclass(frozen=True)
class VocoderTrainConfig:
    batch_size: int = 8
    segment: int = 16384            # samples per crop
    lr: float = 5e-4
    mel_weight: float = 1.0
    stft_weight: float = 1.0
    adversarial: bool = False       # adversarial stage (multi-resolution spectrogram discriminator)
    gan_start: int = 0              # step from which the adversarial losses are on
    adv_weight: float = 0.1
    fm_weight: float = 0.2
    gain_db: tuple = (-24.0, 0.0)   # wide loudness augmentation
    grad_clip: float = 5.0
    vae: str = ""                   # a VAE checkpoint: a share of crops is vocoded from its decoded mel ...
    vae_share: float = 0.5          # ... (encode -> decode) against the original audio
    lr_half_life: int = 0           # steps over which the learning rate halves (0: constant)
    frozen_weight: float = 0.0      # weight of the held-frame term (see VocoderTask.frozen_error)

    def __post_init__(self):
        check_positive(self, "train", ("batch_size", "lr", "grad_clip"))
        _at_least(self, "train", segment=4096, gan_start=0, mel_weight=0, stft_weight=0, adv_weight=0, fm_weight=0,
                  vae_share=0, lr_half_life=0, frozen_weight=0)
        if self.vae_share > 1:
            raise ConfigError(f"train: vae_share must be 0..1, got {self.vae_share!r}")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return config_from_dict(cls, d, "train")


def _unwrap(m):
    return m.module if isinstance(m, DDP) else m


class _Task:
    kind = ""
    picture_pairs: list = []  # (target, model) log-mels from the last validation, for valid.png

    def __init__(self, data: list[str], out: str | Path, mel_config: MelConfig, tcfg, provenance: dict, ddp,
                 progress: bool = True, mix: list[float] | None = None):
        self.out, self.ddp = Path(out), ddp
        self.provenance = dict(provenance)
        self.data = [str(d) for d in data]
        from ..datasets.real import provenance as data_provenance
        self._sources = data_provenance(self.data)   # packages, versions and licences of the training audio
        self.progress = progress
        self.tcfg = tcfg
        self.melspec = MelSpectrogram(mel_config)
        self.mix = list(mix) if mix else None
        self.train_bank = ClipBank(data, "train", mel_config.sample_rate, progress, mix=self.mix)
        self.valid_bank = ClipBank(data, "valid", mel_config.sample_rate, progress) if ddp.main else None

    def _wrap(self, model, init: str | None):
        """Start from ``init``'s weights if given; wrap in DDP when distributed."""
        if init:
            src, _ = load_checkpoint(init, model.kind)
            model.mel_config.check_compatible(src.mel_config, "the --init checkpoint and this run")
            def misfit(why: str) -> ConfigError:
                return ConfigError(f"--init {init}: its weights do not fit this model ({why}); "
                                   "give the same model options")
            own, theirs = set(model.state_dict()), set(src.state_dict())
            if theirs - own:
                raise misfit(f"e.g. {sorted(theirs - own)[0]}")
            try:
                model.load_state_dict(src.state_dict(), strict=False)
            except RuntimeError as e:
                raise misfit(str(e).splitlines()[-1].strip()) from None
            if own - theirs:   # a model grown from an older one: the new parts start from scratch
                print(f"sonolatent: --init: {len(own - theirs)} tensors are new in this model and start "
                      f"fresh (e.g. {sorted(own - theirs)[0]})", flush=True)
        return DDP(model) if self.ddp.world > 1 else model

    def resumed(self, info: dict) -> None:
        pass

    def schedule(self, step: int) -> None:
        """Set every optimizer's learning rate for ``step`` (a function of the step alone, so a
        resumed run continues the same schedule)."""
        hl = self.tcfg.lr_half_life
        lr = self.tcfg.lr * (0.5 ** (step / hl) if hl else 1.0)
        for opt in self.optimizers().values():
            for group in opt.param_groups:
                group["lr"] = lr

    def state_info(self) -> dict:
        return {}

    def save_rank_weights(self, path: Path) -> None:
        sd = {k: v.detach().contiguous() for k, v in _unwrap(self.model).state_dict().items()}
        save_file(sd, str(path))

    def _provenance(self, step: int) -> dict:
        p = dict(self.provenance)
        p.update({"data": self.data, **({"mix": self.mix} if self.mix else {}), "sources": self._sources, "steps": step, "train": self.tcfg.to_dict()})
        return p


def stretch_crops(mel: torch.Tensor, frames: int, rng: np.random.Generator, prob: float,
                  factors: tuple[float, float]) -> torch.Tensor:
    """``frames`` log-mel frames from each of the longer crops ``mel`` ``(B, n_mels, T)``; a share
    ``prob`` of them time-stretched by a log-uniform factor in ``factors`` (> 1: slower).

    Stretching resamples the frames in time (linear interpolation): a slowed-down
    or sped-up sound's spectral envelope, so that the VAE decoder also learns
    latent paths that move slower or faster than any training sound (the paths a
    performer makes with rate, freeze and morph). ``T`` must be at least
    ``frames / factors[0] + 1``; unstretched crops are the first ``frames``.
    """
    out = mel[..., :frames].clone()
    lo, hi = factors
    for i in range(mel.shape[0]):
        if rng.random() >= prob:
            continue
        s = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        src = min(mel.shape[-1], int(np.ceil(frames / s)) + 1)   # source frames covering the output
        res = F.interpolate(mel[i:i + 1, :, :src], scale_factor=s, mode="linear", align_corners=False)
        if res.shape[-1] >= frames:
            start = int(rng.integers(0, res.shape[-1] - frames + 1))
            out[i] = res[0, :, start:start + frames]
    return out


def eq_crops(mel: torch.Tensor, rng: np.random.Generator, prob: float, max_db: float,
             log_floor: float) -> torch.Tensor:
    """A share ``prob`` of the log-mel crops ``(B, n_mels, T)`` through a random smooth EQ.

    Each curve is a tilt plus three bells (random centre, width and gain) over the mel
    bands, within +-``max_db``, the same for every frame of its crop: what a different
    body, pickup or microphone does to a sound. The VAE reconstructs the equalised
    crop, so it meets spectral envelopes its instruments never had. The EQ acts on
    the magnitude above the floor, so silence stays silent.
    """
    b, n, _ = mel.shape
    chosen = rng.random(b) < prob
    if not chosen.any():
        return mel
    x = np.linspace(-1.0, 1.0, n)
    rows = np.flatnonzero(chosen)
    curves = np.empty((len(rows), n))
    for c in curves:
        c[:] = rng.uniform(-0.5, 0.5) * x
        for _ in range(3):
            centre, width = rng.uniform(-1.0, 1.0), rng.uniform(0.05, 0.5)
            c += rng.uniform(-1.0, 1.0) * np.exp(-0.5 * ((x - centre) / width) ** 2)
    gain = torch.from_numpy(np.clip(curves, -1.0, 1.0) * max_db * (np.log(10.0) / 20.0)).to(mel.dtype)[:, :, None]
    idx = torch.from_numpy(rows)
    floor = math.exp(log_floor)
    above = (torch.exp(mel[idx]) - floor).clamp(min=0.0)
    out = mel.clone()
    out[idx] = torch.where(mel[idx] > log_floor, torch.log(above * torch.exp(gain) + floor), mel[idx])
    return out


class SpectralShape(torch.nn.Module):
    """Per-frame spectral centroid (Hz) and log energy of log-mels ``(B, n_mels, T)`` -> two ``(B, T)``.

    Each band's power is weighted by its bandwidth, so the figures approximate
    those of the linear spectrum the mel came from (what a listener, and the
    morph benchmark, measure on the audio).
    """

    def __init__(self, config: MelConfig):
        super().__init__()
        import librosa

        f = librosa.mel_frequencies(config.n_mels + 2, fmin=config.fmin, fmax=config.fmax,
                                    htk=config.mel_scale == "htk")
        self.register_buffer("freqs", torch.tensor(f[1:-1], dtype=torch.float32), persistent=False)
        self.register_buffer("widths", torch.tensor(f[2:] - f[:-2], dtype=torch.float32), persistent=False)

    def forward(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        power = torch.exp(2.0 * logmel) * self.widths[:, None]          # (B, n_mels, T)
        total = power.sum(1).clamp(min=1e-20)
        return (power * self.freqs[:, None]).sum(1) / total, torch.log(total)


def blend_latents(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, center: torch.Tensor,
                  spherical: bool) -> torch.Tensor:
    """Torch twin of :mod:`sonolatent.latent.interp` for training: ``(B, D, L)`` latents,
    ``t`` ``(B,)``. Spherical blends rotate about ``center`` ``(D,)``; nearly parallel
    vectors fall back to a straight line. Differentiable everywhere."""
    t = t[:, None, None]
    if not spherical:
        return a + t * (b - a)
    c = center[None, :, None]
    u, v = a - c, b - c
    nu, nv = u.norm(dim=1, keepdim=True), v.norm(dim=1, keepdim=True)
    cos = ((u * v).sum(1, keepdim=True) / (nu * nv).clamp(min=1e-8)).clamp(-0.9999, 0.9999)
    omega = torch.acos(cos)
    so = torch.sin(omega)
    arc = c + (torch.sin((1 - t) * omega) * u + torch.sin(t * omega) * v) / so
    line = a + t * (b - a)
    return torch.where((so > 0.02) & (nu > 1e-6) & (nv > 1e-6), arc, line)


def magnitude_error(rec: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """L1 between two log-mels' magnitudes, over each crop's total magnitude, mean over crops. A log-mel
    L1 weighs a band at the noise floor as much as the note's loudest one; this weighs each band by how
    loud it is (a decoded partial 4 nepers too loud is heard, and the vocoder spreads it into its
    neighbours; the same error at the floor is not)."""
    a, b = rec.exp(), mel.exp()
    return ((a - b).abs().sum((1, 2)) / b.sum((1, 2)).clamp(min=1e-8)).mean()


class VAETask(_Task):
    kind = "vae"

    def __init__(self, data, out, mel_config: MelConfig, model_config: VAEConfig, tcfg: VAETrainConfig,
                 provenance, ddp, init: str | None = None, progress=True, mix: list[float] | None = None):
        super().__init__(data, out, mel_config, tcfg, provenance, ddp, progress, mix)
        self.model = self._wrap(MelVAE(mel_config, model_config), init)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=tcfg.lr, betas=(0.9, 0.99), weight_decay=1e-4)
        self.seg = (tcfg.frames - 1) * mel_config.hop_length
        self.shape = SpectralShape(mel_config)

    def modules(self):
        return {"model": _unwrap(self.model)}

    def optimizers(self):
        return {"opt": self.opt}

    def _loss(self, mel, beta, net=None, keep=False):
        """Reconstruction, KL and total loss (and, with ``keep``, the reconstruction and the
        posterior mean). ``net``: the module to run (validation on rank 0 passes the
        unwrapped model, so that no collective is started)."""
        m = _unwrap(self.model)
        rec, mu, logvar = (net or self.model)(mel)
        recon = F.l1_loss(m.normalize(rec), m.normalize(mel))
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar)
        kl = kl.sum(1).mean() / (m.config.downsample * m.mel_config.n_mels)
        if keep:
            return recon, kl, recon + beta * kl, rec, mu
        return recon, kl, recon + beta * kl

    def train_step(self, rng, step):
        m = _unwrap(self.model)
        if step == 0 and m.config.linear_path and not m.linear_path_fitted:
            self.fit_linear_path()
        self.model.train()
        self.schedule(step)
        beta = self.tcfg.kl_beta * min(1.0, step / max(1, self.tcfg.kl_warmup_steps))
        with torch.no_grad():
            long = self.seg   # with stretching, room for the speed-ups' extra frames
            if self.tcfg.stretch_prob > 0:
                long = int(np.ceil((self.tcfg.frames / self.tcfg.stretch[0] + 2) * self.melspec.config.hop_length))
            mel = self.melspec(self.train_bank.batch(rng, self.tcfg.batch_size, long, self.tcfg.gain_db))
            mel = stretch_crops(mel, self.tcfg.frames, rng, self.tcfg.stretch_prob, self.tcfg.stretch)
            if self.tcfg.eq_prob > 0:
                mel = eq_crops(mel, rng, self.tcfg.eq_prob, self.tcfg.eq_db, math.log(self.melspec.config.log_floor))
        recon, kl, loss, rec, mu = self._loss(mel, beta, keep=True)
        out = {"recon": recon.item(), "kl": kl.item()}
        if self.tcfg.mag_weight > 0:
            mag = magnitude_error(rec, mel)
            loss = loss + self.tcfg.mag_weight * mag
            out["mag"] = mag.item()
        if self.tcfg.interp_weight > 0:
            spherical = bool(rng.random() < 0.5)
            interp = self.interp_error(rec, mu, torch.from_numpy(rng.uniform(0.1, 0.9, mel.shape[0])).float(),
                                       spherical)
            loss = loss + self.tcfg.interp_weight * interp
            out["interp"] = interp.item()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tcfg.grad_clip)
        self.opt.step()
        return out

    def interp_error(self, rec, mu, t, spherical: bool, net=None, warmup: int = 8):
        """How far the decoded blends of each crop with the next one (in the batch) stray from
        moving in proportion, frame by frame: the centroid's error relative to the pair's own
        spread (plus 500 Hz, so near-equal pairs count without dominating) and the log energy's
        error. Frames are weighted by the ends' loudness, held fixed, so the blend cannot buy a
        better figure with a loud burst somewhere; the decoder's first ``warmup`` frames (no
        history yet) are left out. The ends (``rec``) are the targets, held fixed."""
        m = net or _unwrap(self.model)
        other = torch.roll(torch.arange(mu.shape[0]), 1)
        z = blend_latents(mu, mu[other], t, m.pca_mean.detach(), spherical)
        mix = m.decode(z, rec.shape[-1])[..., warmup:]
        with torch.no_grad():
            ca, ea = self.shape(rec[..., warmup:])
            cb, eb = ca[other], ea[other]
            tt = t[:, None]
            want_c, want_e = ca + tt * (cb - ca), ea + tt * (eb - ea)
            spread = (cb - ca).abs() + 500.0
            w = torch.exp(0.5 * ea) + torch.exp(0.5 * eb)             # the ends' loudness (magnitude)
            w = w / w.sum(-1, keepdim=True)
        c, e = self.shape(mix)
        return ((w * (c - want_c).abs() / spread).sum(-1) + 0.1 * (w * (e - want_e).abs()).sum(-1)).mean()

    @torch.no_grad()
    def validate(self):
        m = _unwrap(self.model)
        m.eval()
        mel = self.melspec(self.valid_bank.fixed_batch(32, self.seg))
        mu = m.encode(mel)
        rec = m.decode(mu, mel.shape[-1])
        kl = self._loss(mel, 0.0, net=m)[1]
        self.picture_pairs = [(mel[i].numpy(), rec[i].numpy()) for i in range(0, 32, 8)]
        half = torch.full((mel.shape[0],), 0.5)
        return {"mel_l1": F.l1_loss(rec, mel).item(), "mag": magnitude_error(rec, mel).item(), "kl": kl.item(),
                "interp": self.interp_error(rec, mu, half, True, net=m).item()}

    @torch.no_grad()
    def fit_linear_path(self, max_clips: int = 1500) -> None:
        """Start the per-frame linear paths as a PCA of (a fixed sample of) the training frames."""
        m = _unwrap(self.model)
        frames = [m.normalize(self.melspec(torch.from_numpy(c)[None]))[0].T for c in self._pca_clips(max_clips)]
        m.set_linear_path(torch.cat(frames))
        if self.ddp.main:
            print(f"vae: linear path fitted to a PCA of {sum(len(f) for f in frames)} training frames", flush=True)

    def _pca_clips(self, max_clips: int) -> list:
        clips = self.train_bank.clips
        if len(clips) > max_clips:
            pick = np.random.default_rng(0).choice(len(clips), max_clips, replace=False)
            clips = [clips[i] for i in sorted(pick)]
        return clips

    @torch.no_grad()
    def fit_pca(self, max_clips: int = 1500) -> None:
        """PCA over the posterior means of every frame of (a fixed sample of at most
        ``max_clips``) training clips."""
        m = _unwrap(self.model)
        m.eval()
        lat = []
        for clip in self._pca_clips(max_clips):
            mel = self.melspec(torch.from_numpy(clip)[None])
            lat.append(m.encode(mel)[0].T)
        m.set_pca(torch.cat(lat))

    def export(self, step, final):
        self.fit_pca()
        save_checkpoint(self.out, _unwrap(self.model), self._provenance(step))


class VocoderTask(_Task):
    kind = "vocoder"

    def __init__(self, data, out, mel_config: MelConfig, model_config: VocoderConfig, tcfg: VocoderTrainConfig,
                 provenance, ddp, init: str | None = None, progress=True, mix: list[float] | None = None):
        super().__init__(data, out, mel_config, tcfg, provenance, ddp, progress, mix)
        self.model = self._wrap(Vocoder(mel_config, model_config), init)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=tcfg.lr, betas=(0.8, 0.99), weight_decay=1e-4)
        self.mel_loss = MelLoss(self.melspec)
        self.stft_loss = MultiResolutionSTFTLoss()
        self.vae = None
        if tcfg.vae and tcfg.vae_share > 0:
            # The vocoder plays the decoder's mels live, which are smoother than real ones:
            # learning from them too brings the full model's sound closer to the vocoder's.
            vae, _ = load_checkpoint(tcfg.vae, "vae")
            mel_config.check_compatible(vae.mel_config, "the --vae checkpoint and this run")
            self.vae = vae.eval().requires_grad_(False)
        self.disc = self.opt_d = None
        if tcfg.adversarial:
            disc = MultiResolutionDiscriminator()
            self.disc = DDP(disc) if ddp.world > 1 else disc
            self.opt_d = torch.optim.AdamW(self.disc.parameters(), lr=tcfg.lr, betas=(0.8, 0.99))

    def modules(self):
        mods = {"model": _unwrap(self.model)}
        if self.disc is not None:
            mods["disc"] = _unwrap(self.disc)
        return mods

    def optimizers(self):
        opts = {"opt": self.opt}
        if self.opt_d is not None:
            opts["opt_d"] = self.opt_d
        return opts

    def train_step(self, rng, step):
        self.model.train()
        self.schedule(step)
        t = self.tcfg
        x = self.train_bank.batch(rng, t.batch_size, t.segment, t.gain_db)
        with torch.no_grad():
            mel = self.melspec(x)
            if self.vae is not None:
                pick = torch.from_numpy(rng.random(x.shape[0]) < t.vae_share)
                if pick.any():
                    mel[pick] = self._through_vae(mel[pick])
        y = self.model(mel)[:, : x.shape[-1]]
        out = {}
        adv_on = self.disc is not None and step >= t.gan_start
        if adv_on:
            d_real = self.disc(x)
            d_fake = self.disc(y.detach())
            loss_d = discriminator_loss(d_real, d_fake)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            out["disc"] = loss_d.item()
        l_mel = self.mel_loss(y, x)
        l_stft = self.stft_loss(y, x)
        loss = t.mel_weight * l_mel + t.stft_weight * l_stft
        if t.frozen_weight > 0:
            l_frozen = self.frozen_error(mel, rng)
            loss = loss + t.frozen_weight * l_frozen
            out["frozen"] = l_frozen.item()
        if adv_on:
            d_real = self.disc(x)
            d_fake = self.disc(y)
            loss = loss + t.adv_weight * generator_adv_loss(d_fake) + t.fm_weight * feature_matching_loss(d_real, d_fake)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.opt.step()
        out.update({"mel": l_mel.item(), "stft": l_stft.item()})
        return out

    def frozen_error(self, mel: torch.Tensor, rng: np.random.Generator | None = None, net=None) -> torch.Tensor:
        """Log-mel L1 between a held frame and the mel of what the vocoder makes of it.

        A frozen playhead, free mode and a held latent give the vocoder one mel frame over and over,
        which no recording has, so no audio can be the target; its own mel is. Each crop's frame (a
        random one when ``rng`` is given, else the middle one) is held for the crop's length; the
        ends (the synthesis window's reach) are left out."""
        m = net or self.model
        B, _, T = mel.shape
        k = rng.integers(0, T, size=B) if rng is not None else np.full(B, T // 2)
        held = mel[torch.arange(B), :, torch.from_numpy(np.asarray(k))][..., None].expand(-1, -1, T).contiguous()
        got = self.melspec(m(held))
        edge = max(2, T // 8)
        n = min(got.shape[-1], T)
        return (got[..., edge:n - edge] - held[..., edge:n - edge]).abs().mean()

    def _through_vae(self, mel: torch.Tensor) -> torch.Tensor:
        """What the VAE decoder makes of ``mel`` (posterior mean), the same length."""
        return self.vae.decode(self.vae.encode(mel), mel.shape[-1])

    @torch.no_grad()
    def validate(self):
        m = _unwrap(self.model)
        m.eval()
        x = self.valid_bank.fixed_batch(16, 4 * self.tcfg.segment)
        mel = self.melspec(x)
        y = m(mel)[:, : x.shape[-1]]
        self.picture_pairs = [(mel[i, :, :160].numpy(), self.melspec(y[i])[..., :160].numpy())
                              for i in range(0, 16, 4)]
        out = {"mel_l1": self.mel_loss(y, x).item(), "stft": self.stft_loss(y, x).item(),
               "frozen": self.frozen_error(mel[..., :64], net=m).item()}   # held frames: the frozen playhead
        if self.vae is not None:   # the full model's path: encode -> decode -> vocode
            yv = m(self._through_vae(mel))[:, : x.shape[-1]]
            out.update({"vae_mel_l1": self.mel_loss(yv, x).item(), "vae_stft": self.stft_loss(yv, x).item()})
        return out

    def export(self, step, final):
        save_checkpoint(self.out, _unwrap(self.model), self._provenance(step))
