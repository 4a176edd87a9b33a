"""What the store must know of the recognizer without opening it: its embeddings' dimension, the
checksum that names the model that made them, and the thresholds that belong to it.

All of it comes from the config and `models/manifest.toml`, never from the model file: an erasure
or an appointments import works with the model files missing, and no onnxruntime session opens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from footfall.config.schema import Config
from footfall.models.manifest import ModelEntry, ModelError, entry_for


@dataclass(frozen=True)
class RecognizerSpec:
    """The configured recognizer's manifest entry, and the config that may override its thresholds."""

    entry: ModelEntry
    config: Config = field(repr=False)

    @property
    def dim(self) -> int:
        """The dimension of its embeddings."""
        return self.entry.embedding_dim

    @property
    def sha256(self) -> str:
        """The pinned SHA-256 of its file: embeddings made by another model are refused."""
        return self.entry.sha256

    def threshold(self, key: str) -> float:
        """A recognizer-specific threshold: the config's value if set, else the calibrated manifest value.

        `key` is a config key path such as "dedup.threshold" or "members.margin".
        """
        section, name = key.split(".")
        configured = getattr(getattr(self.config, section), name)
        if configured is not None:
            return configured
        manifest_key = {"dedup": "dedup_", "members": "member_"}[section] + name
        value = getattr(self.entry, manifest_key)
        if value is None:
            raise ModelError(f"{self.entry.file} has no calibrated {manifest_key} in the manifest; "
                             f"set {key} in the config after calibrating (footfall bench calibration)")
        return value


def recognizer_spec(config: Config) -> RecognizerSpec:
    """The configured recognizer as the manifest describes it (`models.recognizer`); ModelError
    if the manifest does not know it. The file is not looked for."""
    return RecognizerSpec(entry_for(config.models.recognizer, "recognizer"), config)
