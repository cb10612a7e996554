"""Typed configuration. Profiles (demo, extended, paper) are TOML data files, not code branches."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .binary import BinaryConfig
from .checkout import find_root
from .data.manifest import DataStore, read_manifest
from .data.suites import profile_splits
from .errors import SettingError
from .exif.schema import LabelConfig
from .oneclass import OneClassDetector
from .pretext import PretextConfig

PROFILE_DIR = Path(__file__).parent / "profiles"

@dataclass(frozen=True)
class Profile:
    """What one reproduction uses: which manifest, where its files may live, and the seed."""

    name: str
    description: str
    manifest: str
    embedded_root: str = ""
    mirrors: tuple[str, ...] = ()
    seed: int = 0
    notebooks: tuple[str, ...] = ()
    exif_max_classes: dict[str, int] = field(default_factory=dict)
    pretext: dict = field(default_factory=dict)  # keyword arguments of exifkit.pretext.PretextConfig
    evaluation: dict = field(default_factory=dict)  # seen_generators, eval_max_patches, bootstrap
    oneclass: dict = field(default_factory=dict)  # keyword arguments of exifkit.oneclass.OneClassDetector
    binary: dict = field(default_factory=dict)  # keyword arguments of exifkit.binary.BinaryConfig
    study: dict = field(default_factory=dict)  # studies by name, e.g. scaling: exifkit.scaling.ScalingConfig
    root: Path = field(default_factory=Path.cwd)

    def manifest_path(self) -> Path:
        return self.root / "data_manifests" / self.manifest

    def embedded_path(self) -> Path | None:
        return self.root / self.embedded_root if self.embedded_root else None

    def mirror_paths(self) -> list[Path]:
        return [(self.root / m).resolve() for m in self.mirrors]

    def results_dir(self) -> Path:
        return self.root / "results" / self.name

    def label_config(self) -> LabelConfig:
        """How EXIF values become the pretext targets, with the profile's class budget per categorical tag."""
        config = LabelConfig()
        config.max_classes.update(self.exif_max_classes)
        return config

    def pretext_config(self, **overrides):
        """The profile's :class:`~exifkit.pretext.PretextConfig`, with the profile seed unless overridden."""
        return PretextConfig.from_dict({"seed": self.seed, **self.pretext, **overrides})

    def oneclass_detector(self, **overrides):
        """An unfitted :class:`~exifkit.oneclass.OneClassDetector` with the profile's shipped one-class
        setting (``method``), or another one by override. The ``[oneclass.small_sample]`` table applies
        only to the small-sample method."""
        base = {k: v for k, v in self.oneclass.items() if k != "small_sample"}
        merged = {**base, **overrides}
        if merged.get("method") == "small_sample":
            merged = {**base, **self.oneclass.get("small_sample", {}), **overrides}
        return OneClassDetector(**{k: tuple(v) if isinstance(v, list) else v for k, v in merged.items()})

    def oneclass_settings(self) -> dict:
        """The two one-class settings every table shows side by side: the authors' protocol and ours."""
        return {"paper": self.oneclass_detector(method="gmm"), "small_sample": self.oneclass_detector(method="small_sample")}

    @property
    def shipped_oneclass(self) -> str:
        """Which of :meth:`oneclass_settings` the bundle ships."""
        return self.oneclass_detector().method.replace("gmm", "paper")

    def binary_config(self, **overrides):
        """Same extractor architecture as the pretext run: the frozen copy is that extractor."""
        return BinaryConfig.from_dict({"seed": self.seed, **self.binary, **overrides},
                                      self.pretext_config().extractor)

    def splits(self, manifest):
        """Training sets and the test suite of this profile (see :mod:`exifkit.data.suites`)."""
        pre = self.pretext_config()
        return profile_splits(manifest, self.evaluation.get("seen_generators", ()), pre.holdout_fraction,
                              pre.seed, name=self.name,
                              train_on_cameras=self.evaluation.get("train_on_camera_photos", False))


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


KEYS = {"name", "description", "base", "manifest", "embedded_root", "mirrors", "seed", "notebooks", "exif",
        "pretext", "evaluation", "oneclass", "binary", "study"}


def _merged(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, table by table: a smaller profile states only what it changes."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _profile_table(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if path in seen:
        raise SettingError(f"{path}: profiles based on each other: {' -> '.join(p.stem for p in (*seen, path))}")
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    unknown = set(raw) - KEYS
    if unknown:
        raise SettingError(f"{path}: unknown key(s) {sorted(unknown)}")
    if "base" not in raw:
        return raw
    base_path = PROFILE_DIR / f"{raw['base']}.toml"
    if not base_path.is_file():
        raise SettingError(f"{path}: base profile {raw['base']!r} not found; available: {', '.join(available_profiles())}")
    base = {k: v for k, v in _profile_table(base_path, (*seen, path)).items() if k not in ("name", "description")}
    return _merged(base, {k: v for k, v in raw.items() if k != "base"})


def load_profile(name_or_file: str | Path, root: Path | None = None) -> Profile:
    """Load ``exifkit/profiles/<name>.toml`` or any TOML file with the same keys. A profile with
    ``base = "other"`` is that profile with its own tables merged on top."""
    path = Path(name_or_file)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_file}.toml"
        if not path.is_file():
            raise SettingError(f"unknown profile {name_or_file!r}; available: {', '.join(available_profiles())}")
    raw = _profile_table(path)
    return Profile(
        name=raw["name"], description=raw.get("description", ""), manifest=raw["manifest"],
        embedded_root=raw.get("embedded_root", ""), mirrors=tuple(raw.get("mirrors", ())),
        seed=int(raw.get("seed", 0)), notebooks=tuple(raw.get("notebooks", ())),
        exif_max_classes=dict(raw.get("exif", {}).get("max_classes", {})),
        pretext=dict(raw.get("pretext", {})),
        evaluation=dict(raw.get("evaluation", {})),
        oneclass=dict(raw.get("oneclass", {})),
        binary=dict(raw.get("binary", {})),
        study=dict(raw.get("study", {})),
        root=root or find_root(),
    )


def data_store(profile: Profile, mirrors=(), cache_dir: Path | None = None):
    """The :class:`~exifkit.data.manifest.DataStore` of a profile, extra mirrors tried first."""
    manifest = read_manifest(profile.manifest_path(), name=profile.name)
    return DataStore(manifest, embedded_root=profile.embedded_path(),
                     mirrors=[*map(Path, mirrors), *profile.mirror_paths()], cache_dir=cache_dir)
