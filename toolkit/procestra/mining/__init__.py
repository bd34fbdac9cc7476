"""Mining: filters compiled to SQL, statistics, discovery, conformance, export and synthetic logs."""

from procestra.mining import stats
from procestra.mining.conformance import ConformanceResult, conform, deviations
from procestra.mining.discover import DiscoveryResult, Miner, discover, get_miner, miners, register_miner
from procestra.mining.filters import Filter, save_filtered

__all__ = [
    "ConformanceResult", "DiscoveryResult", "Filter", "Miner", "conform", "deviations", "discover", "get_miner",
    "miners", "register_miner", "save_filtered", "stats",
]
