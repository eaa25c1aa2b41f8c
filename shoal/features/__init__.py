"""Hashing, namespaces, interactions: the FeatureSpec."""

from shoal.features.hashing import feature_hash, hash_bytes, namespace_hash
from shoal.features.spec import FeatureSpec

__all__ = ["FeatureSpec", "feature_hash", "hash_bytes", "namespace_hash"]
